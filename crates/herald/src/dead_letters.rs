//! `herald webhooks list-failed` and `herald webhooks replay`: operator access to the
//! webhook outbox's dead letters. Never creates an outbox that is not there.

use std::io::Write;
use std::path::Path;

use herald::webhooks::{Store, now_ms, redact};

use crate::WebhookAction;

pub(crate) fn run(data_dir: &Path, action: WebhookAction) -> Result<(), String> {
    if matches!(&action, WebhookAction::Replay { ids, all } if ids.is_empty() && !all) {
        return Err("name the event ids to replay, or pass --all".into());
    }
    let mut out = std::io::stdout().lock();
    let opened = Store::open_existing(data_dir).map_err(|e| {
        format!(
            "cannot open the webhook outbox in {}: {e}",
            data_dir.display()
        )
    })?;
    let Some(mut store) = opened else {
        return writeln!(
            out,
            "no webhook outbox at {}: nothing has been stored yet",
            Store::path(data_dir).display()
        )
        .map_err(|e| e.to_string());
    };
    let written = match action {
        WebhookAction::ListFailed => {
            let dead = store.dead_letters().map_err(|e| e.to_string())?;
            writeln!(out, "{} dead-lettered webhook event(s)", dead.len()).and_then(|()| {
                dead.iter().try_for_each(|e| {
                    writeln!(
                        out,
                        "{}  app {}  {}  attempts {}  last error: {}\n    {}",
                        e.id,
                        e.app_id,
                        redact(&e.url),
                        e.attempts,
                        e.last_error.as_deref().unwrap_or("-"),
                        e.event
                    )
                })
            })
        }
        WebhookAction::Replay { ids, all } => {
            let selection = (!all).then_some(ids.as_slice());
            let count = store
                .replay(selection, now_ms())
                .map_err(|e| e.to_string())?;
            writeln!(out, "{count} webhook event(s) queued again")
        }
    };
    written.map_err(|e| e.to_string())
}

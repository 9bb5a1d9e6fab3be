//! `GET /admin/stream`: the debug console as Server-Sent Events, filtered by app, channel
//! prefix and event name. Each viewer reads its own bounded queue; when it falls behind,
//! the oldest events are dropped and a `dropped` event says how many.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::{Admin, Console};
use crate::debug::{DebugEvent, Viewer};

/// What a viewer wants to see; empty fields match everything.
#[derive(Debug, Default, Deserialize)]
pub struct Filter {
    #[serde(default)]
    app: String,
    #[serde(default)]
    channel_prefix: String,
    #[serde(default)]
    event: String,
}

impl Filter {
    fn matches(&self, event: &DebugEvent) -> bool {
        (self.app.is_empty() || event.app_id == self.app)
            && (self.channel_prefix.is_empty()
                || event
                    .channel
                    .as_deref()
                    .is_some_and(|c| c.starts_with(&self.channel_prefix)))
            && (self.event.is_empty() || event.event.as_deref() == Some(self.event.as_str()))
    }
}

pub async fn stream(
    State(console): State<Arc<Console>>,
    _: Admin,
    Query(filter): Query<Filter>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let viewer = console.node.debug.watch();
    if let Some(cluster) = &console.node.cluster {
        cluster.set_watching(true);
    }
    let hello = Event::default().event("ready").data("{}");
    let state = (Some(hello), viewer, filter);
    let events =
        futures_util::stream::unfold(state, |(mut first, mut viewer, filter)| async move {
            if let Some(hello) = first.take() {
                return Some((Ok(hello), (None, viewer, filter)));
            }
            let event = next(&mut viewer, &filter).await?;
            Some((Ok(event), (None, viewer, filter)))
        });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// The next event this viewer should see, or a `dropped` marker after it fell behind.
async fn next(viewer: &mut Viewer, filter: &Filter) -> Option<Event> {
    loop {
        match viewer.events.recv().await {
            Ok(event) if filter.matches(&event) => {
                let data = serde_json::to_string(&event).unwrap_or_default();
                return Some(Event::default().event("debug").data(data));
            }
            Ok(_) => continue,
            Err(RecvError::Lagged(dropped)) => {
                let data = format!(r#"{{"dropped":{dropped}}}"#);
                return Some(Event::default().event("dropped").data(data));
            }
            Err(RecvError::Closed) => return None,
        }
    }
}

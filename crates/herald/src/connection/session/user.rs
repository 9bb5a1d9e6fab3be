//! User sign-in (spec §5.1-5.2) and watchlists (§5.4): verifying `pusher:signin`, the
//! signed-in identity, online/offline events to watchers, and signing out on close.

use herald_protocol::auth::{self, signin_string, split_auth_token};
use herald_protocol::channel::is_name_byte;
use herald_protocol::{ErrorCode, ServerMessage};
use serde_json::value::RawValue;

use super::Session;
use crate::hub::Member;

/// Longest user id accepted at sign-in (the Python SDK's limit).
const MAX_USER_ID_LENGTH: usize = 200;
/// Ids kept from a watchlist (spec §5.4).
const MAX_WATCHLIST: usize = 100;

/// The identity a connection signed in with.
pub(super) struct SignedIn {
    pub(super) id: String,
    user_info: Option<Box<RawValue>>,
    watchlist: Vec<String>,
}

impl SignedIn {
    /// The presence member this user joins as when `channel_data` is left out (spec §5.6).
    pub(super) fn member(&self) -> Member {
        Member {
            user_id: self.id.clone(),
            user_info: self.user_info.clone(),
        }
    }
}

#[derive(serde::Deserialize)]
struct UserData {
    id: serde_json::Value,
    #[serde(default)]
    user_info: Option<Box<RawValue>>,
    #[serde(default)]
    watchlist: Option<serde_json::Value>,
}

/// Decodes `user_data`: an object with a non-empty string `id` in the channel-name charset,
/// optional `user_info`, optional `watchlist` (an array of ids). Also returns whether the
/// watchlist was cut to its limit.
fn parse_user_data(user_data: &str) -> Result<(SignedIn, bool), String> {
    let data: UserData =
        serde_json::from_str(user_data).map_err(|e| format!("user_data is not valid: {e}"))?;
    let id = match data.id {
        serde_json::Value::String(id) if !id.is_empty() => id,
        _ => return Err("user_data needs a non-empty string id".into()),
    };
    if id.len() > MAX_USER_ID_LENGTH || !id.bytes().all(is_name_byte) {
        return Err(format!(
            "user id must be at most {MAX_USER_ID_LENGTH} characters of A-Z a-z 0-9 _ - = @ , . ;"
        ));
    }
    let mut watchlist = match data.watchlist {
        None => Vec::new(),
        Some(serde_json::Value::Array(ids)) => ids
            .into_iter()
            .map(|id| match id {
                serde_json::Value::String(id) => Ok(id),
                _ => Err("watchlist must hold user id strings".to_owned()),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err("watchlist must be an array of user ids".into()),
    };
    let truncated = watchlist.len() > MAX_WATCHLIST;
    watchlist.truncate(MAX_WATCHLIST);
    let user = SignedIn {
        id,
        user_info: data.user_info,
        watchlist,
    };
    Ok((user, truncated))
}

impl Session {
    /// `pusher:signin`: on any failure the client gets 4009 and the connection closes.
    pub(super) fn sign_in(&mut self, auth: &str, user_data: &str) {
        match self.verify_signin(auth, user_data) {
            Ok((user, truncated)) => self.complete_signin(user, user_data, truncated),
            Err(reason) => {
                tracing::debug!(socket_id = %self.socket_id, reason, "sign-in refused");
                let message = format!("Connection not authorized: {reason}");
                self.outbox.kick(ErrorCode::Unauthorized, message);
            }
        }
    }

    fn verify_signin(&self, auth: &str, user_data: &str) -> Result<(SignedIn, bool), String> {
        let (key, signature) = split_auth_token(auth).ok_or("auth must be key:signature")?;
        if key != self.app.key {
            return Err(format!("invalid key '{key}' in sign-in auth"));
        }
        let signed = signin_string(self.socket_id.as_str(), user_data);
        if !auth::verify(self.app.secret.expose(), signed.as_bytes(), signature) {
            return Err("invalid sign-in signature".into());
        }
        let (user, truncated) = parse_user_data(user_data)?;
        if let Some(current) = &self.user
            && current.id != user.id
        {
            return Err(format!(
                "already signed in as another user ({})",
                current.id
            ));
        }
        Ok((user, truncated))
    }

    fn complete_signin(&mut self, user: SignedIn, user_data: &str, truncated: bool) {
        if let Some(previous) = self.user.take() {
            // Signing in again as the same user replaces the watchlist.
            self.node
                .unwatch(&self.app, &previous.watchlist, &self.socket_id);
        } else {
            self.node
                .sign_in(&self.app, &user.id, &self.socket_id, &self.outbox);
        }
        self.send(&ServerMessage::SigninSuccess { user_data });
        if truncated {
            let code = ErrorCode::WatchlistLimit;
            self.error(Some(code.code()), code.message());
        }
        if self.app.enable_watchlist_events && !user.watchlist.is_empty() {
            let online = self
                .node
                .watch(&self.app, &user.watchlist, &self.socket_id, &self.outbox);
            let (mut on, mut off) = (Vec::new(), Vec::new());
            for (id, is_online) in user.watchlist.iter().zip(online) {
                if is_online {
                    on.push(id.as_str())
                } else {
                    off.push(id.as_str())
                }
            }
            self.send(&ServerMessage::WatchlistEvents {
                online: &on,
                offline: &off,
            });
        }
        self.user = Some(user);
    }

    /// Forgets the signed-in identity; tells watchers when the user went offline.
    pub(super) fn sign_out(&mut self) {
        let Some(user) = self.user.take() else {
            return;
        };
        self.node
            .unwatch(&self.app, &user.watchlist, &self.socket_id);
        self.node.sign_out(&self.app, &user.id, &self.socket_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_needs_a_string_id_and_an_array_watchlist() {
        let (user, truncated) =
            parse_user_data(r#"{"id":"42","user_info":{"name":"Ada"},"watchlist":["7","9"]}"#)
                .expect("valid");
        assert_eq!(user.id, "42");
        assert_eq!(user.watchlist, vec!["7", "9"]);
        assert!(!truncated);
        for bad in [
            "not json",
            r#"{"user_info":{}}"#,
            r#"{"id":42}"#,
            r#"{"id":""}"#,
            r#"{"id":"a b"}"#,
            r#"{"id":"1","watchlist":"7"}"#,
            r#"{"id":"1","watchlist":[7]}"#,
        ] {
            assert!(parse_user_data(bad).is_err(), "{bad}");
        }
        let many: Vec<String> = (0..150).map(|n| n.to_string()).collect();
        let text = serde_json::json!({"id":"1","watchlist":many}).to_string();
        let (user, truncated) = parse_user_data(&text).expect("valid");
        assert!(truncated);
        assert_eq!(user.watchlist.len(), 100);
        assert_eq!(user.watchlist[99], "99");
    }
}

//! One socket's protocol state: its channels, its presence identities and its client-event
//! rate. Handles every inbound message; replies go through the socket's own outbox so they
//! stay in order with broadcasts. Cleanup walks this session's own channel set.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_protocol::auth::{self, channel_auth_string, split_auth_token};
use herald_protocol::message::{ClientEvent, Subscribe};
use herald_protocol::{
    ChannelKind, ChannelName, ClientMessage, ErrorCode, ServerMessage, SocketId,
};
use serde_json::value::RawValue;

use super::outbox::Outbox;
use crate::apps::App;
use crate::hub::{Member, Refused};
use crate::node::Node;

/// The state of one connection.
pub struct Session {
    node: Arc<Node>,
    app: Arc<App>,
    socket_id: SocketId,
    outbox: Outbox,
    /// Subscribed channels and, for presence ones, this socket's user id there.
    channels: HashMap<ChannelName, Option<String>>,
    client_events: RateWindow,
}

impl Session {
    pub fn new(node: Arc<Node>, app: Arc<App>, socket_id: SocketId, outbox: Outbox) -> Self {
        let limit = app.limits.max_client_events_per_second;
        Self {
            node,
            app,
            socket_id,
            outbox,
            channels: HashMap::new(),
            client_events: RateWindow::new(limit),
        }
    }

    pub fn socket_id(&self) -> &SocketId {
        &self.socket_id
    }

    /// Handles one text frame.
    pub fn handle_text(&mut self, text: &str) {
        match ClientMessage::parse(text) {
            Ok(ClientMessage::Ping) => self.send(&ServerMessage::Pong),
            Ok(ClientMessage::Pong) => {}
            Ok(ClientMessage::Subscribe(subscribe)) => self.subscribe(subscribe),
            Ok(ClientMessage::Unsubscribe { channel }) => self.unsubscribe(&channel),
            Ok(ClientMessage::Signin { .. }) => {
                self.error(None, "pusher:signin is not supported by this server yet")
            }
            Ok(ClientMessage::ClientEvent(event)) => self.client_event(event),
            Ok(ClientMessage::UnknownPusher(event)) => {
                tracing::debug!(socket_id = %self.socket_id, event, "ignored unknown pusher event");
            }
            Err(error) => self.error(None, &error.to_string()),
        }
    }

    /// Tells the client a binary frame was ignored.
    pub fn binary_frame(&self) {
        self.error(
            None,
            "Binary frames are not supported; send JSON text frames",
        );
    }

    fn send(&self, message: &ServerMessage<'_>) {
        self.outbox.send(message.encode().into());
    }

    fn error(&self, code: Option<u16>, message: &str) {
        self.send(&ServerMessage::Error { code, message });
    }

    fn subscribe(&mut self, request: Subscribe) {
        match self.admit(&request) {
            Ok((channel, member)) => self.join(channel, member),
            Err(message) => self.error(None, &message),
        }
    }

    /// Spec §3.3 steps 2-5: name, duplicate, auth, presence member.
    fn admit(&self, request: &Subscribe) -> Result<(ChannelName, Option<Member>), String> {
        let name = &request.channel;
        let channel = ChannelName::parse(name, self.app.limits.max_channel_name_length)
            .map_err(|e| format!("Invalid channel name '{name}': {e}"))?;
        if self.channels.contains_key(&channel) {
            return Err(format!("Existing subscription to channel {name}"));
        }
        let kind = channel.kind();
        if kind == ChannelKind::ServerToUser {
            return Err(format!(
                "Cannot subscribe to {name}: only a connection signed in as that user may"
            ));
        }
        if !kind.requires_auth() {
            return Ok((channel, None));
        }
        let channel_data = request.channel_data.as_deref();
        self.verify_auth(name, request.auth.as_deref(), channel_data)?;
        if kind != ChannelKind::Presence {
            return Ok((channel, None));
        }
        let data = channel_data.ok_or_else(|| {
            format!("Presence subscription to {name} requires channel_data with a user_id")
        })?;
        let member = parse_member(data, &self.app)?;
        Ok((channel, Some(member)))
    }

    /// Spec §4.2: key, then the HMAC over the exact bytes received, in constant time.
    fn verify_auth(
        &self,
        channel: &str,
        auth: Option<&str>,
        channel_data: Option<&str>,
    ) -> Result<(), String> {
        let auth = auth.ok_or_else(|| format!("Auth info required to subscribe to {channel}"))?;
        let (key, signature) = split_auth_token(auth)
            .ok_or_else(|| format!("Invalid auth format for {channel}: expected key:signature"))?;
        if key != self.app.key {
            return Err(format!("Invalid key in subscription auth data: '{key}'"));
        }
        let signed = channel_auth_string(self.socket_id.as_str(), channel, channel_data);
        if auth::verify(self.app.secret.expose(), signed.as_bytes(), signature) {
            Ok(())
        } else {
            Err(format!(
                "Invalid signature: Expected HMAC SHA256 hex digest of {signed}, but got {signature}"
            ))
        }
    }

    fn join(&mut self, channel: ChannelName, member: Option<Member>) {
        let subscribed = self.node.hub.subscribe(
            &self.app.id,
            &channel,
            &self.socket_id,
            &self.outbox,
            member.as_ref(),
            self.app.limits.max_presence_members,
        );
        match subscribed {
            Ok(change) => {
                if let Some(member) = member.as_ref().filter(|_| change.member_added) {
                    let frame = ServerMessage::MemberAdded {
                        channel: channel.as_str(),
                        user_id: &member.user_id,
                        user_info: member.user_info.as_deref(),
                    };
                    self.node.publish(
                        &self.app,
                        &channel,
                        &frame.encode().into(),
                        Some(&self.socket_id),
                    );
                }
                self.channels.insert(channel, member.map(|m| m.user_id));
            }
            Err(Refused::PresenceFull { max }) => self.error(
                None,
                &format!("Presence channel {channel} is full: at most {max} members"),
            ),
        }
    }

    fn unsubscribe(&mut self, name: &str) {
        // Unsubscribing from a channel not held is a silent no-op (spec §3.6).
        if let Some((channel, user_id)) = self.channels.remove_entry(name) {
            self.leave(&channel, user_id.as_deref());
        }
    }

    fn leave(&self, channel: &ChannelName, user_id: Option<&str>) {
        let left = self
            .node
            .hub
            .unsubscribe(&self.app.id, channel, &self.socket_id, user_id);
        if let (Some(change), Some(user_id)) = (left, user_id)
            && change.member_removed
        {
            let frame = ServerMessage::MemberRemoved {
                channel: channel.as_str(),
                user_id,
            };
            self.node
                .publish(&self.app, channel, &frame.encode().into(), None);
        }
    }

    /// Spec §6.2, in order.
    fn client_event(&mut self, event: ClientEvent) {
        if let Err((code, message)) = self.check_client_event(&event) {
            self.error(code, &message);
            return;
        }
        let Some((channel, user_id)) = self.channels.get_key_value(event.channel.as_str()) else {
            return;
        };
        let frame = ServerMessage::ClientEvent {
            event: &event.event,
            channel: channel.as_str(),
            data: event.data.as_deref(),
            user_id: user_id.as_deref(),
        };
        self.node.publish(
            &self.app,
            channel,
            &frame.encode().into(),
            Some(&self.socket_id),
        );
    }

    fn check_client_event(&mut self, event: &ClientEvent) -> Result<(), (Option<u16>, String)> {
        let limits = &self.app.limits;
        let reject = |message: String| Err((None, message));
        if !self.app.enable_client_messages {
            return reject("To send client events, you must enable this feature in the Settings page of your dashboard.".into());
        }
        if !ChannelKind::of(&event.channel).allows_client_events() {
            return reject(
                "Client event rejected - only supported on private and presence channels".into(),
            );
        }
        if !self.channels.contains_key(event.channel.as_str()) {
            return reject(format!(
                "Client event rejected - you are not subscribed to channel {}",
                event.channel
            ));
        }
        if event.event.len() > limits.max_event_name_length {
            return reject(format!(
                "Client event rejected - event name is longer than {} characters",
                limits.max_event_name_length
            ));
        }
        if event.data_len() > limits.max_event_payload_bytes {
            return reject(format!(
                "Client event rejected - data is larger than {} bytes",
                limits.max_event_payload_bytes
            ));
        }
        if !self.client_events.allow(Instant::now()) {
            let code = ErrorCode::ClientEventRateLimit;
            return Err((Some(code.code()), code.message().into()));
        }
        Ok(())
    }

    /// Leaves every channel, as explicit unsubscribes would (spec §10.2 item 17).
    pub fn close(mut self) {
        for (channel, user_id) in std::mem::take(&mut self.channels) {
            self.leave(&channel, user_id.as_deref());
        }
    }
}

/// Decodes presence `channel_data` into a member, within the app's limits (spec §3.3 step 5).
fn parse_member(channel_data: &str, app: &App) -> Result<Member, String> {
    #[derive(serde::Deserialize)]
    struct ChannelData {
        user_id: serde_json::Value,
        #[serde(default)]
        user_info: Option<Box<RawValue>>,
    }
    let limits = &app.limits;
    let data: ChannelData =
        serde_json::from_str(channel_data).map_err(|e| format!("Invalid channel_data: {e}"))?;
    let user_id = match data.user_id {
        serde_json::Value::String(id) if !id.is_empty() => id,
        serde_json::Value::Number(n) => n.to_string(),
        _ => {
            return Err(
                "Invalid channel_data: user_id must be a non-empty string or number".into(),
            );
        }
    };
    if user_id.len() > limits.max_presence_user_id_length {
        return Err(format!(
            "Invalid channel_data: user_id is longer than {} characters",
            limits.max_presence_user_id_length
        ));
    }
    let info_len = data.user_info.as_ref().map_or(0, |info| info.get().len());
    if info_len > limits.max_presence_user_info_bytes {
        return Err(format!(
            "Invalid channel_data: user_info is larger than {} bytes",
            limits.max_presence_user_info_bytes
        ));
    }
    Ok(Member {
        user_id,
        user_info: data.user_info,
    })
}

/// A fixed one-second window counting client events.
struct RateWindow {
    limit: u32,
    started: Option<Instant>,
    count: u32,
}

impl RateWindow {
    fn new(limit: u32) -> Self {
        Self {
            limit,
            started: None,
            count: 0,
        }
    }

    fn allow(&mut self, now: Instant) -> bool {
        let expired = self
            .started
            .is_none_or(|start| now.duration_since(start) >= Duration::from_secs(1));
        if expired {
            self.started = Some(now);
            self.count = 0;
        }
        if self.count >= self.limit {
            return false;
        }
        self.count += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::{Limits, Secret};

    fn app() -> App {
        App {
            id: "1".into(),
            key: "k".into(),
            secret: Secret::new("s"),
            enable_client_messages: true,
            enabled: true,
            max_connections: 0,
            limits: Limits::default(),
        }
    }

    #[test]
    fn rate_window_allows_the_limit_per_second() {
        let mut window = RateWindow::new(10);
        let start = Instant::now();
        assert!((0..10).all(|_| window.allow(start)));
        assert!(!window.allow(start + Duration::from_millis(900)));
        assert!(window.allow(start + Duration::from_millis(1000)));
    }

    #[test]
    fn members_take_string_or_numeric_ids_within_limits() {
        let member = parse_member(r#"{"user_id":10,"user_info":{"a":1}}"#, &app()).expect("ok");
        assert_eq!(member.user_id, "10");
        assert_eq!(
            member.user_info.map(|i| i.get().to_owned()).as_deref(),
            Some(r#"{"a":1}"#)
        );
        for bad in [
            "not json",
            "[]",
            r#"{"user_info":{}}"#,
            r#"{"user_id":""}"#,
            r#"{"user_id":null}"#,
            r#"{"user_id":{"a":1}}"#,
        ] {
            assert!(parse_member(bad, &app()).is_err(), "{bad}");
        }
        let long_id = format!(r#"{{"user_id":"{}"}}"#, "x".repeat(129));
        assert!(parse_member(&long_id, &app()).is_err());
        let big_info = format!(r#"{{"user_id":"1","user_info":"{}"}}"#, "x".repeat(1100));
        assert!(parse_member(&big_info, &app()).is_err());
    }
}

//! One socket's protocol state: its channels and presence identities, its signed-in user,
//! its client-event rate. Handles every inbound message; replies go through the socket's own
//! outbox so they stay in order with broadcasts. Cleanup walks this session's own state.

mod client_events;
mod member;
mod user;

use std::collections::HashMap;
use std::sync::Arc;

use herald_protocol::auth::{self, channel_auth_string, split_auth_token};
use herald_protocol::channel::SERVER_TO_USER_PREFIX;
use herald_protocol::message::Subscribe;
use herald_protocol::{ChannelKind, ChannelName, ClientMessage, ServerMessage, SocketId};

use crate::apps::App;
use crate::cluster::Listening;
use crate::hub::{Member, Refused};
use crate::node::{Join, Node};
use crate::outbox::Outbox;
use crate::webhooks::WebhookEvent;
use client_events::RateWindow;
use user::SignedIn;

/// A subscription admitted but waiting for the cluster to deliver its channel here.
pub struct Deferred {
    channel: ChannelName,
    member: Option<Member>,
    wait: Listening,
}

impl Deferred {
    /// Waits until the subscription can complete.
    pub async fn ready(&mut self) {
        self.wait.ready().await;
    }
}

/// The state of one connection.
pub struct Session {
    node: Arc<Node>,
    app: Arc<App>,
    socket_id: SocketId,
    outbox: Outbox,
    /// Subscribed channels and, for presence ones, this socket's user id there.
    channels: HashMap<ChannelName, Option<String>>,
    client_events: RateWindow,
    user: Option<SignedIn>,
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
            user: None,
        }
    }

    pub fn socket_id(&self) -> &SocketId {
        &self.socket_id
    }

    pub fn app(&self) -> &App {
        &self.app
    }

    /// Signed in, or holding a private, encrypted or presence channel (spec §5.5).
    pub fn is_authorized(&self) -> bool {
        self.user.is_some() || self.channels.keys().any(|c| c.kind().requires_auth())
    }

    /// Handles one text frame. A subscription may have to wait for the cluster: then it
    /// comes back as [`Deferred`], to [`Session::finish`] after its wait.
    pub fn handle_text(&mut self, text: &str) -> Option<Deferred> {
        match ClientMessage::parse(text) {
            Ok(ClientMessage::Ping) => self.send(&ServerMessage::Pong),
            Ok(ClientMessage::Pong) => {}
            Ok(ClientMessage::Subscribe(subscribe)) => return self.subscribe(subscribe),
            Ok(ClientMessage::Unsubscribe { channel }) => self.unsubscribe(&channel),
            Ok(ClientMessage::Signin { auth, user_data }) => self.sign_in(&auth, &user_data),
            Ok(ClientMessage::ClientEvent(event)) => self.client_event(event),
            Ok(ClientMessage::UnknownPusher(event)) => {
                tracing::debug!(socket_id = %self.socket_id, event, "ignored unknown pusher event");
            }
            Err(error) => self.error(None, &error.to_string()),
        }
        None
    }

    /// Completes a subscription that waited for the cluster.
    pub fn finish(&mut self, deferred: Deferred) {
        self.join(deferred.channel, deferred.member);
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

    fn webhook(&self, event: WebhookEvent) {
        self.node.webhook(&self.app, event);
    }

    fn subscribe(&mut self, request: Subscribe) -> Option<Deferred> {
        match self.admit(&request) {
            Ok((channel, _)) if channel.kind() == ChannelKind::ServerToUser => {
                self.send(&ServerMessage::SubscriptionSucceeded {
                    channel: channel.as_str(),
                    presence: None,
                });
                self.channels.insert(channel, None);
            }
            Ok((channel, member)) => match self.node.listen(&self.app, &channel) {
                Some(wait) => {
                    return Some(Deferred {
                        channel,
                        member,
                        wait,
                    });
                }
                None => self.join(channel, member),
            },
            // A duplicate keeps its subscription: no channel-scoped error for it.
            Err(message) if self.channels.contains_key(request.channel.as_str()) => {
                self.error(None, &message)
            }
            Err(message) => self.refuse(&request.channel, &message),
        }
        None
    }

    /// A refused subscription: Pusher's connection-level error (spec §3.5) and, when the app
    /// asks for it, Soketi's channel-scoped one.
    fn refuse(&self, channel: &str, message: &str) {
        self.error(None, message);
        if self.app.subscription_error_events {
            self.send(&ServerMessage::SubscriptionError {
                channel,
                error: message,
                status: 401,
            });
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
        let max = self.node.server.max_channels_per_connection;
        if self.channels.len() >= max {
            return Err(format!(
                "Cannot subscribe to {name}: a connection may hold at most {max} channels"
            ));
        }
        let kind = channel.kind();
        if kind == ChannelKind::ServerToUser {
            let user = name.strip_prefix(SERVER_TO_USER_PREFIX).unwrap_or_default();
            return match &self.user {
                Some(signed_in) if signed_in.id == user => Ok((channel, None)),
                _ => Err(format!(
                    "Cannot subscribe to {name}: only a connection signed in as that user may"
                )),
            };
        }
        if !kind.requires_auth() {
            return Ok((channel, None));
        }
        let channel_data = request.channel_data.as_deref();
        self.verify_auth(name, request.auth.as_deref(), channel_data)?;
        if kind != ChannelKind::Presence {
            return Ok((channel, None));
        }
        let member = match (channel_data, &self.user) {
            (Some(data), _) => member::parse(data, &self.app)?,
            // Spec §5.6: a signed-in connection may join as its user.
            (None, Some(user)) => user.member(),
            (None, None) => {
                return Err(format!(
                    "Presence subscription to {name} requires channel_data with a user_id, or a signed-in connection"
                ));
            }
        };
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
        let joined = self.node.join(
            &self.app,
            Join {
                channel: &channel,
                socket: &self.socket_id,
                outbox: &self.outbox,
                member: member.as_ref(),
            },
        );
        if let Err(Refused::PresenceFull { max }) = joined {
            self.node.unlisten(&self.app, &channel);
            let message = format!("Presence channel {channel} is full: at most {max} members");
            return self.refuse(channel.as_str(), &message);
        }
        self.channels.insert(channel, member.map(|m| m.user_id));
    }

    fn unsubscribe(&mut self, name: &str) {
        // Unsubscribing from a channel not held is a silent no-op (spec §3.6).
        if let Some((channel, user_id)) = self.channels.remove_entry(name) {
            self.leave(&channel, user_id.as_deref());
        }
    }

    fn leave(&self, channel: &ChannelName, user_id: Option<&str>) {
        self.node
            .leave(&self.app, channel, &self.socket_id, user_id);
    }

    /// Leaves every channel, as explicit unsubscribes would, and signs out (spec §10.2 #17).
    pub fn close(mut self) {
        for (channel, user_id) in std::mem::take(&mut self.channels) {
            self.leave(&channel, user_id.as_deref());
        }
        self.sign_out();
    }
}

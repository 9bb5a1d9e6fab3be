//! Frames on the WebSocket: what clients send ([`ClientMessage`]) and what the server sends
//! ([`ServerMessage`]). The double-encoded `data` quirk (spec §10.1) is decided here and
//! nowhere else: [`ServerMessage::encode`] and [`InboundFrame::data_text`].

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A frame a client sent, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// `pusher:ping`, whatever its `data` (`{}`, `""`, `null` or absent).
    Ping,
    /// `pusher:pong`, the answer to our liveness probe.
    Pong,
    Subscribe(Subscribe),
    Unsubscribe {
        channel: String,
    },
    Signin {
        auth: String,
        user_data: String,
    },
    /// A `client-*` event to relay.
    ClientEvent(ClientEvent),
    /// A `pusher:`/`pusher_internal:` event Herald does not know; ignored.
    UnknownPusher(String),
}

/// The body of `pusher:subscribe`.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscribe {
    pub channel: String,
    /// `None` when absent (Pysher) or empty (pusher-js, public channels).
    pub auth: Option<String>,
    /// Exactly as received: signatures are computed over these bytes (spec §4.2).
    pub channel_data: Option<String>,
}

/// A `client-*` event as received.
#[derive(Debug, Clone)]
pub struct ClientEvent {
    pub event: String,
    pub channel: String,
    /// Relayed as received: an object stays an object, a string stays a string (spec §6.1).
    pub data: Option<Box<RawValue>>,
}

impl PartialEq for ClientEvent {
    fn eq(&self, other: &Self) -> bool {
        self.event == other.event
            && self.channel == other.channel
            && self.data.as_ref().map(|d| d.get()) == other.data.as_ref().map(|d| d.get())
    }
}

impl ClientEvent {
    /// Size of the serialised `data`, the figure the 10 KB limit applies to.
    pub fn data_len(&self) -> usize {
        self.data.as_ref().map_or(0, |d| d.get().len())
    }

    /// `data` as a string: a JSON string decoded, any other value as its JSON text
    /// (the form webhooks carry, spec §9.2).
    pub fn data_text(&self) -> Option<String> {
        self.data.as_deref().map(raw_text)
    }
}

/// Why a frame could not be understood. Each maps to a `pusher:error` with `code: null`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("Invalid JSON")]
    InvalidJson,
    #[error("Invalid message: expected a JSON object with a string `event`")]
    NotAnObject,
    #[error("Invalid {event} data: {reason}")]
    BadData { event: String, reason: String },
    #[error("Client event {event} has no channel")]
    MissingChannel { event: String },
    #[error("Unsupported event {event}: client events must start with client-")]
    NotAClientEvent { event: String },
}

#[derive(Deserialize)]
struct Envelope<'a> {
    event: String,
    #[serde(default)]
    channel: Option<String>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct SubscribeData {
    channel: String,
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    channel_data: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct ChannelData {
    channel: String,
}

#[derive(Deserialize)]
struct SigninData {
    auth: String,
    user_data: String,
}

impl ClientMessage {
    /// Decodes one text frame.
    pub fn parse(text: &str) -> Result<Self, MessageError> {
        let envelope: Envelope<'_> = serde_json::from_str(text).map_err(|_| {
            match serde_json::from_str::<IgnoredAny>(text) {
                Ok(_) => MessageError::NotAnObject,
                Err(_) => MessageError::InvalidJson,
            }
        })?;
        let event = envelope.event;
        match event.as_str() {
            "pusher:ping" => Ok(Self::Ping),
            "pusher:pong" => Ok(Self::Pong),
            "pusher:subscribe" => {
                let data: SubscribeData = decode_data(&event, envelope.data)?;
                Ok(Self::Subscribe(Subscribe {
                    channel: data.channel,
                    auth: data.auth.filter(|a| !a.is_empty()),
                    channel_data: data.channel_data.map(|raw| raw_text(&raw)),
                }))
            }
            "pusher:unsubscribe" => {
                let data: ChannelData = decode_data(&event, envelope.data)?;
                Ok(Self::Unsubscribe {
                    channel: data.channel,
                })
            }
            "pusher:signin" => {
                let data: SigninData = decode_data(&event, envelope.data)?;
                Ok(Self::Signin {
                    auth: data.auth,
                    user_data: data.user_data,
                })
            }
            _ if event.starts_with("client-") => {
                let Some(channel) = envelope.channel else {
                    return Err(MessageError::MissingChannel { event });
                };
                let data = envelope.data.map(RawValue::to_owned);
                Ok(Self::ClientEvent(ClientEvent {
                    event,
                    channel,
                    data,
                }))
            }
            _ if event.starts_with("pusher:") || event.starts_with("pusher_internal:") => {
                Ok(Self::UnknownPusher(event))
            }
            _ => Err(MessageError::NotAClientEvent { event }),
        }
    }
}

/// Decodes `data` as an object, also accepting an object double-encoded in a string.
fn decode_data<T: for<'de> Deserialize<'de>>(
    event: &str,
    data: Option<&RawValue>,
) -> Result<T, MessageError> {
    let bad = |reason: String| MessageError::BadData {
        event: event.to_owned(),
        reason,
    };
    let raw = data.ok_or_else(|| bad("data is missing".to_owned()))?;
    let text = match serde_json::from_str::<String>(raw.get()) {
        Ok(inner) => inner,
        Err(_) => raw.get().to_owned(),
    };
    serde_json::from_str(&text).map_err(|e| bad(e.to_string()))
}

/// A string value decoded; any other JSON value as its raw text.
fn raw_text(raw: &RawValue) -> String {
    serde_json::from_str::<String>(raw.get()).unwrap_or_else(|_| raw.get().to_owned())
}

/// A frame the server sends. [`encode`](Self::encode) produces the exact wire text.
#[derive(Debug, Clone, Copy)]
pub enum ServerMessage<'a> {
    ConnectionEstablished {
        socket_id: &'a str,
        activity_timeout: u64,
    },
    /// `code: None` is the `"code":null` form Pusher uses for subscription errors.
    Error {
        code: Option<u16>,
        message: &'a str,
    },
    Ping,
    Pong,
    /// `presence` is the already-encoded `{"presence":{...}}` object for presence channels.
    SubscriptionSucceeded {
        channel: &'a str,
        presence: Option<&'a str>,
    },
    MemberAdded {
        channel: &'a str,
        user_id: &'a str,
        user_info: Option<&'a RawValue>,
    },
    MemberRemoved {
        channel: &'a str,
        user_id: &'a str,
    },
    /// An HTTP-triggered event; `data` is relayed as the same JSON string, verbatim.
    ChannelEvent {
        event: &'a str,
        channel: &'a str,
        data: &'a str,
    },
    /// `pusher:signin_success`, echoing the exact `user_data` string inside an object.
    SigninSuccess {
        user_data: &'a str,
    },
    /// `pusher_internal:watchlist_events` with `online`/`offline` elements; empty ones are
    /// left out (spec §5.4).
    WatchlistEvents {
        online: &'a [&'a str],
        offline: &'a [&'a str],
    },
    /// Soketi's channel-scoped refusal (spec §3.5), which pusher-js hands to
    /// `channel.bind('pusher:subscription_error')` and Laravel Echo to `.error()`.
    SubscriptionError {
        channel: &'a str,
        error: &'a str,
        status: u16,
    },
    /// `pusher:cache_miss` on a cache channel with nothing cached (spec §3.8).
    CacheMiss {
        channel: &'a str,
    },
    /// `pusher_internal:subscription_count` (spec §3.9).
    SubscriptionCount {
        channel: &'a str,
        count: usize,
    },
    /// A relayed client event: `data` as received, `user_id` on presence channels.
    ClientEvent {
        event: &'a str,
        channel: &'a str,
        data: Option<&'a RawValue>,
        user_id: Option<&'a str>,
    },
}

#[derive(Serialize)]
struct Frame<'a> {
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Data<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Data<'a> {
    /// Serialised as a JSON string (the double encoding).
    Text(&'a str),
    Owned(String),
    Raw(&'a RawValue),
    Error {
        code: Option<u16>,
        message: &'a str,
    },
    Signin {
        user_data: &'a str,
    },
    Refusal {
        #[serde(rename = "type")]
        kind: &'a str,
        error: &'a str,
        status: u16,
    },
}

#[derive(Serialize)]
struct WatchlistElement<'a> {
    name: &'a str,
    user_ids: &'a [&'a str],
}

#[derive(Serialize)]
struct MemberAddedData<'a> {
    user_id: &'a str,
    user_info: Option<&'a RawValue>,
}

impl ServerMessage<'_> {
    /// The frame as JSON text, ready to send.
    pub fn encode(&self) -> String {
        let frame = match *self {
            Self::ConnectionEstablished {
                socket_id,
                activity_timeout,
            } => connection(
                "pusher:connection_established",
                Data::Owned(json(&serde_json::json!({
                    "socket_id": socket_id,
                    "activity_timeout": activity_timeout,
                }))),
            ),
            Self::Error { code, message } => {
                connection("pusher:error", Data::Error { code, message })
            }
            Self::Ping => connection("pusher:ping", Data::Text("{}")),
            Self::Pong => connection("pusher:pong", Data::Text("{}")),
            Self::SubscriptionSucceeded { channel, presence } => on_channel(
                "pusher_internal:subscription_succeeded",
                channel,
                Data::Text(presence.unwrap_or("{}")),
            ),
            Self::MemberAdded {
                channel,
                user_id,
                user_info,
            } => on_channel(
                "pusher_internal:member_added",
                channel,
                Data::Owned(json(&MemberAddedData { user_id, user_info })),
            ),
            Self::MemberRemoved { channel, user_id } => on_channel(
                "pusher_internal:member_removed",
                channel,
                Data::Owned(json(&serde_json::json!({ "user_id": user_id }))),
            ),
            Self::ChannelEvent {
                event,
                channel,
                data,
            } => on_channel(event, channel, Data::Text(data)),
            Self::SigninSuccess { user_data } => {
                connection("pusher:signin_success", Data::Signin { user_data })
            }
            Self::WatchlistEvents { online, offline } => {
                let events: Vec<_> = [("online", online), ("offline", offline)]
                    .into_iter()
                    .filter(|(_, ids)| !ids.is_empty())
                    .map(|(name, user_ids)| WatchlistElement { name, user_ids })
                    .collect();
                connection(
                    "pusher_internal:watchlist_events",
                    Data::Owned(json(&serde_json::json!({ "events": events }))),
                )
            }
            Self::SubscriptionError {
                channel,
                error,
                status,
            } => on_channel(
                "pusher:subscription_error",
                channel,
                Data::Refusal {
                    kind: "AuthError",
                    error,
                    status,
                },
            ),
            Self::CacheMiss { channel } => Frame {
                event: "pusher:cache_miss",
                channel: Some(channel),
                data: None,
                user_id: None,
            },
            Self::SubscriptionCount { channel, count } => on_channel(
                "pusher_internal:subscription_count",
                channel,
                Data::Owned(json(&serde_json::json!({ "subscription_count": count }))),
            ),
            Self::ClientEvent {
                event,
                channel,
                data,
                user_id,
            } => Frame {
                event,
                channel: Some(channel),
                data: data.map(Data::Raw),
                user_id,
            },
        };
        json(&frame)
    }
}

fn connection<'a>(event: &'a str, data: Data<'a>) -> Frame<'a> {
    Frame {
        event,
        channel: None,
        data: Some(data),
        user_id: None,
    }
}

fn on_channel<'a>(event: &'a str, channel: &'a str, data: Data<'a>) -> Frame<'a> {
    Frame {
        event,
        channel: Some(channel),
        data: Some(data),
        user_id: None,
    }
}

/// Serialises values that cannot fail (no maps with non-string keys, no custom errors).
fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Any frame as a client sees it: for clients, tests and the load generator.
#[derive(Debug, Clone, Deserialize)]
pub struct InboundFrame {
    pub event: String,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub data: Option<Box<RawValue>>,
    #[serde(default)]
    pub user_id: Option<String>,
}

impl InboundFrame {
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// `data` as text: a JSON string decoded once (as pusher-js does), anything else raw.
    pub fn data_text(&self) -> Option<String> {
        self.data.as_deref().map(raw_text)
    }

    /// `data` decoded to a JSON value, undoing the double encoding when present.
    pub fn data_json(&self) -> Option<serde_json::Value> {
        let text = self.data_text()?;
        serde_json::from_str(&text)
            .ok()
            .or(Some(serde_json::Value::String(text)))
    }
}

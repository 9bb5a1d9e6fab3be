//! Client frames: parsing one text frame into a [`ClientMessage`].

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use super::raw_text;

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
        let envelope: Envelope<'_> = serde_json::from_str(text)
            .ok()
            .filter(|_| is_object(text))
            .ok_or_else(|| match serde_json::from_str::<IgnoredAny>(text) {
                Ok(_) => MessageError::NotAnObject,
                Err(_) => MessageError::InvalidJson,
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
    if !is_object(&text) {
        return Err(bad("data must be a JSON object".to_owned()));
    }
    serde_json::from_str(&text).map_err(|e| bad(e.to_string()))
}

/// Serde reads a struct from a JSON array as well (fields by position); frames and their
/// `data` are objects only.
fn is_object(json: &str) -> bool {
    json.trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{')
}

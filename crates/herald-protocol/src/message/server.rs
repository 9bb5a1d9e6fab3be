//! Server frames: [`ServerMessage`] and its exact wire encoding.

use serde::Serialize;
use serde_json::value::RawValue;

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

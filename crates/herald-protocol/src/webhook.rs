//! Webhook payloads (spec §9.2): the events and the `{"time_ms", "events"}` body.

use serde::{Deserialize, Serialize};

/// One webhook event, serialised with its `name` tag as Pusher sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum WebhookEvent {
    ChannelOccupied {
        channel: String,
    },
    ChannelVacated {
        channel: String,
    },
    MemberAdded {
        channel: String,
        user_id: String,
    },
    MemberRemoved {
        channel: String,
        user_id: String,
    },
    ClientEvent {
        channel: String,
        event: String,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        data: Option<String>,
        socket_id: String,
        /// Presence channels only.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        user_id: Option<String>,
    },
    CacheMiss {
        channel: String,
    },
    SubscriptionCount {
        channel: String,
        subscription_count: usize,
    },
}

impl WebhookEvent {
    pub fn channel(&self) -> &str {
        match self {
            Self::ChannelOccupied { channel }
            | Self::ChannelVacated { channel }
            | Self::MemberAdded { channel, .. }
            | Self::MemberRemoved { channel, .. }
            | Self::ClientEvent { channel, .. }
            | Self::CacheMiss { channel }
            | Self::SubscriptionCount { channel, .. } => channel,
        }
    }

    /// The event with a unique `id` added, as stored and sent; receivers dedupe on it.
    pub fn to_json_with_id(&self, id: &str) -> String {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            object.insert("id".into(), id.into());
        }
        value.to_string()
    }
}

/// The request body: `{"time_ms":…,"events":[…]}` from already-serialised events.
pub fn body(time_ms: u64, events: &[&str]) -> String {
    format!(
        "{{\"time_ms\":{time_ms},\"events\":[{}]}}",
        events.join(",")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_have_the_shapes_of_the_spec() {
        let cases = [
            (
                WebhookEvent::ChannelOccupied {
                    channel: "orders".into(),
                },
                r#"{"name":"channel_occupied","channel":"orders"}"#,
            ),
            (
                WebhookEvent::MemberRemoved {
                    channel: "presence-room".into(),
                    user_id: "42".into(),
                },
                r#"{"name":"member_removed","channel":"presence-room","user_id":"42"}"#,
            ),
            (
                WebhookEvent::ClientEvent {
                    channel: "private-chat".into(),
                    event: "client-typing".into(),
                    data: Some(r#"{"who":"Ada"}"#.into()),
                    socket_id: "123.456".into(),
                    user_id: None,
                },
                r#"{"name":"client_event","channel":"private-chat","event":"client-typing","data":"{\"who\":\"Ada\"}","socket_id":"123.456"}"#,
            ),
            (
                WebhookEvent::SubscriptionCount {
                    channel: "orders".into(),
                    subscription_count: 3,
                },
                r#"{"name":"subscription_count","channel":"orders","subscription_count":3}"#,
            ),
        ];
        for (event, expected) in cases {
            let got: serde_json::Value = serde_json::to_value(&event).expect("serialises");
            let want: serde_json::Value = serde_json::from_str(expected).expect("fixture");
            assert_eq!(got, want);
        }
    }

    #[test]
    fn body_wraps_events_and_ids_are_added() {
        let event = WebhookEvent::CacheMiss {
            channel: "cache-a".into(),
        };
        let json = event.to_json_with_id("abc");
        let body = body(1_700_000_000_123, &[&json]);
        let value: serde_json::Value = serde_json::from_str(&body).expect("valid JSON");
        assert_eq!(value["time_ms"], 1_700_000_000_123u64);
        assert_eq!(value["events"][0]["id"], "abc");
        assert_eq!(value["events"][0]["name"], "cache_miss");
    }
}

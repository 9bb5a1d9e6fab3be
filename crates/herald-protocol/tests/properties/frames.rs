//! `ClientMessage::parse`: never panics, classifies errors by what the text is, and every
//! message it accepts survives re-encoding; client event `data` is relayed byte for byte.

use herald_protocol::message::{ClientEvent, Subscribe};
use herald_protocol::{ClientMessage, InboundFrame, MessageError, ServerMessage};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::json_value;

fn is_json(text: &str) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

fn event_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("pusher:ping".to_owned()),
        Just("pusher:pong".to_owned()),
        Just("pusher:subscribe".to_owned()),
        Just("pusher:unsubscribe".to_owned()),
        Just("pusher:signin".to_owned()),
        "pusher(_internal)?:[a-z_]{0,12}",
        "client-[a-z-]{0,12}",
        any::<String>(),
    ]
}

/// Frames with the right outline and anything inside.
fn frame_like() -> impl Strategy<Value = String> {
    (
        event_name(),
        proptest::option::of(json_value()),
        proptest::option::of(json_value()),
        any::<bool>(),
    )
        .prop_map(|(event, channel, data, double)| {
            let mut frame = json!({ "event": event });
            if let Some(channel) = channel {
                frame["channel"] = channel;
            }
            if let Some(data) = data {
                frame["data"] = if double {
                    Value::String(data.to_string())
                } else {
                    data
                };
            }
            frame.to_string()
        })
}

/// JSON text of a string, as a client would write it.
fn quoted(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

proptest! {
    #[test]
    fn any_text_parses_or_fails_without_panicking(text in any::<String>()) {
        match ClientMessage::parse(&text) {
            Err(MessageError::InvalidJson) => prop_assert!(!is_json(&text)),
            _ => prop_assert!(is_json(&text)),
        }
        let _ = InboundFrame::parse(&text).map(|f| f.data_json());
    }

    #[test]
    fn frame_shaped_json_parses_or_fails_without_panicking(text in frame_like()) {
        let parsed = ClientMessage::parse(&text);
        prop_assert_ne!(parsed, Err(MessageError::InvalidJson));
        let frame = InboundFrame::parse(&text);
        if let Ok(frame) = frame {
            prop_assert_eq!(frame.data.is_some(), frame.data_json().is_some());
        }
    }

    #[test]
    fn subscribe_round_trips_in_both_data_forms(
        channel in any::<String>(),
        auth in proptest::option::of(any::<String>()),
        channel_data in proptest::option::of(any::<String>()),
        double in any::<bool>(),
    ) {
        let data = json!({ "channel": channel, "auth": auth, "channel_data": channel_data });
        let data = if double { Value::String(data.to_string()) } else { data };
        let text = json!({ "event": "pusher:subscribe", "data": data }).to_string();
        let expected = ClientMessage::Subscribe(Subscribe {
            channel,
            auth: auth.filter(|a| !a.is_empty()),
            channel_data,
        });
        prop_assert_eq!(ClientMessage::parse(&text), Ok(expected));
    }

    /// Signatures are computed over `channel_data` exactly as sent (spec §4.2): an object
    /// sent unencoded keeps its own bytes, whitespace included.
    #[test]
    fn raw_channel_data_keeps_its_bytes(value in json_value(), pretty in any::<bool>()) {
        let raw = if pretty {
            serde_json::to_string_pretty(&value).expect("serialises")
        } else {
            value.to_string()
        };
        let text = format!(r#"{{"event":"pusher:subscribe","data":{{"channel":"presence-a","channel_data":{raw}}}}}"#);
        let expected = match &value {
            Value::Null => None,
            Value::String(inner) => Some(inner.clone()),
            _ => Some(raw),
        };
        let Ok(ClientMessage::Subscribe(subscribe)) = ClientMessage::parse(&text) else {
            return Err(TestCaseError::fail(format!("not a subscribe: {text}")));
        };
        prop_assert_eq!(subscribe.channel_data, expected);
    }

    #[test]
    fn unsubscribe_and_signin_round_trip(a in any::<String>(), b in any::<String>()) {
        let text = json!({ "event": "pusher:unsubscribe", "data": { "channel": a } }).to_string();
        prop_assert_eq!(
            ClientMessage::parse(&text),
            Ok(ClientMessage::Unsubscribe { channel: a.clone() })
        );
        let data = json!({ "auth": a, "user_data": b }).to_string();
        let text = json!({ "event": "pusher:signin", "data": data }).to_string();
        prop_assert_eq!(
            ClientMessage::parse(&text),
            Ok(ClientMessage::Signin { auth: a, user_data: b })
        );
    }

    /// A client event's `data` reaches the other subscribers as the same JSON text.
    #[test]
    fn client_event_data_is_relayed_verbatim(
        suffix in any::<String>(),
        channel in any::<String>(),
        value in json_value(),
        pretty in any::<bool>(),
    ) {
        let event = format!("client-{suffix}");
        let raw = if pretty {
            serde_json::to_string_pretty(&value).expect("serialises")
        } else {
            value.to_string()
        };
        let text = format!(
            r#"{{"data": {raw}, "event":{},"channel":{}}}"#,
            quoted(&event),
            quoted(&channel)
        );
        let Ok(ClientMessage::ClientEvent(received)) = ClientMessage::parse(&text) else {
            return Err(TestCaseError::fail(format!("not a client event: {text}")));
        };
        let ClientEvent { event: name, channel: on, data } = &received;
        prop_assert_eq!(name, &event);
        prop_assert_eq!(on, &channel);
        let expected = (!value.is_null()).then_some(raw.as_str());
        prop_assert_eq!(data.as_deref().map(|d| d.get()), expected);

        let relayed = ServerMessage::ClientEvent {
            event: &event,
            channel: &channel,
            data: data.as_deref(),
            user_id: Some("42"),
        }
        .encode();
        let frame = InboundFrame::parse(&relayed).expect("relayed frame parses");
        prop_assert_eq!(frame.data.as_deref().map(|d| d.get()), expected);
        prop_assert_eq!(frame.data_text(), received.data_text());
        prop_assert_eq!(frame.user_id.as_deref(), Some("42"));
    }

    #[test]
    fn errors_say_what_is_wrong(value in json_value(), event in "[a-z]{1,8}") {
        if !value.is_object() {
            prop_assert_eq!(
                ClientMessage::parse(&value.to_string()),
                Err(MessageError::NotAnObject)
            );
        }
        let text = json!({ "event": event, "data": value }).to_string();
        prop_assert_eq!(
            ClientMessage::parse(&text),
            Err(MessageError::NotAClientEvent { event: event.clone() })
        );
        let event = format!("client-{event}");
        let text = json!({ "event": event, "data": value }).to_string();
        prop_assert_eq!(
            ClientMessage::parse(&text),
            Err(MessageError::MissingChannel { event })
        );
    }
}

/// Found by `errors_say_what_is_wrong`: serde reads a struct from an array too, so
/// `["pusher:ping"]` was a ping and `{"event":"pusher:subscribe","data":["x"]}` subscribed.
#[test]
fn arrays_are_not_frames() {
    for frame in [
        r#"["pusher:ping"]"#,
        r#"["client-x","private-a",{}]"#,
        r#" ["pusher:subscribe",null,{"channel":"a"}]"#,
    ] {
        assert_eq!(
            ClientMessage::parse(frame),
            Err(MessageError::NotAnObject),
            "{frame}"
        );
    }
    for frame in [
        r#"{"event":"pusher:subscribe","data":["my-channel"]}"#,
        r#"{"event":"pusher:subscribe","data":"[\"my-channel\"]"}"#,
        r#"{"event":"pusher:unsubscribe","data":["my-channel"]}"#,
        r#"{"event":"pusher:signin","data":["k:s","{}"]}"#,
    ] {
        assert!(
            matches!(
                ClientMessage::parse(frame),
                Err(MessageError::BadData { .. })
            ),
            "{frame}"
        );
    }
}

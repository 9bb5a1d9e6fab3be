//! One WebSocket text frame through `ClientMessage::parse` and `InboundFrame::parse`: no
//! panic, errors agree with JSON validity, only objects are accepted, every accepted message
//! survives re-encoding, and a relayed client event keeps its `data` byte for byte.
#![no_main]

use herald_protocol::message::{ClientEvent, Subscribe};
use herald_protocol::{ClientMessage, InboundFrame, MessageError, ServerMessage};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde_json::json;
use serde_json::value::RawValue;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check_inbound(text);
    let is_json = serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok();
    match ClientMessage::parse(text) {
        Err(MessageError::InvalidJson) => assert!(!is_json, "valid JSON called invalid"),
        Err(error) => {
            assert!(is_json, "{error} for text that is not JSON");
            let _ = error.to_string();
        }
        Ok(message) => {
            assert!(is_json, "accepted text that is not JSON");
            let first = text
                .trim_start_matches([' ', '\t', '\n', '\r'])
                .chars()
                .next();
            assert_eq!(first, Some('{'), "accepted a frame that is not an object");
            round_trip(&message);
        }
    }
});

/// Re-encodes what was parsed, in the plain and the double-encoded `data` forms, and
/// parses it again: the same message must come back.
fn round_trip(message: &ClientMessage) {
    match message {
        ClientMessage::Ping => same(json!({"event": "pusher:ping"}), message),
        ClientMessage::Pong => same(json!({"event": "pusher:pong", "data": {}}), message),
        ClientMessage::Subscribe(Subscribe {
            channel,
            auth,
            channel_data,
        }) => with_data(
            "pusher:subscribe",
            json!({"channel": channel, "auth": auth, "channel_data": channel_data}),
            message,
        ),
        ClientMessage::Unsubscribe { channel } => {
            with_data("pusher:unsubscribe", json!({"channel": channel}), message)
        }
        ClientMessage::Signin { auth, user_data } => with_data(
            "pusher:signin",
            json!({"auth": auth, "user_data": user_data}),
            message,
        ),
        ClientMessage::ClientEvent(event) => client_event(event, message),
        ClientMessage::UnknownPusher(event) => same(json!({"event": event}), message),
    }
}

fn with_data(event: &str, data: serde_json::Value, message: &ClientMessage) {
    same(json!({"event": event, "data": data}), message);
    same(json!({"event": event, "data": data.to_string()}), message);
}

fn same(frame: serde_json::Value, message: &ClientMessage) {
    let text = frame.to_string();
    let again = ClientMessage::parse(&text);
    assert_eq!(again.as_ref(), Ok(message), "re-encoded as {text}");
}

#[derive(Serialize)]
struct Frame<'a> {
    event: &'a str,
    channel: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a RawValue>,
}

/// A client event re-encodes to itself, and the frame the server relays carries the same
/// event, channel and `data` text, with the sender's `user_id`.
fn client_event(event: &ClientEvent, message: &ClientMessage) {
    let frame = Frame {
        event: &event.event,
        channel: &event.channel,
        data: event.data.as_deref(),
    };
    let text = serde_json::to_string(&frame).expect("a frame serialises");
    assert_eq!(ClientMessage::parse(&text).as_ref(), Ok(message), "{text}");

    let relayed = ServerMessage::ClientEvent {
        event: &event.event,
        channel: &event.channel,
        data: event.data.as_deref(),
        user_id: Some("42"),
    }
    .encode();
    let inbound = InboundFrame::parse(&relayed).expect("relayed frame parses");
    assert_eq!(inbound.event, event.event);
    assert_eq!(inbound.channel.as_deref(), Some(event.channel.as_str()));
    assert_eq!(inbound.user_id.as_deref(), Some("42"));
    assert_eq!(
        inbound.data.as_deref().map(RawValue::get),
        event.data.as_deref().map(RawValue::get),
        "data changed in relay: {relayed}"
    );
    assert_eq!(inbound.data_text(), event.data_text());
    assert_eq!(
        event.data_len(),
        event.data.as_deref().map_or(0, |d| d.get().len())
    );
}

/// The client-side decoder never panics, and a present `data` always has a text form.
fn check_inbound(text: &str) {
    if let Ok(frame) = InboundFrame::parse(text) {
        assert_eq!(frame.data.is_some(), frame.data_text().is_some());
        assert_eq!(frame.data.is_some(), frame.data_json().is_some());
    }
}

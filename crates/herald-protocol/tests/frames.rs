//! Every frame of the spec as a fixture: client frames decode to the right message, server
//! messages encode to the spec's JSON (compared as JSON values, key order being irrelevant).

use herald_protocol::message::{ClientEvent, Subscribe};
use herald_protocol::{ClientMessage, InboundFrame, MessageError, ServerMessage};
use serde_json::Value;
use serde_json::value::RawValue;

fn parse(text: &str) -> ClientMessage {
    ClientMessage::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Parses a frame, also decoding a double-encoded `data` so inner key order is irrelevant.
fn normalized(text: &str) -> Value {
    let mut value: Value = serde_json::from_str(text).expect("frame is JSON");
    if let Some(Value::String(inner)) = value.get("data")
        && let Ok(decoded) = serde_json::from_str::<Value>(inner)
    {
        value["data"] = serde_json::json!({ "double_encoded": decoded });
    }
    value
}

fn same_json(encoded: &str, fixture: &str) {
    let (a, b) = (normalized(encoded), normalized(fixture));
    assert_eq!(a, b, "\n encoded: {encoded}\n fixture: {fixture}");
}

fn raw(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_owned()).expect("raw JSON")
}

#[test]
fn pings_in_every_data_form() {
    for frame in [
        r#"{"event":"pusher:ping","data":{}}"#,
        r#"{"event":"pusher:ping","data":""}"#,
        r#"{"event":"pusher:ping","data":null}"#,
        r#"{"event":"pusher:ping"}"#,
    ] {
        assert_eq!(parse(frame), ClientMessage::Ping, "{frame}");
    }
    assert_eq!(
        parse(r#"{"event":"pusher:pong","data":{}}"#),
        ClientMessage::Pong
    );
    assert_eq!(
        parse(r#"{"event":"pusher:pong","data":""}"#),
        ClientMessage::Pong
    );
}

#[test]
fn subscribe_variants_of_spec_3_2() {
    let public = |auth: Option<&str>| {
        ClientMessage::Subscribe(Subscribe {
            channel: "my-channel".into(),
            auth: auth.map(Into::into),
            channel_data: None,
        })
    };
    assert_eq!(
        parse(r#"{"event":"pusher:subscribe","data":{"auth":"","channel":"my-channel"}}"#),
        public(None)
    );
    assert_eq!(
        parse(r#"{"event":"pusher:subscribe","data":{"channel":"my-channel"}}"#),
        public(None)
    );
    assert_eq!(
        parse(r#"{"event":"pusher:subscribe","data":"{\"channel\":\"my-channel\"}"}"#),
        public(None)
    );
    let presence = parse(
        r#"{"event":"pusher:subscribe","data":{"auth":"app-key:fed5","channel_data":"{\"user_id\":\"42\",\"user_info\":{\"name\":\"Ada\"}}","channel":"presence-room"}}"#,
    );
    assert_eq!(
        presence,
        ClientMessage::Subscribe(Subscribe {
            channel: "presence-room".into(),
            auth: Some("app-key:fed5".into()),
            channel_data: Some(r#"{"user_id":"42","user_info":{"name":"Ada"}}"#.into()),
        })
    );
    assert_eq!(
        parse(
            r##"{"event":"pusher:subscribe","data":{"auth":"","channel":"#server-to-user-42"}}"##
        ),
        ClientMessage::Subscribe(Subscribe {
            channel: "#server-to-user-42".into(),
            auth: None,
            channel_data: None,
        })
    );
}

#[test]
fn unsubscribe_signin_and_unknown_events() {
    assert_eq!(
        parse(r#"{"event":"pusher:unsubscribe","data":{"channel":"my-channel"}}"#),
        ClientMessage::Unsubscribe {
            channel: "my-channel".into()
        }
    );
    assert_eq!(
        parse(
            r#"{"event":"pusher:signin","data":{"auth":"app-key:d8","user_data":"{\"id\":\"42\"}"}}"#
        ),
        ClientMessage::Signin {
            auth: "app-key:d8".into(),
            user_data: r#"{"id":"42"}"#.into()
        }
    );
    assert_eq!(
        parse(r#"{"event":"pusher:whatever","data":{}}"#),
        ClientMessage::UnknownPusher("pusher:whatever".into())
    );
}

#[test]
fn client_events_keep_data_as_received() {
    let object =
        parse(r#"{"event":"client-typing","data":{"who":"Ada"},"channel":"private-chat"}"#);
    assert_eq!(
        object,
        ClientMessage::ClientEvent(ClientEvent {
            event: "client-typing".into(),
            channel: "private-chat".into(),
            data: Some(raw(r#"{"who":"Ada"}"#)),
        })
    );
    let string =
        parse(r#"{"event":"client-typing","data":"{\"who\":\"Ada\"}","channel":"private-chat"}"#);
    let ClientMessage::ClientEvent(event) = string else {
        panic!("client event expected");
    };
    assert_eq!(
        event.data.as_deref().map(RawValue::get),
        Some(r#""{\"who\":\"Ada\"}""#)
    );
}

#[test]
fn bad_frames_are_named() {
    let cases = [
        ("{not json", MessageError::InvalidJson),
        ("", MessageError::InvalidJson),
        ("[1,2]", MessageError::NotAnObject),
        ("42", MessageError::NotAnObject),
        (r#"{"data":{}}"#, MessageError::NotAnObject),
        (r#"{"event":7}"#, MessageError::NotAnObject),
    ];
    for (frame, expected) in cases {
        assert_eq!(ClientMessage::parse(frame), Err(expected), "{frame}");
    }
    for frame in [
        r#"{"event":"pusher:subscribe","data":{}}"#,
        r#"{"event":"pusher:subscribe","data":7}"#,
        r#"{"event":"pusher:subscribe"}"#,
        r#"{"event":"pusher:subscribe","data":{"channel":5}}"#,
        r#"{"event":"pusher:unsubscribe","data":[]}"#,
        r#"{"event":"pusher:signin","data":{"auth":"k:s"}}"#,
    ] {
        assert!(
            matches!(
                ClientMessage::parse(frame),
                Err(MessageError::BadData { .. })
            ),
            "{frame}"
        );
    }
    assert!(matches!(
        ClientMessage::parse(r#"{"event":"client-x","data":{}}"#),
        Err(MessageError::MissingChannel { .. })
    ));
    assert!(matches!(
        ClientMessage::parse(r#"{"event":"hello","data":{}}"#),
        Err(MessageError::NotAClientEvent { .. })
    ));
}

#[test]
fn server_frames_of_the_spec() {
    let established = ServerMessage::ConnectionEstablished {
        socket_id: "123.456",
        activity_timeout: 120,
    }
    .encode();
    same_json(
        &established,
        r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"123.456\",\"activity_timeout\":120}"}"#,
    );
    same_json(
        &ServerMessage::Error {
            code: Some(4001),
            message: "Application does not exist",
        }
        .encode(),
        r#"{"event":"pusher:error","data":{"code":4001,"message":"Application does not exist"}}"#,
    );
    same_json(
        &ServerMessage::Error {
            code: None,
            message: "Existing subscription to channel test-channel",
        }
        .encode(),
        r#"{"event":"pusher:error","data":{"code":null,"message":"Existing subscription to channel test-channel"}}"#,
    );
    same_json(
        &ServerMessage::Pong.encode(),
        r#"{"event":"pusher:pong","data":"{}"}"#,
    );
    same_json(
        &ServerMessage::Ping.encode(),
        r#"{"event":"pusher:ping","data":"{}"}"#,
    );
    same_json(
        &ServerMessage::SubscriptionSucceeded {
            channel: "my-channel",
            presence: None,
        }
        .encode(),
        r#"{"event":"pusher_internal:subscription_succeeded","channel":"my-channel","data":"{}"}"#,
    );
    same_json(
        &ServerMessage::SubscriptionSucceeded {
            channel: "presence-room",
            presence: Some(r#"{"presence":{"ids":["42"],"hash":{"42":{"name":"Ada"}},"count":1}}"#),
        }
        .encode(),
        r#"{"event":"pusher_internal:subscription_succeeded","channel":"presence-room","data":"{\"presence\":{\"ids\":[\"42\"],\"hash\":{\"42\":{\"name\":\"Ada\"}},\"count\":1}}"}"#,
    );
    let info = raw(r#"{"name":"Bob"}"#);
    same_json(
        &ServerMessage::MemberAdded {
            channel: "presence-room",
            user_id: "7",
            user_info: Some(&info),
        }
        .encode(),
        r#"{"event":"pusher_internal:member_added","channel":"presence-room","data":"{\"user_id\":\"7\",\"user_info\":{\"name\":\"Bob\"}}"}"#,
    );
    same_json(
        &ServerMessage::MemberRemoved {
            channel: "presence-room",
            user_id: "7",
        }
        .encode(),
        r#"{"event":"pusher_internal:member_removed","channel":"presence-room","data":"{\"user_id\":\"7\"}"}"#,
    );
    same_json(
        &ServerMessage::ChannelEvent {
            event: "order-updated",
            channel: "orders",
            data: r#"{"id":7}"#,
        }
        .encode(),
        r#"{"event":"order-updated","channel":"orders","data":"{\"id\":7}"}"#,
    );
    let data = raw(r#"{"who":"Ada"}"#);
    same_json(
        &ServerMessage::ClientEvent {
            event: "client-typing",
            channel: "presence-room",
            data: Some(&data),
            user_id: Some("42"),
        }
        .encode(),
        r#"{"event":"client-typing","channel":"presence-room","data":{"who":"Ada"},"user_id":"42"}"#,
    );
}

#[test]
fn user_frames_of_the_spec() {
    let user_data = r#"{"id":"42","user_info":{"name":"Ada"},"watchlist":["7","9"]}"#;
    let signin = ServerMessage::SigninSuccess { user_data }.encode();
    same_json(
        &signin,
        r#"{"event":"pusher:signin_success","data":{"user_data":"{\"id\":\"42\",\"user_info\":{\"name\":\"Ada\"},\"watchlist\":[\"7\",\"9\"]}"}}"#,
    );
    same_json(
        &ServerMessage::WatchlistEvents {
            online: &["7"],
            offline: &["9"],
        }
        .encode(),
        r#"{"event":"pusher_internal:watchlist_events","data":"{\"events\":[{\"name\":\"online\",\"user_ids\":[\"7\"]},{\"name\":\"offline\",\"user_ids\":[\"9\"]}]}"}"#,
    );
    same_json(
        &ServerMessage::WatchlistEvents {
            online: &[],
            offline: &["9"],
        }
        .encode(),
        r#"{"event":"pusher_internal:watchlist_events","data":"{\"events\":[{\"name\":\"offline\",\"user_ids\":[\"9\"]}]}"}"#,
    );
}

#[test]
fn soketi_style_subscription_error() {
    same_json(
        &ServerMessage::SubscriptionError {
            channel: "private-orders",
            error: "The connection is unauthorized.",
            status: 401,
        }
        .encode(),
        r#"{"event":"pusher:subscription_error","channel":"private-orders","data":{"type":"AuthError","error":"The connection is unauthorized.","status":401}}"#,
    );
}

#[test]
fn cache_and_count_frames_of_the_spec() {
    same_json(
        &ServerMessage::CacheMiss {
            channel: "cache-prices",
        }
        .encode(),
        r#"{"event":"pusher:cache_miss","channel":"cache-prices"}"#,
    );
    same_json(
        &ServerMessage::SubscriptionCount {
            channel: "my-channel",
            count: 3,
        }
        .encode(),
        r#"{"event":"pusher_internal:subscription_count","channel":"my-channel","data":"{\"subscription_count\":3}"}"#,
    );
}

#[test]
fn connection_level_frames_have_no_channel_key() {
    for frame in [
        ServerMessage::Pong.encode(),
        ServerMessage::Ping.encode(),
        ServerMessage::Error {
            code: None,
            message: "x",
        }
        .encode(),
        ServerMessage::ConnectionEstablished {
            socket_id: "1.2",
            activity_timeout: 1,
        }
        .encode(),
        ServerMessage::SigninSuccess { user_data: "{}" }.encode(),
        ServerMessage::WatchlistEvents {
            online: &["1"],
            offline: &[],
        }
        .encode(),
    ] {
        assert!(!frame.contains("\"channel\""), "{frame}");
    }
}

#[test]
fn relayed_data_is_byte_exact() {
    let data = "{ \"odd\" :\t\"spacing\", \"ünï\": \"\\u00e9\" }";
    let frame = ServerMessage::ChannelEvent {
        event: "e",
        channel: "c",
        data,
    }
    .encode();
    let inbound = InboundFrame::parse(&frame).expect("frame parses");
    assert_eq!(inbound.data_text().as_deref(), Some(data));
}

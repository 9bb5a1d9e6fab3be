use serde_json::value::RawValue;

use super::*;
use crate::connection::outbox::{OutboxReceiver, outbox};

fn name(text: &str) -> ChannelName {
    ChannelName::parse(text, 200).expect("valid name")
}

fn socket(n: u64) -> (SocketId, Outbox, OutboxReceiver) {
    let (tx, rx) = outbox(16);
    (SocketId::from_parts(n, n), tx, rx)
}

fn member(id: &str) -> Member {
    Member {
        user_id: id.into(),
        user_info: Some(RawValue::from_string(format!(r#"{{"n":"{id}"}}"#)).expect("json")),
    }
}

fn drain(rx: &mut OutboxReceiver) -> Vec<String> {
    let mut frames = Vec::new();
    while let Ok(frame) = rx.frames.try_recv() {
        frames.push(frame.to_string());
    }
    frames
}

#[test]
fn occupancy_changes_only_on_first_and_last_socket() {
    let hub = Hub::default();
    let chan = name("orders");
    let (a, a_out, _a_rx) = socket(1);
    let (b, b_out, _b_rx) = socket(2);
    let first = hub.subscribe("1", &chan, &a, &a_out, None, 100);
    assert_eq!(
        first,
        Ok(Subscribed {
            subscription_count: 1,
            occupied: true,
            member_added: false
        })
    );
    let second = hub
        .subscribe("1", &chan, &b, &b_out, None, 100)
        .expect("ok");
    assert!(!second.occupied);
    assert_eq!(second.subscription_count, 2);
    assert!(!hub.unsubscribe("1", &chan, &a, None).expect("held").vacated);
    assert!(hub.unsubscribe("1", &chan, &a, None).is_none());
    assert!(hub.unsubscribe("1", &chan, &b, None).expect("held").vacated);
    assert!(hub.channel("1", &chan).is_none());
}

#[test]
fn subscription_succeeded_is_queued_first_and_broadcast_skips_the_excluded_socket() {
    let hub = Hub::default();
    let chan = name("orders");
    let (a, a_out, mut a_rx) = socket(1);
    let (b, b_out, mut b_rx) = socket(2);
    hub.subscribe("1", &chan, &a, &a_out, None, 100)
        .expect("ok");
    hub.subscribe("1", &chan, &b, &b_out, None, 100)
        .expect("ok");
    let delivered = hub.broadcast("1", &chan, &Frame::from("event"), Some(&a));
    assert_eq!(delivered, 1);
    assert_eq!(drain(&mut a_rx).len(), 1, "only subscription_succeeded");
    let b_frames = drain(&mut b_rx);
    assert!(b_frames[0].contains("subscription_succeeded"));
    assert_eq!(b_frames[1], "event");
    assert_eq!(
        hub.broadcast("2", &chan, &Frame::from("x"), None),
        0,
        "apps are separate"
    );
}

#[test]
fn presence_counts_users_and_refuses_past_the_limit() {
    let hub = Hub::default();
    let chan = name("presence-room");
    let (a, a_out, mut a_rx) = socket(1);
    let (a2, a2_out, _) = socket(2);
    let (b, b_out, _) = socket(3);
    let first = hub
        .subscribe("1", &chan, &a, &a_out, Some(&member("42")), 1)
        .expect("ok");
    assert!(first.member_added);
    assert!(drain(&mut a_rx)[0].contains(r#"\"count\":1"#));
    let same_user = hub
        .subscribe("1", &chan, &a2, &a2_out, Some(&member("42")), 1)
        .expect("same user always fits");
    assert!(!same_user.member_added);
    assert_eq!(
        hub.subscribe("1", &chan, &b, &b_out, Some(&member("7")), 1),
        Err(Refused::PresenceFull { max: 1 })
    );
    let summary = hub.channel("1", &chan).expect("occupied");
    assert_eq!(
        (summary.subscription_count, summary.user_count),
        (2, Some(1))
    );
    assert_eq!(hub.user_ids("1", &chan), vec!["42".to_owned()]);
    let left = hub.unsubscribe("1", &chan, &a, Some("42")).expect("held");
    assert!(!left.member_removed);
    let left = hub.unsubscribe("1", &chan, &a2, Some("42")).expect("held");
    assert!(left.member_removed && left.vacated);
}

#[test]
fn listing_filters_by_app_and_prefix() {
    let hub = Hub::default();
    let (a, a_out, _rx) = socket(1);
    for channel in ["presence-a", "presence-b", "orders"] {
        hub.subscribe("1", &name(channel), &a, &a_out, Some(&member("1")), 100)
            .expect("ok");
    }
    hub.subscribe("2", &name("presence-c"), &a, &a_out, None, 100)
        .expect("ok");
    let names: Vec<String> = hub
        .channels("1", "presence-")
        .into_iter()
        .map(|c| c.name.to_string())
        .collect();
    assert_eq!(names, vec!["presence-a", "presence-b"]);
    assert_eq!(hub.channels("1", "").len(), 3);
}

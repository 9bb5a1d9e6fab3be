use std::time::{Duration, Instant};

use serde_json::value::RawValue;

use super::*;
use crate::outbox::{OutboxReceiver, outbox};

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

fn subscribe(
    hub: &Hub,
    app: &str,
    channel: &ChannelName,
    socket: &SocketId,
    outbox: &Outbox,
    member: Option<&Member>,
    max_members: usize,
) -> Result<Subscribed, Refused> {
    hub.subscribe(Subscription {
        app,
        channel,
        socket,
        outbox,
        member,
        max_members,
        roster: None,
    })
}

fn drain(rx: &mut OutboxReceiver) -> Vec<String> {
    let mut frames = Vec::new();
    while let Some(frame) = rx.pop() {
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
    let first = subscribe(&hub, "1", &chan, &a, &a_out, None, 100);
    assert_eq!(
        first,
        Ok(Subscribed {
            subscription_count: 1,
            occupied: true,
            member_added: false,
            cache_miss: false,
            count_due: true,
        })
    );
    let second = subscribe(&hub, "1", &chan, &b, &b_out, None, 100).expect("ok");
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
    subscribe(&hub, "1", &chan, &a, &a_out, None, 100).expect("ok");
    subscribe(&hub, "1", &chan, &b, &b_out, None, 100).expect("ok");
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
    let first = subscribe(&hub, "1", &chan, &a, &a_out, Some(&member("42")), 1).expect("ok");
    assert!(first.member_added);
    assert!(drain(&mut a_rx)[0].contains(r#"\"count\":1"#));
    let same_user = subscribe(&hub, "1", &chan, &a2, &a2_out, Some(&member("42")), 1)
        .expect("same user always fits");
    assert!(!same_user.member_added);
    assert_eq!(
        subscribe(&hub, "1", &chan, &b, &b_out, Some(&member("7")), 1),
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
        subscribe(
            &hub,
            "1",
            &name(channel),
            &a,
            &a_out,
            Some(&member("1")),
            100,
        )
        .expect("ok");
    }
    subscribe(&hub, "2", &name("presence-c"), &a, &a_out, None, 100).expect("ok");
    let names: Vec<String> = hub
        .channels("1", "presence-")
        .into_iter()
        .map(|c| c.name.to_string())
        .collect();
    assert_eq!(names, vec!["presence-a", "presence-b"]);
    assert_eq!(hub.channels("1", "").len(), 3);
}

#[test]
fn cache_channels_replay_the_last_event_or_report_a_miss() {
    let hub = Hub::default();
    let chan = name("cache-prices");
    let (a, a_out, mut a_rx) = socket(1);
    let first = subscribe(&hub, "1", &chan, &a, &a_out, None, 100).expect("ok");
    assert!(first.cache_miss);
    let frames = drain(&mut a_rx);
    assert!(frames[1].contains("pusher:cache_miss"), "{frames:?}");
    let frame = Frame::from("cached-frame");
    hub.remember(
        "1",
        &chan,
        CachedEvent::new(frame, "e", "d", Duration::from_secs(60)),
    );
    let (b, b_out, mut b_rx) = socket(2);
    let second = subscribe(&hub, "1", &chan, &b, &b_out, None, 100).expect("ok");
    assert!(!second.cache_miss);
    assert_eq!(drain(&mut b_rx)[1], "cached-frame");
    let cached = hub.cached("1", &chan).expect("cached");
    assert_eq!((cached.event.as_str(), cached.data.as_str()), ("e", "d"));
    hub.remember(
        "1",
        &chan,
        CachedEvent::new(Frame::from("x"), "e", "d", Duration::ZERO),
    );
    assert!(hub.cached("1", &chan).is_none(), "expired");
    hub.tick(Instant::now());
    assert!(hub.shards.each().all(|shard| shard.caches.is_empty()));
}

#[test]
fn counts_above_a_hundred_are_throttled_then_flushed_by_tick() {
    let hub = Hub::default();
    let chan = name("big");
    let mut receivers = Vec::new();
    let mut due = Vec::new();
    for n in 0..102 {
        let (id, out, rx) = socket(n);
        due.push(
            subscribe(&hub, "1", &chan, &id, &out, None, 100)
                .expect("ok")
                .count_due,
        );
        receivers.push(rx);
    }
    assert!(
        due[..100].iter().all(|d| *d),
        "up to 100 subscribers every change is due"
    );
    assert!(
        !due[100] && !due[101],
        "past 100, changes within 5 s are throttled"
    );
    assert!(hub.tick(Instant::now()).is_empty(), "not yet");
    let later = hub.tick(Instant::now() + COUNT_INTERVAL);
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].2, 102);
    assert!(
        hub.tick(Instant::now() + COUNT_INTERVAL * 3).is_empty(),
        "flushed once"
    );
    let presence = name("presence-p");
    let (id, out, _rx) = socket(999);
    let member = member("1");
    let joined = subscribe(&hub, "1", &presence, &id, &out, Some(&member), 100).expect("ok");
    assert!(!joined.count_due, "presence channels have no count events");
}

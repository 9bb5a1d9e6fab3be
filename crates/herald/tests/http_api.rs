//! The HTTP API (spec §8) with signed requests, against a real server on port 0.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use herald_protocol::auth::signed_query;
use serde_json::json;
use support::*;

const QUIET: Duration = Duration::from_millis(200);

#[tokio::test]
async fn trigger_relays_data_byte_for_byte_to_every_channel() {
    let server = TestServer::start().await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.subscribe("orders").await;
    b.subscribe("public-two").await;
    let data = "{ \"odd\" :\t\"spacing\", \"ünï\": \"\\u00e9\" }";
    let answer = server
        .api()
        .trigger(&["orders", "public-two", "orders"], "order-updated", data)
        .await;
    assert_eq!(answer, json!({}));
    for client in [&mut a, &mut b] {
        let event = client.expect("order-updated").await;
        assert_eq!(event.data_text().as_deref(), Some(data));
    }
    a.expect_silence(QUIET).await; // duplicates in `channels` deliver once
}

#[tokio::test]
async fn single_channel_form_and_socket_id_exclusion() {
    let server = TestServer::start().await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.subscribe("c").await;
    b.subscribe("c").await;
    let body = json!({"name":"e","data":"x","channel":"c","socket_id":a.socket_id});
    let (status, text) = server.api().post("/events", &body).await;
    assert_eq!((status, text.as_str()), (200, "{}"));
    b.expect("e").await;
    a.expect_silence(QUIET).await;
}

#[tokio::test]
async fn info_reports_user_and_subscription_counts() {
    let server = TestServer::start().await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.subscribe_presence("presence-r", r#"{"user_id":"1"}"#)
        .await;
    b.subscribe_presence("presence-r", r#"{"user_id":"1"}"#)
        .await;
    a.subscribe("orders").await;
    let body = json!({"name":"e","data":"x","channels":["presence-r","orders","empty"],"info":"user_count,subscription_count"});
    let (status, text) = server.api().post("/events", &body).await;
    assert_eq!(status, 200);
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        answer,
        json!({"channels":{
            "presence-r":{"user_count":1,"subscription_count":2},
            "orders":{"subscription_count":1},
            "empty":{"subscription_count":0}
        }})
    );
}

#[tokio::test]
async fn batch_delivers_in_order_and_answers_info_per_event() {
    let server = TestServer::start().await;
    let mut a = server.client().await;
    a.subscribe("c").await;
    a.subscribe_presence("presence-r", r#"{"user_id":"1"}"#)
        .await;
    let body = json!({"batch":[
        {"channel":"c","name":"first","data":"1"},
        {"channel":"presence-r","name":"second","data":"2","info":"user_count"},
    ]});
    let (status, text) = server.api().post("/batch_events", &body).await;
    assert_eq!(status, 200, "{text}");
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer, json!({"batch":[{},{"user_count":1}]}));
    assert_eq!(a.expect("first").await.data_text().as_deref(), Some("1"));
    assert_eq!(a.expect("second").await.data_text().as_deref(), Some("2"));
    let (_, text) = server
        .api()
        .post(
            "/batch_events",
            &json!({"batch":[{"channel":"c","name":"x","data":"y"}]}),
        )
        .await;
    assert_eq!(text, "{}");
}

#[tokio::test]
async fn a_batch_with_one_bad_event_delivers_nothing() {
    let server = TestServer::start().await;
    let mut a = server.client().await;
    a.subscribe("c").await;
    let body = json!({"batch":[
        {"channel":"c","name":"ok","data":"1"},
        {"channel":"bad channel","name":"x","data":"2"},
    ]});
    let (status, _) = server.api().post("/batch_events", &body).await;
    assert_eq!(status, 400);
    let eleven: Vec<_> = (0..11)
        .map(|n| json!({"channel":"c","name":"e","data":n.to_string()}))
        .collect();
    let (status, _) = server
        .api()
        .post("/batch_events", &json!({"batch":eleven}))
        .await;
    assert_eq!(status, 400);
    let (status, _) = server
        .api()
        .post(
            "/batch_events",
            &json!({"batch":[{"channel":"c","name":"e","data":"x".repeat(10_241)}]}),
        )
        .await;
    assert_eq!(status, 413);
    a.expect_silence(QUIET).await;
}

#[tokio::test]
async fn channel_listing_and_details() {
    let server = TestServer::start().await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.subscribe("orders").await;
    a.subscribe_presence("presence-r", r#"{"user_id":"1"}"#)
        .await;
    b.subscribe_presence("presence-r", r#"{"user_id":"2"}"#)
        .await;
    b.subscribe_presence("presence-s", r#"{"user_id":"2"}"#)
        .await;
    let api = server.api();
    assert_eq!(
        api.get_json("/channels", &[]).await,
        json!({"channels":{"orders":{},"presence-r":{},"presence-s":{}}})
    );
    assert_eq!(
        api.get_json(
            "/channels",
            &[("filter_by_prefix", "presence-"), ("info", "user_count")]
        )
        .await,
        json!({"channels":{"presence-r":{"user_count":2},"presence-s":{"user_count":1}}})
    );
    assert_eq!(
        api.get_json(
            "/channels/presence-r",
            &[("info", "user_count,subscription_count")]
        )
        .await,
        json!({"occupied":true,"user_count":2,"subscription_count":2})
    );
    assert_eq!(
        api.get_json("/channels/orders", &[("info", "subscription_count")])
            .await,
        json!({"occupied":true,"subscription_count":1})
    );
    assert_eq!(
        api.get_json("/channels/nobody", &[]).await,
        json!({"occupied":false})
    );
    assert_eq!(api.get("/channels", &[("info", "user_count")]).await.0, 400);
    assert_eq!(
        api.get("/channels/orders", &[("info", "user_count")])
            .await
            .0,
        400
    );
    assert_eq!(api.get("/channels/orders/users", &[]).await.0, 400);
    assert_eq!(api.get("/channels/bad%20name", &[]).await.0, 400);
}

#[tokio::test]
async fn invalid_trigger_bodies_are_400_and_big_data_is_413() {
    let server = TestServer::start().await;
    let api = server.api();
    let hundred_and_one: Vec<String> = (0..101).map(|n| format!("c{n}")).collect();
    let cases = [
        json!({"data":"x","channels":["c"]}),
        json!({"name":"e","channels":["c"]}),
        json!({"name":"e","data":"x"}),
        json!({"name":"e","data":"x","channels":[]}),
        json!({"name":"e","data":"x","channels":hundred_and_one}),
        json!({"name":"e","data":"x","channels":["bad name"]}),
        json!({"name":"","data":"x","channels":["c"]}),
        json!({"name":"x".repeat(201),"data":"x","channels":["c"]}),
        json!({"name":"pusher:fake","data":"x","channels":["c"]}),
        json!({"name":"e","data":"x","channels":["c"],"socket_id":"abc"}),
        json!({"name":"e","data":"x","channels":["private-encrypted-a","b"]}),
        json!(["not", "an", "object"]),
    ];
    for body in cases {
        let (status, text) = api.post("/events", &body).await;
        assert_eq!(status, 400, "{body}: {text}");
        assert!(!text.trim().is_empty());
    }
    let path = api.path("/events");
    let (status, _) = api.post_raw(&path, b"{not json", now()).await;
    assert_eq!(status, 400);
    let big = json!({"name":"e","data":"x".repeat(10_241),"channels":["c"]});
    assert_eq!(api.post("/events", &big).await.0, 413);
    let fits = json!({"name":"e","data":"x".repeat(10_240),"channels":["c"]});
    assert_eq!(api.post("/events", &fits).await.0, 200);
    // Non-string data is accepted and serialised compactly.
    let mut client = server.client().await;
    client.subscribe("c").await;
    let object = json!({"name":"e","data":{"a": [1, 2]},"channels":["c"]});
    assert_eq!(api.post("/events", &object).await.0, 200);
    assert_eq!(
        client.expect("e").await.data_text().as_deref(),
        Some(r#"{"a":[1,2]}"#)
    );
}

#[tokio::test]
async fn signatures_timestamps_and_md5_are_enforced() {
    let server = TestServer::start().await;
    let api = server.api();
    let path = api.path("/events");
    let body = br#"{"name":"e","data":"x","channels":["c"]}"#;
    assert_eq!(api.post_raw(&path, body, now()).await.0, 200);
    assert_eq!(api.post_raw(&path, body, now() - 601).await.0, 401, "stale");
    assert_eq!(
        api.post_raw(&path, body, now() + 601).await.0,
        401,
        "future"
    );
    assert_eq!(
        api.post_raw(&path, body, now() - 590).await.0,
        200,
        "within 600 s"
    );

    let query = signed_query(KEY, SECRET, "POST", &path, body, now(), &[]);
    let (status, text) = api
        .send_post(
            &path,
            &query,
            br#"{"name":"e","data":"y","channels":["c"]}"#,
        )
        .await;
    assert_eq!(status, 401, "body changed after signing: {text}");
    assert!(text.contains("body_md5"));

    let query = signed_query(KEY, "wrong-secret", "POST", &path, body, now(), &[]);
    let (status, text) = api.send_post(&path, &query, body).await;
    assert_eq!(status, 401);
    assert!(text.contains("Invalid signature"), "{text}");
    assert!(!text.contains(SECRET));

    let query = signed_query("app-key-2", "secret-2", "POST", &path, body, now(), &[]);
    assert_eq!(
        api.send_post(&path, &query, body).await.0,
        401,
        "another app's key"
    );

    let unsigned = format!("auth_key={KEY}&auth_timestamp={}&auth_version=1.0", now());
    assert_eq!(api.send_post(&path, &unsigned, body).await.0, 401);
}

#[tokio::test]
async fn python_style_get_with_empty_body_md5_is_accepted() {
    let server = TestServer::start().await;
    let api = server.api();
    let path = api.path("/channels");
    let extra = vec![(
        "body_md5".to_string(),
        "d41d8cd98f00b204e9800998ecf8427e".to_string(),
    )];
    let query = signed_query(KEY, SECRET, "GET", &path, b"", now(), &extra);
    let response = reqwest::get(format!("{}{path}?{query}", api.base))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn unknown_and_disabled_apps() {
    let server = TestServer::start().await;
    let mut api = server.api();
    api.app_id = "99".into();
    assert_eq!(
        api.post("/events", &json!({"name":"e","data":"x","channel":"c"}))
            .await
            .0,
        404
    );
    api.app_id = "3".into();
    api.key = "disabled-key".into();
    api.secret = "secret-3".into();
    assert_eq!(api.get("/channels", &[]).await.0, 403);
}

#[tokio::test]
async fn a_slow_consumer_is_disconnected_without_hurting_others() {
    let server = TestServer::with_config(&format!("[server]\noutbox_capacity = 16\n{APPS}")).await;
    let mut slow = server.client().await;
    slow.subscribe("firehose").await;
    let mut healthy = server.client().await;
    healthy.subscribe("firehose").await;
    let api = server.api();
    let data = "x".repeat(10_000);
    let batch: Vec<_> = (0..10)
        .map(|_| json!({"channel":"firehose","name":"e","data":data}))
        .collect();
    // 2,000 events of 10 KB (20 MB) overflow the slow socket's kernel buffers and outbox;
    // the healthy client keeps reading.
    let reader = tokio::spawn(async move {
        let mut received = 0;
        while received < 2_000 {
            healthy.expect("e").await;
            received += 1;
        }
        healthy
    });
    for _ in 0..200 {
        let (status, _) = api.post("/batch_events", &json!({"batch":batch})).await;
        assert_eq!(status, 200);
    }
    let mut healthy = reader.await.unwrap();
    // The slow socket was closed as a slow consumer: counted, and if the close reached it
    // (it may not: its buffers were full), with 4100 after the error frame.
    assert_eq!(
        metric(&server, "herald_slow_consumers_closed_total").await,
        1.0
    );
    let mut received = 0;
    let mut close = None;
    loop {
        use tokio_tungstenite::tungstenite::Message;
        match tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut slow.ws)).await {
            Ok(Some(Ok(Message::Text(text)))) if text.contains("pusher:error") => {
                assert!(text.contains("4100"), "{text}");
            }
            Ok(Some(Ok(Message::Text(_)))) => received += 1,
            Ok(Some(Ok(Message::Close(frame)))) => close = frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => break,
            Err(_) => panic!("slow consumer was never disconnected"),
        }
    }
    assert!(received < 2_000, "slow consumer got everything: {received}");
    assert!(matches!(close, None | Some(4100)), "{close:?}");
    let info = api
        .get_json("/channels/firehose", &[("info", "subscription_count")])
        .await;
    assert_eq!(info["subscription_count"], 1);
    api.trigger(&["firehose"], "after", "ok").await;
    healthy.expect("after").await;
}

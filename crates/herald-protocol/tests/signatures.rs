//! Every signature test vector of spec §4.3, §8.2 and §9.1.

use herald_protocol::auth::{
    self, body_md5, canonical_query, channel_auth_string, parse_query, request_string,
    signin_string,
};

fn check(secret: &str, message: &str, expected: &str) {
    assert_eq!(
        auth::sign(secret, message.as_bytes()),
        expected,
        "{message}"
    );
    assert!(auth::verify(secret, message.as_bytes(), expected));
}

#[test]
fn channel_and_signin_vectors_from_pusher_docs() {
    let secret = "7ad3773142a6692b25b8";
    check(
        secret,
        &channel_auth_string("1234.1234", "private-foobar", None),
        "58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4",
    );
    check(
        secret,
        &channel_auth_string(
            "1234.1234",
            "presence-foobar",
            Some(r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#),
        ),
        "31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80",
    );
    check(
        secret,
        &signin_string("1234.1234", r#"{"id":"12345"}"#),
        "4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba",
    );
}

#[test]
fn vectors_from_the_node_sdk_tests() {
    check(
        "tofu",
        "123.456:test",
        "efa6cf7644a0b35cba36aa0f776f3cbf7bb60e95ea2696bde1dbe8403b61bd7c",
    );
    check(
        "tofu",
        r#"123.456:test:{"foo":"bar"}"#,
        "f41faf9ead2ea76772cc6b1168363057459f02499ae4d92e88229dc7f4efa2d4",
    );
    check(
        "tofu",
        &signin_string("123.456", r#"{"id":"45678"}"#),
        "f4b1fdeea7c93e32648c7230e32b172057c5623cace6cfce791c6e7035e0babd",
    );
}

#[test]
fn local_vectors_of_the_spec() {
    let secret = "app-secret";
    check(
        secret,
        "123.456:private-orders",
        "fa24923d1d5972f2c827aceb385f438a659796cd37cc4edc043128f78f18790a",
    );
    check(
        secret,
        r#"123.456:presence-room:{"user_id":"42","user_info":{"name":"Ada"}}"#,
        "fed5b1847c9e0cdaf7d3c9f70cb5cc51d4a02401d99dfbfe0b7d4427ce564440",
    );
    check(
        secret,
        r#"123.456::user::{"id":"42","user_info":{"name":"Ada"},"watchlist":["7","9"]}"#,
        "d81363f1e0e19778d171d5b8412675800855b0a46c1d40346a5d8d3d50a0335f",
    );
    assert_eq!(
        auth::auth_token("app-key", secret, "123.456:private-orders"),
        "app-key:fa24923d1d5972f2c827aceb385f438a659796cd37cc4edc043128f78f18790a"
    );
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn http_worked_example_from_pusher_docs() {
    let body = r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
    assert_eq!(
        body_md5(body.as_bytes()),
        "ec365a775a4cd0599faeb73354201b6f"
    );
    let params = pairs(&[
        ("auth_key", "278d425bdf160c739803"),
        ("auth_timestamp", "1353088179"),
        ("auth_version", "1.0"),
        ("body_md5", "ec365a775a4cd0599faeb73354201b6f"),
        ("auth_signature", "ignored"),
    ]);
    let string = request_string("post", "/apps/3/events", &params);
    assert_eq!(
        string,
        "POST\n/apps/3/events\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f"
    );
    check(
        "7ad3773142a6692b25b8",
        &string,
        "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c",
    );
}

#[test]
fn http_vectors_from_the_node_sdk_tests() {
    // The SDK test signs the body with method GET.
    assert_eq!(
        body_md5(b"example body"),
        "165d5e6d7ca8f73b3853ce45addf42fc"
    );
    let params = pairs(&[
        ("auth_key", "f00d"),
        ("auth_timestamp", "1234567890"),
        ("auth_version", "1.0"),
        ("body_md5", "165d5e6d7ca8f73b3853ce45addf42fc"),
    ]);
    check(
        "tofu",
        &request_string("GET", "/event", &params),
        "a650196dc427ebe837226f8565ca9232198c6d1b9455eaa72374a9dc0b620e7b",
    );
    let params = pairs(&[
        ("foo", "bar"),
        ("baz", "123454321"),
        ("auth_key", "f00d"),
        ("auth_timestamp", "1234567890"),
        ("auth_version", "1.0"),
    ]);
    let string = request_string("GET", "/event", &params);
    assert_eq!(
        string,
        "GET\n/event\nauth_key=f00d&auth_timestamp=1234567890&auth_version=1.0&baz=123454321&foo=bar"
    );
    check(
        "tofu",
        &string,
        "d8bdbd31911fb7400a14fbd36fd7de053494725b64400ae5856deafe304b34a9",
    );
}

#[test]
fn http_local_vectors_of_the_spec() {
    let params = parse_query(
        "auth_key=app-key&auth_timestamp=1700000000&auth_version=1.0&body_md5=d41d8cd98f00b204e9800998ecf8427e&filter_by_prefix=presence-&info=user_count&auth_signature=x",
    );
    check(
        "app-secret",
        &request_string("GET", "/apps/1/channels", &params),
        "951b8afd0d8bccbbdc941d33c3e1f5a026b422ffaf4e2aeae720bc3195c707a7",
    );
    let body = r#"{"name":"order-updated","data":"{\"id\":7}","channels":["orders"]}"#;
    assert_eq!(
        body_md5(body.as_bytes()),
        "b208d0eb40f8f562ea31ad012e7d9797"
    );
    let params = pairs(&[
        ("auth_key", "app-key"),
        ("auth_timestamp", "1700000000"),
        ("auth_version", "1.0"),
        ("body_md5", "b208d0eb40f8f562ea31ad012e7d9797"),
    ]);
    check(
        "app-secret",
        &request_string("POST", "/apps/1/events", &params),
        "1268ad6d4160d2edaac1f136a98ead6db5c6ae811f4b54e0e3e5d93d529166cf",
    );
    assert_eq!(body_md5(b""), "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(body_md5(b"{}"), "99914b932bd37a50b983c5e7c90ae93b");
}

#[test]
fn signed_query_is_verifiable_like_an_sdk_request() {
    let body = br#"{"name":"e","data":"x","channel":"c"}"#;
    let query = auth::signed_query("k", "s", "POST", "/apps/1/events", body, 1700000000, &[]);
    let params = parse_query(&query);
    let signature = &params
        .iter()
        .find(|(k, _)| k == "auth_signature")
        .expect("signed")
        .1;
    assert!(auth::verify(
        "s",
        request_string("POST", "/apps/1/events", &params).as_bytes(),
        signature
    ));
    assert!(!canonical_query(&params).contains("auth_signature"));
}

#[test]
fn webhook_body_vector() {
    check(
        "app-secret",
        r#"{"time_ms":1700000000123,"events":[{"name":"channel_occupied","channel":"orders"}]}"#,
        "9a9643f2f8b0ed829a06db8607338a30675bf728a1b21e2f5186ef85d1f2f4a8",
    );
}

//! HTTP API request signatures (spec §8.2). Input: `secret\nmethod\npath\nquery\nbody`.
//! The canonical query ignores parameter order, key case and `auth_signature`; a signature
//! verifies over its own string and fails after any one-byte change to string, signature or
//! secret; a query built by `signed_query` verifies the way the server parses it.
#![no_main]

use herald_protocol::auth::{
    self, body_md5, canonical_query, parse_query, request_string, signed_query,
};
use libfuzzer_sys::fuzz_target;

/// Names `signed_query` adds itself.
const AUTH_PARAMS: [&str; 5] = [
    "auth_key",
    "auth_timestamp",
    "auth_version",
    "body_md5",
    "auth_signature",
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.splitn(5, '\n');
    let mut next = || lines.next().unwrap_or_default();
    let (secret, method, path, query, body) = (next(), next(), next(), next(), next());
    let params = parse_query(query);
    check_canonical(&params);
    check_md5(body.as_bytes());
    check_sign_verify(secret, method, path, &params, query);
    check_signed_query(secret, method, path, &params, body.as_bytes());
});

fn check_canonical(params: &[(String, String)]) {
    let canonical = canonical_query(params);
    let mut reversed = params.to_vec();
    reversed.reverse();
    assert_eq!(canonical_query(&reversed), canonical);
    let mut rotated = params.to_vec();
    if !rotated.is_empty() {
        rotated.rotate_left(1);
    }
    assert_eq!(canonical_query(&rotated), canonical);
    let upper: Vec<_> = params
        .iter()
        .map(|(k, v)| (k.to_ascii_uppercase(), v.clone()))
        .collect();
    assert_eq!(canonical_query(&upper), canonical, "key case changed it");
    let mut with_signature = params.to_vec();
    with_signature.push(("auth_signature".into(), "ff".into()));
    with_signature.push(("Auth_Signature".into(), "ee".into()));
    assert_eq!(canonical_query(&with_signature), canonical);
}

fn check_md5(body: &[u8]) {
    let md5 = body_md5(body);
    assert_eq!(md5.len(), 32);
    assert!(md5.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    let mut changed = body.to_vec();
    changed.push(0);
    assert_ne!(body_md5(&changed), md5);
}

fn check_sign_verify(
    secret: &str,
    method: &str,
    path: &str,
    params: &[(String, String)],
    junk: &str,
) {
    let string = request_string(method, path, params);
    assert!(string.starts_with(&format!("{}\n{path}\n", method.to_ascii_uppercase())));
    let message = string.as_bytes();
    let signature = auth::sign(secret, message);
    assert_eq!(signature.len(), 64);
    assert!(auth::verify(secret, message, &signature));
    assert!(!auth::verify(&format!("{secret}x"), message, &signature));

    let at = junk.len() % message.len();
    let mut changed = message.to_vec();
    changed[at] ^= 1 << (junk.len() % 8);
    assert!(
        !auth::verify(secret, &changed, &signature),
        "byte {at} changed"
    );

    let mut forged = signature.clone().into_bytes();
    let at = path.len() % forged.len();
    forged[at] = if forged[at] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).expect("hex is ASCII");
    assert!(
        !auth::verify(secret, message, &forged),
        "signature char {at}"
    );
    assert!(!auth::verify(secret, message, &signature[..62]));
    if !junk.eq_ignore_ascii_case(&signature) {
        assert!(!auth::verify(secret, message, junk));
    }
}

/// A query an SDK builds from these parameters passes the server's checks. SDKs do not
/// escape values, so only parameters that survive the trip unescaped take part.
fn check_signed_query(
    secret: &str,
    method: &str,
    path: &str,
    params: &[(String, String)],
    body: &[u8],
) {
    let extra: Vec<_> = params
        .iter()
        .filter(|(key, value)| {
            !AUTH_PARAMS.contains(&key.as_str())
                && !key.contains(['&', '=', '%'])
                && !value.contains(['&', '%'])
        })
        .cloned()
        .collect();
    let query = signed_query("key", secret, method, path, body, 1_700_000_000, &extra);
    let received = parse_query(&query);
    let find = |name: &str| {
        received
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    assert_eq!(find("auth_key"), Some("key"));
    assert_eq!(find("auth_version"), Some("1.0"));
    let md5 = body_md5(body);
    assert_eq!(find("body_md5"), (!body.is_empty()).then_some(md5.as_str()));
    let signature = find("auth_signature").unwrap_or_default();
    let string = request_string(method, path, &received);
    assert!(
        auth::verify(secret, string.as_bytes(), signature),
        "{query}"
    );
}

//! Signatures: HMAC-SHA256 over channel auth strings (§4), sign-in strings (§5.1), HTTP
//! requests (§8.2) and webhook bodies (§9.1); MD5 of request bodies. Comparisons of
//! signatures are constant-time.

use hmac::{KeyInit, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

type HmacSha256 = hmac::Hmac<Sha256>;

/// Lowercase hex HMAC-SHA256 of `message` keyed with `secret`.
pub fn sign(secret: &str, message: &[u8]) -> String {
    hex::encode(mac(secret, message).finalize().into_bytes())
}

/// True when `signature_hex` is the HMAC of `message`; compared in constant time.
pub fn verify(secret: &str, message: &[u8], signature_hex: &str) -> bool {
    let Ok(signature) = hex::decode(signature_hex) else {
        return false;
    };
    mac(secret, message).verify_slice(&signature).is_ok()
}

fn mac(secret: &str, message: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(message);
    mac
}

/// The string signed for a private/presence subscription: `socket_id:channel[:channel_data]`.
pub fn channel_auth_string(socket_id: &str, channel: &str, channel_data: Option<&str>) -> String {
    match channel_data {
        Some(data) => format!("{socket_id}:{channel}:{data}"),
        None => format!("{socket_id}:{channel}"),
    }
}

/// The string signed for `pusher:signin`: `socket_id::user::user_data`.
pub fn signin_string(socket_id: &str, user_data: &str) -> String {
    format!("{socket_id}::user::{user_data}")
}

/// Splits an `auth` token `<app_key>:<signature>` at its first colon.
pub fn split_auth_token(auth: &str) -> Option<(&str, &str)> {
    auth.split_once(':')
}

/// `<app_key>:<hex signature>`, as SDKs build it.
pub fn auth_token(key: &str, secret: &str, message: &str) -> String {
    format!("{key}:{}", sign(secret, message.as_bytes()))
}

/// Lowercase hex MD5 of a request body.
pub fn body_md5(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// Splits a raw query string into percent-decoded pairs with lower-cased keys; `+` stays `+`
/// (spec §8.2 step 1).
pub fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|item| !item.is_empty())
        .map(|item| {
            let (key, value) = item.split_once('=').unwrap_or((item, ""));
            (decode(key).to_ascii_lowercase(), decode(value))
        })
        .collect()
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// `key=value` pairs except `auth_signature`, sorted bytewise by key, joined with `&`,
/// values not escaped.
pub fn canonical_query(params: &[(String, String)]) -> String {
    // Lower-case first: `Auth_Signature` is the same parameter and is not signed either.
    let mut pairs: Vec<_> = params
        .iter()
        .map(|(key, value)| (key.to_ascii_lowercase(), value.as_str()))
        .filter(|(key, _)| key != "auth_signature")
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// `METHOD\npath\ncanonical_query`, the string an HTTP API request signs.
pub fn request_string(method: &str, path: &str, params: &[(String, String)]) -> String {
    format!(
        "{}\n{path}\n{}",
        method.to_ascii_uppercase(),
        canonical_query(params)
    )
}

/// The query string an SDK would send for a request: auth params added and signed.
/// Used by tests and the load generator; the server only verifies.
pub fn signed_query(
    key: &str,
    secret: &str,
    method: &str,
    path: &str,
    body: &[u8],
    timestamp: u64,
    extra: &[(String, String)],
) -> String {
    let mut params = extra.to_vec();
    params.push(("auth_key".into(), key.into()));
    params.push(("auth_timestamp".into(), timestamp.to_string()));
    params.push(("auth_version".into(), "1.0".into()));
    if !body.is_empty() {
        params.push(("body_md5".into(), body_md5(body)));
    }
    let signature = sign(secret, request_string(method, path, &params).as_bytes());
    format!("{}&auth_signature={signature}", canonical_query(&params))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_rejects_wrong_length_and_non_hex() {
        let good = sign("s", b"m");
        assert!(verify("s", b"m", &good));
        assert!(!verify("s", b"m", &good[..62]));
        assert!(!verify("s", b"m", "zz"));
        assert!(!verify("t", b"m", &good));
    }

    #[test]
    fn query_parsing_decodes_percent_but_not_plus() {
        let params = parse_query("A=1&b=x%2By+z&flag&c=");
        assert_eq!(
            params,
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x+y+z".into()),
                ("flag".into(), "".into()),
                ("c".into(), "".into()),
            ]
        );
    }
}

//! Keeps broker credentials out of logs and errors: URLs are shown with their userinfo masked.

const MASK: &str = "***";

/// `url` with the userinfo (`user:password@`) of each comma-separated server replaced by
/// `***@`, e.g. `redis://***@host:6379/0`.
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|part| match userinfo_span(part) {
            Some((start, end)) => format!("{}{MASK}{}", &part[..start], &part[end..]),
            None => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `text` (e.g. a driver's error message) with every secret of `url` masked: the passwords
/// (or tokens) of its servers, and the URL itself shown redacted.
pub fn redact_text(text: &str, url: &str) -> String {
    let mut text = text.replace(url, &redact_url(url));
    for part in url.split(',') {
        let Some((start, end)) = userinfo_span(part) else {
            continue;
        };
        let userinfo = &part[start..end];
        // `user:password` hides the password; a lone token is the secret itself.
        let secret = userinfo.split_once(':').map_or(userinfo, |(_, pass)| pass);
        if !secret.is_empty() {
            text = text.replace(secret, MASK);
            let decoded = percent_encoding::percent_decode_str(secret).decode_utf8_lossy();
            text = text.replace(decoded.as_ref(), MASK);
        }
    }
    text
}

/// Byte range of the userinfo in one server URL, without the `@`. The last `@` counts, so a
/// password holding an unencoded `@` or `/` is still masked whole.
fn userinfo_span(part: &str) -> Option<(usize, usize)> {
    let start = part.find("://").map_or(0, |i| i + 3);
    let at = part[start..].rfind('@')? + start;
    Some((start, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_the_userinfo_of_every_server() {
        assert_eq!(
            redact_url("redis://:hunter2@db:6379/1"),
            "redis://***@db:6379/1"
        );
        assert_eq!(
            redact_url("nats://u:p@a:4222,tls://b:4222,nats://tok@c"),
            "nats://***@a:4222,tls://b:4222,nats://***@c"
        );
        assert_eq!(
            redact_url("redis+sentinel://:p@ss/w@s1:26379/mymaster"),
            "redis+sentinel://***@s1:26379/mymaster"
        );
        assert_eq!(redact_url("redis://db:6379"), "redis://db:6379");
    }

    #[test]
    fn error_text_loses_passwords_encoded_or_not() {
        let url = "redis://:p%40ss@db:6379";
        let text = format!("failed: {url}; AUTH p@ss refused; AUTH p%40ss");
        let clean = redact_text(&text, url);
        assert!(
            !clean.contains("p@ss") && !clean.contains("p%40ss"),
            "{clean}"
        );
        assert!(clean.contains("redis://***@db:6379"), "{clean}");
    }
}

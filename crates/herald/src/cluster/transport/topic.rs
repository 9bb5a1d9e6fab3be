//! The topic charset every broker accepts: `[A-Za-z0-9_-]` tokens separated by `.`.

/// True when `topic` is non-empty tokens of `[A-Za-z0-9_-]` joined by single dots. Such
/// topics are valid NATS subjects without wildcards (`*`, `>`) and plain Redis channel names.
pub fn is_valid_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic.split('.').all(|token| {
            !token.is_empty()
                && token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::is_valid_topic;

    #[test]
    fn accepts_dotted_tokens_and_refuses_wildcards_spaces_and_empty_tokens() {
        assert!(is_valid_topic("herald.myprefix.c.0123abcd"));
        assert!(is_valid_topic("a_b-C9"));
        for bad in [
            "", ".", "a..b", "a.", ".a", "a.*", "a.>", "a b", "a\nb", "é",
        ] {
            assert!(!is_valid_topic(bad), "{bad:?} accepted");
        }
    }
}

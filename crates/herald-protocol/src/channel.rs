//! Channel names: validation (charset, length) and classification by prefix (spec §3.1).

use std::fmt;
use std::sync::Arc;

/// Pusher's default and the SDKs' maximum channel name length (spec §7).
pub const DEFAULT_MAX_CHANNEL_NAME_LENGTH: usize = 200;
/// The reserved prefix of per-user channels (spec §5.3).
pub const SERVER_TO_USER_PREFIX: &str = "#server-to-user-";

/// What a channel is, decided by its name prefix only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    Public,
    Private,
    /// `private-encrypted-`: authorized like private; the server never reads `data`.
    Encrypted,
    Presence,
    /// `#server-to-user-{id}`: the sockets signed in as that user.
    ServerToUser,
}

impl ChannelKind {
    /// Classifies a name, most specific prefix first.
    pub fn of(name: &str) -> Self {
        if name.starts_with("presence-") {
            Self::Presence
        } else if name.starts_with("private-encrypted-") {
            Self::Encrypted
        } else if name.starts_with("private-") {
            Self::Private
        } else if name.starts_with(SERVER_TO_USER_PREFIX) {
            Self::ServerToUser
        } else {
            Self::Public
        }
    }

    /// Subscribing needs a signed `auth` token.
    pub fn requires_auth(self) -> bool {
        matches!(self, Self::Private | Self::Encrypted | Self::Presence)
    }

    /// Client events may be sent on it (spec §6.2 rule 3). Not on encrypted channels:
    /// Pusher does not relay them there, and pusher-js refuses to send them (spec §4.5).
    pub fn allows_client_events(self) -> bool {
        matches!(self, Self::Private | Self::Presence)
    }
}

/// Why a channel name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelNameError {
    #[error("channel name is empty")]
    Empty,
    #[error("channel name is longer than {max} characters")]
    TooLong { max: usize },
    #[error("channel name may contain only A-Z a-z 0-9 _ - = @ , . ;")]
    BadCharacter,
}

/// A channel name that passed validation. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(Arc<str>);

impl ChannelName {
    /// Validates charset `[A-Za-z0-9_\-=@,.;]` and length; `#` is allowed only as
    /// the `#server-to-user-` prefix followed by a valid id.
    pub fn parse(name: &str, max_len: usize) -> Result<Self, ChannelNameError> {
        if name.is_empty() {
            return Err(ChannelNameError::Empty);
        }
        if name.len() > max_len {
            return Err(ChannelNameError::TooLong { max: max_len });
        }
        let body = name.strip_prefix(SERVER_TO_USER_PREFIX).unwrap_or(name);
        if body.is_empty() || !body.bytes().all(is_name_byte) {
            return Err(ChannelNameError::BadCharacter);
        }
        Ok(Self(name.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn kind(&self) -> ChannelKind {
        ChannelKind::of(&self.0)
    }

    /// Cache channels keep their last HTTP-triggered event (spec §3.8).
    pub fn is_cache(&self) -> bool {
        [
            "cache-",
            "private-cache-",
            "private-encrypted-cache-",
            "presence-cache-",
        ]
        .iter()
        .any(|prefix| self.0.starts_with(prefix))
    }
}

/// The channel-name charset, which user ids share (spec §3.1, §5.1).
pub fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'=' | b'@' | b',' | b'.' | b';')
}

/// Lets maps keyed by `ChannelName` be searched with a `&str` (hashes agree).
impl std::borrow::Borrow<str> for ChannelName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelName({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str) -> Result<ChannelName, ChannelNameError> {
        ChannelName::parse(name, DEFAULT_MAX_CHANNEL_NAME_LENGTH)
    }

    #[test]
    fn classifies_by_anchored_prefix() {
        let cases = [
            ("my-channel", ChannelKind::Public),
            ("cache-prices", ChannelKind::Public),
            ("private-orders", ChannelKind::Private),
            ("private-cache-x", ChannelKind::Private),
            ("private-encrypted-vault", ChannelKind::Encrypted),
            ("private-encrypted-cache-v", ChannelKind::Encrypted),
            ("presence-room", ChannelKind::Presence),
            ("presence-cache-room", ChannelKind::Presence),
            ("#server-to-user-42", ChannelKind::ServerToUser),
            ("x-private-y", ChannelKind::Public),
        ];
        for (name, kind) in cases {
            assert_eq!(parse(name).map(|c| c.kind()), Ok(kind), "{name}");
        }
    }

    #[test]
    fn cache_flag_needs_a_cache_prefix() {
        assert!(parse("cache-a").is_ok_and(|c| c.is_cache()));
        assert!(parse("presence-cache-a").is_ok_and(|c| c.is_cache()));
        assert!(parse("private-encrypted-cache-a").is_ok_and(|c| c.is_cache()));
        assert!(parse("my-cache-a").is_ok_and(|c| !c.is_cache()));
    }

    #[test]
    fn refuses_bad_characters_and_lengths() {
        assert_eq!(parse(""), Err(ChannelNameError::Empty));
        assert_eq!(parse("a b"), Err(ChannelNameError::BadCharacter));
        assert_eq!(parse("a/b"), Err(ChannelNameError::BadCharacter));
        assert_eq!(parse("#other"), Err(ChannelNameError::BadCharacter));
        assert_eq!(
            parse("#server-to-user-"),
            Err(ChannelNameError::BadCharacter)
        );
        assert_eq!(parse("ünïcode"), Err(ChannelNameError::BadCharacter));
        assert!(parse("Aa0_-=@,.;").is_ok());
        assert!(parse(&"a".repeat(200)).is_ok());
        assert_eq!(
            parse(&"a".repeat(201)),
            Err(ChannelNameError::TooLong { max: 200 })
        );
    }
}

//! Socket ids: `^\d+\.\d+$`, the only shape the official SDKs will sign.

use std::fmt;
use std::sync::Arc;

/// A connection's id, `<digits>.<digits>`, unique while the socket lives. Clones share
/// one allocation.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(Arc<str>);

impl SocketId {
    /// Builds an id from its two numeric halves.
    pub fn from_parts(high: u64, low: u64) -> Self {
        Self(format!("{high}.{low}").into())
    }

    /// Accepts only `^\d+\.\d+$` (spec §1.3), as the SDKs do.
    pub fn parse(text: &str) -> Option<Self> {
        is_valid_socket_id(text).then(|| Self(text.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// True when `text` has the `^\d+\.\d+$` shape.
pub fn is_valid_socket_id(text: &str) -> bool {
    let Some((high, low)) = text.split_once('.') else {
        return false;
    };
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    digits(high) && digits(low)
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SocketId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_digits_dot_digits() {
        assert!(SocketId::parse("123.456").is_some());
        for bad in ["", "123", "123.", ".456", "12a.4", "1.2.3", " 1.2", "-1.2"] {
            assert!(SocketId::parse(bad).is_none(), "{bad:?}");
        }
        assert_eq!(SocketId::from_parts(7, 9).as_str(), "7.9");
    }
}

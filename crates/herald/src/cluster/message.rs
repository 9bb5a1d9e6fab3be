//! What nodes say to each other, and its wire form: a JSON header line, then (for events)
//! the encoded frame's bytes as they are, so a frame is never re-escaped or re-encoded on
//! its way to another node's subscribers.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::view::{Change, Facts, NodeKey};

/// Who an event is for, on every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", content = "v", rename_all = "snake_case")]
pub enum Target {
    Channel(String),
    Watchers(String),
}

/// What a cache channel remembers of an event (spec §3.8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheMeta {
    pub event: String,
    pub data: String,
    pub ttl: u64,
}

/// One message between nodes. Every message names its sender's incarnation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum Message {
    /// An event for subscribers; the frame follows the header.
    Event {
        from: NodeKey,
        app: String,
        target: Target,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        except: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache: Option<CacheMeta>,
        /// For a `member_added` event: the user announced (each node then lists the user
        /// in the rosters it sends).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        member_added: Option<String>,
    },
    /// A node started or came back: everyone answers with a snapshot.
    Hello { from: NodeKey },
    /// Sent by a node on a topic it just subscribed to: its own copy coming back proves
    /// the broker delivers the topic to it.
    Probe { from: NodeKey, nonce: u64 },
    /// Asks one node for a snapshot (after a gap in its changes).
    SnapshotRequest { from: NodeKey, to: NodeKey },
    /// A node's whole facts as of its change number `seq`.
    Snapshot {
        from: NodeKey,
        seq: u64,
        eligible: bool,
        facts: Facts,
    },
    /// One change to a node's facts, numbered so gaps are noticed.
    Change {
        from: NodeKey,
        seq: u64,
        change: Change,
    },
    Heartbeat {
        from: NodeKey,
        seq: u64,
        eligible: bool,
        /// When it was sent (Unix milliseconds), for the hop latency metric.
        #[serde(default)]
        sent_ms: u64,
        /// It has a debug console viewer (it listens on the debug topic).
        #[serde(default)]
        watching: bool,
        /// Open connections per app, for cluster-wide quotas.
        connections: Vec<(String, usize)>,
    },
    /// A node is shutting down: keep its facts for the removal delay, then drop them.
    Leaving { from: NodeKey },
    /// "You were declared dead": the node rejoins under a new epoch.
    Rejoin { from: NodeKey, to: NodeKey },
    /// Close every socket signed in as the user (spec §5.5).
    Terminate {
        from: NodeKey,
        app: String,
        user: String,
    },
    /// Something that happened on a node, for the debug consoles of the others.
    Debug {
        from: NodeKey,
        event: crate::debug::DebugEvent,
    },
}

impl Message {
    pub fn from(&self) -> &NodeKey {
        match self {
            Self::Event { from, .. }
            | Self::Hello { from }
            | Self::Probe { from, .. }
            | Self::SnapshotRequest { from, .. }
            | Self::Snapshot { from, .. }
            | Self::Change { from, .. }
            | Self::Heartbeat { from, .. }
            | Self::Leaving { from }
            | Self::Rejoin { from, .. }
            | Self::Terminate { from, .. }
            | Self::Debug { from, .. } => from,
        }
    }

    /// The header line, then `body` (an event's frame) unchanged.
    pub fn encode(&self, body: &[u8]) -> Bytes {
        let mut bytes = serde_json::to_vec(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes.extend_from_slice(body);
        Bytes::from(bytes)
    }

    /// The message and the body that followed its header.
    pub fn decode(bytes: &Bytes) -> Option<(Self, Bytes)> {
        // serde_json escapes newlines inside strings, so the first one ends the header.
        let end = bytes.iter().position(|b| *b == b'\n')?;
        let message = serde_json::from_slice(&bytes[..end]).ok()?;
        Some((message, bytes.slice(end + 1..)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_carries_its_frame_bytes_untouched() {
        let from = NodeKey {
            id: "a".into(),
            epoch: 7,
        };
        let message = Message::Event {
            from,
            app: "1".into(),
            target: Target::Channel("news".into()),
            except: Some("1.2".into()),
            cache: None,
            member_added: None,
        };
        let frame = br#"{"event":"e","channel":"news","data":"line\nbreak"}"#;
        let wire = message.encode(frame);
        let (decoded, body) = Message::decode(&wire).expect("decodes");
        assert_eq!(decoded, message);
        assert_eq!(&body[..], frame);
        assert!(Message::decode(&Bytes::from_static(b"not json\n")).is_none());
        assert!(Message::decode(&Bytes::from_static(b"{}")).is_none());
    }
}

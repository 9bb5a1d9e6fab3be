//! A connection's bounded outbox: broadcasters push shared frames into it and never wait;
//! when it holds too many frames or too many bytes the connection is kicked with 4100
//! instead of buffering more. The queue allocates only while frames wait, so an idle
//! connection's outbox costs a few words.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use herald_protocol::ErrorCode;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// An encoded text frame, shared by every recipient: cloning is a reference-count bump.
/// Its text is known to be UTF-8, so the WebSocket layer never validates it again. An event
/// carries the instant it was published (one clock read per event, not per recipient), so
/// the writer can measure delivery latency without any per-delivery allocation.
#[derive(Clone, Debug)]
pub struct Frame(Utf8Bytes, Option<Instant>);

impl PartialEq for Frame {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for Frame {}

impl Frame {
    /// A frame from bytes received from elsewhere (another node); `None` unless UTF-8.
    pub fn from_utf8(bytes: Bytes) -> Option<Self> {
        Utf8Bytes::try_from(bytes).ok().map(|text| Self(text, None))
    }

    /// The same frame, stamped now: its delivery latency is measured from here.
    pub fn stamped(self) -> Self {
        Self(self.0, Some(Instant::now()))
    }

    /// The same frame without a stamp (a cached event replayed later is not late).
    pub fn unstamped(&self) -> Self {
        Self(self.0.clone(), None)
    }

    /// When it was published, if it is a published event.
    pub fn published(&self) -> Option<Instant> {
        self.1
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The shared bytes, for sending to other nodes.
    pub fn bytes(&self) -> Bytes {
        Bytes::from(self.0.clone())
    }

    /// The text for the WebSocket writer.
    pub(crate) fn into_text(self) -> Utf8Bytes {
        self.0
    }
}

impl From<String> for Frame {
    fn from(text: String) -> Self {
        Self(text.into(), None)
    }
}

impl From<&str> for Frame {
    fn from(text: &str) -> Self {
        Self(text.into(), None)
    }
}

impl std::ops::Deref for Frame {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

/// Why the connection must close: the code and the message sent with it.
pub type Kick = (ErrorCode, String);

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Frame>,
    /// Bytes of the queued frames.
    bytes: usize,
    /// The first close request wins.
    kick: Option<Kick>,
    /// The connection is gone; frames are dropped.
    closed: bool,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Woken when the queue becomes non-empty or a kick is requested.
    ready: Notify,
    limits: Limits,
}

/// How much one outbox may hold before its connection is kicked with 4100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub frames: usize,
    pub bytes: usize,
}

/// The sending side, held by the hub for each subscription. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Outbox(Arc<Shared>);

/// The receiving side, owned by the connection task.
#[derive(Debug)]
pub struct OutboxReceiver(Arc<Shared>);

/// What the connection should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Ready {
    /// Frames are queued: take them with [`OutboxReceiver::pop`].
    Frames,
    Kicked(Kick),
}

/// A new outbox holding at most `capacity` frames (and any number of bytes).
pub fn outbox(capacity: usize) -> (Outbox, OutboxReceiver) {
    bounded(Limits {
        frames: capacity,
        bytes: usize::MAX,
    })
}

/// A new outbox holding at most `limits.frames` frames and `limits.bytes` bytes.
pub fn bounded(limits: Limits) -> (Outbox, OutboxReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::default(),
        ready: Notify::new(),
        limits,
    });
    (Outbox(shared.clone()), OutboxReceiver(shared))
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Outbox {
    /// Queues a frame without waiting. A full outbox (frames or bytes) kicks the connection
    /// with 4100 and drops the frame; a closed or kicked one drops it silently.
    pub fn send(&self, frame: Frame) -> bool {
        let mut state = self.0.lock();
        if state.closed || state.kick.is_some() {
            return false;
        }
        let limits = self.0.limits;
        let bytes = state.bytes.saturating_add(frame.len());
        if state.frames.len() >= limits.frames || bytes > limits.bytes {
            let code = ErrorCode::OverCapacity;
            state.kick = Some((code, code.message().into()));
            drop(state);
            self.0.ready.notify_one();
            return false;
        }
        let was_empty = state.frames.is_empty();
        state.frames.push_back(frame);
        state.bytes = bytes;
        drop(state);
        if was_empty {
            self.0.ready.notify_one();
        }
        true
    }

    /// Frames waiting to be written.
    pub fn queued(&self) -> usize {
        self.0.lock().frames.len()
    }

    /// Asks the connection to send `pusher:error` with this code and message, then close.
    pub fn kick(&self, code: ErrorCode, message: impl Into<String>) {
        let mut state = self.0.lock();
        if state.kick.is_none() {
            state.kick = Some((code, message.into()));
            drop(state);
            self.0.ready.notify_one();
        }
    }
}

impl OutboxReceiver {
    /// Waits until a frame is queued or a kick was requested; a kick comes first.
    pub async fn ready(&self) -> Ready {
        loop {
            let notified = self.0.ready.notified();
            {
                let state = self.0.lock();
                if let Some(kick) = &state.kick {
                    return Ready::Kicked(kick.clone());
                }
                if !state.frames.is_empty() {
                    return Ready::Frames;
                }
            }
            notified.await;
        }
    }

    /// Waits for a kick only (while a write is blocked on the socket).
    pub async fn kicked(&self) -> Kick {
        loop {
            if let Ready::Kicked(kick) = self.ready().await {
                return kick;
            }
            // Frames are queued but the writer is busy: wait for the next wake-up.
            self.0.ready.notified().await;
        }
    }

    /// The oldest queued frame. An emptied queue gives its memory back.
    pub fn pop(&self) -> Option<Frame> {
        let mut state = self.0.lock();
        let frame = state.frames.pop_front();
        if let Some(frame) = &frame {
            state.bytes -= frame.len();
        }
        if state.frames.is_empty() && state.frames.capacity() > 0 {
            state.frames = VecDeque::new();
        }
        frame
    }
}

impl Drop for OutboxReceiver {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.closed = true;
        state.frames = VecDeque::new();
        state.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn overflow_kicks_with_4100_and_drops_the_frame() {
        let (outbox, receiver) = outbox(2);
        assert!(outbox.send("a".into()));
        assert!(outbox.send("b".into()));
        assert!(!outbox.send("c".into()));
        let Ready::Kicked((code, _)) = receiver.ready().await else {
            panic!("kick first");
        };
        assert_eq!(code, ErrorCode::OverCapacity);
        assert_eq!(receiver.pop().as_deref(), Some("a"));
        assert_eq!(receiver.pop().as_deref(), Some("b"));
        assert!(receiver.pop().is_none());
        assert!(!outbox.send("d".into()), "kicked outboxes take nothing");
    }

    #[tokio::test]
    async fn too_many_bytes_kick_with_4100_even_with_frame_room_left() {
        let (outbox, receiver) = bounded(Limits {
            frames: 100,
            bytes: 10,
        });
        assert!(outbox.send("12345".into()));
        assert!(outbox.send("67890".into()));
        assert!(!outbox.send("x".into()), "11 bytes would exceed 10");
        let Ready::Kicked((code, _)) = receiver.ready().await else {
            panic!("kicked");
        };
        assert_eq!(code, ErrorCode::OverCapacity);
        assert_eq!(receiver.pop().as_deref(), Some("12345"));
        assert_eq!(receiver.0.lock().bytes, 5, "popping gives the bytes back");
    }

    #[tokio::test]
    async fn first_kick_wins() {
        let (outbox, receiver) = outbox(2);
        outbox.kick(ErrorCode::Unauthorized, "bye");
        outbox.kick(ErrorCode::OverCapacity, "full");
        assert_eq!(
            receiver.kicked().await,
            (ErrorCode::Unauthorized, "bye".to_owned())
        );
    }

    #[tokio::test]
    async fn ready_wakes_on_the_first_frame_and_a_dropped_receiver_refuses_frames() {
        let (outbox, receiver) = outbox(4);
        let waiter = tokio::spawn(async move {
            let ready = receiver.ready().await;
            (ready, receiver)
        });
        tokio::task::yield_now().await;
        assert!(outbox.send("x".into()));
        let (ready, receiver) = waiter.await.expect("joined");
        assert_eq!(ready, Ready::Frames);
        assert_eq!(receiver.pop().as_deref(), Some("x"));
        drop(receiver);
        assert!(!outbox.send("y".into()));
    }
}

//! A connection's bounded outbox: broadcasters `try_send` shared frames into it and never
//! wait; when it is full the connection is kicked with 4100 instead of buffering more.

use std::sync::{Arc, OnceLock};

use herald_protocol::ErrorCode;
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// An encoded frame, shared by every recipient (cloning is a reference-count bump).
pub type Frame = Utf8Bytes;

/// The sending side, held by the hub for each subscription.
#[derive(Clone, Debug)]
pub struct Outbox {
    frames: mpsc::Sender<Frame>,
    kick: Arc<Kick>,
}

/// The receiving side, owned by the connection task.
#[derive(Debug)]
pub struct OutboxReceiver {
    pub frames: mpsc::Receiver<Frame>,
    pub kick: Arc<Kick>,
}

/// A request to close the connection with a code and message; the first request wins.
#[derive(Debug, Default)]
pub struct Kick {
    reason: OnceLock<(ErrorCode, String)>,
    notify: Notify,
}

impl Kick {
    /// Waits until someone asked the connection to close; returns the code and message.
    pub async fn requested(&self) -> (ErrorCode, String) {
        loop {
            let notified = self.notify.notified();
            if let Some(reason) = self.reason.get() {
                return reason.clone();
            }
            notified.await;
        }
    }
}

/// A new outbox holding at most `capacity` frames.
pub fn outbox(capacity: usize) -> (Outbox, OutboxReceiver) {
    let (tx, rx) = mpsc::channel(capacity);
    let kick = Arc::new(Kick::default());
    (
        Outbox {
            frames: tx,
            kick: kick.clone(),
        },
        OutboxReceiver { frames: rx, kick },
    )
}

impl Outbox {
    /// Queues a frame without waiting. A full outbox kicks the connection with 4100 and
    /// drops the frame; a closed one (connection gone) drops it silently.
    pub fn send(&self, frame: Frame) -> bool {
        match self.frames.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                let code = ErrorCode::OverCapacity;
                self.kick(code, code.message());
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Asks the connection to send `pusher:error` with this code and message, then close.
    pub fn kick(&self, code: ErrorCode, message: impl Into<String>) {
        if self.kick.reason.set((code, message.into())).is_ok() {
            self.kick.notify.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn overflow_kicks_with_4100_and_drops_the_frame() {
        let (outbox, mut receiver) = outbox(2);
        assert!(outbox.send("a".into()));
        assert!(outbox.send("b".into()));
        assert!(!outbox.send("c".into()));
        assert_eq!(receiver.kick.requested().await.0, ErrorCode::OverCapacity);
        assert_eq!(receiver.frames.recv().await.as_deref(), Some("a"));
        assert_eq!(receiver.frames.recv().await.as_deref(), Some("b"));
        assert!(receiver.frames.try_recv().is_err());
    }

    #[tokio::test]
    async fn first_kick_wins() {
        let (outbox, receiver) = outbox(2);
        outbox.kick(ErrorCode::Unauthorized, "bye");
        outbox.kick(ErrorCode::OverCapacity, "full");
        assert_eq!(
            receiver.kick.requested().await,
            (ErrorCode::Unauthorized, "bye".to_owned())
        );
    }
}

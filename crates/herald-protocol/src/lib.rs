//! The Pusher Channels wire protocol as Herald speaks it: pure types and functions, no I/O.
//!
//! Layout:
//! - [`ids`]: socket ids and their shape.
//! - [`channel`]: validated channel names and their kind (public, private, presence, ...).
//! - [`message`]: frames a client sends ([`ClientMessage`]) and frames a server sends ([`ServerMessage`]).
//! - [`error_code`]: the 4000-4399 codes and what a client does on each.
//! - [`auth`]: HMAC-SHA256 signatures for channels, sign-in, HTTP requests and webhooks.
//! - [`api`]: HTTP API request bodies.
//! - [`webhook`]: webhook events and bodies.

pub mod api;
pub mod auth;
pub mod channel;
pub mod error_code;
pub mod ids;
pub mod message;
pub mod webhook;

pub use channel::{ChannelKind, ChannelName, ChannelNameError};
pub use error_code::ErrorCode;
pub use ids::SocketId;
pub use message::{ClientMessage, InboundFrame, MessageError, ServerMessage};

//! Frames on the WebSocket: what clients send ([`ClientMessage`]) and what the server sends
//! ([`ServerMessage`]). The double-encoded `data` quirk (spec §10.1) is decided here and
//! nowhere else: [`ServerMessage::encode`] and [`InboundFrame::data_text`].

mod client;
mod inbound;
mod server;

pub use client::{ClientEvent, ClientMessage, MessageError, Subscribe};
pub use inbound::InboundFrame;
pub use server::ServerMessage;

use serde_json::value::RawValue;

/// A string value decoded; any other JSON value as its raw text.
fn raw_text(raw: &RawValue) -> String {
    serde_json::from_str::<String>(raw.get()).unwrap_or_else(|_| raw.get().to_owned())
}

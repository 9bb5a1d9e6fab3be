//! Any frame as a client sees it: for clients, tests and the load generator.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::raw_text;

/// Any frame as a client sees it.
#[derive(Debug, Clone, Deserialize)]
pub struct InboundFrame {
    pub event: String,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub data: Option<Box<RawValue>>,
    #[serde(default)]
    pub user_id: Option<String>,
}

impl InboundFrame {
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// `data` as text: a JSON string decoded once (as pusher-js does), anything else raw.
    pub fn data_text(&self) -> Option<String> {
        self.data.as_deref().map(raw_text)
    }

    /// `data` decoded to a JSON value, undoing the double encoding when present.
    pub fn data_json(&self) -> Option<serde_json::Value> {
        let text = self.data_text()?;
        serde_json::from_str(&text)
            .ok()
            .or(Some(serde_json::Value::String(text)))
    }
}

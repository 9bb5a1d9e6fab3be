//! HTTP API request bodies (spec §8.3, §8.4). Validation against per-app limits is the
//! server's job; these types only give the bytes a shape.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// `POST /apps/{id}/events`.
#[derive(Debug, Deserialize)]
pub struct TriggerRequest {
    pub name: String,
    pub data: EventData,
    #[serde(default)]
    pub channels: Option<Vec<String>>,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub socket_id: Option<String>,
    #[serde(default)]
    pub info: Option<String>,
}

/// `POST /apps/{id}/batch_events`.
#[derive(Debug, Deserialize)]
pub struct BatchRequest {
    pub batch: Vec<BatchEvent>,
}

/// One element of a batch: a single `channel`.
#[derive(Debug, Deserialize)]
pub struct BatchEvent {
    pub name: String,
    pub data: EventData,
    pub channel: String,
    #[serde(default)]
    pub socket_id: Option<String>,
    #[serde(default)]
    pub info: Option<String>,
}

/// An event's `data`: SDKs always send a string, relayed verbatim; any other JSON value
/// is accepted and serialised compactly (spec §8.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventData(pub String);

impl<'de> Deserialize<'de> for EventData {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        if let Ok(text) = serde_json::from_str::<String>(raw.get()) {
            return Ok(Self(text));
        }
        let value: serde_json::Value =
            serde_json::from_str(raw.get()).map_err(serde::de::Error::custom)?;
        Ok(Self(value.to_string()))
    }
}

/// Attributes of one channel in `info` answers; absent ones are omitted.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelAttributes {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub user_count: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub subscription_count: Option<usize>,
}

/// Which attributes an `info` parameter asks for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InfoRequest {
    pub user_count: bool,
    pub subscription_count: bool,
    pub cache: bool,
}

impl InfoRequest {
    /// Parses a comma-separated `info` value; unknown attributes are ignored.
    pub fn parse(info: Option<&str>) -> Self {
        let mut request = Self::default();
        for attribute in info.unwrap_or_default().split(',').map(str::trim) {
            match attribute {
                "user_count" => request.user_count = true,
                "subscription_count" => request.subscription_count = true,
                "cache" => request.cache = true,
                _ => {}
            }
        }
        request
    }

    pub fn is_empty(self) -> bool {
        self == Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_string_is_kept_verbatim_and_values_are_compacted() {
        let req: TriggerRequest =
            serde_json::from_str(r#"{"name":"e","data":"{ \"a\" : 1 }","channel":"c"}"#)
                .expect("valid");
        assert_eq!(req.data.0, r#"{ "a" : 1 }"#);
        let req: TriggerRequest =
            serde_json::from_str(r#"{"name":"e","data":{ "a" : [1, 2] },"channel":"c"}"#)
                .expect("valid");
        assert_eq!(req.data.0, r#"{"a":[1,2]}"#);
    }

    #[test]
    fn info_lists_attributes() {
        let info = InfoRequest::parse(Some("user_count,subscription_count"));
        assert!(info.user_count && info.subscription_count && !info.cache);
        assert!(InfoRequest::parse(None).is_empty());
    }
}

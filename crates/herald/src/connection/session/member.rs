//! Presence members from `channel_data`, within the app's limits (spec §3.3 step 5).

use serde_json::value::RawValue;

use crate::apps::App;
use crate::hub::Member;

/// Decodes presence `channel_data` into a member.
pub(super) fn parse(channel_data: &str, app: &App) -> Result<Member, String> {
    #[derive(serde::Deserialize)]
    struct ChannelData {
        user_id: serde_json::Value,
        #[serde(default)]
        user_info: Option<Box<RawValue>>,
    }
    let limits = &app.limits;
    let data: ChannelData =
        serde_json::from_str(channel_data).map_err(|e| format!("Invalid channel_data: {e}"))?;
    let user_id = match data.user_id {
        serde_json::Value::String(id) if !id.is_empty() => id,
        serde_json::Value::Number(n) => n.to_string(),
        _ => {
            return Err(
                "Invalid channel_data: user_id must be a non-empty string or number".into(),
            );
        }
    };
    if user_id.len() > limits.max_presence_user_id_length {
        return Err(format!(
            "Invalid channel_data: user_id is longer than {} characters",
            limits.max_presence_user_id_length
        ));
    }
    let info_len = data.user_info.as_ref().map_or(0, |info| info.get().len());
    if info_len > limits.max_presence_user_info_bytes {
        return Err(format!(
            "Invalid channel_data: user_info is larger than {} bytes",
            limits.max_presence_user_info_bytes
        ));
    }
    Ok(Member {
        user_id,
        user_info: data.user_info,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_take_string_or_numeric_ids_within_limits() {
        let app = App::new("1", "k", "s");
        let member = parse(r#"{"user_id":10,"user_info":{"a":1}}"#, &app).expect("ok");
        assert_eq!(member.user_id, "10");
        assert_eq!(
            member.user_info.map(|i| i.get().to_owned()).as_deref(),
            Some(r#"{"a":1}"#)
        );
        for bad in [
            "not json",
            "[]",
            r#"{"user_info":{}}"#,
            r#"{"user_id":""}"#,
            r#"{"user_id":null}"#,
            r#"{"user_id":{"a":1}}"#,
        ] {
            assert!(parse(bad, &app).is_err(), "{bad}");
        }
        let long_id = format!(r#"{{"user_id":"{}"}}"#, "x".repeat(129));
        assert!(parse(&long_id, &app).is_err());
        let big_info = format!(r#"{{"user_id":"1","user_info":"{}"}}"#, "x".repeat(1100));
        assert!(parse(&big_info, &app).is_err());
    }
}

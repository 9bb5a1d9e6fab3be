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

    // The fuzz targets cannot reach this private parser, so its properties live here.
    mod properties {
        use proptest::prelude::*;
        use serde_json::{Value, json};

        use super::*;

        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<String>().prop_map(Value::String),
            ];
            leaf.prop_recursive(3, 16, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::btree_map(any::<String>(), inner, 0..4)
                        .prop_map(|map| Value::Object(map.into_iter().collect())),
                ]
            })
        }

        fn small_limits() -> App {
            let mut app = App::new("1", "k", "s");
            app.limits.max_presence_user_id_length = 16;
            app.limits.max_presence_user_info_bytes = 64;
            app
        }

        proptest! {
            #[test]
            fn any_text_is_a_member_or_an_error(text in any::<String>()) {
                let _ = parse(&text, &App::new("1", "k", "s"));
            }

            /// String ids are kept as sent and `user_info` keeps its bytes, within limits.
            #[test]
            fn members_keep_their_id_and_info(
                id in ".{1,20}",
                info in proptest::option::of(json_value()),
                pretty in any::<bool>(),
            ) {
                let app = small_limits();
                let info_text = info.as_ref().map(|i| {
                    if pretty { serde_json::to_string_pretty(i) } else { serde_json::to_string(i) }
                        .expect("serialises")
                });
                let text = match &info_text {
                    Some(raw) => format!(r#"{{"user_info":{raw},"user_id":{}}}"#, json!(id)),
                    None => json!({ "user_id": id }).to_string(),
                };
                let result = parse(&text, &app);
                let info_len = info_text.as_ref().map_or(0, String::len);
                if id.len() > 16 || info_len > 64 {
                    prop_assert!(result.is_err(), "{}", text);
                } else {
                    let member = result.map_err(TestCaseError::fail)?;
                    prop_assert_eq!(&member.user_id, &id);
                    let kept = member.user_info.as_ref().map(|i| i.get());
                    // A JSON null is no info at all.
                    let expected = info_text.as_deref().filter(|t| *t != "null");
                    prop_assert_eq!(kept, expected);
                }
            }

            #[test]
            fn numeric_ids_become_their_decimal_text(id in any::<i64>()) {
                let member = parse(&json!({ "user_id": id }).to_string(), &App::new("1", "k", "s"))
                    .map_err(TestCaseError::fail)?;
                prop_assert_eq!(member.user_id, id.to_string());
            }

            #[test]
            fn other_ids_are_refused(id in json_value().prop_filter("not an id", |v| {
                !v.is_number() && v.as_str().is_none_or(str::is_empty)
            })) {
                let text = json!({ "user_id": id }).to_string();
                prop_assert!(parse(&text, &App::new("1", "k", "s")).is_err(), "{}", text);
            }
        }
    }
}

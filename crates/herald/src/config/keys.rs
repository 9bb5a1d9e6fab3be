//! Naming settings in configuration problems: one path style (`apps[1].limits.x`), the
//! settings each table accepts (read from the serde derives, so the list never drifts), and
//! "did you mean" hints for misspelled keys.

use serde::Deserialize;
use serde::de::{self, Visitor};

/// `apps[1].enable_client_events`: the same style `validate` uses.
pub(super) fn setting_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", setting_path(parent)),
        Path::Map { parent, key } => match setting_path(parent) {
            parent if parent.is_empty() => key.clone(),
            parent => format!("{parent}.{key}"),
        },
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => setting_path(parent),
    }
}

/// The table a setting is in, with indices dropped: `apps[].limits` for
/// `apps[1].limits.x`; `""` for the top level.
pub(super) fn table_of(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    let parent = match path {
        Path::Map { parent, .. } | Path::Seq { parent, .. } => *parent,
        _ => return String::new(),
    };
    let full = setting_path(parent);
    let mut shape = String::with_capacity(full.len());
    let mut in_index = false;
    for c in full.chars() {
        match c {
            '[' => {
                in_index = true;
                shape.push_str("[]");
            }
            ']' => in_index = false,
            c if !in_index => shape.push(c),
            _ => {}
        }
    }
    shape
}

/// The last key of a path.
pub(super) fn key_of<'a>(path: &'a serde_ignored::Path<'a>) -> Option<&'a str> {
    match path {
        serde_ignored::Path::Map { key, .. } => Some(key),
        _ => None,
    }
}

/// The field names a `#[derive(Deserialize)]` struct accepts.
pub(super) fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Fields(&mut fields));
    fields
}

/// The closest known name, when it is close enough to be a likely typo.
pub(super) fn suggestion(unknown: &str, known: &[&'static str]) -> Option<&'static str> {
    // Jaro-Winkler rewards a shared beginning, which long snake_case names usually have.
    known
        .iter()
        .map(|name| (strsim::jaro_winkler(unknown, name), *name))
        .filter(|(similarity, _)| *similarity >= 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, name)| name)
}

/// A deserializer that only records the fields a struct asks for.
struct Fields<'a>(&'a mut &'static [&'static str]);

impl<'de> de::Deserializer<'de> for Fields<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("fields recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Sample {
        alpha: u8,
        #[serde(default)]
        beta_gamma: u8,
    }

    #[test]
    fn fields_come_from_the_derive_and_typos_find_their_setting() {
        let fields = fields_of::<Sample>();
        assert_eq!(fields, &["alpha", "beta_gamma"]);
        assert_eq!(suggestion("beta_gama", fields), Some("beta_gamma"));
        assert_eq!(suggestion("alpah", fields), Some("alpha"));
        assert_eq!(suggestion("colour", fields), None);
    }
}

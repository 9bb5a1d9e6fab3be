//! Property tests, the CI half of fuzz/: the same properties as the fuzz targets, on
//! generated inputs, in a few seconds. Frames, channel names and signatures each have a module.

mod channels;
mod frames;
mod signatures;

use proptest::prelude::*;
use serde_json::Value;

/// Any JSON value, nested a few levels, with strings that need escaping.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

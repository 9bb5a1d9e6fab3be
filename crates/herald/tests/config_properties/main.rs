//! `Config::from_toml` never panics, accepts exactly the configurations the documented rules
//! allow, and any configuration it accepts, written back out, is accepted again unchanged.

mod render;

use herald::config::Config;
use proptest::prelude::*;
use toml::{Table, Value};

/// A setting with its valid range, as documented in herald.example.toml.
struct Ranged {
    table: &'static str,
    name: &'static str,
    min: i64,
    max: i64,
}

const RANGED: [Ranged; 9] = [
    Ranged {
        table: "server",
        name: "port",
        min: 0,
        max: 65_535,
    },
    Ranged {
        table: "server",
        name: "activity_timeout",
        min: 1,
        max: 86_400,
    },
    Ranged {
        table: "server",
        name: "pong_timeout",
        min: 1,
        max: 3_600,
    },
    Ranged {
        table: "server",
        name: "max_frame_bytes",
        min: 1_024,
        max: 16 << 20,
    },
    Ranged {
        table: "server",
        name: "outbox_capacity",
        min: 16,
        max: 1 << 20,
    },
    Ranged {
        table: "server",
        name: "shutdown_grace",
        min: 0,
        max: 600,
    },
    Ranged {
        table: "webhooks",
        name: "retry_for",
        min: 1,
        max: 7 * 86_400,
    },
    Ranged {
        table: "webhooks",
        name: "timeout",
        min: 1,
        max: 300,
    },
    Ranged {
        table: "webhooks",
        name: "removal_delay_ms",
        min: 0,
        max: 60_000,
    },
];

const URLS: [(&str, bool); 6] = [
    ("http://127.0.0.1:3000/hooks", true),
    ("https://example.com/a?b=c", true),
    ("ftp://example.com", false),
    ("not a url", false),
    ("", false),
    ("http://", false),
];

const KINDS: [&str; 7] = [
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "client_event",
    "cache_miss",
    "subscription_count",
];

/// Mostly valid values, the bounds often; now and then just outside.
fn near(min: i64, max: i64) -> impl Strategy<Value = i64> {
    prop_oneof![
        6 => prop_oneof![Just(min), Just(max), min..=max],
        1 => min - 3..min,
        1 => max + 1..=max + 3,
    ]
}

/// A short text, empty one time in ten.
fn short(alphabet: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![9 => alphabet, 1 => Just(String::new())]
}

#[derive(Debug, Clone)]
struct Hook {
    url: usize,
    kinds: Vec<usize>,
}

#[derive(Debug, Clone)]
struct AppDraft {
    id: String,
    key: String,
    secret: String,
    name_limit: Option<i64>,
    hooks: Vec<Hook>,
    flags: (bool, bool),
}

/// A configuration file as an operator might write it, valid or not.
#[derive(Debug, Clone)]
struct Draft {
    ranged: Vec<Option<i64>>,
    apps: Vec<AppDraft>,
    unknown_key: bool,
}

fn hook() -> impl Strategy<Value = Hook> {
    let url = prop_oneof![4 => 0..2usize, 1 => 2..URLS.len()];
    let kinds = prop_oneof![
        9 => prop::collection::vec(0..KINDS.len(), 1..4),
        1 => Just(Vec::new()),
    ];
    (url, kinds).prop_map(|(url, kinds)| Hook { url, kinds })
}

fn app() -> impl Strategy<Value = AppDraft> {
    (
        (short("[1-4]"), short("[a-d]"), short("[xy\"\\\\]{1,2}")),
        proptest::option::weighted(0.3, 0i64..3),
        prop::collection::vec(hook(), 0..2),
        (any::<bool>(), any::<bool>()),
    )
        .prop_map(|((id, key, secret), name_limit, hooks, flags)| AppDraft {
            id,
            key,
            secret,
            name_limit,
            hooks,
            flags,
        })
}

fn draft() -> impl Strategy<Value = Draft> {
    let ranged: Vec<_> = RANGED
        .iter()
        .map(|r| proptest::option::of(near(r.min, r.max)))
        .collect();
    (
        ranged,
        prop::collection::vec(app(), 0..3),
        proptest::bool::weighted(0.1),
    )
        .prop_map(|(ranged, apps, unknown_key)| Draft {
            ranged,
            apps,
            unknown_key,
        })
}

impl Draft {
    fn to_toml(&self) -> String {
        let mut root = Table::new();
        for (rule, value) in RANGED.iter().zip(&self.ranged) {
            if let Some(value) = value {
                let table = root
                    .entry(rule.table)
                    .or_insert_with(|| Value::Table(Table::new()));
                if let Value::Table(table) = table {
                    table.insert(rule.name.into(), Value::Integer(*value));
                }
            }
        }
        if self.unknown_key {
            root.insert("colour".into(), Value::String("blue".into()));
        }
        let apps = self
            .apps
            .iter()
            .map(|a| Value::Table(a.to_toml()))
            .collect();
        root.insert("apps".into(), Value::Array(apps));
        root.to_string()
    }

    /// The documented rules, written out independently of config.rs.
    fn is_valid(&self) -> bool {
        let in_range = RANGED
            .iter()
            .zip(&self.ranged)
            .all(|(r, v)| v.is_none_or(|v| (r.min..=r.max).contains(&v)));
        let ids: Vec<_> = self.apps.iter().map(|a| &a.id).collect();
        let keys: Vec<_> = self.apps.iter().map(|a| &a.key).collect();
        let unique = |all: &[&String]| {
            all.iter()
                .enumerate()
                .all(|(i, x)| x.is_empty() || !all[..i].contains(x))
        };
        let apps_ok = self.apps.iter().all(|a| {
            !a.id.is_empty()
                && !a.key.is_empty()
                && !a.secret.is_empty()
                && a.name_limit != Some(0)
                && a.hooks.iter().all(|h| URLS[h.url].1 && !h.kinds.is_empty())
        });
        in_range && !self.unknown_key && unique(&ids) && unique(&keys) && apps_ok
    }
}

impl AppDraft {
    fn to_toml(&self) -> Table {
        let mut t = Table::new();
        t.insert("id".into(), Value::String(self.id.clone()));
        t.insert("key".into(), Value::String(self.key.clone()));
        t.insert("secret".into(), Value::String(self.secret.clone()));
        t.insert("enabled".into(), Value::Boolean(self.flags.0));
        t.insert(
            "enable_client_messages".into(),
            Value::Boolean(self.flags.1),
        );
        if let Some(limit) = self.name_limit {
            let mut limits = Table::new();
            limits.insert("max_channel_name_length".into(), Value::Integer(limit));
            t.insert("limits".into(), Value::Table(limits));
        }
        let hooks = self.hooks.iter().map(|h| {
            let mut hook = Table::new();
            hook.insert("url".into(), Value::String(URLS[h.url].0.into()));
            let kinds = h.kinds.iter().map(|k| Value::String(KINDS[*k].into()));
            hook.insert("event_types".into(), Value::Array(kinds.collect()));
            Value::Table(hook)
        });
        t.insert("webhooks".into(), Value::Array(hooks.collect()));
        t
    }
}

/// What was accepted is accepted again, unchanged, when written out in full.
fn revalidates(config: &Config) -> Result<(), TestCaseError> {
    let written = render::render(config);
    let again = Config::from_toml(&written)
        .map_err(|e| TestCaseError::fail(format!("refused when written out:\n{written}\n{e}")))?;
    prop_assert_eq!(&again.server, &config.server);
    prop_assert_eq!(&again.apps, &config.apps);
    prop_assert_eq!(&again.webhooks, &config.webhooks);
    Ok(())
}

proptest! {
    #[test]
    fn any_text_is_accepted_or_refused_without_panicking(text in any::<String>()) {
        if let Ok(config) = Config::from_toml(&text) {
            revalidates(&config)?;
        }
    }

    #[test]
    fn exactly_the_valid_configurations_are_accepted(draft in draft()) {
        let text = draft.to_toml();
        match Config::from_toml(&text) {
            Ok(config) => {
                prop_assert!(draft.is_valid(), "accepted an invalid configuration:\n{}", text);
                revalidates(&config)?;
            }
            Err(errors) => {
                prop_assert!(!draft.is_valid(), "refused a valid configuration:\n{}\n{}", text, errors);
                let message = errors.to_string();
                for (rule, value) in RANGED.iter().zip(&draft.ranged) {
                    if value.is_some_and(|v| !(rule.min..=rule.max).contains(&v)) {
                        let field = format!("{}.{} must be between", rule.table, rule.name);
                        prop_assert!(message.contains(&field), "{} not reported in {}", field, message);
                    }
                }
            }
        }
    }
}

#[test]
fn the_example_configuration_revalidates() {
    let config = Config::from_toml(include_str!("../../../../herald.example.toml"))
        .expect("herald.example.toml is valid");
    revalidates(&config).expect("re-validates");
}

//! Channel names (spec §3.1): exactly the charset and length rules, kinds by prefix; socket
//! ids; and the channel auth string, which names one (socket, channel, data) triple.

use herald_protocol::auth::channel_auth_string;
use herald_protocol::channel::SERVER_TO_USER_PREFIX;
use herald_protocol::{ChannelKind, ChannelName, ChannelNameError, SocketId};
use proptest::prelude::*;

const CHARSET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-=@,.;";
const NAME: &str = "[A-Za-z0-9_=@,.;-]";

fn valid(min: usize, max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("{NAME}{{{min},{max}}}")).expect("regex")
}

/// Prefixes, most specific first, with the kind and cache flag each gives; "" matches all.
const PREFIXES: [(&str, ChannelKind, bool); 9] = [
    ("presence-cache-", ChannelKind::Presence, true),
    ("presence-", ChannelKind::Presence, false),
    ("private-encrypted-cache-", ChannelKind::Encrypted, true),
    ("private-encrypted-", ChannelKind::Encrypted, false),
    ("private-cache-", ChannelKind::Private, true),
    ("private-", ChannelKind::Private, false),
    (SERVER_TO_USER_PREFIX, ChannelKind::ServerToUser, false),
    ("cache-", ChannelKind::Public, true),
    ("", ChannelKind::Public, false),
];

fn expected_kind(name: &str) -> (ChannelKind, bool) {
    PREFIXES
        .iter()
        .find(|(prefix, _, _)| name.starts_with(prefix))
        .map_or((ChannelKind::Public, false), |&(_, kind, cache)| {
            (kind, cache)
        })
}

proptest! {
    #[test]
    fn names_from_the_charset_are_accepted_up_to_the_limit(
        name in valid(1, 260),
        max in 1usize..260,
    ) {
        let parsed = ChannelName::parse(&name, max);
        if name.len() <= max {
            let channel = parsed.expect("valid name");
            prop_assert_eq!(channel.as_str(), name.as_str());
            prop_assert_eq!(channel.kind(), ChannelKind::of(&name));
        } else {
            prop_assert_eq!(parsed, Err(ChannelNameError::TooLong { max }));
        }
    }

    #[test]
    fn any_other_character_is_refused(
        head in valid(0, 40),
        bad in any::<char>().prop_filter("outside the charset", |c| !CHARSET.contains(*c)),
        tail in valid(0, 40),
    ) {
        let name = format!("{head}{bad}{tail}");
        prop_assert_eq!(ChannelName::parse(&name, 200), Err(ChannelNameError::BadCharacter));
    }

    #[test]
    fn any_text_is_judged_by_the_rules(name in any::<String>()) {
        let body = name.strip_prefix(SERVER_TO_USER_PREFIX).unwrap_or(&name);
        let expected = if name.is_empty() {
            Err(ChannelNameError::Empty)
        } else if name.len() > 200 {
            Err(ChannelNameError::TooLong { max: 200 })
        } else if body.is_empty() || !body.chars().all(|c| CHARSET.contains(c)) {
            Err(ChannelNameError::BadCharacter)
        } else {
            Ok(())
        };
        prop_assert_eq!(ChannelName::parse(&name, 200).map(|_| ()), expected);
    }

    #[test]
    fn the_prefix_decides_kind_and_cache(which in 0..PREFIXES.len(), rest in valid(1, 30)) {
        let (prefix, kind, cache) = PREFIXES[which];
        let name = format!("{prefix}{rest}");
        let channel = ChannelName::parse(&name, 200).expect("valid");
        // `rest` may itself start a longer prefix ("private-" + "cache-x").
        prop_assert_eq!((channel.kind(), channel.is_cache()), expected_kind(&name));
        if !PREFIXES.iter().any(|(p, _, _)| p.len() > prefix.len() && name.starts_with(p)) {
            prop_assert_eq!((channel.kind(), channel.is_cache()), (kind, cache));
        }
        let private = matches!(kind, ChannelKind::Private | ChannelKind::Encrypted | ChannelKind::Presence);
        prop_assert_eq!(kind.requires_auth(), private);
        // Client events: private and presence only, never encrypted (spec §4.5).
        let relayed = matches!(kind, ChannelKind::Private | ChannelKind::Presence);
        prop_assert_eq!(kind.allows_client_events(), relayed);
    }

    #[test]
    fn socket_ids_are_digits_dot_digits(text in "[0-9.a]{0,8}|[0-9]{1,20}\\.[0-9]{1,20}") {
        let shape = text.split_once('.').is_some_and(|(high, low)| {
            [high, low]
                .iter()
                .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
        });
        prop_assert_eq!(SocketId::parse(&text).map(|id| id.to_string()), shape.then_some(text));
    }

    /// No valid socket id or channel name holds `:`, so no two subscriptions sign the same
    /// string: the parts come back out of it.
    #[test]
    fn the_auth_string_names_one_subscription(
        high in any::<u64>(),
        low in any::<u64>(),
        name in valid(1, 50),
        channel_data in proptest::option::of(any::<String>()),
    ) {
        let socket_id = SocketId::from_parts(high, low);
        let signed = channel_auth_string(socket_id.as_str(), &name, channel_data.as_deref());
        let mut parts = signed.splitn(3, ':');
        prop_assert_eq!(parts.next(), Some(socket_id.as_str()));
        prop_assert_eq!(parts.next(), Some(name.as_str()));
        prop_assert_eq!(parts.next(), channel_data.as_deref());
    }
}

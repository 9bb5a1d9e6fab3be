//! Channel names, socket ids and the channel auth string. Input: `name[\nsocket_id[\nchannel_data]]`.
//! `ChannelName::parse` must agree with the spec's rules written out independently here, and
//! a valid socket id and channel name must be recoverable from the string a client signs.
#![no_main]

use std::collections::HashSet;

use herald_protocol::auth::channel_auth_string;
use herald_protocol::channel::DEFAULT_MAX_CHANNEL_NAME_LENGTH;
use herald_protocol::ids::is_valid_socket_id;
use herald_protocol::{ChannelKind, ChannelName, ChannelNameError, SocketId};
use libfuzzer_sys::fuzz_target;

/// Spec §3.1: the channel-name charset.
const CHARSET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-=@,.;";
const USER_PREFIX: &str = "#server-to-user-";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\n');
    let name = parts.next().unwrap_or_default();
    check_name(name);
    if let Some(socket_id) = parts.next() {
        check_socket_id(socket_id);
        check_auth_string(socket_id, name, parts.next());
    }
});

/// What spec §3.1 says about `name` under a `max` length.
fn expected(name: &str, max: usize) -> Result<(), ChannelNameError> {
    if name.is_empty() {
        return Err(ChannelNameError::Empty);
    }
    if name.len() > max {
        return Err(ChannelNameError::TooLong { max });
    }
    let body = name.strip_prefix(USER_PREFIX).unwrap_or(name);
    if body.is_empty() || !body.chars().all(|c| CHARSET.contains(c)) {
        return Err(ChannelNameError::BadCharacter);
    }
    Ok(())
}

/// Kinds by prefix, most specific first, and whether the prefix makes a cache channel.
fn expected_kind(name: &str) -> (ChannelKind, bool) {
    let table = [
        ("presence-cache-", ChannelKind::Presence, true),
        ("presence-", ChannelKind::Presence, false),
        ("private-encrypted-cache-", ChannelKind::Encrypted, true),
        ("private-encrypted-", ChannelKind::Encrypted, false),
        ("private-cache-", ChannelKind::Private, true),
        ("private-", ChannelKind::Private, false),
        (USER_PREFIX, ChannelKind::ServerToUser, false),
        ("cache-", ChannelKind::Public, true),
    ];
    table
        .iter()
        .find(|(prefix, _, _)| name.starts_with(prefix))
        .map_or((ChannelKind::Public, false), |&(_, kind, cache)| {
            (kind, cache)
        })
}

fn check_name(name: &str) {
    let parsed = ChannelName::parse(name, DEFAULT_MAX_CHANNEL_NAME_LENGTH);
    assert_eq!(
        parsed.as_ref().map(|_| ()).map_err(Clone::clone),
        expected(name, DEFAULT_MAX_CHANNEL_NAME_LENGTH),
        "{name:?}"
    );
    if !name.is_empty() {
        let unbounded = ChannelName::parse(name, usize::MAX).map(|_| ());
        assert_eq!(
            ChannelName::parse(name, name.len()).map(|_| ()),
            unbounded,
            "{name:?} at its own length"
        );
        assert_eq!(
            ChannelName::parse(name, name.len() - 1).map(|_| ()),
            Err(ChannelNameError::TooLong {
                max: name.len() - 1
            })
        );
    }
    let Ok(channel) = parsed else {
        return;
    };
    assert_eq!(channel.as_str(), name);
    assert_eq!(channel.to_string(), name);
    let kind = channel.kind();
    assert_eq!(kind, ChannelKind::of(name));
    assert_eq!((kind, channel.is_cache()), expected_kind(name), "{name:?}");
    let private = matches!(
        kind,
        ChannelKind::Private | ChannelKind::Encrypted | ChannelKind::Presence
    );
    assert_eq!(kind.requires_auth(), private);
    assert_eq!(kind.allows_client_events(), private);
    // Maps keyed by ChannelName are searched with &str: hashes must agree.
    let set: HashSet<ChannelName> = [channel.clone()].into();
    assert!(set.contains(name));
}

fn check_socket_id(text: &str) {
    let shape = text.split_once('.').is_some_and(|(high, low)| {
        [high, low]
            .iter()
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_digit()))
    });
    assert_eq!(is_valid_socket_id(text), shape, "{text:?}");
    assert_eq!(
        SocketId::parse(text).map(|id| id.to_string()),
        shape.then(|| text.to_owned())
    );
}

/// Neither a socket id nor a channel name can hold `:`, so the signed string
/// `socket_id:channel[:channel_data]` names exactly one (socket, channel, data) triple.
fn check_auth_string(socket_id: &str, name: &str, channel_data: Option<&str>) {
    if SocketId::parse(socket_id).is_none() || ChannelName::parse(name, usize::MAX).is_err() {
        return;
    }
    let signed = channel_auth_string(socket_id, name, channel_data);
    let mut parts = signed.splitn(3, ':');
    assert_eq!(parts.next(), Some(socket_id));
    assert_eq!(parts.next(), Some(name));
    assert_eq!(parts.next(), channel_data, "{signed:?}");
}

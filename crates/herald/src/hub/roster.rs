//! A presence channel's members: one entry per user, counting that user's sockets, so
//! `member_added`/`member_removed` fire only on a user's first and last socket (spec §3.7).

use std::collections::HashMap;

use serde_json::value::RawValue;

/// Who a presence subscriber is.
#[derive(Debug, Clone)]
pub struct Member {
    pub user_id: String,
    pub user_info: Option<Box<RawValue>>,
}

#[derive(Debug)]
struct Entry {
    sockets: usize,
    /// The first socket's info wins (spec §3.4).
    user_info: Option<Box<RawValue>>,
    /// Join order, so `ids` lists members in the order they arrived.
    joined: u64,
}

/// The members of one presence channel.
#[derive(Debug, Default)]
pub struct Roster {
    members: HashMap<String, Entry>,
    next_join: u64,
}

impl Roster {
    pub fn user_count(&self) -> usize {
        self.members.len()
    }

    pub fn contains(&self, user_id: &str) -> bool {
        self.members.contains_key(user_id)
    }

    /// Adds one socket of `member`; true when the user was not present before.
    pub fn add(&mut self, member: &Member) -> bool {
        if let Some(entry) = self.members.get_mut(&member.user_id) {
            entry.sockets += 1;
            return false;
        }
        self.next_join += 1;
        self.members.insert(
            member.user_id.clone(),
            Entry {
                sockets: 1,
                user_info: member.user_info.clone(),
                joined: self.next_join,
            },
        );
        true
    }

    /// Removes one socket of the user; true when it was their last.
    pub fn remove(&mut self, user_id: &str) -> bool {
        let Some(entry) = self.members.get_mut(user_id) else {
            return false;
        };
        entry.sockets -= 1;
        if entry.sockets > 0 {
            return false;
        }
        self.members.remove(user_id);
        true
    }

    /// User ids in join order.
    pub fn user_ids(&self) -> Vec<&str> {
        let mut entries: Vec<_> = self.members.iter().collect();
        entries.sort_by_key(|(_, entry)| entry.joined);
        entries.into_iter().map(|(id, _)| id.as_str()).collect()
    }

    /// `{"presence":{"ids":[..],"hash":{id: info},"count":n}}`, the subscription data.
    pub fn encode_presence(&self) -> String {
        let ids = self.user_ids();
        let hash: serde_json::Map<String, serde_json::Value> = ids
            .iter()
            .map(|id| {
                let info = self.members[*id]
                    .user_info
                    .as_deref()
                    .and_then(|raw| serde_json::from_str(raw.get()).ok())
                    .unwrap_or(serde_json::Value::Null);
                ((*id).to_owned(), info)
            })
            .collect();
        serde_json::json!({ "presence": { "ids": ids, "hash": hash, "count": ids.len() } })
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, info: Option<&str>) -> Member {
        Member {
            user_id: id.into(),
            user_info: info.map(|i| RawValue::from_string(i.into()).expect("json")),
        }
    }

    #[test]
    fn counts_users_not_sockets() {
        let mut roster = Roster::default();
        assert!(roster.add(&member("42", Some(r#"{"name":"Ada"}"#))));
        assert!(!roster.add(&member("42", Some(r#"{"name":"Other"}"#))));
        assert!(roster.add(&member("7", None)));
        assert_eq!(roster.user_count(), 2);
        assert!(!roster.remove("42"));
        assert!(roster.contains("42"));
        assert!(roster.remove("42"));
        assert!(!roster.remove("42"));
        assert_eq!(roster.user_ids(), vec!["7"]);
    }

    #[test]
    fn presence_data_lists_ids_hash_and_count() {
        let mut roster = Roster::default();
        roster.add(&member("42", Some(r#"{"name":"Ada"}"#)));
        roster.add(&member("7", None));
        let data: serde_json::Value =
            serde_json::from_str(&roster.encode_presence()).expect("json");
        assert_eq!(
            data,
            serde_json::json!({"presence":{"ids":["42","7"],"hash":{"42":{"name":"Ada"},"7":null},"count":2}})
        );
    }
}

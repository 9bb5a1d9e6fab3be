use super::*;

fn node(id: &str) -> NodeKey {
    NodeKey {
        id: id.into(),
        epoch: 1,
    }
}

fn join(channel: &str, user: Option<&str>) -> Change {
    Change::Joined {
        app: "1".into(),
        channel: channel.into(),
        user: user.map(Into::into),
        info: user.map(|u| format!(r#"{{"name":"{u}"}}"#)),
        socket: Some("1.1".into()),
    }
}

fn leave(channel: &str, user: Option<&str>) -> Change {
    Change::Left {
        app: "1".into(),
        channel: channel.into(),
        user: user.map(Into::into),
    }
}

fn key(channel: &str) -> ChannelKey {
    ("1".into(), channel.into())
}

fn names(transitions: &[Transition]) -> Vec<&'static str> {
    transitions
        .iter()
        .map(|t| match t {
            Transition::Occupied(_) => "occupied",
            Transition::Vacated(_) => "vacated",
            Transition::MemberAdded { .. } => "added",
            Transition::MemberRemoved { .. } => "removed",
            Transition::Count { .. } => "count",
            Transition::Online(_) => "online",
            Transition::Offline(_) => "offline",
        })
        .collect()
}

#[test]
fn a_user_on_two_nodes_is_one_member_added_and_removed_once() {
    let mut view = View::default();
    let (a, b) = (node("a"), node("b"));
    let first = view.apply(&a, &join("presence-r", Some("42")));
    assert_eq!(names(&first), ["occupied", "added", "count"]);
    assert!(matches!(&first[1], Transition::MemberAdded { except: Some(s), .. } if s == "1.1"));
    assert_eq!(
        names(&view.apply(&b, &join("presence-r", Some("42")))),
        ["count"]
    );
    assert_eq!(view.channel("1", "presence-r"), Some((2, 1)));
    assert_eq!(
        names(&view.apply(&a, &leave("presence-r", Some("42")))),
        ["count"]
    );
    assert_eq!(
        names(&view.apply(&b, &leave("presence-r", Some("42")))),
        ["removed", "vacated"]
    );
    assert_eq!(view.channel("1", "presence-r"), None);
    assert!(view.facts(&a).is_some_and(|f| f.channels.is_empty()));
}

#[test]
fn a_dead_nodes_facts_go_as_a_whole() {
    let mut view = View::default();
    let (a, b) = (node("a"), node("b"));
    view.apply(&a, &join("presence-r", Some("1")));
    view.apply(&b, &join("presence-r", Some("1")));
    view.apply(&b, &join("presence-r", Some("2")));
    view.apply(&b, &join("news", None));
    let gone = view.replace(&b, None);
    assert_eq!(
        gone,
        vec![
            Transition::Vacated(key("news")),
            Transition::MemberRemoved {
                channel: key("presence-r"),
                user: "2".into()
            },
            Transition::Count {
                channel: key("presence-r"),
                count: 1
            },
        ]
    );
    assert_eq!(view.members("1", "presence-r").len(), 1);
}

#[test]
fn a_snapshot_announces_only_the_difference() {
    let mut view = View::default();
    let b = node("b");
    view.apply(&b, &join("presence-r", Some("1")));
    view.apply(&b, &join("presence-r", Some("2")));
    // The snapshot still has user 1, no longer user 2, and now user 3.
    let mut snapshot = Facts::default();
    snapshot.change(&join("presence-r", Some("1")));
    snapshot.change(&join("presence-r", Some("3")));
    let diff = view.replace(&b, Some(snapshot));
    assert_eq!(names(&diff), ["added", "removed"]);
    assert_eq!(view.replace(&b, view.facts(&b).cloned()), vec![]);
}

#[test]
fn users_are_online_while_any_node_has_a_signed_in_socket() {
    let mut view = View::default();
    let (a, b) = (node("a"), node("b"));
    let sign_in = Change::SignedIn {
        app: "1".into(),
        user: "7".into(),
    };
    let sign_out = Change::SignedOut {
        app: "1".into(),
        user: "7".into(),
    };
    assert_eq!(names(&view.apply(&a, &sign_in)), ["online"]);
    assert_eq!(names(&view.apply(&b, &sign_in)), Vec::<&str>::new());
    assert_eq!(names(&view.apply(&a, &sign_out)), Vec::<&str>::new());
    assert_eq!(view.signed_in(&("1".into(), "7".into())), 1);
    assert_eq!(names(&view.replace(&b, None)), ["offline"]);
}

#[test]
fn facts_survive_the_wire() {
    let mut facts = Facts::default();
    facts.change(&join("presence-r", Some("1")));
    facts.change(&Change::SignedIn {
        app: "1".into(),
        user: "1".into(),
    });
    let json = serde_json::to_string(&facts).expect("encodes");
    let back: Facts = serde_json::from_str(&json).expect("decodes");
    assert_eq!(back, facts);
    let change = join("c", None);
    let json = serde_json::to_string(&change).expect("encodes");
    assert_eq!(
        serde_json::from_str::<Change>(&json).expect("decodes"),
        change
    );
}

#[test]
fn listings_merge_every_node() {
    let mut view = View::default();
    view.apply(&node("a"), &join("news", None));
    view.apply(&node("b"), &join("news", None));
    view.apply(&node("b"), &join("newsroom", None));
    view.apply(&node("b"), &join("other", None));
    assert_eq!(
        view.channels("1", "news"),
        vec![("news".into(), 2, 0), ("newsroom".into(), 1, 0)]
    );
}

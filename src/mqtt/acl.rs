//! Topic permissions: what one MQTT login may publish and subscribe to. Pure, no I/O.
//!
//! A grant is an MQTT topic filter (`homehub/dev/cam-1/#`). A publish is allowed when its
//! topic matches a publish grant; a subscription is allowed only when every topic its
//! filter could ever match lies inside one single subscribe grant (filter containment), so
//! a client can never widen what it receives with `+` or `#`.
//!
//! Topics beginning with `$` follow MQTT's rule: a filter whose first level is a wildcard
//! does not match them, so only a grant whose first level is that same literal `$…` level
//! covers them.

/// The topic filters one login may publish to and subscribe to, and the few it may retain
/// messages on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
    /// Filters a retained PUBLISH (or will) may go to; anything else retained, or larger
    /// than [`MAX_RETAINED_PAYLOAD`], is delivered live with its retain flag stripped,
    /// because rumqttd keeps retained messages without any bound.
    pub retain: Vec<String>,
}

/// Largest payload the broker may keep as a retained message.
pub const MAX_RETAINED_PAYLOAD: usize = 4096;

/// Longest topic or filter MQTT can carry (a two-byte length prefix).
const MAX_LEN: usize = 65_535;

/// True when `topic` is a valid topic name and lies inside one of the publish grants.
pub fn may_publish(grants: &Grants, topic: &str) -> bool {
    valid_topic(topic) && grants.publish.iter().any(|g| valid_filter(g) && matches(g, topic))
}

/// True when a retained message of `len` bytes on `topic` may be kept by the broker.
pub fn may_retain(grants: &Grants, topic: &str, len: usize) -> bool {
    len <= MAX_RETAINED_PAYLOAD && valid_topic(topic) && grants.retain.iter().any(|g| valid_filter(g) && matches(g, topic))
}

/// True when `filter` is a valid topic filter and every topic it can match lies inside
/// one single subscribe grant.
pub fn may_subscribe(grants: &Grants, filter: &str) -> bool {
    valid_filter(filter) && grants.subscribe.iter().any(|g| valid_filter(g) && contains(g, filter))
}

/// A topic name a client may publish to: non-empty, no wildcards, no NUL, not too long.
pub fn valid_topic(topic: &str) -> bool {
    !topic.is_empty() && topic.len() <= MAX_LEN && !topic.contains(['+', '#', '\0'])
}

/// A topic filter: non-empty, no NUL, not too long; `+` only as a whole level and `#`
/// only as the whole last level.
pub fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.len() > MAX_LEN || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len() - 1;
    levels.iter().enumerate().all(|(i, level)| match *level {
        "+" => true,
        "#" => i == last,
        l => !l.contains(['+', '#']),
    })
}

/// Whether `topic` matches `filter` by MQTT's rules (both assumed valid).
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether every topic `inner` matches is also matched by `outer` (both assumed valid).
fn contains(outer: &str, inner: &str) -> bool {
    let o: Vec<&str> = outer.split('/').collect();
    let i: Vec<&str> = inner.split('/').collect();
    // `$` topics are reachable only through a literal first level, and `outer` must name
    // the same one; `inner` starting with a wildcard matches no `$` topic at all.
    if i[0].starts_with('$') && o[0] != i[0] {
        return false;
    }
    contains_levels(&o, &i)
}

fn contains_levels(outer: &[&str], inner: &[&str]) -> bool {
    match (outer.first(), inner.first()) {
        // `#` matches the parent level and everything below it.
        (Some(&"#"), _) => true,
        (None, None) => true,
        // `inner` matches more (or fewer) levels than `outer` can.
        (None, Some(_)) | (Some(_), None) => false,
        (Some(_), Some(&"#")) => false,
        (Some(&"+"), Some(_)) => contains_levels(&outer[1..], &inner[1..]),
        (Some(_), Some(&"+")) => false,
        (Some(o), Some(i)) => o == i && contains_levels(&outer[1..], &inner[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn grants(publish: &[&str], subscribe: &[&str]) -> Grants {
        Grants {
            publish: publish.iter().map(|s| s.to_string()).collect(),
            subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
            retain: vec![],
        }
    }

    #[test]
    fn retain_needs_a_grant_and_a_small_payload() {
        let g = Grants { retain: vec!["homehub/dev/a/config".into()], ..grants(&["homehub/dev/a/#"], &[]) };
        assert!(may_retain(&g, "homehub/dev/a/config", 0));
        assert!(may_retain(&g, "homehub/dev/a/config", MAX_RETAINED_PAYLOAD));
        assert!(!may_retain(&g, "homehub/dev/a/config", MAX_RETAINED_PAYLOAD + 1));
        assert!(!may_retain(&g, "homehub/dev/a/junk/1", 10));
        assert!(!may_retain(&grants(&["#"], &["#"]), "homehub/dev/a/config", 10));
    }

    #[test]
    fn filter_validity() {
        for ok in ["a", "a/b", "+", "#", "a/+/b", "a/#", "+/+", "/", "a//b", "$SYS/#"] {
            assert!(valid_filter(ok), "{ok}");
        }
        for bad in ["", "a#", "a/#/b", "a+", "a/b+/c", "#/a", "a\0b", "##", "++"] {
            assert!(!valid_filter(bad), "{bad:?}");
        }
        assert!(!valid_filter(&"a".repeat(MAX_LEN + 1)));
    }

    #[test]
    fn topic_validity() {
        for ok in ["a", "a/b", "/", "a//b", "$SYS/x"] {
            assert!(valid_topic(ok), "{ok}");
        }
        for bad in ["", "a/+", "a/#", "a\0", "+"] {
            assert!(!valid_topic(bad), "{bad:?}");
        }
    }

    #[test]
    fn matching_follows_mqtt() {
        let yes =
            [("a/#", "a"), ("a/#", "a/b/c"), ("a/+", "a/"), ("+/b", "a/b"), ("#", "a/b"), ("$SYS/#", "$SYS/x"), ("a/b", "a/b")];
        for (f, t) in yes {
            assert!(matches(f, t), "{f} ~ {t}");
        }
        let no = [("a/+", "a"), ("a/+", "a/b/c"), ("#", "$SYS/x"), ("+/x", "$SYS/x"), ("a/b", "a/b/c"), ("a", "b")];
        for (f, t) in no {
            assert!(!matches(f, t), "{f} !~ {t}");
        }
    }

    #[test]
    fn publish_needs_a_matching_grant() {
        let g = grants(&["homehub/dev/a/#"], &[]);
        assert!(may_publish(&g, "homehub/dev/a/state"));
        assert!(may_publish(&g, "homehub/dev/a"));
        assert!(!may_publish(&g, "homehub/dev/b/state"));
        assert!(!may_publish(&g, "homehub/dev/a/+"));
        assert!(!may_publish(&g, "homehub/dev/a/#"));
        assert!(!may_publish(&g, ""));
        assert!(!may_publish(&grants(&[], &[]), "homehub/dev/a/state"));
    }

    #[test]
    fn subscribe_must_stay_inside_one_grant() {
        let g = grants(&[], &["homehub/dev/a/#"]);
        for ok in ["homehub/dev/a/+/x", "homehub/dev/a/#", "homehub/dev/a", "homehub/dev/a/state", "homehub/dev/a/+"] {
            assert!(may_subscribe(&g, ok), "{ok}");
        }
        for bad in ["homehub/dev/+/state", "homehub/#", "#", "+/dev/a/x", "homehub/dev/b/state", "homehub/dev/a/#/x", ""] {
            assert!(!may_subscribe(&g, bad), "{bad}");
        }
        let exact = grants(&[], &["homehub/pair/x/response"]);
        assert!(may_subscribe(&exact, "homehub/pair/x/response"));
        assert!(!may_subscribe(&exact, "homehub/pair/x/#"));
        assert!(!may_subscribe(&exact, "homehub/pair/+/response"));
        let plus = grants(&[], &["a/+/c"]);
        assert!(may_subscribe(&plus, "a/b/c"));
        assert!(may_subscribe(&plus, "a/+/c"));
        assert!(!may_subscribe(&plus, "a/#"));
        assert!(!may_subscribe(&plus, "a/+/#"));
    }

    #[test]
    fn dollar_topics_need_a_literal_dollar_grant() {
        let all = grants(&["#"], &["#"]);
        assert!(!may_publish(&all, "$SYS/x"));
        assert!(!may_subscribe(&all, "$SYS/#"));
        assert!(!may_subscribe(&all, "$share/g/a"));
        assert!(may_subscribe(&all, "+/x"));
        let sys = grants(&["$SYS/#"], &["$SYS/#"]);
        assert!(may_publish(&sys, "$SYS/x"));
        assert!(may_subscribe(&sys, "$SYS/+"));
        assert!(!may_subscribe(&sys, "$OTHER/x"));
        assert!(!may_subscribe(&sys, "+/x"));
    }

    #[test]
    fn invalid_grants_grant_nothing() {
        let g = grants(&["a/#/b"], &["a/#/b"]);
        assert!(!may_publish(&g, "a/x/b"));
        assert!(!may_subscribe(&g, "a/x/b"));
    }

    /// Small alphabets so that generated filters and topics collide often.
    fn level() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["a", "b", "$s", "", "+", "#"])
    }
    fn topic_level() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["a", "b", "$s", ""])
    }
    fn filter() -> impl Strategy<Value = String> {
        prop::collection::vec(level(), 1..5).prop_map(|l| l.join("/"))
    }
    fn topic() -> impl Strategy<Value = String> {
        prop::collection::vec(topic_level(), 1..6).prop_map(|l| l.join("/"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Soundness: a subscription the ACL allows never delivers a topic outside the grants.
        #[test]
        fn allowed_subscriptions_stay_inside_grants(
            subs in prop::collection::vec(filter(), 0..4),
            f in filter(),
            topics in prop::collection::vec(topic(), 1..16),
        ) {
            let g = Grants { publish: vec![], subscribe: subs, retain: vec![] };
            if may_subscribe(&g, &f) {
                for t in topics.iter().filter(|t| valid_topic(t) && matches(&f, t)) {
                    prop_assert!(
                        g.subscribe.iter().any(|s| valid_filter(s) && matches(s, t)),
                        "{f} allowed by {:?} but delivers {t}", g.subscribe
                    );
                }
            }
        }

        /// A grant always allows subscribing to itself and publishing to what it matches.
        #[test]
        fn grants_allow_themselves(f in filter(), t in topic()) {
            let g = Grants { publish: vec![f.clone()], subscribe: vec![f.clone()], retain: vec![] };
            if valid_filter(&f) {
                prop_assert!(may_subscribe(&g, &f));
                prop_assert_eq!(may_publish(&g, &t), valid_topic(&t) && matches(&f, &t));
            }
        }

        #[test]
        fn never_panics(g1 in ".*", g2 in ".*", s in ".*") {
            let g = Grants { publish: vec![g1.clone(), g2.clone()], subscribe: vec![g1, g2], retain: vec![] };
            let _ = may_publish(&g, &s);
            let _ = may_subscribe(&g, &s);
        }
    }
}

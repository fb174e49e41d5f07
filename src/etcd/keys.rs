//! Where a lock lives in etcd's keyspace, and what its holder key stores.
//!
//! A resource `r` under the key prefix `p` owns every key that starts with
//! `p + esc(r) + "/"`, where `esc` writes `%` as `%25` and `/` as `%2F`. The
//! escaped name has no `/`, so the key range of one resource never contains
//! another's (`a` and `a/b` would otherwise overlap), and since `esc` works
//! character by character, the resources whose names start with `x` are
//! exactly the keys that start with `p + esc(x)`.
//!
//! Under that range:
//! - `h/<owner>`: the holder key, at most one at a time. Its create revision
//!   is the fencing token; its value lists the ids of the owner's holds (the
//!   first and the nested ones), one per line; it is attached to the
//!   holder's lease.
//! - `t/<id>`: a waiter's ticket in the queue, attached to the waiter's own
//!   lease, its value the id of the backend instance that waits.

/// The keys of one resource.
#[derive(Debug, Clone)]
pub(crate) struct LockKeys {
    /// Everything of this resource starts with it.
    pub(crate) base: String,
}

impl LockKeys {
    pub(crate) fn new(key_prefix: &str, resource: &str) -> Self {
        Self {
            base: format!("{key_prefix}{}/", escape(resource)),
        }
    }

    /// The prefix of the holder keys.
    pub(crate) fn holders(&self) -> String {
        format!("{}h/", self.base)
    }

    /// The holder key of `owner`.
    pub(crate) fn holder(&self, owner: &str) -> String {
        format!("{}h/{owner}", self.base)
    }

    /// The prefix of the queue's tickets.
    pub(crate) fn tickets(&self) -> String {
        format!("{}t/", self.base)
    }

    /// A ticket key.
    pub(crate) fn ticket(&self, id: &str) -> String {
        format!("{}t/{id}", self.base)
    }
}

/// The escaped form of a resource name (see the module docs).
pub(crate) fn escape(resource: &str) -> String {
    let mut out = String::with_capacity(resource.len());
    for c in resource.chars() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            c => out.push(c),
        }
    }
    out
}

/// The resource name back from its escaped form; `None` if it is not one.
pub(crate) fn unescape(escaped: &str) -> Option<String> {
    let mut out = String::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let code = rest.get(at..at + 3)?;
        out.push(match code {
            "%25" => '%',
            "%2F" => '/',
            _ => return None,
        });
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// The resource of a holder key (`<prefix><esc(r)>/h/<owner>`), if `key` is
/// one under `key_prefix`.
pub(crate) fn resource_of_holder(key_prefix: &str, key: &str) -> Option<String> {
    let rest = key.strip_prefix(key_prefix)?;
    let (escaped, tail) = rest.split_once('/')?;
    tail.starts_with("h/").then_some(())?;
    unescape(escaped)
}

/// The hold ids a holder key stores.
pub(crate) fn decode_holds(value: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(value)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The value of a holder key with `holds`.
pub(crate) fn encode_holds(holds: &[String]) -> String {
    holds.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_round_trips_and_keeps_resources_apart() {
        for name in ["a", "a/b", "%", "%2F", "x/%/y", "ünï/cödé", ""] {
            assert_eq!(unescape(&escape(name)).as_deref(), Some(name));
            assert!(!escape(name).contains('/'));
        }
        let a = LockKeys::new("p:", "a");
        let ab = LockKeys::new("p:", "a/b");
        assert!(!ab.base.starts_with(&a.base));
        assert_eq!(unescape("%2"), None);
        assert_eq!(unescape("%41"), None);
    }

    #[test]
    fn holder_keys_name_their_resource() {
        let keys = LockKeys::new("fencelock:", "jobs/nightly");
        let holder = keys.holder("00ff:task-7");
        assert_eq!(
            resource_of_holder("fencelock:", &holder).as_deref(),
            Some("jobs/nightly")
        );
        assert_eq!(resource_of_holder("fencelock:", &keys.ticket("1")), None);
        assert_eq!(resource_of_holder("other:", &holder), None);
    }

    #[test]
    fn holds_round_trip() {
        let holds = vec!["a1".to_owned(), "b2".to_owned()];
        assert_eq!(decode_holds(encode_holds(&holds).as_bytes()), holds);
        assert!(decode_holds(b"").is_empty());
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// Names rich in the two escaped characters and the escape's digits.
        fn name() -> impl Strategy<Value = String> {
            proptest::string::string_regex("[a%/2F5ü ]{0,24}").unwrap()
        }

        proptest! {
            #[test]
            fn escaping_round_trips(r in any::<String>()) {
                let escaped = escape(&r);
                prop_assert!(!escaped.contains('/'));
                prop_assert_eq!(unescape(&escaped), Some(r));
            }

            #[test]
            fn escaping_round_trips_on_awkward_names(r in name()) {
                prop_assert_eq!(unescape(&escape(&r)), Some(r));
            }

            /// Whatever unescapes (and has no '/', as no segment has) is the
            /// escaped form of exactly what it unescapes to: two names never
            /// share a key range.
            #[test]
            fn unescape_is_the_inverse_of_escape(s in name()) {
                prop_assume!(!s.contains('/'));
                if let Some(r) = unescape(&s) {
                    prop_assert_eq!(escape(&r), s);
                }
            }

            /// Prefix listing: `r` starts with `x` exactly when its escaped
            /// form starts with `x`'s.
            #[test]
            fn escaping_keeps_prefixes(r in name(), x in name()) {
                prop_assert_eq!(r.starts_with(&x), escape(&r).starts_with(&escape(&x)));
            }

            /// Distinct resources never have one's key range inside the other's.
            #[test]
            fn key_ranges_are_disjoint(p in "[a-z:/]{0,6}", a in name(), b in name()) {
                prop_assume!(a != b);
                let (ka, kb) = (LockKeys::new(&p, &a), LockKeys::new(&p, &b));
                prop_assert!(!ka.base.starts_with(&kb.base));
                prop_assert!(!kb.base.starts_with(&ka.base));
            }

            #[test]
            fn holder_keys_name_their_resource_whatever_the_owner(
                p in "[a-z:/%]{0,6}",
                r in any::<String>(),
                owner in "[0-9a-f:/a-z-]{0,40}",
            ) {
                let keys = LockKeys::new(&p, &r);
                prop_assert_eq!(resource_of_holder(&p, &keys.holder(&owner)), Some(r));
                prop_assert_eq!(resource_of_holder(&p, &keys.ticket(&owner)), None);
            }

            #[test]
            fn holds_round_trip(holds in proptest::collection::vec("[0-9a-f]{1,32}", 0..8)) {
                prop_assert_eq!(decode_holds(encode_holds(&holds).as_bytes()), holds);
            }

            /// Foreign bytes under a holder key never panic the decoder.
            #[test]
            fn any_value_decodes(value in proptest::collection::vec(any::<u8>(), 0..64)) {
                for hold in decode_holds(&value) {
                    prop_assert!(!hold.is_empty() && !hold.contains('\n'));
                }
            }
        }
    }
}

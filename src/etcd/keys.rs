//! Where a lock lives in etcd's keyspace, and what its holder key stores.
//!
//! A resource `r` under the key prefix `p` owns every key that starts with
//! `p + esc(r) + "/"`, where `esc` writes `%` as `%25` and `/` as `%2F`. The
//! escaped name has no `/`, so the key range of one resource never contains
//! another's (`a` and `a/b` would otherwise overlap), and since `esc` works
//! character by character, the resources whose names start with `x` are
//! exactly the keys that start with `p + esc(x)`.
//!
//! Under that range, every holder key starts with `h` and every ticket
//! with `t/`, so one prefix compare (`h`) tells whether the name is in use
//! at all, whatever its kind, and the letter after `h` tells the kind:
//! - `h/<owner>`: the holder key of an exclusive lock, at most one at a
//!   time. Its create revision is the fencing token; its value lists the ids
//!   of the owner's holds (the first and the nested ones), one per line; it
//!   is attached to the holder's lease.
//! - `hr/<owner>` and `hw/<owner>`: the read and write holder keys of a
//!   read-write lock, one per owner, stored as the exclusive one. Any
//!   number of `hr/` keys, or one `hw/` key and nothing else. A downgrade
//!   moves `hw/<owner>` to `hr/<owner>` (a new key, so a new create
//!   revision): the value then carries the token it keeps as a line
//!   `@<token>`.
//! - `hp/<permits>/<slot>`: a permit of a semaphore of `permits`, in
//!   `slot`; its value is the hold id and a line `#<owner>`. The count in
//!   the name lets one range compare refuse a client with another count,
//!   and the slot in the name makes two live permits of one slot
//!   impossible.
//! - `t/<kind><id>`: a waiter's ticket in the queue, attached to the
//!   waiter's own lease, its value the owner that waits. `<kind>` is empty
//!   for the exclusive lock and `r`, `w` or `p` for readers, writers and
//!   permits; ids are hex digits, so `t/w` holds exactly the writers'
//!   tickets.
//!
//! Hold ids are hex digits, so the marks `@` and `#` never start one.

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

    /// The prefix of every holder key, of any kind.
    pub(crate) fn all_holders(&self) -> String {
        format!("{}h", self.base)
    }

    /// The prefix of the read holder keys.
    pub(crate) fn readers(&self) -> String {
        format!("{}hr/", self.base)
    }

    /// The read holder key of `owner`.
    pub(crate) fn reader(&self, owner: &str) -> String {
        format!("{}hr/{owner}", self.base)
    }

    /// The prefix of the write holder keys.
    pub(crate) fn writers(&self) -> String {
        format!("{}hw/", self.base)
    }

    /// The write holder key of `owner`.
    pub(crate) fn writer(&self, owner: &str) -> String {
        format!("{}hw/{owner}", self.base)
    }

    /// The prefix of the permit keys, whatever their count.
    pub(crate) fn permits(&self) -> String {
        format!("{}hp/", self.base)
    }

    /// The prefix of the permit keys of a semaphore of `permits`.
    pub(crate) fn permits_of(&self, permits: u32) -> String {
        format!("{}hp/{permits}/", self.base)
    }

    /// The key of the permit in `slot` of a semaphore of `permits`.
    pub(crate) fn permit(&self, permits: u32, slot: u32) -> String {
        format!("{}hp/{permits}/{slot}", self.base)
    }

    /// The prefix of the writers' tickets.
    pub(crate) fn write_tickets(&self) -> String {
        format!("{}t/w", self.base)
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

/// The resource of a holder key of any kind (`<prefix><esc(r)>/h…`), if
/// `key` is one under `key_prefix`.
pub(crate) fn resource_of_holder(key_prefix: &str, key: &str) -> Option<String> {
    let rest = key.strip_prefix(key_prefix)?;
    let (escaped, tail) = rest.split_once('/')?;
    Kind::of_tail(tail)?;
    unescape(escaped)
}

/// What a holder key under a resource's range is, told by its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `h/<owner>`: an exclusive lock.
    Exclusive(String),
    /// `hr/<owner>`: a read hold.
    Reader(String),
    /// `hw/<owner>`: a write hold.
    Writer(String),
    /// `hp/<permits>/<slot>`: a permit.
    Permit { permits: u32, slot: u32 },
}

impl Kind {
    /// The kind of the key whose name, after the resource's base, is
    /// `tail`; `None` for tickets and foreign keys.
    pub(crate) fn of_tail(tail: &str) -> Option<Self> {
        if let Some(owner) = tail.strip_prefix("h/") {
            return Some(Kind::Exclusive(owner.to_owned()));
        }
        if let Some(owner) = tail.strip_prefix("hr/") {
            return Some(Kind::Reader(owner.to_owned()));
        }
        if let Some(owner) = tail.strip_prefix("hw/") {
            return Some(Kind::Writer(owner.to_owned()));
        }
        let (permits, slot) = tail.strip_prefix("hp/")?.split_once('/')?;
        Some(Kind::Permit {
            permits: permits.parse().ok()?,
            slot: slot.parse().ok()?,
        })
    }

    /// The kind of resource it belongs to, as
    /// [`Mode::resource_kind`](crate::backend::Mode::resource_kind) names it.
    pub(crate) fn resource_kind(&self) -> &'static str {
        match self {
            Kind::Exclusive(_) => "lock",
            Kind::Reader(_) | Kind::Writer(_) => "rwlock",
            Kind::Permit { .. } => "semaphore",
        }
    }
}

/// Whether a line of a holder key's value is a mark (a kept token or a
/// permit's owner) rather than a hold id.
fn is_mark(line: &str) -> bool {
    line.starts_with('@') || line.starts_with('#')
}

/// The hold ids a holder key stores.
pub(crate) fn decode_holds(value: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(value)
        .lines()
        .filter(|l| !l.is_empty() && !is_mark(l))
        .map(str::to_owned)
        .collect()
}

/// The token a holder key keeps from before a downgrade (its `@` line).
pub(crate) fn kept_token(value: &[u8]) -> Option<u64> {
    String::from_utf8_lossy(value)
        .lines()
        .find_map(|l| l.strip_prefix('@')?.parse().ok())
}

/// The owner a permit key names (its `#` line).
pub(crate) fn permit_owner(value: &[u8]) -> Option<String> {
    String::from_utf8_lossy(value)
        .lines()
        .find_map(|l| l.strip_prefix('#').map(str::to_owned))
}

/// The value of a holder key that was `old`, with `holds` instead of its
/// hold ids: its marks stay, so a kept token or a permit's owner survives
/// the nested holds coming and going.
pub(crate) fn reencode(old: &[u8], holds: &[String]) -> String {
    let old = String::from_utf8_lossy(old);
    let marks = old.lines().filter(|l| is_mark(l));
    let lines: Vec<&str> = holds.iter().map(String::as_str).chain(marks).collect();
    lines.join("\n")
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
    fn kinds_are_told_by_name_and_tickets_are_none() {
        let keys = LockKeys::new("p:", "r");
        let tail = |k: String| k[keys.base.len()..].to_owned();
        assert_eq!(
            Kind::of_tail(&tail(keys.reader("o"))),
            Some(Kind::Reader("o".into()))
        );
        assert_eq!(
            Kind::of_tail(&tail(keys.writer("o/x"))),
            Some(Kind::Writer("o/x".into()))
        );
        assert_eq!(
            Kind::of_tail(&tail(keys.permit(4, 3))),
            Some(Kind::Permit {
                permits: 4,
                slot: 3
            })
        );
        assert_eq!(Kind::of_tail(&tail(keys.ticket("wabc"))), None);
        assert_eq!(Kind::of_tail("hp/x/1"), None);
        for key in [keys.reader("o"), keys.writer("o"), keys.permit(2, 1)] {
            assert!(key.starts_with(&keys.all_holders()));
            assert_eq!(resource_of_holder("p:", &key).as_deref(), Some("r"));
        }
        assert!(keys.ticket("w1").starts_with(&keys.write_tickets()));
        assert!(!keys.ticket("0a").starts_with(&keys.write_tickets()));
    }

    #[test]
    fn marks_survive_a_reencode_and_are_not_holds() {
        let value = reencode(b"", &["a1".to_owned()]);
        let value = format!("{value}\n@42\n#owner");
        assert_eq!(decode_holds(value.as_bytes()), vec!["a1".to_owned()]);
        assert_eq!(kept_token(value.as_bytes()), Some(42));
        assert_eq!(permit_owner(value.as_bytes()).as_deref(), Some("owner"));
        let more = reencode(value.as_bytes(), &["a1".to_owned(), "b2".to_owned()]);
        assert_eq!(decode_holds(more.as_bytes()).len(), 2);
        assert_eq!(kept_token(more.as_bytes()), Some(42));
        assert_eq!(permit_owner(more.as_bytes()).as_deref(), Some("owner"));
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

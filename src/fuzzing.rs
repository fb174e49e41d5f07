//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`): each
//! takes bytes from outside, turns them into values the way the library
//! does, and asserts what the library promises about the result. Not a
//! stable API.

use crate::options::validate_key;

/// Decodes `resp` (RESP bytes, as a node would send them) as the reply of
/// every script: acquire, extend, release, raise, inspect, and a SCAN step.
pub fn script_reply(resp: &[u8]) {
    if let Ok(value) = redis::parse_redis_value(resp) {
        crate::redis::fuzz::decode_any(value);
    }
}

/// Checks `resource` as a resource name, and where it is valid, that every
/// backend's key for it names it back.
pub fn resource_name(prefix: &str, resource: &str) {
    if validate_key(resource).is_err() {
        return;
    }
    {
        use crate::redis::fuzz::{Keys, resource_of, scan_pattern};
        let keys = Keys::new(prefix, resource);
        assert_eq!(resource_of(prefix, &keys.lock), Some(resource));
        assert_eq!(resource_of(prefix, &keys.fence), None);
        let _ = scan_pattern(prefix, resource);
    }
    #[cfg(feature = "etcd")]
    {
        use crate::etcd::fuzz::{LockKeys, escape, resource_of_holder, unescape};
        let escaped = escape(resource);
        assert!(!escaped.contains('/'));
        assert_eq!(unescape(&escaped).as_deref(), Some(resource));
        let keys = LockKeys::new(prefix, resource);
        assert_eq!(
            resource_of_holder(prefix, &keys.holder("0f:task-1")).as_deref(),
            Some(resource)
        );
    }
}

/// Decodes `key` as an etcd key under `prefix` and `value` as a holder
/// key's value, as listing and inspecting do with what they find in etcd.
#[cfg(feature = "etcd")]
pub fn etcd_holder(prefix: &str, key: &str, value: &[u8]) {
    use crate::etcd::fuzz::{decode_holds, escape, resource_of_holder, unescape};
    if let Some(resource) = resource_of_holder(prefix, key) {
        // The escaped form found in the key is the only one of the name.
        let escaped = key[prefix.len()..].split('/').next().unwrap_or_default();
        assert_eq!(escape(&resource), escaped);
    }
    if !key.contains('/')
        && let Some(resource) = unescape(key)
    {
        assert_eq!(escape(&resource), key);
    }
    for hold in decode_holds(value) {
        assert!(!hold.is_empty() && !hold.contains('\n'));
    }
}

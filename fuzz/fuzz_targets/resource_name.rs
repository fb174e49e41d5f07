//! Resource names and key prefixes, and keys and values found in etcd:
//! checked, turned into keys and named back without panics or mix-ups.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // "<prefix>\0<resource>", else the whole input is the resource.
    let (prefix, resource) = text.split_once('\0').unwrap_or(("fencelock:", text));
    fencelock::fuzzing::resource_name(prefix, resource);
    fencelock::fuzzing::etcd_holder(prefix, resource, data);
});

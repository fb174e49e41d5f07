//! A node's reply to any script, as RESP bytes: decoding never panics, and
//! what decodes keeps the decoders' promises.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fencelock::fuzzing::script_reply(data);
});

//! Node URLs, one or a comma-separated list: accepted or refused with
//! `InvalidOptions`, never a panic, and a refusal never shows a password.
#![no_main]

use fencelock::{Error, RedisNode, Redlock};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match RedisNode::from_url(text) {
        Ok(node) => {
            let _ = format!("{node:?}");
        }
        Err(Error::InvalidOptions(msg)) => {
            // A password between "://user:" and "@" never reaches the message.
            // (Unless the same text also stands elsewhere in the URL.)
            if let Some((scheme, rest)) = text.split_once("://")
                && let Some((userinfo, host)) = rest.rsplit_once('@')
                && let Some((_, password)) = userinfo.split_once(':')
                && password.len() >= 8
                && !password.contains(['@', '/', ' ', '*'])
                && !host.contains(password)
                && !scheme.contains(password)
                && !"bad node URL".contains(password)
            {
                assert!(!msg.contains(password), "{msg}");
            }
        }
        Err(other) => panic!("not InvalidOptions: {other:?}"),
    }
    match Redlock::from_urls(text.split(',')) {
        Ok(redlock) => assert!(!redlock.nodes().is_empty()),
        Err(Error::InvalidOptions(_)) => {}
        Err(other) => panic!("not InvalidOptions: {other:?}"),
    }
});

//! Owner ids and handoff strings from outside: parsed or refused, and what
//! parses prints back as the same value.
#![no_main]

use fencelock::{Error, Handoff, Owner};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match text.parse::<Owner>() {
        Ok(owner) => {
            assert_eq!(owner.to_string(), text.to_ascii_lowercase());
            assert_eq!(owner.to_string().parse::<Owner>().unwrap(), owner);
            let _ = format!("{owner:?}");
        }
        Err(Error::InvalidOptions(_)) => {}
        Err(other) => panic!("{other:?}"),
    }
    match text.parse::<Handoff>() {
        Ok(handoff) => {
            assert_eq!(handoff.to_string(), text);
            assert_eq!(handoff.to_string().parse::<Handoff>().unwrap(), handoff);
            assert!(handoff.token().get() > 0);
            let _ = format!("{handoff:?}");
        }
        Err(Error::InvalidOptions(_) | Error::InvalidKey(_)) => {}
        Err(other) => panic!("{other:?}"),
    }
});

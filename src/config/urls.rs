//! Reading a URL list: which backend each scheme names in this build, and
//! one backend per list. A Redis list is then checked by `Redlock` itself,
//! an etcd list by `etcd.rs`. Pure: no I/O, nothing connects.

use super::Spec;
use crate::backend::without_credentials;
use crate::error::{Error, Result};

/// A backend a scheme can name in this build.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    #[cfg(feature = "redis")]
    Redis,
    #[cfg(feature = "etcd")]
    Etcd,
}

/// What a scheme of Redis names: the backend, or the feature it needs.
#[cfg(feature = "redis")]
const REDIS: Result<Kind, &str> = Ok(Kind::Redis);
#[cfg(not(feature = "redis"))]
const REDIS: Result<Kind, &str> = Err("redis");
#[cfg(feature = "tls")]
const REDIS_TLS: Result<Kind, &str> = Ok(Kind::Redis);
#[cfg(not(feature = "tls"))]
const REDIS_TLS: Result<Kind, &str> = Err("tls");
#[cfg(feature = "etcd")]
const ETCD: Result<Kind, &str> = Ok(Kind::Etcd);
#[cfg(not(feature = "etcd"))]
const ETCD: Result<Kind, &str> = Err("etcd");

/// Every scheme of a backend, in the order messages list them.
const SCHEMES: [&str; 5] = ["redis", "rediss", "redis+unix", "unix", "etcd"];

/// The backend `scheme` (lower case) names in this build: `None` for a
/// scheme of no backend, `Some(Err(feature))` for one of a backend whose
/// feature this build lacks.
fn backend_of(scheme: &str) -> Option<Result<Kind, &'static str>> {
    match scheme {
        "redis" | "redis+unix" | "unix" => Some(REDIS),
        "rediss" => Some(REDIS_TLS),
        "etcd" => Some(ETCD),
        _ => None,
    }
}

/// The schemes this build takes.
fn accepted() -> Vec<&'static str> {
    SCHEMES
        .into_iter()
        .filter(|s| matches!(backend_of(s), Some(Ok(_))))
        .collect()
}

/// The scheme of `url` in lower case, if it has one.
fn scheme_of(url: &str) -> Option<String> {
    let (scheme, _) = url.split_once("://")?;
    let valid = scheme
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| scheme.to_ascii_lowercase())
}

/// The backend `url` names, or an error for a scheme (or none) that this
/// build does not take.
fn kind_of(url: &str) -> Result<Kind> {
    let unsupported = |scheme: &str, feature| Error::UnsupportedScheme {
        url: without_credentials(url),
        scheme: scheme.to_owned(),
        feature,
        accepted: accepted(),
    };
    let scheme = scheme_of(url).unwrap_or_default();
    match backend_of(&scheme) {
        Some(Ok(kind)) => Ok(kind),
        Some(Err(feature)) => Err(unsupported(&scheme, Some(feature))),
        None => Err(unsupported(&scheme, None)),
    }
}

impl Kind {
    /// Whether the URLs after a list's first may leave the scheme out: an
    /// etcd cluster's members may, each Redis node is a URL of its own.
    fn bare_followers(self) -> bool {
        match self {
            #[cfg(feature = "redis")]
            Kind::Redis => false,
            #[cfg(feature = "etcd")]
            Kind::Etcd => true,
        }
    }
}

/// Reads a list of URLs into what it names (see [`BackendConfig`]).
///
/// [`BackendConfig`]: super::BackendConfig
pub(super) fn parse<I, S>(urls: I) -> Result<Spec>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let urls: Vec<String> = urls
        .into_iter()
        .map(|url| url.as_ref().trim().to_owned())
        .collect();
    if urls.iter().all(String::is_empty) {
        return Err(Error::InvalidOptions("no backend URLs given".into()));
    }
    if let Some(at) = urls.iter().position(String::is_empty) {
        return Err(Error::InvalidOptions(format!(
            "URL {} of {} in the list is empty (expected comma-separated URLs)",
            at + 1,
            urls.len()
        )));
    }
    let kind = kind_of(&urls[0])?;
    for url in &urls[1..] {
        if kind.bare_followers() && scheme_of(url).is_none() {
            continue;
        }
        if kind_of(url)? != kind {
            return Err(Error::MixedBackends {
                first: without_credentials(&urls[0]),
                other: without_credentials(url),
            });
        }
    }
    match kind {
        #[cfg(feature = "redis")]
        Kind::Redis => {
            // The same checks, without I/O, as the backend's own
            // constructor: it is that constructor (nothing connects until
            // first use).
            crate::redis::Redlock::from_urls(&urls)?;
            Ok(Spec::Redis(urls))
        }
        #[cfg(feature = "etcd")]
        Kind::Etcd => super::etcd::EtcdMembers::parse(&urls).map(Spec::Etcd),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BackendConfig;

    fn error(list: &str) -> Error {
        BackendConfig::parse(list).expect_err(list)
    }

    fn invalid(list: &str) -> String {
        match error(list) {
            Error::InvalidOptions(message) => message,
            other => panic!("{list}: expected InvalidOptions, got {other:?}"),
        }
    }

    #[test]
    fn schemes_of_no_backend_are_refused_by_name() {
        for (list, scheme) in [
            ("http://127.0.0.1:2379", "http"),
            ("mysql://db:3306", "mysql"),
            ("HTTPS://h:1", "https"),
            ("127.0.0.1:6379", ""),
            ("localhost", ""),
            ("://h:1", ""),
        ] {
            match error(list) {
                Error::UnsupportedScheme {
                    scheme: found,
                    feature: None,
                    accepted,
                    url,
                } => {
                    assert_eq!(found, scheme, "{list}");
                    assert_eq!(url, list);
                    assert!(
                        !accepted.is_empty() && !accepted.contains(&scheme),
                        "{accepted:?}"
                    );
                }
                other => panic!("{list}: {other:?}"),
            }
        }
        let message = error("http://127.0.0.1:2379").to_string();
        assert!(message.contains("http://127.0.0.1:2379"), "{message}");
        assert!(
            message.contains("etcd://") || message.contains("redis://"),
            "{message}"
        );
    }

    #[test]
    fn empty_lists_and_urls_are_refused() {
        for list in ["", " ", ",", " , "] {
            assert!(invalid(list).contains("no backend URLs"), "{list:?}");
        }
        assert!(invalid("redis://a:1,,redis://b:1").contains("URL 2 of 3"));
        assert!(invalid("redis://a:1, ").contains("URL 2 of 2"));
        assert!(BackendConfig::from_urls(Vec::<String>::new()).is_err());
    }

    #[cfg(feature = "redis")]
    #[test]
    fn redis_lists_are_checked_as_redlock_checks_them() {
        let config = BackendConfig::parse(" redis://a:1 ,redis://b:1, unix:///tmp/r.sock").unwrap();
        assert_eq!((config.backend(), config.nodes()), ("redis", 3));
        assert_eq!(
            config.to_string(),
            "redis://a:1,redis://b:1,unix:///tmp/r.sock"
        );
        assert!(invalid("redis://a:1,redis://b:1,redis://a:1").contains("listed twice"));
        assert!(invalid("redis://a:99999").contains("bad node URL"));
        // Every node of a Redis list is a URL of its own.
        assert!(matches!(
            error("redis://a:1,b:1"),
            Error::UnsupportedScheme { scheme, .. } if scheme.is_empty()
        ));
        let tls = BackendConfig::parse("rediss://a:1");
        if cfg!(feature = "tls") {
            tls.unwrap();
        } else {
            assert!(matches!(
                tls,
                Err(Error::UnsupportedScheme {
                    feature: Some("tls"),
                    ..
                })
            ));
        }
    }

    #[test]
    fn passwords_never_show() {
        let secret = "s3cret";
        for list in [
            "redis://:s3cret@a:1,redis://user:s3cret@b:1",
            "http://u:s3cret@h:1",
            "u:s3cret@h:1",
            "redis://:s3cret@a:1,etcd://u:s3cret@h:1",
            "redis://:s3cret@a:1,u:s3cret@h:1",
            "redis://:s3cret@a:99999",
            "etcd://u:s3cret@h:1,etcd://v:s3cret@h:2",
            "etcd://u:s3cret@h:0",
            "etcd://u:s3cret%zz@h:1",
        ] {
            let shown = match BackendConfig::parse(list) {
                Ok(config) => format!("{config} {config:?}"),
                Err(e) => format!("{e} {e:?}"),
            };
            assert!(!shown.contains(secret), "{list}: {shown}");
        }
    }

    #[cfg(feature = "redis")]
    #[test]
    fn a_redis_list_with_an_etcd_url_is_mixed_or_needs_the_feature() {
        let error = error("redis://a:1,etcd://h:2379");
        if cfg!(feature = "etcd") {
            assert!(matches!(error, Error::MixedBackends { .. }), "{error:?}");
        } else {
            assert!(
                matches!(
                    error,
                    Error::UnsupportedScheme {
                        feature: Some("etcd"),
                        ..
                    }
                ),
                "{error:?}"
            );
        }
    }

    #[test]
    fn a_quarantine_is_for_redis_nodes_and_in_range() {
        use std::time::Duration;
        let redis = BackendConfig::parse("redis://10.0.0.1:6379,redis://10.0.0.2:6379").unwrap();
        assert_eq!(redis.quarantine(), None);
        let set = redis
            .clone()
            .with_quarantine(Duration::from_secs(30))
            .unwrap();
        assert_eq!(set.quarantine(), Some(Duration::from_secs(30)));
        for bad in [Duration::ZERO, Duration::from_secs(49 * 3600)] {
            let error = redis.clone().with_quarantine(bad).unwrap_err();
            assert!(matches!(error, Error::InvalidOptions(_)), "{error:?}");
        }
        #[cfg(feature = "etcd")]
        {
            let etcd = BackendConfig::parse("etcd://10.0.1.1:2379").unwrap();
            let error = etcd.with_quarantine(Duration::from_secs(30)).unwrap_err();
            assert!(error.to_string().contains("etcd"), "{error}");
        }
    }

    #[test]
    fn parsing_never_panics() {
        use proptest::prelude::*;
        proptest!(|(list in "[a-z:/@%,\\[\\]0-9 .+]{0,40}")| {
            let _ = BackendConfig::parse(&list);
        });
    }
}

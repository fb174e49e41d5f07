//! A backend chosen by configuration: a URL list read into a
//! [`BackendConfig`] (pure, checked before any I/O), [`AnyBackend`], the
//! one type that is whichever backend the list names, and [`Registry`],
//! named lockers built from configuration.
//!
//! One URL list is one backend: the nodes of a Redis deployment (one URL,
//! or several for a Redlock quorum) or the members of one etcd cluster.

mod any;
#[cfg(feature = "etcd")]
mod etcd;
mod registry;
mod urls;

use std::fmt;
use std::str::FromStr;

pub use any::AnyBackend;
pub use registry::{Registry, RegistryConfig};

use crate::error::Result;

/// A backend named by a URL list, read and checked but not connected:
/// which backend, and its nodes or members. Plain data; connect it with
/// [`AnyBackend::connect`] (or [`Locker::connect`](crate::Locker::connect)).
///
/// The list is comma-separated (spaces around the URLs are ignored), and
/// its schemes say which backend it is:
///
/// | scheme | backend | feature |
/// | --- | --- | --- |
/// | `redis://`, `redis+unix://`, `unix://` | Redis: one node, or a Redlock quorum of several | `redis` (default) |
/// | `rediss://` | Redis over TLS | `tls` |
/// | `etcd://` | the members of one etcd cluster | `etcd` |
///
/// - **Redis**: every URL is one independent node, written as
///   [`RedisNode::from_url`](crate::RedisNode::from_url) takes it,
///   password included (`redis://:password@10.0.0.1:6379`):
///   `redis://10.0.0.1:6379,redis://10.0.0.2:6379,redis://10.0.0.3:6379`.
/// - **etcd**: `etcd://` and the members' `host:port` (port 2379 when left
///   out), the scheme once or on every member:
///   `etcd://10.0.1.1:2379,10.0.1.2:2379,10.0.1.3:2379`. Members are
///   reached over plain HTTP/2 (`http://host:port`, as
///   [`Etcd::connect`](crate::Etcd::connect) takes them). A user and
///   password for the cluster may come before a host
///   (`etcd://user:password@10.0.1.1:2379,10.0.1.2:2379`), percent-encoded
///   where they hold `@`, `:`, `,` or `%`; given on several members, they
///   must be the same.
///
/// Everything is checked here, before any I/O: an empty list or URL, a
/// scheme of no backend (`http://`, `mysql://`, none at all), a backend
/// whose feature this build lacks, two backends in one list, a URL that
/// does not parse, a node or member listed twice. `Display` and `Debug`
/// show the list with every password hidden.
///
/// ```
/// use fencelock::{BackendConfig, Error};
///
/// let redlock: BackendConfig = "redis://10.0.0.1:6379, redis://10.0.0.2:6379, redis://10.0.0.3:6379".parse()?;
/// assert_eq!((redlock.backend(), redlock.nodes()), ("redis", 3));
///
/// let wrong = BackendConfig::parse("http://10.0.1.1:2379");
/// assert!(matches!(wrong, Err(Error::UnsupportedScheme { ref scheme, .. }) if scheme == "http"));
/// let mixed = BackendConfig::parse("redis://10.0.0.1:6379,etcd://10.0.1.1:2379");
/// assert!(matches!(mixed, Err(Error::MixedBackends { .. } | Error::UnsupportedScheme { .. })));
/// # Ok::<(), fencelock::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct BackendConfig {
    spec: Spec,
    /// For Redis: the quarantine of nodes that lost their data, when not
    /// the default ([`Redlock::with_quarantine`](crate::Redlock::with_quarantine)).
    quarantine: Option<std::time::Duration>,
}

/// What a list names, per backend.
#[derive(Clone, PartialEq, Eq)]
enum Spec {
    /// The nodes' URLs, as given.
    #[cfg(feature = "redis")]
    Redis(Vec<String>),
    #[cfg(feature = "etcd")]
    Etcd(etcd::EtcdMembers),
}

impl BackendConfig {
    /// Reads a comma-separated URL list (see the [type's doc](BackendConfig)).
    ///
    /// # Errors
    ///
    /// - [`Error::UnsupportedScheme`](crate::Error::UnsupportedScheme) for a
    ///   URL with a scheme of no backend, or none, or of a backend whose
    ///   feature this build lacks, naming the URL and the schemes this build
    ///   takes;
    /// - [`Error::MixedBackends`](crate::Error::MixedBackends) for URLs of
    ///   two backends in one list;
    /// - [`Error::InvalidOptions`](crate::Error::InvalidOptions) for an
    ///   empty list or URL, a URL that does not parse, or a node or member
    ///   listed twice.
    ///
    /// No message shows a password.
    pub fn parse(list: &str) -> Result<Self> {
        Self::from_urls(list.split(','))
    }

    /// The same from a list already split into URLs (such as a
    /// command-line option given several times).
    ///
    /// # Errors
    ///
    /// As [`parse`](Self::parse).
    pub fn from_urls<I, S>(urls: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        urls::parse(urls).map(|spec| Self {
            spec,
            quarantine: None,
        })
    }

    /// The same list, whose Redis nodes, once connected, quarantine a node
    /// that lost its data for `quarantine`
    /// ([`Redlock::with_quarantine`](crate::Redlock::with_quarantine)):
    /// every client of the same nodes must use one that covers the longest
    /// lease any of them takes.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`](crate::Error::InvalidOptions) for a
    /// quarantine out of `with_quarantine`'s range, and for a list of etcd
    /// members: etcd keeps its data by consensus and has no quarantine.
    pub fn with_quarantine(self, quarantine: std::time::Duration) -> Result<Self> {
        match &self.spec {
            #[cfg(feature = "redis")]
            Spec::Redis(_) => {
                crate::redis::check_quarantine(quarantine)?;
                Ok(Self {
                    quarantine: Some(quarantine),
                    ..self
                })
            }
            #[cfg(feature = "etcd")]
            Spec::Etcd(_) => Err(crate::Error::InvalidOptions(format!(
                "a quarantine ({quarantine:?}) applies to Redis nodes, not to an etcd cluster"
            ))),
        }
    }

    /// The quarantine set with [`with_quarantine`](Self::with_quarantine),
    /// if any.
    pub fn quarantine(&self) -> Option<std::time::Duration> {
        self.quarantine
    }

    /// The backend the list names, as [`Backend::name`](crate::Backend::name)
    /// calls it: `"redis"` or `"etcd"`.
    pub fn backend(&self) -> &'static str {
        match &self.spec {
            #[cfg(feature = "redis")]
            Spec::Redis(_) => "redis",
            #[cfg(feature = "etcd")]
            Spec::Etcd(_) => "etcd",
        }
    }

    /// How many Redis nodes or etcd members the list names.
    pub fn nodes(&self) -> usize {
        match &self.spec {
            #[cfg(feature = "redis")]
            Spec::Redis(urls) => urls.len(),
            #[cfg(feature = "etcd")]
            Spec::Etcd(members) => members.endpoints.len(),
        }
    }
}

impl FromStr for BackendConfig {
    type Err = crate::Error;

    fn from_str(list: &str) -> Result<Self> {
        Self::parse(list)
    }
}

/// The list, comma-separated, every password hidden.
impl fmt::Display for BackendConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.spec {
            #[cfg(feature = "redis")]
            Spec::Redis(nodes) => {
                for (i, url) in nodes.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "," };
                    write!(f, "{sep}{}", crate::backend::without_credentials(url))?;
                }
                Ok(())
            }
            #[cfg(feature = "etcd")]
            Spec::Etcd(members) => fmt::Display::fmt(members, f),
        }
    }
}

impl fmt::Debug for BackendConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BackendConfig")
            .field(&format_args!("{self}"))
            .finish()
    }
}

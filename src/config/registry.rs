//! [`Registry`]: named lockers, each on the backend its configuration
//! names, and [`RegistryConfig`], that configuration as checked data.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use super::{AnyBackend, BackendConfig};
use crate::backend::without_credentials;
use crate::error::{Error, Result};
use crate::locker::Locker;
use crate::options::LockOptions;

/// The longest locker name, in characters.
const MAX_NAME: usize = 64;

/// The configuration of a [`Registry`]: named lockers, each with the URL
/// list of its backend ([`BackendConfig`]) and its [`LockOptions`]
/// (default: [`LockOptions::default`]). Plain data, checked as it is
/// built, before any I/O; [`Registry::connect`] makes the lockers.
///
/// A name is 1 to 64 ASCII letters, digits, `-`, `_` and `.`, given once.
///
/// Built in code, or read from text with [`parse`](RegistryConfig::parse)
/// (one `name = URL,URL,...` a line). Options are set in code: the text
/// names backends only.
///
/// ```
/// use std::time::Duration;
/// use fencelock::{Error, LockOptions, RegistryConfig};
///
/// let config = RegistryConfig::new()
///     .add("billing", "redis://10.0.0.1:6379,redis://10.0.0.2:6379,redis://10.0.0.3:6379")?
///     .add("reports", "redis://10.0.0.4:6379")?
///     .options("billing", LockOptions::default().ttl(Duration::from_secs(60)))?;
/// assert_eq!(config.names().collect::<Vec<_>>(), ["billing", "reports"]);
///
/// let twice = config.clone().add("billing", "redis://10.0.0.5:6379");
/// assert!(matches!(twice, Err(Error::DuplicateLocker { .. })));
/// let scheme = RegistryConfig::new().add("jobs", "mysql://10.0.0.6:3306");
/// assert!(matches!(scheme, Err(Error::UnsupportedScheme { .. })));
/// # Ok::<(), fencelock::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct RegistryConfig {
    lockers: Vec<Entry>,
}

/// One named locker of a configuration.
#[derive(Clone, Debug)]
struct Entry {
    name: String,
    backend: BackendConfig,
    options: LockOptions,
}

impl RegistryConfig {
    /// A configuration with no lockers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same configuration with the locker `name` on the backend that
    /// the comma-separated URL list `urls` names (see [`BackendConfig`]),
    /// with default options.
    ///
    /// # Errors
    ///
    /// - [`Error::DuplicateLocker`] when `name` is configured already;
    /// - [`Error::InvalidOptions`] for a name that breaks the rule above;
    /// - the errors of [`BackendConfig::parse`] for the list (an
    ///   [`Error::InvalidOptions`] message starts with `locker "name": `).
    pub fn add(mut self, name: &str, urls: &str) -> Result<Self> {
        check_name(name)?;
        if self.lockers.iter().any(|entry| entry.name == name) {
            return Err(Error::DuplicateLocker {
                name: name.to_owned(),
            });
        }
        let backend = BackendConfig::parse(urls).map_err(|e| in_locker(name, e))?;
        self.lockers.push(Entry {
            name: name.to_owned(),
            backend,
            options: LockOptions::default(),
        });
        Ok(self)
    }

    /// The same configuration with `options` for the locker `name`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownLocker`] when no locker is called `name`;
    /// [`Error::InvalidOptions`] as [`LockOptions::validate`].
    pub fn options(mut self, name: &str, options: LockOptions) -> Result<Self> {
        options.validate().map_err(|e| in_locker(name, e))?;
        match self.lockers.iter_mut().find(|entry| entry.name == name) {
            Some(entry) => entry.options = options,
            None => {
                return Err(Error::UnknownLocker {
                    name: name.to_owned(),
                    known: self.names().map(str::to_owned).collect(),
                });
            }
        }
        Ok(self)
    }

    /// Reads the text form: one locker a line, `name = URL,URL,...`
    /// ([`BackendConfig`]), with spaces anywhere around the name, the `=`
    /// and the URLs; blank lines and lines starting with `#` are skipped.
    ///
    /// ```text
    /// # Invoices: a Redlock quorum of three Redis nodes.
    /// billing    = redis://10.0.0.1:6379,redis://10.0.0.2:6379,redis://10.0.0.3:6379
    /// # Schema migrations: the etcd cluster.
    /// migrations = etcd://10.0.1.1:2379,10.0.1.2:2379,10.0.1.3:2379
    /// ```
    ///
    /// # Errors
    ///
    /// As [`add`](Self::add) for each line, and [`Error::InvalidOptions`]
    /// for a line without `=`. An [`Error::InvalidOptions`] message starts
    /// with the line's number (`line 3: `); no message shows a password.
    pub fn parse(text: &str) -> Result<Self> {
        let mut config = Self::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at_line = |e: Error| match e {
                Error::InvalidOptions(m) => Error::InvalidOptions(format!("line {}: {m}", i + 1)),
                other => other,
            };
            let Some((name, urls)) = line.split_once('=') else {
                // The line is not shown: it may be a URL with a password.
                return Err(at_line(Error::InvalidOptions(
                    "expected `name = URL,URL,...`".into(),
                )));
            };
            config = config.add(name.trim(), urls.trim()).map_err(at_line)?;
        }
        Ok(config)
    }

    /// The names configured, in the order they were added.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.lockers.iter().map(|entry| entry.name.as_str())
    }
}

impl FromStr for RegistryConfig {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        Self::parse(text)
    }
}

/// Whether `name` may name a locker.
fn check_name(name: &str) -> Result<()> {
    let why = if name.is_empty() {
        "is empty"
    } else if name.chars().count() > MAX_NAME {
        "is longer than 64 characters"
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        "may hold only ASCII letters, digits, `-`, `_` and `.`"
    } else {
        return Ok(());
    };
    // A line such as `redis://:password@host?db=0` reads as a name.
    let name = without_credentials(name);
    Err(Error::InvalidOptions(format!("locker name {name:?} {why}")))
}

/// `error` about the locker `name`: an [`Error::InvalidOptions`] message
/// says which locker it is about.
fn in_locker(name: &str, error: Error) -> Error {
    match error {
        Error::InvalidOptions(m) => Error::InvalidOptions(format!("locker {name:?}: {m}")),
        other => other,
    }
}

/// Named lockers, each on the backend its configuration names: the
/// `LockManager` of other libraries, as a map from names to
/// `Locker<AnyBackend>`. Lockers of different names share nothing (each
/// has its own backend, connections and options). Cheap to clone: clones
/// share the lockers.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let server = fencelock::testing::RedisServer::start()?;
/// use std::time::Duration;
/// use fencelock::{Error, LockOptions, Registry, RegistryConfig};
///
/// // let text = std::fs::read_to_string("lockers.conf")?;
/// # let text = format!("billing = {}\n", server.url());
/// let config = RegistryConfig::parse(&text)?
///     .options("billing", LockOptions::default().ttl(Duration::from_secs(60)))?;
/// let lockers = Registry::connect(&config).await?;
///
/// let guard = lockers.get("billing")?.lock("invoice-run").await?;
/// println!("invoices under token {}", guard.token());
/// guard.release().await?;
///
/// let unknown = lockers.get("payroll");
/// assert!(matches!(unknown, Err(Error::UnknownLocker { .. })));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Registry {
    lockers: Arc<BTreeMap<String, Locker<AnyBackend>>>,
}

impl Registry {
    /// Makes every locker of `config`, each on its own backend (see
    /// [`AnyBackend::connect`]; Redis nodes and etcd clients without
    /// credentials do no I/O here), all at once.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a dropped connect leaves nothing behind but the
    /// sockets it opened, which close with it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`] for a configuration with no lockers, before
    /// any I/O; the first error of [`AnyBackend::connect`] (an etcd cluster
    /// that refused its user, or could not be reached to sign in).
    pub async fn connect(config: &RegistryConfig) -> Result<Self> {
        if config.lockers.is_empty() {
            return Err(Error::InvalidOptions(
                "the registry configuration has no lockers".into(),
            ));
        }
        let lockers = futures::future::try_join_all(config.lockers.iter().map(|entry| async {
            let backend = AnyBackend::connect(&entry.backend).await?;
            let locker = Locker::new(backend, entry.options.clone())?;
            Ok::<_, Error>((entry.name.clone(), locker))
        }))
        .await?;
        Ok(Self {
            lockers: Arc::new(lockers.into_iter().collect()),
        })
    }

    /// The locker called `name`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownLocker`] naming `name` and the names configured.
    pub fn get(&self, name: &str) -> Result<&Locker<AnyBackend>> {
        self.lockers.get(name).ok_or_else(|| Error::UnknownLocker {
            name: name.to_owned(),
            known: self.names().map(str::to_owned).collect(),
        })
    }

    /// The names of the lockers, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.lockers.keys().map(String::as_str)
    }

    /// Waits until the background work of every locker has finished (see
    /// [`Locker::settled`]): what a process awaits before it exits.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only waits, and dropping it stops no work.
    pub async fn settled(&self) {
        futures::future::join_all(self.lockers.values().map(Locker::settled)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;

    fn invalid<T: std::fmt::Debug>(result: Result<T>) -> String {
        match result {
            Err(Error::InvalidOptions(message)) => message,
            other => panic!("expected InvalidOptions, got {other:?}"),
        }
    }

    #[test]
    fn the_text_form_reads_names_and_lists() {
        let config = RegistryConfig::parse(
            "# lockers\n\n  billing = redis://a:1, redis://b:1,redis://c:1\r\nreports=redis://d:1\n   # done\n",
        )
        .unwrap();
        assert_eq!(config.names().collect::<Vec<_>>(), ["billing", "reports"]);
        assert_eq!(config.lockers[0].backend.nodes(), 3);
        let same: RegistryConfig = "reports = redis://d:1".parse().unwrap();
        assert_eq!(same.lockers[0].backend, config.lockers[1].backend);
    }

    #[test]
    fn bad_text_names_its_line_and_never_a_password() {
        for (text, needle) in [
            (
                "a = redis://h:1\nredis://:s3cret@h:1",
                "line 2: expected `name = URL",
            ),
            ("\n = redis://h:1", "line 2: locker name \"\" is empty"),
            (
                "a b = redis://h:1",
                "line 1: locker name \"a b\" may hold only",
            ),
            (
                "redis://:s3cret@h:1?db=0",
                "line 1: locker name \"redis://***@h:1?db\"",
            ),
            ("a = ", "line 1: locker \"a\": no backend URLs"),
            (
                "a = redis://:s3cret@h:99999",
                "line 1: locker \"a\": bad node URL",
            ),
        ] {
            let message = invalid(RegistryConfig::parse(text));
            assert!(message.starts_with(needle), "{text:?}: {message}");
            assert!(!message.contains("s3cret"), "{message}");
        }
        let long = "n".repeat(MAX_NAME + 1);
        let message = invalid(RegistryConfig::new().add(&long, "redis://h:1"));
        assert!(message.contains("longer than 64"), "{message}");
        RegistryConfig::new()
            .add(&long[1..], "redis://h:1")
            .unwrap();
    }

    #[test]
    fn duplicate_and_unknown_names_are_typed() {
        let twice = RegistryConfig::parse("a = redis://h:1\na = redis://h:2");
        assert!(matches!(twice, Err(Error::DuplicateLocker { name }) if name == "a"));
        let config = RegistryConfig::parse("a = redis://h:1\nb = redis://h:2").unwrap();
        match config.clone().options("c", LockOptions::default()) {
            Err(Error::UnknownLocker { name, known }) => {
                assert_eq!((name.as_str(), known), ("c", vec!["a".into(), "b".into()]));
            }
            other => panic!("{other:?}"),
        }
        let bad = LockOptions::default().ttl(std::time::Duration::ZERO);
        let message = invalid(config.options("a", bad));
        assert!(message.starts_with("locker \"a\": ttl"), "{message}");
    }

    #[tokio::test]
    async fn a_registry_needs_a_locker_and_names_the_known_ones() {
        let message = invalid(Registry::connect(&RegistryConfig::new()).await);
        assert!(message.contains("no lockers"), "{message}");
        // Redis nodes connect on first use: no server is needed here.
        let config = RegistryConfig::parse("b = redis://127.0.0.1:1\na = redis://127.0.0.1:2");
        let registry = Registry::connect(&config.unwrap()).await.unwrap();
        assert_eq!(registry.names().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(registry.get("a").unwrap().backend().name(), "redis");
        let message = registry.get("c").unwrap_err().to_string();
        assert_eq!(message, "no locker named \"c\"; configured: \"a\", \"b\"");
    }
}

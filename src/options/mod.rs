//! Lock options and the retry policy, validated before any I/O.

use std::time::Duration;

use crate::backend::drift;
use crate::error::{Error, Result};
use crate::locker::Timing;
use crate::retry::RetryPolicy;

/// The longest resource name accepted, in bytes.
pub const MAX_KEY_LEN: usize = 512;
/// The longest key prefix accepted, in bytes.
pub const MAX_PREFIX_LEN: usize = 128;
/// The longest TTL accepted (Redis keeps expiries in milliseconds; a day is
/// already far beyond any sensible lease).
pub const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The most permits a semaphore may have. Each permit is a slot that an
/// acquire may look at, so the bound keeps every acquire's work bounded.
pub const MAX_PERMITS: u32 = 1000;

/// How a lock is taken and kept. Every setter documents its default; the
/// whole set is checked by [`LockOptions::validate`] (which
/// [`Locker::new`](crate::Locker::new) calls) before any I/O.
///
/// ```
/// use std::time::Duration;
/// use fencelock::LockOptions;
///
/// let options = LockOptions::default()
///     .ttl(Duration::from_secs(10))
///     .node_timeout(Duration::from_millis(50));
/// assert!(options.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LockOptions {
    /// How long a lock lives on the nodes unless extended. Default: 30 s.
    pub ttl: Duration,
    /// How `lock` and `lock_timeout` wait between attempts. Default:
    /// [`RetryPolicy::default`].
    pub retry: RetryPolicy,
    /// The share of the TTL assumed lost to clock drift between nodes; the
    /// validity handed out is `ttl - elapsed - (ttl * drift_factor + 2 ms)`.
    /// Must lie in `[0, 0.5)`. Default: 0.01.
    pub drift_factor: f64,
    /// How long one node may take to answer one request before it counts as
    /// failed for that round. Must be below the TTL. Default: 200 ms.
    pub node_timeout: Duration,
    /// Prepended to every resource name to form the Redis key
    /// (`<prefix>{<resource>}`). Default: `"fencelock:"`.
    pub key_prefix: String,
    /// How deep one owner may nest the same lock: the number of its holds
    /// on it, the outermost included. Default: 32.
    pub max_reentrancy: u32,
    /// Whether and how often held locks are renewed in the background.
    /// Default: [`Watchdog::Auto`], every ttl/3.
    pub watchdog: Watchdog,
    /// A cap on how long the watchdog keeps one lock, against critical
    /// sections that hang: renewals never reach past it from the
    /// acquire, so the lock ends on the nodes at the cap and the guard is
    /// marked lost just before. Must be at least the ttl (the first grant
    /// already lasts a ttl). With a [`lock_delay`](LockOptions#structfield.lock_delay)
    /// the servers keep the name that much longer after the cap, as after
    /// any validity that ends without a release. Default: no cap.
    pub max_hold: Option<Duration>,
    /// Lock-delay, as in Chubby and Consul: how long the servers keep a
    /// lock's name taken after its holder's validity ended without a
    /// release (the holder crashed, paused, lost the network, or handed
    /// the lock off to nobody), so that the late writes of a holder that
    /// was paused land before the next holder starts. Every grant and
    /// every renewal (`extend`, the watchdog, `adopt`) keeps the lock
    /// on the servers for `ttl + lock_delay`, for every kind (locks, read
    /// and write holds, permits), while the holder's own validity
    /// ([`expires_at`](crate::LockGuard::expires_at), `remaining`, the
    /// watchdog's renewals and its loss signal) is still computed from the
    /// ttl alone. A release, a dropped guard's release and
    /// `force_release` free the name at once: the delay only applies to
    /// holders that vanish.
    ///
    /// For resources that cannot check fencing tokens. It is no guarantee:
    /// a holder paused for longer than the delay still writes after the
    /// next holder started, so check tokens wherever the resource can
    /// (`docs/fencing.md`, "Lock-delay"). On etcd the lease covers
    /// `ttl + lock_delay` rounded up to whole seconds. `ttl + lock_delay`
    /// must stay within [`MAX_TTL`], and a delay must be zero or at least
    /// 1 ms. Default: zero (off).
    pub lock_delay: Duration,
    /// Whether metrics carry a `key` label with the resource name. Off by
    /// default: one series per resource can overwhelm a metrics backend.
    /// Turn it on only for a small, fixed set of resources.
    pub metrics_per_key: bool,
    /// Whether `lock` and `lock_timeout` wait for release notifications.
    /// Default: on. A waiter then tries again the moment the lock may have
    /// been freed; the retry delay remains the fallback for expiries, lost
    /// messages and backends or nodes without notifications. Waiters of one
    /// Locker with task-bound owners (and no
    /// [`RetryPolicy::max_attempts`]) also line up per key in arrival order,
    /// and only the first in line asks the servers. Right after subscribing
    /// a waiter tries once more at once; that try is not counted as an
    /// attempt. Off: every waiter polls on its own
    /// after each retry delay, as classic Redlock clients do. See
    /// `docs/waiting.md`.
    pub wake_on_release: bool,
}

/// Whether and how often a held lock is renewed in the background.
///
/// The watchdog extends the lock to a full ttl on every node; a renewal
/// counts only when a quorum confirms it before the current validity runs
/// out. When it cannot keep the lock, the guard is marked lost (see
/// [`LockGuard::lost`](crate::LockGuard::lost)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Watchdog {
    /// Renew every third of the ttl (the default).
    #[default]
    Auto,
    /// Renew at this interval. It must leave room for a renewal to finish
    /// (one `node_timeout`) within the validity of the previous one.
    Every(Duration),
    /// No renewal: the lock lives for its ttl unless extended by hand.
    Off,
}

impl Default for LockOptions {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            drift_factor: 0.01,
            node_timeout: Duration::from_millis(200),
            key_prefix: "fencelock:".to_owned(),
            max_reentrancy: 32,
            watchdog: Watchdog::Auto,
            max_hold: None,
            lock_delay: Duration::ZERO,
            metrics_per_key: false,
            wake_on_release: true,
        }
    }
}

impl LockOptions {
    /// Sets [`ttl`](LockOptions#structfield.ttl).
    #[must_use = "a setter returns the changed options; use them"]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets [`retry`](LockOptions#structfield.retry).
    #[must_use = "a setter returns the changed options; use them"]
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets [`drift_factor`](LockOptions#structfield.drift_factor).
    #[must_use = "a setter returns the changed options; use them"]
    pub fn drift_factor(mut self, factor: f64) -> Self {
        self.drift_factor = factor;
        self
    }

    /// Sets [`node_timeout`](LockOptions#structfield.node_timeout).
    #[must_use = "a setter returns the changed options; use them"]
    pub fn node_timeout(mut self, timeout: Duration) -> Self {
        self.node_timeout = timeout;
        self
    }

    /// Sets [`key_prefix`](LockOptions#structfield.key_prefix).
    #[must_use = "a setter returns the changed options; use them"]
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Sets [`max_reentrancy`](LockOptions#structfield.max_reentrancy).
    #[must_use = "a setter returns the changed options; use them"]
    pub fn max_reentrancy(mut self, depth: u32) -> Self {
        self.max_reentrancy = depth;
        self
    }

    /// Sets [`watchdog`](LockOptions#structfield.watchdog).
    #[must_use = "a setter returns the changed options; use them"]
    pub fn watchdog(mut self, watchdog: Watchdog) -> Self {
        self.watchdog = watchdog;
        self
    }

    /// Sets [`max_hold`](LockOptions#structfield.max_hold).
    #[must_use = "a setter returns the changed options; use them"]
    pub fn max_hold(mut self, limit: Duration) -> Self {
        self.max_hold = Some(limit);
        self
    }

    /// Sets [`lock_delay`](LockOptions#structfield.lock_delay); zero turns
    /// it off.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fencelock::LockOptions;
    ///
    /// // A holder that vanishes keeps the name taken 10 s past its ttl.
    /// let options = LockOptions::default()
    ///     .ttl(Duration::from_secs(30))
    ///     .lock_delay(Duration::from_secs(10));
    /// assert!(options.validate().is_ok());
    /// ```
    #[must_use = "a setter returns the changed options; use them"]
    pub fn lock_delay(mut self, delay: Duration) -> Self {
        self.lock_delay = delay;
        self
    }

    /// Sets [`metrics_per_key`](LockOptions#structfield.metrics_per_key).
    #[must_use = "a setter returns the changed options; use them"]
    pub fn metrics_per_key(mut self, on: bool) -> Self {
        self.metrics_per_key = on;
        self
    }

    /// Sets [`wake_on_release`](LockOptions#structfield.wake_on_release).
    #[must_use = "a setter returns the changed options; use them"]
    pub fn wake_on_release(mut self, on: bool) -> Self {
        self.wake_on_release = on;
        self
    }

    /// The renewal interval in force, or `None` when the watchdog is off.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        match self.watchdog {
            Watchdog::Auto => Some(self.ttl / 3),
            Watchdog::Every(interval) => Some(interval),
            Watchdog::Off => None,
        }
    }

    /// Checks the options on their own (without knowing the nodes).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`] naming the first rule the options break.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::InvalidOptions(msg));
        if self.node_timeout < Duration::from_millis(1) {
            return bad(format!(
                "node_timeout {:?} is below 1 ms; no node answers that fast",
                self.node_timeout
            ));
        }
        self.validate_ttl(self.ttl)?;
        if self.key_prefix.len() > MAX_PREFIX_LEN {
            return bad(format!(
                "key_prefix is {} bytes; at most {MAX_PREFIX_LEN} are allowed",
                self.key_prefix.len()
            ));
        }
        if !self.lock_delay.is_zero() && self.lock_delay < Duration::from_millis(1) {
            return bad(format!(
                "lock_delay {:?} is below Redis's 1 ms resolution; use zero to turn it off",
                self.lock_delay
            ));
        }
        if self.max_reentrancy == 0 {
            return bad("max_reentrancy must be at least 1".into());
        }
        if let Some(interval) = self.watchdog_interval() {
            // The watchdog (src/locker/watchdog.rs) needs room, within one
            // validity, for the renewal interval, a failed try (one
            // node_timeout), and then its reserve: the pause before the next
            // try, that try, and a node_timeout of warning before it gives
            // up. Otherwise one slow answer would lose the lock.
            let validity = self.ttl - drift(self.ttl, self.drift_factor);
            if interval < Duration::from_millis(1) {
                return bad(format!("watchdog interval {interval:?} is below 1 ms"));
            }
            let timing = Timing::new(interval, self.node_timeout);
            // Checked: an interval near Duration::MAX must be refused, not
            // overflow.
            let needed = interval
                .checked_add(self.node_timeout)
                .and_then(|d| d.checked_add(timing.reserve));
            if needed.is_none_or(|needed| needed >= validity) {
                return bad(format!(
                    "watchdog interval {interval:?} with node_timeout {:?} leaves no room to retry a \
                     failed renewal within the validity {validity:?} of a ttl {:?} \
                     (interval + interval/4 + 3 x node_timeout must stay below it): \
                     shorten the interval or the node_timeout, lengthen the ttl, or turn the watchdog off",
                    self.node_timeout, self.ttl
                ));
            }
        }
        if let Some(cap) = self.max_hold
            && cap < self.ttl
        {
            return bad(format!(
                "max_hold {cap:?} is below the ttl {:?}: the first grant already lasts a ttl",
                self.ttl
            ));
        }
        self.retry.validate()
    }

    /// Checks `ttl` as a lock ttl under these options: the bounds Redis
    /// accepts (for `ttl` and for `ttl + lock_delay`, how long the servers
    /// keep the lock), and room for the node timeout and the clock-drift
    /// allowance.
    /// (Used for [`LockGuard::extend`](crate::LockGuard::extend), whose ttl
    /// is not the configured one.)
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`] naming the bound `ttl` breaks.
    pub fn validate_ttl(&self, ttl: Duration) -> Result<()> {
        let bad = |msg: String| Err(Error::InvalidOptions(msg));
        if ttl.is_zero() {
            return bad("ttl must be greater than zero".into());
        }
        if ttl < Duration::from_millis(1) {
            return bad(format!("ttl {ttl:?} is below Redis's 1 ms resolution"));
        }
        if ttl > MAX_TTL {
            return bad(format!("ttl {ttl:?} exceeds the maximum of {MAX_TTL:?}"));
        }
        // The servers keep a lock for its ttl and the lock-delay together.
        if ttl
            .checked_add(self.lock_delay)
            .is_none_or(|life| life > MAX_TTL)
        {
            return bad(format!(
                "ttl {ttl:?} plus lock_delay {:?} exceeds the maximum of {MAX_TTL:?}: \
                 the servers keep a lock for both",
                self.lock_delay
            ));
        }
        if !(0.0..0.5).contains(&self.drift_factor) {
            return bad(format!(
                "drift_factor {} must lie in [0, 0.5)",
                self.drift_factor
            ));
        }
        if self.node_timeout >= ttl {
            return bad(format!(
                "node_timeout {:?} must be below the ttl {ttl:?}, or no acquire could keep any validity",
                self.node_timeout
            ));
        }
        if drift(ttl, self.drift_factor) >= ttl {
            return bad(format!(
                "ttl {ttl:?} is too short to cover the clock drift allowance"
            ));
        }
        Ok(())
    }
}

/// Checks a resource name: non-empty and at most [`MAX_KEY_LEN`] bytes.
pub(crate) fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::InvalidKey("the resource name is empty".into()));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Error::InvalidKey(format!(
            "the resource name is {} bytes; at most {MAX_KEY_LEN} are allowed",
            key.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;

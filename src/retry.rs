//! How waiting acquires space their attempts.

use std::time::Duration;

use crate::error::{Error, Result};

/// The longest retry delay or jitter accepted: a waiter that sleeps longer
/// than this between attempts should use its own loop around `try_lock`.
pub const MAX_RETRY_PAUSE: Duration = Duration::from_secs(3600);

/// How waiting acquires space their attempts: a fixed delay plus a random
/// jitter, so that contending clients do not retry in lock-step.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// The fixed part of the pause between attempts. Default: 100 ms.
    pub delay: Duration,
    /// The random part, drawn uniformly from `[0, jitter]`. Default: 100 ms.
    pub jitter: Duration,
    /// Stop after this many attempts (the first one included). Default:
    /// unlimited; `lock_timeout` bounds the wait by time instead.
    pub max_attempts: Option<u32>,
}

impl Default for RetryPolicy {
    /// 100 ms delay, up to 100 ms jitter, unlimited attempts.
    fn default() -> Self {
        Self {
            delay: Duration::from_millis(100),
            jitter: Duration::from_millis(100),
            max_attempts: None,
        }
    }
}

impl RetryPolicy {
    /// Sets [`delay`](RetryPolicy#structfield.delay).
    #[must_use = "a setter returns the changed options; use them"]
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Sets [`jitter`](RetryPolicy#structfield.jitter).
    #[must_use = "a setter returns the changed options; use them"]
    pub fn jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets [`max_attempts`](RetryPolicy#structfield.max_attempts).
    #[must_use = "a setter returns the changed options; use them"]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// The pause before the next attempt.
    pub fn next_delay(&self) -> Duration {
        let jitter_ms = u64::try_from(self.jitter.as_millis()).unwrap_or(u64::MAX);
        let extra = if jitter_ms == 0 {
            0
        } else {
            rand::random_range(0..=jitter_ms)
        };
        self.delay + Duration::from_millis(extra)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.delay > MAX_RETRY_PAUSE || self.jitter > MAX_RETRY_PAUSE {
            return Err(Error::InvalidOptions(format!(
                "retry delay {:?} and jitter {:?} must each be at most {MAX_RETRY_PAUSE:?}",
                self.delay, self.jitter
            )));
        }
        if self.max_attempts == Some(0) {
            return Err(Error::InvalidOptions(
                "retry max_attempts must be at least 1".into(),
            ));
        }
        if self.delay.is_zero() && self.jitter.is_zero() {
            return Err(Error::InvalidOptions(
                "retry delay and jitter are both zero: waiters would spin".into(),
            ));
        }
        Ok(())
    }
}

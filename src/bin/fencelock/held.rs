//! What `fencelock exec` holds while the command runs: the lock, a read
//! hold (`--shared`) or one permit of a semaphore (`--permits N`), behind
//! the few calls the run needs.

use fencelock::{Backend, FencingToken, LockGuard, Locker, Permit, ReadGuard, Result, WriteGuard};

/// What the run asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The exclusive lock: one run at a time.
    Lock,
    /// A read hold of a read-write lock: runs of `--shared` together, none
    /// beside a writer.
    Shared,
    /// The write hold of a read-write lock: alone.
    Write,
    /// One of `n` permits: at most `n` runs at once.
    Permits(u32),
}

/// A held lock, read hold or permit.
pub enum Held<B: Backend> {
    Lock(LockGuard<B>),
    Read(ReadGuard<B>),
    Write(WriteGuard<B>),
    Permit(Permit<B>),
}

impl Kind {
    /// One attempt (`wait` = None) or a wait of at most `wait`.
    pub async fn acquire<B: Backend>(
        self,
        locker: &Locker<B>,
        key: &str,
        wait: Option<std::time::Duration>,
    ) -> Result<Held<B>> {
        Ok(match (self, wait) {
            (Kind::Lock, None) => Held::Lock(locker.try_lock(key).await?),
            (Kind::Lock, Some(wait)) => Held::Lock(locker.lock_timeout(key, wait).await?),
            (Kind::Shared, None) => Held::Read(locker.try_read(key).await?),
            (Kind::Shared, Some(wait)) => Held::Read(locker.read_timeout(key, wait).await?),
            (Kind::Write, None) => Held::Write(locker.try_write(key).await?),
            (Kind::Write, Some(wait)) => Held::Write(locker.write_timeout(key, wait).await?),
            (Kind::Permits(n), wait) => {
                let semaphore = locker.semaphore(key, n)?;
                Held::Permit(match wait {
                    None => semaphore.try_acquire().await?,
                    Some(wait) => semaphore.acquire_timeout(wait).await?,
                })
            }
        })
    }

    /// What is asked for on `key`, in messages.
    pub fn describe(self, key: &str) -> String {
        match self {
            Kind::Lock => format!("lock {key:?}"),
            Kind::Shared => format!("read lock {key:?}"),
            Kind::Write => format!("write lock {key:?}"),
            Kind::Permits(n) => format!("semaphore {key:?} ({n} permits)"),
        }
    }

    /// Why an attempt on `key` was refused, in messages: what is taken.
    pub fn taken(self, key: &str) -> String {
        match self {
            Kind::Lock => format!("lock {key:?} is held elsewhere"),
            Kind::Shared => {
                format!("read lock {key:?} is held elsewhere by a writer, or a writer waits for it")
            }
            Kind::Write => format!("write lock {key:?} is held elsewhere (by readers or a writer)"),
            Kind::Permits(n) => {
                format!("all {n} permits of semaphore {key:?} are held elsewhere")
            }
        }
    }

    /// The word for what is held, in messages.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Lock => "lock",
            Kind::Shared => "read lock",
            Kind::Write => "write lock",
            Kind::Permits(_) => "permit",
        }
    }
}

impl<B: Backend> Held<B> {
    pub fn key(&self) -> &str {
        match self {
            Held::Lock(g) => g.key(),
            Held::Read(g) => g.key(),
            Held::Write(g) => g.key(),
            Held::Permit(g) => g.key(),
        }
    }

    pub fn token(&self) -> FencingToken {
        match self {
            Held::Lock(g) => g.token(),
            Held::Read(g) => g.token(),
            Held::Write(g) => g.token(),
            Held::Permit(g) => g.token(),
        }
    }

    /// A permit's slot.
    pub fn slot(&self) -> Option<u32> {
        match self {
            Held::Permit(g) => Some(g.slot()),
            _ => None,
        }
    }

    pub fn remaining(&self) -> std::time::Duration {
        match self {
            Held::Lock(g) => g.remaining(),
            Held::Read(g) => g.remaining(),
            Held::Write(g) => g.remaining(),
            Held::Permit(g) => g.remaining(),
        }
    }

    pub fn is_held(&self) -> bool {
        match self {
            Held::Lock(g) => g.is_held(),
            Held::Read(g) => g.is_held(),
            Held::Write(g) => g.is_held(),
            Held::Permit(g) => g.is_held(),
        }
    }

    pub async fn lost(&self) {
        match self {
            Held::Lock(g) => g.lost().await,
            Held::Read(g) => g.lost().await,
            Held::Write(g) => g.lost().await,
            Held::Permit(g) => g.lost().await,
        }
    }

    pub async fn release(self) -> Result<()> {
        match self {
            Held::Lock(g) => g.release().await,
            Held::Read(g) => g.release().await,
            Held::Write(g) => g.release().await,
            Held::Permit(g) => g.release().await,
        }
    }
}

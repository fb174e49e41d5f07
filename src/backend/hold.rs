//! One hold on a lock, what kind it is, what it nests in, and what a
//! grant hands back: the values that cross the seam between the Locker and
//! a backend.

use std::time::Instant;

use super::Redacted;
use crate::fencing::FencingToken;

/// One hold on a lock: which resource, which owner, and the id of this
/// particular acquisition. Nested acquisitions by one owner are separate
/// holds with separate ids; the lock is free when its last hold is gone.
///
/// Owner and hold ids are secrets (whoever knows them can extend and
/// release the lock): `Debug` shows only their first digits, and a
/// backend's errors name the resource ([`key`](Hold::key)), never them.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Hold {
    key: String,
    owner: String,
    id: String,
    parent: Option<Parent>,
    mode: Mode,
    slot: Option<u32>,
    waiting: bool,
}

/// What a hold excludes, and so how a backend stores it.
///
/// The kinds share the resource namespace: a name in use as one kind
/// refuses every other kind with
/// [`Error::WrongKind`](crate::Error::WrongKind) while any hold of it is
/// live (an idle name can be taken as any kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mode {
    /// The exclusive lock: one owner at a time.
    Exclusive,
    /// A read (shared) hold of a read-write lock: any number of owners
    /// together, while no write hold is live.
    Read,
    /// The write hold of a read-write lock: one owner, and no readers.
    Write,
    /// One permit of a semaphore of `permits`: at most that many permit
    /// holds at once. Each permit occupies one of `permits` slots, an
    /// exclusive lock of its own (docs/algorithm.md, section 13).
    Permit {
        /// The semaphore's number of permits, as this client believes it.
        permits: u32,
    },
}

impl Mode {
    /// The name used in messages, metrics (`kind` label) and admin reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Exclusive => "lock",
            Mode::Read => "read",
            Mode::Write => "write",
            Mode::Permit { .. } => "permit",
        }
    }

    /// The kind of resource a hold of this mode uses: `"lock"`, `"rwlock"`
    /// or `"semaphore"`.
    pub fn resource_kind(self) -> &'static str {
        match self {
            Mode::Exclusive => "lock",
            Mode::Read | Mode::Write => "rwlock",
            Mode::Permit { .. } => "semaphore",
        }
    }
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hold")
            .field("key", &self.key)
            .field("owner", &Redacted(&self.owner))
            .field("id", &Redacted(&self.id))
            .field("parent", &self.parent)
            .field("mode", &self.mode)
            .field("slot", &self.slot)
            .finish()
    }
}

/// The hold a nested hold sits inside, and its token. `Debug` shows only
/// the first digits of the id.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Parent {
    /// The parent hold's id.
    pub id: String,
    /// The parent hold's fencing token, which the nested hold shares.
    pub token: FencingToken,
}

impl std::fmt::Debug for Parent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parent")
            .field("id", &Redacted(&self.id))
            .field("token", &self.token)
            .finish()
    }
}

impl Hold {
    /// A hold of `owner` on the resource `key`, identified by `id`.
    pub fn new(key: impl Into<String>, owner: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            owner: owner.into(),
            id: id.into(),
            parent: None,
            mode: Mode::Exclusive,
            slot: None,
            waiting: false,
        }
    }

    /// The same hold, of another kind (the default is
    /// [`Mode::Exclusive`]).
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The same hold, of a permit known to sit in `slot` (from its
    /// [`Grant`]): renewals and releases then go to that slot alone.
    pub fn in_slot(mut self, slot: u32) -> Self {
        self.slot = Some(slot);
        self
    }

    /// The same hold, asked for by a waiter that will try again
    /// (`lock`, not `try_lock`): a refused write hold then announces
    /// itself, so that new readers wait behind it (writer preference).
    pub fn waiting(mut self, waiting: bool) -> Self {
        self.waiting = waiting;
        self
    }

    /// What the hold excludes.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The slot of a granted permit.
    pub fn slot(&self) -> Option<u32> {
        self.slot
    }

    /// Whether the attempt comes from a waiter (see [`waiting`](Hold::waiting)).
    pub fn is_waiting(&self) -> bool {
        self.waiting
    }

    /// The id of the outermost hold this one belongs to: its parent's, or
    /// its own for a first hold.
    pub fn root_id(&self) -> &str {
        self.parent.as_ref().map_or(&self.id, |p| &p.id)
    }

    /// The same hold, nested inside `parent` (a live hold of the same owner
    /// on the same key).
    pub fn nested_in(mut self, parent: Parent) -> Self {
        self.parent = Some(parent);
        self
    }

    /// The parent hold, for a nested hold.
    pub fn parent(&self) -> Option<&Parent> {
        self.parent.as_ref()
    }

    /// The resource name, without any backend prefix.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The owner: who may re-enter, extend and release.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The id of this acquisition, unique among the owner's holds.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// What a successful acquire hands back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Grant {
    /// The fencing token of this holder.
    pub token: FencingToken,
    /// Until when the lock is certainly ours (local monotonic clock, with the
    /// time spent acquiring and the clock-drift allowance already taken off).
    pub valid_until: Instant,
    /// The slot a permit occupies (`0..permits`); `None` for other holds.
    pub slot: Option<u32>,
}

impl Grant {
    /// A grant of `token`, certainly held until `valid_until`.
    pub fn new(token: FencingToken, valid_until: Instant) -> Self {
        Self {
            token,
            valid_until,
            slot: None,
        }
    }

    /// The same grant, of a permit in `slot`.
    pub fn in_slot(mut self, slot: u32) -> Self {
        self.slot = Some(slot);
        self
    }
}

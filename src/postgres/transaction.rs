//! A transaction that commits only under the newest fencing token.

use std::ops::Deref;

use tokio_postgres::types::Type;
use tokio_postgres::{Client, IsolationLevel, Transaction};

use super::install::{token_from_sql, token_to_sql};
use super::sql_error::{database, refusal};
use crate::error::{Error, Result};
use crate::fencing::FencingToken;
use crate::locker::Exclusive;
use crate::options::validate_key;

/// A PostgreSQL transaction begun under a held lock: run any SQL in it
/// (it dereferences to [`tokio_postgres::Transaction`]), then
/// [`commit`](FencedTransaction::commit) or
/// [`rollback`](FencedTransaction::rollback).
///
/// The commit first calls `fencelock_fence(resource, lock, token)` inside
/// the transaction. When a newer holder of the lock has committed a
/// transaction for the resource in the meantime (this holder's lock ran
/// out: a pause, a long GC, a partition), the database refuses, the
/// transaction is rolled back, and the commit returns
/// [`Error::StaleToken`]: none of its writes is kept. Otherwise the fence
/// holds the resource's row until `COMMIT`, so a newer holder's commit
/// waits for this one and then goes after it: the database sees the
/// holders' transactions in token order.
///
/// Dropping it without commit or rollback rolls the transaction back (the
/// `ROLLBACK` is sent when the connection is next used). End it only with
/// [`commit`](FencedTransaction::commit) or
/// [`rollback`](FencedTransaction::rollback): a `COMMIT` sent as SQL
/// through the `Deref` would commit without the fence.
///
/// The fence knows a lock by its name only: lockers that use one name
/// with different key prefixes or backends are different locks to them,
/// but one to the database. Give such locks different names, or fence
/// different resources ([`TransactionOptions::resource`]).
pub struct FencedTransaction<'c> {
    tx: Transaction<'c>,
    resource: String,
    lock: String,
    token: FencingToken,
}

/// How to begin a [`FencedTransaction`]: the resource it fences (by
/// default the lock's name) and the isolation level (by default the
/// database's, usually `READ COMMITTED`).
#[derive(Debug, Clone, Default)]
pub struct TransactionOptions {
    resource: Option<String>,
    isolation: Option<IsolationLevel>,
}

impl TransactionOptions {
    /// The defaults: the resource is the lock's name, the isolation level
    /// the database's.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fences `resource` instead of the lock's name. One lock may guard
    /// several resources; a resource is always fenced by the same lock
    /// (else [`Error::ForeignToken`]).
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// Runs the transaction at `level`. Under `REPEATABLE READ` and
    /// `SERIALIZABLE`, a newer holder that committed after this
    /// transaction's snapshot makes the fence fail with a serialization
    /// failure ([`Error::Database`], SQLSTATE 40001) instead of
    /// [`Error::StaleToken`]: nothing is written either way.
    pub fn isolation(mut self, level: IsolationLevel) -> Self {
        self.isolation = Some(level);
        self
    }
}

/// Begins a transaction on `client` fenced by `guard`'s token, for the
/// resource named like the lock. Shorthand for [`begin_with`] and the
/// default [`TransactionOptions`].
///
/// # Cancel safety
///
/// Cancel safe: a dropped call leaves no transaction open (tokio-postgres
/// rolls back a transaction it dropped).
///
/// # Errors
///
/// As [`begin_with`].
pub async fn begin<'c>(
    client: &'c mut Client,
    guard: &impl Exclusive,
) -> Result<FencedTransaction<'c>> {
    begin_with(client, guard, &TransactionOptions::new()).await
}

/// Begins a transaction on `client` fenced by `guard`'s token, for
/// `resource`. Shorthand for [`begin_with`] and
/// [`TransactionOptions::resource`].
///
/// # Cancel safety
///
/// As [`begin`].
///
/// # Errors
///
/// As [`begin_with`].
pub async fn begin_as<'c>(
    client: &'c mut Client,
    guard: &impl Exclusive,
    resource: &str,
) -> Result<FencedTransaction<'c>> {
    begin_with(client, guard, &TransactionOptions::new().resource(resource)).await
}

/// Begins a transaction on `client` fenced by `guard`'s token.
///
/// It also reads the resource's fence, without locking it, so a holder
/// that is stale already learns it before doing the work: the commit's
/// check is the one that counts.
///
/// # Cancel safety
///
/// As [`begin`].
///
/// # Errors
///
/// [`Error::NotHeld`] when the guard's lock is no longer certainly held;
/// [`Error::InvalidKey`] for a resource name that is not a valid key;
/// [`Error::StaleToken`] when a higher token was committed for the
/// resource already; [`Error::ForeignToken`] when the resource is fenced
/// by another lock; [`Error::FenceNotInstalled`] or
/// [`Error::ForeignFence`] when the fence table is missing or not ours;
/// [`Error::Database`] when a statement fails otherwise.
pub async fn begin_with<'c>(
    client: &'c mut Client,
    guard: &impl Exclusive,
    options: &TransactionOptions,
) -> Result<FencedTransaction<'c>> {
    let lock = guard.key().to_owned();
    let resource = options.resource.clone().unwrap_or_else(|| lock.clone());
    validate_key(&resource)?;
    let token = guard.token();
    token_to_sql(token)?;
    if !guard.is_held() {
        return Err(Error::NotHeld { key: lock });
    }
    let mut builder = client.build_transaction();
    if let Some(level) = options.isolation {
        builder = builder.isolation_level(level);
    }
    let tx = builder
        .start()
        .await
        .map_err(|e| database("beginning the transaction", e))?;
    let fence = tx
        .query_typed_opt(
            "SELECT token, lock_name FROM fencelock_fence WHERE resource = $1",
            &[(&resource, Type::TEXT)],
        )
        .await
        .map_err(|e| database("reading the fence", e))?;
    if let Some(row) = fence {
        let (highest, fenced_by) = (token_from_sql(row.get(0)), row.get::<_, String>(1));
        if fenced_by != lock {
            return Err(Error::ForeignToken {
                resource,
                lock,
                fenced_by,
            });
        }
        if highest > token {
            return Err(Error::StaleToken {
                resource,
                token,
                highest,
            });
        }
    }
    Ok(FencedTransaction {
        tx,
        resource,
        lock,
        token,
    })
}

impl<'c> FencedTransaction<'c> {
    /// The fenced resource.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The name of the lock whose token fences the transaction.
    pub fn lock(&self) -> &str {
        &self.lock
    }

    /// The token the commit offers.
    pub fn token(&self) -> FencingToken {
        self.token
    }

    /// The transaction itself, for any SQL (also reachable through
    /// `Deref`).
    pub fn transaction(&self) -> &Transaction<'c> {
        &self.tx
    }

    /// Commits when no newer holder has committed for the resource, after
    /// recording this holder's token as the resource's fence; returns the
    /// token.
    ///
    /// A holder whose lock ran out may still commit when no newer holder
    /// has committed yet: its writes then come before the newer holder's,
    /// whose own commit waits for this one. That is the fencing contract:
    /// the database sees writes in token order, not only writes under a
    /// live lock.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before `COMMIT` is sent rolls the transaction
    /// back; after, it may have committed, fenced (the fence is checked
    /// before `COMMIT`). Either way no unfenced commit happens.
    ///
    /// # Errors
    ///
    /// [`Error::StaleToken`] when a newer holder committed for the
    /// resource: the transaction is rolled back, nothing written.
    /// [`Error::ForeignToken`] when the resource is fenced by another lock.
    /// [`Error::FenceNotInstalled`] when the fence function is missing.
    /// [`Error::Database`] when a statement fails otherwise, the commit
    /// included (a serialization failure, a deferred constraint, the
    /// connection lost: then the outcome of a `COMMIT` already sent is
    /// unknown, and fenced if it happened).
    pub async fn commit(self) -> Result<FencingToken> {
        let Self {
            tx,
            resource,
            lock,
            token,
        } = self;
        let fenced = tx
            .query_typed_one(
                "SELECT fencelock_fence($1, $2, $3)",
                &[
                    (&resource, Type::TEXT),
                    (&lock, Type::TEXT),
                    (&token_to_sql(token)?, Type::INT8),
                ],
            )
            .await;
        if let Err(e) = fenced {
            let error = refusal(&e, &resource, &lock, token)
                .unwrap_or_else(|| database("checking the fence", e));
            // The error aborted the transaction already; the rollback ends
            // it now instead of at the connection's next use.
            let _ = tx.rollback().await;
            return Err(error);
        }
        tx.commit().await.map_err(|e| database("committing", e))?;
        Ok(token)
    }

    /// Rolls the transaction back: nothing of it is written, and the fence
    /// stays as it was.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a dropped call rolls back as well.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] when the `ROLLBACK` could not be sent (the
    /// connection lost: the server then rolls back by itself).
    pub async fn rollback(self) -> Result<()> {
        self.tx
            .rollback()
            .await
            .map_err(|e| database("rolling back", e))
    }
}

impl std::fmt::Debug for FencedTransaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FencedTransaction")
            .field("resource", &self.resource)
            .field("lock", &self.lock)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl<'c> Deref for FencedTransaction<'c> {
    type Target = Transaction<'c>;

    fn deref(&self) -> &Transaction<'c> {
        &self.tx
    }
}

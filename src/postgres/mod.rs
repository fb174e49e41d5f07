//! Fenced transactions on PostgreSQL (feature `postgres`): the database
//! itself refuses the commit of a holder whose lock ran out, once a newer
//! holder has committed.
//!
//! The database keeps, per resource, the highest fencing token a
//! transaction committed under ([`INSTALL_SQL`]: the table
//! `fencelock_fence` and the function `fencelock_fence`). A
//! [`FencedTransaction`] calls the function as the last statement before
//! `COMMIT`, inside the transaction: the call locks the resource's row,
//! compares and records the token in one statement, and fails the
//! transaction when a higher token was committed, so nothing the stale
//! holder wrote is kept. docs/fencing.md walks through it end to end, and
//! shows the same SQL for other clients (sqlx, psql) and for MySQL.
//!
//! ```no_run
//! # async fn demo(pool: deadpool_postgres::Pool) -> fencelock::Result<()> {
//! use fencelock::{Error, Locker, postgres};
//!
//! let locker = Locker::redis(["redis://127.0.0.1:6379"])?;
//! postgres::install(&**pool.get().await?).await?;
//!
//! let result = postgres::with_transaction(&locker, &pool, "ledger", async |tx| {
//!     tx.execute("UPDATE accounts SET balance = balance - 10 WHERE id = 1", &[])
//!         .await?;
//!     Ok::<_, Error>(())
//! })
//! .await;
//! match result {
//!     Ok(()) => println!("committed"),
//!     // A newer holder committed first: this one's lock had run out.
//!     Err(Error::StaleToken { highest, .. }) => println!("fenced off by {highest}"),
//!     Err(e) => return Err(e),
//! }
//! # Ok(()) }
//! ```

mod install;
mod scoped;
mod sql_error;
mod transaction;

pub use install::{INSTALL_SQL, highest, install, verify};
pub use scoped::with_transaction;
pub use transaction::{FencedTransaction, TransactionOptions, begin, begin_as, begin_with};

/// The SQLSTATE `fencelock_fence` raises for a stale token: a higher one
/// was committed for the resource.
pub const STALE_TOKEN: &str = "FL001";

/// The SQLSTATE `fencelock_fence` raises for a token of another lock than
/// the one whose tokens the resource counts.
pub const FOREIGN_TOKEN: &str = "FL002";

/// The pool the scoped form takes connections from.
pub use deadpool_postgres;
/// The PostgreSQL client the transactions run on.
pub use tokio_postgres;

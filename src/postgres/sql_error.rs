//! What a PostgreSQL error means for a fenced transaction.

use tokio_postgres::error::SqlState;

use crate::error::Error;
use crate::fencing::FencingToken;

/// The fence's own refusals, read off the error the fence function raised.
pub(super) fn refusal(
    e: &tokio_postgres::Error,
    resource: &str,
    lock: &str,
    token: FencingToken,
) -> Option<Error> {
    let db = e.as_db_error()?;
    let detail = db.detail().unwrap_or_default();
    match db.code().code() {
        super::STALE_TOKEN => Some(Error::StaleToken {
            resource: resource.to_owned(),
            token,
            // The function names the highest token in its detail; should
            // that ever not parse, the stale token itself is a lower bound
            // that still reads true ("at least").
            highest: detail
                .strip_prefix(HIGHEST)
                .and_then(|n| n.trim().parse().ok())
                .map_or(token, FencingToken::new),
        }),
        super::FOREIGN_TOKEN => Some(Error::ForeignToken {
            resource: resource.to_owned(),
            lock: lock.to_owned(),
            fenced_by: detail
                .strip_prefix(FENCED_BY)
                .unwrap_or("another lock")
                .to_owned(),
        }),
        _ => None,
    }
}

/// How `fencelock_fence` begins the detail of a stale token's error.
const HIGHEST: &str = "highest accepted token: ";
/// How `fencelock_fence` begins the detail of a foreign token's error.
const FENCED_BY: &str = "fenced by lock: ";

/// Any other error of a statement of `what`: the fence missing or not
/// ours when the error says so, else a database error.
pub(super) fn database(what: &str, e: tokio_postgres::Error) -> Error {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        if *code == SqlState::UNDEFINED_TABLE || *code == SqlState::UNDEFINED_FUNCTION {
            return Error::FenceNotInstalled {
                missing: format!("{what}: {}", db.message()),
            };
        }
        if *code == SqlState::UNDEFINED_COLUMN || *code == SqlState::INVALID_FUNCTION_DEFINITION {
            return Error::ForeignFence {
                found: format!("{what}: {}", db.message()),
            };
        }
    }
    let message = match e.as_db_error() {
        Some(db) => format!("{what}: {} ({})", db.message(), db.code().code()),
        None => format!("{what}: {e}"),
    };
    Error::Database {
        message,
        source: Some(Box::new(e)),
    }
}

/// Lets `?` carry the caller's own statements' errors out of the work of
/// [`with_transaction`](super::with_transaction) as [`Error::Database`]:
/// never as a fence error, since a missing table in the caller's SQL says
/// nothing about the fence.
impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        let message = match e.as_db_error() {
            Some(db) => format!("statement failed: {} ({})", db.message(), db.code().code()),
            None => format!("statement failed: {e}"),
        };
        Error::Database {
            message,
            source: Some(Box::new(e)),
        }
    }
}

/// A connection that the pool could not give.
impl From<deadpool_postgres::PoolError> for Error {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Error::Database {
            message: format!("no connection from the pool: {e}"),
            source: Some(Box::new(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The prefixes must match what fence.sql writes, or the highest
    /// token and the fencing lock go missing from the errors.
    #[test]
    fn the_detail_prefixes_are_the_ones_fence_sql_writes() {
        let sql = super::super::INSTALL_SQL;
        assert!(sql.contains(&format!("'{HIGHEST}%s'")), "{HIGHEST:?}");
        assert!(sql.contains(&format!("'{FENCED_BY}%s'")), "{FENCED_BY:?}");
    }
}

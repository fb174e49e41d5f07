//! Putting the fence into a database, and checking that the one there is
//! ours.

use tokio_postgres::Client;

use super::sql_error::database;
use crate::error::{Error, Result};
use crate::fencing::FencingToken;
use crate::options::validate_key;

/// The SQL that creates the fence: the table `fencelock_fence` and the
/// function `fencelock_fence(resource, lock, token)` (with a two-argument
/// form for a resource named after its lock). Idempotent. Run it with
/// [`install`], or with any client (`sqlx::raw_sql`, psql, a migration
/// tool); the objects go to the first schema of the `search_path`, and
/// the functions are pinned to that schema. Every client that writes a
/// resource must reach the same fence: with per-tenant `search_path`s,
/// one fence per schema is one fence per tenant.
pub const INSTALL_SQL: &str = include_str!("fence.sql");

/// The columns of fencelock's fence table, as `format_type` names them.
const COLUMNS: &str = "resource text, lock_name text, token bigint, \
                       updated_at timestamp with time zone";

/// Serialises concurrent installs: `CREATE OR REPLACE FUNCTION` run by two
/// sessions at once can fail with "tuple concurrently updated". Any
/// constant works; this one spells "fncelock" in ASCII.
const INSTALL_LOCK: i64 = 0x666e_63656c6f636b;

/// Creates the fence in the database `client` is connected to, unless it
/// is there already, and checks the result with [`verify`]. Safe to run at
/// every start and from many processes at once.
///
/// # Cancel safety
///
/// Cancel safe: the SQL runs as one implicit transaction, so a dropped
/// call installs all of it or nothing.
///
/// # Errors
///
/// [`Error::ForeignFence`] when a table by the fence's name exists and is
/// not fencelock's (the table is left as it was; functions of the same
/// names and argument types are replaced, as `CREATE OR REPLACE` does);
/// [`Error::Database`] when the SQL fails otherwise (no permission to
/// create in the schema, the connection lost).
pub async fn install(client: &Client) -> Result<()> {
    // One simple query with several statements is one transaction: the
    // advisory lock is held until all of the SQL has committed.
    let sql = format!("SELECT pg_advisory_xact_lock({INSTALL_LOCK});\n{INSTALL_SQL}");
    client
        .batch_execute(&sql)
        .await
        .map_err(|e| database("installing the fence", e))?;
    verify(client).await
}

/// Checks that the database has fencelock's fence: the table with its
/// columns and primary key, and both forms of the function.
///
/// # Cancel safety
///
/// Cancel safe: it only reads.
///
/// # Errors
///
/// [`Error::FenceNotInstalled`] naming what is missing;
/// [`Error::ForeignFence`] naming what is there instead;
/// [`Error::Database`] when the query fails.
pub async fn verify(client: &Client) -> Result<()> {
    let row = client
        .query_one(
            "SELECT to_regclass('fencelock_fence') IS NOT NULL,
                    coalesce((SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod),
                                                ', ' ORDER BY attnum)
                              FROM pg_attribute
                              WHERE attrelid = to_regclass('fencelock_fence')
                                AND attnum > 0 AND NOT attisdropped), ''),
                    EXISTS (SELECT 1 FROM pg_index
                            WHERE indrelid = to_regclass('fencelock_fence')
                              AND indisprimary AND indkey::text = '1'),
                    to_regprocedure('fencelock_fence(text,text,bigint)') IS NOT NULL,
                    to_regprocedure('fencelock_fence(text,bigint)') IS NOT NULL",
            &[],
        )
        .await
        .map_err(|e| database("checking the fence", e))?;
    let (table, columns, keyed, function, short) = (
        row.get::<_, bool>(0),
        row.get::<_, String>(1),
        row.get::<_, bool>(2),
        row.get::<_, bool>(3),
        row.get::<_, bool>(4),
    );
    if !table {
        return Err(Error::FenceNotInstalled {
            missing: "no table fencelock_fence in the search_path".into(),
        });
    }
    if columns != COLUMNS || !keyed {
        return Err(Error::ForeignFence {
            found: format!(
                "table fencelock_fence has columns ({columns}){}, not ({COLUMNS}) keyed by resource",
                if keyed {
                    ""
                } else {
                    " and no primary key on resource"
                }
            ),
        });
    }
    if !function || !short {
        return Err(Error::FenceNotInstalled {
            missing: format!(
                "function {} missing",
                if function {
                    "fencelock_fence(text, bigint)"
                } else {
                    "fencelock_fence(text, text, bigint)"
                }
            ),
        });
    }
    Ok(())
}

/// The highest token the database has accepted for `resource`, if any.
///
/// # Cancel safety
///
/// Cancel safe: it only reads.
///
/// # Errors
///
/// [`Error::InvalidKey`] for a resource name that is not a valid key;
/// [`Error::FenceNotInstalled`] without the fence table;
/// [`Error::Database`] when the query fails.
pub async fn highest(client: &Client, resource: &str) -> Result<Option<FencingToken>> {
    validate_key(resource)?;
    let row = client
        .query_opt(
            "SELECT token FROM fencelock_fence WHERE resource = $1",
            &[&resource],
        )
        .await
        .map_err(|e| database("reading the fence", e))?;
    Ok(row.map(|r| token_from_sql(r.get(0))))
}

/// A token as the database stores it; `bigint` and never negative (the
/// table's check).
pub(super) fn token_from_sql(value: i64) -> FencingToken {
    FencingToken::new(u64::try_from(value).unwrap_or(0))
}

/// A token as the database stores it.
pub(super) fn token_to_sql(token: FencingToken) -> Result<i64> {
    i64::try_from(token.get()).map_err(|_| Error::Database {
        message: format!("fencing token {token} does not fit PostgreSQL's bigint"),
        source: None,
    })
}

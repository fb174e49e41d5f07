//! The fence in PostgreSQL (`src/postgres/fence.sql`), through plain SQL on
//! a real server: a stale token fails its transaction and nothing it wrote
//! is kept; two holders racing on one resource are ordered by the row
//! lock; a rolled-back transaction leaves the fence as it was; the fence
//! survives a crash of the database, and a transaction cut by it commits
//! nothing.

use std::time::Duration;

use fencelock::testing::PostgresServer;
use tokio_postgres::{Client, NoTls};

use crate::common::{bounded, wait_until};

const LIMIT: Duration = Duration::from_secs(120);
const FENCE_SQL: &str = include_str!("../../../src/postgres/fence.sql");
const SETUP: &str = "CREATE TABLE IF NOT EXISTS ledger (resource text, entry text)";
/// The SQLSTATE of a stale token.
const STALE: &str = "FL001";

async fn connect(server: &PostgresServer) -> Client {
    let (client, connection) = tokio_postgres::connect(&server.config(), NoTls)
        .await
        .expect("connect to the fixture");
    tokio::spawn(connection);
    client
}

/// A server with the fence installed (twice: installing is idempotent)
/// and a table to write to.
async fn ready() -> (PostgresServer, Client) {
    let server = PostgresServer::start().expect("start postgres (run scripts/setup)");
    let client = connect(&server).await;
    client.batch_execute(FENCE_SQL).await.unwrap();
    client.batch_execute(FENCE_SQL).await.unwrap();
    client.batch_execute(SETUP).await.unwrap();
    (server, client)
}

/// One transaction that writes `entry` to `resource` under `token`; the
/// SQLSTATE it failed with, if it did.
async fn write(client: &Client, resource: &str, token: i64, entry: &str) -> Result<(), String> {
    client.batch_execute("BEGIN").await.unwrap();
    let result = async {
        client
            .execute("INSERT INTO ledger VALUES ($1, $2)", &[&resource, &entry])
            .await?;
        client
            .query_one("SELECT fencelock_fence($1, $2)", &[&resource, &token])
            .await?;
        client.batch_execute("COMMIT").await
    }
    .await;
    if result.is_err() {
        client.batch_execute("ROLLBACK").await.unwrap();
    }
    result.map_err(|e| {
        e.code()
            .map_or_else(|| e.to_string(), |c| c.code().to_owned())
    })
}

async fn entries(client: &Client, resource: &str) -> Vec<String> {
    client
        .query(
            "SELECT entry FROM ledger WHERE resource = $1 ORDER BY entry",
            &[&resource],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

async fn fence(client: &Client, resource: &str) -> Option<i64> {
    client
        .query_opt(
            "SELECT token FROM fencelock_fence WHERE resource = $1",
            &[&resource],
        )
        .await
        .unwrap()
        .map(|row| row.get(0))
}

#[tokio::test]
async fn a_stale_token_fails_its_transaction_and_writes_nothing() {
    let (_server, client) = ready().await;
    bounded(LIMIT, async {
        assert_eq!(write(&client, "r", 5, "a").await, Ok(()));
        // The same holder again: equal tokens pass.
        assert_eq!(write(&client, "r", 5, "b").await, Ok(()));
        assert_eq!(write(&client, "r", 4, "stale").await, Err(STALE.to_owned()));
        assert_eq!(entries(&client, "r").await, ["a", "b"]);
        assert_eq!(fence(&client, "r").await, Some(5));
        // Resources are fenced apart.
        assert_eq!(write(&client, "other", 1, "c").await, Ok(()));
    })
    .await;
}

#[tokio::test]
async fn two_holders_racing_are_ordered_by_the_row_lock() {
    let (server, newer) = ready().await;
    let older = connect(&server).await;
    bounded(LIMIT, async {
        assert_eq!(write(&newer, "r", 1, "first").await, Ok(()));
        // The newer holder (token 7) has checked in and not committed yet.
        newer.batch_execute("BEGIN").await.unwrap();
        newer
            .query_one("SELECT fencelock_fence('r', 7)", &[])
            .await
            .unwrap();
        newer
            .execute("INSERT INTO ledger VALUES ('r', 'newer')", &[])
            .await
            .unwrap();
        // The older one (token 6) waits for the row, not for a verdict
        // taken before the newer one commits.
        let racing = tokio::spawn(async move { write(&older, "r", 6, "older").await });
        wait_until(LIMIT, async || {
            let waiting: i64 = newer
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            waiting == 1
        })
        .await;
        assert!(
            !racing.is_finished(),
            "the older holder did not wait for the row"
        );
        newer.batch_execute("COMMIT").await.unwrap();
        assert_eq!(racing.await.unwrap(), Err(STALE.to_owned()));
        assert_eq!(entries(&newer, "r").await, ["first", "newer"]);
        assert_eq!(fence(&newer, "r").await, Some(7));
    })
    .await;
}

#[tokio::test]
async fn a_rolled_back_transaction_leaves_the_fence_as_it_was() {
    let (server, holder) = ready().await;
    let next = connect(&server).await;
    bounded(LIMIT, async {
        assert_eq!(write(&holder, "r", 3, "kept").await, Ok(()));
        holder.batch_execute("BEGIN").await.unwrap();
        holder
            .query_one("SELECT fencelock_fence('r', 9)", &[])
            .await
            .unwrap();
        holder.batch_execute("ROLLBACK").await.unwrap();
        assert_eq!(fence(&holder, "r").await, Some(3));
        // A holder between the two tokens is not locked out by the token
        // that never committed.
        assert_eq!(write(&next, "r", 4, "next").await, Ok(()));
        assert_eq!(entries(&next, "r").await, ["kept", "next"]);
    })
    .await;
}

#[tokio::test]
async fn the_fence_survives_a_crash_and_a_cut_transaction_commits_nothing() {
    let (mut server, client) = ready().await;
    bounded(LIMIT, async {
        assert_eq!(write(&client, "r", 10, "before").await, Ok(()));
        client.batch_execute("BEGIN").await.unwrap();
        client
            .query_one("SELECT fencelock_fence('r', 12)", &[])
            .await
            .unwrap();
        client
            .execute("INSERT INTO ledger VALUES ('r', 'cut')", &[])
            .await
            .unwrap();
        server.kill();
        let commit = client.batch_execute("COMMIT").await;
        assert!(commit.is_err(), "a commit reached a killed server");
        server.restart().unwrap();
        let client = connect(&server).await;
        assert_eq!(fence(&client, "r").await, Some(10));
        assert_eq!(entries(&client, "r").await, ["before"]);
        assert_eq!(write(&client, "r", 9, "stale").await, Err(STALE.to_owned()));
        assert_eq!(write(&client, "r", 11, "after").await, Ok(()));
    })
    .await;
}

//! A stale holder's commit refused by the database itself: holder A takes
//! the lock and begins a fenced transaction on PostgreSQL, then stalls
//! past its lock's ttl (a pause, a long GC); holder B takes the lock and
//! commits; A wakes up and commits, and PostgreSQL refuses it: nothing A
//! wrote is kept. Then the same refusal through plain SQL, as another
//! client (psql, sqlx) sees it.
//!
//! Run it with `cargo run --example fenced_transaction --features testing,postgres`;
//! it starts its own redis-server and a private PostgreSQL cluster (run
//! `scripts/setup` first for the PostgreSQL binaries and, as root, the
//! user it runs as).

use std::time::Duration;

use fencelock::postgres;
use fencelock::testing::{PostgresServer, RedisServer};
use fencelock::{LockOptions, Locker, Owner, Redlock, Watchdog};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let redis = RedisServer::start()?;
    let db = PostgresServer::start()?;
    let pool = db.pool();
    let setup = pool.get().await?;
    postgres::install(&setup).await?;
    setup
        .batch_execute("CREATE TABLE ledger (entry text)")
        .await?;
    println!("redis {}, postgresql {}", redis.url(), db.url());

    // A short ttl and no watchdog, so that A's stall outlasts its lock.
    let options = LockOptions::default()
        .ttl(Duration::from_millis(500))
        .watchdog(Watchdog::Off);
    let locker = Locker::new(Redlock::from_urls([redis.url()])?, options)?;
    let (a, b) = (
        locker.with_owner(Owner::random()),
        locker.with_owner(Owner::random()),
    );

    let held_a = a.lock("ledger").await?;
    let mut conn_a = pool.get().await?;
    let tx_a = postgres::begin(&mut conn_a, &held_a).await?;
    tx_a.execute("INSERT INTO ledger VALUES ('written by A')", &[])
        .await?;
    println!(
        "A: lock \"ledger\" with token {}, transaction begun, wrote a row; stalls...",
        held_a.token()
    );
    while held_a.is_held() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("A: (stalled) its lock ran out");

    let held_b = b.lock("ledger").await?;
    let mut conn_b = pool.get().await?;
    let tx_b = postgres::begin(&mut conn_b, &held_b).await?;
    tx_b.execute("INSERT INTO ledger VALUES ('written by B')", &[])
        .await?;
    let token_b = tx_b.commit().await?;
    println!("B: lock \"ledger\" with token {token_b}, committed");
    held_b.release().await?;

    match tx_a.commit().await {
        Ok(token) => println!("A: committed under token {token} (the fence failed!)"),
        Err(e) => println!("A: wakes up and commits: {e}"),
    }
    let rows: Vec<String> = setup
        .query("SELECT entry FROM ledger", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    println!("ledger now holds: {rows:?}");

    // What a client without the Rust API sees for the same stale token.
    let plain = format!(
        "BEGIN; INSERT INTO ledger VALUES ('stale, by hand'); SELECT fencelock_fence('ledger', {});",
        held_a.token()
    );
    if let Err(e) = setup.batch_execute(&plain).await
        && let Some(db_error) = e.as_db_error()
    {
        println!(
            "psql> {plain}\nERROR:  {}\nDETAIL:  {}\nHINT:  {}\nSQLSTATE: {}",
            db_error.message(),
            db_error.detail().unwrap_or_default(),
            db_error.hint().unwrap_or_default(),
            db_error.code().code()
        );
    }
    setup.batch_execute("ROLLBACK").await?;
    Ok(())
}

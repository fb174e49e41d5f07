//! Fenced transactions (`fencelock::postgres`) on a real PostgreSQL and
//! real Redis nodes: a holder whose lock ran out cannot commit after a
//! newer holder, racing holders commit in token order, a rollback leaves
//! the fence alone, a restart of the database loses nothing committed and
//! commits nothing cut, and bad input gets errors that name it.

use std::time::Duration;

use fencelock::postgres::{self, FencedTransaction, TransactionOptions};
use fencelock::testing::{PostgresServer, RedisNodes};
use fencelock::{Error, FencingToken, LockOptions, Locker, Owner, Redlock, Watchdog};
use tokio_postgres::{Client, NoTls};

use crate::common::{bounded, options, short_ttl_options, wait_until};

const LIMIT: Duration = Duration::from_secs(120);
const LEDGER: &str = "CREATE TABLE IF NOT EXISTS ledger (resource text, entry text)";

struct World {
    db: PostgresServer,
    _nodes: RedisNodes,
    locker: Locker<Redlock>,
    pool: postgres::deadpool_postgres::Pool,
}

async fn world(locker_options: LockOptions) -> World {
    let db = PostgresServer::start().expect("start postgres (run scripts/setup)");
    let nodes = RedisNodes::start(1).expect("start redis-server");
    let locker = Locker::new(Redlock::from_urls(nodes.urls()).unwrap(), locker_options).unwrap();
    let pool = db.pool();
    let client = pool.get().await.unwrap();
    postgres::install(&client).await.unwrap();
    client.batch_execute(LEDGER).await.unwrap();
    World {
        db,
        _nodes: nodes,
        locker,
        pool,
    }
}

async fn connect(db: &PostgresServer) -> Client {
    let (client, connection) = tokio_postgres::connect(&db.config(), NoTls).await.unwrap();
    tokio::spawn(connection);
    client
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

async fn note(tx: &FencedTransaction<'_>, entry: &str) {
    tx.execute(
        "INSERT INTO ledger VALUES ($1, $2)",
        &[&tx.resource(), &entry],
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_holder_whose_lock_ran_out_cannot_commit_after_a_newer_holder() {
    let w = world(short_ttl_options()).await;
    bounded(LIMIT, async {
        let mut old_client = w.pool.get().await.unwrap();
        let mut new_client = w.pool.get().await.unwrap();
        let old = w.locker.lock("ledger").await.unwrap();
        let stale = postgres::begin(&mut old_client, &old).await.unwrap();
        note(&stale, "old").await;
        // The old holder stalls (a pause, a long GC) past its lock's ttl.
        wait_until(LIMIT, async || !old.is_held()).await;
        // Another owner (this task's would re-enter its own stale hold).
        let new = w
            .locker
            .with_owner(Owner::random())
            .lock("ledger")
            .await
            .unwrap();
        assert!(new.token() > old.token());
        let fresh = postgres::begin(&mut new_client, &new).await.unwrap();
        note(&fresh, "new").await;
        assert_eq!(fresh.commit().await.unwrap(), new.token());
        // The old holder wakes up and commits: refused, nothing written.
        match stale.commit().await {
            Err(Error::StaleToken {
                resource,
                token,
                highest,
            }) => {
                assert_eq!(
                    (resource.as_str(), token, highest),
                    ("ledger", old.token(), new.token())
                );
            }
            other => panic!("a stale commit went through: {other:?}"),
        }
        assert_eq!(entries(&new_client, "ledger").await, ["new"]);
        assert_eq!(
            postgres::highest(&new_client, "ledger").await.unwrap(),
            Some(new.token())
        );
        // Stale already at begin, too: the early check says so before any work.
        match postgres::begin(&mut old_client, &new).await {
            Ok(tx) => tx.rollback().await.unwrap(),
            Err(e) => panic!("the newest holder could not begin: {e}"),
        }
        new.release().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_late_but_unovertaken_holder_commits_before_the_newer_one() {
    // The fencing contract is token order at the database, not "only a live
    // lock writes": an old holder that fences before the newer one commits
    // goes first, and the newer one's commit waits for its row.
    let w = world(short_ttl_options()).await;
    bounded(LIMIT, async {
        let mut old_client = w.pool.get().await.unwrap();
        let mut new_client = w.pool.get().await.unwrap();
        let watcher = connect(&w.db).await;
        let old = w.locker.lock("ledger").await.unwrap();
        let late = postgres::begin(&mut old_client, &old).await.unwrap();
        note(&late, "1-old").await;
        wait_until(LIMIT, async || !old.is_held()).await;
        // Another owner (this task's would re-enter its own stale hold).
        let new = w
            .locker
            .with_owner(Owner::random())
            .lock("ledger")
            .await
            .unwrap();
        let fresh = postgres::begin(&mut new_client, &new).await.unwrap();
        note(&fresh, "2-new").await;
        // The old holder checks in first and holds the fence's row ...
        late.query_one(
            "SELECT fencelock_fence('ledger', $1::bigint)",
            &[&(old.token().get() as i64)],
        )
        .await
        .unwrap();
        // ... so the newer commit waits for it.
        let newer = fresh.commit();
        tokio::pin!(newer);
        tokio::select! {
            done = &mut newer => panic!("the newer commit did not wait for the row: {done:?}"),
            () = wait_until(LIMIT, async || {
                let waiting: i64 = watcher
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                waiting == 1
            }) => {}
        }
        let (older, newer) = tokio::join!(late.commit(), newer);
        assert_eq!(older.unwrap(), old.token());
        assert_eq!(newer.unwrap(), new.token());
        assert_eq!(entries(&watcher, "ledger").await, ["1-old", "2-new"]);
        assert_eq!(
            postgres::highest(&watcher, "ledger").await.unwrap(),
            Some(new.token())
        );
    })
    .await;
}

#[tokio::test]
async fn racing_writers_under_the_scoped_form_lose_no_update() {
    let w = world(options()).await;
    bounded(LIMIT, async {
        let client = w.pool.get().await.unwrap();
        client
            .batch_execute("CREATE TABLE counter (n int); INSERT INTO counter VALUES (0)")
            .await
            .unwrap();
        drop(client);
        let writers = (0..8).map(|_| {
            let (locker, pool) = (w.locker.clone(), w.pool.clone());
            tokio::spawn(async move {
                for _ in 0..5 {
                    postgres::with_transaction(&locker, &pool, "counter", async |tx| {
                        // A read-then-write that only the lock makes safe.
                        let n: i32 = tx.query_one("SELECT n FROM counter", &[]).await?.get(0);
                        tx.execute("UPDATE counter SET n = $1", &[&(n + 1)]).await?;
                        Ok::<_, Error>(())
                    })
                    .await
                    .unwrap();
                }
            })
        });
        for writer in writers.collect::<Vec<_>>() {
            writer.await.unwrap();
        }
        let client = w.pool.get().await.unwrap();
        let n: i32 = client
            .query_one("SELECT n FROM counter", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 40);
        let fence = postgres::highest(&client, "counter")
            .await
            .unwrap()
            .unwrap();
        assert!(
            fence >= FencingToken::new(40),
            "fence {fence} below 40 holders"
        );
    })
    .await;
}

#[tokio::test]
async fn a_rollback_or_a_failed_work_leaves_data_and_fence_as_they_were() {
    let w = world(options()).await;
    bounded(LIMIT, async {
        let mut client = w.pool.get().await.unwrap();
        let first = w.locker.lock("ledger").await.unwrap();
        let tx = postgres::begin(&mut client, &first).await.unwrap();
        note(&tx, "kept").await;
        let kept = tx.commit().await.unwrap();
        first.release().await.unwrap();

        let second = w.locker.lock("ledger").await.unwrap();
        let tx = postgres::begin(&mut client, &second).await.unwrap();
        note(&tx, "rolled back").await;
        tx.rollback().await.unwrap();
        // Dropped without a commit: rolled back too.
        let tx = postgres::begin(&mut client, &second).await.unwrap();
        note(&tx, "dropped").await;
        drop(tx);
        second.release().await.unwrap();

        let failed = postgres::with_transaction(&w.locker, &w.pool, "ledger", async |tx| {
            note(tx, "failed work").await;
            Err::<(), _>(Error::InvalidKey("the work's own error".into()))
        })
        .await;
        assert!(matches!(failed, Err(Error::InvalidKey(_))), "{failed:?}");
        assert_eq!(entries(&client, "ledger").await, ["kept"]);
        assert_eq!(
            postgres::highest(&client, "ledger").await.unwrap(),
            Some(kept)
        );
        // The lock was given back on the failed path.
        assert!(!w.locker.is_locked("ledger").await.unwrap());
    })
    .await;
}

#[tokio::test]
async fn a_lock_lost_during_the_work_rolls_the_transaction_back() {
    let w = world(
        options()
            .ttl(Duration::from_secs(2))
            .watchdog(Watchdog::Auto),
    )
    .await;
    bounded(LIMIT, async {
        let (started, on_start) = tokio::sync::oneshot::channel();
        let work = postgres::with_transaction(&w.locker, &w.pool, "ledger", async |tx| {
            note(tx, "lost").await;
            let _ = started.send(());
            std::future::pending::<()>().await;
            Ok::<_, Error>(())
        });
        let admin = async {
            on_start.await.unwrap();
            w.locker.force_release("ledger").await.unwrap();
        };
        let (outcome, ()) = tokio::join!(work, admin);
        assert!(matches!(outcome, Err(Error::Lost { .. })), "{outcome:?}");
        let client = connect(&w.db).await;
        assert!(entries(&client, "ledger").await.is_empty());
        assert_eq!(postgres::highest(&client, "ledger").await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn a_database_restart_mid_transaction_commits_nothing_and_keeps_the_fence() {
    let mut w = world(options()).await;
    bounded(LIMIT, async {
        let first = w.locker.lock("ledger").await.unwrap();
        postgres::with_transaction(&w.locker, &w.pool, "other", async |tx| {
            note(tx, "other").await;
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        let mut client = connect(&w.db).await;
        let tx = postgres::begin(&mut client, &first).await.unwrap();
        note(&tx, "cut").await;
        w.db.kill();
        w.db.restart().unwrap();
        match tx.commit().await {
            Err(Error::Database { .. }) => {}
            other => panic!("a commit to a restarted database: {other:?}"),
        }
        first.release().await.unwrap();
        // The pool replaces its dead connections; committed data and
        // fences survived, the cut transaction left nothing.
        postgres::with_transaction(&w.locker, &w.pool, "ledger", async |tx| {
            note(tx, "after").await;
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        let client = connect(&w.db).await;
        assert_eq!(entries(&client, "ledger").await, ["after"]);
        assert_eq!(entries(&client, "other").await, ["other"]);
        assert!(postgres::highest(&client, "other").await.unwrap().is_some());
    })
    .await;
}

#[tokio::test]
async fn install_is_idempotent_under_concurrency_and_refuses_a_foreign_table() {
    let db = PostgresServer::start().expect("start postgres (run scripts/setup)");
    bounded(LIMIT, async {
        let pool = db.pool();
        let client = pool.get().await.unwrap();
        // Nothing installed yet: named, typed.
        assert!(matches!(
            postgres::verify(&client).await,
            Err(Error::FenceNotInstalled { .. })
        ));
        let installs = (0..4).map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { postgres::install(&pool.get().await.unwrap()).await })
        });
        for install in installs.collect::<Vec<_>>() {
            install.await.unwrap().unwrap();
        }
        postgres::verify(&client).await.unwrap();

        // A temporary table by the fence's name does not shadow the fence:
        // the functions are pinned to the schema they were installed in.
        client
            .batch_execute(
                "CREATE TEMP TABLE fencelock_fence (resource text PRIMARY KEY, \
                 lock_name text NOT NULL, token bigint NOT NULL, \
                 updated_at timestamptz NOT NULL DEFAULT now())",
            )
            .await
            .unwrap();
        client
            .query_one("SELECT fencelock_fence('pinned', 3)", &[])
            .await
            .unwrap();
        let real: i64 = connect(&db)
            .await
            .query_one(
                "SELECT token FROM public.fencelock_fence WHERE resource = 'pinned'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(real, 3);

        // Another database, where a table by the fence's name is someone else's.
        client.batch_execute("CREATE SCHEMA theirs").await.unwrap();
        let (theirs, connection) = tokio_postgres::connect(
            &format!("{} options='-c search_path=theirs'", db.config()),
            NoTls,
        )
        .await
        .unwrap();
        tokio::spawn(connection);
        theirs
            .batch_execute("CREATE TABLE fencelock_fence (id serial PRIMARY KEY, note text)")
            .await
            .unwrap();
        match postgres::install(&theirs).await {
            Err(Error::ForeignFence { found }) => {
                assert!(found.contains("id integer, note text"), "{found}");
            }
            other => panic!("a foreign fence table was accepted: {other:?}"),
        }
        // Left alone.
        let columns: i64 = theirs
            .query_one(
                "SELECT count(*) FROM information_schema.columns
                 WHERE table_schema = 'theirs' AND table_name = 'fencelock_fence'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(columns, 2);
    })
    .await;
}

#[tokio::test]
async fn bad_input_gets_errors_that_name_it() {
    let w = world(short_ttl_options()).await;
    bounded(LIMIT, async {
        let mut client = w.pool.get().await.unwrap();
        // A resource fenced by lock "a" refuses lock "b"'s tokens, at
        // begin ...
        let a = w.locker.lock("a").await.unwrap();
        let tx = postgres::begin_as(&mut client, &a, "accounts").await.unwrap();
        tx.commit().await.unwrap();
        let b = w.locker.lock("b").await.unwrap();
        match postgres::begin_as(&mut client, &b, "accounts").await {
            Err(Error::ForeignToken {
                resource,
                lock,
                fenced_by,
            }) => assert_eq!((resource.as_str(), lock.as_str(), fenced_by.as_str()), ("accounts", "b", "a")),
            other => panic!("{other:?}"),
        }
        // ... and at commit, when the other lock fenced it in between.
        let mut other = w.pool.get().await.unwrap();
        let late = postgres::begin_with(&mut client, &b, &TransactionOptions::new().resource("cards"))
            .await
            .unwrap();
        postgres::begin_as(&mut other, &a, "cards").await.unwrap().commit().await.unwrap();
        match late.commit().await {
            Err(Error::ForeignToken { fenced_by, .. }) => assert_eq!(fenced_by, "a"),
            other => panic!("{other:?}"),
        }
        // An empty resource name.
        assert!(matches!(
            postgres::begin_as(&mut client, &a, "").await,
            Err(Error::InvalidKey(_))
        ));
        // A guard whose lock ran out.
        wait_until(LIMIT, async || !a.is_held()).await;
        assert!(matches!(
            postgres::begin(&mut client, &a).await,
            Err(Error::NotHeld { .. })
        ));
        // The fence missing in this database.
        client.batch_execute("DROP FUNCTION fencelock_fence(text, bigint); DROP FUNCTION fencelock_fence(text, text, bigint); DROP TABLE fencelock_fence").await.unwrap();
        let c = w.locker.lock("c").await.unwrap();
        match postgres::begin(&mut client, &c).await {
            Err(e @ Error::FenceNotInstalled { .. }) => {
                assert!(e.to_string().contains("fencelock_fence"), "{e}")
            }
            other => panic!("{other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn a_write_guard_fences_a_transaction_too() {
    let w = world(options()).await;
    bounded(LIMIT, async {
        let mut client = w.pool.get().await.unwrap();
        let guard = w.locker.write("ledger").await.unwrap();
        let tx = postgres::begin(&mut client, &guard).await.unwrap();
        note(&tx, "written").await;
        assert_eq!(tx.commit().await.unwrap(), guard.token());
        guard.release().await.unwrap();
        assert_eq!(entries(&client, "ledger").await, ["written"]);
    })
    .await;
}

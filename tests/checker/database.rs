//! PostgreSQL as a second protected resource: every lock holder also
//! commits a fenced transaction (`fencelock::postgres`) that records its
//! token, while the nemesis pauses and restarts the database. The
//! database keeps the verdict itself, in the same transactions: a commit
//! whose token is below one committed before it is a fence violation.

use std::time::Duration;

use fencelock::postgres::{self, FencedTransaction, deadpool_postgres};
use fencelock::testing::PostgresServer;
use fencelock::{AnyBackend, Error, LockGuard};

/// The tally, one row, updated as every fenced transaction commits: the
/// highest token committed, how many committed, and how many committed
/// below an earlier commit's token (must stay 0). A holder's transaction
/// only appends its token to `checker_log`; a deferred trigger updates the
/// tally at `COMMIT`, after the fence, so the tally itself does not order
/// the holders (a fence without its row lock would be caught). `refused`
/// is counted outside the refused transactions, best effort.
const SETUP: &str = "CREATE TABLE checker_tally (
        id int PRIMARY KEY,
        last_token bigint NOT NULL,
        committed bigint NOT NULL,
        violations bigint NOT NULL,
        refused bigint NOT NULL);
    INSERT INTO checker_tally VALUES (1, 0, 0, 0, 0);
    CREATE TABLE checker_log (token bigint NOT NULL);
    CREATE FUNCTION checker_count() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE checker_tally
        SET violations = violations + (last_token > NEW.token)::int,
            last_token = GREATEST(last_token, NEW.token),
            committed = committed + 1
        WHERE id = 1;
        RETURN NULL;
    END
    $$;
    CREATE CONSTRAINT TRIGGER checker_count AFTER INSERT ON checker_log
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION checker_count();";

/// The write of a holder.
const TALLY: &str = "INSERT INTO checker_log VALUES ($1)";

/// A fenced transaction that takes longer than this (the database paused
/// or restarting) is abandoned and rolled back.
const BOUND: Duration = Duration::from_secs(5);

pub struct Database {
    pool: deadpool_postgres::Pool,
}

/// What the database said to one holder's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    Committed,
    /// Refused by the fence: a newer holder had committed.
    Refused,
    /// Anything else: the database paused or restarted, the lock gone
    /// before the begin, a timeout. The outcome of a cut COMMIT is
    /// unknown, and fenced either way.
    Failed,
}

impl Database {
    pub fn new(url: &str) -> Self {
        let config = deadpool_postgres::Config {
            url: Some(url.to_owned()),
            ..Default::default()
        };
        let pool = config
            .create_pool(
                Some(deadpool_postgres::Runtime::Tokio1),
                tokio_postgres::NoTls,
            )
            .expect("a pool for the checker's database");
        Self { pool }
    }

    /// A connection, unless the database does not give one in time.
    pub async fn connection(&self) -> Option<deadpool_postgres::Object> {
        tokio::time::timeout(BOUND, self.pool.get())
            .await
            .ok()?
            .ok()
    }

    /// Begins a fenced transaction under `guard` (refused at once if the
    /// lock already ran out or a newer holder committed).
    pub async fn begin<'c>(
        conn: &'c mut deadpool_postgres::Object,
        guard: &LockGuard<AnyBackend>,
    ) -> Option<FencedTransaction<'c>> {
        tokio::time::timeout(BOUND, postgres::begin(conn, guard))
            .await
            .ok()?
            .ok()
    }

    /// Writes the holder's token into the tally and commits, fenced.
    pub async fn finish(&self, tx: FencedTransaction<'_>) -> Commit {
        let token = i64::try_from(tx.token().get()).unwrap();
        let attempt = async {
            tx.execute(TALLY, &[&token]).await?;
            tx.commit().await
        };
        match tokio::time::timeout(BOUND, attempt).await {
            Ok(Ok(_)) => Commit::Committed,
            Ok(Err(Error::StaleToken { .. })) => {
                let count = async {
                    let client = self.pool.get().await.ok()?;
                    client
                        .execute("UPDATE checker_tally SET refused = refused + 1", &[])
                        .await
                        .ok()
                };
                let _ = tokio::time::timeout(BOUND, count).await;
                Commit::Refused
            }
            Ok(Err(_)) | Err(_) => Commit::Failed,
        }
    }
}

/// The database's own record after a run.
#[derive(Debug)]
pub struct Tally {
    pub last_token: i64,
    pub committed: i64,
    pub violations: i64,
    pub refused: i64,
    /// The fence's token for the lock's resource.
    pub fence: Option<u64>,
}

pub async fn set_up(server: &PostgresServer) {
    let pool = server.pool();
    let client = pool.get().await.unwrap();
    postgres::install(&client).await.unwrap();
    client.batch_execute(SETUP).await.unwrap();
}

pub async fn tally(server: &PostgresServer, resource: &str) -> Tally {
    let pool = server.pool();
    let client = pool.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT last_token, committed, violations, refused FROM checker_tally",
            &[],
        )
        .await
        .unwrap();
    Tally {
        last_token: row.get(0),
        committed: row.get(1),
        violations: row.get(2),
        refused: row.get(3),
        fence: postgres::highest(&client, resource)
            .await
            .unwrap()
            .map(|t| t.get()),
    }
}

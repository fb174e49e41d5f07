//! The PostgreSQL fixture: a private cluster on a free port that a client
//! reaches, that keeps what was committed across a crash (SIGKILL and
//! restart), and that a pause (SIGSTOP) makes unreachable until resumed.

use std::time::Duration;

use fencelock::testing::PostgresServer;
use tokio_postgres::{Client, NoTls};

use crate::common::bounded;

const LIMIT: Duration = Duration::from_secs(120);

fn start() -> PostgresServer {
    PostgresServer::start().expect("start postgres (run scripts/setup)")
}

async fn connect(server: &PostgresServer) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(&server.config(), NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

#[tokio::test]
async fn a_private_cluster_keeps_commits_across_a_crash_and_pauses() {
    let mut server = start();
    bounded(LIMIT, async {
        let client = connect(&server).await.unwrap();
        client
            .batch_execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (7);")
            .await
            .unwrap();
        drop(client);

        server.kill();
        assert!(connect(&server).await.is_err(), "a killed server answers");
        server.restart().unwrap();
        let client = connect(&server).await.unwrap();
        let v: i32 = client
            .query_one("SELECT v FROM kept", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(v, 7, "a commit before the crash is kept");

        let open = connect(&server).await.unwrap();
        server.pause();
        let paused = tokio::time::timeout(Duration::from_millis(500), connect(&server)).await;
        assert!(paused.is_err(), "a paused server accepts connections");
        // The whole server stops, not only the postmaster: a connection
        // that was open hangs as well.
        let stalled =
            tokio::time::timeout(Duration::from_millis(500), open.query_one("SELECT 1", &[])).await;
        assert!(
            stalled.is_err(),
            "a paused server answered an open connection"
        );
        server.resume();
        assert_eq!(
            open.query_one("SELECT 1", &[])
                .await
                .unwrap()
                .get::<_, i32>(0),
            1
        );
        let again = connect(&server).await.unwrap();
        assert_eq!(
            again
                .query_one("SELECT 1", &[])
                .await
                .unwrap()
                .get::<_, i32>(0),
            1
        );
    })
    .await;
}

#[tokio::test]
async fn two_servers_are_separate_clusters() {
    let (a, b) = (start(), start());
    assert_ne!(a.port(), b.port());
    bounded(LIMIT, async {
        let (ca, cb) = (connect(&a).await.unwrap(), connect(&b).await.unwrap());
        ca.batch_execute("CREATE TABLE only_in_a (v int)")
            .await
            .unwrap();
        let missing = cb.query("SELECT * FROM only_in_a", &[]).await;
        assert!(missing.is_err(), "the table leaked into the other cluster");
    })
    .await;
}

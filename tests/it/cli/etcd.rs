//! The same commands on etcd (`--etcd`), and waits that end without
//! leaving a ticket behind.

#![cfg(feature = "etcd")]

use super::*;

/// `fencelock` with the members of `cluster` in its environment.
fn fencelock_on_etcd(cluster: &fencelock::testing::EtcdCluster) -> Command {
    let mut cmd = bare();
    cmd.env("FENCELOCK_ETCD", cluster.endpoints().join(","))
        .env("FENCELOCK_NODE_TIMEOUT", "500ms");
    cmd
}

/// The same commands on etcd (`--etcd`): a held key is refused, a free one
/// runs the command with its token, inspect and list see the lock, and a
/// forced release frees it.
#[tokio::test]
async fn the_commands_work_on_etcd_too() {
    let cluster = common::start_etcd(1);
    let on_etcd = || fencelock_on_etcd(&cluster);
    let locker = common::etcd_locker(&cluster, LockOptions::default());
    bounded(LIMIT, async {
        let output = run(on_etcd().args([
            "exec",
            "--key",
            "e",
            "--",
            "sh",
            "-c",
            "echo $FENCELOCK_TOKEN",
        ]))
        .await;
        assert_eq!(code(&output), 0, "{}", stderr(&output));
        let first: u64 = stdout(&output).trim().parse().unwrap();

        let guard = locker.try_lock("e").await.unwrap();
        assert!(guard.token().get() > first);
        let output = run(on_etcd().args(["exec", "--key", "e", "--no-wait", "--", "true"])).await;
        assert_eq!(code(&output), NOT_OBTAINED, "{}", stderr(&output));
        let output = run(on_etcd().args(["--json", "inspect", "e"])).await;
        assert_eq!(code(&output), 0, "{}", stderr(&output));
        assert_eq!(
            json_lines(&stdout(&output))[0]["holder"]["token"],
            guard.token().get()
        );
        let output = run(on_etcd().args(["--json", "list"])).await;
        assert_eq!(
            json_lines(&stdout(&output))[0]["resources"],
            serde_json::json!(["e"])
        );
        let output = run(on_etcd().args(["release", "--force", "e"])).await;
        assert_eq!(code(&output), 0, "{}", stderr(&output));
        assert!(!locker.is_locked("e").await.unwrap());
        assert!(matches!(
            guard.release().await,
            Err(fencelock::Error::NotHeld { .. } | fencelock::Error::Lost { .. })
        ));
        // Both backends at once is a usage error.
        let output =
            run(on_etcd().args(["--json", "list", "--nodes", "redis://127.0.0.1:1"])).await;
        assert_eq!(code(&output), USAGE, "{}", stderr(&output));
    })
    .await;
}

/// How an `exec --wait` on etcd stops waiting for a held lock.
enum WaitEnd {
    /// Its `--wait` runs out: it gives up (75).
    GivesUp,
    /// A SIGTERM while it waits: it exits at once (128 + 15).
    Signalled,
}

/// An `exec --wait` that stops waiting (`end`) on etcd takes its place in
/// the lock's queue away before the process exits. A ticket left behind
/// would hold the queue for its lease (up to 5 s): meanwhile the lock,
/// though free, would go to nobody, and an `exec --no-wait` run by cron
/// would be refused (fairness makes a try refused while anyone queues).
async fn an_ended_wait_on_etcd_leaves_no_ticket_behind(end: WaitEnd) {
    let cluster = common::start_etcd(1);
    let locker = common::etcd_locker(&cluster, LockOptions::default());
    let exec = |args: &[&str]| {
        let mut cmd = fencelock_on_etcd(&cluster);
        cmd.args(["exec", "--key", "queued"]).args(args);
        cmd
    };
    bounded(LIMIT, async {
        let guard = locker.try_lock("queued").await.unwrap();
        match end {
            WaitEnd::GivesUp => {
                let output = run(&mut exec(&["--wait", "1s", "--", "true"])).await;
                assert_eq!(code(&output), NOT_OBTAINED, "{}", stderr(&output));
            }
            WaitEnd::Signalled => {
                let child = exec(&["--wait", "60s", "--", "true"])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                // Another process's state: nothing signals it, so it is polled.
                wait_until(Duration::from_secs(10), async || {
                    locker.inspect("queued").await.unwrap().queued == Some(1)
                })
                .await;
                kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
                let output = child.wait_with_output().await.unwrap();
                assert_eq!(code(&output), 128 + 15, "{}", stderr(&output));
            }
        }
        // Looked at once the process is gone: no waiting, no polling.
        let info = locker.inspect("queued").await.unwrap();
        assert_eq!(info.queued, Some(0), "a ticket outlived its process");
        guard.release().await.unwrap();
        let output = run(&mut exec(&["--no-wait", "--", "true"])).await;
        assert_eq!(code(&output), 0, "{}", stderr(&output));
    })
    .await;
}

#[tokio::test]
async fn a_wait_that_gives_up_on_etcd_leaves_no_ticket_behind() {
    an_ended_wait_on_etcd_leaves_no_ticket_behind(WaitEnd::GivesUp).await;
}

#[tokio::test]
async fn a_wait_ended_by_a_signal_on_etcd_leaves_no_ticket_behind() {
    an_ended_wait_on_etcd_leaves_no_ticket_behind(WaitEnd::Signalled).await;
}

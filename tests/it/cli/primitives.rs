//! `--permits` and `--shared`: the semaphore and the read-write lock
//! from the command line.

use super::*;

/// `--permits N`: at most N runs at once, each told its slot; the N+1st
/// is refused while they hold, and another N is a usage error.
#[tokio::test]
async fn permits_bound_concurrent_runs() {
    let nodes = common::start(3);
    bounded(LIMIT, async {
        let sem = locker(&nodes).semaphore("exports", 2).unwrap();
        let first = sem.try_acquire().await.unwrap();
        let exec = |extra: &[&str], script: &str| {
            let mut cmd = fencelock(&nodes);
            cmd.args(["exec", "--key", "exports", "--no-wait"])
                .args(extra)
                .args(["--", "sh", "-c", script]);
            cmd
        };
        // One permit left: the run gets it, in the other slot.
        let output = run(&mut exec(&["--permits", "2"], "echo $FENCELOCK_SLOT")).await;
        assert_eq!(code(&output), 0, "{}", stderr(&output));
        let slot: u32 = stdout(&output).trim().parse().unwrap();
        assert_eq!(slot, 1 - first.slot());
        // Both out: refused without running.
        let second = sem.try_acquire().await.unwrap();
        let output = run(&mut exec(&["--permits", "2"], "echo ran")).await;
        assert_eq!(code(&output), NOT_OBTAINED, "{}", stderr(&output));
        assert!(stdout(&output).is_empty());
        assert!(
            stderr(&output).contains("all 2 permits of semaphore \"exports\" are held elsewhere"),
            "{}",
            stderr(&output)
        );
        let output = run(&mut exec(&["--permits", "3"], "echo ran")).await;
        assert_eq!(code(&output), USAGE, "{}", stderr(&output));
        assert!(stderr(&output).contains("2 permits"), "{}", stderr(&output));
        let output = run(&mut exec(&["--permits", "0"], "echo ran")).await;
        assert_eq!(code(&output), USAGE, "{}", stderr(&output));
        first.release().await.unwrap();
        second.release().await.unwrap();
    })
    .await;
    assert_no_locks(&nodes).await;
}

/// `--shared` runs beside a reader but not beside a writer; `--write`
/// runs alone.
#[tokio::test]
async fn shared_runs_go_together_and_writes_alone() {
    let nodes = common::start(3);
    bounded(LIMIT, async {
        let exec = |mode: &str| {
            let mut cmd = fencelock(&nodes);
            cmd.args(["exec", "--key", "report", "--no-wait", mode, "--", "true"]);
            cmd
        };
        let reader = locker(&nodes).try_read("report").await.unwrap();
        assert_eq!(code(&run(&mut exec("--shared")).await), 0);
        assert_eq!(code(&run(&mut exec("--write")).await), NOT_OBTAINED);
        // The plain lock is another kind: a usage error, not contention.
        let output =
            run(fencelock(&nodes).args(["exec", "--key", "report", "--no-wait", "--", "true"]))
                .await;
        assert_eq!(code(&output), USAGE, "{}", stderr(&output));
        reader.release().await.unwrap();
        let writer = locker(&nodes).try_write("report").await.unwrap();
        assert_eq!(code(&run(&mut exec("--shared")).await), NOT_OBTAINED);
        writer.release().await.unwrap();
        assert_eq!(code(&run(&mut exec("--write")).await), 0);
    })
    .await;
    assert_no_locks(&nodes).await;
}

//! `fencelock exec`: mutual exclusion between processes, lock loss,
//! signals, the command's status and environment, and exit codes.

use super::*;

#[tokio::test]
async fn concurrent_execs_never_overlap_and_tokens_increase() {
    let nodes = common::start(3);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("runs");
    bounded(LIMIT, async {
        // Each run appends a start and an end line to one file. Appends
        // land in the order they happen, so overlapping runs would show as
        // two starts in a row.
        let runs: Vec<Child> = (0..4)
            .map(|_| {
                fencelock(&nodes)
                    .args(["exec", "--key", "shared", "--wait", "50s", "--"])
                    .args(["sh", "-c"])
                    .arg(
                        r#"echo "start $FENCELOCK_TOKEN" >> "$1"; sleep 0.2; echo "end $FENCELOCK_TOKEN" >> "$1""#,
                    )
                    .arg("sh")
                    .arg(&log)
                    .spawn()
                    .unwrap()
            })
            .collect();
        for run in runs {
            let output = run.wait_with_output().await.unwrap();
            assert_eq!(code(&output), 0, "{}", stderr(&output));
        }
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 8, "{text}");
        let mut last = 0;
        for pair in lines.chunks(2) {
            let start = pair[0].strip_prefix("start ").expect(&text);
            let end = pair[1].strip_prefix("end ").expect(&text);
            assert_eq!(start, end, "runs overlapped:\n{text}");
            let token: u64 = start.parse().unwrap();
            assert!(token > last, "tokens must increase:\n{text}");
            last = token;
        }
        assert_no_locks(&nodes).await;
    })
    .await;
}

#[tokio::test]
async fn lost_lock_stops_the_command_and_exits_76() {
    let mut nodes = common::start(3);
    bounded(LIMIT, async {
        // The command ignores SIGTERM, so it takes the SIGKILL after the
        // grace period; its own child (sleep) is in its process group.
        let (child, pids, _) = start_exec(
            fencelock(&nodes)
                .args(["exec", "--key", "doomed", "--ttl", "3s", "--grace", "1s"])
                // The watchdog needs room for three node timeouts in a ttl.
                .args(["--node-timeout", "250ms"])
                .args(["--", "sh", "-c"])
                .arg(r#"trap "" TERM; sleep 60 & echo "ready $$ $!"; wait"#),
        )
        .await;
        let started = Instant::now();
        // No quorum can renew the lock now.
        nodes.node_mut(0).pause();
        nodes.node_mut(1).pause();
        let output = child.wait_with_output().await.unwrap();
        assert_eq!(code(&output), LOST, "{}", stderr(&output));
        assert!(stderr(&output).contains("lost"), "{}", stderr(&output));
        // ttl + grace + the release attempt, with room for a busy machine.
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{:?}",
            started.elapsed()
        );
        wait_until_gone(&pids).await;
        nodes.node_mut(0).resume();
        nodes.node_mut(1).resume();
    })
    .await;
}

#[tokio::test]
async fn sigterm_stops_the_command_and_releases_the_lock() {
    let nodes = common::start(3);
    bounded(LIMIT, async {
        let (child, pids, _) = start_exec(
            fencelock(&nodes)
                .args(["exec", "--key", "stopped", "--"])
                .args(["sh", "-c", r#"sleep 60 & echo "ready $$ $!"; wait"#]),
        )
        .await;
        assert!(locker(&nodes).is_locked("stopped").await.unwrap());
        kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
        let output = child.wait_with_output().await.unwrap();
        assert_eq!(code(&output), 128 + 15, "{}", stderr(&output));
        wait_until_gone(&pids).await;
        // fencelock waits for every node's answer before it exits.
        assert_no_locks(&nodes).await;
    })
    .await;
}

#[tokio::test]
async fn a_held_key_exits_75_without_running_the_command() {
    let nodes = common::start(3);
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    bounded(LIMIT, async {
        let guard = locker(&nodes).try_lock("busy").await.unwrap();
        for wait in [&["--no-wait"][..], &["--wait", "300ms"]] {
            let output = run(fencelock(&nodes)
                .args(["exec", "--key", "busy"])
                .args(wait)
                .args(["--", "touch"])
                .arg(&marker))
            .await;
            assert_eq!(code(&output), NOT_OBTAINED, "{wait:?}: {}", stderr(&output));
            assert!(
                stderr(&output).contains("held elsewhere") || stderr(&output).contains("not free")
            );
            assert!(!marker.exists(), "the command ran without the lock");
        }
        guard.release().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn the_command_s_status_and_environment_come_through() {
    let nodes = common::start(1);
    bounded(LIMIT, async {
        let exec = |script: &str| {
            let mut cmd = fencelock(&nodes);
            cmd.args(["exec", "--key", "status", "--", "sh", "-c", script]);
            cmd
        };
        assert_eq!(code(&run(&mut exec("exit 3")).await), 3);
        assert_eq!(code(&run(&mut exec("exit 0")).await), 0);
        assert_eq!(code(&run(&mut exec("kill -KILL $$")).await), 128 + 9);
        let output = run(&mut exec(r#"echo "$FENCELOCK_KEY $FENCELOCK_TOKEN""#)).await;
        let text = stdout(&output);
        let (key, token) = text.trim().split_once(' ').unwrap();
        assert_eq!(key, "status");
        assert!(token.parse::<u64>().unwrap() > 0, "{text}");

        let output =
            run(fencelock(&nodes).args(["exec", "--key", "status", "--", "/no/such/command"]))
                .await;
        assert_eq!(code(&output), NOT_FOUND, "{}", stderr(&output));
        // Every path gave the lock back.
        assert_no_locks(&nodes).await;
    })
    .await;
}

#[tokio::test]
async fn no_quorum_exits_69_not_75() {
    let mut nodes = common::start(3);
    nodes.node_mut(0).kill();
    nodes.node_mut(1).kill();
    bounded(LIMIT, async {
        // An outage is not contention, also when the wait ran out.
        for wait in [&["--no-wait"][..], &["--wait", "1s"]] {
            let output = run(fencelock(&nodes)
                .args(["exec", "--key", "down"])
                .args(wait)
                .args(["--", "true"]))
            .await;
            assert_eq!(code(&output), UNAVAILABLE, "{wait:?}: {}", stderr(&output));
        }
        let output = run(fencelock(&nodes).args(["inspect", "down"])).await;
        assert_eq!(code(&output), UNAVAILABLE, "{}", stderr(&output));
    })
    .await;
}

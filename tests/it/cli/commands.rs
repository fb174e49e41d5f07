//! The other commands and the output: usage errors, `--json`, a forced
//! release, and `dev-cluster`.

use super::*;

#[tokio::test]
async fn bad_arguments_are_usage_errors() {
    bounded(LIMIT, async {
        let cases: &[&[&str]] = &[
            &["exec", "--key", "k", "--nodes", "redis://127.0.0.1:1"],
            &["exec", "--nodes", "redis://127.0.0.1:1", "--", "true"],
            &[
                "exec",
                "--key",
                "k",
                "--nodes",
                "redis://127.0.0.1:1",
                "--ttl",
                "soon",
                "--",
                "true",
            ],
            &[
                "exec",
                "--key",
                "k",
                "--nodes",
                "redis://127.0.0.1:1",
                "--no-wait",
                "--wait",
                "1s",
                "--",
                "true",
            ],
            &["exec", "--key", "k", "--", "true"],
            &["exec", "--key", "k", "--nodes", "not a url", "--", "true"],
            &[
                "exec",
                "--key",
                "",
                "--nodes",
                "redis://127.0.0.1:1",
                "--",
                "true",
            ],
            &["release", "k", "--nodes", "redis://127.0.0.1:1"],
            &[
                "exec",
                "--key",
                "k",
                "--nodes",
                "redis://127.0.0.1:1",
                "--quarantine",
                "0s",
                "--",
                "true",
            ],
            &[
                "exec",
                "--key",
                "k",
                "--etcd",
                "http://127.0.0.1:1",
                "--quarantine",
                "1m",
                "--",
                "true",
            ],
            &["inspect"],
            &["dev-cluster", "--nodes", "0"],
            &["no-such-command"],
        ];
        for args in cases {
            let output = run(bare().args(*args)).await;
            assert_eq!(code(&output), USAGE, "{args:?}: {}", stderr(&output));
            assert!(!stderr(&output).is_empty(), "{args:?}");
        }
    })
    .await;
}

#[tokio::test]
async fn json_output_parses() {
    let nodes = common::start(3);
    bounded(LIMIT, async {
        let guard = locker(&nodes).try_lock("report").await.unwrap();
        let output = run(fencelock(&nodes).args(["inspect", "report", "--json"])).await;
        assert_eq!(code(&output), 0, "{}", stderr(&output));
        let inspect = &json_lines(&stdout(&output))[0];
        assert_eq!(inspect["locked"], true);
        assert_eq!(inspect["holder"]["token"], guard.token().get());
        assert_eq!(inspect["nodes"].as_array().unwrap().len(), 3);

        let output = run(fencelock(&nodes).args(["--json", "list"])).await;
        assert_eq!(code(&output), 0, "{}", stderr(&output));
        let list = &json_lines(&stdout(&output))[0];
        assert_eq!(list["resources"], serde_json::json!(["report"]));

        let output = run(fencelock(&nodes).args([
            "--json",
            "exec",
            "--key",
            "report",
            "--no-wait",
            "--",
            "true",
        ]))
        .await;
        assert_eq!(code(&output), NOT_OBTAINED);
        let events = json_lines(&stderr(&output));
        let last = events.last().unwrap();
        assert_eq!(last["event"], "exit");
        assert_eq!(last["outcome"], "not_obtained");
        assert_eq!(last["exit_code"], NOT_OBTAINED);
        guard.release().await.unwrap();

        let output = run(fencelock(&nodes).args([
            "--json",
            "exec",
            "--key",
            "report",
            "--",
            "sh",
            "-c",
            "echo $FENCELOCK_TOKEN",
        ]))
        .await;
        assert_eq!(code(&output), 0, "{}", stderr(&output));
        let token: u64 = stdout(&output).trim().parse().unwrap();
        let events = json_lines(&stderr(&output));
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[0]["event"], "acquired");
        assert_eq!(events[0]["token"], token);
        assert_eq!(events[1]["event"], "exit");
        assert_eq!(events[1]["outcome"], "completed");
        assert_eq!(events[1]["exit_code"], 0);

        let output = run(fencelock(&nodes).args(["--json", "release", "--force", "report"])).await;
        assert_eq!(code(&output), 0, "{}", stderr(&output));
        assert_eq!(json_lines(&stdout(&output))[0]["removed"], 0);
    })
    .await;
}

#[tokio::test]
async fn release_force_frees_a_held_lock() {
    let nodes = common::start(3);
    bounded(LIMIT, async {
        let locker = locker(&nodes);
        let guard = locker.try_lock("stuck").await.unwrap();
        // The acquire returned at quorum; let the last node have it too.
        locker.backend().settled().await;
        let output = run(fencelock(&nodes).args(["release", "--force", "stuck"])).await;
        assert_eq!(code(&output), 0, "{}", stderr(&output));
        assert!(
            stdout(&output).contains("removed from 3"),
            "{}",
            stdout(&output)
        );
        assert!(!locker.is_locked("stuck").await.unwrap());
        // The holder finds out at its release.
        assert!(guard.release().await.is_err());
    })
    .await;
}

#[tokio::test]
async fn dev_cluster_serves_locks_and_stops_its_nodes() {
    bounded(LIMIT, async {
        let mut cluster = bare()
            .args(["--json", "dev-cluster", "--nodes", "3"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(cluster.stdout.take().unwrap()).lines();
        let first = lines.next_line().await.unwrap().expect("the node list");
        let started: Value = serde_json::from_str(&first).unwrap();
        let urls: Vec<String> = serde_json::from_value(started["nodes"].clone()).unwrap();
        assert_eq!(urls.len(), 3);

        let output = run(bare()
            .env(
                "FENCELOCK_NODES",
                started["env"]["FENCELOCK_NODES"].as_str().unwrap(),
            )
            .args(["exec", "--key", "dev", "--", "true"]))
        .await;
        assert_eq!(code(&output), 0, "{}", stderr(&output));

        kill(Pid::from_raw(cluster.id().unwrap() as i32), Signal::SIGTERM).unwrap();
        let output = cluster.wait_with_output().await.unwrap();
        assert_eq!(code(&output), 0, "{}", stderr(&output));
        for url in urls {
            let addr = url.strip_prefix("redis://").unwrap();
            assert!(
                std::net::TcpStream::connect(addr).is_err(),
                "{addr} still answers"
            );
        }
    })
    .await;
}

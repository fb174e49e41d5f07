//! `FencedStore`: a Redis-side check-and-set on fencing tokens, against a
//! real redis-server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::{bounded, conn, short_ttl_options};
use fencelock::deadpool_redis::redis;
use fencelock::testing::RedisServer;
use fencelock::{
    Error, Fenced, FencedRead, FencedStore, FencedWrite, FencingToken, Locker, MAX_KEY_LEN,
    MAX_PREFIX_LEN, NodeFault, Owner,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const LIMIT: Duration = Duration::from_secs(60);

fn t(value: u64) -> FencingToken {
    FencingToken::new(value)
}

fn server() -> RedisServer {
    RedisServer::start().expect("start redis-server (run scripts/setup)")
}

fn store(server: &RedisServer) -> FencedStore {
    FencedStore::from_url(&server.url()).unwrap()
}

async fn read(store: &FencedStore, resource: &str) -> Option<(u64, String)> {
    store
        .read(resource)
        .await
        .unwrap()
        .map(|Fenced { fence, value, .. }| (fence.get(), String::from_utf8(value).unwrap()))
}

#[tokio::test]
async fn higher_and_equal_tokens_are_accepted_lower_ones_rejected() {
    let server = server();
    let store = store(&server);
    bounded(LIMIT, async {
        assert_eq!(read(&store, "r").await, None);
        for (token, value) in [(1, "a"), (2, "b"), (2, "b again"), (7, "c")] {
            let written = store.write("r", t(token), value).await.unwrap();
            assert_eq!(written, FencedWrite::Accepted, "token {token}");
            assert_eq!(read(&store, "r").await, Some((token, value.to_owned())));
        }
        for stale in [6, 1, 0] {
            let written = store.write("r", t(stale), "stale").await.unwrap();
            assert_eq!(written, FencedWrite::Rejected { highest_seen: t(7) });
            assert!(!written.is_accepted());
        }
        // Nothing of the rejected writes reached the data.
        assert_eq!(read(&store, "r").await, Some((7, "c".to_owned())));
        // Another resource has a fence of its own.
        assert!(store.write("other", t(1), "x").await.unwrap().is_accepted());
    })
    .await;
}

#[tokio::test]
async fn tokens_compare_exactly_beyond_float_precision() {
    // Lua numbers are doubles: 2^53 + 1 and 2^53 are equal as doubles.
    let server = server();
    let store = store(&server);
    bounded(LIMIT, async {
        let big = 1u64 << 53;
        assert!(
            store
                .write("big", t(big + 1), "new")
                .await
                .unwrap()
                .is_accepted()
        );
        assert_eq!(
            store.write("big", t(big), "old").await.unwrap(),
            FencedWrite::Rejected {
                highest_seen: t(big + 1)
            }
        );
        assert!(
            store
                .write("big", t(u64::MAX), "max")
                .await
                .unwrap()
                .is_accepted()
        );
        assert_eq!(
            read(&store, "big").await,
            Some((u64::MAX, "max".to_owned()))
        );
        assert!(
            !store
                .write("big", t(u64::MAX - 1), "x")
                .await
                .unwrap()
                .is_accepted()
        );
    })
    .await;
}

#[tokio::test]
async fn a_holder_paused_past_its_ttl_is_fenced_off() {
    let server = server();
    let store = store(&server);
    // Short ttl, no watchdog: the old holder's lock runs out while it "sleeps".
    let locker = Locker::redis([server.url()])
        .unwrap()
        .with_options(short_ttl_options())
        .unwrap();
    bounded(LIMIT, async {
        let old = locker.try_lock("job").await.unwrap();
        assert!(
            store
                .write("job:state", old.token(), "old 1")
                .await
                .unwrap()
                .is_accepted()
        );

        // The new holder waits for the old lock to run out (the Locker tries
        // again right at the expiry the node reports), then writes.
        let other = locker.with_owner(Owner::random());
        let new = other
            .lock_timeout("job", Duration::from_secs(10))
            .await
            .unwrap();
        assert!(new.token() > old.token());
        assert!(
            store
                .write("job:state", new.token(), "new")
                .await
                .unwrap()
                .is_accepted()
        );

        // The old holder wakes up and writes: refused, naming the new token.
        assert_eq!(
            store
                .write("job:state", old.token(), "old 2")
                .await
                .unwrap(),
            FencedWrite::Rejected {
                highest_seen: new.token()
            }
        );
        assert_eq!(
            read(&store, "job:state").await,
            Some((new.token().get(), "new".to_owned()))
        );
        let late = old.release().await;
        assert!(matches!(late, Err(Error::NotHeld { .. })), "{late:?}");
        new.release().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn odd_resource_names_are_kept_apart() {
    let server = server();
    let store = store(&server);
    let longest = "n".repeat(MAX_KEY_LEN);
    let names = [
        "plain",
        "{braces}",
        "}{",
        "a}b{c",
        "glob*?[x]",
        "with space\tand\nnewline",
        "ünïcødé ✓",
        "ends:fence",
        "\\",
        "'; DROP TABLE x; --",
        "return redis.call('FLUSHALL')",
        longest.as_str(),
    ];
    bounded(LIMIT, async {
        for (i, name) in names.iter().enumerate() {
            let written = store.write(name, t(10 + i as u64), *name).await.unwrap();
            assert!(written.is_accepted(), "{name:?}");
        }
        for (i, name) in names.iter().enumerate() {
            assert_eq!(
                read(&store, name).await,
                Some((10 + i as u64, (*name).to_owned())),
                "{name:?}"
            );
            assert!(
                !store
                    .write(name, t(9), "stale")
                    .await
                    .unwrap()
                    .is_accepted()
            );
        }
        // One hash per name, where redis_key says.
        let mut c = conn(&server.url()).await;
        for name in names {
            let kind: String = redis::cmd("TYPE")
                .arg(store.redis_key(name))
                .query_async(&mut c)
                .await
                .unwrap();
            assert_eq!(kind, "hash", "{name:?}");
        }
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(keys.len(), names.len(), "{keys:?}");
    })
    .await;
}

#[tokio::test]
async fn bad_input_is_rejected_before_any_io() {
    // Nothing listens here: reaching the network would be a connection error.
    let store = FencedStore::from_url("redis://127.0.0.1:1").unwrap();
    let long = "k".repeat(MAX_KEY_LEN + 1);
    bounded(LIMIT, async {
        for name in ["", long.as_str()] {
            let write = store.write(name, t(1), "v").await;
            assert!(matches!(write, Err(Error::InvalidKey(_))), "{write:?}");
            let read = store.read(name).await;
            assert!(matches!(read, Err(Error::InvalidKey(_))), "{read:?}");
        }
    })
    .await;
    let prefix = store.clone().with_prefix("p".repeat(MAX_PREFIX_LEN + 1));
    assert!(
        matches!(prefix, Err(Error::InvalidOptions(_))),
        "{prefix:?}"
    );
    let timeout = store.clone().with_timeout(Duration::ZERO);
    assert!(
        matches!(timeout, Err(Error::InvalidOptions(_))),
        "{timeout:?}"
    );
    let url = FencedStore::from_url("http://127.0.0.1:6379");
    assert!(matches!(url, Err(Error::InvalidOptions(_))), "{url:?}");
}

#[tokio::test]
async fn an_unreachable_store_is_a_one_node_outage() {
    let store = FencedStore::from_url("redis://127.0.0.1:1")
        .unwrap()
        .with_timeout(Duration::from_millis(500))
        .unwrap();
    let err = bounded(LIMIT, store.write("r", t(1), "v"))
        .await
        .unwrap_err();
    let Error::QuorumUnavailable {
        confirmed: 0,
        refused: 0,
        needed: 1,
        failures,
    } = &err
    else {
        panic!("expected a one-node outage, got {err:?}");
    };
    assert_eq!(failures[0].node, "127.0.0.1:1");
}

#[tokio::test]
async fn data_of_another_kind_is_a_typed_error_and_left_alone() {
    let server = server();
    let store = store(&server);
    let mut c = conn(&server.url()).await;
    let set = |key: String, cmd: &'static str, args: &'static [&'static str]| {
        let mut cmd = redis::cmd(cmd);
        cmd.arg(key).arg(args);
        cmd
    };
    let cases = [
        (
            "string",
            set(store.redis_key("string"), "SET", &["x"]),
            "WRONGTYPE",
        ),
        (
            "list",
            set(store.redis_key("list"), "RPUSH", &["x"]),
            "WRONGTYPE",
        ),
        (
            "foreign hash",
            set(store.redis_key("foreign hash"), "HSET", &["a", "b"]),
            "without a valid fence",
        ),
        (
            "bad fence",
            set(
                store.redis_key("bad fence"),
                "HSET",
                &["fence", "01", "value", "v"],
            ),
            "without a valid fence",
        ),
    ];
    bounded(LIMIT, async {
        for (name, setup, needle) in cases {
            let () = setup.query_async(&mut c).await.unwrap();
            let dump = |c: &mut redis::aio::MultiplexedConnection| {
                let mut cmd = redis::cmd("DUMP");
                cmd.arg(store.redis_key(name));
                let mut c = c.clone();
                async move { cmd.query_async::<Vec<u8>>(&mut c).await.unwrap() }
            };
            let before = dump(&mut c).await;
            let err = store.write(name, t(5), "v").await.unwrap_err();
            let Error::QuorumUnavailable { failures, .. } = &err else {
                panic!("{name}: expected a node failure, got {err:?}");
            };
            assert!(
                matches!(&failures[0].fault, NodeFault::Server(m) if m.contains(needle)),
                "{name}: {err}"
            );
            if needle == "WRONGTYPE" {
                let read = store.read(name).await.unwrap_err();
                assert!(read.to_string().contains("WRONGTYPE"), "{name}: {read}");
            }
            assert_eq!(dump(&mut c).await, before, "{name}: the data was changed");
        }
    })
    .await;
}

/// A sequence of writes with random tokens: the stored fence is always the
/// running maximum, and exactly the writes at or above it are accepted.
#[test]
fn the_fence_is_the_running_maximum() {
    let server = server();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = store(&server);
    let resource = AtomicUsize::new(0);
    let token = prop_oneof![
        4 => 0u64..16,
        1 => (u64::MAX - 3)..=u64::MAX,
        1 => any::<u64>(),
    ];
    let mut runner = TestRunner::new(Config {
        cases: 48,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec(token, 1..24), |tokens| {
            let name = format!("p{}", resource.fetch_add(1, Ordering::Relaxed));
            runtime.block_on(bounded(LIMIT, async {
                let mut max: Option<u64> = None;
                let mut last = None;
                for (i, &token) in tokens.iter().enumerate() {
                    let value = format!("w{i}");
                    let written = store.write(&name, t(token), &value).await.unwrap();
                    let admitted = max.is_none_or(|m| token >= m);
                    prop_assert_eq!(written.is_accepted(), admitted, "token {}", token);
                    if let FencedWrite::Rejected { highest_seen } = written {
                        prop_assert_eq!(Some(highest_seen.get()), max);
                    }
                    if admitted {
                        max = Some(token);
                        last = Some(value);
                    }
                    let stored = read(&store, &name).await;
                    prop_assert_eq!(stored, max.zip(last.clone()));
                }
                Ok(())
            }))
        })
        .unwrap();
}

/// The read-write rule at the resource (docs/algorithm.md, section 12),
/// with tokens from a real read-write lock: a writer handed out before a
/// reader cannot write after the reader read, and a reader handed out
/// before a writer cannot read after the writer wrote.
#[tokio::test]
async fn fenced_reads_and_writes_turn_away_stale_holders() {
    let server = server();
    let store = store(&server);
    let locker = Locker::redis([server.url().as_str()]).unwrap();
    bounded(LIMIT, async {
        // Nothing written: a read is current and still raises the fence.
        let old_writer = locker.try_write("ledger").await.unwrap().token();
        // (its guard is dropped: a holder that paused past its ttl)
        locker.settled().await;
        let reader = locker.try_read("ledger").await.unwrap();
        assert!(reader.token() > old_writer);
        assert_eq!(
            store.read_fenced("ledger", reader.token()).await.unwrap(),
            FencedRead::Accepted(None)
        );
        // The old writer comes back: its write would land after the read.
        let stale = store.write("ledger", old_writer, "late").await.unwrap();
        assert_eq!(
            stale,
            FencedWrite::Rejected {
                highest_seen: reader.token()
            }
        );
        reader.release().await.unwrap();

        // A reader handed out before a writer cannot read after its write.
        let early_reader = locker.try_read("ledger").await.unwrap();
        let early = early_reader.token();
        drop(early_reader);
        locker.settled().await;
        let writer = locker.try_write("ledger").await.unwrap();
        assert!(writer.token() > early);
        assert!(
            store
                .write("ledger", writer.token(), "v1")
                .await
                .unwrap()
                .is_accepted()
        );
        writer.release().await.unwrap();
        assert_eq!(
            store.read_fenced("ledger", early).await.unwrap(),
            FencedRead::Rejected {
                highest_write: t(read(&store, "ledger").await.unwrap().0)
            }
        );

        // Readers side by side, in any order of their tokens, both read
        // what the writer wrote, and raise the fence past it.
        let (a, b) = (
            locker.try_read("ledger").await.unwrap(),
            Locker::redis([server.url().as_str()])
                .unwrap()
                .try_read("ledger")
                .await
                .unwrap(),
        );
        for reader in [&b, &a] {
            match store.read_fenced("ledger", reader.token()).await.unwrap() {
                FencedRead::Accepted(Some(Fenced { value, .. })) => assert_eq!(value, b"v1"),
                other => panic!("{other:?}"),
            }
        }
        a.release().await.unwrap();
        b.release().await.unwrap();
    })
    .await;
}

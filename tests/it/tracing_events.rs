//! What fencelock tells a `tracing` subscriber (docs/metrics.md,
//! "Tracing"): a span per acquire, extend, release and renewal, and events
//! for node faults and lost locks, but never a secret. Owner ids and hold
//! ids let whoever knows them extend and release the locks they name, and
//! a node URL's password opens the node: none of them may reach a log.
//!
//! The subscriber captures everything, at TRACE, from every crate, into a
//! buffer. It is installed for the test's thread only (`set_default`), and
//! the test runs on a current-thread runtime, so every task of the test
//! (the watchdog, a dropped guard's release, the undo of a refused
//! acquire) reports to it, and no other test's output mixes in.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fencelock::testing::RedisServer;
use fencelock::{Error, LockOptions, Locker, Owner, Redlock, Watchdog};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::FmtSpan;

const LIMIT: Duration = Duration::from_secs(60);
const PASSWORD: &str = "tracing-password-5f3a9c71e2";
const WRONG_PASSWORD: &str = "not-the-password-0b7e21d4c8";

/// Everything the subscriber wrote.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// A subscriber for this thread that writes every span (as it opens and,
/// with the fields recorded since, as it closes) and every event.
pub fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    // `tracing` caches, per callsite and for the whole process, whether any
    // subscriber wants it, computed on the thread that reaches it first.
    // While only one subscriber exists (this thread's), it asks that
    // thread's own default: another test's thread, which has none, caches
    // "never", and a span this test needs (the release of a dropped guard,
    // first reached by a test running beside it) is never made for anyone.
    // With a second, global subscriber, every callsite asks all of them.
    // It is the no-op one, so other tests' spans still cost nothing.
    let _ = tracing::subscriber::set_global_default(tracing::subscriber::NoSubscriber::default());
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(FmtSpan::NEW | FmtSpan::CLOSE)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    // Callsites first reached before this subscriber existed.
    tracing::callsite::rebuild_interest_cache();
    (captured, guard)
}

/// A server whose user `alice` has a password and the lock keys.
fn server() -> RedisServer {
    let mut builder = RedisServer::builder();
    let password = format!(">{PASSWORD}");
    for arg in [
        "--user",
        "alice",
        "on",
        password.as_str(),
        "~fencelock:*",
        "&*",
        "+@all",
    ] {
        builder = builder.arg(arg);
    }
    builder
        .start()
        .expect("start redis-server (run scripts/setup)")
}

fn locker(url: &str) -> Locker<Redlock> {
    // Short enough for the watchdog to renew within the test.
    let options = LockOptions::default()
        .ttl(Duration::from_secs(1))
        .node_timeout(Duration::from_millis(200))
        .watchdog(Watchdog::Every(Duration::from_millis(200)));
    Locker::new(Redlock::from_urls([url]).unwrap(), options).unwrap()
}

/// The hold id inside a hand-off's text form
/// (`fencelock-handoff/2 <kind> <token> <hold id> <owner> <key>`).
fn hold_id(handoff: &fencelock::Handoff) -> String {
    handoff.to_string().split(' ').nth(3).unwrap().to_owned()
}

#[tokio::test]
async fn spans_and_events_tell_what_happened_and_never_a_secret() {
    let server = server();
    let (captured, _subscriber) = capture();
    let url = format!("redis://alice:{PASSWORD}@{}", server.addr());
    let (mine, theirs) = (Owner::random(), Owner::random());
    let me = locker(&url).with_owner(mine.clone());
    let them = locker(&url).with_owner(theirs.clone());
    let wrong = locker(&format!("redis://alice:{WRONG_PASSWORD}@{}", server.addr()))
        .with_owner(mine.clone());

    let hold = tokio::time::timeout(LIMIT, async {
        // A hold whose id the test knows: taken, handed off, adopted back.
        let handoff = me.lock("traced").await.unwrap().hand_off();
        let hold = hold_id(&handoff);
        let guard = me.adopt(&handoff).await.unwrap();
        guard.extend(Duration::from_secs(1)).await.unwrap();
        let nested = me.try_lock("traced").await.unwrap();
        // Refused, and undone on the node.
        let refused = them.try_lock("traced").await;
        assert!(
            matches!(refused, Err(Error::NotObtained { .. })),
            "{refused:?}"
        );
        // Long enough for the watchdog to renew.
        tokio::time::sleep(Duration::from_millis(700)).await;
        nested.release().await.unwrap();
        // Released in the background.
        drop(guard);
        me.settled().await;

        // A lock removed behind its holder's back: lost at the next extend.
        let lost = me.lock_timeout("lost", LIMIT).await.unwrap();
        them.force_release("lost").await.unwrap();
        assert!(lost.extend(Duration::from_secs(1)).await.is_err());
        assert!(lost.release().await.is_err());

        // A node that refuses the password: a node fault.
        let denied = wrong.try_lock("traced").await.unwrap_err();
        assert!(denied.is_denied(), "{denied:?}");
        me.settled().await;
        hold
    })
    .await
    .expect("the test finished in time");

    let text = captured.text();
    for expected in [
        "acquire",
        "call=\"lock\"",
        "call=\"adopt\"",
        "call=\"try_lock\"",
        "call=\"lock_timeout\"",
        "nested=true",
        "outcome=\"acquired\"",
        "outcome=\"contended\"",
        "extend",
        "outcome=\"extended\"",
        "renew",
        "outcome=\"renewed\"",
        "release",
        "call=\"drop\"",
        "outcome=\"released\"",
        "lock handed off",
        "lock lost",
        "node request failed",
        "refused this client",
        "key=\"traced\"",
    ] {
        assert!(
            text.contains(expected),
            "the trace lacks {expected:?}:\n{text}"
        );
    }
    for (what, secret) in [
        ("my owner id", mine.to_string()),
        ("their owner id", theirs.to_string()),
        ("the hold id", hold),
        ("the password", PASSWORD.to_owned()),
        ("the wrong password", WRONG_PASSWORD.to_owned()),
    ] {
        assert!(
            !text.contains(&secret),
            "the trace shows {what} ({secret}):\n{text}"
        );
    }
}

/// A Locker that takes and frees locks one after another keeps one
/// renewer task, told at DEBUG as it starts: the task lingers for more
/// holds rather than end with each release and start with each acquire
/// (a task spawned, and another worker woken, on every uncontended
/// round). Runs on the current-thread runtime, where the ended task had
/// always run before the next acquire.
#[tokio::test]
async fn locks_taken_one_after_another_share_one_renewer_task() {
    let server = RedisServer::start().expect("start redis-server (run scripts/setup)");
    let (captured, _subscriber) = capture();
    let locker = Locker::new(
        Redlock::from_urls([server.url()]).unwrap(),
        LockOptions::default(),
    )
    .unwrap();
    tokio::time::timeout(LIMIT, async {
        for _ in 0..100 {
            locker
                .try_lock("looped")
                .await
                .unwrap()
                .release()
                .await
                .unwrap();
        }
    })
    .await
    .expect("100 rounds within the limit");
    let started = captured
        .text()
        .matches("watchdog renewer task started")
        .count();
    assert_eq!(started, 1, "renewer tasks started for 100 rounds");
}

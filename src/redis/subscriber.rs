//! Release notifications over Redis pub/sub.
//!
//! The release and force-release scripts publish on `<lock key>:released`
//! when they free a lock. Each node gets one subscriber connection per
//! [`Redlock`](crate::Redlock), owned by a background task, that carries
//! every channel this process waits on: waiters register interest in a
//! shared table, the task subscribes and unsubscribes to match it, and a
//! message bumps the channel's [`Signal`]. The last waiter of a channel to
//! leave ends its subscription, so waiters that give up leave nothing behind.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::{mpsc, watch};

use crate::backend::{ReleaseWatch, Signal};

/// Bounds connecting and each (un)subscribe round trip of a listener.
const LISTENER_TIMEOUT: Duration = Duration::from_secs(1);
/// The first pause before reconnecting a listener; it doubles up to the max.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How often an idle subscriber connection is checked with a PING: a
/// connection that died silently would otherwise count as listening.
const KEEPALIVE: Duration = Duration::from_secs(10);
/// How many times in a row this process may tell a channel's waiters to
/// try again soon without a release heard in between (see
/// [`Subscriptions::news_soon`]).
const MAX_EARLY: u32 = 8;

/// The channel on which a lock's release is announced (the scripts derive
/// the same name from the lock key).
pub(crate) fn channel_of(lock_key: &str) -> String {
    format!("{lock_key}:released")
}

/// The subscriptions of one Redlock: a table of channels with waiters, and
/// one listener task per node that has a client for pub/sub.
pub(crate) struct Subscriptions {
    table: Arc<Table>,
    clients: Vec<redis::Client>,
    /// Started on first use, inside the runtime; dropping them (with the
    /// Redlock) ends the listener tasks.
    nudges: Mutex<Option<Arc<[mpsc::UnboundedSender<()>]>>>,
}

impl std::fmt::Debug for Subscriptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriptions")
            .field("nodes", &self.clients.len())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Table {
    channels: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    /// Live subscriptions (each shared by the clones of one watch).
    waiters: usize,
    /// Tells a recreated entry from the one a listener confirmed.
    id: u64,
    signal: watch::Sender<Signal>,
    /// Early news given since the last release heard on the channel.
    early: u32,
}

impl Table {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        crate::sync::lock(&self.channels)
    }

    /// The wanted channels and the entry ids to confirm them for.
    fn wanted(&self) -> HashMap<String, u64> {
        self.lock()
            .iter()
            .map(|(channel, entry)| (channel.clone(), entry.id))
            .collect()
    }

    fn update(&self, channel: &str, id: Option<u64>, change: impl FnOnce(&mut Signal)) {
        if let Some(entry) = self.lock().get(channel)
            && id.is_none_or(|id| id == entry.id)
        {
            entry.signal.send_modify(change);
        }
    }

    /// A release heard on `channel`.
    fn heard(&self, channel: &str) {
        if let Some(entry) = self.lock().get_mut(channel) {
            entry.early = 0;
            entry.signal.send_modify(|s| s.releases += 1);
        }
    }
}

impl Subscriptions {
    /// Subscriptions over the nodes that have a client for pub/sub.
    pub(crate) fn new(clients: Vec<redis::Client>) -> Self {
        Self {
            table: Arc::default(),
            clients,
            nudges: Mutex::new(None),
        }
    }

    /// A watch on `channel`, or `None` when no node can notify. It counts as
    /// in place once `enough` nodes (at most those that can notify)
    /// confirmed.
    pub(crate) fn watch(&self, channel: String, enough: usize) -> Option<ReleaseWatch> {
        if self.clients.is_empty() {
            return None;
        }
        let nudges = self.listeners();
        let (rx, id, created) = {
            let mut channels = self.table.lock();
            let created = !channels.contains_key(&channel);
            let entry = channels.entry(channel.clone()).or_insert_with(|| Entry {
                waiters: 0,
                id: rand::random(),
                signal: watch::Sender::new(Signal::default()),
                early: 0,
            });
            entry.waiters += 1;
            (entry.signal.subscribe(), entry.id, created)
        };
        if created {
            nudge(&nudges);
        }
        let interest = Interest {
            table: Arc::clone(&self.table),
            channel,
            id,
            nudges,
        };
        let enough = u32::try_from(enough.min(self.clients.len())).unwrap_or(u32::MAX);
        Some(ReleaseWatch::new(rx, interest).in_place_with(enough))
    }

    /// Tells the waiters of `channel` in this process, `after` from now,
    /// that the lock may be free, as if a release had been heard: for a
    /// round that some nodes granted but too few, whose undo (and the
    /// other contenders' undos) no node announces. At most [`MAX_EARLY`]
    /// times until a release is heard on the channel: nodes that keep a
    /// holder's copy for good (one that crashed half-way through its
    /// release, or holds on a bare quorum after others lost their data)
    /// would otherwise have waiters try again every few milliseconds until
    /// the copy expires, instead of after each retry delay.
    pub(crate) fn news_soon(&self, channel: &str, after: Duration) {
        let id = {
            let mut channels = self.table.lock();
            let Some(entry) = channels.get_mut(channel) else {
                return;
            };
            if entry.early >= MAX_EARLY {
                return;
            }
            entry.early += 1;
            entry.id
        };
        let (table, channel) = (Arc::clone(&self.table), channel.to_owned());
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            table.update(&channel, Some(id), |s| s.releases += 1);
        });
    }

    /// The listener tasks' nudge senders, starting the tasks if they are not
    /// running: on first use, and again when the runtime they ran on has
    /// ended (a Redlock can outlive a runtime, as across tests).
    fn listeners(&self) -> Arc<[mpsc::UnboundedSender<()>]> {
        let mut nudges = crate::sync::lock(&self.nudges);
        match &*nudges {
            Some(running) if !running.iter().any(|tx| tx.is_closed()) => Arc::clone(running),
            _ => {
                let started = self.start();
                *nudges = Some(Arc::clone(&started));
                started
            }
        }
    }

    fn start(&self) -> Arc<[mpsc::UnboundedSender<()>]> {
        self.clients
            .iter()
            .map(|client| {
                let (tx, rx) = mpsc::unbounded_channel();
                let listener = Listener {
                    client: client.clone(),
                    table: Arc::clone(&self.table),
                    nudges: rx,
                    current: HashMap::new(),
                    missed: HashSet::new(),
                };
                tokio::spawn(listener.run());
                tx
            })
            .collect()
    }
}

fn nudge(nudges: &[mpsc::UnboundedSender<()>]) {
    for tx in nudges {
        // A listener that ended has nothing left to update.
        let _ = tx.send(());
    }
}

/// One waiter's registration on a channel; dropping it may end the
/// subscription.
struct Interest {
    table: Arc<Table>,
    channel: String,
    id: u64,
    nudges: Arc<[mpsc::UnboundedSender<()>]>,
}

impl Drop for Interest {
    fn drop(&mut self) {
        let mut channels = self.table.lock();
        let Some(entry) = channels.get_mut(&self.channel) else {
            return;
        };
        if entry.id != self.id {
            return;
        }
        entry.waiters -= 1;
        if entry.waiters == 0 {
            channels.remove(&self.channel);
            drop(channels);
            nudge(&self.nudges);
        }
    }
}

/// The task that keeps one node's subscriber connection in line with the
/// table.
struct Listener {
    client: redis::Client,
    table: Arc<Table>,
    nudges: mpsc::UnboundedReceiver<()>,
    /// Channels subscribed on the current connection, with the entry id
    /// they were confirmed for.
    current: HashMap<String, u64>,
    /// Channels that were subscribed when the connection broke: what was
    /// published on them until they are subscribed again went unheard.
    missed: HashSet<String>,
}

/// Why a listener's connection loop ended.
enum Ended {
    /// The Redlock is gone: stop.
    Closed,
    /// The connection failed (`was_up`: after it had been set up):
    /// reconnect.
    Broken { was_up: bool },
}

impl Listener {
    async fn run(mut self) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            match self.connected().await {
                Ended::Closed => return,
                // It worked for a while: the next break starts over.
                Ended::Broken { was_up: true } => backoff = FIRST_BACKOFF,
                Ended::Broken { was_up: false } => {}
            }
            for (channel, id) in self.current.drain() {
                self.table.update(&channel, Some(id), |s| {
                    s.listening = s.listening.saturating_sub(1);
                });
                self.missed.insert(channel);
            }
            if self.pause(backoff).await.is_err() {
                return;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Sleeps `how_long` unless the Redlock goes away first (`Err`).
    async fn pause(&mut self, how_long: Duration) -> Result<(), ()> {
        let sleep = tokio::time::sleep(how_long);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return Ok(()),
                nudge = self.nudges.recv() => if nudge.is_none() { return Err(()) },
            }
        }
    }

    async fn connected(&mut self) -> Ended {
        let pubsub =
            match tokio::time::timeout(LISTENER_TIMEOUT, self.client.get_async_pubsub()).await {
                Ok(Ok(pubsub)) => pubsub,
                _ => return Ended::Broken { was_up: false },
            };
        let (mut sink, mut stream): (PubSubSink, PubSubStream) = pubsub.split();
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.tick().await;
        let mut was_up = false;
        loop {
            if self.reconcile(&mut sink).await.is_err() {
                return Ended::Broken { was_up };
            }
            was_up = true;
            tokio::select! {
                nudge = self.nudges.recv() => {
                    if nudge.is_none() {
                        return Ended::Closed;
                    }
                    // Many nudges, one reconcile.
                    while self.nudges.try_recv().is_ok() {}
                }
                message = stream.next() => match message {
                    Some(message) => {
                        self.table.heard(message.get_channel_name());
                    }
                    None => return Ended::Broken { was_up },
                },
                _ = keepalive.tick() => {
                    let ping = async { sink.ping::<redis::Value>().await.map(|_| ()) };
                    if bounded(ping).await.is_err() {
                        return Ended::Broken { was_up };
                    }
                }
            }
        }
    }

    /// Subscribes to the channels the table wants and this connection lacks,
    /// and unsubscribes from those nobody waits on any more.
    async fn reconcile(&mut self, sink: &mut PubSubSink) -> Result<(), ()> {
        let wanted = self.table.wanted();
        self.missed.retain(|channel| wanted.contains_key(channel));
        let mut subscribe = Vec::new();
        for (channel, &id) in &wanted {
            match self.current.get(channel) {
                Some(&have) if have == id => {}
                // Subscribed already, for an entry that was since recreated.
                Some(_) => self.confirm(channel, id),
                None => subscribe.push(channel.clone()),
            }
        }
        let unsubscribe: Vec<String> = self
            .current
            .keys()
            .filter(|c| !wanted.contains_key(*c))
            .cloned()
            .collect();
        if !unsubscribe.is_empty() {
            bounded(sink.unsubscribe(&unsubscribe)).await?;
            for channel in &unsubscribe {
                self.current.remove(channel);
            }
        }
        if !subscribe.is_empty() {
            if bounded(sink.subscribe(&subscribe)).await.is_err() {
                // Perhaps subscribed before the break: a release meanwhile
                // went unheard, so their waiters are woken once subscribed.
                self.missed.extend(subscribe);
                return Err(());
            }
            for channel in &subscribe {
                self.confirm(channel, wanted[channel]);
            }
        }
        Ok(())
    }

    fn confirm(&mut self, channel: &str, id: u64) {
        self.current.insert(channel.to_owned(), id);
        // Back after a break: whatever was published meanwhile went
        // unheard, so wake the waiters to look for themselves.
        let missed = u64::from(self.missed.remove(channel));
        self.table.update(channel, Some(id), |s| {
            s.listening += 1;
            s.releases += missed;
        });
    }
}

async fn bounded(request: impl Future<Output = redis::RedisResult<()>>) -> Result<(), ()> {
    match tokio::time::timeout(LISTENER_TIMEOUT, request).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

//! The fair queue: waiters of a lock line up by create revision and each
//! watches only its predecessor.
//!
//! A waiter's place is a ticket key under the lock's range, on a lease of
//! its own that a background task keeps alive; the ticket's value is the
//! waiting owner. The task watches the newest ticket created before its
//! own and, once there is none (this waiter is first), the holder keys.
//! When the waiter is first and the lock is free, it is told, and tries
//! [`try_acquire`](crate::Backend::try_acquire) again; a try at any other
//! moment would be refused, so it is not woken for less. `try_acquire` grants
//! a first hold while others queue only to the owner of the oldest ticket,
//! and deletes that ticket in the same transaction; so the lock goes in
//! queue order, across processes and within one.
//!
//! The ticket belongs to the [`ReleaseWatch`], not to an acquire attempt: a
//! failed `try_acquire` leaves nothing behind, as the trait requires, and
//! the ticket goes when the waiter stops waiting (the watch is dropped: the
//! task ends and revokes the lease) or dies (the lease runs out).
//!
//! Readers, writers and permits queue in the same line, by the rules of
//! etcd's read-write mutex recipe (see `kinds.rs`): a ticket's name tells
//! its kind (`t/r…`, `t/w…`, `t/p…`; `t/<hex>` for the exclusive lock). A
//! reader counts only the writers' tickets ahead of it, and once none is
//! left, only write holds; a writer counts every ticket ahead, then every
//! holder. Both watch the nearest ticket that counts, then the holders
//! that count, and look at their place again at each departure. A permit
//! waits for fewer tickets ahead of it than slots are free; every
//! departure under the resource may change that, so it watches them all
//! and looks again, but is told only when its turn has come: a released
//! permit lets in the next waiter, not all of them.
//!
//! A waiter keeps its place through short outages: the task renews the
//! lease until it has certainly run out, and a broken watch is opened
//! again. Only a ticket that is gone (its lease ran out, or a grant used
//! it) is replaced, at the back of the queue.

use std::time::Duration;

use etcd_client::{
    Compare, CompareOp, EventType, GetOptions, LeaseKeepAliveStream, LeaseKeeper, PutOptions,
    SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse, WatchFilterType, WatchOptions, WatchStream,
};
use tokio::sync::watch;
use tokio::time::Instant;

use super::Etcd;
use super::keys::LockKeys;
use super::lease::{RevokeOnDrop, lease_not_found, lease_secs};
use super::tickets::{Entry, Registered};
use crate::backend::{Mode, ReleaseWatch, Signal};
use crate::error::{Error, NodeFault, Result};
use crate::options::LockOptions;

/// The longest a ticket outlives a waiter that died without revoking it:
/// tickets hold up the queue, so theirs is shorter than most lock ttls.
const MAX_TICKET_TTL: Duration = Duration::from_secs(5);

/// The pause after a failed request before the next, so that an outage
/// costs a waiter a few requests a second rather than a spin.
const PAUSE: Duration = Duration::from_millis(100);

/// Joins the queue of `keys` for `owner` in the background; the watch
/// fires on news.
pub(crate) fn line_up(
    etcd: Etcd,
    keys: LockKeys,
    owner: &str,
    mode: Mode,
    options: &LockOptions,
) -> ReleaseWatch {
    let (signal, watch) = watch::channel(Signal::default());
    let waiter = Waiter {
        etcd,
        keys,
        owner: owner.to_owned(),
        mode,
        ttl: options.ttl.min(MAX_TICKET_TTL),
        timeout: options.node_timeout,
        signal,
    };
    // The waiting ends when the last clone of the watch is dropped: the
    // handle aborts the task. The task owns its ticket, so dropping its
    // future revokes the ticket's lease whatever the task was doing at that
    // moment; until that revoke is done, the backend's `settled` waits.
    let background = waiter.etcd.background.clone();
    ReleaseWatch::new(watch, background.spawn_owned(waiter.wait()))
}

/// One waiter in the queue.
struct Waiter {
    etcd: Etcd,
    keys: LockKeys,
    owner: String,
    /// What it waits for: which tickets and holders keep it waiting.
    mode: Mode,
    ttl: Duration,
    timeout: Duration,
    signal: watch::Sender<Signal>,
}

/// A ticket in the queue. Dropping it revokes its lease, which deletes it.
struct Ticket {
    key: String,
    /// Its create revision: its place in the queue.
    created: i64,
    lease: i64,
    /// The lease's ttl as granted (etcd may raise the one asked for).
    ttl: Duration,
    /// When the lease was asked for: it runs out no earlier than `ttl`
    /// after this, unless renewed.
    asked: Instant,
    _entry: Entry,
    _revoke: RevokeOnDrop,
}

/// Why a watch of the queue ended.
enum Stop {
    /// The ticket is gone: its lease ran out, or a grant used it.
    TicketGone,
    /// The predecessor left: watch the next one ahead, if any.
    MovedUp,
}

impl Waiter {
    /// Holds a ticket until the task is aborted, taking a new one whenever
    /// the current one is gone.
    async fn wait(self) {
        let mut again = false;
        loop {
            let ticket = match self.take_ticket().await {
                Ok(ticket) => ticket,
                Err(_) => {
                    tokio::time::sleep(PAUSE).await;
                    continue;
                }
            };
            tokio::select! {
                () = self.keep(&ticket) => {}
                () = self.follow(&ticket, again) => {}
            }
            // Without a place, news may go unheard: the waiter hears again
            // once a new ticket is watching.
            self.signal.send_modify(|s| s.listening = 0);
            again = true;
        }
    }

    /// A new ticket at the back of the queue.
    async fn take_ticket(&self) -> Result<Ticket> {
        let etcd = &self.etcd;
        let asked = Instant::now();
        let lease = etcd.grant_lease(lease_secs(self.ttl), self.timeout).await?;
        // From here on every way out, an abort included, ends the lease.
        let revoke = RevokeOnDrop::new(etcd, lease.id(), self.timeout);
        let kind = match self.mode {
            Mode::Exclusive => "",
            Mode::Read => "r",
            Mode::Write => "w",
            Mode::Permit { .. } => "p",
        };
        let key = self
            .keys
            .ticket(&format!("{kind}{:032x}", rand::random::<u128>()));
        // Sent again only when it never left, so this is the put that
        // created the ticket, and its revision the ticket's create revision.
        let put = etcd
            .call_again(self.timeout, || {
                let mut kv = etcd.client.kv_client();
                let options = PutOptions::new().with_lease(lease.id());
                let (key, owner) = (key.clone(), self.owner.clone());
                async move { kv.put(key, owner, Some(options)).await }
            })
            .await?;
        let created = put.header().map_or(0, |h| h.revision());
        let entry = etcd.tickets.register(
            &self.keys,
            &self.owner,
            Registered {
                key: key.clone(),
                created,
            },
        );
        Ok(Ticket {
            created,
            _entry: entry,
            key,
            lease: lease.id(),
            ttl: Duration::from_secs(u64::try_from(lease.ttl()).unwrap_or(1).max(1)),
            asked,
            _revoke: revoke,
        })
    }

    /// Keeps the ticket's lease alive; returns once it has certainly run
    /// out (not renewed within its ttl, or etcd says it is gone). Failed
    /// renewals are tried again until then, so an election or a member's
    /// death does not cost the waiter its place.
    async fn keep(&self, ticket: &Ticket) {
        let every = ticket.ttl / 3;
        let mut confirmed = ticket.asked;
        let mut next = confirmed + every;
        let mut open: Option<(LeaseKeeper, LeaseKeepAliveStream)> = None;
        loop {
            tokio::time::sleep_until(next).await;
            if confirmed.elapsed() >= ticket.ttl {
                return;
            }
            let sent = Instant::now();
            match tokio::time::timeout(self.timeout, self.renew(ticket.lease, &mut open)).await {
                Ok(Ok(true)) => {
                    confirmed = sent;
                    next = sent + every;
                }
                Ok(Ok(false)) => return,
                Ok(Err(_)) | Err(_) => {
                    open = None;
                    next = Instant::now() + PAUSE;
                }
            }
        }
    }

    /// One keep-alive exchange on the stream in `open` (opened here if
    /// need be); whether the lease still lives.
    async fn renew(
        &self,
        lease: i64,
        open: &mut Option<(LeaseKeeper, LeaseKeepAliveStream)>,
    ) -> std::result::Result<bool, etcd_client::Error> {
        let Some((keeper, stream)) = open else {
            // Opening the stream is itself a renewal: the client reads the
            // first answer and fails with "lease not found" when it is gone.
            let mut leases = self.etcd.client.lease_client();
            return match leases.keep_alive(lease).await {
                Ok(pair) => {
                    *open = Some(pair);
                    Ok(true)
                }
                Err(e) if lease_not_found(&e) => Ok(false),
                Err(e) => Err(e),
            };
        };
        keeper.keep_alive().await?;
        match stream.message().await? {
            Some(answer) => Ok(answer.ttl() > 0),
            None => Err(etcd_client::Error::WatchError(
                "the keep-alive stream ended".into(),
            )),
        }
    }

    /// Follows the queue from `ticket` until the ticket is gone, opening
    /// broken watches again. `wake` says the waiter may have missed news
    /// (a new ticket, a watch that broke) and is told once the watch is in
    /// place again.
    async fn follow(&self, ticket: &Ticket, mut wake: bool) {
        loop {
            match self.watch_once(ticket, wake).await {
                Ok(Stop::TicketGone) => return,
                Ok(Stop::MovedUp) => wake = false,
                Err(_) => {
                    self.signal.send_modify(|s| s.listening = 0);
                    wake = true;
                    tokio::time::sleep(PAUSE).await;
                }
            }
        }
    }

    /// Watches who is ahead of the ticket (the newest ticket created before
    /// it, or once first the holder keys) and the ticket itself, and tells
    /// the waiter when its turn comes. Fails when a watch breaks.
    ///
    /// The watches start at the revision they are made at: one asked to
    /// start earlier waits for etcd's catch-up of lagging watchers (every
    /// 100 ms), a delay at every move up the queue. So the place is read,
    /// the watches made, and the place read again: what changed before the
    /// second read is in it, what changed after comes through the watches.
    async fn watch_once(&self, ticket: &Ticket, wake: bool) -> Result<Stop> {
        let Some(place) = self.read_place(ticket).await? else {
            return Ok(Stop::TicketGone);
        };
        let mut ahead_stream = match &place.predecessor {
            Some(key) => {
                self.watch_from_now(key.clone(), WatchOptions::new())
                    .await?
            }
            None => {
                let blockers = self.blockers().into_bytes();
                self.watch_from_now(blockers, WatchOptions::new().with_prefix())
                    .await?
            }
        };
        let own = ticket.key.clone().into_bytes();
        let mut own_stream = self.watch_from_now(own, WatchOptions::new()).await?;
        let Some(now) = self.read_place(ticket).await? else {
            return Ok(Stop::TicketGone);
        };
        if now.predecessor != place.predecessor {
            return Ok(Stop::MovedUp);
        }
        let first = now.predecessor.is_none();
        // The waiter's turn: first with the lock free (for a permit: few
        // enough ahead for the free slots). Any other news (a predecessor
        // leaving, a holder while others wait ahead) would only get a try
        // refused.
        let turn = now.turn;
        self.signal.send_modify(|s| {
            s.listening = 1;
            if wake || turn {
                s.releases += 1;
            }
        });
        loop {
            tokio::select! {
                message = ahead_stream.message() => {
                    if self.deleted(message)? {
                        if !first || self.mode != Mode::Exclusive {
                            // The predecessor left, or one of several that
                            // may keep this waiter out (readers, permits,
                            // tickets ahead of a permit): look again at
                            // what is ahead now.
                            return Ok(Stop::MovedUp);
                        }
                        // First, and the only holder released: the turn.
                        self.signal.send_modify(|s| s.releases += 1);
                    }
                }
                message = own_stream.message() => {
                    if self.deleted(message)? {
                        return Ok(Stop::TicketGone);
                    }
                }
            }
        }
    }

    /// The ticket's place: who is ahead of it and whether the lock is held,
    /// at one revision; `None` when the ticket is gone.
    async fn read_place(&self, ticket: &Ticket) -> Result<Option<Place>> {
        let still_there =
            Compare::create_revision(ticket.key.as_str(), CompareOp::Equal, ticket.created);
        let ahead = GetOptions::new()
            .with_prefix()
            .with_max_create_revision(ticket.created - 1);
        let ahead = match self.mode {
            // How many are ahead, not who: no single predecessor. Counted
            // here from the names: etcd's `count` ignores the revision
            // filter (it counts the whole range).
            Mode::Permit { .. } => ahead.with_keys_only(),
            _ => ahead
                .with_sort(SortTarget::Create, SortOrder::Descend)
                .with_limit(1)
                .with_keys_only(),
        };
        // Readers count only the writers' tickets.
        let tickets = match self.mode {
            Mode::Read => self.keys.write_tickets(),
            _ => self.keys.tickets(),
        };
        let holders = match self.mode {
            Mode::Exclusive => self.keys.holders(),
            Mode::Read => self.keys.writers(),
            Mode::Write => self.keys.all_holders(),
            Mode::Permit { permits } => self.keys.permits_of(permits),
        };
        let count = GetOptions::new().with_prefix().with_count_only();
        let read = Txn::new().when([still_there]).and_then([
            TxnOp::get(tickets, Some(ahead)),
            TxnOp::get(holders, Some(count)),
        ]);
        let reply = self.etcd.txn(read, self.timeout).await?;
        if !reply.succeeded() {
            return Ok(None);
        }
        let mut ranges = reply.op_responses().into_iter().filter_map(|r| match r {
            TxnOpResponse::Get(get) => Some(get),
            _ => None,
        });
        let (Some(mut ahead), Some(holders)) = (ranges.next(), ranges.next()) else {
            return Err(self.broken("a transaction answer without its ranges"));
        };
        let held = holders.count();
        if let Mode::Permit { permits } = self.mode {
            let free = i64::from(permits) - held;
            return Ok(Some(Place {
                predecessor: None,
                turn: i64::try_from(ahead.kvs().len()).unwrap_or(i64::MAX) < free,
            }));
        }
        let predecessor = ahead
            .take_kvs()
            .into_iter()
            .next()
            .map(|kv| kv.key().to_vec());
        Ok(Some(Place {
            turn: predecessor.is_none() && held == 0,
            predecessor,
        }))
    }

    /// A watch of deletions of `key` (with `options`) from the current
    /// revision on, once etcd confirmed it.
    async fn watch_from_now(&self, key: Vec<u8>, options: WatchOptions) -> Result<WatchStream> {
        let etcd = &self.etcd;
        let options = options.with_filters([WatchFilterType::NoPut]);
        let mut stream = etcd
            .call_again(self.timeout, || {
                let mut watcher = etcd.client.watch_client();
                let (key, options) = (key.clone(), options.clone());
                async move { watcher.watch(key, Some(options)).await }
            })
            .await?;
        // Until etcd answers that the watch is made, it sees nothing.
        let created = tokio::time::timeout(self.timeout, stream.message())
            .await
            .map_err(|_| self.broken("no answer to a watch request"))?
            .map_err(|e| self.broken(&e.to_string()))?
            .ok_or_else(|| self.broken("the watch ended"))?;
        if !created.created() || created.canceled() {
            return Err(self.broken(created.cancel_reason()));
        }
        Ok(stream)
    }
}

/// Where a ticket stands in the queue.
struct Place {
    /// The newest ticket created before it that keeps it waiting, if any
    /// (never for a permit).
    predecessor: Option<Vec<u8>>,
    /// Whether an attempt would be granted now.
    turn: bool,
}

impl Waiter {
    /// The prefix whose deletions may let this waiter in once no ticket
    /// that counts is ahead: the holders that keep it out, or, for a
    /// permit, everything of the resource (tickets ahead and permits).
    fn blockers(&self) -> String {
        match self.mode {
            Mode::Exclusive => self.keys.holders(),
            Mode::Read => self.keys.writers(),
            Mode::Write => self.keys.all_holders(),
            Mode::Permit { .. } => self.keys.base.clone(),
        }
    }

    /// Whether a watch message reports a deletion; an error when the watch
    /// broke or was cancelled (by a compaction, say).
    fn deleted(
        &self,
        message: std::result::Result<Option<etcd_client::WatchResponse>, etcd_client::Error>,
    ) -> Result<bool> {
        let message = message
            .map_err(|e| self.broken(&e.to_string()))?
            .ok_or_else(|| self.broken("the watch ended"))?;
        if message.canceled() {
            return Err(self.broken(message.cancel_reason()));
        }
        Ok(message
            .events()
            .iter()
            .any(|e| e.event_type() == EventType::Delete))
    }

    /// An outage of the queue's requests, named like the cluster's others.
    fn broken(&self, why: &str) -> Error {
        self.etcd.unavailable(NodeFault::Connection(why.to_owned()))
    }
}

//! Work left running in the background, counted so that a process can wait
//! for it before it exits ([`Locker::settled`](crate::Locker::settled),
//! [`Backend::settled`](crate::Backend::settled)).
//!
//! Undo never blocks a caller: a dropped guard releases from a task of its
//! own, an etcd lease is revoked from a task, a waiter's queue ticket is
//! revoked when its task is aborted. A short-lived process that returns
//! from `main` right after such a drop shuts its runtime down, and tasks
//! that had not run yet never do: the lock or the ticket then stays on the
//! servers until its ttl, refusing others meanwhile. Counting the tasks
//! lets the process wait for exactly them, without sleeping.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Counts background work; clones count together.
#[derive(Clone, Default)]
pub(crate) struct Background {
    running: Arc<Running>,
}

impl std::fmt::Debug for Background {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Background")
            .field("tasks", &self.running.tasks.load(Ordering::Relaxed))
            .finish()
    }
}

#[derive(Default)]
struct Running {
    tasks: AtomicUsize,
    idle: Notify,
}

/// One piece of background work; it ends when this is dropped (also when
/// the future holding it is dropped unfinished, at runtime shutdown say).
pub(crate) struct Task(Arc<Running>);

impl Drop for Task {
    fn drop(&mut self) {
        if self.0.tasks.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Background {
    /// Counts one more piece of background work, until the result is dropped.
    pub(crate) fn start(&self) -> Task {
        self.running.tasks.fetch_add(1, Ordering::AcqRel);
        Task(Arc::clone(&self.running))
    }

    /// Runs `work` as a task of the current runtime, counted until it ends.
    /// Without a runtime (dropped after shutdown) nothing runs; whatever
    /// `work` would have undone then ends by its ttl.
    pub(crate) fn spawn<F>(&self, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let running = self.start();
            runtime.spawn(async move {
                work.await;
                drop(running);
            });
        }
    }

    /// Runs `work`, a task that lives as long as its owner wants it (a
    /// waiter's place in etcd's queue), as a task of the current
    /// runtime. It is not background work while the returned handle lives:
    /// dropping the handle aborts the task, and from then until the task's
    /// future has been dropped (which is when the undo it owns, a revoke
    /// say, is handed to [`spawn`](Self::spawn)) it counts as such.
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))] // only etcd's queue owns tasks
    pub(crate) fn spawn_owned<F>(&self, work: F) -> Owned
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let slot = Arc::new(Mutex::new(Slot::default()));
        let task = tokio::spawn(Tracked {
            work: Some(Box::pin(work)),
            slot: Arc::clone(&slot),
        });
        Owned {
            task,
            slot,
            background: self.clone(),
        }
    }

    /// Waits until no background work is running.
    pub(crate) async fn idle(&self) {
        loop {
            let idle = self.running.idle.notified();
            tokio::pin!(idle);
            // Registered before the check, so a wake-up in between is kept.
            idle.as_mut().enable();
            if self.running.tasks.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// What an owned task and its handle share: whether the task's future is
/// gone, and the count taken when the handle let go of a task still there.
#[cfg_attr(not(feature = "etcd"), allow(dead_code))] // only etcd's queue owns tasks
#[derive(Default)]
struct Slot {
    gone: bool,
    detached: Option<Task>,
}

/// The handle of a task made with [`Background::spawn_owned`]; dropping it
/// aborts the task.
#[cfg_attr(not(feature = "etcd"), allow(dead_code))] // only etcd's queue owns tasks
pub(crate) struct Owned {
    task: JoinHandle<()>,
    slot: Arc<Mutex<Slot>>,
    background: Background,
}

impl std::fmt::Debug for Owned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Owned").finish_non_exhaustive()
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        {
            let mut slot = crate::sync::lock(&self.slot);
            if !slot.gone {
                slot.detached = Some(self.background.start());
            }
        }
        self.task.abort();
    }
}

/// An owned task's future: drops the work first, so whatever undo the work
/// spawns while it is dropped is counted before the task stops counting.
#[cfg_attr(not(feature = "etcd"), allow(dead_code))] // only etcd's queue owns tasks
struct Tracked {
    work: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    slot: Arc<Mutex<Slot>>,
}

impl Future for Tracked {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(work) = self.work.as_mut() else {
            return Poll::Ready(());
        };
        match work.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.work = None;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        drop(self.work.take());
        let detached = {
            let mut slot = crate::sync::lock(&self.slot);
            slot.gone = true;
            slot.detached.take()
        };
        drop(detached);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_waits_for_spawned_work_and_for_aborted_owned_tasks_to_be_dropped() {
        let background = Background::default();
        background.idle().await;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        background.spawn(async move {
            let _ = rx.await;
        });
        assert_eq!(background.running.tasks.load(Ordering::Acquire), 1);
        drop(tx);
        background.idle().await;

        // An owned task does not count while its handle lives.
        let undone = Arc::new(std::sync::atomic::AtomicBool::new(false));
        struct Undo(Background, Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Undo {
            fn drop(&mut self) {
                let flag = Arc::clone(&self.1);
                self.0.spawn(async move {
                    tokio::task::yield_now().await;
                    flag.store(true, Ordering::SeqCst);
                });
            }
        }
        let undo = Undo(background.clone(), Arc::clone(&undone));
        let owned = background.spawn_owned(async move {
            let _undo = undo;
            std::future::pending::<()>().await;
        });
        tokio::task::yield_now().await;
        background.idle().await;
        drop(owned);
        background.idle().await;
        assert!(undone.load(Ordering::SeqCst), "the undo ran before idle");
    }
}

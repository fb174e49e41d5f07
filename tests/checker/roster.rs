//! A run's clients, on Redis or etcd alike: started from [`CLIENTS`] (tasks
//! of this process and client processes), handed to the nemesis by group,
//! and joined at the end into one history.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tempfile::TempDir;
use tokio::process::Child;
use tokio::task::JoinHandle;

use crate::client::{Client, Stall};
use crate::history::{Event, Role};
use crate::nemesis::Group;
use crate::{CLIENTS, WIND_DOWN, child};

/// The started clients, until they are joined.
pub struct Roster {
    tasks: Vec<JoinHandle<()>>,
    children: Vec<(Child, PathBuf)>,
    events: Arc<Mutex<Vec<Event>>>,
    /// Holds the client processes' history files.
    dir: TempDir,
}

impl Roster {
    /// Starts every client of [`CLIENTS`] and returns them with the
    /// nemesis's groups: the lock, the read-write lock, the semaphore.
    /// `client(view, name, role, watchdog)` makes each client, `view`
    /// naming the proxies it reaches the nodes through: its own for a
    /// client process, and one for the even and one for the odd in-process
    /// clients of each group.
    pub fn start(
        mut client: impl FnMut(&str, String, Role, bool) -> Client,
    ) -> (Roster, Vec<Group>) {
        let mut roster = Roster {
            tasks: Vec::new(),
            children: Vec::new(),
            events: Arc::new(Mutex::new(Vec::new())),
            dir: tempfile::tempdir().unwrap(),
        };
        let mut groups: Vec<Group> = (0..3).map(|_| Group::default()).collect();
        for (role, prefix, stallable, watched, process) in CLIENTS {
            let g = match role {
                Role::Lock => 0,
                Role::Read | Role::Write => 1,
                Role::Permit => 2,
            };
            if let Some(name) = process {
                let out = roster.dir.path().join(format!("{name}.history"));
                let spawned = child::spawn(&client(name, name.into(), role, true), &out);
                groups[g].child = Some(spawned.id().expect("the client process is running"));
                roster.children.push((spawned, out));
            }
            for i in 0..stallable + watched {
                let watchdog = i >= stallable;
                let stall = Arc::new(Stall::default());
                if !watchdog {
                    groups[g].stalls.push(Arc::clone(&stall));
                }
                let view = format!("{}-{}", ["lock", "rw", "sem"][g], i % 2);
                let client = client(&view, format!("{prefix}{i}"), role, watchdog);
                let events = Arc::clone(&roster.events);
                roster.tasks.push(tokio::spawn(async move {
                    client
                        .run(stall, |event| events.lock().unwrap().push(event))
                        .await;
                }));
            }
        }
        (roster, groups)
    }

    /// Waits for the in-process clients, which stop when the run ends.
    pub async fn join_tasks(&mut self) {
        for task in self.tasks.drain(..) {
            task.await.expect("a client task panicked");
        }
    }

    /// Waits for the client processes, which must end well and soon, and
    /// returns every client's history.
    pub async fn join(mut self) -> Vec<Event> {
        self.join_tasks().await;
        let mut events = std::mem::take(&mut *self.events.lock().unwrap());
        for (mut process, out) in self.children {
            let status = tokio::time::timeout(WIND_DOWN, process.wait())
                .await
                .expect("the client process did not stop in time")
                .unwrap();
            assert!(status.success(), "the client process failed: {status}");
            events.extend(child::read_history(&out));
        }
        events
    }
}

//! Group commit: concurrent durable writes share one fsync.
//!
//! With `Durability::Sync`, a write commits its batch under the store's writer lock with the
//! journal only flushed to the OS (`PersistMode::Buffer`: it survives a process crash), takes
//! a ticket, releases the lock, and then waits until an fsync of the journal started after
//! its commit has finished ([`GroupCommit::sync_through`]). One waiting writer leads: it
//! fsyncs for every commit made so far, while the others either wait for it or, if they
//! committed after it started, for the next one. Writers that commit while an fsync runs form
//! the next group, so N concurrent writers need far fewer than N fsyncs, and a single writer
//! still pays exactly one. The fsync itself (`journal`) does not hold fjall's journal lock,
//! so those commits are not held up behind it.
//!
//! Invariant: `synced <= committed`, and every ticket `<= synced` was fsynced before any
//! writer holding it returned. A failed fsync acknowledges nobody: its leader returns the
//! error, and its waiters try again themselves (fjall then reports itself poisoned).
//!
//! The ticket travels from `Store::commit` to the end of the provider's blocking call
//! (`EmbeddedProvider::run`) in a thread-local: every write runs as one closure on one
//! blocking thread, and the fsync must wait until that closure has released the writer lock.

use std::cell::Cell;

use parking_lot::{Condvar, Mutex};

#[derive(Debug, Default)]
struct Tickets {
    /// Commits made (the last ticket handed out).
    committed: u64,
    /// Commits covered by a finished fsync.
    synced: u64,
    /// Whether a leader is fsyncing now.
    syncing: bool,
}

/// The tickets of one store (see the module doc).
#[derive(Debug, Default)]
pub(super) struct GroupCommit {
    tickets: Mutex<Tickets>,
    synced: Condvar,
}

thread_local! {
    /// The newest ticket this thread's current call must see fsynced before it returns.
    static OWED: Cell<Option<u64>> = const { Cell::new(None) };
}

impl GroupCommit {
    /// Records a commit just made (under the writer lock) as owed by this thread.
    pub(super) fn committed(&self) {
        let ticket = {
            let mut tickets = self.tickets.lock();
            tickets.committed += 1;
            tickets.committed
        };
        OWED.with(|owed| owed.set(Some(ticket)));
    }

    /// Waits until what this thread committed is fsynced, leading the fsync if nobody is;
    /// `fsync` is the journal's. Returns at once when nothing is owed.
    pub(super) fn settle<E>(&self, fsync: impl Fn() -> Result<(), E>) -> Result<(), E> {
        match OWED.with(Cell::take) {
            Some(ticket) => self.sync_through(ticket, fsync),
            None => Ok(()),
        }
    }

    fn sync_through<E>(&self, ticket: u64, fsync: impl Fn() -> Result<(), E>) -> Result<(), E> {
        let mut tickets = self.tickets.lock();
        loop {
            if tickets.synced >= ticket {
                return Ok(());
            }
            if tickets.syncing {
                self.synced.wait(&mut tickets);
                continue;
            }
            // Lead: everything committed so far is in the journal's OS buffers.
            tickets.syncing = true;
            let target = tickets.committed;
            drop(tickets);
            let outcome = fsync();
            tickets = self.tickets.lock();
            tickets.syncing = false;
            if outcome.is_ok() {
                tickets.synced = tickets.synced.max(target);
            }
            self.synced.notify_all();
            outcome?;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::GroupCommit;

    #[test]
    fn concurrent_writers_share_fsyncs_and_each_waits_for_its_own() {
        let group = Arc::new(GroupCommit::default());
        let fsyncs = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (group, fsyncs) = (Arc::clone(&group), Arc::clone(&fsyncs));
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        group.committed();
                        let mine = super::OWED.with(|owed| owed.get()).expect("a ticket");
                        group
                            .settle(|| {
                                std::thread::sleep(Duration::from_millis(2));
                                fsyncs.fetch_add(1, Ordering::Relaxed);
                                Ok::<(), ()>(())
                            })
                            .expect("fsync");
                        assert!(
                            group.tickets.lock().synced >= mine,
                            "returned before its fsync"
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("writer");
        }
        let tickets = group.tickets.lock();
        assert_eq!(tickets.committed, 400);
        assert_eq!(tickets.synced, 400);
        let fsyncs = fsyncs.load(Ordering::Relaxed);
        assert!(
            fsyncs < 400,
            "8 writers share fsyncs: {fsyncs} for 400 commits"
        );
    }

    #[test]
    fn a_failed_fsync_acknowledges_nobody() {
        let group = GroupCommit::default();
        group.committed();
        assert_eq!(group.settle(|| Err("disk gone")), Err("disk gone"));
        assert_eq!(group.tickets.lock().synced, 0);
        // Nothing is owed any more by this thread; a new commit is settled by a good fsync.
        group.committed();
        assert_eq!(group.settle(|| Ok::<(), &str>(())), Ok(()));
        assert_eq!(group.tickets.lock().synced, 2);
    }

    #[test]
    fn nothing_owed_means_no_fsync() {
        let group = GroupCommit::default();
        let called = std::cell::Cell::new(false);
        group
            .settle(|| {
                called.set(true);
                Ok::<(), ()>(())
            })
            .expect("no fsync");
        assert!(!called.get());
    }
}

//! [`Turns`]: tasks of one process that take turns per key (a document), first come first
//! served, so they queue instead of racing each other.
//!
//! Used where racing costs more than waiting: `update`'s read-modify-write (two tasks of one
//! process updating one document would otherwise conflict and retry, and a task that keeps
//! losing could run out of retries), the CouchDB provider's rev-less writes (each looks the
//! winner up and writes on it, the same race) and its writes on a cluster (see
//! `couchdb/quorum.rs`). Writers in other processes are not covered; what they race stays
//! the caller's retry's business.
//!
//! Invariant: the map holds an entry for a key exactly while some [`Turn`] for it exists,
//! waiting or holding (`users` counts them), so it never outgrows the keys in use, and a
//! task cancelled while it waits leaves nothing behind.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use parking_lot::Mutex;

/// Per-key queues. A `tokio` mutex is fair: turns are given in the order they were asked.
pub(crate) struct Turns<K> {
    queues: Mutex<HashMap<K, Queue>>,
}

struct Queue {
    lock: Arc<tokio::sync::Mutex<()>>,
    /// Turns for this key that exist (waiting or holding).
    users: usize,
}

/// A task's turn on one key: held until dropped.
pub(crate) struct Turn<'a, K: Hash + Eq> {
    turns: &'a Turns<K>,
    key: K,
    _held: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl<K: Hash + Eq + Clone> Turns<K> {
    /// No key in use.
    pub(crate) fn new() -> Self {
        Self {
            queues: Mutex::new(HashMap::new()),
        }
    }

    /// Waits until every turn on `key` asked for before this one has been dropped.
    pub(crate) async fn take(&self, key: K) -> Turn<'_, K> {
        let lock = {
            let mut queues = self.queues.lock();
            let queue = queues.entry(key.clone()).or_insert_with(|| Queue {
                lock: Arc::default(),
                users: 0,
            });
            queue.users += 1;
            Arc::clone(&queue.lock)
        };
        // Counted from here: if this future is dropped while it waits, `turn`'s drop undoes
        // the count.
        let mut turn = Turn {
            turns: self,
            key,
            _held: None,
        };
        turn._held = Some(lock.lock_owned().await);
        turn
    }

    /// Keys with a turn waiting or held.
    #[cfg(test)]
    fn keys_in_use(&self) -> usize {
        self.queues.lock().len()
    }
}

impl<K: Hash + Eq + Clone> Default for Turns<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Hash + Eq> Drop for Turn<'_, K> {
    fn drop(&mut self) {
        // Let the next task in before taking the map's lock.
        self._held = None;
        let mut queues = self.turns.queues.lock();
        if let Some(queue) = queues.get_mut(&self.key) {
            queue.users -= 1;
            if queue.users == 0 {
                queues.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn one_task_at_a_time_per_key_and_the_map_empties() {
        let turns = Arc::new(Turns::<&'static str>::new());
        let inside = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (turns, inside) = (Arc::clone(&turns), Arc::clone(&inside));
            tasks.push(tokio::spawn(async move {
                let _turn = turns.take("d").await;
                assert_eq!(
                    inside.fetch_add(1, Ordering::SeqCst),
                    0,
                    "two tasks held 'd'"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for task in tasks {
            task.await.expect("task did not panic");
        }
        assert_eq!(turns.keys_in_use(), 0);
    }

    #[tokio::test]
    async fn other_keys_do_not_wait_and_a_cancelled_wait_leaves_nothing() {
        let turns = Turns::new();
        let held = turns.take("a").await;
        // Another key is free at once.
        let other = turns.take("b").await;
        drop(other);
        // A wait for the held key, given up.
        let waited = tokio::time::timeout(Duration::from_millis(20), turns.take("a")).await;
        assert!(waited.is_err(), "'a' is held, so its second turn waits");
        drop(held);
        assert_eq!(turns.keys_in_use(), 0);
        // And the key can be taken again.
        drop(turns.take("a").await);
        assert_eq!(turns.keys_in_use(), 0);
    }
}

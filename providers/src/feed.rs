//! Change-feed `pending` counts without rescanning the feed, shared by the providers that
//! keep their own feed (memory, embedded).
//!
//! `pending` is exact: the change entries after a page. Counting them means walking the
//! rest of the feed, which makes reading a whole feed page by page quadratic. So each
//! database remembers the count it last handed out, for the token it handed out with it and
//! the update seq it was read at; the next page from that token, with no write in between
//! (same update seq), subtracts its own length instead of counting. Any write changes the
//! update seq, so a stale count is never used.

use std::collections::HashMap;
use std::hash::Hash;

use parking_lot::Mutex;

/// `remaining` change entries follow token `since` while the update seq is `seq`.
#[derive(Debug, Clone, Copy)]
struct Count {
    since: u64,
    seq: u64,
    remaining: u64,
}

/// The last `pending` handed out per database (keyed by whatever names a database).
#[derive(Debug)]
pub(crate) struct PendingCounts<K>(Mutex<HashMap<K, Count>>);

impl<K> Default for PendingCounts<K> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

impl<K: Eq + Hash> PendingCounts<K> {
    /// The entries after `since`, if known for update seq `seq`.
    pub fn known(&self, db: &K, since: u64, seq: u64) -> Option<u64> {
        self.0
            .lock()
            .get(db)
            .filter(|c| c.since == since && c.seq == seq)
            .map(|c| c.remaining)
    }

    /// `pending` of a page that read `read` entries after `since` (asked for `limit`), given
    /// what [`known`](Self::known) said or, when it said nothing, the entries the caller
    /// counted past the page; remembered for the page's token `last`.
    pub fn page(
        &self,
        db: K,
        known: Option<u64>,
        counted: u64,
        (read, limit): (usize, usize),
        last: u64,
        seq: u64,
    ) -> u64 {
        let remaining = match known {
            _ if read < limit => 0,
            Some(total) => total.saturating_sub(read as u64),
            None => counted,
        };
        self.0.lock().insert(
            db,
            Count {
                since: last,
                seq,
                remaining,
            },
        );
        remaining
    }

    /// Forgets a database (deleted).
    #[cfg_attr(not(feature = "embedded"), allow(dead_code))]
    pub fn forget(&self, db: &K) {
        self.0.lock().remove(db);
    }
}

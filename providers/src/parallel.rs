//! CPU work on a batch spread over the machine's cores: scoped threads, the calling one
//! included, taking chunks from one queue; items kept in order. Used where a batch's
//! per-item work (JSON encoding and parsing, revision hashing) dominates: the providers'
//! `save_many` and big reads.

use std::sync::{Mutex, OnceLock};

use crate::{Error, Result};

/// Fewer items than this stay on the calling thread: starting a thread costs more than the
/// work on a few hundred small items.
const PARALLEL_FROM: usize = 256;

/// The cores this process may use, asked once: `available_parallelism` reads the cgroup's
/// CPU quota from `/proc` and `/sys` on every call (measured: a fifth of a single embedded
/// save's CPU time when it was asked per call).
fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES
        .get_or_init(|| std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get))
}

/// Items are handed out in chunks of this many: small enough that a thread which starts
/// late (the other core was busy) or runs slow leaves little for the end, big enough that
/// taking a chunk (one uncontended lock) costs nothing beside the work on it.
const CHUNK: usize = 32;

/// `items.map(f)` in order; from `PARALLEL_FROM` items on, spread over every core.
pub(crate) fn map_on_every_core<T: Send, U: Send>(
    items: Vec<T>,
    f: impl Fn(T) -> Result<U> + Sync,
) -> Vec<Result<U>> {
    map_chunks_on_every_core(items, |chunk| chunk.into_iter().map(&f).collect())
}

/// `f` over consecutive chunks of `items` (at most `CHUNK` each), results concatenated in
/// order; `f` returns one result per item of its chunk. Below `PARALLEL_FROM` items the
/// chunks are done in order on the calling thread. For work that is cheaper done several
/// items at a time (revision hashes, eight to an AVX2 pass).
///
/// The threads take chunks from one queue until it is empty, rather than each getting a
/// fixed share: measured on `save_many`'s preparation, a helper thread often started
/// 0.1-3.4 ms late on a busy machine, and with fixed halves the calling thread then
/// waited for it with its own half done.
pub(crate) fn map_chunks_on_every_core<T: Send, U: Send>(
    items: Vec<T>,
    f: impl Fn(Vec<T>) -> Vec<Result<U>> + Sync,
) -> Vec<Result<U>> {
    let total = items.len();
    let mut chunks = Vec::with_capacity(total.div_ceil(CHUNK));
    let mut items = items.into_iter();
    loop {
        let chunk: Vec<T> = items.by_ref().take(CHUNK).collect();
        if chunk.is_empty() {
            break;
        }
        chunks.push(chunk);
    }
    let cores = cores();
    if total < PARALLEL_FROM || cores < 2 {
        return chunks
            .into_iter()
            .flat_map(|chunk| checked(chunk.len(), f(chunk)))
            .collect();
    }
    let lens: Vec<usize> = chunks.iter().map(Vec::len).collect();
    let queue = Mutex::new(chunks.into_iter().enumerate());
    // Each thread's results, by chunk number.
    let work = || {
        let mut done: Vec<(usize, Vec<Result<U>>)> = Vec::new();
        loop {
            // The lock is held only to take the next chunk; a poisoned one still holds
            // a consistent iterator.
            let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
            let Some((n, chunk)) = next else {
                return done;
            };
            let len = chunk.len();
            done.push((n, checked(len, f(chunk))));
        }
    };
    let mut by_chunk: Vec<Option<Vec<Result<U>>>> =
        std::iter::repeat_with(|| None).take(lens.len()).collect();
    std::thread::scope(|scope| {
        let others: Vec<_> = (1..cores).map(|_| scope.spawn(work)).collect();
        for (n, results) in work() {
            by_chunk[n] = Some(results);
        }
        for other in others {
            // `f` does not panic; if it ever did, the chunks that thread took fail below.
            if let Ok(done) = other.join() {
                for (n, results) in done {
                    by_chunk[n] = Some(results);
                }
            }
        }
    });
    let mut all = Vec::with_capacity(total);
    for (results, len) in by_chunk.into_iter().zip(lens) {
        match results {
            Some(results) => all.extend(results),
            None => all.extend(
                (0..len).map(|_| Err(Error::storage("a parallel encode or parse panicked"))),
            ),
        }
    }
    all
}

/// `results` if it holds one per item of a chunk of `len`; otherwise (a bug in the chunk
/// function) an error for each item, so items and results never shift out of step.
fn checked<U>(len: usize, results: Vec<Result<U>>) -> Vec<Result<U>> {
    if results.len() == len {
        return results;
    }
    (0..len)
        .map(|_| {
            Err(Error::storage(
                "a batch step returned the wrong number of results",
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_errors_are_kept_for_every_size() {
        for n in [0, 1, 255, 256, 257, 1000, 1001, 4096, 4097] {
            let out = map_on_every_core((0..n).collect::<Vec<usize>>(), |i| {
                if i % 7 == 3 {
                    Err(Error::storage("seven"))
                } else {
                    Ok(i * 2)
                }
            });
            assert_eq!(out.len(), n);
            for (i, r) in out.into_iter().enumerate() {
                match r {
                    Ok(v) => assert_eq!(v, i * 2),
                    Err(_) => assert_eq!(i % 7, 3),
                }
            }
        }
    }
}

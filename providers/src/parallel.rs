//! CPU work on a batch spread over the machine's cores: scoped threads, the calling one
//! included, items kept in order. Used where a batch's per-item work (JSON encoding and
//! parsing, revision hashing) dominates: the providers' `save_many` and big reads.

use std::sync::OnceLock;

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

/// `items.map(f)` in order; from `PARALLEL_FROM` items on, split over every core.
pub(crate) fn map_on_every_core<T: Send, U: Send>(
    mut items: Vec<T>,
    f: impl Fn(T) -> Result<U> + Sync,
) -> Vec<Result<U>> {
    if items.len() < PARALLEL_FROM {
        return items.into_iter().map(f).collect();
    }
    let cores = cores();
    if cores < 2 {
        return items.into_iter().map(f).collect();
    }
    let per_core = items.len().div_ceil(cores);
    let mut parts = Vec::with_capacity(cores);
    while items.len() > per_core {
        parts.push(items.split_off(items.len() - per_core));
    }
    parts.reverse();
    let f = &f;
    std::thread::scope(|scope| {
        let others: Vec<_> = parts
            .into_iter()
            .map(|part| {
                let len = part.len();
                (
                    len,
                    scope.spawn(move || part.into_iter().map(f).collect::<Vec<_>>()),
                )
            })
            .collect();
        let mut all: Vec<_> = items.into_iter().map(f).collect();
        for (len, other) in others {
            match other.join() {
                Ok(rest) => all.extend(rest),
                // `f` does not panic; if it ever did, fail those items, not the process.
                Err(_) => all.extend(
                    (0..len).map(|_| Err(Error::storage("a parallel encode or parse panicked"))),
                ),
            }
        }
        all
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_errors_are_kept_for_every_size() {
        for n in [0, 1, 255, 256, 257, 1000, 1001] {
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

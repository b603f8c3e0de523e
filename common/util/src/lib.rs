//! Two helpers that every process (router, signaling, control, recorder) needs and that were
//! copied into each of them: the wall clock in Unix milliseconds ([`unix_ms`]) and a mutex lock
//! that recovers from a poisoned mutex ([`LockExt::lock_unpoisoned`]); and per-client rate limits
//! ([`rate_limit`]) for the HTTP endpoints of signaling and control.
//!
//! ```
//! use std::sync::Mutex;
//! use util::LockExt;
//!
//! let m = Mutex::new(1);
//! *m.lock_unpoisoned() += 1;
//! assert_eq!(*m.lock_unpoisoned(), 2);
//! assert!(util::unix_ms() > 1_600_000_000_000);
//! ```

pub mod rate_limit;

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch by the wall clock (0 if the clock is set before 1970).
pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Locking that carries on after a thread panicked while holding the lock.
///
/// Every mutex in these processes guards state that stays consistent between statements (a map,
/// a counter, a connection), so a panic elsewhere is no reason to take the whole process down
/// with a second panic: the data is used as the panicking thread left it.
pub trait LockExt<T> {
    /// [`Mutex::lock`], taking the guard out of a [`PoisonError`].
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T>;
}

impl<T> LockExt<T> for Mutex<T> {
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_mutex_still_locks_with_the_last_value() {
        let m = std::sync::Arc::new(Mutex::new(5));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let mut g = m2.lock().expect("first lock");
            *g = 6;
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        assert_eq!(*m.lock_unpoisoned(), 6);
    }
}

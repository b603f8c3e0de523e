//! Sleeping and waking on a 32-bit word of the shared segment.
//!
//! A futex on the shared mapping (not `FUTEX_PRIVATE_FLAG`: the word is shared between
//! processes) needs no extra file descriptor, so handing over the segment's one fd hands over
//! the wake-up channel too. Under loom the futex is emulated with a mutex and condition
//! variable that keep its contract: `wait` sleeps only if the word still holds `expected` when
//! checked under the lock that `wake` takes after changing the word.

use crate::sync::AtomicU32;
use std::time::Duration;

/// What the emulated futex needs besides the word (loom builds only).
#[cfg(loom)]
#[derive(Debug, Default)]
pub(crate) struct Parker {
    lock: loom::sync::Mutex<()>,
    cond: loom::sync::Condvar,
}

/// Sleeps while `*word == expected`, at most `timeout` (`None`: until woken). Returns early on
/// a wake-up, a signal, or when the word already differs; callers re-check their condition.
#[cfg(not(loom))]
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|d| libc::timespec {
        // Saturate absurd timeouts rather than wrap: a year-long sleep is still re-checked.
        tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(d.subsec_nanos() as i32),
    });
    let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a live, aligned u32 (in the shared mapping, which outlives this call
    // because the caller holds a reference into it); `ts_ptr` is null or points to `ts`, alive
    // until the call returns. FUTEX_WAIT only reads both. EINTR/EAGAIN/ETIMEDOUT are all fine
    // outcomes for a caller that re-checks, so the result is deliberately ignored.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAIT, expected, ts_ptr);
    }
}

/// Wakes every sleeper on `word` (there is at most one: the ring's consumer).
#[cfg(not(loom))]
pub(crate) fn wake(word: &AtomicU32) {
    // SAFETY: `word` is a live, aligned u32; FUTEX_WAKE does not dereference it beyond using
    // its address as the wait-queue key.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX);
    }
}

#[cfg(loom)]
pub(crate) fn wait(word: &AtomicU32, expected: u32, parker: &Parker, _timeout: Option<Duration>) {
    use crate::sync::Ordering;
    // loom::sync::Mutex only fails when poisoned by a panicking model thread, which already
    // fails the model.
    let guard = parker.lock.lock().expect("parker mutex poisoned");
    if word.load(Ordering::Acquire) == expected {
        let _guard = parker.cond.wait(guard).expect("parker mutex poisoned");
    }
}

#[cfg(loom)]
pub(crate) fn wake(_word: &AtomicU32, parker: &Parker) {
    let _guard = parker.lock.lock().expect("parker mutex poisoned");
    parker.cond.notify_all();
}

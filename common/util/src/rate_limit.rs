//! Per-client rate limits: a token bucket per key (a client's IP address), sans-IO.
//!
//! Each key may spend `per_minute` requests at once and earns them back at `per_minute / 60`
//! a second. [`RateLimiter::check`] spends one or says how long until one is back (the
//! `Retry-After` of a 429); [`RateLimiter::would_allow`] and [`RateLimiter::spend`] split that
//! for limits counted on outcomes (authentication failures: refuse while the failures are spent,
//! spend one per failure). Time is an argument, so the limits are tested without waiting.
//! Buckets that have filled up again are forgotten, so the map holds only recent clients.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use util::rate_limit::RateLimiter;
//!
//! let t0 = Instant::now();
//! let mut limit = RateLimiter::per_minute(2);
//! assert!(limit.check("10.0.0.1", t0).is_ok());
//! assert!(limit.check("10.0.0.1", t0).is_ok());
//! assert_eq!(limit.check("10.0.0.1", t0), Err(Duration::from_secs(30)));
//! assert!(limit.check("10.0.0.2", t0).is_ok(), "each client has its own bucket");
//! assert!(limit.check("10.0.0.1", t0 + Duration::from_secs(30)).is_ok());
//! ```

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Forget full buckets at most this often.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Token buckets by key. `per_minute == 0` allows everything.
#[derive(Debug)]
pub struct RateLimiter<K> {
    per_minute: u32,
    buckets: HashMap<K, Bucket>,
    last_sweep: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl<K: Hash + Eq> RateLimiter<K> {
    /// `per_minute` requests at once, earned back evenly over a minute; 0 for no limit.
    pub fn per_minute(per_minute: u32) -> RateLimiter<K> {
        RateLimiter { per_minute, buckets: HashMap::new(), last_sweep: None }
    }

    pub fn limit(&self) -> u32 {
        self.per_minute
    }

    /// Spends one request of `key`'s, or answers how long until it has one.
    pub fn check(&mut self, key: K, now: Instant) -> Result<(), Duration> {
        self.would_allow(&key, now)?;
        self.spend(key, now);
        Ok(())
    }

    /// Whether `key` has a request left, without spending it.
    pub fn would_allow(&mut self, key: &K, now: Instant) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        self.sweep(now);
        let tokens = self.buckets.get(key).map_or(f64::from(self.per_minute), |b| self.refilled(b, now));
        if tokens >= 1.0 {
            return Ok(());
        }
        let rate = f64::from(self.per_minute) / 60.0;
        // Whole seconds, rounded up: what Retry-After can say.
        Err(Duration::from_secs(((1.0 - tokens) / rate).ceil().max(1.0) as u64))
    }

    /// Spends one of `key`'s requests (down to zero, never below).
    pub fn spend(&mut self, key: K, now: Instant) {
        if self.per_minute == 0 {
            return;
        }
        let full = f64::from(self.per_minute);
        let tokens = self.buckets.get(&key).map_or(full, |b| self.refilled(b, now));
        self.buckets.insert(key, Bucket { tokens: (tokens - 1.0).max(0.0), at: now });
    }

    fn refilled(&self, b: &Bucket, now: Instant) -> f64 {
        let rate = f64::from(self.per_minute) / 60.0;
        let earned = now.saturating_duration_since(b.at).as_secs_f64() * rate;
        (b.tokens + earned).min(f64::from(self.per_minute))
    }

    fn sweep(&mut self, now: Instant) {
        if self.last_sweep.is_some_and(|t| now.saturating_duration_since(t) < SWEEP_EVERY) {
            return;
        }
        self.last_sweep = Some(now);
        let (per_minute, rate) = (f64::from(self.per_minute), f64::from(self.per_minute) / 60.0);
        self.buckets.retain(|_, b| b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < per_minute);
    }

    /// Clients with a bucket that has not filled up again.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_limit_at_once_then_one_per_interval() {
        let t0 = Instant::now();
        let mut l = RateLimiter::per_minute(60);
        for _ in 0..60 {
            assert!(l.check(1, t0).is_ok());
        }
        assert_eq!(l.check(1, t0), Err(Duration::from_secs(1)));
        assert!(l.check(1, t0 + Duration::from_millis(1000)).is_ok());
        assert!(l.check(1, t0 + Duration::from_millis(1000)).is_err());
    }

    #[test]
    fn failures_counted_on_outcome_block_until_earned_back() {
        let t0 = Instant::now();
        let mut l = RateLimiter::per_minute(3);
        for _ in 0..5 {
            l.spend("ip", t0);
        }
        assert_eq!(l.would_allow(&"ip", t0), Err(Duration::from_secs(20)), "spending stops at zero");
        assert!(l.would_allow(&"ip", t0 + Duration::from_secs(20)).is_ok());
    }

    #[test]
    fn zero_is_no_limit_and_full_buckets_are_forgotten() {
        let t0 = Instant::now();
        let mut none = RateLimiter::per_minute(0);
        for _ in 0..10_000 {
            assert!(none.check(1, t0).is_ok());
        }
        assert_eq!(none.tracked(), 0);
        let mut l = RateLimiter::per_minute(10);
        for k in 0..100 {
            l.check(k, t0).unwrap();
        }
        assert_eq!(l.tracked(), 100);
        let _ = l.check(1000, t0 + Duration::from_secs(61));
        assert_eq!(l.tracked(), 1, "only the new client's bucket is kept");
    }
}

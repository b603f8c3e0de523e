//! Limits against clients that hold connections open or send slowly.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use util::LockExt;

/// The listener's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open connections per client address; past it a new one is closed at once. 0: no cap.
    pub max_per_ip: usize,
    /// For the TLS handshake, and then for each request's headers.
    pub handshake: Duration,
    /// For a request to be answered, its body read included (`408` past it).
    pub request: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_per_ip: 1000, handshake: Duration::from_secs(10), request: Duration::from_secs(30) }
    }
}

/// Open connections per client address.
#[derive(Debug, Clone, Default)]
pub struct ConnectionCount(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// One counted connection; uncounted when dropped.
#[derive(Debug)]
pub struct Counted {
    count: ConnectionCount,
    ip: IpAddr,
}

impl ConnectionCount {
    /// Counts a connection from `ip` unless `max` are open already (0: no cap). `Err` carries
    /// how many are open.
    pub fn admit(&self, ip: IpAddr, max: usize) -> Result<Counted, usize> {
        let mut map = self.0.lock_unpoisoned();
        let n = map.entry(ip).or_insert(0);
        if max > 0 && *n >= max {
            return Err(*n);
        }
        *n += 1;
        Ok(Counted { count: self.clone(), ip })
    }

    /// Connections open from `ip` now.
    pub fn open(&self, ip: IpAddr) -> usize {
        self.0.lock_unpoisoned().get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut map = self.count.0.lock_unpoisoned();
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_counts_per_address_and_frees_on_drop() {
        let count = ConnectionCount::default();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let first = count.admit(a, 2).unwrap();
        let second = count.admit(a, 2).unwrap();
        assert_eq!(count.admit(a, 2).unwrap_err(), 2, "a third from the same address");
        assert!(count.admit(b, 2).is_ok(), "another address has its own count");
        drop(first);
        assert_eq!(count.open(a), 1);
        let _third = count.admit(a, 2).unwrap();
        drop(second);
        assert!(count.admit(a, 0).is_ok(), "0 is no cap");
    }
}

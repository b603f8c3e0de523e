//! Retransmission cache of one producer stream, the per-subscriber throttle that keeps a NACK
//! storm from turning into a retransmission storm, and the RTX sequence counter (RFC 4588).
//!
//! The router keeps the last packets of every incoming (publisher) stream so that it can answer
//! a subscriber's NACK itself, without a round trip to the publisher. Data flow:
//!
//! ```text
//!  publisher RTP (decrypted) ──insert(seq, now, bytes)──► RetransmissionCache (one per stream)
//!  subscriber NACK(seq) ──get(seq, now)──► bytes ──ResendThrottle::allow (one per subscription)
//!        ──► RTX packet: RtxSequencer::next_seq() (one per subscription), OSN + payload, SRTP
//! ```
//!
//! The cache copies each packet into one of `capacity` fixed-size slots reserved when it is
//! built, so storing a packet in steady state allocates nothing and the memory is bounded at
//! `capacity * slot_size` bytes. A slot is chosen by sequence number, so a newer packet evicts
//! the one `capacity` sequence numbers older; `get` also refuses packets older than `max_age`
//! (a retransmission that late only arrives after the receiver gave up on it).
//!
//! The cache is shared by every subscriber of the stream, so it does not remember what was
//! resent: two subscribers that lose the same packet must both get it. Each subscription has
//! its own [`ResendThrottle`] instead.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use router_engine::rtx_cache::{ResendThrottle, RetransmissionCache, RtxSequencer};
//!
//! let t0 = Instant::now();
//! let mut cache = RetransmissionCache::new();
//! cache.insert(7, t0, b"packet seven").expect("fits a slot");
//!
//! let mut throttle = ResendThrottle::new(512);
//! let mut rtx_seq = RtxSequencer::new(1000);
//! let rtt = Duration::from_millis(40);
//! let now = t0 + Duration::from_millis(30);
//! if let Some(bytes) = cache.get(7, now)
//!     && throttle.allow(7, now, rtt)
//! {
//!     assert_eq!(bytes, b"packet seven");
//!     assert_eq!(rtx_seq.next_seq(), 1000);
//! }
//! // The same NACK again within the RTT is not answered twice.
//! assert!(!throttle.allow(7, now + Duration::from_millis(5), rtt));
//! ```

use std::time::{Duration, Instant};

use crate::stats::extend_seq;

/// Largest capacity: half the sequence space, so extended sequence numbers stay unambiguous.
const MAX_CAPACITY: usize = 1 << 15;
/// A jump of more sequence numbers than this (or than the capacity, if larger) is a stray
/// packet or a sender restart, not loss or reordering (same rule as the NACK generator).
const DISCONTINUITY: i64 = 10_000;
/// Floor of the resend window, for when the RTT is unknown or tiny.
const MIN_RESEND_INTERVAL: Duration = Duration::from_millis(10);

/// Errors of [`RetransmissionCache::insert`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtxCacheError {
    #[error("packet of {len} bytes does not fit a {max}-byte cache slot")]
    PacketTooLarge { len: usize, max: usize },
}

/// Sizing of a [`RetransmissionCache`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtxCacheConfig {
    /// Packets kept (clamped to 1..=32768). 512 is about a second of 2.5 Mbit/s video.
    pub capacity: usize,
    /// Largest packet kept, in bytes; every slot reserves this much.
    pub slot_size: usize,
    /// Packets older than this are not returned.
    pub max_age: Duration,
}

impl Default for RtxCacheConfig {
    fn default() -> Self {
        Self { capacity: 512, slot_size: 1500, max_age: Duration::from_secs(1) }
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Extended sequence number of the packet held.
    ext: i64,
    len: usize,
    /// `None` when the slot is empty.
    stored_at: Option<Instant>,
}

/// The last packets of one producer stream, by sequence number; see the module docs.
#[derive(Debug, Clone)]
pub struct RetransmissionCache {
    config: RtxCacheConfig,
    slots: Vec<Slot>,
    /// `capacity * slot_size` bytes; slot `i` owns `[i * slot_size, (i + 1) * slot_size)`.
    storage: Vec<u8>,
    /// Extended sequence number of the newest packet stored; `None` when empty.
    highest: Option<i64>,
    /// The sequence number that would confirm a discontinuity.
    confirm_seq: Option<u16>,
    occupied: usize,
}

impl Default for RetransmissionCache {
    fn default() -> Self {
        Self::new()
    }
}

impl RetransmissionCache {
    /// A cache of 512 slots of 1500 bytes, returning packets up to 1 s old.
    pub fn new() -> Self {
        Self::with_config(RtxCacheConfig::default())
    }

    /// Reserves all the memory the cache will ever use: `capacity * slot_size` bytes.
    pub fn with_config(mut config: RtxCacheConfig) -> Self {
        config.capacity = config.capacity.clamp(1, MAX_CAPACITY);
        let empty = Slot { ext: 0, len: 0, stored_at: None };
        Self {
            slots: vec![empty; config.capacity],
            storage: vec![0; config.capacity * config.slot_size],
            config,
            highest: None,
            confirm_seq: None,
            occupied: 0,
        }
    }

    /// Copies a packet in, evicting the packet `capacity` sequence numbers older. Returns
    /// `Ok(false)` when it is not kept: older than everything the cache can hold, or a lone
    /// packet far from the stream's sequence (kept only once the next one confirms that the
    /// sender restarted its sequence, which empties the cache).
    pub fn insert(&mut self, seq: u16, now: Instant, packet: &[u8]) -> Result<bool, RtxCacheError> {
        if packet.len() > self.config.slot_size {
            return Err(RtxCacheError::PacketTooLarge { len: packet.len(), max: self.config.slot_size });
        }
        let capacity = self.config.capacity as i64;
        let ext = match self.highest {
            None => i64::from(seq),
            Some(highest) => {
                let ext = extend_seq(highest, seq);
                let delta = ext - highest;
                if delta.abs() > DISCONTINUITY.max(capacity) {
                    if self.confirm_seq != Some(seq) {
                        self.confirm_seq = Some(seq.wrapping_add(1));
                        return Ok(false);
                    }
                    self.clear();
                    i64::from(seq)
                } else if delta <= -capacity {
                    // Its slot belongs to a newer packet now.
                    return Ok(false);
                } else {
                    ext
                }
            }
        };
        self.confirm_seq = None;
        self.highest = Some(self.highest.map_or(ext, |h| h.max(ext)));
        let index = self.index(ext);
        let size = self.config.slot_size;
        self.storage[index * size..][..packet.len()].copy_from_slice(packet);
        let slot = &mut self.slots[index];
        if slot.stored_at.is_none() {
            self.occupied += 1;
        }
        *slot = Slot { ext, len: packet.len(), stored_at: Some(now) };
        Ok(true)
    }

    /// The packet with this sequence number, if it is still held and at most `max_age` old.
    pub fn get(&self, seq: u16, now: Instant) -> Option<&[u8]> {
        let ext = extend_seq(self.highest?, seq);
        let index = self.index(ext);
        let slot = &self.slots[index];
        let stored_at = slot.stored_at?;
        if slot.ext != ext || now.saturating_duration_since(stored_at) > self.config.max_age {
            return None;
        }
        Some(&self.storage[index * self.config.slot_size..][..slot.len])
    }

    /// Whether the packet with this sequence number is held, however old: a copy that
    /// arrives again (a retransmission, or a sender's redundant padding) is a duplicate.
    pub fn contains(&self, seq: u16) -> bool {
        let Some(highest) = self.highest else { return false };
        let ext = extend_seq(highest, seq);
        let slot = &self.slots[self.index(ext)];
        slot.stored_at.is_some() && slot.ext == ext
    }

    /// Empties the cache (its memory stays reserved).
    pub fn clear(&mut self) {
        for slot in &mut self.slots {
            slot.stored_at = None;
        }
        self.occupied = 0;
        self.highest = None;
        self.confirm_seq = None;
    }

    fn index(&self, ext: i64) -> usize {
        // rem_euclid of a positive capacity is in 0..capacity: a valid slot index.
        ext.rem_euclid(self.config.capacity as i64) as usize
    }

    /// Packets held (some may be too old to be returned).
    pub fn len(&self) -> usize {
        self.occupied
    }

    pub fn is_empty(&self) -> bool {
        self.occupied == 0
    }

    /// Most packets held at once.
    pub fn capacity(&self) -> usize {
        self.config.capacity
    }

    /// Bytes of packet storage reserved, fixed at construction.
    pub fn memory_bytes(&self) -> usize {
        self.storage.len()
    }
}

/// Remembers, for one subscription, when each sequence number was last retransmitted, so that
/// a packet is not resent again within an RTT (the first copy cannot have arrived yet; a
/// second NACK for it that soon is a duplicate).
#[derive(Debug, Clone)]
pub struct ResendThrottle {
    /// Direct-mapped by sequence number: (seq, when it was last resent).
    entries: Vec<Option<(u16, Instant)>>,
}

impl ResendThrottle {
    /// Tracks `size` sequence numbers (clamped to 1..=32768; match the cache's capacity).
    pub fn new(size: usize) -> Self {
        Self { entries: vec![None; size.clamp(1, MAX_CAPACITY)] }
    }

    /// Whether to resend `seq` now; if so, records it as resent at `now`. Refuses when it was
    /// resent less than `max(rtt, 10 ms)` ago.
    pub fn allow(&mut self, seq: u16, now: Instant, rtt: Duration) -> bool {
        let index = usize::from(seq) % self.entries.len();
        let entry = &mut self.entries[index];
        if let Some((last_seq, at)) = *entry
            && last_seq == seq
            && now.saturating_duration_since(at) < rtt.max(MIN_RESEND_INTERVAL)
        {
            return false;
        }
        *entry = Some((seq, now));
        true
    }
}

/// Sequence numbers of one RTX stream (RFC 4588): one per subscription, counting up from a
/// random start (RFC 3550 5.1: a random start makes known-plaintext attacks on SRTP harder).
#[derive(Debug, Clone)]
pub struct RtxSequencer {
    next: u16,
}

impl RtxSequencer {
    pub fn new(start: u16) -> Self {
        Self { next: start }
    }

    /// Starts at a random sequence number drawn from the system's secure random source.
    pub fn with_random_start() -> Result<Self, aws_lc_rs::error::Unspecified> {
        let mut bytes = [0u8; 2];
        aws_lc_rs::rand::fill(&mut bytes)?;
        Ok(Self::new(u16::from_be_bytes(bytes)))
    }

    /// The sequence number for the next RTX packet.
    pub fn next_seq(&mut self) -> u16 {
        let seq = self.next;
        self.next = seq.wrapping_add(1);
        seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::collections::HashMap;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn small(capacity: usize) -> RetransmissionCache {
        RetransmissionCache::with_config(RtxCacheConfig { capacity, slot_size: 64, max_age: Duration::from_secs(1) })
    }

    #[test]
    fn returns_the_packet_stored_under_its_seq() {
        let t0 = Instant::now();
        let mut c = RetransmissionCache::new();
        assert_eq!(c.get(1, t0), None);
        assert_eq!(c.insert(1, t0, b"one"), Ok(true));
        assert_eq!(c.insert(2, t0, b"two!"), Ok(true));
        assert_eq!(c.get(1, t0), Some(&b"one"[..]));
        assert_eq!(c.get(2, t0 + ms(999)), Some(&b"two!"[..]));
        assert_eq!(c.get(3, t0), None);
        assert_eq!(c.get(1 + 512, t0), None);
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn evicted_packets_are_gone() {
        let t0 = Instant::now();
        let mut c = small(8);
        for seq in 0..20u16 {
            c.insert(seq, t0, &seq.to_be_bytes()).expect("fits");
        }
        for seq in 0..12u16 {
            assert_eq!(c.get(seq, t0), None, "seq {seq} was evicted");
        }
        for seq in 12..20u16 {
            assert_eq!(c.get(seq, t0), Some(&seq.to_be_bytes()[..]));
        }
        assert_eq!(c.len(), 8);
        // A packet older than the window is not taken back in: it would evict a newer one.
        assert_eq!(c.insert(5, t0, b"old"), Ok(false));
        assert_eq!(c.get(13, t0), Some(&13u16.to_be_bytes()[..]));
    }

    #[test]
    fn too_old_packets_are_not_returned() {
        let t0 = Instant::now();
        let mut c = RetransmissionCache::new();
        c.insert(9, t0, b"x").expect("fits");
        assert!(c.get(9, t0 + Duration::from_secs(1)).is_some());
        assert_eq!(c.get(9, t0 + Duration::from_secs(1) + ms(1)), None);
    }

    #[test]
    fn works_across_the_sequence_wrap() {
        let t0 = Instant::now();
        let mut c = small(8);
        for seq in (65530..=65535u16).chain(0..4) {
            c.insert(seq, t0, &seq.to_be_bytes()).expect("fits");
        }
        for seq in (65532..=65535u16).chain(0..4) {
            assert_eq!(c.get(seq, t0), Some(&seq.to_be_bytes()[..]));
        }
        assert_eq!(c.get(65531, t0), None);
        // A late packet inside the window fills its slot.
        let mut c = small(8);
        c.insert(65535, t0, b"a").expect("fits");
        c.insert(2, t0, b"c").expect("fits");
        assert_eq!(c.insert(0, t0, b"b"), Ok(true));
        assert_eq!(c.get(0, t0), Some(&b"b"[..]));
    }

    #[test]
    fn oversized_packet_is_an_error() {
        let t0 = Instant::now();
        let mut c = small(4);
        let big = [0u8; 65];
        assert_eq!(c.insert(1, t0, &big), Err(RtxCacheError::PacketTooLarge { len: 65, max: 64 }));
        assert!(c.is_empty());
    }

    #[test]
    fn lone_far_packet_is_ignored_and_a_restart_empties_the_cache() {
        let t0 = Instant::now();
        let mut c = RetransmissionCache::new();
        c.insert(100, t0, b"a").expect("fits");
        assert_eq!(c.insert(30_000, t0, b"stray"), Ok(false));
        assert_eq!(c.insert(101, t0, b"b"), Ok(true));
        assert_eq!(c.get(30_000, t0), None);
        assert_eq!(c.insert(50_000, t0, b"x"), Ok(false));
        assert_eq!(c.insert(50_001, t0, b"y"), Ok(true));
        assert_eq!(c.get(100, t0), None);
        assert_eq!(c.get(50_001, t0), Some(&b"y"[..]));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn random_operations_match_a_model_and_never_outgrow_the_bound() {
        let mut rng = StdRng::seed_from_u64(11);
        let mut c = small(64);
        let memory = c.memory_bytes();
        let storage_ptr = c.storage.as_ptr();
        // Model: seq -> (bytes, stored at), for packets the cache said it kept.
        let mut model: HashMap<u16, (Vec<u8>, Instant)> = HashMap::new();
        let t0 = Instant::now();
        let mut now = t0;
        let mut seq: u16 = rng.random();
        for _ in 0..200_000 {
            now += Duration::from_micros(rng.random_range(0..20_000));
            match rng.random_range(0..10) {
                0 => seq = rng.random(),
                1 => seq = seq.wrapping_sub(rng.random_range(0..100)),
                2..=5 => seq = seq.wrapping_add(1),
                _ => {
                    let q = seq.wrapping_sub(rng.random_range(0..100));
                    if let Some(bytes) = c.get(q, now) {
                        let (want, at) = model.get(&q).expect("the cache only returns what it kept");
                        assert_eq!(bytes, &want[..]);
                        assert!(now.duration_since(*at) <= Duration::from_secs(1));
                    }
                    continue;
                }
            }
            let len = rng.random_range(0..80);
            let packet: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            match c.insert(seq, now, &packet) {
                Ok(true) => {
                    model.insert(seq, (packet, now));
                }
                Ok(false) => {}
                Err(RtxCacheError::PacketTooLarge { len, .. }) => assert!(len > 64),
            }
            assert!(c.len() <= c.capacity());
        }
        assert_eq!(c.memory_bytes(), memory);
        assert_eq!(c.storage.as_ptr(), storage_ptr, "storage was never reallocated");
    }

    #[test]
    fn throttle_refuses_a_second_resend_within_the_rtt() {
        let t0 = Instant::now();
        let rtt = ms(50);
        let mut t = ResendThrottle::new(512);
        assert!(t.allow(5, t0, rtt));
        assert!(!t.allow(5, t0 + ms(49), rtt));
        assert!(t.allow(6, t0 + ms(1), rtt));
        assert!(t.allow(5, t0 + ms(50), rtt));
        // Unknown RTT: a 10 ms floor.
        assert!(t.allow(7, t0, Duration::ZERO));
        assert!(!t.allow(7, t0 + ms(9), Duration::ZERO));
        assert!(t.allow(7, t0 + ms(10), Duration::ZERO));
        // Another seq in the same slot does not inherit the stamp.
        assert!(t.allow(5 + 512, t0 + ms(51), rtt));
    }

    #[test]
    fn rtx_sequencer_counts_up_and_wraps() {
        let mut s = RtxSequencer::new(65534);
        assert_eq!([s.next_seq(), s.next_seq(), s.next_seq()], [65534, 65535, 0]);
        let mut a = RtxSequencer::with_random_start().expect("system randomness");
        let first = a.next_seq();
        assert_eq!(a.next_seq(), first.wrapping_add(1));
    }
}

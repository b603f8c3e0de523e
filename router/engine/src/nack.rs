//! NACK generation for one incoming RTP stream: which sequence numbers to ask the sender to
//! retransmit (RFC 4585 generic NACK), when, and when to give up and ask for a keyframe.
//!
//! The router runs one [`NackGenerator`] per incoming video stream (publisher to router). Each
//! received packet, retransmissions included (RFC 4588 RTX, after the original sequence number
//! is restored), goes in through [`NackGenerator::on_packet`]. A gap in the sequence numbers
//! becomes a list of missing packets; a packet that arrives late fills its hole.
//! [`NackGenerator::poll_nacks`] returns the sequence numbers due for a NACK now:
//!
//! - the first NACK waits a short reorder delay, so a packet that is merely reordered is never
//!   NACKed;
//! - each missing packet is NACKed again every `max(1.25 * rtt, min_retry_interval)`, and at
//!   most `max_retries` times, then given up (the quarter RTT of margin lets the answer to
//!   the previous NACK arrive despite jitter: asking exactly one RTT later doubled the NACKs
//!   and retransmissions in the simulated-network test, for no gain);
//! - when a packet newer than the last keyframe is given up, or the list overflows, the stream
//!   cannot be decoded until the next keyframe: [`NackGenerator::needs_keyframe`] turns true
//!   until a keyframe arrives, and the router sends (throttled) PLIs meanwhile.
//!
//! [`NackGenerator::poll_timeout`] says when the next NACK falls due, for the shard's timer.
//! The list is bounded (at most `max_missing` entries, within `max_window` sequence numbers of
//! the newest), and its storage is allocated once, at construction.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use router_engine::nack::NackGenerator;
//!
//! let t0 = Instant::now();
//! let rtt = Duration::from_millis(50);
//! let mut nack = NackGenerator::new();
//! nack.on_packet(1, t0, true);
//! nack.on_packet(3, t0, false); // 2 is missing
//! assert_eq!(nack.poll_nacks(t0, rtt), None); // maybe just reordered
//! let due = nack.poll_timeout().expect("2 is pending");
//! assert_eq!(nack.poll_nacks(due, rtt), Some(&[2u16][..]));
//! nack.on_packet(2, due + rtt, false); // the retransmission fills the hole
//! assert_eq!(nack.missing_count(), 0);
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::stats::extend_seq;

/// Tuning of a [`NackGenerator`]. The defaults follow libwebrtc's receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NackConfig {
    /// Most missing packets tracked at once. A gap that would exceed it clears the list and
    /// asks for a keyframe instead: that much loss is not repaired packet by packet.
    pub max_missing: usize,
    /// Missing packets more than this many sequence numbers older than the newest are given
    /// up; a jump further than this (either way) is a discontinuity, not loss.
    pub max_window: u16,
    /// Wait before the first NACK of a packet, so a reordered packet is not NACKed.
    pub reorder_delay: Duration,
    /// Floor of the interval between two NACKs of the same packet (1.25 RTT is the interval
    /// otherwise: asking again before an answer could come back only adds duplicates).
    pub min_retry_interval: Duration,
    /// NACKs sent for one packet before it is given up.
    pub max_retries: u8,
    /// Packets newer than the last keyframe given up before [`NackGenerator::needs_keyframe`]
    /// turns true. One is enough for video: the frame it belongs to, and every frame after it
    /// until the next keyframe, cannot be decoded.
    pub keyframe_after_given_up: u32,
}

impl Default for NackConfig {
    fn default() -> Self {
        Self {
            max_missing: 1000,
            max_window: 10_000,
            reorder_delay: Duration::from_millis(15),
            min_retry_interval: Duration::from_millis(20),
            max_retries: 10,
            keyframe_after_given_up: 1,
        }
    }
}

/// One packet not received yet.
#[derive(Debug, Clone, Copy)]
struct Missing {
    /// Extended sequence number.
    ext: i64,
    /// When the gap was seen (the first NACK waits the reorder delay from here).
    detected: Instant,
    /// When the last NACK for it went out, if any.
    last_sent: Option<Instant>,
    /// NACKs sent for it so far.
    sent: u8,
}

/// Loss tracker and NACK scheduler of one incoming RTP stream; see the module docs.
#[derive(Debug, Clone)]
pub struct NackGenerator {
    config: NackConfig,
    /// Extended sequence number of the newest packet; `None` before the first packet.
    highest: Option<i64>,
    /// Missing packets in ascending sequence order (gaps are found in that order, since they
    /// open only when the newest sequence number advances). Capacity `max_missing`, reserved
    /// once.
    missing: VecDeque<Missing>,
    /// Sequence numbers due in the last `poll_nacks`; capacity `max_missing`, reserved once.
    due: Vec<u16>,
    /// The sequence number that would confirm a discontinuity (see `on_packet`).
    confirm_seq: Option<u16>,
    /// Extended sequence number of the newest keyframe packet seen.
    last_keyframe: Option<i64>,
    /// Packets newer than `last_keyframe` given up (saturating); compared with
    /// `keyframe_after_given_up`.
    given_up_since_keyframe: u32,
    /// Extended sequence number of the newest packet counted in `given_up_since_keyframe`:
    /// only a keyframe newer than it repairs the stream.
    newest_given_up: Option<i64>,
    /// RTT of the last `poll_nacks`, for `poll_timeout`.
    rtt: Duration,
    nacks_sent: u64,
    recovered: u64,
    given_up: u64,
}

impl Default for NackGenerator {
    fn default() -> Self {
        Self::new()
    }
}

impl NackGenerator {
    pub fn new() -> Self {
        Self::with_config(NackConfig::default())
    }

    pub fn with_config(config: NackConfig) -> Self {
        let cap = config.max_missing;
        Self {
            config,
            highest: None,
            missing: VecDeque::with_capacity(cap),
            due: Vec::with_capacity(cap),
            confirm_seq: None,
            last_keyframe: None,
            given_up_since_keyframe: 0,
            newest_given_up: None,
            rtt: Duration::from_millis(100),
            nacks_sent: 0,
            recovered: 0,
            given_up: 0,
        }
    }

    /// Feeds one received packet of the stream (original or restored retransmission) with its
    /// receive time; `is_keyframe` if it belongs to a keyframe.
    pub fn on_packet(&mut self, seq: u16, now: Instant, is_keyframe: bool) {
        let Some(highest) = self.highest else {
            self.restart(seq, is_keyframe);
            return;
        };
        let ext = extend_seq(highest, seq);
        let delta = ext - highest;
        let window = i64::from(self.config.max_window);
        if delta.abs() > window {
            // Too far to be loss or reordering: a stray packet, or the sender restarted its
            // sequence. Like RFC 3550 A.1, believe a restart only when the next packet follows
            // this one; NACKing the whole jump would flood the sender for nothing.
            if self.confirm_seq == Some(seq) {
                tracing::debug!(seq, "nack: sequence restarted, list cleared");
                self.give_up_all();
                self.restart(seq, is_keyframe);
                // Whatever was lost across the jump is unknown: only a keyframe from here on
                // (this packet included) makes the stream decodable again.
                if !is_keyframe {
                    self.given_up_since_keyframe =
                        self.given_up_since_keyframe.max(self.config.keyframe_after_given_up.max(1));
                    self.newest_given_up = Some(i64::from(seq) - 1);
                }
            } else {
                self.confirm_seq = Some(seq.wrapping_add(1));
            }
            return;
        }
        self.confirm_seq = None;
        if is_keyframe {
            // Before the gap is opened: packets older than this keyframe are not needed by
            // any decoder once it is in, so they are the ones to drop on overflow.
            self.last_keyframe = Some(self.last_keyframe.map_or(ext, |k| k.max(ext)));
        }
        if delta > 0 {
            self.highest = Some(ext);
            self.open_gap(highest + 1, ext, now);
            self.drop_outside_window(ext - window);
        }
        if is_keyframe {
            self.keyframe_arrived(ext);
        }
        if delta < 0 {
            // Late: reordered, or the answer to a NACK. Fills its hole if there is one.
            if let Ok(i) = self.missing.binary_search_by_key(&ext, |m| m.ext) {
                self.missing.remove(i);
                self.recovered += 1;
            }
        }
        // delta == 0: a duplicate of the newest; nothing to do.
    }

    /// Starts tracking afresh at `seq` (extended numbering restarts too).
    fn restart(&mut self, seq: u16, is_keyframe: bool) {
        let ext = i64::from(seq);
        self.highest = Some(ext);
        self.confirm_seq = None;
        self.last_keyframe = is_keyframe.then_some(ext);
        self.newest_given_up = None;
        self.given_up_since_keyframe = 0;
    }

    fn keyframe_arrived(&mut self, ext: i64) {
        if self.newest_given_up.is_none_or(|g| ext > g) {
            // Everything given up is older than this keyframe: decoding restarts here.
            self.given_up_since_keyframe = 0;
        }
    }

    /// Records `from..to` (extended, `to` exclusive) as missing, keeping the list bounded.
    fn open_gap(&mut self, from: i64, to: i64, now: Instant) {
        let gap = (to - from) as usize;
        if gap == 0 {
            return;
        }
        if self.missing.len() + gap > self.config.max_missing {
            // Packets older than the last keyframe are only needed by frames before it, which
            // no decoder needs any more once the keyframe is in: drop those first.
            if let Some(kf) = self.last_keyframe {
                while self.missing.front().is_some_and(|m| m.ext < kf) {
                    self.missing.pop_front();
                    self.given_up += 1;
                }
            }
            if self.missing.len() + gap > self.config.max_missing {
                tracing::debug!(gap, "nack: too many missing packets, giving up on them");
                self.give_up_all();
                // The gap itself is given up too, without ever being listed.
                for ext in from..to {
                    self.count_given_up(ext);
                }
                return;
            }
        }
        for ext in from..to {
            // Fits: the capacity check above keeps len <= max_missing, the reserved capacity.
            self.missing.push_back(Missing { ext, detected: now, last_sent: None, sent: 0 });
        }
    }

    fn drop_outside_window(&mut self, oldest: i64) {
        while let Some(m) = self.missing.front().copied() {
            if m.ext >= oldest {
                break;
            }
            self.missing.pop_front();
            self.count_given_up(m.ext);
        }
    }

    fn give_up_all(&mut self) {
        while let Some(m) = self.missing.pop_front() {
            self.count_given_up(m.ext);
        }
    }

    fn count_given_up(&mut self, ext: i64) {
        self.given_up += 1;
        if self.last_keyframe.is_none_or(|k| ext > k) {
            self.given_up_since_keyframe = self.given_up_since_keyframe.saturating_add(1);
            self.newest_given_up = Some(self.newest_given_up.map_or(ext, |g| g.max(ext)));
        }
    }

    /// The sequence numbers to NACK now (ascending; `None` if none), given the current RTT
    /// estimate. Packets out of retries are given up here, one retry interval after their
    /// last NACK, so the last retransmission still has its chance to arrive.
    ///
    /// The caller packs them into generic NACK items (RFC 4585 6.2.1), splitting into several
    /// RTCP packets if they do not fit one.
    pub fn poll_nacks(&mut self, now: Instant, rtt: Duration) -> Option<&[u16]> {
        self.rtt = rtt;
        let retry = self.retry_interval(rtt);
        let reorder = self.config.reorder_delay;
        let max_retries = self.config.max_retries;
        self.due.clear();
        let mut gave_up = 0u64;
        let mut gave_up_after_keyframe = 0u32;
        let mut newest_given_up = self.newest_given_up;
        let last_keyframe = self.last_keyframe;
        let due = &mut self.due;
        self.missing.retain_mut(|m| {
            let at = match m.last_sent {
                None => m.detected + reorder,
                Some(sent) => sent + retry,
            };
            if now < at {
                return true;
            }
            if m.sent >= max_retries {
                gave_up += 1;
                if last_keyframe.is_none_or(|k| m.ext > k) {
                    gave_up_after_keyframe = gave_up_after_keyframe.saturating_add(1);
                    newest_given_up = Some(newest_given_up.map_or(m.ext, |g| g.max(m.ext)));
                }
                return false;
            }
            m.sent += 1;
            m.last_sent = Some(now);
            // Truncation back to the wire's 16 bits is intended.
            due.push(m.ext as u16);
            true
        });
        if gave_up > 0 {
            tracing::trace!(gave_up, "nack: packets given up");
        }
        self.given_up += gave_up;
        self.newest_given_up = newest_given_up;
        self.given_up_since_keyframe = self.given_up_since_keyframe.saturating_add(gave_up_after_keyframe);
        self.nacks_sent += self.due.len() as u64;
        if self.due.is_empty() { None } else { Some(&self.due) }
    }

    fn retry_interval(&self, rtt: Duration) -> Duration {
        (rtt + rtt / 4).max(self.config.min_retry_interval)
    }

    /// When `poll_nacks` next has something to do (a NACK or a give-up), using the RTT of the
    /// last `poll_nacks` call; `None` when nothing is missing.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let retry = self.retry_interval(self.rtt);
        self.missing
            .iter()
            .map(|m| match m.last_sent {
                None => m.detected + self.config.reorder_delay,
                Some(sent) => sent + retry,
            })
            .min()
    }

    /// True from the moment the stream cannot be repaired by NACKs (packets newer than the
    /// last keyframe given up, a list overflow, a restart) until a keyframe newer than the
    /// packets given up arrives.
    /// The caller sends PLIs, throttled, while it holds.
    pub fn needs_keyframe(&self) -> bool {
        self.given_up_since_keyframe >= self.config.keyframe_after_given_up.max(1)
    }

    /// Packets currently missing.
    pub fn missing_count(&self) -> usize {
        self.missing.len()
    }

    /// Sequence numbers NACKed so far (each NACK of each packet counts).
    pub fn nacks_sent(&self) -> u64 {
        self.nacks_sent
    }

    /// Missing packets that arrived later (reordered or retransmitted).
    pub fn recovered(&self) -> u64 {
        self.recovered
    }

    /// Missing packets given up (out of retries, out of the window, or dropped on overflow).
    pub fn given_up(&self) -> u64 {
        self.given_up
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtx_cache::{ResendThrottle, RetransmissionCache};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    const RTT: Duration = Duration::from_millis(100);

    fn nacks(g: &mut NackGenerator, now: Instant) -> Vec<u16> {
        g.poll_nacks(now, RTT).map(<[u16]>::to_vec).unwrap_or_default()
    }

    #[test]
    fn reordered_packet_within_the_reorder_delay_is_not_nacked() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new();
        g.on_packet(1, t0, false);
        g.on_packet(2, t0, false);
        g.on_packet(4, t0 + ms(1), false);
        assert_eq!(g.missing_count(), 1);
        assert!(nacks(&mut g, t0 + ms(5)).is_empty());
        g.on_packet(3, t0 + ms(8), false);
        assert_eq!(g.missing_count(), 0);
        assert_eq!(g.recovered(), 1);
        for t in [10, 16, 30, 200] {
            assert!(nacks(&mut g, t0 + ms(t)).is_empty());
        }
        assert_eq!(g.nacks_sent(), 0);
        assert_eq!(g.poll_timeout(), None);
    }

    #[test]
    fn missing_packet_is_nacked_after_the_reorder_delay() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new();
        g.on_packet(1, t0, false);
        g.on_packet(4, t0, false);
        assert_eq!(g.poll_timeout(), Some(t0 + ms(15)));
        assert!(nacks(&mut g, t0 + ms(14)).is_empty());
        assert_eq!(nacks(&mut g, t0 + ms(15)), vec![2, 3]);
        // Not again before the RTT.
        assert!(nacks(&mut g, t0 + ms(50)).is_empty());
        assert_eq!(g.poll_timeout(), Some(t0 + ms(140))); // 15 + 1.25 * 100
    }

    #[test]
    fn nack_is_resent_after_the_rtt_then_given_up_after_max_retries() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new();
        g.on_packet(10, t0, true);
        g.on_packet(12, t0, false);
        let mut sent_at = Vec::new();
        let mut now = t0;
        while let Some(at) = g.poll_timeout() {
            now = at;
            if let Some(seqs) = g.poll_nacks(now, RTT) {
                assert_eq!(seqs, &[11]);
                sent_at.push(now - t0);
            }
        }
        let retry = ms(125); // 1.25 RTT
        let expected: Vec<Duration> = (0..10).map(|i| ms(15) + retry * i).collect();
        assert_eq!(sent_at, expected);
        // Given up one interval after the tenth NACK.
        assert_eq!(now - t0, ms(15) + retry * 10);
        assert_eq!(g.given_up(), 1);
        assert_eq!(g.nacks_sent(), 10);
        assert_eq!(g.missing_count(), 0);
        assert!(g.needs_keyframe());
        // A later keyframe clears it.
        g.on_packet(13, now, false);
        assert!(g.needs_keyframe());
        g.on_packet(14, now, true);
        assert!(!g.needs_keyframe());
    }

    #[test]
    fn retry_interval_has_a_floor_when_rtt_is_tiny() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new();
        g.on_packet(0, t0, false);
        g.on_packet(2, t0, false);
        let rtt = ms(2);
        assert!(g.poll_nacks(t0 + ms(15), rtt).is_some());
        assert!(g.poll_nacks(t0 + ms(34), rtt).is_none());
        assert!(g.poll_nacks(t0 + ms(35), rtt).is_some()); // 20 ms floor
    }

    #[test]
    fn giving_up_a_packet_older_than_the_last_keyframe_needs_no_keyframe() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new();
        g.on_packet(1, t0, false);
        g.on_packet(3, t0, false); // 2 missing
        g.on_packet(4, t0, true); // a keyframe after it
        while let Some(at) = g.poll_timeout() {
            g.poll_nacks(at, RTT);
        }
        assert_eq!(g.given_up(), 1);
        assert!(!g.needs_keyframe());
    }

    #[test]
    fn gaps_across_the_sequence_wrap() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new();
        g.on_packet(65533, t0, false);
        g.on_packet(1, t0, false);
        assert_eq!(nacks(&mut g, t0 + ms(20)), vec![65534, 65535, 0]);
        g.on_packet(65535, t0 + ms(21), false);
        g.on_packet(0, t0 + ms(21), false);
        assert_eq!(nacks(&mut g, t0 + ms(200)), vec![65534]);
    }

    #[test]
    fn huge_jump_resets_instead_of_flooding() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new();
        g.on_packet(100, t0, true);
        g.on_packet(102, t0, false); // 101 missing
        // A single stray packet far away is ignored.
        g.on_packet(40_000, t0, false);
        g.on_packet(103, t0, false);
        assert_eq!(g.missing_count(), 1);
        assert!(!g.needs_keyframe());
        // Two in sequence: the sender restarted. Nothing to NACK, and a keyframe is due.
        g.on_packet(40_000, t0, false);
        g.on_packet(40_001, t0, false);
        g.on_packet(40_002, t0, false);
        assert_eq!(g.missing_count(), 0);
        assert!(nacks(&mut g, t0 + ms(1000)).is_empty());
        assert!(g.needs_keyframe());
        g.on_packet(40_003, t0, true);
        assert!(!g.needs_keyframe());
    }

    #[test]
    fn gap_larger_than_the_list_asks_for_a_keyframe() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new();
        g.on_packet(0, t0, true);
        g.on_packet(1500, t0, false); // 1499 missing > 1000
        assert_eq!(g.missing_count(), 0);
        assert!(nacks(&mut g, t0 + ms(100)).is_empty());
        assert!(g.needs_keyframe());
        assert_eq!(g.given_up(), 1499);
    }

    #[test]
    fn gap_larger_than_the_list_closed_by_a_keyframe_needs_no_other() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new();
        g.on_packet(0, t0, false);
        g.on_packet(1500, t0, true);
        assert_eq!(g.given_up(), 1499);
        assert!(!g.needs_keyframe());
    }

    #[test]
    fn only_a_keyframe_newer_than_the_loss_clears_the_request() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new();
        g.on_packet(0, t0, false);
        g.on_packet(2, t0, false); // 1 missing
        g.on_packet(4, t0, false); // 3 missing
        g.on_packet(1, t0, false);
        while let Some(at) = g.poll_timeout() {
            g.poll_nacks(at, RTT);
        }
        assert!(g.needs_keyframe()); // 3 was given up
        g.on_packet(1, t0, true); // a late, older keyframe packet does not help
        assert!(g.needs_keyframe());
        g.on_packet(5, t0, true);
        assert!(!g.needs_keyframe());
    }

    #[test]
    fn overflow_drops_packets_older_than_the_last_keyframe_first() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new();
        g.on_packet(0, t0, false);
        g.on_packet(601, t0, true); // 1..=600 missing, then a keyframe
        g.on_packet(1202, t0, false); // 602..=1201 missing: 1200 > 1000
        assert_eq!(g.missing_count(), 600);
        assert!(!g.needs_keyframe());
        let first = nacks(&mut g, t0 + ms(20));
        assert_eq!(first.first(), Some(&602));
        assert_eq!(first.last(), Some(&1201));
    }

    #[test]
    fn old_missing_packets_leave_the_window() {
        let t0 = Instant::now();
        let cfg = NackConfig { max_window: 100, ..NackConfig::default() };
        let mut g = NackGenerator::with_config(cfg);
        g.on_packet(0, t0, false);
        g.on_packet(2, t0, false); // 1 missing
        for seq in 3..=101u16 {
            g.on_packet(seq, t0, false);
        }
        assert_eq!(g.missing_count(), 1);
        g.on_packet(102, t0, false);
        assert_eq!(g.missing_count(), 0);
        assert_eq!(g.given_up(), 1);
    }

    #[test]
    fn duplicates_and_old_packets_change_nothing() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new();
        g.on_packet(10, t0, false);
        g.on_packet(12, t0, false);
        g.on_packet(12, t0, false);
        g.on_packet(5, t0, false);
        assert_eq!(g.missing_count(), 1);
        assert_eq!(g.recovered(), 0);
    }

    #[test]
    fn random_operations_never_panic_and_stay_bounded() {
        let mut rng = StdRng::seed_from_u64(3);
        let cfg = NackConfig { max_missing: 50, max_window: 300, ..NackConfig::default() };
        let mut g = NackGenerator::with_config(cfg);
        let (deque_cap, due_cap) = (g.missing.capacity(), g.due.capacity());
        let t0 = Instant::now();
        let mut now = t0;
        let mut seq: u16 = rng.random();
        for _ in 0..200_000 {
            now += Duration::from_micros(rng.random_range(0..3000));
            match rng.random_range(0..20) {
                0 => seq = rng.random(),
                1 => seq = seq.wrapping_add(rng.random_range(0..400)),
                2 => {
                    let back = rng.random_range(0..400);
                    g.on_packet(seq.wrapping_sub(back), now, rng.random_bool(0.1));
                    continue;
                }
                3..=5 => {
                    let rtt = Duration::from_millis(rng.random_range(0..300));
                    if let Some(seqs) = g.poll_nacks(now, rtt) {
                        assert!(seqs.len() <= 50);
                    }
                    if let Some(t) = g.poll_timeout() {
                        assert!(t >= t0);
                    }
                    continue;
                }
                _ => seq = seq.wrapping_add(rng.random_range(1..3)),
            }
            g.on_packet(seq, now, rng.random_bool(0.02));
            assert!(g.missing_count() <= 50);
            assert!(g.missing.iter().zip(g.missing.iter().skip(1)).all(|(a, b)| a.ext < b.ext));
        }
        // The storage reserved at construction was never outgrown.
        assert_eq!((g.missing.capacity(), g.due.capacity()), (deque_cap, due_cap));
        assert!(g.nacks_sent() > 0 && g.recovered() > 0 && g.given_up() > 0);
    }

    /// A publisher sends 10 000 packets over a link that loses 5 % of packets both ways (NACKs
    /// and retransmissions too) with a 50 ms RTT and a little jitter. The router's
    /// `NackGenerator` asks for what is missing; the publisher answers from its
    /// `RetransmissionCache`. Nearly everything must arrive.
    #[test]
    fn nack_and_cache_recover_packets_lost_at_five_percent() {
        #[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
        enum Event {
            /// A media packet (original or retransmission) reaches the receiver.
            Media { seq: u16, payload: [u8; 4] },
            /// A NACK (its seqs are in `nack_batches[batch]`) reaches the sender.
            Nack { batch: usize },
        }

        const PACKETS: usize = 10_000;
        const INTERVAL: Duration = Duration::from_millis(2);
        let rtt = ms(50);
        let one_way = rtt / 2;
        let mut rng = StdRng::seed_from_u64(0x5eed);
        let t0 = Instant::now();

        let mut cache = RetransmissionCache::new();
        let mut throttle = ResendThrottle::new(512);
        let mut nack = NackGenerator::new();
        let mut received = vec![false; PACKETS];
        let mut nack_batches: Vec<Vec<u16>> = Vec::new();
        // (arrival time, tiebreak, event), earliest first.
        let mut queue = BinaryHeap::new();
        let mut order = 0u64;
        let mut lost_originals = 0;
        let mut resent = 0;

        type Queue = BinaryHeap<Reverse<(Instant, u64, Event)>>;
        /// Puts a media packet on the forward link, unless the link loses it.
        fn send_media(
            queue: &mut Queue,
            rng: &mut StdRng,
            order: &mut u64,
            at: Instant,
            seq: u16,
            data: &[u8],
        ) -> bool {
            if rng.random_bool(0.05) {
                return false;
            }
            let jitter = Duration::from_micros(rng.random_range(0..3000));
            let payload = [data[0], data[1], data[2], data[3]];
            *order += 1;
            queue.push(Reverse((at + jitter, *order, Event::Media { seq, payload })));
            true
        }

        let mut next_send = 0usize;
        let mut now = t0;
        loop {
            let send_at = (next_send < PACKETS).then(|| t0 + INTERVAL * next_send as u32);
            let event_at = queue.peek().map(|Reverse((at, _, _))| *at);
            let poll_at = nack.poll_timeout();
            let Some(next) = [send_at, event_at, poll_at].into_iter().flatten().min() else {
                break;
            };
            assert!(next >= now, "time goes forward");
            now = next;

            if send_at == Some(now) {
                let seq = next_send as u16;
                let packet = (next_send as u32).to_be_bytes();
                cache.insert(seq, now, &packet).expect("fits a slot");
                let at = now + one_way;
                if !send_media(&mut queue, &mut rng, &mut order, at, seq, &packet) {
                    lost_originals += 1;
                }
                next_send += 1;
            }
            while queue.peek().is_some_and(|Reverse((at, _, _))| *at <= now) {
                let Some(Reverse((_, _, event))) = queue.pop() else {
                    break;
                };
                match event {
                    Event::Media { seq, payload } => {
                        let n = u32::from_be_bytes(payload) as usize;
                        assert_eq!(n as u16, seq, "the cache returned the right packet");
                        received[n] = true;
                        nack.on_packet(seq, now, false);
                    }
                    Event::Nack { batch } => {
                        for &seq in &nack_batches[batch] {
                            if let Some(packet) = cache.get(seq, now)
                                && throttle.allow(seq, now, rtt)
                            {
                                resent += 1;
                                let at = now + one_way;
                                send_media(&mut queue, &mut rng, &mut order, at, seq, packet);
                            }
                        }
                    }
                }
            }
            if let Some(seqs) = nack.poll_nacks(now, rtt)
                && !rng.random_bool(0.05)
            {
                nack_batches.push(seqs.to_vec());
                order += 1;
                let batch = nack_batches.len() - 1;
                queue.push(Reverse((now + one_way, order, Event::Nack { batch })));
            }
        }

        let got = received.iter().filter(|r| **r).count();
        eprintln!(
            "received {got}/{PACKETS}, lost originals {lost_originals}, resent {resent}, \
             nacked {}, recovered {}, given up {}",
            nack.nacks_sent(),
            nack.recovered(),
            nack.given_up()
        );
        let ratio = got as f64 / PACKETS as f64;
        assert!(lost_originals > 400, "the link must really lose packets: {lost_originals}");
        assert!(resent >= lost_originals);
        // Few duplicates: each loss costs about one NACK and one retransmission (plus the 5 %
        // of those that are lost in turn), not one per RTT until the answer lands.
        assert!(resent < lost_originals * 13 / 10, "{resent} resent for {lost_originals}");
        assert!(nack.nacks_sent() < lost_originals as u64 * 13 / 10);
        assert!(ratio >= 0.995, "recovered only {got} of {PACKETS}");
        assert!(nack.recovered() >= lost_originals as u64 * 99 / 100);
        assert_eq!(nack.missing_count(), 0);
    }
}

//! Transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01).
//!
//! Two halves:
//! - [`TwccReceiver`], on the receiving side of a publisher's transport: every RTP packet's
//!   transport-wide sequence number (from the header extension, see
//!   [`crate::rtp::read_transport_cc`]) and arrival time go in with [`TwccReceiver::record`]; a
//!   feedback packet (RTCP RTPFB FMT=15) comes out of [`TwccReceiver::poll_feedback`] every
//!   interval (50 ms by default) or at once when more packets are waiting than one packet holds.
//!   [`TwccReceiver::poll_timeout`] says when to poll next. Time is always an argument.
//! - [`TwccFeedback`](crate::rtcp::TwccFeedback), a zero-copy view of a received feedback packet, whose
//!   [`TwccFeedback::packets`](crate::rtcp::TwccFeedback::packets) iterator yields `(sequence number, Some(delta µs) | None if lost)`
//!   for the sender's bandwidth estimate. [`crate::rtcp::packets`] produces it; the wire format
//!   (parse and write) lives in `crate::rtcp`, this module keeps the receiver's state.
//!
//! Arrival deltas are in 250 µs ticks, each relative to the previous received packet, the first
//! relative to the reference time (64 ms units). Ticks are counted from the first arrival so
//! rounding never accumulates.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use router_engine::rtcp::TwccFeedback;
//! use router_engine::twcc::TwccReceiver;
//! let t0 = Instant::now();
//! let mut rx = TwccReceiver::new();
//! rx.record(10, t0);
//! rx.record(12, t0 + Duration::from_millis(2));
//! let mut out = [0u8; 1200];
//! let due = rx.poll_timeout().unwrap();
//! let n = rx.poll_feedback(due, 1, 2, &mut out).unwrap();
//! let fb = TwccFeedback::parse(&out[4..n]).unwrap();
//! let got: Vec<_> = fb.packets().collect();
//! assert_eq!(got, vec![(10, Some(0)), (11, None), (12, Some(2000))]);
//! ```

use std::time::{Duration, Instant};

use crate::rtcp::twcc::{FIXED_LEN, FeedbackHeader, ReportedPacket, TICK_US, TICKS_PER_REFERENCE, write_feedback};

/// How often feedback is sent while packets arrive.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(50);
/// Arrivals kept between feedbacks; reserved once, so recording never allocates.
const MAX_PENDING: usize = 4096;
/// Send at once instead of waiting for the interval when this many arrivals wait.
const FORCE_FEEDBACK_AT: usize = 512;

#[derive(Debug, Clone, Copy)]
struct Arrival {
    /// Unwrapped transport-wide sequence number.
    seq: i64,
    /// 250 µs ticks since the first arrival.
    ticks: i64,
}

/// Builds transport-cc feedback from packet arrivals. See the module docs.
#[derive(Debug)]
pub struct TwccReceiver {
    interval: Duration,
    epoch: Option<Instant>,
    highest: Option<i64>,
    next_unreported: Option<i64>,
    /// Sorted by `seq`, no duplicates.
    pending: Vec<Arrival>,
    /// The arrivals of the feedback being written, with their deltas (reserved once).
    report: Vec<ReportedPacket>,
    fb_count: u8,
    last_feedback: Option<Instant>,
    send_now: bool,
    late: u64,
    overflow: u64,
}

impl Default for TwccReceiver {
    fn default() -> Self {
        Self::new()
    }
}

impl TwccReceiver {
    pub fn new() -> Self {
        Self::with_interval(DEFAULT_INTERVAL)
    }

    pub fn with_interval(interval: Duration) -> Self {
        TwccReceiver {
            interval,
            epoch: None,
            highest: None,
            next_unreported: None,
            pending: Vec::with_capacity(MAX_PENDING),
            report: Vec::with_capacity(MAX_PENDING),
            fb_count: 0,
            last_feedback: None,
            send_now: false,
            late: 0,
            overflow: 0,
        }
    }

    /// Packets that arrived after their sequence number had been reported (lost).
    pub fn late_packets(&self) -> u64 {
        self.late
    }

    /// Packets dropped because too many arrivals waited for feedback.
    pub fn overflowed_packets(&self) -> u64 {
        self.overflow
    }

    /// Records the arrival of the packet with this transport-wide sequence number.
    pub fn record(&mut self, seq: u16, arrival: Instant) {
        let epoch = *self.epoch.get_or_insert(arrival);
        let seq = match self.highest {
            None => i64::from(seq),
            Some(h) => h + i64::from(seq.wrapping_sub(h as u16) as i16),
        };
        self.highest = Some(self.highest.map_or(seq, |h| h.max(seq)));
        if self.next_unreported.is_some_and(|n| seq < n) {
            self.late += 1;
            return;
        }
        let ticks =
            (arrival.saturating_duration_since(epoch).as_micros() / TICK_US as u128).min(i64::MAX as u128) as i64;
        let at = match self.pending.binary_search_by_key(&seq, |a| a.seq) {
            Ok(_) => return, // duplicate
            Err(at) => at,
        };
        if self.pending.len() >= MAX_PENDING {
            self.overflow += 1;
            return;
        }
        self.pending.insert(at, Arrival { seq, ticks });
    }

    /// When [`Self::poll_feedback`] next has something to send; `None` when nothing waits.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.pending.is_empty() {
            return None;
        }
        let epoch = self.epoch?;
        let last = self.last_feedback.unwrap_or(epoch);
        if self.send_now || self.pending.len() >= FORCE_FEEDBACK_AT {
            return Some(last);
        }
        Some(last + self.interval)
    }

    /// Writes a feedback packet into `out` when one is due, returning its length. If not all
    /// waiting arrivals fit in `out`, the rest is due at once. Returns `None` when nothing is
    /// due or `out` is too small for even one packet (under 32 bytes).
    pub fn poll_feedback(&mut self, now: Instant, sender_ssrc: u32, media_ssrc: u32, out: &mut [u8]) -> Option<usize> {
        if now < self.poll_timeout()? {
            return None;
        }
        let first = *self.pending.first()?;
        let mut base = self.next_unreported.unwrap_or(first.seq);
        if first.seq - base > 0x4000 {
            // A huge jump: don't spend chunks reporting thousands of losses.
            base = first.seq;
        }
        let reference = first.ticks.div_euclid(TICKS_PER_REFERENCE);
        let mut prev = reference * TICKS_PER_REFERENCE;
        self.report.clear();
        let mut delta_bytes = 0;
        for i in 0..self.pending.len() {
            let a = self.pending[i];
            let delta = a.ticks - prev;
            if delta < i64::from(i16::MIN) || delta > i64::from(i16::MAX) {
                break; // the next feedback gets a fresh reference time
            }
            if a.seq - base >= 0xffff {
                break;
            }
            let this_len = if (0..=255).contains(&delta) { 1 } else { 2 };
            // Greedy encoding needs at most one chunk per received packet plus one for each
            // gap before it (and one per 8191 lost in a long gap).
            let chunk_bound = 2 * (2 * (i as i64 + 1) + (a.seq - base) / 8191 + 1);
            let need = FIXED_LEN as i64 + chunk_bound + delta_bytes + this_len + 3;
            if need > out.len() as i64 {
                break;
            }
            self.report.push(ReportedPacket { seq: a.seq, delta });
            delta_bytes += this_len;
            prev = a.ticks;
        }
        let included = self.report.len();
        if included == 0 {
            return None;
        }
        let last_seq = self.report[included - 1].seq;
        let count = last_seq - base + 1;
        let header = FeedbackHeader { sender_ssrc, media_ssrc, base, count, reference, fb_count: self.fb_count };
        let padded = write_feedback(out, &header, &self.report)?;
        self.pending.drain(..included);
        self.next_unreported = Some(last_seq + 1);
        self.fb_count = self.fb_count.wrapping_add(1);
        self.last_feedback = Some(now);
        self.send_now = !self.pending.is_empty();
        Some(padded)
    }
}

#[cfg(test)]
// A test that unwraps fails loudly on the input it was given, which is what a test should do.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::rtcp::{TwccError, TwccFeedback};
    use rand::{Rng, SeedableRng, rngs::SmallRng};
    use rtcp::transport_feedbacks::transport_layer_cc::{
        PacketStatusChunk, RecvDelta, RunLengthChunk, StatusChunkTypeTcc, StatusVectorChunk, SymbolSizeTypeTcc,
        SymbolTypeTcc, TransportLayerCc,
    };
    use webrtc_util::marshal::{Marshal, Unmarshal};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Expands their feedback into per-packet (seq, Option<delta µs>), as ours does.
    fn their_statuses(cc: &TransportLayerCc) -> Vec<(u16, Option<i64>)> {
        let mut symbols = Vec::new();
        for chunk in &cc.packet_chunks {
            match chunk {
                PacketStatusChunk::RunLengthChunk(r) => {
                    symbols.extend(std::iter::repeat_n(r.packet_status_symbol, r.run_length as usize))
                }
                PacketStatusChunk::StatusVectorChunk(v) => symbols.extend(v.symbol_list.iter()),
            }
        }
        symbols.truncate(cc.packet_status_count as usize);
        let mut deltas = cc.recv_deltas.iter();
        symbols
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let seq = cc.base_sequence_number.wrapping_add(i as u16);
                match s {
                    SymbolTypeTcc::PacketReceivedSmallDelta | SymbolTypeTcc::PacketReceivedLargeDelta => {
                        (seq, Some(deltas.next().expect("a delta per received symbol").delta))
                    }
                    _ => (seq, None),
                }
            })
            .collect()
    }

    fn parse_ours(buf: &[u8]) -> TwccFeedback<'_> {
        let mut len = buf.len();
        if buf[0] & 0x20 != 0 {
            len -= buf[len - 1] as usize;
        }
        TwccFeedback::parse(&buf[4..len]).unwrap()
    }

    #[test]
    fn feedback_reports_arrivals_losses_and_deltas() {
        let t0 = Instant::now();
        let mut rx = TwccReceiver::new();
        assert_eq!(rx.poll_timeout(), None);
        rx.record(65534, t0 + ms(1));
        rx.record(65535, t0 + ms(3));
        rx.record(1, t0 + ms(2)); // 0 lost, 1 arrives before 65535's time (negative delta)
        rx.record(1, t0 + ms(9)); // duplicate ignored
        let due = rx.poll_timeout().unwrap();
        assert_eq!(due, t0 + ms(1) + DEFAULT_INTERVAL);
        let mut out = [0u8; 1200];
        assert_eq!(rx.poll_feedback(due - ms(1), 1, 2, &mut out), None);
        let n = rx.poll_feedback(due, 0x1111, 0x2222, &mut out).unwrap();
        assert_eq!(n % 4, 0);
        let fb = parse_ours(&out[..n]);
        assert_eq!((fb.sender_ssrc, fb.media_ssrc), (0x1111, 0x2222));
        assert_eq!(fb.base_seq, 65534);
        assert_eq!(fb.status_count, 4);
        assert_eq!(fb.fb_count, 0);
        let got: Vec<_> = fb.packets().collect();
        assert_eq!(got, vec![(65534, Some(0)), (65535, Some(2000)), (0, None), (1, Some(-1000))]);
        assert_eq!(rx.poll_timeout(), None);

        // Next feedback continues after the last reported seq, with a new count.
        rx.record(3, t0 + ms(70));
        let n = rx.poll_feedback(t0 + ms(120), 1, 2, &mut out).unwrap();
        let fb = parse_ours(&out[..n]);
        assert_eq!(fb.fb_count, 1);
        assert_eq!(fb.packets().collect::<Vec<_>>(), vec![(2, None), (3, Some(5000))]);
        // 70 ms since the first arrival at 1 ms, ticks 276 → reference 1 (64 ms), delta 5.0 ms.
        assert_eq!(fb.reference_time, 1);
        rx.record(2, t0 + ms(130));
        assert_eq!(rx.late_packets(), 1);
    }

    #[test]
    fn rtcp_crate_unmarshals_our_feedback_with_same_statuses() {
        use std::collections::HashMap;
        let mut rng = SmallRng::seed_from_u64(42);
        let t0 = Instant::now();
        for round in 0..200 {
            let mut rx = TwccReceiver::new();
            // Ground truth: first arrival of each seq, and the receiver's epoch.
            let mut arrivals: HashMap<u16, Instant> = HashMap::new();
            let mut epoch = None;
            let mut record = |rx: &mut TwccReceiver, seq: u16, at: Instant| {
                rx.record(seq, at);
                epoch.get_or_insert(at);
                arrivals.entry(seq).or_insert(at);
            };
            let mut seq: u16 = rng.random();
            let mut t = t0 + ms(1);
            let n_pkts = rng.random_range(1..300);
            for _ in 0..n_pkts {
                // Mix of small gaps, bursts of loss, duplicates, reordering and long pauses.
                let skip = match rng.random_range(0..10) {
                    0 => rng.random_range(2..40),
                    1 => 0,
                    _ => 1,
                };
                seq = seq.wrapping_add(skip);
                let gap_us = match rng.random_range(0..10) {
                    0 => rng.random_range(64_000..200_000),
                    _ => rng.random_range(0..5_000),
                };
                t += Duration::from_micros(gap_us);
                let jitter = Duration::from_micros(rng.random_range(0..1_000));
                record(&mut rx, seq, t - jitter);
                if skip >= 2 && rng.random_bool(0.5) {
                    // The one before arrives after it.
                    record(&mut rx, seq.wrapping_sub(1), t + ms(1));
                }
            }
            let epoch = epoch.unwrap();
            let mut out = vec![0u8; if round % 3 == 0 { 120 } else { 1200 }];
            let mut now = t + ms(100);
            let mut feedbacks = 0;
            let mut reported = 0;
            while let Some(n) = rx.poll_feedback(now, 7, 8, &mut out) {
                feedbacks += 1;
                let fb = parse_ours(&out[..n]);
                let ours: Vec<_> = fb.packets().collect();
                let theirs = TransportLayerCc::unmarshal(&mut &out[..n]).unwrap();
                assert_eq!(theirs.sender_ssrc, 7);
                assert_eq!(their_statuses(&theirs), ours, "round {round}");
                // Reference time plus running deltas give back each arrival, to the tick.
                let mut at_us = fb.reference_time_us();
                for (s, delta) in ours {
                    match (delta, arrivals.get(&s)) {
                        (Some(d), Some(arrival)) => {
                            at_us += d;
                            let ticks = (arrival.saturating_duration_since(epoch).as_micros() / 250) as i64;
                            assert_eq!(at_us, ticks * 250, "round {round} seq {s}");
                            reported += 1;
                        }
                        (None, None) => {}
                        (d, a) => panic!("round {round} seq {s}: reported {d:?}, arrived {a:?}"),
                    }
                }
                now += ms(1);
            }
            assert!(feedbacks > 0);
            assert_eq!(reported, arrivals.len(), "every arrival reported once");
            assert_eq!(rx.poll_timeout(), None);
        }
    }

    #[test]
    fn parses_feedback_marshalled_by_rtcp_crate() {
        let cc = TransportLayerCc {
            sender_ssrc: 1,
            media_ssrc: 2,
            base_sequence_number: 100,
            packet_status_count: 10,
            reference_time: 0x123456,
            fb_pkt_count: 9,
            packet_chunks: vec![
                PacketStatusChunk::RunLengthChunk(RunLengthChunk {
                    type_tcc: StatusChunkTypeTcc::RunLengthChunk,
                    packet_status_symbol: SymbolTypeTcc::PacketReceivedSmallDelta,
                    run_length: 2,
                }),
                PacketStatusChunk::StatusVectorChunk(StatusVectorChunk {
                    type_tcc: StatusChunkTypeTcc::StatusVectorChunk,
                    symbol_size: SymbolSizeTypeTcc::TwoBit,
                    symbol_list: vec![
                        SymbolTypeTcc::PacketReceivedLargeDelta,
                        SymbolTypeTcc::PacketNotReceived,
                        SymbolTypeTcc::PacketReceivedSmallDelta,
                        SymbolTypeTcc::PacketNotReceived,
                        SymbolTypeTcc::PacketNotReceived,
                        SymbolTypeTcc::PacketNotReceived,
                        SymbolTypeTcc::PacketNotReceived,
                    ],
                }),
                PacketStatusChunk::StatusVectorChunk(StatusVectorChunk {
                    type_tcc: StatusChunkTypeTcc::StatusVectorChunk,
                    symbol_size: SymbolSizeTypeTcc::OneBit,
                    symbol_list: {
                        let mut v = vec![SymbolTypeTcc::PacketReceivedSmallDelta];
                        v.extend([SymbolTypeTcc::PacketNotReceived; 13]);
                        v
                    },
                }),
            ],
            recv_deltas: [(1, 250), (1, 500), (2, -8000), (1, 63_750), (1, 0)]
                .iter()
                .map(|&(k, d)| RecvDelta {
                    type_tcc_packet: if k == 1 {
                        SymbolTypeTcc::PacketReceivedSmallDelta
                    } else {
                        SymbolTypeTcc::PacketReceivedLargeDelta
                    },
                    delta: d,
                })
                .collect(),
        };
        let buf = cc.marshal().unwrap();
        let fb = parse_ours(&buf);
        assert_eq!(fb.reference_time, 0x123456);
        assert_eq!(fb.fb_count, 9);
        assert_eq!(fb.reference_time_us(), 0x123456 * 64_000);
        let got: Vec<_> = fb.packets().collect();
        assert_eq!(got, their_statuses(&cc));
        assert_eq!(got[2], (102, Some(-8000)));
        assert_eq!(got[3], (103, None));
        assert_eq!(got[9], (109, Some(0)));
    }

    #[test]
    fn malformed_feedback_is_an_error() {
        assert_eq!(TwccFeedback::parse(&[0; 15]), Err(TwccError::TooShort(15)));
        let mut b = [0u8; 16];
        b[11] = 3; // 3 statuses, no chunks
        assert_eq!(TwccFeedback::parse(&b), Err(TwccError::ChunksTruncated));
        let mut b = b.to_vec();
        b.extend_from_slice(&[0x20, 0x03]); // run of 3 small deltas, no delta bytes
        assert_eq!(TwccFeedback::parse(&b), Err(TwccError::DeltasTruncated));
        b.extend_from_slice(&[1, 2, 3]);
        assert_eq!(TwccFeedback::parse(&b).unwrap().packets().count(), 3);
        b[16] = 0x60; // run of the reserved symbol 3
        assert_eq!(TwccFeedback::parse(&b), Err(TwccError::ReservedSymbol));
        // A zero-length run is skipped, not looped on.
        let mut z = b[..16].to_vec();
        z[11] = 1;
        z.extend_from_slice(&[0x00, 0x00, 0x20, 0x01, 4, 0, 0, 0]);
        let fb = TwccFeedback::parse(&z).unwrap();
        assert_eq!(fb.packets().collect::<Vec<_>>(), vec![(0, Some(1000))]);
    }

    #[test]
    fn full_buffer_forces_feedback_and_splits_it() {
        let t0 = Instant::now();
        let mut rx = TwccReceiver::new();
        for i in 0..FORCE_FEEDBACK_AT as u16 {
            rx.record(i, t0 + Duration::from_micros(u64::from(i) * 100));
        }
        assert_eq!(rx.poll_timeout(), Some(t0), "due at once, not after the interval");
        let mut out = [0u8; 200];
        let mut covered = 0usize;
        let mut next_base = 0u16;
        let mut now = t0;
        while let Some(n) = rx.poll_feedback(now, 1, 2, &mut out) {
            assert!(n <= out.len());
            let fb = parse_ours(&out[..n]);
            assert_eq!(fb.base_seq, next_base);
            covered += fb.status_count as usize;
            next_base = next_base.wrapping_add(fb.status_count);
            now += Duration::from_micros(10);
        }
        assert_eq!(covered, FORCE_FEEDBACK_AT);
        assert!(rx.poll_feedback(now, 1, 2, &mut [0u8; 16]).is_none());
    }

    #[test]
    fn random_feedback_bytes_never_panic() {
        let mut rng = SmallRng::seed_from_u64(3);
        let mut buf = [0u8; 64];
        let mut parsed = 0;
        for _ in 0..100_000 {
            let len = rng.random_range(0..buf.len());
            rng.fill(&mut buf[..len]);
            if len > 11 {
                buf[10] = 0;
                buf[11] &= 0x3f;
            }
            if let Ok(fb) = TwccFeedback::parse(&buf[..len]) {
                assert_eq!(fb.packets().count(), fb.status_count as usize);
                parsed += 1;
            }
        }
        assert!(parsed > 1_000, "only {parsed} parsed: the input is not reaching the iterator");
    }
}

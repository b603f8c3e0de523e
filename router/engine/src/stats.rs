//! Receive and send statistics of one RTP stream (RFC 3550 A.1, A.3, A.8), and NTP time.
//!
//! The router keeps one [`ReceiveStats`] per incoming RTP stream (publisher to router) and one
//! [`SendStats`] per outgoing stream (router to subscriber). Both are plain state machines: the
//! caller feeds numbers it already parsed out of the packet (sequence number, RTP timestamp,
//! payload length) together with the packet's receive or send time, and asks for the numbers
//! it needs to write an RTCP receiver report block or sender report. Nothing here reads a clock
//! or touches bytes.
//!
//! ```text
//!  RTP in ──update(seq, ts, arrival, clock_rate)──► ReceiveStats ──report_block(now)──► RR block
//!  SR in  ──on_sender_report(ntp, arrival)────────►      (LSR/DLSR for the RR block)
//!  RTP out ─on_packet(ts, payload_len, now)───────► SendStats ──sender_report_info(..)──► SR
//! ```
//!
//! Wall-clock time enters through [`NtpClock`]: the I/O shell reads the system clock once at
//! start-up, pairs it with an `Instant`, and from then on every NTP timestamp is derived from
//! the `Instant` passed in.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use router_engine::stats::{NtpClock, ReceiveStats};
//!
//! let t0 = Instant::now();
//! let mut rx = ReceiveStats::new();
//! for i in 0..10u16 {
//!     if i == 5 {
//!         continue; // lost
//!     }
//!     let at = t0 + Duration::from_millis(20 * u64::from(i));
//!     rx.update(1000 + i, 160 * u32::from(i), at, 8000);
//! }
//! let block = rx.report_block(t0 + Duration::from_secs(1)).expect("the source is valid");
//! assert_eq!(block.cumulative_lost, 1);
//! assert_eq!(block.fraction_lost, 25); // 1 of 10, in 1/256 units
//!
//! let clock = NtpClock::from_unix(t0, Duration::from_secs(1_700_000_000));
//! assert_eq!(clock.ntp(t0 + Duration::from_millis(500)) - clock.ntp(t0), 1 << 31);
//! ```

use std::time::{Duration, Instant};

/// Sequential packets needed before a new source counts as valid (RFC 3550 A.1).
const MIN_SEQUENTIAL: u32 = 2;
/// Largest forward jump still taken as loss rather than a discontinuity (RFC 3550 A.1).
const MAX_DROPOUT: u16 = 3000;
/// Largest backward jump still taken as reordering rather than a discontinuity (RFC 3550 A.1).
const MAX_MISORDER: u16 = 100;
const RTP_SEQ_MOD: u32 = 1 << 16;
/// A jitter sample larger than this many seconds of media is a timestamp discontinuity (a
/// sender restart, a muted track resuming), not network jitter; it would poison the average.
const MAX_JITTER_SAMPLE_SECS: u64 = 5;
/// Seconds between the NTP epoch (1900) and the Unix epoch (1970).
const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

/// Extends a 16-bit sequence number to 64 bits, relative to the last extended one: the result
/// is the value nearest to `last_ext` whose low 16 bits are `seq`.
///
/// Shared by the NACK generator and the retransmission cache, which index by extended numbers
/// so that a wrap at 65535 needs no special case.
pub fn extend_seq(last_ext: i64, seq: u16) -> i64 {
    // Truncation to u16 is the point: the delta is taken modulo 2^16, then read as signed.
    let delta = seq.wrapping_sub(last_ext as u16) as i16;
    last_ext + i64::from(delta)
}

/// What [`ReceiveStats::update`] made of a packet's sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqOutcome {
    /// A new highest sequence number (possibly after a gap); counted.
    InOrder,
    /// Older than the highest, or a duplicate; counted (RFC 3550 counts duplicates too, which
    /// is why cumulative loss can go negative).
    Late,
    /// The source is still on probation: not counted yet.
    Probation,
    /// A jump too large to be loss or reordering; not counted. If the next packet follows it
    /// in sequence, the source is taken to have restarted.
    Discontinuity,
    /// The sequence restarted (two sequential packets after a discontinuity); counting starts
    /// afresh from this packet.
    Restarted,
}

/// One RTCP report block (RFC 3550 6.4.1): the RTCP writer's own type, so a block goes from
/// these statistics to the wire unchanged. `report_block` leaves `ssrc` 0 for the caller, who
/// knows which source it describes.
pub use crate::rtcp::ReportBlock as ReportBlockData;

/// Receive statistics of one incoming RTP stream: sequence tracking with wrap and probation
/// (RFC 3550 A.1), loss (A.3), interarrival jitter (A.8), and the last sender report.
#[derive(Debug, Clone)]
pub struct ReceiveStats {
    /// `None` until the first packet.
    started: bool,
    /// Sequential packets still needed before the source is valid; 0 when valid.
    probation: u32,
    max_seq: u16,
    /// Wrap count of the sequence number, shifted left 16 bits (as RFC 3550's `cycles`).
    cycles: u64,
    /// Extended sequence number counting starts from.
    base_seq: u64,
    /// The sequence number that confirms a discontinuity; out of the u16 range when none.
    bad_seq: u32,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Jitter times 16 (RFC 3550 A.8's fixed point), kept signed for the update arithmetic.
    jitter_q4: i64,
    /// Transit time of the last packet used for jitter, in timestamp units, and its RTP
    /// timestamp.
    last_transit: Option<(u32, u32)>,
    /// Arrival times are measured in timestamp units from this instant.
    arrival_anchor: Option<Instant>,
    /// Compact NTP time of the last sender report and when it arrived.
    last_sr: Option<(u32, Instant)>,
}

impl Default for ReceiveStats {
    fn default() -> Self {
        Self::new()
    }
}

impl ReceiveStats {
    pub fn new() -> Self {
        Self {
            started: false,
            probation: MIN_SEQUENTIAL,
            max_seq: 0,
            cycles: 0,
            base_seq: 0,
            bad_seq: RTP_SEQ_MOD + 1,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            jitter_q4: 0,
            last_transit: None,
            arrival_anchor: None,
            last_sr: None,
        }
    }

    /// Feeds one received RTP packet: its sequence number, RTP timestamp, receive time and the
    /// payload type's clock rate (a clock rate of 0 skips the jitter update).
    ///
    /// Feed retransmitted packets (recovered from RTX) too, so that a recovered packet stops
    /// counting as lost; they are late and so never distort the jitter.
    pub fn update(&mut self, seq: u16, rtp_ts: u32, arrival: Instant, clock_rate: u32) -> SeqOutcome {
        let outcome = self.update_seq(seq);
        match outcome {
            // Jitter from in-order packets only: a late packet's transit includes the time it
            // spent being reordered or retransmitted, which is not what the sender should read
            // as network jitter (libwebrtc does the same).
            SeqOutcome::InOrder | SeqOutcome::Probation => {
                self.update_jitter(rtp_ts, arrival, clock_rate);
            }
            SeqOutcome::Restarted => {
                self.last_transit = None;
                self.update_jitter(rtp_ts, arrival, clock_rate);
            }
            SeqOutcome::Late | SeqOutcome::Discontinuity => {}
        }
        outcome
    }

    /// RFC 3550 A.1 `update_seq`, except that the packets that pass probation are counted as
    /// received (the RFC drops the first one from the statistics).
    fn update_seq(&mut self, seq: u16) -> SeqOutcome {
        if !self.started {
            self.started = true;
            self.init_seq(seq);
            self.max_seq = seq.wrapping_sub(1);
            self.probation = MIN_SEQUENTIAL;
        }
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    // The run that passed probation is MIN_SEQUENTIAL packets long and ends here.
                    let back = u64::from(MIN_SEQUENTIAL - 1);
                    self.init_seq(seq);
                    if u64::from(seq) < back {
                        // The run crossed the wrap: its start is in the cycle before.
                        self.cycles = u64::from(RTP_SEQ_MOD);
                    }
                    self.base_seq = self.cycles + u64::from(seq) - back;
                    self.received = u64::from(MIN_SEQUENTIAL);
                    return SeqOutcome::InOrder;
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return SeqOutcome::Probation;
        }
        let outcome = if udelta == 0 {
            SeqOutcome::Late
        } else if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles += u64::from(RTP_SEQ_MOD);
            }
            self.max_seq = seq;
            SeqOutcome::InOrder
        } else if u32::from(udelta) <= RTP_SEQ_MOD - u32::from(MAX_MISORDER) {
            if u32::from(seq) == self.bad_seq {
                // Two sequential packets after a jump: the sender restarted its sequence.
                // Keep the report counters' history meaningful by restarting them too.
                self.init_seq(seq);
                self.expected_prior = 0;
                self.received_prior = 0;
                self.received = 1;
                return SeqOutcome::Restarted;
            }
            self.bad_seq = (u32::from(seq) + 1) & (RTP_SEQ_MOD - 1);
            return SeqOutcome::Discontinuity;
        } else {
            SeqOutcome::Late
        };
        self.received += 1;
        outcome
    }

    fn init_seq(&mut self, seq: u16) {
        self.base_seq = u64::from(seq);
        self.max_seq = seq;
        self.bad_seq = RTP_SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
    }

    /// RFC 3550 A.8, in libwebrtc's rounding fixed point (jitter kept times 16), skipping
    /// packets that carry the previous packet's timestamp: the packets of one video frame are
    /// sent in a paced burst, and their spread is the sender's pacing, not the network's jitter.
    fn update_jitter(&mut self, rtp_ts: u32, arrival: Instant, clock_rate: u32) {
        if clock_rate == 0 {
            return;
        }
        let anchor = *self.arrival_anchor.get_or_insert(arrival);
        let since = arrival.saturating_duration_since(anchor);
        let arrival_ts = (since.as_nanos() * u128::from(clock_rate) / 1_000_000_000) as u32;
        // Wrapping, as the RTP timestamp itself: only differences of transits matter.
        let transit = arrival_ts.wrapping_sub(rtp_ts);
        if let Some((last_transit, last_ts)) = self.last_transit {
            if last_ts == rtp_ts {
                return;
            }
            let d = i64::from(transit.wrapping_sub(last_transit) as i32).abs();
            if d as u64 <= u64::from(clock_rate) * MAX_JITTER_SAMPLE_SECS {
                self.jitter_q4 += ((d << 4) - self.jitter_q4 + 8) >> 4;
            }
        }
        self.last_transit = Some((transit, rtp_ts));
    }

    /// Notes a sender report from this stream's source: its NTP timestamp and when it arrived,
    /// for the LSR and DLSR of the next report block.
    pub fn on_sender_report(&mut self, ntp_time: u64, arrival: Instant) {
        self.last_sr = Some((compact_ntp(ntp_time), arrival));
    }

    /// The report block for this stream at `now`, and the start of a new interval for
    /// `fraction_lost`. `None` while the source is not valid yet (nothing to report).
    pub fn report_block(&mut self, now: Instant) -> Option<ReportBlockData> {
        if !self.is_valid() {
            return None;
        }
        let expected = self.expected();
        let expected_interval = expected.saturating_sub(self.expected_prior);
        let received_interval = self.received.saturating_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            // lost_interval <= expected_interval, so the quotient is at most 256; the cap
            // keeps it in the byte.
            ((lost_interval as u64) * 256 / expected_interval).min(255) as u8
        };
        let (lsr, dlsr) = match self.last_sr {
            Some((lsr, at)) => (lsr, duration_to_compact(now.saturating_duration_since(at))),
            None => (0, 0),
        };
        Some(ReportBlockData {
            ssrc: 0,
            fraction_lost,
            cumulative_lost: self.cumulative_lost(),
            ext_highest_seq: self.ext_highest_seq(),
            jitter: self.jitter(),
            lsr,
            dlsr,
        })
    }

    /// Whether the source passed probation (RFC 3550 A.1).
    pub fn is_valid(&self) -> bool {
        self.started && self.probation == 0
    }

    /// Packets counted as received (duplicates included, as RFC 3550 says).
    pub fn packets_received(&self) -> u64 {
        self.received
    }

    /// Packets expected: extended highest minus base plus one; 0 before the source is valid.
    pub fn expected(&self) -> u64 {
        if !self.is_valid() {
            return 0;
        }
        (self.cycles + u64::from(self.max_seq) + 1).saturating_sub(self.base_seq)
    }

    /// Expected minus received since the start, clamped to the report block's 24-bit field.
    pub fn cumulative_lost(&self) -> i32 {
        clamp_cumulative_lost(self.expected() as i64 - self.received as i64)
    }

    /// Extended highest sequence number received, wrapping at 32 bits as the report field.
    pub fn ext_highest_seq(&self) -> u32 {
        (self.cycles + u64::from(self.max_seq)) as u32
    }

    /// Interarrival jitter in RTP timestamp units.
    pub fn jitter(&self) -> u32 {
        (self.jitter_q4 >> 4) as u32
    }
}

/// Clamps a loss count to the 24-bit signed "cumulative number of packets lost" field.
fn clamp_cumulative_lost(lost: i64) -> i32 {
    lost.clamp(-(1 << 23), (1 << 23) - 1) as i32
}

/// Send statistics of one outgoing RTP stream: what a sender report needs.
#[derive(Debug, Clone, Default)]
pub struct SendStats {
    packets: u64,
    octets: u64,
    /// RTP timestamp and send time of the last packet sent.
    last: Option<(u32, Instant)>,
}

/// The sender-info part of a sender report (RFC 3550 6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReportInfo {
    /// NTP time the report is written at.
    pub ntp: u64,
    /// The RTP timestamp corresponding to `ntp`, extrapolated from the last packet sent.
    pub rtp_ts: u32,
    /// Packets sent since the start, wrapping at 32 bits as the field.
    pub packet_count: u32,
    /// Payload octets sent since the start, wrapping at 32 bits as the field.
    pub octet_count: u32,
}

impl SendStats {
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes one packet sent on this stream: its RTP timestamp, payload length (RFC 3550
    /// counts payload octets only, no header or padding) and send time.
    pub fn on_packet(&mut self, rtp_ts: u32, payload_len: usize, now: Instant) {
        self.packets += 1;
        self.octets += payload_len as u64;
        self.last = Some((rtp_ts, now));
    }

    /// The sender info of a sender report written at `now` (NTP time `ntp_now`), or `None` if
    /// nothing was sent yet (no RTP timestamp to map the NTP time to).
    ///
    /// The RTP timestamp is the last packet's, advanced by the time since it was sent at the
    /// clock rate: a receiver uses the (NTP, RTP) pair to synchronise this stream with the
    /// others of the same sender, so it must name the same instant.
    pub fn sender_report_info(&self, now: Instant, ntp_now: u64, clock_rate: u32) -> Option<SenderReportInfo> {
        let (last_ts, sent_at) = self.last?;
        let elapsed = now.saturating_duration_since(sent_at);
        let advance = (elapsed.as_nanos() * u128::from(clock_rate) / 1_000_000_000) as u32;
        Some(SenderReportInfo {
            ntp: ntp_now,
            rtp_ts: last_ts.wrapping_add(advance),
            packet_count: self.packets as u32,
            octet_count: self.octets as u32,
        })
    }

    pub fn packets_sent(&self) -> u64 {
        self.packets
    }

    pub fn octets_sent(&self) -> u64 {
        self.octets
    }
}

/// Maps `Instant`s to 64-bit NTP timestamps (32.32 fixed point seconds since 1900), from one
/// pairing of an `Instant` with the wall clock taken by the I/O shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NtpClock {
    pub anchor_instant: Instant,
    pub anchor_ntp: u64,
}

impl NtpClock {
    pub fn new(anchor_instant: Instant, anchor_ntp: u64) -> Self {
        Self { anchor_instant, anchor_ntp }
    }

    /// Anchors at `anchor_instant` = `since_unix_epoch` of wall-clock time (what
    /// `SystemTime::now().duration_since(UNIX_EPOCH)` gives the shell).
    pub fn from_unix(anchor_instant: Instant, since_unix_epoch: Duration) -> Self {
        let ntp = duration_to_ntp(since_unix_epoch + Duration::from_secs(NTP_UNIX_OFFSET_SECS));
        Self::new(anchor_instant, ntp)
    }

    /// NTP time at `at`; instants before the anchor work too. Wraps as NTP does (in 2036).
    pub fn ntp(&self, at: Instant) -> u64 {
        match at.checked_duration_since(self.anchor_instant) {
            Some(after) => self.anchor_ntp.wrapping_add(duration_to_ntp(after)),
            None => self.anchor_ntp.wrapping_sub(duration_to_ntp(self.anchor_instant.saturating_duration_since(at))),
        }
    }
}

/// A duration as 32.32 fixed-point seconds (the seconds wrap at 2^32, as NTP's).
pub fn duration_to_ntp(d: Duration) -> u64 {
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (d.as_secs() << 32).wrapping_add(frac)
}

/// The middle 32 bits of an NTP timestamp (16.16 seconds), as LSR and DLSR use.
pub fn compact_ntp(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// A duration in 1/65536 s (the DLSR unit), saturating at the field's maximum.
fn duration_to_compact(d: Duration) -> u32 {
    let units = d.as_nanos() * 65536 / 1_000_000_000;
    units.min(u128::from(u32::MAX)) as u32
}

fn compact_to_duration(c: u32) -> Duration {
    Duration::from_nanos(u64::from(c) * 1_000_000_000 / 65536)
}

/// Round-trip time from a report block that answers one of our sender reports (RFC 3550
/// 6.4.1): `now - LSR - DLSR` in compact NTP. `None` if the block names no sender report
/// (LSR 0); zero if clock error made it negative.
pub fn round_trip_time(now_ntp: u64, lsr: u32, dlsr: u32) -> Option<Duration> {
    if lsr == 0 {
        return None;
    }
    let since_sr = compact_ntp(now_ntp).wrapping_sub(lsr);
    // A "negative" span (the report names a future SR, or the delay exceeds the span) is
    // noise from a broken peer; treat it as no time at all rather than as 18 hours.
    if since_sr > u32::MAX / 2 || since_sr < dlsr {
        return Some(Duration::ZERO);
    }
    Some(compact_to_duration(since_sr - dlsr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn extend_seq_crosses_the_wrap_both_ways() {
        assert_eq!(extend_seq(65535, 0), 65536);
        assert_eq!(extend_seq(65536, 65535), 65535);
        assert_eq!(extend_seq(100, 90), 90);
        assert_eq!(extend_seq(0, 65535), -1);
        assert_eq!(extend_seq(70_000, 70_000u32 as u16), 70_000);
    }

    #[test]
    fn jitter_matches_hand_computed_example() {
        // 8 kHz clock: 1 ms is 8 timestamp units. Packets every 20 ms (160 units).
        let t0 = Instant::now();
        let mut rx = ReceiveStats::new();
        // (arrival ms, rtp ts) -> transit in units: 0, 0, 40, 0, 16
        let packets = [(0, 0), (20, 160), (45, 320), (60, 480), (82, 640)];
        for (i, &(at, ts)) in packets.iter().enumerate() {
            rx.update(500 + i as u16, ts, t0 + ms(at), 8000);
        }
        // Jitter times 16, J += (16*d - J + 8) >> 4 with d = |transit difference|:
        //   d=0:  J = 0
        //   d=40: J = (640 - 0 + 8) >> 4 = 40              (2.5 units)
        //   d=40: J = 40 + ((640 - 40 + 8) >> 4) = 78      (4.875)
        //   d=16: J = 78 + ((256 - 78 + 8) >> 4) = 89      (5.5625)
        // The RFC's floating form gives 0, 2.5, 4.84, 5.54: the same to the unit.
        assert_eq!(rx.jitter_q4, 89);
        assert_eq!(rx.jitter(), 5);
        assert_eq!(rx.report_block(t0 + ms(100)).map(|b| b.jitter), Some(5));
    }

    #[test]
    fn jitter_tracks_the_floating_point_formula() {
        let mut rng = StdRng::seed_from_u64(7);
        let t0 = Instant::now();
        let mut rx = ReceiveStats::new();
        let mut reference = 0.0f64;
        let mut last_transit: Option<f64> = None;
        for i in 0..2000u32 {
            let ts = i * 3000; // 90 kHz, 30 fps
            let send_ms = f64::from(i) * 1000.0 / 30.0;
            let arrival_us = ((send_ms + rng.random_range(0.0..40.0)) * 1000.0) as u64;
            let arrival = t0 + Duration::from_micros(arrival_us);
            rx.update(i as u16, ts, arrival, 90_000);
            let arrival_ts = (arrival_us as u128 * 90_000 / 1_000_000) as f64;
            let transit = arrival_ts - f64::from(ts);
            if let Some(last) = last_transit {
                reference += ((transit - last).abs() - reference) / 16.0;
            }
            last_transit = Some(transit);
        }
        let ours = f64::from(rx.jitter());
        assert!((ours - reference).abs() <= 2.0, "ours {ours}, reference {reference}");
        assert!(reference > 500.0, "the test must exercise real jitter");
    }

    #[test]
    fn jitter_skips_packets_of_the_same_frame_and_late_packets() {
        let t0 = Instant::now();
        let mut rx = ReceiveStats::new();
        rx.update(1, 0, t0, 90_000);
        rx.update(2, 3000, t0 + ms(33), 90_000);
        // Same frame, paced 10 ms later: not jitter.
        rx.update(3, 3000, t0 + ms(43), 90_000);
        // Late packet (a retransmission) half a second after: not jitter either.
        rx.update(0, 0, t0 + ms(500), 90_000);
        // Only packet 2 counts: 33 ms is 2970 units, transit -30, d = 30, J = 30/16.
        assert_eq!(rx.jitter_q4, 30);
        assert_eq!(rx.jitter(), 1);
    }

    #[test]
    fn loss_is_counted_across_the_sequence_wrap() {
        let t0 = Instant::now();
        let mut rx = ReceiveStats::new();
        let feed = |rx: &mut ReceiveStats, seq: u16| {
            rx.update(seq, u32::from(seq) * 160, t0, 8000);
        };
        // 65530..=65535, 0..=9 with 65534, 3 and 4 lost.
        for seq in (65530..=65535u16).chain(0..=9) {
            if ![65534, 3, 4].contains(&seq) {
                feed(&mut rx, seq);
            }
        }
        assert_eq!(rx.expected(), 16);
        assert_eq!(rx.packets_received(), 13);
        let b = rx.report_block(t0).expect("valid source");
        assert_eq!(b.ext_highest_seq, 0x1_0009);
        assert_eq!(b.cumulative_lost, 3);
        assert_eq!(b.fraction_lost, (3 * 256 / 16) as u8); // 48

        // Next interval: 10..=19 without 15, and 3 arrives late (recovered).
        for seq in 10..=19u16 {
            if seq != 15 {
                feed(&mut rx, seq);
            }
        }
        feed(&mut rx, 3);
        let b = rx.report_block(t0).expect("valid source");
        assert_eq!(b.ext_highest_seq, 0x1_0013);
        assert_eq!(b.cumulative_lost, 3); // 65534, 4, 15
        // 10 expected, 10 received in the interval (the late 3 makes up for 15).
        assert_eq!(b.fraction_lost, 0);

        // An empty interval reports no loss.
        let b = rx.report_block(t0).expect("valid source");
        assert_eq!(b.fraction_lost, 0);
        assert_eq!(b.cumulative_lost, 3);
    }

    #[test]
    fn fraction_lost_is_per_interval() {
        let t0 = Instant::now();
        let mut rx = ReceiveStats::new();
        for seq in 0..100u16 {
            if seq % 4 != 2 {
                rx.update(seq, 0, t0, 0);
            }
        }
        let b = rx.report_block(t0).expect("valid source");
        assert_eq!(b.fraction_lost, 64); // 25 of 100
        for seq in 100..200u16 {
            rx.update(seq, 0, t0, 0);
        }
        let b = rx.report_block(t0).expect("valid source");
        assert_eq!(b.fraction_lost, 0);
        assert_eq!(b.cumulative_lost, 25);
    }

    #[test]
    fn new_source_is_on_probation_until_two_sequential_packets() {
        let t0 = Instant::now();
        let mut rx = ReceiveStats::new();
        assert_eq!(rx.update(10, 0, t0, 0), SeqOutcome::Probation);
        assert!(rx.report_block(t0).is_none());
        // Not sequential: probation starts over from 50.
        assert_eq!(rx.update(50, 0, t0, 0), SeqOutcome::Probation);
        assert!(!rx.is_valid());
        assert_eq!(rx.update(51, 0, t0, 0), SeqOutcome::InOrder);
        assert!(rx.is_valid());
        // Both packets of the run count.
        assert_eq!(rx.packets_received(), 2);
        assert_eq!(rx.expected(), 2);
        assert_eq!(rx.cumulative_lost(), 0);
    }

    #[test]
    fn probation_run_across_the_wrap_counts_from_its_first_packet() {
        let t0 = Instant::now();
        let mut rx = ReceiveStats::new();
        rx.update(65535, 0, t0, 0);
        assert_eq!(rx.update(0, 0, t0, 0), SeqOutcome::InOrder);
        assert_eq!(rx.expected(), 2);
        assert_eq!(rx.cumulative_lost(), 0);
        assert_eq!(rx.ext_highest_seq(), 65536);
        rx.update(2, 0, t0, 0);
        assert_eq!(rx.cumulative_lost(), 1);
    }

    #[test]
    fn a_stray_jump_is_ignored_and_a_confirmed_one_restarts() {
        let t0 = Instant::now();
        let mut rx = ReceiveStats::new();
        for seq in 0..10u16 {
            rx.update(seq, 0, t0, 0);
        }
        assert_eq!(rx.update(40_000, 0, t0, 0), SeqOutcome::Discontinuity);
        assert_eq!(rx.update(10, 0, t0, 0), SeqOutcome::InOrder);
        assert_eq!(rx.expected(), 11);
        assert_eq!(rx.cumulative_lost(), 0);
        // Two in a row: the sender restarted.
        assert_eq!(rx.update(30_000, 0, t0, 0), SeqOutcome::Discontinuity);
        assert_eq!(rx.update(30_001, 0, t0, 0), SeqOutcome::Restarted);
        assert_eq!(rx.update(30_002, 0, t0, 0), SeqOutcome::InOrder);
        assert_eq!(rx.expected(), 2);
        assert_eq!(rx.packets_received(), 2);
        assert_eq!(rx.ext_highest_seq(), 30_002);
    }

    #[test]
    fn duplicates_make_cumulative_loss_negative() {
        let t0 = Instant::now();
        let mut rx = ReceiveStats::new();
        for seq in 0..5u16 {
            rx.update(seq, 0, t0, 0);
        }
        assert_eq!(rx.update(4, 0, t0, 0), SeqOutcome::Late);
        assert_eq!(rx.update(3, 0, t0, 0), SeqOutcome::Late);
        assert_eq!(rx.cumulative_lost(), -2);
        assert_eq!(rx.report_block(t0).map(|b| b.fraction_lost), Some(0));
    }

    #[test]
    fn cumulative_lost_clamps_to_24_bits() {
        assert_eq!(clamp_cumulative_lost(10_000_000), 0x7F_FFFF);
        assert_eq!(clamp_cumulative_lost(-10_000_000), -0x80_0000);
        assert_eq!(clamp_cumulative_lost(-5), -5);
    }

    #[test]
    fn report_block_carries_lsr_and_dlsr_of_the_last_sender_report() {
        let t0 = Instant::now();
        let mut rx = ReceiveStats::new();
        rx.update(1, 0, t0, 0);
        rx.update(2, 0, t0, 0);
        let b = rx.report_block(t0).expect("valid source");
        assert_eq!((b.lsr, b.dlsr), (0, 0));
        rx.on_sender_report(0xAAAA_BBBB_CCCC_DDDD, t0);
        let b = rx.report_block(t0 + ms(1500)).expect("valid source");
        assert_eq!(b.lsr, 0xBBBB_CCCC);
        assert_eq!(b.dlsr, 98_304); // 1.5 * 65536
    }

    #[test]
    fn sender_report_extrapolates_the_rtp_timestamp() {
        let t0 = Instant::now();
        let mut tx = SendStats::new();
        assert!(tx.sender_report_info(t0, 1, 90_000).is_none());
        tx.on_packet(1000, 1200, t0);
        tx.on_packet(u32::MAX - 100, 800, t0 + ms(10));
        let sr = tx.sender_report_info(t0 + ms(110), 0x1234_5678_0000_0000, 90_000).expect("a packet was sent");
        assert_eq!(sr.ntp, 0x1234_5678_0000_0000);
        // 100 ms at 90 kHz is 9000 units, wrapping past u32::MAX.
        assert_eq!(sr.rtp_ts, (u32::MAX - 100).wrapping_add(9000));
        assert_eq!(sr.packet_count, 2);
        assert_eq!(sr.octet_count, 2000);
    }

    #[test]
    fn ntp_clock_maps_instants_both_sides_of_the_anchor() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let clock = NtpClock::from_unix(t0, Duration::from_secs(1_700_000_000));
        assert_eq!(clock.anchor_ntp, (1_700_000_000u64 + 2_208_988_800) << 32);
        assert_eq!(clock.ntp(t0 + ms(1500)), clock.anchor_ntp + (3 << 31));
        assert_eq!(clock.ntp(t0 - ms(500)), clock.anchor_ntp - (1 << 31));
        assert_eq!(duration_to_ntp(Duration::from_nanos(1)), 4); // 2^32 / 1e9, truncated
    }

    #[test]
    fn round_trip_time_from_lsr_and_dlsr() {
        let sr_ntp = 0x0000_1000_8000_0000u64; // 4096.5 s
        let lsr = compact_ntp(sr_ntp);
        // The peer held it 250 ms; it comes back 400 ms after we sent it: RTT 150 ms.
        let dlsr = duration_to_compact(ms(250));
        let now = sr_ntp + duration_to_ntp(ms(400));
        let rtt = round_trip_time(now, lsr, dlsr).expect("names an SR");
        assert!(rtt.abs_diff(ms(150)) < Duration::from_micros(50), "{rtt:?}");
        assert_eq!(round_trip_time(now, 0, dlsr), None);
        assert_eq!(round_trip_time(now, lsr, dlsr * 4), Some(Duration::ZERO));
    }

    #[test]
    fn random_updates_never_panic_and_stay_consistent() {
        let mut rng = StdRng::seed_from_u64(42);
        let t0 = Instant::now();
        let mut rx = ReceiveStats::new();
        let mut now = t0;
        let mut seq: u16 = rng.random();
        for _ in 0..100_000 {
            now += Duration::from_micros(rng.random_range(0..5000));
            seq = match rng.random_range(0..10) {
                0 => rng.random(),
                1 => seq.wrapping_sub(rng.random_range(0..200)),
                2 => seq.wrapping_add(rng.random_range(0..4000)),
                _ => seq.wrapping_add(1),
            };
            let clock = [0, 8000, 48_000, 90_000, u32::MAX][rng.random_range(0..5)];
            rx.update(seq, rng.random(), now, clock);
            if rng.random_range(0..50) == 0 {
                rx.on_sender_report(rng.random(), now);
            }
            if rng.random_range(0..100) == 0
                && let Some(b) = rx.report_block(now)
            {
                assert!((-(1 << 23)..(1 << 23)).contains(&b.cumulative_lost));
            }
        }
    }
}

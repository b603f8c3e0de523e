//! The subscriber's accounting, sans-IO: every input carries its arrival time (µs on the run's
//! clock), so the same code counts a real run and a simulated network where the truth is known
//! (`tests/`).
//!
//! Per received track: packets and bytes, loss from the sequence-number range (RFC 3550: the
//! highest extended sequence number seen minus the first, plus one, minus what arrived),
//! interarrival jitter (RFC 3550 §6.4.1), one-way latency from the payload's send stamp, video
//! freezes (the WebRTC stats definition: a frame later than max(3 × the mean frame interval,
//! the mean + 150 ms)) and layer switches. Per connection: the join timeline.

use serde::Serialize;

use crate::stamp;

/// A window of recently seen sequence numbers, to count duplicates without keeping them all.
const WINDOW: u64 = 1024;

/// What one subscriber has received on one track.
#[derive(Debug, Clone, Serialize)]
pub struct TrackRecv {
    pub video: bool,
    /// The publisher's source id from the stamp (see [`stamp::source_id`]).
    pub source: Option<u32>,
    pub packets: u64,
    pub bytes: u64,
    pub duplicates: u64,
    pub first_seq: Option<u64>,
    pub max_seq: u64,
    /// Interarrival jitter in µs.
    pub jitter_us: f64,
    /// One-way latency per packet, µs (send stamp to arrival).
    #[serde(skip)]
    pub latency_us: Vec<u32>,
    pub frames: u64,
    pub freezes: u64,
    pub freeze_us: u64,
    pub layer: Option<u8>,
    pub layer_switches: u64,
    pub first_packet_us: Option<u64>,
    pub first_keyframe_us: Option<u64>,
    #[serde(skip)]
    clock_rate: u32,
    #[serde(skip)]
    seen: [u64; (WINDOW / 64) as usize],
    #[serde(skip)]
    last_transit: Option<f64>,
    #[serde(skip)]
    last_frame_us: Option<u64>,
    #[serde(skip)]
    last_frame_ts: Option<u32>,
    #[serde(skip)]
    mean_frame_us: f64,
}

impl TrackRecv {
    pub fn new(video: bool) -> TrackRecv {
        TrackRecv {
            video,
            source: None,
            packets: 0,
            bytes: 0,
            duplicates: 0,
            first_seq: None,
            max_seq: 0,
            jitter_us: 0.0,
            latency_us: Vec::new(),
            frames: 0,
            freezes: 0,
            freeze_us: 0,
            layer: None,
            layer_switches: 0,
            first_packet_us: None,
            first_keyframe_us: None,
            clock_rate: if video { 90_000 } else { 48_000 },
            seen: [0; (WINDOW / 64) as usize],
            last_transit: None,
            last_frame_us: None,
            last_frame_ts: None,
            mean_frame_us: 0.0,
        }
    }

    /// One packet: its extended sequence number, RTP timestamp, marker, payload and arrival.
    pub fn on_packet(&mut self, at_us: u64, ext_seq: u64, rtp_ts: u32, marker: bool, payload: &[u8]) {
        if self.is_duplicate(ext_seq) {
            self.duplicates += 1;
            return;
        }
        self.packets += 1;
        self.bytes += payload.len() as u64;
        match self.first_seq {
            None => {
                self.first_seq = Some(ext_seq);
                self.max_seq = ext_seq;
                self.first_packet_us = Some(at_us);
            }
            Some(first) if ext_seq < first => self.first_seq = Some(ext_seq),
            Some(_) => self.max_seq = self.max_seq.max(ext_seq),
        }
        // RFC 3550 jitter, in timestamp units, kept here in µs.
        let arrival = at_us as f64 * f64::from(self.clock_rate) / 1e6;
        let transit = arrival - f64::from(rtp_ts);
        if let Some(last) = self.last_transit {
            let mut d = (transit - last).abs();
            // A timestamp wrap (or a layer switch's rebase) is not jitter.
            if d > f64::from(self.clock_rate) {
                d = 0.0;
            }
            let d_us = d * 1e6 / f64::from(self.clock_rate);
            self.jitter_us += (d_us - self.jitter_us) / 16.0;
        }
        self.last_transit = Some(transit);
        if let Some(s) = stamp::read(payload) {
            self.source.get_or_insert(s.source);
            if at_us >= s.sent_us {
                self.latency_us.push(u32::try_from(at_us - s.sent_us).unwrap_or(u32::MAX));
            }
        }
        if self.video {
            self.on_video(at_us, rtp_ts, marker, payload);
        }
    }

    fn on_video(&mut self, at_us: u64, rtp_ts: u32, marker: bool, payload: &[u8]) {
        if self.first_keyframe_us.is_none() && synth_media::is_vp8_keyframe_start(payload) {
            self.first_keyframe_us = Some(at_us);
        }
        if let Some(layer) = synth_media::layer_of(payload) {
            if self.layer.is_some_and(|l| l != layer) {
                self.layer_switches += 1;
            }
            self.layer = Some(layer);
        }
        // A frame is complete at its marker; a resent older frame does not count again.
        if !marker || self.last_frame_ts == Some(rtp_ts) {
            return;
        }
        self.last_frame_ts = Some(rtp_ts);
        self.frames += 1;
        if let Some(last) = self.last_frame_us {
            let gap = at_us.saturating_sub(last) as f64;
            if self.frames > 3 && gap > (3.0 * self.mean_frame_us).max(self.mean_frame_us + 150_000.0) {
                self.freezes += 1;
                self.freeze_us += gap as u64;
            }
            // A slow mean, so one freeze does not hide the next.
            self.mean_frame_us =
                if self.frames == 2 { gap } else { self.mean_frame_us + (gap - self.mean_frame_us) / 32.0 };
        }
        self.last_frame_us = Some(at_us);
    }

    fn is_duplicate(&mut self, ext_seq: u64) -> bool {
        if self.first_seq.is_some() && ext_seq + WINDOW <= self.max_seq {
            // Too old to tell; counted as new (it cannot be common: 1024 packets late).
            return false;
        }
        if self.first_seq.is_some() && ext_seq > self.max_seq {
            // Clear the bits the window moved past.
            let advance = ext_seq - self.max_seq;
            for s in (self.max_seq + 1)..=(self.max_seq + advance.min(WINDOW)) {
                let i = (s % WINDOW) as usize;
                self.seen[i / 64] &= !(1 << (i % 64));
            }
        }
        let i = (ext_seq % WINDOW) as usize;
        let bit = 1u64 << (i % 64);
        let dup = self.seen[i / 64] & bit != 0;
        self.seen[i / 64] |= bit;
        dup
    }

    /// Packets the sequence range says should have arrived.
    pub fn expected(&self) -> u64 {
        self.first_seq.map_or(0, |f| self.max_seq - f + 1)
    }

    /// Packets missing from the sequence range.
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.packets)
    }

    pub fn loss_fraction(&self) -> f64 {
        let e = self.expected();
        if e == 0 { 0.0 } else { self.lost() as f64 / e as f64 }
    }
}

/// The steps of joining, in µs on the run's clock.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JoinTimeline {
    pub start_us: Option<u64>,
    pub ws_open_us: Option<u64>,
    /// When the `join` request went out: `joined_us` minus this is the server's join time.
    pub join_sent_us: Option<u64>,
    pub joined_us: Option<u64>,
    pub ice_connected_us: Option<u64>,
    pub dtls_done_us: Option<u64>,
    pub first_packet_us: Option<u64>,
    pub first_keyframe_us: Option<u64>,
}

/// A step of [`JoinTimeline`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Start,
    WsOpen,
    JoinSent,
    Joined,
    IceConnected,
    DtlsDone,
    FirstPacket,
    FirstKeyframe,
}

impl JoinTimeline {
    /// Records a step the first time it happens; later repeats are ignored.
    pub fn mark(&mut self, step: Step, at_us: u64) {
        let slot = match step {
            Step::Start => &mut self.start_us,
            Step::WsOpen => &mut self.ws_open_us,
            Step::JoinSent => &mut self.join_sent_us,
            Step::Joined => &mut self.joined_us,
            Step::IceConnected => &mut self.ice_connected_us,
            Step::DtlsDone => &mut self.dtls_done_us,
            Step::FirstPacket => &mut self.first_packet_us,
            Step::FirstKeyframe => &mut self.first_keyframe_us,
        };
        slot.get_or_insert(at_us);
    }

    /// The `join` request's round trip (the server's join time, plus a localhost trip), ms.
    pub fn join_rpc_ms(&self) -> Option<f64> {
        Some(self.joined_us?.checked_sub(self.join_sent_us?)? as f64 / 1000.0)
    }

    /// Each step's time since the start, in ms, in order (None where it did not happen).
    pub fn since_start_ms(&self) -> [Option<f64>; 6] {
        let since = |t: Option<u64>| match (self.start_us, t) {
            (Some(s), Some(t)) => Some(t.saturating_sub(s) as f64 / 1000.0),
            _ => None,
        };
        [
            since(self.ws_open_us),
            since(self.joined_us),
            since(self.ice_connected_us),
            since(self.dtls_done_us),
            since(self.first_packet_us),
            since(self.first_keyframe_us),
        ]
    }
}

/// Percentiles of a sample set.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Summary {
    pub count: usize,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Summary {
    pub fn of(samples: &mut [f64]) -> Summary {
        if samples.is_empty() {
            return Summary::default();
        }
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Summary {
            count: samples.len(),
            min: samples[0],
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: samples[samples.len() - 1],
            mean: samples.iter().sum::<f64>() / samples.len() as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamped(mut p: Vec<u8>, sent_us: u64) -> Vec<u8> {
        assert!(stamp::write(&mut p, stamp::Stamp { source: 7, sent_us }));
        p
    }

    #[test]
    fn loss_duplicates_and_latency_from_a_known_sequence() {
        let mut t = TrackRecv::new(false);
        let mut s = synth_media::OpusStream::new(100, 0);
        for i in 0..100u64 {
            let p = s.next_packet();
            let sent = i * 20_000;
            if i % 10 == 3 {
                continue; // lost
            }
            t.on_packet(sent + 5_000, p.seq, p.ts, p.marker, &stamped(p.payload.clone(), sent));
            if i == 50 {
                t.on_packet(sent + 6_000, p.seq, p.ts, p.marker, &stamped(p.payload, sent));
            }
        }
        assert_eq!((t.expected(), t.packets, t.lost(), t.duplicates), (100, 90, 10, 1));
        assert!(t.latency_us.iter().all(|l| *l == 5_000));
        assert!(t.jitter_us < 1.0, "constant delay is no jitter: {}", t.jitter_us);
        assert_eq!(t.source, Some(7));
    }

    #[test]
    fn a_stall_is_one_freeze_and_layer_changes_count() {
        let mut t = TrackRecv::new(true);
        let mut v = synth_media::Vp8Stream::new(1, 0);
        let mut at = 0u64;
        for f in 0..90u64 {
            if f == 60 {
                v.layer = 2;
            }
            let stall = if f == 40 { 500_000 } else { 0 };
            at += 33_333 + stall;
            for p in v.next_frame() {
                t.on_packet(at, p.seq, p.ts, p.marker, &p.payload);
            }
        }
        assert_eq!(t.frames, 90);
        assert_eq!(t.freezes, 1);
        assert!(t.freeze_us >= 500_000);
        assert_eq!(t.layer_switches, 1);
        assert!(t.first_keyframe_us.is_some());
    }

    #[test]
    fn summary_percentiles() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Summary::of(&mut v);
        assert_eq!((s.min, s.max, s.count), (1.0, 100.0, 100));
        assert!((s.p50 - 50.0).abs() <= 1.0 && (s.p99 - 99.0).abs() <= 1.0);
        assert_eq!(Summary::of(&mut []), Summary::default());
    }
}

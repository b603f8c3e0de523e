//! From RTP packets to whole frames, sans-IO: a reorder buffer puts packets back in sequence
//! order, and per codec a depacketizer turns them into frames, starting on a keyframe.
//!
//! - [`ReorderBuffer`]: holds out-of-order packets up to a window of sequence numbers; when a
//!   gap is still open once the window is full, the missing packets are given up on (the
//!   router already asked for them with NACKs before forwarding the repaired stream).
//! - [`Vp8Depacketizer`]: RFC 7741. A frame is the packets of one RTP timestamp up to the
//!   marker bit; a frame with a hole is dropped, and after a hole (or at the start) nothing is
//!   emitted until the next keyframe, so the file never holds a frame the decoder cannot use.
//! - [`H264Depacketizer`]: RFC 6184 (packetization mode 1: single NAL unit, STAP-A, FU-A). An
//!   access unit is the packets of one RTP timestamp, ended by the marker bit (or, from a
//!   sender that never sets it, by the next timestamp); it comes out in AVCC form (4-byte
//!   length before each NAL unit) with the parameter sets taken out and carried beside it, as
//!   MP4 wants them. Same rules as VP8: a broken access unit is dropped, and nothing is
//!   emitted until an IDR whose SPS and PPS are known.
//! - [`VideoDepacketizer`]: one of the two, chosen by the track's codec.
//! - Opus needs no depacketizer: one RTP payload is one Opus packet.

use std::collections::BTreeMap;

use router_engine::codec::Vp8Descriptor;

/// One packet, in order, with its extended (64-bit, unwrapped) sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ordered {
    pub seq: u64,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: Vec<u8>,
    /// There were lost packets right before this one.
    pub after_gap: bool,
}

/// Puts packets back in sequence order.
#[derive(Debug)]
pub struct ReorderBuffer {
    window: u64,
    /// The next sequence number to release.
    next: Option<u64>,
    /// Highest extended sequence number seen (for unwrapping).
    highest: Option<u64>,
    held: BTreeMap<u64, (u32, bool, Vec<u8>)>,
    gap: bool,
    pub duplicates: u64,
    pub late: u64,
    pub lost: u64,
}

impl ReorderBuffer {
    /// `window`: how many packets beyond a gap are held before the gap is given up.
    pub fn new(window: u64) -> ReorderBuffer {
        ReorderBuffer {
            window: window.max(1),
            next: None,
            highest: None,
            held: BTreeMap::new(),
            gap: false,
            duplicates: 0,
            late: 0,
            lost: 0,
        }
    }

    fn extend(&self, seq: u16) -> u64 {
        match self.highest {
            None => (1 << 16) + u64::from(seq),
            Some(h) => {
                let delta = seq.wrapping_sub(h as u16) as i16;
                (h as i64 + i64::from(delta)).max(0) as u64
            }
        }
    }

    /// Adds one packet; released packets are appended to `out` in order.
    pub fn push(&mut self, seq: u16, timestamp: u32, marker: bool, payload: &[u8], out: &mut Vec<Ordered>) {
        let ext = self.extend(seq);
        self.highest = Some(self.highest.map_or(ext, |h| h.max(ext)));
        let next = *self.next.get_or_insert(ext);
        if ext < next {
            self.late += 1;
            return;
        }
        if self.held.contains_key(&ext) {
            self.duplicates += 1;
            return;
        }
        self.held.insert(ext, (timestamp, marker, payload.to_vec()));
        self.release(out, false);
    }

    /// Releases everything held, skipping the gaps (end of stream).
    pub fn flush(&mut self, out: &mut Vec<Ordered>) {
        self.release(out, true);
    }

    fn release(&mut self, out: &mut Vec<Ordered>, all: bool) {
        while let Some((&first, _)) = self.held.first_key_value() {
            let Some(next) = self.next else { return };
            if first != next {
                let span = self.highest.unwrap_or(first) - next;
                if !all && span < self.window {
                    return;
                }
                self.lost += first - next;
                self.gap = true;
                self.next = Some(first);
                continue;
            }
            let Some((ts, marker, payload)) = self.held.remove(&first) else { return };
            out.push(Ordered { seq: first, timestamp: ts, marker, payload, after_gap: std::mem::take(&mut self.gap) });
            self.next = Some(first + 1);
        }
    }
}

/// One depacketized video frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub timestamp: u32,
    pub keyframe: bool,
    pub data: Vec<u8>,
    /// Width and height (keyframes only).
    pub size: Option<(u16, u16)>,
    /// H.264: the parameter sets in force (keyframes only; taken out of `data`).
    pub params: Option<ParamSets>,
}

/// One H.264 sequence and picture parameter set (NAL units with their header byte), what an
/// MP4 `avcC` box holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSets {
    pub sps: Vec<u8>,
    pub pps: Vec<u8>,
}

/// The depacketizer of a video track's codec.
#[derive(Debug)]
pub enum VideoDepacketizer {
    Vp8(Vp8Depacketizer),
    H264(H264Depacketizer),
}

impl VideoDepacketizer {
    /// Feeds one packet; completed frames are appended to `out`.
    pub fn push(&mut self, p: &Ordered, out: &mut Vec<Frame>) {
        match self {
            VideoDepacketizer::Vp8(d) => out.extend(d.push(p)),
            VideoDepacketizer::H264(d) => d.push(p, out),
        }
    }

    /// End of stream: a last access unit still open (H.264 without a marker) goes out.
    pub fn flush(&mut self, out: &mut Vec<Frame>) {
        if let VideoDepacketizer::H264(d) = self {
            d.flush(out);
        }
    }

    pub fn dropped_frames(&self) -> u64 {
        match self {
            VideoDepacketizer::Vp8(d) => d.dropped_frames,
            VideoDepacketizer::H264(d) => d.dropped_frames,
        }
    }

    /// Whether the depacketizer waits for a keyframe (the caller may then ask for one).
    pub fn waiting_for_keyframe(&self) -> bool {
        match self {
            VideoDepacketizer::Vp8(d) => d.waiting_for_keyframe(),
            VideoDepacketizer::H264(d) => d.waiting_for_keyframe(),
        }
    }
}

/// Reassembles VP8 frames from ordered packets.
#[derive(Debug, Default)]
pub struct Vp8Depacketizer {
    current: Option<(u32, Vec<u8>, bool)>,
    /// The frame being assembled lost a packet: drop it.
    broken: bool,
    /// Waiting for a keyframe (at the start and after a dropped frame).
    need_keyframe: bool,
    started: bool,
    pub dropped_frames: u64,
}

impl Vp8Depacketizer {
    pub fn new() -> Vp8Depacketizer {
        Vp8Depacketizer { need_keyframe: true, ..Default::default() }
    }

    /// Whether the depacketizer waits for a keyframe (the caller may then ask for one).
    pub fn waiting_for_keyframe(&self) -> bool {
        self.need_keyframe
    }

    /// Feeds one packet; a completed frame is returned.
    pub fn push(&mut self, p: &Ordered) -> Option<Frame> {
        let Ok(d) = Vp8Descriptor::parse(&p.payload) else {
            self.broken = true;
            return None;
        };
        let body = &p.payload[d.header_len..];
        let starts = d.start_of_partition && d.partition_id == 0;
        if p.after_gap {
            self.broken = true;
        }
        if starts {
            // A new frame: whatever was in progress never got its marker.
            if self.current.is_some() {
                self.dropped_frames += 1;
            }
            let key = body.first().is_some_and(|b| b & 1 == 0);
            self.current = Some((p.timestamp, Vec::with_capacity(body.len() * 4), key));
            self.broken = false;
        } else if self.current.as_ref().is_none_or(|(ts, _, _)| *ts != p.timestamp) {
            // A continuation without its start.
            self.broken = true;
            self.current = None;
        }
        if let Some((_, data, _)) = self.current.as_mut() {
            data.extend_from_slice(body);
        }
        if !p.marker {
            return None;
        }
        let (ts, data, key) = self.current.take()?;
        if self.broken {
            self.broken = false;
            self.dropped_frames += 1;
            self.need_keyframe = true;
            return None;
        }
        if self.need_keyframe && !key {
            if self.started {
                self.dropped_frames += 1;
            }
            return None;
        }
        self.need_keyframe = false;
        self.started = true;
        let size = if key { router_engine::codec::vp8_keyframe_size(&data) } else { None };
        Some(Frame { timestamp: ts, keyframe: key, data, size, params: None })
    }
}

/// Past this an access unit is taken as broken (a sender that never ends one must not make
/// the recorder hold memory without bound).
const MAX_ACCESS_UNIT: usize = 8 << 20;

/// H.264 NAL unit types (ITU-T H.264 table 7-1) and RTP payload structures (RFC 6184 5.2).
const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;
const STAP_A: u8 = 24;
const FU_A: u8 = 28;

/// The access unit being assembled.
#[derive(Debug)]
struct AccessUnit {
    timestamp: u32,
    /// AVCC: each NAL unit after its 4-byte big-endian length.
    data: Vec<u8>,
    idr: bool,
    /// Whether its first slice starts the picture (first_mb_in_slice 0); `None` before a slice.
    starts_picture: Option<bool>,
    broken: bool,
    /// Offset in `data` of the length field of the FU-A NAL unit being reassembled.
    fu: Option<usize>,
}

/// Reassembles H.264 access units from ordered packets.
#[derive(Debug, Default)]
pub struct H264Depacketizer {
    current: Option<AccessUnit>,
    /// The last SPS and PPS seen (they may come in an access unit of their own).
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
    need_keyframe: bool,
    started: bool,
    pub dropped_frames: u64,
}

impl H264Depacketizer {
    pub fn new() -> H264Depacketizer {
        H264Depacketizer { need_keyframe: true, ..Default::default() }
    }

    /// Whether the depacketizer waits for an IDR (the caller may then ask for one).
    pub fn waiting_for_keyframe(&self) -> bool {
        self.need_keyframe
    }

    /// Feeds one packet; completed access units are appended to `out`.
    pub fn push(&mut self, p: &Ordered, out: &mut Vec<Frame>) {
        if self.current.as_ref().is_some_and(|au| au.timestamp != p.timestamp) {
            // A new timestamp ends the access unit in progress. If packets were lost right
            // before this one, they may have been its tail.
            if p.after_gap
                && let Some(au) = self.current.as_mut()
            {
                au.broken = true;
            }
            self.finish(out);
        }
        let au = self.current.get_or_insert_with(|| AccessUnit {
            timestamp: p.timestamp,
            data: Vec::with_capacity(p.payload.len() * 4),
            idr: false,
            starts_picture: None,
            // Lost packets before the first one of an access unit may have been a whole
            // picture: only an IDR (which references nothing) survives that; see `finish`.
            broken: false,
            fu: None,
        });
        if p.after_gap && !au.data.is_empty() {
            au.broken = true;
        }
        let gap_before_start = p.after_gap && au.data.is_empty();
        if !au.broken {
            let ok = add_payload(au, &p.payload, &mut self.sps, &mut self.pps);
            au.broken = !ok || au.data.len() > MAX_ACCESS_UNIT;
        }
        if gap_before_start && !au.idr {
            // A non-IDR picture after a loss may reference the lost one.
            au.broken = true;
        }
        if au.broken {
            au.data = Vec::new();
            au.fu = None;
        }
        if p.marker {
            self.finish(out);
        }
    }

    /// End of stream: the access unit in progress is ended as it is.
    pub fn flush(&mut self, out: &mut Vec<Frame>) {
        self.finish(out);
    }

    fn finish(&mut self, out: &mut Vec<Frame>) {
        let Some(au) = self.current.take() else { return };
        if au.starts_picture.is_none() && !au.broken {
            // Parameter sets (or SEI) alone: kept for the picture that follows.
            return;
        }
        if au.broken || au.fu.is_some() || au.starts_picture == Some(false) {
            self.dropped_frames += 1;
            self.need_keyframe = true;
            return;
        }
        let params = match (&self.sps, &self.pps) {
            (Some(sps), Some(pps)) => Some(ParamSets { sps: sps.clone(), pps: pps.clone() }),
            _ => None,
        };
        if self.need_keyframe && !(au.idr && params.is_some()) {
            if self.started {
                self.dropped_frames += 1;
            }
            return;
        }
        self.need_keyframe = false;
        self.started = true;
        let (size, params) = if au.idr {
            (params.as_ref().and_then(|p| router_engine::codec::h264_sps_size(&p.sps)), params)
        } else {
            (None, None)
        };
        out.push(Frame { timestamp: au.timestamp, keyframe: au.idr, data: au.data, size, params });
    }
}

/// Adds one RTP payload's NAL units to the access unit; `false` if the payload is malformed
/// or does not continue what the access unit holds.
fn add_payload(au: &mut AccessUnit, payload: &[u8], sps: &mut Option<Vec<u8>>, pps: &mut Option<Vec<u8>>) -> bool {
    let Some(&header) = payload.first() else { return false };
    match header & 0x1f {
        FU_A => {
            let Some(&fu) = payload.get(1) else { return false };
            let (start, end) = (fu & 0x80 != 0, fu & 0x40 != 0);
            let body = &payload[2..];
            if start {
                if au.fu.is_some() {
                    return false; // the previous fragmented NAL unit lost its end
                }
                let nal_header = (header & 0xe0) | (fu & 0x1f);
                let at = au.data.len();
                au.data.extend_from_slice(&[0; 4]);
                au.data.push(nal_header);
                au.data.extend_from_slice(body);
                au.fu = Some(at);
                if !note_nal(au, nal_header, body.first().copied()) {
                    return false;
                }
            } else {
                let Some(at) = au.fu else { return false }; // a fragment without its start
                au.data.extend_from_slice(body);
                if end {
                    au.fu = None;
                    let len = au.data.len() - at - 4;
                    let Ok(len) = u32::try_from(len) else { return false };
                    au.data[at..at + 4].copy_from_slice(&len.to_be_bytes());
                }
            }
            true
        }
        STAP_A => {
            if au.fu.is_some() {
                return false;
            }
            let mut rest = &payload[1..];
            if rest.is_empty() {
                return false;
            }
            while !rest.is_empty() {
                let Some(size) = rest.get(..2) else { return false };
                let n = usize::from(u16::from_be_bytes([size[0], size[1]]));
                let Some(nal) = rest.get(2..2 + n) else { return false };
                if !add_nal(au, nal, sps, pps) {
                    return false;
                }
                rest = &rest[2 + n..];
            }
            true
        }
        1..=23 => au.fu.is_none() && add_nal(au, payload, sps, pps),
        // STAP-B, MTAP, FU-B belong to the interleaved mode, which WebRTC does not use.
        _ => false,
    }
}

/// One whole NAL unit: parameter sets are kept aside, the rest goes into the access unit.
fn add_nal(au: &mut AccessUnit, nal: &[u8], sps: &mut Option<Vec<u8>>, pps: &mut Option<Vec<u8>>) -> bool {
    let Some(&header) = nal.first() else { return false };
    match header & 0x1f {
        NAL_SPS => *sps = Some(nal.to_vec()),
        NAL_PPS => *pps = Some(nal.to_vec()),
        // Access unit delimiters say nothing an MP4 sample does not.
        NAL_AUD => {}
        0 | 24..=31 => return false,
        _ => {
            let Ok(len) = u32::try_from(nal.len()) else { return false };
            au.data.extend_from_slice(&len.to_be_bytes());
            au.data.extend_from_slice(nal);
            return note_nal(au, header, nal.get(1).copied());
        }
    }
    true
}

/// Notes what a NAL unit tells about its access unit: an IDR slice, and whether the first
/// slice starts the picture. `first_body` is the byte after the NAL header.
fn note_nal(au: &mut AccessUnit, header: u8, first_body: Option<u8>) -> bool {
    let t = header & 0x1f;
    if matches!(t, 1..=5) {
        if t == NAL_IDR {
            au.idr = true;
        }
        if au.starts_picture.is_none() {
            // first_mb_in_slice is ue(v) and 0 is coded as the single bit 1: the top bit.
            let Some(b) = first_body else { return false };
            au.starts_picture = Some(b & 0x80 != 0);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use synth_media::{h264_fu_a, h264_stap_a};

    fn release(rb: &mut ReorderBuffer, seqs: &[u16]) -> Vec<u64> {
        let mut out = Vec::new();
        for &s in seqs {
            rb.push(s, 0, false, &[s as u8], &mut out);
        }
        out.iter().map(|o| o.seq - (1 << 16)).collect()
    }

    #[test]
    fn reorders_within_the_window() {
        let mut rb = ReorderBuffer::new(8);
        assert_eq!(release(&mut rb, &[10, 12, 11, 13]), vec![10, 11, 12, 13]);
        assert_eq!(release(&mut rb, &[13, 9]), Vec::<u64>::new());
        // Both are behind the release point: a resent duplicate looks the same as a late one.
        assert_eq!((rb.duplicates, rb.late), (0, 2));
    }

    #[test]
    fn gives_up_a_gap_when_the_window_fills_and_wraps() {
        let mut rb = ReorderBuffer::new(3);
        let got = release(&mut rb, &[65534, 65535, 1, 2, 3]);
        // 0 never came: released once 3 packets past it were held.
        assert_eq!(got, vec![65534, 65535, 65537, 65538, 65539]);
        assert_eq!(rb.lost, 1);
    }

    fn vp8(start: bool, key: bool, ts: u32, marker: bool, seq: u64, gap: bool) -> Ordered {
        // Descriptor byte: S bit when starting partition 0; then a frame tag byte.
        let mut payload = vec![if start { 0x10 } else { 0x00 }];
        payload.push(if key { 0x00 } else { 0x01 });
        payload.extend_from_slice(&[0xaa; 3]);
        Ordered { seq, timestamp: ts, marker, payload, after_gap: gap }
    }

    #[test]
    fn starts_on_a_keyframe_and_drops_broken_frames() {
        let mut d = Vp8Depacketizer::new();
        assert_eq!(d.push(&vp8(true, false, 1, true, 1, false)), None, "delta before any keyframe");
        assert_eq!(d.push(&vp8(true, true, 2, false, 2, false)), None);
        let f = d.push(&vp8(false, true, 2, true, 3, false)).expect("keyframe of two packets");
        assert!(f.keyframe);
        assert_eq!(f.data.len(), 8);
        assert!(d.push(&vp8(true, false, 3, true, 4, false)).is_some());
        // A frame whose second packet was lost, then deltas: nothing until the next keyframe.
        assert_eq!(d.push(&vp8(true, false, 4, false, 5, false)), None);
        assert_eq!(d.push(&vp8(false, false, 4, true, 7, true)), None);
        assert_eq!(d.push(&vp8(true, false, 5, true, 8, false)), None);
        assert!(d.waiting_for_keyframe());
        assert!(d.push(&vp8(true, true, 6, true, 9, false)).is_some());
        assert_eq!(d.dropped_frames, 2);
    }

    fn pkt(seq: u64, ts: u32, marker: bool, gap: bool, payload: Vec<u8>) -> Ordered {
        Ordered { seq, timestamp: ts, marker, payload, after_gap: gap }
    }

    const SPS: [u8; 4] = [0x67, 0x42, 0xc0, 0x0d];
    const PPS: [u8; 3] = [0x68, 0xcb, 0x83];

    /// An IDR slice starting the picture (first_mb_in_slice 0: top bit set), `len` bytes.
    fn idr(len: usize) -> Vec<u8> {
        let mut n = vec![0x65, 0x88];
        n.extend((0..len - 2).map(|i| i as u8));
        n
    }

    fn avcc(nals: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for n in nals {
            out.extend_from_slice(&(n.len() as u32).to_be_bytes());
            out.extend_from_slice(n);
        }
        out
    }

    fn push_all(d: &mut H264Depacketizer, packets: &[Ordered]) -> Vec<Frame> {
        let mut out = Vec::new();
        for p in packets {
            d.push(p, &mut out);
        }
        out
    }

    #[test]
    fn h264_reassembles_stap_a_and_fu_a_into_avcc() {
        let mut d = H264Depacketizer::new();
        let slice = idr(3000);
        let mut packets = vec![pkt(1, 9000, false, false, h264_stap_a(&[&SPS, &PPS]))];
        for (i, f) in h264_fu_a(&slice, 1000).into_iter().enumerate() {
            packets.push(pkt(2 + i as u64, 9000, i == 2, false, f));
        }
        let frames = push_all(&mut d, &packets);
        assert_eq!(frames.len(), 1);
        let f = &frames[0];
        assert!(f.keyframe);
        assert_eq!(f.data, avcc(&[&slice]), "parameter sets are carried beside the data");
        assert_eq!(f.params, Some(ParamSets { sps: SPS.to_vec(), pps: PPS.to_vec() }));
        // A delta picture: two single NAL units (an SEI and a slice) in one access unit.
        let delta = [0x41, 0x9a, 0x01];
        let sei = [0x06, 0x05, 0x01];
        let frames =
            push_all(&mut d, &[pkt(5, 12000, false, false, sei.to_vec()), pkt(6, 12000, true, false, delta.to_vec())]);
        assert_eq!(frames.len(), 1);
        assert_eq!((frames[0].keyframe, &frames[0].data), (false, &avcc(&[&sei, &delta])));
        assert_eq!(frames[0].params, None);
        // A sender that sets no marker: the next timestamp ends the access unit.
        let frames = push_all(
            &mut d,
            &[pkt(7, 15000, false, false, delta.to_vec()), pkt(8, 18000, false, false, delta.to_vec())],
        );
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].timestamp, 15000);
        let mut rest = Vec::new();
        d.flush(&mut rest);
        assert_eq!(rest.len(), 1);
        assert_eq!(d.dropped_frames, 0);
    }

    #[test]
    fn h264_waits_for_an_idr_with_its_parameter_sets() {
        let mut d = H264Depacketizer::new();
        let delta = vec![0x41, 0x9a, 0x01];
        // A delta picture, then an IDR before any SPS/PPS: neither can be decoded.
        assert!(push_all(&mut d, &[pkt(1, 3000, true, false, delta.clone())]).is_empty());
        assert!(push_all(&mut d, &[pkt(2, 6000, true, false, idr(50))]).is_empty());
        assert!(d.waiting_for_keyframe());
        // Parameter sets in an access unit of their own, then the IDR: it starts.
        assert!(push_all(&mut d, &[pkt(3, 9000, true, false, h264_stap_a(&[&SPS, &PPS]))]).is_empty());
        let frames = push_all(&mut d, &[pkt(4, 9000, true, false, idr(50))]);
        assert_eq!(frames.len(), 1);
        assert!(frames[0].keyframe && frames[0].params.is_some());
        assert!(!d.waiting_for_keyframe());
        assert_eq!(push_all(&mut d, &[pkt(5, 12000, true, false, delta)]).len(), 1);
        assert_eq!(d.dropped_frames, 0, "nothing counts as dropped before the first picture");
    }

    #[test]
    fn h264_loss_inside_a_fu_a_drops_the_access_unit_until_the_next_idr() {
        let mut d = H264Depacketizer::new();
        let start = [pkt(1, 3000, false, false, h264_stap_a(&[&SPS, &PPS])), pkt(2, 3000, true, false, idr(40))];
        assert_eq!(push_all(&mut d, &start).len(), 1);
        // A delta picture in three fragments; the middle one is lost.
        let slice = [vec![0x41, 0x9a], vec![7u8; 2000]].concat();
        let f = h264_fu_a(&slice, 700);
        assert!(
            push_all(&mut d, &[pkt(3, 6000, false, false, f[0].clone()), pkt(5, 6000, true, true, f[2].clone())])
                .is_empty()
        );
        assert_eq!(d.dropped_frames, 1);
        assert!(d.waiting_for_keyframe());
        // A whole delta picture after that still references the broken one: dropped too.
        assert!(push_all(&mut d, &[pkt(6, 9000, true, false, vec![0x41, 0x9a, 0x02])]).is_empty());
        // A fragment whose start is missing (no gap flag: a sender bug) is no use either.
        assert!(push_all(&mut d, &[pkt(7, 12000, true, false, f[1].clone())]).is_empty());
        // An IDR whose first slice is missing (first_mb_in_slice not 0) does not restart.
        assert!(push_all(&mut d, &[pkt(8, 15000, true, false, vec![0x65, 0x40, 0x01])]).is_empty());
        let frames = push_all(&mut d, &[pkt(9, 18000, true, false, idr(40))]);
        assert_eq!(frames.len(), 1, "the next IDR restarts, with the parameter sets seen before");
        assert_eq!(d.dropped_frames, 4);
    }

    #[test]
    fn h264_gap_before_an_access_unit() {
        let mut d = H264Depacketizer::new();
        let start = [pkt(1, 3000, false, false, h264_stap_a(&[&SPS, &PPS])), pkt(2, 3000, true, false, idr(40))];
        assert_eq!(push_all(&mut d, &start).len(), 1);
        // A whole picture lost: the next delta may reference it, the next IDR references nothing.
        assert!(push_all(&mut d, &[pkt(4, 9000, true, true, vec![0x41, 0x9a, 0x02])]).is_empty());
        assert_eq!(push_all(&mut d, &[pkt(6, 15000, true, true, idr(40))]).len(), 1);
        // The tail of an access unit without a marker lost: it is dropped at the next timestamp.
        assert!(push_all(&mut d, &[pkt(7, 18000, false, false, vec![0x41, 0x9a, 0x02])]).is_empty());
        assert!(push_all(&mut d, &[pkt(9, 21000, true, true, vec![0x41, 0x9a, 0x03])]).is_empty());
        assert_eq!(d.dropped_frames, 3);
    }

    #[test]
    fn h264_malformed_payloads_break_the_access_unit_without_panicking() {
        let bad: [&[u8]; 7] = [
            &[],
            &[0x7c],                   // FU-A without its FU header
            &[0x78],                   // empty STAP-A
            &[0x78, 0x00, 0x09, 0x67], // STAP-A size past the end
            &[0x78, 0x00],             // STAP-A size cut
            &[0x79, 0x00, 0x01, 0x41], // STAP-B
            &[0x60],                   // NAL type 0
        ];
        for b in bad {
            let mut d = H264Depacketizer::new();
            let start = [pkt(1, 3000, false, false, h264_stap_a(&[&SPS, &PPS])), pkt(2, 3000, true, false, idr(40))];
            assert_eq!(push_all(&mut d, &start).len(), 1);
            assert!(push_all(&mut d, &[pkt(3, 6000, true, false, b.to_vec())]).is_empty(), "{b:?}");
            assert!(d.waiting_for_keyframe(), "{b:?}");
        }
    }
}

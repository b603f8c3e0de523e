//! From RTP packets to whole frames, sans-IO: a reorder buffer puts packets back in sequence
//! order, and per codec a depacketizer turns them into frames, starting on a keyframe.
//!
//! - [`ReorderBuffer`]: holds out-of-order packets up to a window of sequence numbers; when a
//!   gap is still open once the window is full, the missing packets are given up on (the
//!   router already asked for them with NACKs before forwarding the repaired stream).
//! - [`Vp8Depacketizer`]: RFC 7741. A frame is the packets of one RTP timestamp up to the
//!   marker bit; a frame with a hole is dropped, and after a hole (or at the start) nothing is
//!   emitted until the next keyframe, so the file never holds a frame the decoder cannot use.
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
        let size = if key { router_engine::simulcast::vp8_keyframe_size(&data) } else { None };
        Some(Frame { timestamp: ts, keyframe: key, data, size })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

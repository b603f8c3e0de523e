//! Synthetic media, shared by the integration tests and the load-test tool: VP8 and Opus packet
//! streams whose payloads are valid enough for keyframe detection and carry their own frame and
//! packet numbers, so a receiver can check order, completeness and where it started; and the
//! RFC 6184 H.264 packetizations (STAP-A, FU-A) the recorder's tests and the integration tests'
//! encoded streams share.

pub mod encoded;

/// One RTP packet to send: extended sequence number, timestamp, marker, payload.
#[derive(Debug, Clone)]
pub struct Packet {
    pub seq: u64,
    pub ts: u32,
    pub marker: bool,
    pub payload: Vec<u8>,
}

/// The frame and packet numbers a synthetic payload carries in its last 6 bytes.
pub fn tag(payload: &[u8]) -> Option<(u32, u16)> {
    let n = payload.len();
    if n < 6 {
        return None;
    }
    let frame = u32::from_be_bytes(payload[n - 6..n - 2].try_into().ok()?);
    let index = u16::from_be_bytes(payload[n - 2..].try_into().ok()?);
    Some((frame, index))
}

/// The simulcast layer a synthetic VP8 payload says it belongs to (the byte before the tag).
pub fn layer_of(payload: &[u8]) -> Option<u8> {
    payload.len().checked_sub(7).map(|i| payload[i])
}

/// Whether a synthetic VP8 payload starts a keyframe.
pub fn is_vp8_keyframe_start(payload: &[u8]) -> bool {
    // Descriptor with S=1 and PID=0 (one byte, or four with a 15-bit picture id), then a
    // frame header with P=0 and the start code.
    let d = if payload.first().is_some_and(|b| b & 0x80 != 0) { 4 } else { 1 };
    payload.len() > d + 6
        && payload[0] & 0x10 != 0
        && payload[d] & 0x01 == 0
        && payload[d + 3..d + 6] == [0x9d, 0x01, 0x2a]
}

/// The 15-bit VP8 picture id of a synthetic payload that carries one.
pub fn vp8_picture_id(payload: &[u8]) -> Option<u16> {
    (payload.len() > 4 && payload[0] & 0x80 != 0 && payload[1] & 0x80 != 0 && payload[2] & 0x80 != 0)
        .then(|| (u16::from(payload[2] & 0x7f) << 8) | u16::from(payload[3]))
}

/// A 30 fps VP8 stream: `packets_per_frame` packets per frame, a keyframe every
/// `keyframe_interval` frames.
#[derive(Debug, Clone)]
pub struct Vp8Stream {
    pub frame: u32,
    pub seq: u64,
    pub ts: u32,
    pub keyframe_interval: u32,
    pub packets_per_frame: u16,
    pub payload_size: usize,
    /// Written into every payload ([`layer_of`]), so a receiver knows which layer it got.
    pub layer: u8,
    /// The size a keyframe announces.
    pub width: u16,
    pub height: u16,
    /// When set, the descriptor carries a 15-bit picture id, counted per frame from here.
    pub picture_id: Option<u16>,
    force_keyframe: bool,
}

impl Vp8Stream {
    pub fn new(first_seq: u64, first_ts: u32) -> Vp8Stream {
        Vp8Stream {
            frame: 0,
            seq: first_seq,
            ts: first_ts,
            keyframe_interval: 60,
            packets_per_frame: 3,
            payload_size: 900,
            layer: 0,
            width: 640,
            height: 480,
            picture_id: None,
            force_keyframe: false,
        }
    }

    /// The next frame is a keyframe (as after a PLI).
    pub fn force_keyframe(&mut self) {
        self.force_keyframe = true;
    }

    /// The packets of the next frame (33 ms of video).
    pub fn next_frame(&mut self) -> Vec<Packet> {
        let key = self.frame.is_multiple_of(self.keyframe_interval) || self.force_keyframe;
        self.force_keyframe = false;
        let mut out = Vec::new();
        for i in 0..self.packets_per_frame {
            let mut p = Vec::with_capacity(self.payload_size);
            let start = if i == 0 { 0x10 } else { 0x00 };
            match self.picture_id {
                // X=1, then I=1, then M=1 and the 15-bit picture id.
                Some(pid) => {
                    let pid = pid.wrapping_add(self.frame as u16) & 0x7fff;
                    p.extend_from_slice(&[0x80 | start, 0x80, 0x80 | (pid >> 8) as u8, pid as u8]);
                }
                None => p.push(start),
            }
            if i == 0 {
                // The 3-byte frame tag (P=0 for a keyframe, show_frame=1) and, for a keyframe,
                // the start code and the frame size.
                p.extend_from_slice(&[if key { 0x10 } else { 0x11 }, 0x02, 0x00]);
                if key {
                    p.extend_from_slice(&[0x9d, 0x01, 0x2a]);
                    p.extend_from_slice(&self.width.to_le_bytes());
                    p.extend_from_slice(&self.height.to_le_bytes());
                }
            }
            p.resize(self.payload_size - 7, (self.frame as u8) ^ (i as u8));
            p.push(self.layer);
            p.extend_from_slice(&self.frame.to_be_bytes());
            p.extend_from_slice(&i.to_be_bytes());
            out.push(Packet { seq: self.seq, ts: self.ts, marker: i + 1 == self.packets_per_frame, payload: p });
            self.seq += 1;
        }
        self.frame += 1;
        self.ts = self.ts.wrapping_add(3000);
        out
    }
}

/// A 20 ms Opus stream.
#[derive(Debug, Clone)]
pub struct OpusStream {
    pub frame: u32,
    pub seq: u64,
    pub ts: u32,
}

impl OpusStream {
    pub fn new(first_seq: u64, first_ts: u32) -> OpusStream {
        OpusStream { frame: 0, seq: first_seq, ts: first_ts }
    }

    pub fn next_packet(&mut self) -> Packet {
        // TOC byte: config 12 (SILK WB 20 ms), mono, one frame.
        let mut p = vec![0x60];
        p.resize(94, self.frame as u8);
        p.extend_from_slice(&self.frame.to_be_bytes());
        p.extend_from_slice(&0u16.to_be_bytes());
        let packet = Packet { seq: self.seq, ts: self.ts, marker: self.frame == 0, payload: p };
        self.frame += 1;
        self.seq += 1;
        self.ts = self.ts.wrapping_add(960);
        packet
    }
}

/// An RFC 6184 STAP-A payload carrying `nals` whole (its header takes the first unit's NRI).
pub fn h264_stap_a(nals: &[&[u8]]) -> Vec<u8> {
    let mut p = vec![(nals.first().map_or(0, |n| n[0]) & 0x60) | 24];
    for n in nals {
        p.extend_from_slice(&(n.len() as u16).to_be_bytes());
        p.extend_from_slice(n);
    }
    p
}

/// RFC 6184 FU-A payloads of one NAL unit, `chunk` bytes of its body each: the unit's type moves
/// into the FU header, with S on the first fragment and E on the last.
pub fn h264_fu_a(nal: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    let body = &nal[1..];
    let n = body.len().div_ceil(chunk);
    body.chunks(chunk)
        .enumerate()
        .map(|(i, c)| {
            let mut fu = nal[0] & 0x1f;
            if i == 0 {
                fu |= 0x80;
            }
            if i + 1 == n {
                fu |= 0x40;
            }
            let mut p = vec![(nal[0] & 0xe0) | 28, fu];
            p.extend_from_slice(c);
            p
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fu_a_fragments_carry_start_end_and_the_whole_body() {
        let nal: Vec<u8> = std::iter::once(0x65).chain((0..10).map(|i| i as u8)).collect();
        let f = h264_fu_a(&nal, 4);
        assert_eq!(f.len(), 3);
        assert_eq!((f[0][0], f[0][1], f[1][1], f[2][1]), (0x60 | 28, 0x80 | 5, 5, 0x40 | 5));
        let body: Vec<u8> = f.iter().flat_map(|p| p[2..].to_vec()).collect();
        assert_eq!(body, &nal[1..]);
        // A body that fits one chunk is one fragment with both S and E.
        assert_eq!(h264_fu_a(&nal, 64)[0][1], 0xc0 | 5);
    }

    #[test]
    fn stap_a_prefixes_each_unit_with_its_length() {
        let p = h264_stap_a(&[&[0x67, 1, 2], &[0x68, 3]]);
        assert_eq!(p, [0x78, 0, 3, 0x67, 1, 2, 0, 2, 0x68, 3]);
    }
}

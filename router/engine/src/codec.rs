//! Just enough of each codec's RTP payload format for an SFU: keyframe detection (to switch
//! simulcast layers and to know a PLI was answered) and the VP8 payload descriptor, whose
//! picture id and TL0PICIDX are rewritten in place when a subscriber moves between simulcast
//! layers so its decoder sees one continuous stream.
//!
//! Data flow: the RTP payload (after [`crate::rtp::RtpHeader::payload`]) goes to
//! [`is_keyframe`] with the track's [`Codec`]; for VP8, [`Vp8Descriptor::parse`] gives the
//! fields and their offsets, and [`Vp8Descriptor::set_picture_id`] /
//! [`Vp8Descriptor::set_tl0_pic_idx`] rewrite them. Nothing allocates.
//!
//! ```
//! use router_engine::codec::{is_keyframe, Vp8Descriptor};
//! use schema::codec::Codec;
//! // VP8: X=1, S=1, PID=0; I=1 with a 15-bit picture id; keyframe header with start code.
//! let mut p = [0x90, 0x80, 0x81, 0x23, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a];
//! assert!(is_keyframe(Codec::Vp8, &p));
//! let d = Vp8Descriptor::parse(&p).unwrap();
//! assert_eq!(d.picture_id, Some(0x0123));
//! d.set_picture_id(&mut p, 0x7fff).unwrap();
//! assert_eq!(Vp8Descriptor::parse(&p).unwrap().picture_id, Some(0x7fff));
//! ```

use thiserror::Error;

use schema::codec::Codec;

mod frame_size;
pub use frame_size::{h264_keyframe_size, h264_sps_size, vp8_keyframe_size};

/// Why a payload cannot be read or rewritten.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum CodecError {
    #[error("payload descriptor runs past the end of the payload")]
    Truncated,
    #[error("the descriptor has no picture id")]
    NoPictureId,
    #[error("the descriptor has no TL0PICIDX")]
    NoTl0PicIdx,
}

/// Whether decoding can start with this packet: the first packet of a keyframe for video
/// (VP8 key frame, H.264 IDR or SPS, VP9 non-inter-predicted start of a base spatial layer).
/// Every Opus packet decodes on its own, so audio always says true. Malformed payloads are
/// never keyframes.
pub fn is_keyframe(codec: Codec, payload: &[u8]) -> bool {
    match codec {
        Codec::Opus => true,
        Codec::Vp8 => vp8_is_keyframe(payload),
        Codec::Vp9 => vp9_is_keyframe(payload),
        Codec::H264 => h264_is_keyframe(payload),
    }
}

/// The VP8 RTP payload descriptor (RFC 7741 4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Descriptor {
    /// N: the frame can be discarded without affecting others.
    pub non_reference: bool,
    /// S: this packet starts a VP8 partition.
    pub start_of_partition: bool,
    pub partition_id: u8,
    /// 7- or 15-bit picture id.
    pub picture_id: Option<u16>,
    /// The picture id field is the 15-bit form (M bit set).
    pub picture_id_long: bool,
    pub tl0_pic_idx: Option<u8>,
    pub temporal_id: Option<u8>,
    /// Y: layer sync bit (meaningful when `temporal_id` is present).
    pub layer_sync: bool,
    pub key_idx: Option<u8>,
    /// Descriptor length: the VP8 payload starts here.
    pub header_len: usize,
    picture_id_offset: usize,
    tl0_offset: usize,
}

impl Vp8Descriptor {
    pub fn parse(payload: &[u8]) -> Result<Self, CodecError> {
        let byte = |i: usize| payload.get(i).copied().ok_or(CodecError::Truncated);
        let b0 = byte(0)?;
        let mut d = Vp8Descriptor {
            non_reference: b0 & 0x20 != 0,
            start_of_partition: b0 & 0x10 != 0,
            partition_id: b0 & 0x07,
            picture_id: None,
            picture_id_long: false,
            tl0_pic_idx: None,
            temporal_id: None,
            layer_sync: false,
            key_idx: None,
            header_len: 1,
            picture_id_offset: 0,
            tl0_offset: 0,
        };
        if b0 & 0x80 == 0 {
            return Ok(d);
        }
        let x = byte(1)?;
        let mut pos = 2;
        if x & 0x80 != 0 {
            let p0 = byte(pos)?;
            d.picture_id_offset = pos;
            if p0 & 0x80 != 0 {
                d.picture_id = Some((u16::from(p0 & 0x7f) << 8) | u16::from(byte(pos + 1)?));
                d.picture_id_long = true;
                pos += 2;
            } else {
                d.picture_id = Some(u16::from(p0));
                pos += 1;
            }
        }
        if x & 0x40 != 0 {
            d.tl0_offset = pos;
            d.tl0_pic_idx = Some(byte(pos)?);
            pos += 1;
        }
        if x & 0x30 != 0 {
            let b = byte(pos)?;
            if x & 0x20 != 0 {
                d.temporal_id = Some(b >> 6);
                d.layer_sync = b & 0x20 != 0;
            }
            if x & 0x10 != 0 {
                d.key_idx = Some(b & 0x1f);
            }
            pos += 1;
        }
        d.header_len = pos;
        Ok(d)
    }

    /// Rewrites the picture id in place, in the field's own width (15-bit values are masked
    /// to 7 bits in a short field). `payload` must be the one this was parsed from.
    pub fn set_picture_id(&self, payload: &mut [u8], picture_id: u16) -> Result<(), CodecError> {
        if self.picture_id.is_none() {
            return Err(CodecError::NoPictureId);
        }
        let at = self.picture_id_offset;
        if self.picture_id_long {
            let field = payload.get_mut(at..at + 2).ok_or(CodecError::Truncated)?;
            field[0] = 0x80 | ((picture_id >> 8) as u8 & 0x7f);
            field[1] = picture_id as u8;
        } else {
            *payload.get_mut(at).ok_or(CodecError::Truncated)? = picture_id as u8 & 0x7f;
        }
        Ok(())
    }

    /// Rewrites TL0PICIDX in place. `payload` must be the one this was parsed from.
    pub fn set_tl0_pic_idx(&self, payload: &mut [u8], tl0_pic_idx: u8) -> Result<(), CodecError> {
        if self.tl0_pic_idx.is_none() {
            return Err(CodecError::NoTl0PicIdx);
        }
        *payload.get_mut(self.tl0_offset).ok_or(CodecError::Truncated)? = tl0_pic_idx;
        Ok(())
    }
}

fn vp8_is_keyframe(payload: &[u8]) -> bool {
    let Ok(d) = Vp8Descriptor::parse(payload) else {
        return false;
    };
    if !d.start_of_partition || d.partition_id != 0 {
        return false;
    }
    // RFC 6386 9.1: frame tag bit 0 is the inverse key frame flag; a key frame's 3-byte tag
    // is followed by the start code 9d 01 2a, checked to reject stray bytes.
    match payload.get(d.header_len..d.header_len + 6) {
        Some(h) => h[0] & 0x01 == 0 && h[3..6] == [0x9d, 0x01, 0x2a],
        None => false,
    }
}

fn h264_is_keyframe(payload: &[u8]) -> bool {
    let is_key_nal = |t: u8| t == 5 || t == 7; // IDR slice or SPS (which precedes an IDR)
    let Some(&b0) = payload.first() else {
        return false;
    };
    match b0 & 0x1f {
        t @ 1..=23 => is_key_nal(t),
        24 => {
            // STAP-A: 16-bit size, then the NAL unit, repeated.
            let mut pos = 1;
            while let Some(size) = payload.get(pos..pos + 2) {
                let size = u16::from_be_bytes([size[0], size[1]]) as usize;
                pos += 2;
                let Some(nal) = payload.get(pos..pos + size) else {
                    return false;
                };
                if nal.first().is_some_and(|&h| is_key_nal(h & 0x1f)) {
                    return true;
                }
                pos += size;
            }
            false
        }
        28 => {
            // FU-A: only the start fragment carries the NAL header we need.
            payload.get(1).is_some_and(|&fu| fu & 0x80 != 0 && is_key_nal(fu & 0x1f))
        }
        _ => false,
    }
}

fn vp9_is_keyframe(payload: &[u8]) -> bool {
    // RFC 9628 4.2: I P L F B E V Z.
    let Some(&b0) = payload.first() else {
        return false;
    };
    let inter_predicted = b0 & 0x40 != 0;
    let begins_frame = b0 & 0x08 != 0;
    if inter_predicted || !begins_frame {
        return false;
    }
    if b0 & 0x20 == 0 {
        return true; // no layer indices: a single spatial layer
    }
    let mut pos = 1;
    if b0 & 0x80 != 0 {
        match payload.get(pos) {
            Some(&m) if m & 0x80 != 0 => pos += 2,
            Some(_) => pos += 1,
            None => return false,
        }
    }
    // Layer indices: TID(3) U(1) SID(3) D(1); a keyframe starts at spatial layer 0.
    payload.get(pos).is_some_and(|&l| (l >> 1) & 0x07 == 0)
}

#[cfg(test)]
// A test that unwraps fails loudly on the input it was given, which is what a test should do.
// Binary literals are grouped by descriptor field (TID | Y | KEYIDX), not by nibble.
#[allow(clippy::unwrap_used, clippy::unusual_byte_groupings)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::SmallRng};

    const VP8_KEY_HEADER: [u8; 6] = [0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a];
    const VP8_DELTA_HEADER: [u8; 6] = [0x51, 0x42, 0x00, 0x00, 0x00, 0x00];

    fn vp8(descriptor: &[u8], frame: &[u8]) -> Vec<u8> {
        [descriptor, frame].concat()
    }

    #[test]
    fn vp8_keyframe_needs_start_of_partition_zero_and_key_frame_header() {
        // Minimal descriptor, S=1 PID=0.
        assert!(is_keyframe(Codec::Vp8, &vp8(&[0x10], &VP8_KEY_HEADER)));
        // Inter frame.
        assert!(!is_keyframe(Codec::Vp8, &vp8(&[0x10], &VP8_DELTA_HEADER)));
        // Continuation packet of a key frame (S=0).
        assert!(!is_keyframe(Codec::Vp8, &vp8(&[0x00], &VP8_KEY_HEADER)));
        // Start of partition 1, not 0.
        assert!(!is_keyframe(Codec::Vp8, &vp8(&[0x11], &VP8_KEY_HEADER)));
        // All extensions present: X I L T K, 15-bit picture id, then the header.
        let full = [0x90, 0xf0, 0x80 | 0x12, 0x34, 0x56, 0b10_1_00011];
        assert!(is_keyframe(Codec::Vp8, &vp8(&full, &VP8_KEY_HEADER)));
        assert!(!is_keyframe(Codec::Vp8, &vp8(&full, &VP8_DELTA_HEADER)));
        // Truncated before the frame header.
        assert!(!is_keyframe(Codec::Vp8, &full));
        assert!(!is_keyframe(Codec::Vp8, &[]));
    }

    #[test]
    fn vp8_descriptor_fields_and_rewrites() {
        let mut p = vp8(&[0xb0, 0xf0, 0x80 | 0x12, 0x34, 0x56, 0b10_1_00011], &VP8_KEY_HEADER);
        let d = Vp8Descriptor::parse(&p).unwrap();
        assert!(d.non_reference && d.start_of_partition);
        assert_eq!(d.partition_id, 0);
        assert_eq!(d.picture_id, Some(0x1234));
        assert!(d.picture_id_long);
        assert_eq!(d.tl0_pic_idx, Some(0x56));
        assert_eq!(d.temporal_id, Some(2));
        assert!(d.layer_sync);
        assert_eq!(d.key_idx, Some(3));
        assert_eq!(d.header_len, 6);

        d.set_picture_id(&mut p, 0x7abc).unwrap();
        d.set_tl0_pic_idx(&mut p, 0x99).unwrap();
        let e = Vp8Descriptor::parse(&p).unwrap();
        assert_eq!(e.picture_id, Some(0x7abc));
        assert_eq!(e.tl0_pic_idx, Some(0x99));
        assert_eq!((e.temporal_id, e.key_idx, e.header_len), (Some(2), Some(3), 6));
        assert_eq!(&p[6..], &VP8_KEY_HEADER);

        // 7-bit picture id, only T (no K).
        let mut s = vp8(&[0x90, 0xa0, 0x05, 0b01_0_00000], &VP8_DELTA_HEADER);
        let d = Vp8Descriptor::parse(&s).unwrap();
        assert_eq!(
            (d.picture_id, d.picture_id_long, d.tl0_pic_idx, d.temporal_id, d.key_idx),
            (Some(5), false, None, Some(1), None)
        );
        d.set_picture_id(&mut s, 0x1ff).unwrap();
        assert_eq!(Vp8Descriptor::parse(&s).unwrap().picture_id, Some(0x7f));
        assert_eq!(d.set_tl0_pic_idx(&mut s, 1), Err(CodecError::NoTl0PicIdx));
        let bare = Vp8Descriptor::parse(&[0x10, 0]).unwrap();
        assert_eq!(bare.set_picture_id(&mut [0x10, 0], 1), Err(CodecError::NoPictureId));
    }

    #[test]
    fn vp8_truncated_descriptors_are_errors() {
        for p in [&[][..], &[0x80], &[0x80, 0x80], &[0x80, 0x80, 0x80], &[0x80, 0x40], &[0x80, 0x20]] {
            assert_eq!(Vp8Descriptor::parse(p), Err(CodecError::Truncated), "{p:?}");
        }
    }

    #[test]
    fn h264_keyframes_single_nal_stap_a_and_fu_a() {
        assert!(is_keyframe(Codec::H264, &[0x65, 0x88])); // IDR
        assert!(is_keyframe(Codec::H264, &[0x67, 0x42])); // SPS
        assert!(!is_keyframe(Codec::H264, &[0x68, 0xce])); // PPS alone
        assert!(!is_keyframe(Codec::H264, &[0x41, 0x9a])); // non-IDR slice
        // STAP-A with SPS and PPS.
        let stap = [0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce];
        assert!(is_keyframe(Codec::H264, &stap));
        // STAP-A with only non-key NALs, and one whose size overruns.
        assert!(!is_keyframe(Codec::H264, &[0x78, 0, 2, 0x41, 0x9a, 0, 1, 0x06]));
        assert!(!is_keyframe(Codec::H264, &[0x78, 0, 9, 0x67, 0x42]));
        // FU-A: start fragment of an IDR, middle fragment of an IDR, start of a non-IDR.
        assert!(is_keyframe(Codec::H264, &[0x7c, 0x85, 0xb8]));
        assert!(!is_keyframe(Codec::H264, &[0x7c, 0x05, 0xb8]));
        assert!(!is_keyframe(Codec::H264, &[0x7c, 0x81, 0x9a]));
        assert!(!is_keyframe(Codec::H264, &[0x7c]));
        assert!(!is_keyframe(Codec::H264, &[]));
    }

    #[test]
    fn vp9_keyframe_is_non_inter_predicted_start_of_base_layer() {
        // I=1 (7-bit pid), B=1, V=1; no layer indices.
        assert!(is_keyframe(Codec::Vp9, &[0x8a, 0x05, 0x00]));
        // P=1: inter-predicted.
        assert!(!is_keyframe(Codec::Vp9, &[0xca, 0x05]));
        // B=0: not the beginning of a frame.
        assert!(!is_keyframe(Codec::Vp9, &[0x82, 0x05]));
        // L=1 with a 15-bit picture id: SID 0 is a keyframe, SID 1 is not.
        assert!(is_keyframe(Codec::Vp9, &[0xaa, 0x81, 0x02, 0x00, 0x00]));
        assert!(!is_keyframe(Codec::Vp9, &[0xaa, 0x81, 0x02, 0x02, 0x00]));
        assert!(!is_keyframe(Codec::Vp9, &[0xaa, 0x81]));
        assert!(!is_keyframe(Codec::Vp9, &[]));
    }

    #[test]
    fn audio_always_starts_decoding_and_names_map() {
        assert!(is_keyframe(Codec::Opus, &[]));
        assert_eq!(Codec::from_encoding_name("vp8"), Some(Codec::Vp8));
        assert_eq!(Codec::from_encoding_name("OPUS"), Some(Codec::Opus));
        assert_eq!(Codec::from_encoding_name("AV1"), None);
        assert!(!Codec::Opus.is_video() && Codec::H264.is_video());
    }

    #[test]
    fn random_payloads_never_panic() {
        let mut rng = SmallRng::seed_from_u64(5);
        let mut buf = [0u8; 32];
        for _ in 0..100_000 {
            let len = rng.random_range(0..buf.len());
            rng.fill(&mut buf[..len]);
            for c in [Codec::Opus, Codec::Vp8, Codec::Vp9, Codec::H264] {
                let _ = is_keyframe(c, &buf[..len]);
            }
            if let Ok(d) = Vp8Descriptor::parse(&buf[..len]) {
                assert!(d.header_len <= len);
                let _ = d.set_picture_id(&mut buf[..len], 0xffff);
                let _ = d.set_tl0_pic_idx(&mut buf[..len], 1);
            }
        }
    }
}

//! Picture size from a keyframe's payload (VP8 frame header, H.264 sequence parameter set), for
//! the layer sizes the engine reports and the recorder's files.

/// Width and height from the first packet of a VP8 keyframe (RFC 6386 9.1: after the frame
/// tag and start code, 14-bit little-endian width and height, each with a 2-bit scale).
/// `vp8_payload` starts after the RTP payload descriptor.
pub fn vp8_keyframe_size(vp8_payload: &[u8]) -> Option<(u16, u16)> {
    let h = vp8_payload.get(0..10)?;
    if h[0] & 0x01 != 0 || h[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u16::from_le_bytes([h[6], h[7]]) & 0x3fff;
    let ht = u16::from_le_bytes([h[8], h[9]]) & 0x3fff;
    (w > 0 && ht > 0).then_some((w, ht))
}

/// Width and height from an H.264 RTP payload (RFC 6184) that carries the sequence parameter
/// set: a single SPS NAL unit, or one inside a STAP-A. Keyframes from browsers start so.
pub fn h264_keyframe_size(payload: &[u8]) -> Option<(u16, u16)> {
    match payload.first()? & 0x1f {
        7 => h264_sps_size(payload),
        24 => {
            // STAP-A: [header] then (16-bit size, NAL unit)*.
            let mut rest = payload.get(1..)?;
            while rest.len() > 2 {
                let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                let nal = rest.get(2..2 + n)?;
                if nal.first().is_some_and(|h| h & 0x1f == 7) {
                    return h264_sps_size(nal);
                }
                rest = &rest[2 + n..];
            }
            None
        }
        _ => None,
    }
}

/// Width and height from an H.264 sequence parameter set NAL unit (ITU-T H.264 7.3.2.1.1, with
/// the frame cropping of 7.4.2.1.1). `None` for anything malformed or out of range.
pub fn h264_sps_size(nal: &[u8]) -> Option<(u16, u16)> {
    // Emulation prevention: 00 00 03 → 00 00. An SPS is short; a fixed buffer avoids allocating.
    let mut rbsp = [0u8; 256];
    let mut len = 0;
    let mut zeros = 0;
    for &b in nal.get(1..)? {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        *rbsp.get_mut(len)? = b;
        len += 1;
    }
    let mut r = BitReader { data: &rbsp[..len], pos: 0 };
    let profile_idc = r.bits(8)?;
    r.bits(16)?; // constraint flags, level_idc
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    if matches!(profile_idc, 100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc == 3 {
            r.bits(1)?; // separate_colour_plane_flag
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bits(1)?; // qpprime_y_zero_transform_bypass_flag
        if r.bits(1)? == 1 {
            // seq_scaling_matrix_present_flag: skip the lists (7.3.2.1.1.1).
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bits(1)? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i64, 8i64);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + r.se()? + 256) % 256;
                        }
                        last = if next == 0 { last } else { next };
                    }
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.bits(1)?;
            r.se()?;
            r.se()?;
            for _ in 0..r.ue()?.min(255) {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bits(1)?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = u64::from(r.ue()?) + 1;
    let height_units = u64::from(r.ue()?) + 1;
    let frame_mbs_only = u64::from(r.bits(1)?);
    if frame_mbs_only == 0 {
        r.bits(1)?; // mb_adaptive_frame_field_flag
    }
    r.bits(1)?; // direct_8x8_inference_flag
    let (mut cl, mut cr, mut ct, mut cb) = (0u64, 0u64, 0u64, 0u64);
    if r.bits(1)? == 1 {
        cl = r.ue()?.into();
        cr = r.ue()?.into();
        ct = r.ue()?.into();
        cb = r.ue()?.into();
    }
    let (sub_w, sub_h) = match chroma_format_idc {
        0 => (1, 1),
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    };
    let width = (width_mbs * 16).checked_sub((cl + cr) * sub_w)?;
    let height = ((2 - frame_mbs_only) * height_units * 16).checked_sub((ct + cb) * sub_h * (2 - frame_mbs_only))?;
    let (w, h) = (u16::try_from(width).ok()?, u16::try_from(height).ok()?);
    (w > 0 && h > 0).then_some((w, h))
}

/// Reads bits most significant first, with the Exp-Golomb codes of H.264 9.1.
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn bits(&mut self, n: u32) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = self.data.get(self.pos / 8)?;
            v = (v << 1) | u32::from((byte >> (7 - self.pos % 8)) & 1);
            self.pos += 1;
        }
        Some(v)
    }

    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bits(1)? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        ((1u64 << zeros) - 1 + u64::from(self.bits(zeros)?)).try_into().ok()
    }

    fn se(&mut self) -> Option<i64> {
        let k = i64::from(self.ue()?);
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn h264_sps_size_reads_libx264_parameter_sets() {
        // SPS units libx264 wrote (ffmpeg -f lavfi -i testsrc=size=WxH -c:v libx264 -profile:v P):
        // baseline with cropping (180 = 12 × 16 − 12), high, high at 1080 (cropped from 1088),
        // and high 4:4:4.
        let cases = [
            ("6742c01fd9005005bb0110000003001000000303c0f1832480", (1280, 720)),
            ("6742c00dd901419f9f0110000003001000000303c0f142a480", (320, 180)),
            ("6764001eacd940a02ff970110000030001000003003c0f162d96", (640, 360)),
            ("67640028acd940780227e5c044000003000400000300f03c60c658", (1920, 1080)),
            ("67f4000d919b282c12d80880000003008000001e078a14cb", (352, 288)),
        ];
        for (hex, size) in cases {
            let nal: Vec<u8> =
                (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
            assert_eq!(h264_sps_size(&nal), Some(size), "{hex}");
            assert_eq!(h264_keyframe_size(&nal), Some(size), "single NAL unit");
            // In a STAP-A after a SEI-like unit.
            let mut stap = vec![0x78, 0, 2, 0x06, 0x05];
            stap.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            stap.extend_from_slice(&nal);
            assert_eq!(h264_keyframe_size(&stap), Some(size), "STAP-A");
            // Every truncation fails cleanly.
            for cut in 0..nal.len() - 1 {
                let _ = h264_sps_size(&nal[..cut]);
            }
        }
        assert_eq!(h264_keyframe_size(&[0x65, 0x88, 0x84]), None, "an IDR slice has no size");
        assert_eq!(h264_keyframe_size(&[0x78, 0, 200, 0x67]), None, "a STAP-A size past the end");
        assert_eq!(h264_sps_size(&[0x67; 300]), None, "longer than any SPS");
    }

    #[test]
    fn vp8_keyframe_size_reads_the_frame_header() {
        // Frame tag (key frame), start code, 1280 (0x500) and 720 (0x2d0) little-endian.
        let kf = [0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x00, 0x05, 0xd0, 0x02];
        assert_eq!(vp8_keyframe_size(&kf), Some((1280, 720)));
        // Scale bits are masked off.
        let scaled = [0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x41, 0x40, 0xc0];
        assert_eq!(vp8_keyframe_size(&scaled), Some((320, 64)));
        let mut delta = kf;
        delta[0] |= 1;
        assert_eq!(vp8_keyframe_size(&delta), None);
        assert_eq!(vp8_keyframe_size(&kf[..9]), None);
        let mut bad_code = kf;
        bad_code[4] = 0;
        assert_eq!(vp8_keyframe_size(&bad_code), None);
    }
}

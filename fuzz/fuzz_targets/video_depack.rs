#![no_main]
//! The recorder's video depacketizers (H.264 RFC 6184, VP8 RFC 7741) on arbitrary packets, and
//! the fragmented MP4 writer on what comes out: nothing panics, and every H.264 access unit is
//! well-formed AVCC (4-byte lengths that add up to the data exactly).
//!
//! Input: packets of `[flags, len, payload of len bytes]`; flags bit 0 is the marker, bit 1
//! "lost packets before this one", bit 2 "next timestamp".
use libfuzzer_sys::fuzz_target;
use recorder::depack::{Frame, H264Depacketizer, Ordered, VideoDepacketizer, Vp8Depacketizer};
use recorder::mp4::{AvcTrack, Mp4Writer};

fuzz_target!(|data: &[u8]| {
    let mut h264 = VideoDepacketizer::H264(H264Depacketizer::new());
    let mut vp8 = VideoDepacketizer::Vp8(Vp8Depacketizer::new());
    let mut frames: Vec<Frame> = Vec::new();
    let mut vp8_frames = Vec::new();
    let (mut at, mut seq, mut ts) = (0usize, 0u64, 0u32);
    while at + 2 <= data.len() {
        let (flags, len) = (data[at], data[at + 1]);
        let end = (at + 2 + usize::from(len)).min(data.len());
        let payload = data[at + 2..end].to_vec();
        at = end;
        if flags & 4 != 0 {
            ts = ts.wrapping_add(3000);
        }
        seq += 1;
        let p = Ordered { seq, timestamp: ts, marker: flags & 1 != 0, payload, after_gap: flags & 2 != 0 };
        h264.push(&p, &mut frames);
        vp8.push(&p, &mut vp8_frames);
    }
    h264.flush(&mut frames);
    let mut writer: Option<Mp4Writer> = None;
    for f in &frames {
        let mut rest = &f.data[..];
        while !rest.is_empty() {
            assert!(rest.len() >= 4);
            let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            assert!(n >= 1 && 4 + n <= rest.len());
            rest = &rest[4 + n..];
        }
        if let Some(params) = f.params.clone() {
            let track = AvcTrack { params, width: 16, height: 16, timescale: 90_000 };
            if let Ok((w, _)) = Mp4Writer::start(&track) {
                writer = Some(w);
            }
        }
        if let Some(w) = writer.as_mut() {
            let _ = w.frame(u64::from(f.timestamp), f.keyframe, &f.data);
        }
    }
    if let Some(mut w) = writer {
        let _ = w.finish();
    }
});

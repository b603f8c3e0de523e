#![no_main]
//! Parses an RTP header, walks every extension through the typed readers, and exercises the
//! RTX and codec paths the router runs on a received packet, layer sizes included.
use libfuzzer_sys::fuzz_target;
use router_engine::{codec, rtp};

fuzz_target!(|data: &[u8]| {
    let _ = rtp::is_rtcp(data);
    let Ok(h) = rtp::parse(data) else { return };
    assert!(h.header_len + h.payload_len <= data.len());
    for (id, value) in h.extensions(data) {
        assert!(id != 0);
        let _ = rtp::read_transport_cc(value);
        let _ = rtp::read_audio_level(value);
        let _ = rtp::read_abs_send_time(value);
        let _ = rtp::read_str(value);
        let _ = rtp::read_video_orientation(value);
    }
    let _ = h.csrcs(data).count();
    let _ = h.find_extension(data, 3);
    let _ = rtp::find_extension(data, 1);
    let payload = h.payload(data);
    for c in [schema::codec::Codec::Vp8, schema::codec::Codec::Vp9, schema::codec::Codec::H264] {
        let _ = codec::is_keyframe(c, payload);
    }
    if let Ok(d) = codec::Vp8Descriptor::parse(payload) {
        let _ = payload.get(d.header_len..).and_then(codec::vp8_keyframe_size);
    }
    // Layer sizes come from keyframes: the VP8 frame header, the H.264 SPS.
    let _ = codec::h264_keyframe_size(payload);
    let _ = codec::h264_sps_size(payload);
    let mut out = [0u8; 1600];
    let params = rtp::RtxParams { ssrc: 1, payload_type: 97, sequence_number: 1 };
    let _ = rtp::write_rtx(data, &params, &mut out);
    let _ = rtp::unwrap_rtx(data, 2, 96, &mut out);
});

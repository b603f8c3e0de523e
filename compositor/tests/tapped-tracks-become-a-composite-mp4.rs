//! The router's media tap, through `TapFeed`, into a job: real VP8 (two simulcast layers) and
//! Opus made by ffmpeg, packetized into RTP as `TapRecord`s (with sender reports, a sequence
//! number wrap and reordered packets), a second camera that leaves mid-job, fed in real time,
//! composited into one MP4 that ffprobe reads back.
//!
//! Needs ffmpeg/ffprobe (libvpx, libopus) and the GStreamer plugins (scripts/test.sh installs
//! both).
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{check_timing, probe, tempdir};
use compositor::TapFeed;
use schema::codec::Codec;
use schema::tap::TapRecord;
use synth_media::encoded::{opus_packets, vp8_frames, vp8_packetize};

/// The sender's wall clock at the first frame (Unix ms).
const WALL: u64 = 1_700_000_000_000;
const SECONDS: u32 = 3;

fn meta(track: &str, kind: &str) -> String {
    serde_json::to_string(&common::runner::meta(track, kind)).unwrap()
}

/// Unix ms as NTP (32.32 fixed point since 1900).
fn ntp(unix_ms: u64) -> u64 {
    let secs = unix_ms / 1000 + 2_208_988_800;
    (secs << 32) | (((unix_ms % 1000) << 32) / 1000)
}

fn rtp(seq: u16, ts: u32, marker: bool, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 96 | if marker { 0x80 } else { 0 }];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn encode(rec: &TapRecord<'_>) -> Vec<u8> {
    let mut buf = Vec::new();
    rec.encode(&mut buf);
    buf
}

/// The records of one peer's camera (layers `0..layers.len()`, producer 1) and microphone
/// (producer 2), each at its send time (ms after the first frame).
fn tap_records(layers: &[Vec<synth_media::encoded::Vp8Frame>], opus: &[Vec<u8>]) -> Vec<(u64, Vec<u8>)> {
    let mut out = vec![
        (
            0,
            encode(&TapRecord::Start {
                tap: 1,
                producer: 1,
                codec: Codec::Vp8,
                clock_rate: 90_000,
                meta: &meta("cam", "video"),
            }),
        ),
        (
            0,
            encode(&TapRecord::Start {
                tap: 1,
                producer: 2,
                codec: Codec::Opus,
                clock_rate: 48_000,
                meta: &meta("mic", "audio"),
            }),
        ),
    ];
    for (layer, frames) in layers.iter().enumerate() {
        let layer = layer as u8;
        let base_ts = 7_000 + u32::from(layer) * 100_000;
        out.push((
            0,
            encode(&TapRecord::SenderReport { tap: 1, producer: 1, layer, ntp: ntp(WALL), rtp_time: base_ts }),
        ));
        // Starts near the end of the sequence space: the reorder buffer must unwrap it.
        let mut seq = 65_500u16.wrapping_add(u16::from(layer) * 7);
        for (i, f) in frames.iter().enumerate() {
            let at = i as u64 * 1000 / 30;
            let ts = base_ts + i as u32 * 3000;
            let payloads = vp8_packetize(&f.data, 200);
            let mut packets: Vec<Vec<u8>> = payloads
                .iter()
                .enumerate()
                .map(|(n, p)| {
                    seq = seq.wrapping_add(1);
                    rtp(seq, ts, n + 1 == payloads.len(), 10 + u32::from(layer), p)
                })
                .collect();
            if i % 5 == 4 && packets.len() >= 2 {
                packets.swap(0, 1); // out of order within the frame (not the first: that starts the buffer)
            }
            for (n, p) in packets.into_iter().enumerate() {
                // The layers' packets of one instant interleave, as a sender's do (below).
                out.push((at * 1000 + n as u64, encode(&TapRecord::Rtp { tap: 1, producer: 1, layer, packet: &p })));
            }
        }
    }
    // A second peer's camera (no simulcast, no sender report: placed by its arrival) leaves
    // after 2 s.
    out.push((
        0,
        encode(&TapRecord::Start {
            tap: 1,
            producer: 3,
            codec: Codec::Vp8,
            clock_rate: 90_000,
            meta: &meta("cam2", "video"),
        }),
    ));
    let mut seq = 0u16;
    for (i, f) in layers[0].iter().take(60).enumerate() {
        let payloads = vp8_packetize(&f.data, 1200);
        for (n, p) in payloads.iter().enumerate() {
            seq += 1;
            let p = rtp(seq, 555 + i as u32 * 3000, n + 1 == payloads.len(), 30, p);
            out.push((
                i as u64 * 1000 / 30 * 1000 + n as u64,
                encode(&TapRecord::Rtp { tap: 1, producer: 3, layer: 0, packet: &p }),
            ));
        }
    }
    out.push((2000 * 1000, encode(&TapRecord::Stop { tap: 1, producer: 3 })));
    let base_ts = 123_456u32;
    out.push((
        0,
        encode(&TapRecord::SenderReport { tap: 1, producer: 2, layer: 0, ntp: ntp(WALL), rtp_time: base_ts }),
    ));
    for (i, packet) in opus.iter().enumerate() {
        let p = rtp(40_000 + i as u16, base_ts + i as u32 * 960, false, 20, packet);
        out.push((i as u64 * 20 * 1000, encode(&TapRecord::Rtp { tap: 1, producer: 2, layer: 0, packet: &p })));
    }
    let end = u64::from(SECONDS) * 1000 * 1000;
    // Both taps end before the job does.
    out.push((end, encode(&TapRecord::Stop { tap: 1, producer: 1 })));
    out.push((end, encode(&TapRecord::Stop { tap: 1, producer: 2 })));
    // Stable: a frame's packets keep their (shuffled) order, the layers' packets alternate.
    out.sort_by_key(|(key, _)| *key);
    out.into_iter().map(|(key, rec)| (key / 1000, rec)).collect()
}

fn layer(dir: &Path, name: &str, width: u16, height: u16) -> Vec<synth_media::encoded::Vp8Frame> {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    vp8_frames(&d, SECONDS, width, height).unwrap()
}

#[test]
fn tapped_simulcast_vp8_and_opus_become_one_h264_aac_mp4() {
    let dir = tempdir("tap-feed");
    let layers = vec![layer(&dir, "q", 160, 120), layer(&dir, "h", 320, 240)];
    assert_eq!(layers[1].len(), 90);
    let opus = opus_packets(&dir, SECONDS).unwrap();
    assert!(opus.len() >= 149, "{} opus packets", opus.len());
    let records = tap_records(&layers, &opus);

    let out = dir.join("out");
    let mut job = common::small_grid_job(&out);
    let mut feed = TapFeed::new(Duration::ZERO);
    let start = Instant::now();
    for (at, rec) in &records {
        if let Some(wait) = Duration::from_millis(*at).checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        feed.handle_record(WALL + at, rec, &mut job).unwrap();
        if *at == 1000 {
            assert_eq!(feed.layer_of(1, 1), Some(1), "the recorder's pick: the top layer, with a keyframe");
            assert!(feed.input_of(1, 1).is_some() && feed.input_of(1, 2).is_some() && feed.input_of(1, 3).is_some());
        }
    }
    let inputs = [feed.input_of(1, 1), feed.input_of(1, 2), feed.input_of(1, 3)];
    assert_eq!(inputs, [None, None, None], "Stop removed the inputs");
    if let Some(e) = job.poll() {
        panic!("pipeline error: {e}");
    }
    let stats = feed.stats();
    assert_eq!(stats.bad_records, 0);
    assert_eq!(stats.lost_packets, 0, "{stats:?}");
    assert_eq!(stats.video_frames, 90 + 60, "one layer's frames and the second camera's, each once: {stats:?}");
    assert_eq!(stats.audio_packets, opus.len() as u64);
    let finished_at = job.running_time().unwrap();
    job.finish(Duration::from_secs(10)).unwrap();

    let p = probe(&out.join("room.1.mp4"));
    let (codec, width, height, _) = p.video.clone().unwrap();
    assert_eq!((codec.as_str(), width, height), ("h264", 640, 360));
    assert_eq!(p.audio.as_deref(), Some("aac"));
    assert!(p.errors.is_empty(), "ffprobe: {}", p.errors);
    check_timing(&p, f64::from(SECONDS), finished_at);
}

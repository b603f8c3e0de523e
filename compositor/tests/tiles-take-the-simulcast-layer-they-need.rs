//! A simulcast camera is decoded at the layer its tile needs: with two cameras in a 640×360
//! grid its tile is 320×180, so after the first pick (the top layer, 640×360) the feed asks
//! for a keyframe and moves to the 320×180 layer at its next keyframe; when the other camera
//! leaves, the tile is the whole picture and it moves back up. No frame of the camera is lost
//! across both moves (the layers' keyframes line up, as a browser's do), the PTS never goes
//! back, and ffmpeg decodes the MP4 cleanly. Real VP8 made by ffmpeg, fed in
//! real time as tap records with sender reports (each layer its own RTP clock offset).
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use common::runner::{encode, ntp, rtp};
use common::{check_timing, probe, tempdir, vp8_of};
use compositor::TapFeed;
use schema::codec::Codec;
use schema::tap::TapRecord;
use synth_media::encoded::vp8_packetize;

const WALL: u64 = 1_700_000_000_000;
const SECONDS: u32 = 4;
/// The second camera leaves after this many of its frames (1.5 s).
const OTHER_FRAMES: usize = 45;

fn start(producer: u32, track: &str, peer: &str) -> Vec<u8> {
    let mut meta = common::runner::meta(track, "video");
    meta.peer_id = peer.into();
    meta.peer_name = peer.into();
    let meta = serde_json::to_string(&meta).unwrap();
    encode(&TapRecord::Start { tap: 1, producer, codec: Codec::Vp8, clock_rate: 90_000, meta: &meta })
}

/// `frames` of one layer of `producer` as tap records at their send times (µs).
fn layer_records(producer: u32, layer: u8, frames: &[(Vec<u8>, bool)], base_ts: u32, out: &mut Vec<(u64, Vec<u8>)>) {
    out.push((0, encode(&TapRecord::SenderReport { tap: 1, producer, layer, ntp: ntp(WALL), rtp_time: base_ts })));
    let mut seq = 1000u16.wrapping_mul(u16::from(layer) + 1);
    for (i, (data, _)) in frames.iter().enumerate() {
        let payloads = vp8_packetize(data, 1000);
        for (n, p) in payloads.iter().enumerate() {
            seq = seq.wrapping_add(1);
            let packet = rtp(
                seq,
                base_ts.wrapping_add(i as u32 * 3000),
                n + 1 == payloads.len(),
                producer * 10 + u32::from(layer),
                p,
            );
            // The top layer's packets of an instant first: the first pick takes it.
            let at = i as u64 * 1_000_000 / 30 + n as u64 + u64::from(1 - layer.min(1)) * 100;
            out.push((at, encode(&TapRecord::Rtp { tap: 1, producer, layer, packet: &packet })));
        }
    }
}

#[test]
fn a_camera_follows_the_layer_its_tile_needs_down_and_back_up() {
    let dir = tempdir("tile-layers");
    let small = vp8_of(&dir, "q", "testsrc=size=320x180:rate=30", SECONDS, 300);
    let large = vp8_of(&dir, "h", "testsrc=size=640x360:rate=30", SECONDS, 800);
    let other = vp8_of(&dir, "other", "testsrc2=size=320x180:rate=30", SECONDS, 300);
    assert_eq!((small.len(), large.len()), (120, 120));
    let keyframes: Vec<usize> = small.iter().enumerate().filter(|(_, f)| f.1).map(|(i, _)| i).collect();
    assert_eq!(keyframes, [0, 30, 60, 90], "both layers keyframe every 30 frames");

    let mut records = vec![(0, start(1, "cam", "alice")), (0, start(2, "cam2", "bob"))];
    layer_records(1, 0, &small, 90_000, &mut records);
    layer_records(1, 1, &large, 3_000_000_000, &mut records);
    layer_records(2, 0, &other[..OTHER_FRAMES], 5_000, &mut records);
    records.push((OTHER_FRAMES as u64 * 1_000_000 / 30, encode(&TapRecord::Stop { tap: 1, producer: 2 })));
    let end = u64::from(SECONDS) * 1_000_000;
    records.push((end, encode(&TapRecord::Stop { tap: 1, producer: 1 })));
    records.sort_by_key(|(at, _)| *at);

    let out = dir.join("out");
    let mut job = common::small_grid_job(&out);
    let mut feed = TapFeed::new(Duration::ZERO);
    let start_at = Instant::now();
    let mut layers_seen: Vec<(u64, Option<u8>)> = Vec::new();
    let mut keyframe_asks = 0;
    for (at_us, rec) in &records {
        if let Some(wait) = Duration::from_micros(*at_us).checked_sub(start_at.elapsed()) {
            std::thread::sleep(wait);
        }
        let at = at_us / 1000;
        feed.handle_record(WALL + at, rec, &mut job).unwrap();
        keyframe_asks += feed.take_keyframes_wanted().iter().filter(|m| m.track_id == "cam").count();
        let layer = feed.layer_of(1, 1);
        if layers_seen.last().is_none_or(|(_, l)| *l != layer) {
            layers_seen.push((at, layer));
        }
        if let Some(e) = job.poll() {
            panic!("pipeline error: {e}");
        }
    }
    // Moves (ms into the call, the layer followed from then): the top layer first (the
    // recorder's pick), the small one at its keyframe at 1 s (two 320×180 tiles), the top one
    // at its keyframe at 2 s once the other camera left at 1.5 s (one 640×360 tile).
    let moves: Vec<(u64, Option<u8>)> = layers_seen.iter().filter(|(_, l)| l.is_some()).copied().collect();
    let followed: Vec<Option<u8>> = moves.iter().map(|(_, l)| *l).collect();
    assert_eq!(followed, [Some(1), Some(0), Some(1)], "layers over time (ms, layer): {layers_seen:?}");
    assert!((990..1100).contains(&moves[1].0), "down at the 1 s keyframe: {layers_seen:?}");
    assert!((1990..2100).contains(&moves[2].0), "up at the 2 s keyframe: {layers_seen:?}");
    assert!(keyframe_asks >= 2, "a keyframe asked for each move: {keyframe_asks}");
    let stats = feed.stats();
    // Every instant at least once; a move may push one instant twice (the old layer's frame,
    // then the new layer's keyframe of the same instant, placed 1 ms later: it must be decoded).
    let expected = 120 + OTHER_FRAMES as u64;
    assert!((expected..=expected + 2).contains(&stats.video_frames), "each of the camera's frames: {stats:?}");
    assert_eq!(stats.lost_packets, 0, "{stats:?}");

    let finished_at = job.running_time().unwrap();
    job.finish(Duration::from_secs(10)).unwrap();
    let p = probe(&out.join("room.1.mp4"));
    assert!(p.errors.is_empty(), "ffprobe: {}", p.errors);
    let (codec, width, height, _) = p.video.clone().unwrap();
    assert_eq!((codec.as_str(), width, height), ("h264", 640, 360));
    check_timing(&p, f64::from(SECONDS), finished_at);
}

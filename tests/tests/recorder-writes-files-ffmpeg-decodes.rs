//! A publisher sends real VP8 and Opus (made by ffmpeg) through the engine; both producers are
//! tapped; the tap records go to the recorder, whose files Debian's ffmpeg then decodes without
//! an error, with the duration and frame count that were sent. A second scenario loses and
//! reorders packets on the way in and checks the files still decode.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use integration_tests::encoded::{opus_packets, vp8_frames, vp8_packetize};
use integration_tests::room::produce_params;
use integration_tests::sim::{Link, Sim};
use recorder::recorder::Manifest;
use recorder::{Config, Recorder};
use router_engine::MediaKind;
use router_engine::tap::{TapRecord, TapSink};
use schema::recording::{RecorderEvent, TapMeta};

/// The engine's sink in this test: records are kept for the recorder, fed in sim time.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<Vec<u8>>>>);

impl TapSink for Shared {
    fn offer(&mut self, record: &TapRecord<'_>) -> bool {
        let mut buf = Vec::new();
        record.encode(&mut buf);
        self.0.lock().unwrap().push(buf);
        true
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rec-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn meta(track: &str, kind: &str) -> String {
    serde_json::to_string(&TapMeta {
        recording_id: "rec1".into(),
        room_id: "room1".into(),
        session_id: "s1".into(),
        peer_id: "peer-a".into(),
        user_id: "u".into(),
        track_id: track.into(),
        stream_id: "stream-a".into(),
        track_type: kind.into(),
    })
    .unwrap()
}

/// ffprobe's duration (s) and, for video, the decoded frame count; and `ffmpeg -f null`
/// must decode the whole file without a message.
fn decode(path: &Path) -> (f64, u64) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-xerror", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-show_entries", "format=duration:stream=nb_read_frames", "-of", "json"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let duration = v["format"]["duration"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0.0);
    let frames = v["streams"][0]["nb_read_frames"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
    (duration, frames)
}

struct Run {
    dir: PathBuf,
    events: Vec<RecorderEvent>,
    video_sent: u64,
    audio_sent: u64,
}

fn record(name: &str, seconds: u32, up: Link, finish: bool, max_part_ms: u64) -> Run {
    let dir = temp_dir(name);
    let frames = vp8_frames(&dir, seconds, 320, 240).unwrap();
    let opus = opus_packets(&dir, seconds).unwrap();
    let out_dir = dir.join("out");

    let mut sim = Sim::new(0x7ec0_0001);
    let (publisher, transport) = sim.add_client(up, Link::default());
    let audio_pub = sim.client(publisher).publish("a0", MediaKind::Audio);
    let video_pub = sim.client(publisher).publish("v0", MediaKind::Video);
    let audio = sim.engine.produce(transport.id, produce_params(MediaKind::Audio, &audio_pub)).unwrap();
    let video = sim.engine.produce(transport.id, produce_params(MediaKind::Video, &video_pub)).unwrap();
    let sink = Shared::default();
    sim.engine.set_tap_sink(Box::new(sink.clone()));
    sim.engine.start_tap(sim.now, audio, 1, meta("track-audio", "audio")).unwrap();
    sim.engine.start_tap(sim.now, video, 1, meta("track-video", "video")).unwrap();

    let mut rec = Recorder::new(Config { dir: out_dir.clone(), max_part_bytes: u64::MAX, max_part_ms });
    let wall0 = 1_700_000_000_000u64;
    let feed = |rec: &mut Recorder, sim: &Sim| {
        let now_ms = wall0 + (sim.now - sim.start).as_millis() as u64;
        for r in sink.0.lock().unwrap().drain(..) {
            rec.handle_record(now_ms, &r);
        }
    };
    let start = sim.now;
    let (mut seq_v, mut seq_a) = (5000u64, 100u64);
    let (mut vi, mut ai) = (0usize, 0usize);
    let mut video_sent = 0;
    let mut audio_sent = 0;
    loop {
        let t_video = start + Duration::from_micros(33_333 * vi as u64);
        let t_audio = start + Duration::from_millis(20 * ai as u64);
        if vi >= frames.len() && ai >= opus.len() {
            break;
        }
        let next = if vi < frames.len() && (ai >= opus.len() || t_video <= t_audio) { t_video } else { t_audio };
        sim.run_until(next);
        feed(&mut rec, &sim);
        let now = sim.now;
        if next == t_video && vi < frames.len() {
            let payloads = vp8_packetize(&frames[vi].data, 1100);
            let n = payloads.len();
            for (i, p) in payloads.into_iter().enumerate() {
                sim.client(publisher).send(&video_pub, now, seq_v, 90_000 + 3000 * vi as u32, i + 1 == n, &p);
                seq_v += 1;
            }
            vi += 1;
            video_sent += 1;
        } else if ai < opus.len() {
            sim.client(publisher).send(&audio_pub, now, seq_a, 48_000 + 960 * ai as u32, false, &opus[ai]);
            seq_a += 1;
            ai += 1;
            audio_sent += 1;
        }
    }
    sim.run_for(Duration::from_millis(500));
    feed(&mut rec, &sim);
    if !finish {
        // As if the recorder were killed: nothing is closed or patched.
        drop(rec);
        return Run { dir: out_dir, events: Vec::new(), video_sent, audio_sent };
    }
    sim.engine.stop_tap(audio).unwrap();
    sim.engine.stop_tap(video).unwrap();
    feed(&mut rec, &sim);
    let mut events = Vec::new();
    while let Some(e) = rec.poll_event() {
        events.push(e);
    }
    assert_eq!(sim.engine.counters().tap_dropped, 0);
    Run { dir: out_dir, events, video_sent, audio_sent }
}

#[test]
fn tapped_tracks_become_files_that_ffmpeg_decodes() {
    let seconds = 6;
    let run = record("clean", seconds, Link::default(), true, u64::MAX);
    let closed: Vec<_> = run
        .events
        .iter()
        .filter_map(|e| match e {
            RecorderEvent::PartClosed { meta, part } => Some((meta.track_id.clone(), part.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(closed.len(), 2, "{:?}", run.events);
    for (track, part) in &closed {
        let path = run.dir.join(&part.path);
        let (duration, frames) = decode(&path);
        let want = seconds as f64;
        assert!((duration - want).abs() / want < 0.05, "{track}: duration {duration} s, sent {want} s");
        assert_eq!(part.size, std::fs::metadata(&path).unwrap().len());
        assert!(part.complete && part.part == 1);
        if track == "track-video" {
            assert!(path.extension().unwrap() == "webm");
            let sent = run.video_sent as f64;
            assert!((frames as f64 - sent).abs() / sent < 0.05, "decoded {frames} frames, sent {sent}");
            assert_eq!(part.frames, run.video_sent);
        } else {
            assert!(path.extension().unwrap() == "ogg");
            assert_eq!(part.frames, run.audio_sent);
        }
    }
    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(run.dir.join("rec1/manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest.tracks.len(), 2);
    assert!(manifest.tracks.iter().all(|t| t.meta.peer_id == "peer-a" && t.parts.len() == 1 && t.parts[0].complete));
}

#[test]
fn lossy_reordered_input_still_gives_decodable_files() {
    let up = Link { loss: 0.02, jitter: Duration::from_millis(15), ..Link::default() };
    let run = record("lossy", 6, up, true, u64::MAX);
    let mut n = 0;
    for e in &run.events {
        if let RecorderEvent::PartClosed { part, .. } = e {
            let (duration, _) = decode(&run.dir.join(&part.path));
            assert!(duration > 3.0, "{duration}");
            n += 1;
        }
    }
    assert_eq!(n, 2, "{:?}", run.events);
}

#[test]
fn files_of_a_recorder_that_died_still_decode() {
    let run = record("killed", 7, Link::default(), false, u64::MAX);
    for name in ["track-audio.1.ogg", "track-video.1.webm"] {
        let path = run.dir.join("rec1/peer-a").join(name);
        let (_, frames) = decode(&path);
        if name.ends_with("webm") {
            // Whole clusters only: everything up to the last keyframe or 5 s cluster.
            assert!(frames >= 60, "{frames} frames survived");
        }
    }
    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(run.dir.join("rec1/manifest.json")).unwrap()).unwrap();
    assert!(manifest.tracks.iter().all(|t| !t.parts[0].complete), "parts stay marked incomplete");
}

#[test]
fn rotation_closes_parts_that_each_decode() {
    // Parts of 2.5 s: audio rotates at the next packet, video at the next keyframe (every 2 s).
    let run = record("rotate", 8, Link::default(), true, 2_500);
    let mut parts: std::collections::BTreeMap<String, Vec<(u32, f64)>> = Default::default();
    for e in &run.events {
        if let RecorderEvent::PartClosed { meta, part } = e {
            let (duration, _) = decode(&run.dir.join(&part.path));
            parts.entry(meta.track_id.clone()).or_default().push((part.part, duration));
        }
    }
    assert!(parts["track-audio"].len() >= 3, "{parts:?}");
    assert!(parts["track-video"].len() >= 2, "{parts:?}");
    for list in parts.values() {
        let numbers: Vec<u32> = list.iter().map(|p| p.0).collect();
        assert_eq!(numbers, (1..=list.len() as u32).collect::<Vec<_>>(), "parts numbered from 1");
        // Every part but the last (the rest of the recording) is about the limit long.
        for &(n, d) in &list[..list.len() - 1] {
            assert!(d > 2.4 && d < 4.6, "part {n}: {d} s");
        }
        let total: f64 = list.iter().map(|p| p.1).sum();
        assert!((total - 8.0).abs() < 0.4, "parts add up to the recording: {total} s");
    }
}

//! A publisher sends real VP8 or H.264, and Opus (made by ffmpeg) through the engine; both
//! producers are tapped; the tap records go to the recorder, whose files (WebM or fragmented
//! MP4, and Ogg) Debian's ffmpeg then decodes without an error, with the duration and frame
//! count that were sent. Other scenarios lose and reorder packets on the way in, kill the
//! recorder (and cut an MP4 in the middle of a fragment), rotate parts, and change the H.264
//! resolution mid-stream; every file still decodes.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use integration_tests::encoded::{h264_access_units, h264_packetize, opus_packets, vp8_frames, vp8_packetize};
use integration_tests::room::produce_params;
use integration_tests::sim::{Link, Sim};
use recorder::recorder::Manifest;
use recorder::{Config, Recorder};
use router_engine::tap::SharedTapSink;
use schema::api::MediaKind;
use schema::codec::Codec;
use schema::recording::{RecorderEvent, TapMeta};
use schema::tap::TapRecord;

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
        ..Default::default()
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

/// ffprobe's codec name, width and height of a video file's stream.
fn video_stream(path: &Path) -> (String, u64, u64) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,width,height",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &v["streams"][0];
    (
        s["codec_name"].as_str().unwrap_or("").to_string(),
        s["width"].as_u64().unwrap_or(0),
        s["height"].as_u64().unwrap_or(0),
    )
}

/// The video codec a run publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Video {
    Vp8,
    H264,
    /// H.264 whose resolution (so SPS and PPS) changes half way: 320x240, then 160x120.
    H264SizeChange,
}

impl Video {
    fn ext(self) -> &'static str {
        if self == Video::Vp8 { "webm" } else { "mp4" }
    }
}

/// Each video frame as its RTP payloads (MTU 1100), 30 fps, a keyframe every 2 s.
fn video_payloads(video: Video, dir: &Path, seconds: u32) -> Vec<Vec<Vec<u8>>> {
    match video {
        Video::Vp8 => {
            vp8_frames(dir, seconds, 320, 240).unwrap().iter().map(|f| vp8_packetize(&f.data, 1100)).collect()
        }
        Video::H264 => {
            h264_access_units(dir, seconds, 320, 240).unwrap().iter().map(|a| h264_packetize(a, 1100)).collect()
        }
        Video::H264SizeChange => {
            let first = seconds / 2;
            let mut units = h264_access_units(dir, first, 320, 240).unwrap();
            units.extend(h264_access_units(dir, seconds - first, 160, 120).unwrap());
            units.iter().map(|a| h264_packetize(a, 1100)).collect()
        }
    }
}

struct Run {
    dir: PathBuf,
    /// The recorder's events but `keyframe_wanted`, which the run answers as signaling does.
    events: Vec<RecorderEvent>,
    video_sent: u64,
    audio_sent: u64,
    /// `keyframe_wanted` events, and the PLIs that reached the publisher after the first one
    /// past the first second (the router asks for keyframes by itself only when the tap starts).
    keyframe_asks: u64,
    late_plis: usize,
}

fn record(name: &str, video: Video, seconds: u32, up: Link, finish: bool, max_part_ms: u64) -> Run {
    let dir = temp_dir(name);
    let frames = video_payloads(video, &dir, seconds);
    let opus = opus_packets(&dir, seconds).unwrap();
    let out_dir = dir.join("out");

    let mut sim = Sim::new(0x7ec0_0001);
    let (publisher, transport) = sim.add_client(up, Link::default());
    let audio_pub = sim.client(publisher).publish("a0", MediaKind::Audio);
    let mut video_pub = sim.client(publisher).publish("v0", MediaKind::Video);
    let mut video_params = produce_params(MediaKind::Video, &video_pub);
    if video != Video::Vp8 {
        (video_pub.pt, video_pub.rtx_pt) = sim.client(publisher).payload_types_of(str0m::format::Codec::H264);
        video_params = produce_params(MediaKind::Video, &video_pub);
        video_params.codec = Codec::H264;
    }
    let audio = sim.engine.produce(transport.id, produce_params(MediaKind::Audio, &audio_pub)).unwrap();
    let video = sim.engine.produce(transport.id, video_params).unwrap();
    // The engine's sink: records are kept for the recorder, fed in sim time.
    let sink = SharedTapSink::default();
    sim.engine.set_tap_sink(schema::tap::TapReader::Recorder, Box::new(sink.clone()));
    sim.engine.start_tap(sim.now, audio, 1, meta("track-audio", "audio"), schema::tap::TapReader::Recorder).unwrap();
    sim.engine.start_tap(sim.now, video, 1, meta("track-video", "video"), schema::tap::TapReader::Recorder).unwrap();

    let mut rec = Recorder::new(Config { dir: out_dir.clone(), max_part_bytes: u64::MAX, max_part_ms });
    let wall0 = 1_700_000_000_000u64;
    let mut events = Vec::new();
    let (mut keyframe_asks, mut plis_at_late_ask) = (0u64, None);
    // The tap records go to the recorder; a keyframe it wants is asked for as signaling does
    // it (the tap started again, same number and metadata).
    let mut feed = |rec: &mut Recorder, sim: &mut Sim| {
        let now_ms = wall0 + (sim.now - sim.start).as_millis() as u64;
        for r in sink.take() {
            rec.handle_record(now_ms, &r);
        }
        while let Some(e) = rec.poll_event() {
            let RecorderEvent::KeyframeWanted { meta: m } = e else {
                events.push(e);
                continue;
            };
            assert_eq!(m.track_id, "track-video", "only video waits for keyframes");
            keyframe_asks += 1;
            if sim.now - sim.start > Duration::from_secs(1) && plis_at_late_ask.is_none() {
                plis_at_late_ask = Some(sim.client(publisher).keyframe_requests);
            }
            sim.engine
                .start_tap(sim.now, video, 1, meta("track-video", "video"), schema::tap::TapReader::Recorder)
                .unwrap();
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
        feed(&mut rec, &mut sim);
        let now = sim.now;
        if next == t_video && vi < frames.len() {
            let payloads = &frames[vi];
            let n = payloads.len();
            for (i, p) in payloads.iter().enumerate() {
                sim.client(publisher).send(&video_pub, now, seq_v, 90_000 + 3000 * vi as u32, i + 1 == n, p);
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
    feed(&mut rec, &mut sim);
    if !finish {
        // As if the recorder were killed: nothing is closed or patched.
        drop(rec);
        return Run { dir: out_dir, events: Vec::new(), video_sent, audio_sent, keyframe_asks: 0, late_plis: 0 };
    }
    sim.engine.stop_tap(audio, None).unwrap();
    sim.engine.stop_tap(video, None).unwrap();
    feed(&mut rec, &mut sim);
    assert_eq!(sim.engine.counters().tap_dropped, 0);
    let late_plis = plis_at_late_ask.map_or(0, |at| sim.client(publisher).keyframe_requests - at);
    Run { dir: out_dir, events, video_sent, audio_sent, keyframe_asks, late_plis }
}

/// A clean run: one part per track, decoded with the duration and frame count sent.
fn clean_run_decodes(name: &str, video: Video) {
    let seconds = 6;
    let run = record(name, video, seconds, Link::default(), true, u64::MAX);
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
        assert!((part.duration_ms as f64 / 1000.0 - want).abs() / want < 0.05, "{track}: manifest {part:?}");
        assert_eq!(part.size, std::fs::metadata(&path).unwrap().len());
        assert!(part.complete && part.part == 1);
        if track == "track-video" {
            assert!(path.extension().unwrap() == video.ext());
            let sent = run.video_sent as f64;
            assert!((frames as f64 - sent).abs() / sent < 0.05, "decoded {frames} frames, sent {sent}");
            assert_eq!(part.frames, run.video_sent);
            let (codec, width, height) = video_stream(&path);
            assert_eq!((codec.as_str(), width, height), (if video == Video::Vp8 { "vp8" } else { "h264" }, 320, 240));
        } else {
            assert!(path.extension().unwrap() == "ogg");
            assert_eq!(part.frames, run.audio_sent);
        }
    }
    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(run.dir.join("rec1/manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest.tracks.len(), 2);
    assert!(manifest.tracks.iter().all(|t| t.meta.peer_id == "peer-a" && t.parts.len() == 1 && t.parts[0].complete));
    let codecs: Vec<&str> = manifest.tracks.iter().map(|t| t.codec.as_str()).collect();
    assert!(
        codecs.contains(&"opus") && codecs.contains(&if video == Video::Vp8 { "vp8" } else { "h264" }),
        "{codecs:?}"
    );
    let started: Vec<_> = run
        .events
        .iter()
        .filter_map(|e| match e {
            RecorderEvent::TrackStarted { codec, .. } => Some(codec.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(started.len(), 2, "{:?}", run.events);
}

#[test]
fn tapped_tracks_become_files_that_ffmpeg_decodes() {
    clean_run_decodes("clean", Video::Vp8);
}

#[test]
fn h264_track_becomes_a_fragmented_mp4_that_ffmpeg_decodes() {
    clean_run_decodes("clean-h264", Video::H264);
}

#[test]
fn lossy_reordered_input_still_gives_decodable_files() {
    for video in [Video::Vp8, Video::H264] {
        let up = Link { loss: 0.02, jitter: Duration::from_millis(15), ..Link::default() };
        let run = record(&format!("lossy-{video:?}"), video, 6, up, true, u64::MAX);
        let mut n = 0;
        for e in &run.events {
            if let RecorderEvent::PartClosed { part, .. } = e {
                let (duration, _) = decode(&run.dir.join(&part.path));
                assert!(duration > 3.0, "{video:?} {}: {duration}", part.path);
                n += 1;
            }
        }
        assert_eq!(n, 2, "{video:?}: {:?}", run.events);
    }
}

#[test]
fn files_of_a_recorder_that_died_still_decode() {
    for video in [Video::Vp8, Video::H264] {
        let run = record(&format!("killed-{video:?}"), video, 7, Link::default(), false, u64::MAX);
        let video_file = format!("track-video.1.{}", video.ext());
        for name in ["track-audio.1.ogg", video_file.as_str()] {
            let path = run.dir.join("rec1/peer-a").join(name);
            let (_, frames) = decode(&path);
            if name == video_file {
                // Whole clusters or fragments only: everything up to the last keyframe or 1 s.
                assert!(frames >= 60, "{video:?}: {frames} frames survived");
            }
        }
        let manifest: Manifest =
            serde_json::from_slice(&std::fs::read(run.dir.join("rec1/manifest.json")).unwrap()).unwrap();
        assert!(manifest.tracks.iter().all(|t| !t.parts[0].complete), "parts stay marked incomplete");
    }
}

/// Offsets and types of an MP4 file's top-level boxes.
fn top_boxes(file: &[u8]) -> Vec<(usize, [u8; 4])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= file.len() {
        let size = u32::from_be_bytes(file[at..at + 4].try_into().unwrap()) as usize;
        out.push((at, file[at + 4..at + 8].try_into().unwrap()));
        at += size.max(8);
    }
    out
}

#[test]
fn mp4_cut_in_the_middle_of_a_fragment_decodes_up_to_it_and_is_recovered() {
    let run = record("cut-h264", Video::H264, 7, Link::default(), false, u64::MAX);
    let path = run.dir.join("rec1/peer-a/track-video.1.mp4");
    let (_, whole_frames) = decode(&path);
    let file = std::fs::read(&path).unwrap();
    let boxes = top_boxes(&file);
    let (last_moof, _) = *boxes.iter().rev().find(|b| &b.1 == b"moof").unwrap();
    // The trun's sample count: 8 bytes into it (after its size, type, version and flags).
    let trun = last_moof + file[last_moof..].windows(4).position(|w| w == b"trun").unwrap() - 4;
    let in_last = u64::from(u32::from_be_bytes(file[trun + 12..trun + 16].try_into().unwrap()));
    let cut = last_moof + (file.len() - last_moof) / 2;
    std::fs::write(&path, &file[..cut]).unwrap();

    // As it is, the cut file plays every complete fragment (ffmpeg complains about the cut
    // sample and goes on).
    let out = Command::new("ffmpeg").args(["-v", "error", "-i"]).arg(&path).args(["-f", "null", "-"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let probe = Command::new("ffprobe")
        .args(["-v", "quiet", "-count_frames", "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(&path)
        .output()
        .unwrap();
    let frames: u64 = String::from_utf8_lossy(&probe.stdout).trim().parse().unwrap();
    assert!(frames >= whole_frames - in_last, "decoded {frames}, complete fragments hold {}", whole_frames - in_last);

    // A recorder started afterwards recovers the part: cut back to its last whole fragment,
    // which then decodes without a single message.
    let mut rec = Recorder::new(Config { dir: run.dir.clone(), max_part_bytes: u64::MAX, max_part_ms: u64::MAX });
    let meta = meta("track-video", "video");
    let mut start = Vec::new();
    TapRecord::Start { tap: 1, producer: 1, codec: Codec::H264, clock_rate: 90_000, meta: &meta }.encode(&mut start);
    rec.handle_record(1_700_000_100_000, &start);
    let recovered: Vec<_> = std::iter::from_fn(|| rec.poll_event())
        .filter_map(|e| match e {
            RecorderEvent::PartClosed { part, .. } => Some(part),
            _ => None,
        })
        .collect();
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].size, last_moof as u64);
    assert!(recovered[0].complete);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), last_moof as u64);
    let (_, frames) = decode(&path);
    assert_eq!(frames, whole_frames - in_last);
}

#[test]
fn rotation_closes_parts_that_each_decode() {
    // Parts of 2.5 s: audio rotates at the next packet, video at the next keyframe (every 2 s).
    for video in [Video::Vp8, Video::H264] {
        let run = record(&format!("rotate-{video:?}"), video, 8, Link::default(), true, 2_500);
        let mut parts: std::collections::BTreeMap<String, Vec<(u32, f64)>> = Default::default();
        for e in &run.events {
            if let RecorderEvent::PartClosed { meta, part } = e {
                let (duration, _) = decode(&run.dir.join(&part.path));
                parts.entry(meta.track_id.clone()).or_default().push((part.part, duration));
            }
        }
        assert!(parts["track-audio"].len() >= 3, "{parts:?}");
        assert!(parts["track-video"].len() >= 2, "{video:?}: {parts:?}");
        // Between a part's limit and the next keyframe the recorder asks for one, and the
        // publisher gets a PLI for it.
        assert!(run.keyframe_asks >= 2, "{video:?}: {} keyframe asks", run.keyframe_asks);
        assert!(run.late_plis >= 1, "{video:?}: no PLI reached the publisher after a rotation ask");
        for list in parts.values() {
            let numbers: Vec<u32> = list.iter().map(|p| p.0).collect();
            assert_eq!(numbers, (1..=list.len() as u32).collect::<Vec<_>>(), "parts numbered from 1");
            // Every part but the last (the rest of the recording) is about the limit long.
            for &(n, d) in &list[..list.len() - 1] {
                assert!(d > 2.4 && d < 4.6, "{video:?} part {n}: {d} s");
            }
            let total: f64 = list.iter().map(|p| p.1).sum();
            assert!((total - 8.0).abs() < 0.4, "{video:?}: parts add up to the recording: {total} s");
        }
    }
}

#[test]
fn h264_resolution_change_starts_a_new_part() {
    let run = record("resize-h264", Video::H264SizeChange, 6, Link::default(), true, u64::MAX);
    let parts: Vec<_> = run
        .events
        .iter()
        .filter_map(|e| match e {
            RecorderEvent::PartClosed { meta, part } if meta.track_id == "track-video" => Some(part.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(parts.len(), 2, "{:?}", run.events);
    let mut total = 0.0;
    for (part, size) in parts.iter().zip([(320, 240), (160, 120)]) {
        let path = run.dir.join(&part.path);
        let (duration, frames) = decode(&path);
        assert_eq!(frames, part.frames);
        let (codec, w, h) = video_stream(&path);
        assert_eq!((codec.as_str(), w, h), ("h264", size.0, size.1), "{}", part.path);
        total += duration;
    }
    assert_eq!(parts.iter().map(|p| p.frames).sum::<u64>(), run.video_sent);
    assert!((total - 6.0).abs() / 6.0 < 0.05, "{total} s");
}

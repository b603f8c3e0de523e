//! An HLS job run by the compositor process's core: ready (`HlsReady`) once its first segment
//! is listed; a cue file control drops beside the job file becomes an `#EXT-X-DATERANGE` in
//! the live playlist and is deleted; with `vod`, removing the job file writes `hls/vod.m3u8`
//! (naming each rendition's VOD playlist), reported as the job's file, which ffmpeg plays
//! through.
//!
//! Needs ffmpeg/ffprobe (libvpx, libopus) and the GStreamer plugins (scripts/test.sh installs
//! both).
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use common::outputs::{decode_all, read, tag};
use common::runner::{
    drive, peer_media, peer_records, plain, remove_job, wait_for, watchdog, write_atomically, write_job,
};
use common::{probe, tempdir};
use compositor::runner::Runner;
use schema::compositor::{CompositorEvent, CompositorJob, Cue, HlsSpec, PlaylistType, RenditionSpec};

const TAP: u32 = 6;
const SECONDS: u64 = 6;
const PAYLOAD: &str = r#"{"type":"poll","id":7}"#;

#[test]
fn an_hls_job_becomes_ready_takes_a_cue_and_leaves_a_vod() {
    watchdog(Duration::from_secs(120));
    let dir = tempdir("runner-hls");
    let jobs = dir.join("jobs");
    std::fs::create_dir_all(&jobs).unwrap();
    let out = dir.join("hls");
    let media = peer_media(&dir, SECONDS as u32);
    let job = CompositorJob {
        job_id: "live1".into(),
        tap: TAP,
        room_id: "room1".into(),
        width: 640,
        height: 360,
        mp4: None,
        hls: Some(HlsSpec {
            dir: out.to_string_lossy().into_owned(),
            renditions: vec![RenditionSpec { width: 640, height: 360, video_kbps: 800 }],
            segment_seconds: 1,
            playlist_type: PlaylistType::Live,
            playlist_segments: 4,
            vod: true,
        }),
        rtmp: Vec::new(),
        paused: false,
        layout: Default::default(),
    };

    let mut runner = Runner::new(&jobs);
    write_job(&jobs, &job);
    let events = wait_for(&mut runner, Duration::from_secs(10), |e| matches!(e, CompositorEvent::Started { .. }));
    assert_eq!(events, [CompositorEvent::Started { job_id: "live1".into() }]);
    let wall = util::unix_ms();
    let records = peer_records(TAP, &media, 0, wall);
    let began = Instant::now();
    let events = drive(
        &mut runner,
        &records[..records.partition_point(|(at, _)| *at < 4000)],
        wall,
        began,
        Duration::from_secs(4),
    );
    assert_eq!(plain(&events), [CompositorEvent::HlsReady { job_id: "live1".into() }]);
    let playlist = read(&out.join("0").join("index.m3u8"));
    assert!(playlist.contains("#EXTINF"), "ready when a segment is listed: {playlist}");

    let cue = Cue { payload: PAYLOAD.into(), duration_seconds: 2 };
    write_atomically(&jobs, "live1.cue.1.json", &serde_json::to_string(&cue).unwrap());
    let rest = &records[records.partition_point(|(at, _)| *at < 4000)..];
    let events = drive(&mut runner, rest, wall, began, Duration::from_secs(SECONDS));
    assert_eq!(plain(&events), [], "ready once");
    assert!(!jobs.join("live1.cue.1.json").exists(), "an applied cue is deleted");
    let playlist = read(&out.join("0").join("index.m3u8"));
    let line = playlist.lines().find(|l| l.starts_with("#EXT-X-DATERANGE:")).unwrap_or_else(|| panic!("{playlist}"));
    // As 100ms's HLS player reads it: base64 JSON holding the payload.
    use base64::Engine as _;
    let data = line.split("X-100MSLIVE-PAYLOAD=\"").nth(1).and_then(|v| v.split('"').next()).unwrap_or_default();
    let data = base64::engine::general_purpose::STANDARD.decode(data).unwrap_or_default();
    let cue: serde_json::Value = serde_json::from_slice(&data).unwrap_or_default();
    assert_eq!(cue["payload"], PAYLOAD, "the payload in {line}");

    remove_job(&jobs, "live1");
    let ran = began.elapsed();
    let events = wait_for(&mut runner, Duration::from_secs(15), |e| matches!(e, CompositorEvent::Finished { .. }));
    let [CompositorEvent::FileClosed { job_id, file }, CompositorEvent::Finished { .. }] = &events[..] else {
        panic!("the VOD reported, then finished: {events:?}");
    };
    assert_eq!(job_id, "live1");
    let vod = out.join("vod.m3u8");
    assert_eq!(file.path, vod.to_string_lossy());
    assert_eq!((file.width, file.height), (640, 360));
    let master = read(&vod);
    assert!(master.lines().any(|l| l == "0/vod.m3u8"), "{master}");
    let media_vod = read(&out.join("0").join("vod.m3u8"));
    assert_eq!(tag(&media_vod, "#EXT-X-PLAYLIST-TYPE"), Some("VOD"), "{media_vod}");
    assert!(media_vod.ends_with("#EXT-X-ENDLIST\n"), "{media_vod}");
    let files: u64 = walk_size(&out);
    assert_eq!(file.size, files, "the whole output's size");

    let p = probe(&vod);
    eprintln!("{p:?}, reported {file:?}, ran {ran:?}");
    assert!(p.errors.is_empty(), "ffprobe: {}", p.errors);
    assert_eq!(p.audio.as_deref(), Some("aac"));
    let (codec, width, height, _) = p.video.clone().unwrap();
    assert_eq!((codec.as_str(), width, height), ("h264", 640, 360));
    let duration = p.duration.unwrap();
    let expected = SECONDS as f64;
    assert!(duration >= expected - 0.5 && duration <= ran.as_secs_f64() + 1.0, "{duration} s for {expected} s fed");
    assert!(
        (file.duration_ms as f64 / 1000.0 - duration).abs() < 1.0,
        "reported {} ms, ffprobe {duration} s",
        file.duration_ms
    );
    let frames = decode_all(&vod) as f64;
    assert!((frames - duration * 30.0).abs() <= 15.0, "{frames} frames decoded in {duration} s");
}

/// The bytes of every file under `dir`, one level of directories deep (the renditions').
fn walk_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                std::fs::read_dir(e.path()).unwrap().map(|f| f.unwrap().metadata().unwrap().len()).sum()
            } else {
                meta.len()
            }
        })
        .sum()
}

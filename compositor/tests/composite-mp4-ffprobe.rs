//! Real media through the whole pipeline: VP8 and Opus made by ffmpeg, pushed in real time as
//! the tap reader will push them, composited into one MP4 that ffprobe reads back.
//!
//! Needs ffmpeg/ffprobe (libvpx, libopus) and the GStreamer plugins (scripts/test.sh installs
//! both).
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Media, check_timing, make_media, probe, tempdir};
use compositor::{Composite, Config, InputId, InputKind, LayoutKind};

const WIDTH: u32 = 640;
const HEIGHT: u32 = 360;

enum Push {
    Video(InputId, Vec<u8>, bool),
    Audio(InputId, Vec<u8>),
}

/// Pushes every frame when the job's clock reaches its PTS (video every 33⅓ ms, audio every
/// 20 ms), as a live tap reader would, until `until` (or the media's end).
fn push_live(job: &mut Composite, media: &Media, until: Duration) {
    let mut events: Vec<(Duration, Push)> = Vec::new();
    let frame = |i: usize| Duration::from_nanos(i as u64 * 1_000_000_000 / 30);
    for (i, (f, key)) in media.cam1.iter().enumerate() {
        events.push((frame(i), Push::Video(InputId(1), f.clone(), *key)));
    }
    for (i, (f, key)) in media.cam2.iter().enumerate() {
        events.push((frame(i), Push::Video(InputId(2), f.clone(), *key)));
    }
    for (i, p) in media.opus.iter().enumerate() {
        events.push((Duration::from_millis(i as u64 * 20), Push::Audio(InputId(3), p.clone())));
    }
    events.sort_by_key(|(pts, _)| *pts);
    let start = Instant::now();
    for (pts, push) in events {
        if pts > until {
            break;
        }
        if let Some(wait) = pts.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        match push {
            Push::Video(id, f, key) => job.push_video(id, f, pts, key).unwrap(),
            Push::Audio(id, p) => job.push_audio(id, p, pts).unwrap(),
        }
    }
    if let Some(e) = job.poll() {
        panic!("pipeline error: {e}");
    }
}

fn start_job(dir: &Path) -> Composite {
    let mut config = Config::new(dir, "room");
    config.width = WIDTH;
    config.height = HEIGHT;
    config.layout = LayoutKind::Grid;
    config.video_bitrate_kbps = 800;
    let mut job = Composite::start(config).unwrap();
    job.add_input(InputId(1), InputKind::Vp8).unwrap();
    job.add_input(InputId(2), InputKind::Vp8).unwrap();
    job.add_input(InputId(3), InputKind::Opus).unwrap();
    job
}

#[test]
fn two_cameras_and_a_tone_make_one_h264_aac_mp4() {
    let dir = tempdir("full");
    let media = make_media(&dir, 3);
    assert_eq!(media.cam1.len(), 90);
    assert!(media.opus.len() >= 149, "{} opus packets", media.opus.len());

    let out = dir.join("out");
    let mut job = start_job(&out);
    let began = Instant::now();
    push_live(&mut job, &media, Duration::from_secs(10));
    let finished_at = job.running_time().unwrap();
    job.finish(Duration::from_secs(10)).unwrap();
    eprintln!("pushed and finished in {:?}", began.elapsed());

    let file = out.join("room.1.mp4");
    let p = probe(&file);
    eprintln!("{p:?}");
    check_timing(&p, 3.0, finished_at);
    let (codec, w, h, _) = p.video.expect("a video stream");
    assert_eq!((codec.as_str(), w, h), ("h264", u64::from(WIDTH), u64::from(HEIGHT)));
    assert_eq!(p.audio.as_deref(), Some("aac"));
    assert!(!out.join("room.2.mp4").exists(), "one part only");
    assert!(p.errors.is_empty(), "ffprobe: {}", p.errors);
}

/// Set in the child process of the abort test: the directory it writes into.
const CHILD_ENV: &str = "COMPOSITOR_TEST_ABORT_DIR";

#[test]
fn an_aborted_job_leaves_a_playable_file() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        // The child: 2.5 s of a live job, then die without closing anything.
        let dir = PathBuf::from(dir);
        let media = make_media(&dir, 3);
        let mut job = start_job(&dir.join("out"));
        push_live(&mut job, &media, Duration::from_millis(2500));
        std::process::abort();
    }
    let dir = tempdir("abort");
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "an_aborted_job_leaves_a_playable_file", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &dir)
        .status()
        .unwrap();
    assert!(!status.success(), "the child was meant to abort");

    let file = dir.join("out").join("room.1.mp4");
    let p = probe(&file);
    eprintln!("{p:?}");
    let (codec, w, h, frames) = p.video.expect("a video stream in the cut file");
    assert_eq!((codec.as_str(), w, h), ("h264", u64::from(WIDTH), u64::from(HEIGHT)));
    // splitmuxsink holds a GOP (2 s here) before the muxer sees it, and the muxer writes a
    // fragment (1 s) once the next one begins: of the 2.5 s pushed, the first fragment (30
    // frames when measured) is on disk, and an unbuffered filesink left no partial one.
    assert!((25..=75).contains(&frames), "{frames} video frames");
    assert_eq!(p.audio.as_deref(), Some("aac"));
    assert!(p.errors.is_empty(), "ffprobe: {}", p.errors);
    // And every packet decodes.
    let out = Command::new("ffmpeg").args(["-v", "error", "-i"]).arg(&file).args(["-f", "null", "-"]).output().unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
}

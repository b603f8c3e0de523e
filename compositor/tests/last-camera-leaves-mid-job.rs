//! The job's only camera leaves while the job runs on with its audio: the output should go on
//! (black) and the file close.
//!
//! Fails today (every run, 3 of 3), so it is ignored until fixed: after the compositor's last
//! sink pad is released, its output repeats the last frame's PTS (2.966 s here) in a tight
//! loop, and at `finish` splitmuxsink fails with "Timestamping error on input streams: Queued
//! GOP time is negative -0:00:01" (GST_DEBUG=splitmuxsink:5 shows it). A job that never had
//! a video input is fine (`bad-input-never-stops-the-job.rs`), and so is a camera leaving
//! while another stays (`tapped-tracks-become-a-composite-mp4.rs`). A likely fix: a permanent
//! black live background input on the compositor, so it never runs without a sink pad.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use common::{make_media, probe, tempdir};
use compositor::{Composite, Config, InputId, InputKind};

#[test]
#[ignore = "fails: the compositor without a sink pad repeats a PTS, see the file's docs"]
fn the_only_camera_leaving_mid_job_keeps_the_file_good() {
    let dir = tempdir("last-camera");
    let media = make_media(&dir, 3);
    let out = dir.join("out");
    let mut config = Config::new(&out, "room");
    config.width = 320;
    config.height = 240;
    let mut job = Composite::start(config).unwrap();
    job.add_input(InputId(1), InputKind::Vp8).unwrap();
    job.add_input(InputId(2), InputKind::Opus).unwrap();
    let mut events: Vec<(Duration, Vec<u8>, Option<bool>)> = Vec::new();
    for (i, (f, key)) in media.cam1.iter().enumerate() {
        events.push((Duration::from_nanos(i as u64 * 1_000_000_000 / 30), f.clone(), Some(*key)));
    }
    for (i, p) in media.opus.iter().enumerate() {
        events.push((Duration::from_millis(i as u64 * 20), p.clone(), None));
    }
    events.sort_by_key(|e| e.0);
    let start = Instant::now();
    for (pts, data, key) in events {
        if let Some(wait) = pts.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        match key {
            Some(key) => job.push_video(InputId(1), data, pts, key).unwrap(),
            None => job.push_audio(InputId(2), data, pts).unwrap(),
        }
    }
    job.remove_input(InputId(1)).unwrap();
    if let Some(e) = job.poll_error() {
        panic!("pipeline error after the last camera left: {e}");
    }
    job.finish(Duration::from_secs(10)).unwrap();
    let p = probe(&out.join("room.1.mp4"));
    assert_eq!(p.video.unwrap().0, "h264");
}

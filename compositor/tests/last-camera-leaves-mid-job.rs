//! The job's only camera leaves while the job runs on with its audio: the output goes on
//! (black) and the file closes.
//!
//! Failed every run before the compositor had its permanent black background input: after
//! its last sink pad was released, 1.22's compositor repeated one PTS in a loop and, at
//! `finish`, splitmuxsink failed the file ("Timestamping error on input streams: Queued GOP
//! time is negative -0:00:01", seen with GST_DEBUG=splitmuxsink:5).
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use common::{make_media, probe, tempdir};
use compositor::{Composite, Config, InputId, InputKind};

#[test]
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
    if let Some(e) = job.poll() {
        panic!("pipeline error after the last camera left: {e}");
    }
    job.finish(Duration::from_secs(10)).unwrap();
    let p = probe(&out.join("room.1.mp4"));
    assert_eq!(p.video.unwrap().0, "h264");
}

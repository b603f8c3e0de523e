//! A peer leaving the moment its last frames were pushed (a tapped track's Stop pushes what
//! its buffers hold, then removes the input) costs those frames, never the job: twenty
//! cameras and microphones join, get frames and leave at once, and the pipeline reports no
//! error and still finishes its MP4.
//!
//! Needs ffmpeg/ffprobe (libvpx, libopus) and the GStreamer plugins (scripts/test.sh installs
//! both).
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::runner::watchdog;
use common::{make_media, probe, tempdir};
use compositor::{Composite, Config, InputId, InputKind};

#[test]
fn an_input_removed_right_after_a_push_never_fails_the_job() {
    watchdog(Duration::from_secs(90));
    let dir = tempdir("remove-after-push");
    let media = make_media(&dir, 1);
    let out = dir.join("out");
    let config = Config { width: 320, height: 180, ..Config::new(&out, "room") };
    let mut job = Composite::start(config).unwrap();
    for round in 0..20u32 {
        let (camera, microphone) = (InputId(100 + round * 2), InputId(101 + round * 2));
        job.add_input(camera, InputKind::Vp8).unwrap();
        job.add_input(microphone, InputKind::Opus).unwrap();
        let now = job.running_time().unwrap();
        for (i, ((frame, key), packet)) in media.cam1.iter().zip(&media.opus).take(10).enumerate() {
            let i = i as u64;
            // A full queue refuses a frame; that is not what this is about.
            let _ = job.push_video(camera, frame.clone(), now + Duration::from_millis(i * 33), *key);
            let _ = job.push_audio(microphone, packet.clone(), now + Duration::from_millis(i * 20));
        }
        job.remove_input(camera).unwrap();
        job.remove_input(microphone).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        if let Some(e) = job.poll() {
            panic!("round {round}: the job failed: {e}");
        }
    }
    job.finish(Duration::from_secs(10)).unwrap();
    let p = probe(&out.join("room.1.mp4"));
    assert_eq!(p.video.unwrap().0, "h264");
    assert!(p.errors.is_empty(), "ffprobe: {}", p.errors);
}

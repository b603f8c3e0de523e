//! A paused recording leaves the paused time out of the MP4: 3 s recorded, 3 s paused, 3 s
//! recorded make a file of about 6 s that decodes without a message (the part after the
//! resume starts on a keyframe) and has no gap in its timeline (the frame count matches the
//! duration at 30 fps). Pausing a job without an MP4 is a typed error.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::outputs::push_live;
use common::{make_media, probe, tempdir};
use compositor::{Composite, Config, Error};

#[test]
fn the_paused_time_is_left_out_and_the_file_goes_on_without_a_gap() {
    let dir = tempdir("mp4-pause");
    let media = make_media(&dir, 2);
    let config = Config { width: 640, height: 360, ..Config::new(dir.join("out"), "room") };
    let mut job = Composite::start(config).unwrap();
    let (pause, resume) = (Duration::from_secs(3), Duration::from_secs(6));
    let mut switched = (false, false);
    push_live(&mut job, &media, Duration::from_secs(9), |job, pts| {
        if pts >= pause && !switched.0 {
            switched.0 = true;
            job.set_recording_paused(true).unwrap();
            assert!(job.recording_paused());
        }
        if pts >= resume && !switched.1 {
            switched.1 = true;
            job.set_recording_paused(false).unwrap();
        }
    });
    assert!(!job.recording_paused(), "the resume found its keyframe");
    job.finish(Duration::from_secs(10)).unwrap();
    let p = probe(&dir.join("out").join("room.1.mp4"));
    assert_eq!(p.errors, "", "decodes without a message");
    let duration = p.duration.unwrap();
    let (codec, _, _, frames) = p.video.clone().unwrap();
    assert_eq!(codec, "h264");
    assert!((5.0..7.2).contains(&duration), "about 6 s of the 9 are in the file: {p:?}");
    let expected = duration * 30.0;
    assert!((frames as f64 - expected).abs() < 15.0, "no gap: {frames} frames in {duration} s: {p:?}");
    assert_eq!(p.audio.as_deref(), Some("aac"));
    // The audio goes on after the resume too: AAC packets of 1024 samples at 48 kHz.
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "a", "-count_packets", "-show_entries", "stream=nb_read_packets"])
        .args(["-of", "csv=p=0"])
        .arg(dir.join("out").join("room.1.mp4"))
        .output()
        .unwrap();
    let packets: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let audio = packets * 1024.0 / 48_000.0;
    assert!((audio - duration).abs() < 0.5, "{audio} s of audio in {duration} s");

    let mut no_mp4 = Composite::start(Config { width: 320, height: 180, mp4: None, ..hls_only(&dir) }).unwrap();
    assert!(matches!(no_mp4.set_recording_paused(true), Err(Error::NothingToPause)));
    drop(no_mp4);
}

fn hls_only(dir: &std::path::Path) -> Config {
    let hls = compositor::HlsOutput::new(
        dir.join("hls"),
        vec![compositor::Rendition { width: 320, height: 180, video_kbps: 2500 }],
    );
    Config { width: 320, height: 180, mp4: None, hls: Some(hls), ..Config::default() }
}

//! One input sending garbage (a broken publisher, a codec mix-up) never stops the job: the other
//! inputs go on being composited and the file closes normally. Misuse of the API is a typed
//! error, and a job that never had an input still makes a playable (black, silent) file.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use common::{check_timing, frame_rgb, make_media, mean_level, probe, tempdir};
use compositor::{Composite, Config, Error, InputId, InputKind, LayoutKind};

const WIDTH: u32 = 640;
const HEIGHT: u32 = 360;

fn config(dir: &std::path::Path) -> Config {
    let mut config = Config::new(dir, "room");
    config.width = WIDTH;
    config.height = HEIGHT;
    config.layout = LayoutKind::Grid;
    config
}

/// Bytes that are no codec's frame: a fixed xorshift sequence.
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn garbage_on_one_input_leaves_the_others_composited() {
    let dir = tempdir("garbage");
    let media = make_media(&dir, 2);
    let out = dir.join("out");
    let mut job = Composite::start(config(&out)).unwrap();
    let (good, bad_video, bad_audio) = (InputId(1), InputId(2), InputId(3));
    job.add_input(good, InputKind::Vp8).unwrap();
    job.add_input(bad_video, InputKind::Vp8).unwrap();
    job.add_input(bad_audio, InputKind::Opus).unwrap();

    let start = Instant::now();
    for (i, (f, key)) in media.cam1.iter().enumerate() {
        let pts = Duration::from_nanos(i as u64 * 1_000_000_000 / 30);
        if let Some(wait) = pts.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        job.push_video(good, f.clone(), pts, *key).unwrap();
        // Claims to be a keyframe every second frame; is never one.
        job.push_video(bad_video, garbage(i as u64, 1200), pts, i % 2 == 0).unwrap();
        job.push_audio(bad_audio, garbage(1000 + i as u64, 80), pts).unwrap();
    }
    if let Some(e) = job.poll() {
        panic!("pipeline error: {e}");
    }
    let finished_at = job.running_time().unwrap();
    job.finish(Duration::from_secs(10)).unwrap();

    let file = out.join("room.1.mp4");
    let p = probe(&file);
    eprintln!("{p:?}");
    assert_eq!(p.video.as_ref().unwrap().0, "h264");
    // Garbage Opus "packets" may claim long durations; they must not stretch the output.
    check_timing(&p, 2.0, finished_at);
    assert_eq!(p.audio.as_deref(), Some("aac"));
    // The good camera's tile (left) has its picture; the garbage one's (right) stays black.
    let rgb = frame_rgb(&file, 1.5, WIDTH, HEIGHT);
    assert!(mean_level(&rgb, WIDTH, (40, 100, 240, 160)) > 40.0, "the good camera's picture");
    assert!(mean_level(&rgb, WIDTH, (360, 100, 240, 160)) < 20.0, "nothing decoded from garbage");
}

#[test]
fn misuse_is_a_typed_error() {
    let dir = tempdir("misuse");
    let mut job = Composite::start(config(&dir)).unwrap();
    job.add_input(InputId(1), InputKind::Vp8).unwrap();
    job.add_input(InputId(2), InputKind::Opus).unwrap();
    assert!(matches!(job.add_input(InputId(1), InputKind::H264), Err(Error::DuplicateInput(InputId(1)))));
    assert!(matches!(job.push_video(InputId(7), vec![0], Duration::ZERO, true), Err(Error::UnknownInput(InputId(7)))));
    assert!(matches!(job.push_audio(InputId(1), vec![0xfc], Duration::ZERO), Err(Error::WrongKind { .. })));
    assert!(matches!(job.push_video(InputId(2), vec![0], Duration::ZERO, true), Err(Error::WrongKind { .. })));
    assert!(matches!(job.set_speaker(InputId(2)), Err(Error::UnknownInput(InputId(2)))), "audio has no tile");
    assert!(matches!(job.remove_input(InputId(7)), Err(Error::UnknownInput(InputId(7)))));
    job.finish(Duration::from_secs(10)).unwrap();

    let mut bad = config(&dir);
    bad.width = 641;
    assert!(matches!(Composite::start(bad), Err(Error::Config(_))));
}

#[test]
fn a_job_without_inputs_makes_a_black_silent_file() {
    let dir = tempdir("empty");
    let job = Composite::start(config(&dir)).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let finished_at = job.running_time().unwrap();
    job.finish(Duration::from_secs(10)).unwrap();
    let file = dir.join("room.1.mp4");
    let p = probe(&file);
    eprintln!("{p:?}");
    // Nothing pushed: the output runs to where the clock was at `finish`.
    check_timing(&p, finished_at.as_secs_f64(), finished_at);
    let (_, w, h, _) = p.video.expect("a video stream");
    assert_eq!((w, h), (u64::from(WIDTH), u64::from(HEIGHT)));
    assert_eq!(p.audio.as_deref(), Some("aac"));
    let rgb = frame_rgb(&file, 0.5, WIDTH, HEIGHT);
    assert!(mean_level(&rgb, WIDTH, (0, 0, WIDTH, HEIGHT)) < 20.0, "black");
}

//! Inputs come and go while the job runs, and the picture follows: one camera fills the frame,
//! a second (H.264, while the first is VP8) joining splits it into two tiles, the first leaving
//! gives the whole frame to the second. Checked on pictures decoded from the MP4.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use common::{check_timing, frame_rgb, h264_access_units, make_media, mean_level, probe, tempdir};
use compositor::{Composite, Config, InputId, InputKind, LayoutKind};

const WIDTH: u32 = 640;
const HEIGHT: u32 = 360;
const VP8_CAM: InputId = InputId(1);
const H264_CAM: InputId = InputId(2);
const MIC: InputId = InputId(3);

enum Step {
    Add(InputId, InputKind),
    Remove(InputId),
    Video(InputId, Vec<u8>, bool),
    Audio(Vec<u8>),
}

#[test]
fn tiles_follow_inputs_joining_and_leaving() {
    let dir = tempdir("join-leave");
    let media = make_media(&dir, 3);
    // Both cameras 4:3, so each tile shows black bars where the aspect ratios differ.
    let h264 = h264_access_units(&dir, "smptebars=size=320x240:rate=30", 3);
    assert_eq!(h264.len(), 90);
    assert!(h264[0].1 && h264[30].1 && !h264[31].1, "an IDR every second");

    let frame = |i: usize| Duration::from_nanos(i as u64 * 1_000_000_000 / 30);
    let mut steps: Vec<(Duration, Step)> = vec![
        (Duration::ZERO, Step::Add(VP8_CAM, InputKind::Vp8)),
        (Duration::ZERO, Step::Add(MIC, InputKind::Opus)),
        (Duration::from_secs(1), Step::Add(H264_CAM, InputKind::H264)),
        (Duration::from_secs(2), Step::Remove(VP8_CAM)),
    ];
    // The VP8 camera for its first two seconds, the H.264 one from its keyframe at 1 s on.
    for (i, (f, key)) in media.cam1.iter().enumerate().take(60) {
        steps.push((frame(i), Step::Video(VP8_CAM, f.clone(), *key)));
    }
    for (i, (f, key)) in h264.iter().enumerate().skip(30) {
        steps.push((frame(i), Step::Video(H264_CAM, f.clone(), *key)));
    }
    for (i, p) in media.opus.iter().enumerate() {
        steps.push((Duration::from_millis(i as u64 * 20), Step::Audio(p.clone())));
    }
    // Stable: at equal times an input is added before its first frame, removed after its last.
    steps.sort_by_key(|(t, _)| *t);

    let out = dir.join("out");
    let mut config = Config::new(&out, "room");
    config.width = WIDTH;
    config.height = HEIGHT;
    config.layout = LayoutKind::Grid;
    let mut job = Composite::start(config).unwrap();
    let start = Instant::now();
    for (t, step) in steps {
        if let Some(wait) = t.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        match step {
            Step::Add(id, kind) => job.add_input(id, kind).unwrap(),
            Step::Remove(id) => job.remove_input(id).unwrap(),
            Step::Video(id, f, key) => job.push_video(id, f, t, key).unwrap(),
            Step::Audio(p) => job.push_audio(MIC, p, t).unwrap(),
        }
    }
    if let Some(e) = job.poll() {
        panic!("pipeline error: {e}");
    }
    // The removed input is gone: a frame for it is refused with a typed error.
    assert!(matches!(
        job.push_video(VP8_CAM, vec![0], Duration::from_secs(3), true),
        Err(compositor::Error::UnknownInput(VP8_CAM))
    ));
    let finished_at = job.running_time().unwrap();
    job.finish(Duration::from_secs(10)).unwrap();

    let file = out.join("room.1.mp4");
    let p = probe(&file);
    eprintln!("{p:?}");
    check_timing(&p, 3.0, finished_at);
    let (codec, w, h, _) = p.video.expect("a video stream");
    assert_eq!((codec.as_str(), w, h), ("h264", u64::from(WIDTH), u64::from(HEIGHT)));
    assert_eq!(p.audio.as_deref(), Some("aac"));
    assert!(p.errors.is_empty(), "ffprobe: {}", p.errors);

    let black = |rgb: &[u8], r| mean_level(rgb, WIDTH, r) < 20.0;
    let lit = |rgb: &[u8], r| mean_level(rgb, WIDTH, r) > 40.0;
    // One camera: the whole frame, a 4:3 picture 480 wide, pillarboxed (80 px bars).
    for at in [0.5, 2.5] {
        let rgb = frame_rgb(&file, at, WIDTH, HEIGHT);
        assert!(black(&rgb, (0, 0, 70, HEIGHT)) && black(&rgb, (570, 0, 70, HEIGHT)), "pillarbox bars at {at} s");
        assert!(lit(&rgb, (200, 100, 240, 160)), "a picture in the middle at {at} s");
    }
    // Two cameras: two 320×360 tiles, each a 320×240 picture letterboxed (60 px bars).
    let rgb = frame_rgb(&file, 1.5, WIDTH, HEIGHT);
    assert!(black(&rgb, (0, 0, WIDTH, 50)) && black(&rgb, (0, 310, WIDTH, 50)), "letterbox bars");
    assert!(lit(&rgb, (40, 100, 240, 160)) && lit(&rgb, (360, 100, 240, 160)), "a picture in each tile");
}

//! The layout changes while the job runs: two cameras side by side in the grid, then the
//! second made the speaker (large on top) with the first in the strip below. Checked on
//! pictures decoded from the MP4.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use common::{check_timing, frame_rgb, make_media, mean_level, probe, tempdir};
use compositor::{Composite, Config, InputId, InputKind, LayoutKind};

const WIDTH: u32 = 640;
const HEIGHT: u32 = 360;

#[test]
fn grid_then_speaker_with_a_strip() {
    let dir = tempdir("speaker");
    let media = make_media(&dir, 2);
    let out = dir.join("out");
    let mut config = Config::new(&out, "room");
    config.width = WIDTH;
    config.height = HEIGHT;
    config.layout = LayoutKind::Grid;
    let mut job = Composite::start(config).unwrap();
    job.add_input(InputId(1), InputKind::Vp8).unwrap();
    job.add_input(InputId(2), InputKind::Vp8).unwrap();

    let start = Instant::now();
    for (i, ((f1, k1), (f2, k2))) in media.cam1.iter().zip(&media.cam2).enumerate() {
        let pts = Duration::from_nanos(i as u64 * 1_000_000_000 / 30);
        if let Some(wait) = pts.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        if i == 30 {
            job.set_speaker(InputId(2)).unwrap();
            job.set_layout(LayoutKind::Speaker);
        }
        job.push_video(InputId(1), f1.clone(), pts, *k1).unwrap();
        job.push_video(InputId(2), f2.clone(), pts, *k2).unwrap();
    }
    let finished_at = job.running_time().unwrap();
    job.finish(Duration::from_secs(10)).unwrap();

    let file = out.join("room.1.mp4");
    let p = probe(&file);
    eprintln!("{p:?}");
    check_timing(&p, 2.0, finished_at);

    let black = |rgb: &[u8], r| mean_level(rgb, WIDTH, r) < 20.0;
    let lit = |rgb: &[u8], r| mean_level(rgb, WIDTH, r) > 40.0;
    // Grid: two 320×360 tiles, each a 4:3 picture letterboxed (60 px bars above and below).
    let rgb = frame_rgb(&file, 0.5, WIDTH, HEIGHT);
    assert!(black(&rgb, (0, 0, WIDTH, 50)) && black(&rgb, (0, 310, WIDTH, 50)), "grid: letterbox bars");
    assert!(lit(&rgb, (40, 100, 240, 160)) && lit(&rgb, (360, 100, 240, 160)), "grid: a picture per tile");
    // Speaker: a 640×270 tile on top (a 360×270 picture from x = 140), and a 160×90 tile centred
    // in the 90 px strip below (a 120×90 picture from x = 260); black around both.
    let rgb = frame_rgb(&file, 1.5, WIDTH, HEIGHT);
    assert!(lit(&rgb, (160, 20, 320, 230)), "speaker: the large picture");
    assert!(black(&rgb, (0, 0, 130, 260)) && black(&rgb, (510, 0, 130, 260)), "speaker: bars beside it");
    assert!(lit(&rgb, (270, 280, 100, 70)), "strip: the other camera");
    assert!(black(&rgb, (0, 280, 250, 70)) && black(&rgb, (390, 280, 250, 70)), "strip: black beside it");
}

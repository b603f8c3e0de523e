//! The layout follows the room by itself, in the speaker mode: the peer who talks takes the
//! large tile (decided by the job's own loudness measure, nobody tells it), a screenshare takes
//! it from them, a muted camera leaves the picture (its peer's name on grey takes its place),
//! and each tile carries its peer's name.
//! Checked on pictures decoded from the MP4: each camera is a solid colour, so the colour in
//! the large tile says whose it is.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{frame_rgb, opus_of, probe, tempdir, vp8_of};
use compositor::{Composite, Config, InputFacts, InputId, InputKind, LayoutKind, Tile};

const WIDTH: u32 = 640;
const HEIGHT: u32 = 360;
const SECONDS: u32 = 7;

/// `SECONDS` of a solid-colour 320×240 VP8 camera.
fn camera(dir: &Path, colour: &str) -> Vec<(Vec<u8>, bool)> {
    vp8_of(dir, colour, &format!("color=c={colour}:size=320x240:rate=30"), SECONDS, 300)
}

fn peer(id: &str, name: &str) -> InputFacts {
    InputFacts { peer: id.into(), name: name.into(), ..Default::default() }
}

/// The mean colour of a rectangle of an RGB24 frame.
fn mean_rgb(rgb: &[u8], (x, y, w, h): (u32, u32, u32, u32)) -> [f64; 3] {
    let mut sum = [0u64; 3];
    for row in y..y + h {
        for col in x..x + w {
            let at = ((row * WIDTH + col) * 3) as usize;
            for c in 0..3 {
                sum[c] += u64::from(rgb[at + c]);
            }
        }
    }
    sum.map(|s| s as f64 / f64::from(w * h))
}

/// Pixels of a rectangle that are near white (text), in a picture whose cameras are saturated
/// colours and whose background is black.
fn white_pixels(rgb: &[u8], (x, y, w, h): (u32, u32, u32, u32)) -> usize {
    (y..y + h)
        .flat_map(|row| (x..x + w).map(move |col| ((row * WIDTH + col) * 3) as usize))
        .filter(|&at| rgb[at] > 180 && rgb[at + 1] > 180 && rgb[at + 2] > 180)
        .count()
}

/// Pixels anywhere in the picture that are clearly red (the muted camera's colour).
fn red_pixels(rgb: &[u8]) -> usize {
    rgb.chunks(3).filter(|p| p[0] > 150 && p[1] < 80 && p[2] < 80).count()
}

#[test]
fn the_talker_then_the_screenshare_take_the_large_tile_and_a_muted_camera_leaves() {
    let dir = tempdir("active-speaker");
    let red = camera(&dir, "red");
    let blue = camera(&dir, "blue");
    let green = camera(&dir, "green");
    let quiet = opus_of(&dir, "quiet", "anullsrc=r=48000:cl=mono", SECONDS);
    let loud = opus_of(&dir, "loud", "sine=frequency=440:sample_rate=48000", SECONDS);

    let out = dir.join("out");
    let mut config = Config::new(&out, "room");
    config.width = WIDTH;
    config.height = HEIGHT;
    config.layout = LayoutKind::Speaker;
    let mut job = Composite::start(config).unwrap();
    // Alice joins first, so her camera is large until someone speaks; Bob talks.
    let (alice_cam, alice_mic, bob_cam, bob_mic, bob_screen) =
        (InputId(1), InputId(2), InputId(3), InputId(4), InputId(5));
    for (id, kind, facts) in [
        (alice_cam, InputKind::Vp8, peer("alice", "Alice")),
        (alice_mic, InputKind::Opus, peer("alice", "Alice")),
        (bob_cam, InputKind::Vp8, peer("bob", "Bob")),
        (bob_mic, InputKind::Opus, peer("bob", "Bob")),
    ] {
        job.add_input(id, kind).unwrap();
        job.describe_input(id, facts).unwrap();
    }
    assert_eq!(job.arrangement().order, [Tile::Input(alice_cam), Tile::Input(bob_cam)], "nobody spoke yet: join order");

    let start = Instant::now();
    let mut audio = quiet.iter().zip(&loud).enumerate().peekable();
    for (i, ((r, rk), ((b, bk), (g, gk)))) in red.iter().zip(blue.iter().zip(&green)).enumerate() {
        let pts = Duration::from_nanos(i as u64 * 1_000_000_000 / 30);
        if let Some(wait) = pts.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        match i {
            // Bob shares his screen at 3 s; it is described before its first frame.
            90 => {
                job.add_input(bob_screen, InputKind::Vp8).unwrap();
                job.describe_input(bob_screen, InputFacts { screen: true, ..peer("bob", "Bob (screen)") }).unwrap();
            }
            // Alice turns her camera off at 5 s.
            150 => job.describe_input(alice_cam, InputFacts { muted: true, ..peer("alice", "Alice") }).unwrap(),
            _ => {}
        }
        job.push_video(alice_cam, r.clone(), pts, *rk).unwrap();
        job.push_video(bob_cam, b.clone(), pts, *bk).unwrap();
        if i >= 90 {
            job.push_video(bob_screen, g.clone(), pts, *gk).unwrap();
        }
        while let Some((n, (q, l))) = audio.next_if(|(n, _)| Duration::from_millis(*n as u64 * 20) <= pts) {
            let at = Duration::from_millis(n as u64 * 20);
            job.push_audio(alice_mic, q.clone(), at).unwrap();
            job.push_audio(bob_mic, l.clone(), at).unwrap();
        }
        if i % 5 == 0
            && let Some(e) = job.poll()
        {
            panic!("the pipeline failed: {e}");
        }
    }
    assert_eq!(
        job.arrangement().order,
        [Tile::Input(bob_screen), Tile::Peer("alice".into()), Tile::Input(bob_cam)],
        "the share large; Alice's camera gone, her name in its place"
    );
    job.finish(Duration::from_secs(10)).unwrap();

    let file = out.join("room.1.mp4");
    let p = probe(&file);
    assert!(p.errors.is_empty(), "ffprobe: {}", p.errors);

    // The speaker layout's large tile: 640×270 on top, a 4:3 picture from x = 140 to 500.
    let large = (200, 40, 240, 150);
    let rgb = frame_rgb(&file, 0.1, WIDTH, HEIGHT);
    let [r, g, b] = mean_rgb(&rgb, large);
    assert!(r > 150.0 && g < 80.0 && b < 80.0, "before anyone spoke Alice (red) is large: {r:.0} {g:.0} {b:.0}");
    let rgb = frame_rgb(&file, 2.5, WIDTH, HEIGHT);
    let [r, g, b] = mean_rgb(&rgb, large);
    assert!(b > 150.0 && r < 80.0 && g < 80.0, "Bob talks: his camera (blue) is large: {r:.0} {g:.0} {b:.0}");
    // His name, in white, at the bottom left of his picture (140..500 × 0..270).
    assert!(white_pixels(&rgb, (140, 200, 180, 70)) > 30, "Bob's name on his tile");
    assert_eq!(white_pixels(&rgb, (320, 20, 180, 150)), 0, "no text across the picture");
    let rgb = frame_rgb(&file, 4.5, WIDTH, HEIGHT);
    let [r, g, b] = mean_rgb(&rgb, large);
    assert!(g > 80.0 && r < 80.0 && b < 80.0, "the screenshare (green) is large: {r:.0} {g:.0} {b:.0}");
    assert!(red_pixels(&rgb) > 500, "Alice's camera still in the strip");
    let rgb = frame_rgb(&file, 6.5, WIDTH, HEIGHT);
    assert_eq!(red_pixels(&rgb), 0, "Alice's muted camera has left the picture");
    // Her place in the strip (the first of two 160×90 tiles, from x = 160): grey, her name on it.
    let [r, g, b] = mean_rgb(&rgb, (170, 275, 140, 80));
    assert!(
        (35.0..80.0).contains(&r) && (r - g).abs() < 8.0 && (r - b).abs() < 8.0,
        "a grey tile: {r:.0} {g:.0} {b:.0}"
    );
    assert!(white_pixels(&rgb, (160, 270, 160, 90)) > 5, "Alice's name on it");
}

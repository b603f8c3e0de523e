//! What a job costs: four VP8 cameras (640×480, 30 fps; `COST_CAMERA` for another size) and one Opus input composited into
//! 1280×720 at 30 fps for 10 s, in real time, with the CPU time this process used; into an
//! MP4, and into an MP4 plus an HLS ladder of three renditions (720p, 360p, 180p). A
//! measurement, not a check: `cargo test -p compositor --release --test cost-of-a-720p-four-camera-job -- --ignored --nocapture`.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use common::{ivf_frames, make_media, probe, tempdir};
use compositor::{Composite, Config, HlsOutput, InputId, InputKind, Rendition};

/// User plus system CPU time of this process so far (/proc/self/stat fields 14 and 15, in
/// clock ticks of 10 ms).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

#[test]
#[ignore = "a measurement: run it by name with --ignored"]
fn cost_of_a_720p_four_camera_job() {
    measure("cost", |_| {});
}

#[test]
#[ignore = "a measurement: run it by name with --ignored"]
fn cost_of_a_720p_four_camera_job_with_three_hls_renditions() {
    measure("cost-hls", |config| {
        let ladder = [(1280, 720, config.video_bitrate_kbps), (640, 360, 800), (320, 180, 300)];
        let renditions = ladder.map(|(width, height, video_kbps)| Rendition { width, height, video_kbps });
        let mut hls = HlsOutput::new(config.mp4.as_ref().unwrap().dir.join("hls"), renditions.to_vec());
        hls.vod = true; // every segment kept, so every rendition's frames can be counted
        config.hls = Some(hls);
    });
}

fn measure(name: &str, outputs: impl FnOnce(&mut Config)) {
    // `scripts/bench.sh compositor-parallel` runs three of these at once for longer.
    let seconds: u32 = std::env::var("COST_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let dir = tempdir(name);
    let media = make_media(&dir, seconds);
    // COST_CAMERA (640x480): each camera's size, e.g. 1280x720 for the top layer of a browser
    // camera, 640x360 for the layer a grid tile of this job needs.
    let camera = std::env::var("COST_CAMERA").unwrap_or_else(|_| "640x480".into());
    let cam = dir.join("cam.ivf");
    let source = format!("testsrc=size={camera}:rate=30");
    common::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &source,
        "-t",
        &seconds.to_string(),
        "-c:v",
        "libvpx",
        "-deadline",
        "realtime",
        "-g",
        "60",
        "-b:v",
        "800k",
        "-f",
        "ivf",
        cam.to_str().unwrap(),
    ]);
    let cam = ivf_frames(&cam);

    let mut config = Config::new(dir.join("out"), "room");
    config.width = 1280;
    config.height = 720;
    outputs(&mut config);
    let mut job = Composite::start(config).unwrap();
    for i in 1..=4 {
        job.add_input(InputId(i), InputKind::Vp8).unwrap();
    }
    job.add_input(InputId(9), InputKind::Opus).unwrap();

    let cpu_before = cpu_time();
    let start = Instant::now();
    let mut audio = media.opus.iter().enumerate().peekable();
    for (i, (f, key)) in cam.iter().enumerate() {
        let pts = Duration::from_nanos(i as u64 * 1_000_000_000 / 30);
        while let Some((n, p)) = audio.next_if(|(n, _)| Duration::from_millis(*n as u64 * 20) <= pts) {
            job.push_audio(InputId(9), p.clone(), Duration::from_millis(n as u64 * 20)).unwrap();
        }
        if let Some(wait) = pts.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        for id in 1..=4 {
            job.push_video(InputId(id), f.clone(), pts, *key).unwrap();
        }
    }
    job.finish(Duration::from_secs(10)).unwrap();
    let wall = start.elapsed();
    let cpu = cpu_time() - cpu_before;
    let p = probe(&dir.join("out").join("room.1.mp4"));
    // Frames each HLS rendition holds: fewer than 30 a second would be frames dropped.
    let renditions: Vec<u64> = (0..3)
        .map(|i| dir.join("out").join("hls").join(i.to_string()).join("vod.m3u8"))
        .take_while(|vod| vod.exists())
        .map(|vod| common::outputs::decode_all(&vod))
        .collect();
    eprintln!(
        "{name}: {seconds} s job: cpu {cpu:?} over {wall:?} = {:.2} of a core; MP4 frames {}; HLS renditions' frames {renditions:?}; {p:?}",
        cpu.as_secs_f64() / wall.as_secs_f64(),
        p.video.as_ref().map_or(0, |v| v.3),
    );
}

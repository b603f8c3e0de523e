//! The compositor process's core, driven as its main loop drives it: a job file appears and
//! the job starts; its tap's records (one peer's VP8 camera and Opus microphone, made by
//! ffmpeg) come in real time for six seconds; the file is removed and the job reports its MP4
//! (path, size, length) and that it finished. ffprobe reads the MP4: H.264 + AAC, as long as
//! the feed, the camera's picture in it.
//!
//! Needs ffmpeg/ffprobe (libvpx, libopus) and the GStreamer plugins (scripts/test.sh installs
//! both).
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use common::runner::{drive, mp4_job, peer_media, peer_records, plain, remove_job, wait_for, watchdog, write_job};
use common::{frame_rgb, mean_level, probe, tempdir};
use compositor::runner::Runner;
use schema::compositor::CompositorEvent;

const SECONDS: u32 = 6;
const TAP: u32 = 5;

#[test]
fn a_job_file_becomes_a_composite_mp4_of_its_tap() {
    watchdog(Duration::from_secs(120));
    let dir = tempdir("runner-mp4");
    let jobs = dir.join("jobs");
    std::fs::create_dir_all(&jobs).unwrap();
    let out = dir.join("recording");
    let media = peer_media(&dir, SECONDS);

    let mut runner = Runner::new(&jobs);
    runner.scan();
    assert_eq!(runner.poll_event(), None, "an empty directory: nothing to do");
    write_job(&jobs, &mp4_job("job1", TAP, &out));
    let events = wait_for(&mut runner, Duration::from_secs(10), |e| matches!(e, CompositorEvent::Started { .. }));
    assert_eq!(events, [CompositorEvent::Started { job_id: "job1".into() }]);
    let started = Instant::now();
    assert_eq!(runner.job_count(), 1);

    let wall = util::unix_ms();
    let records = peer_records(TAP, &media, 0, wall);
    let fed = drive(&mut runner, &records, wall, Instant::now(), Duration::from_millis(u64::from(SECONDS) * 1000));
    assert_eq!(plain(&fed), [], "the camera starts on a keyframe: nothing to report while it runs");
    let stats = runner.stats();
    assert_eq!(stats.records, records.len() as u64, "{stats:?}");
    assert_eq!((stats.bad_records, stats.records_no_job, stats.jobs_failed), (0, 0, 0), "{stats:?}");

    remove_job(&jobs, "job1");
    let ran = started.elapsed();
    let events = wait_for(&mut runner, Duration::from_secs(15), |e| matches!(e, CompositorEvent::Finished { .. }));
    let [CompositorEvent::FileClosed { job_id, file }, CompositorEvent::Finished { job_id: finished }] = &events[..]
    else {
        panic!("one part closed, then finished: {events:?}");
    };
    assert_eq!((job_id.as_str(), finished.as_str()), ("job1", "job1"));
    assert_eq!(runner.job_count(), 0);
    let path = out.join("composite.1.mp4");
    assert_eq!(file.path, path.to_string_lossy());
    assert_eq!(file.size, std::fs::metadata(&path).unwrap().len());
    assert_eq!((file.width, file.height), (320, 240));
    assert!(!out.join("composite.2.mp4").exists());

    let p = probe(&path);
    eprintln!("{p:?}, reported {file:?}, ran {ran:?}");
    let (codec, width, height, frames) = p.video.clone().unwrap();
    assert_eq!((codec.as_str(), width, height), ("h264", 320, 240));
    assert_eq!(p.audio.as_deref(), Some("aac"));
    assert!(p.errors.is_empty(), "ffprobe: {}", p.errors);
    let duration = p.duration.unwrap();
    // The output runs from the job's start to its stop: the feed, plus up to a scan on each side.
    let fed_s = f64::from(SECONDS);
    assert!(
        duration >= fed_s - 0.3 && duration <= ran.as_secs_f64() + 0.6,
        "{duration} s for {fed_s} s fed, {ran:?} run"
    );
    assert!(
        (file.duration_ms as f64 / 1000.0 - duration).abs() < 0.5,
        "reported {} ms, ffprobe {duration} s",
        file.duration_ms
    );
    assert!((frames as f64 - duration * 30.0).abs() <= 10.0, "{frames} frames in {duration} s");
    // The camera is the only tile: the test pattern fills the picture, not the black background.
    let rgb = frame_rgb(&path, fed_s / 2.0, 320, 240);
    let level = mean_level(&rgb, 320, (0, 0, 320, 240));
    assert!(level > 60.0, "mean level {level}: the camera's picture is not in the MP4");
}

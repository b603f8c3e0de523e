//! A compositor killed mid-job and started again: the part the killed process was writing
//! plays up to its last fragment; the new process, finding the job file still there, starts
//! the job again with the next part, and reports the killed part as closed (the killed
//! process could not), with about its length. At the stop, only the new part is reported.
//!
//! Needs ffmpeg/ffprobe (libvpx, libopus) and the GStreamer plugins (scripts/test.sh installs
//! both).
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use common::runner::{drive, mp4_job, peer_media, peer_records, plain, remove_job, wait_for, watchdog, write_job};
use common::{probe, tempdir};
use compositor::runner::Runner;
use schema::compositor::{CompositorEvent, OutputFile};

const TAP: u32 = 3;

fn start(jobs: &std::path::Path) -> (Runner, Vec<CompositorEvent>) {
    let mut runner = Runner::new(jobs);
    let mut events = wait_for(&mut runner, Duration::from_secs(10), |e| matches!(e, CompositorEvent::Started { .. }));
    // And what the same scan reported after the start.
    while let Some(e) = runner.poll_event() {
        events.push(e);
    }
    (runner, events)
}

#[test]
fn a_restarted_runner_goes_on_with_the_next_part_and_reports_the_killed_one() {
    watchdog(Duration::from_secs(120));
    let dir = tempdir("runner-restart");
    let jobs = dir.join("jobs");
    std::fs::create_dir_all(&jobs).unwrap();
    let out = dir.join("recording");
    let media = peer_media(&dir, 5);
    write_job(&jobs, &mp4_job("job1", TAP, &out));

    // The first process: five seconds, then killed (dropped: no finish, no EOS, no report).
    let (mut runner, events) = start(&jobs);
    assert_eq!(events, [CompositorEvent::Started { job_id: "job1".into() }]);
    let started = Instant::now();
    let wall = util::unix_ms();
    let fed = drive(&mut runner, &peer_records(TAP, &media, 0, wall), wall, Instant::now(), Duration::from_secs(5));
    assert_eq!(plain(&fed), []);
    drop(runner);
    let ran = started.elapsed().as_secs_f64();
    let part1 = out.join("composite.1.mp4");
    let killed = std::fs::read(&part1).unwrap();
    let p = probe(&part1);
    eprintln!("killed part: {p:?}");
    assert_eq!(p.video.as_ref().unwrap().0, "h264");
    assert!(p.errors.is_empty(), "ffprobe: {}", p.errors);
    let killed_duration = p.duration.unwrap();
    // Up to its last whole fragment: at most a GOP (2 s) and a fragment (1 s) are lost.
    assert!(killed_duration >= ran - 3.3 && killed_duration <= ran + 0.3, "{killed_duration} s of {ran} s");

    // The second process, over the same jobs.
    let (mut runner, events) = start(&jobs);
    let [CompositorEvent::Started { job_id }, CompositorEvent::FileClosed { job_id: closed_id, file }] = &events[..]
    else {
        panic!("started, and the killed part reported: {events:?}");
    };
    assert_eq!((job_id.as_str(), closed_id.as_str()), ("job1", "job1"));
    assert_eq!(file.path, part1.to_string_lossy());
    assert_eq!(file.size, killed.len() as u64);
    assert_eq!((file.width, file.height), (320, 240));
    let reported = file.duration_ms as f64 / 1000.0;
    eprintln!("reported {reported} s, ffprobe {killed_duration} s, ran {ran} s");
    assert!((reported - killed_duration).abs() <= 1.5, "reported {reported} s, ffprobe {killed_duration} s");

    let wall = util::unix_ms();
    let fed = drive(&mut runner, &peer_records(TAP, &media, 0, wall), wall, Instant::now(), Duration::from_secs(3));
    assert_eq!(plain(&fed), [], "the killed part is reported once, at the start");
    remove_job(&jobs, "job1");
    let events = wait_for(&mut runner, Duration::from_secs(15), |e| matches!(e, CompositorEvent::Finished { .. }));
    let files: Vec<&OutputFile> = events
        .iter()
        .filter_map(|e| match e {
            CompositorEvent::FileClosed { file, .. } => Some(file),
            _ => None,
        })
        .collect();
    let part2 = out.join("composite.2.mp4");
    assert_eq!(files.len(), 1, "only this run's part: {events:?}");
    assert_eq!(files[0].path, part2.to_string_lossy());
    assert_eq!(std::fs::read(&part1).unwrap(), killed, "the killed part is untouched");
    let p = probe(&part2);
    eprintln!("second part: {p:?}, {events:?}");
    assert_eq!(p.video.as_ref().unwrap().0, "h264");
    assert_eq!(p.audio.as_deref(), Some("aac"));
    assert!(p.errors.is_empty(), "ffprobe: {}", p.errors);
    let duration = p.duration.unwrap();
    assert!((2.7..=4.0).contains(&duration), "{duration} s for 3 s fed");
    assert!(!out.join("composite.3.mp4").exists());
}

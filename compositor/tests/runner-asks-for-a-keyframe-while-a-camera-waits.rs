//! A tapped camera whose first packets are not of a keyframe cannot be decoded until one
//! comes; the job asks for one (a `KeyframeWanted` naming the camera's track) at once and then
//! once a second while it waits (the tap is one-way: control has the publisher asked), and no
//! more once the keyframe came. The microphone never asks.
//!
//! Needs ffmpeg (libvpx, libopus) and the GStreamer plugins (scripts/test.sh installs both).
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use common::runner::{drive, meta, mp4_job, peer_media, peer_records, remove_job, wait_for, watchdog, write_job};
use common::tempdir;
use compositor::runner::Runner;
use schema::compositor::CompositorEvent;

const TAP: u32 = 4;

#[test]
fn a_camera_waiting_for_a_keyframe_asks_once_a_second_until_it_comes() {
    watchdog(Duration::from_secs(90));
    let dir = tempdir("runner-keyframe");
    let jobs = dir.join("jobs");
    std::fs::create_dir_all(&jobs).unwrap();
    let media = peer_media(&dir, 5);
    // Joined just after a keyframe: the next is two seconds (60 frames) on.
    let next_key = media.video.iter().skip(1).position(|f| f.keyframe).unwrap();
    assert_eq!(next_key, 59, "ffmpeg's VP8: a keyframe every 2 s");
    let key_at_ms = next_key as u64 * 1000 / 30;

    let mut runner = Runner::new(&jobs);
    write_job(&jobs, &mp4_job("job1", TAP, &dir.join("recording")));
    wait_for(&mut runner, Duration::from_secs(10), |e| matches!(e, CompositorEvent::Started { .. }));
    let wall = util::unix_ms();
    let records = peer_records(TAP, &media, 1, wall);
    let events = drive(&mut runner, &records, wall, Instant::now(), Duration::from_secs(4));
    eprintln!("{events:?}");
    let asks: Vec<u64> = events
        .iter()
        .map(|(at, e)| match e {
            CompositorEvent::KeyframeWanted { meta: m } => {
                assert_eq!(m, &meta("cam", "video"));
                *at
            }
            other => panic!("only keyframe asks while the job runs: {other:?}"),
        })
        .collect();
    // At the first packet and a second later; the keyframe comes before a third is due.
    assert_eq!(asks.len(), 2, "{asks:?}");
    assert!(asks[0] < 300, "asked at once: {asks:?}");
    assert!(asks[1] - asks[0] >= 900, "at most once a second: {asks:?}");
    assert!(asks[1] < key_at_ms + 100, "none after the keyframe at {key_at_ms} ms: {asks:?}");

    remove_job(&jobs, "job1");
    wait_for(&mut runner, Duration::from_secs(15), |e| matches!(e, CompositorEvent::Finished { .. }));
}

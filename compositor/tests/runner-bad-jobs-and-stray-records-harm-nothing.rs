//! What goes wrong around a running job stays where it happened: records of a tap that belongs
//! to no job are counted and dropped; a job file that is not JSON is reported once (not at
//! every scan) and starts its job once it is fixed; a job whose directory cannot be made (a
//! file in the way) fails once, naming it; a second job on a tap already taken fails. The job
//! that was running meanwhile records all of it, and its MP4 plays.
//!
//! Needs ffmpeg/ffprobe (libvpx, libopus) and the GStreamer plugins (scripts/test.sh installs
//! both).
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use common::runner::{
    Events, drive, mp4_job, peer_media, peer_records, plain, remove_job, wait_for, watchdog, write_atomically,
    write_job,
};
use common::{probe, tempdir};
use compositor::runner::Runner;
use schema::compositor::CompositorEvent;

const SECONDS: u32 = 6;
const TAP: u32 = 1;
const STRAY_TAP: u32 = 9;

/// The records sent between `from` and `to` ms.
fn between(records: &[(u64, Vec<u8>)], from: u64, to: u64) -> &[(u64, Vec<u8>)] {
    let start = records.partition_point(|(at, _)| *at < from);
    let end = records.partition_point(|(at, _)| *at < to);
    &records[start..end]
}

fn failures(events: &Events) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|(_, e)| match e {
            CompositorEvent::Failed { job_id, reason } => Some((job_id.clone(), reason.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn bad_job_files_and_stray_records_harm_nothing() {
    watchdog(Duration::from_secs(120));
    let dir = tempdir("runner-bad");
    let jobs = dir.join("jobs");
    std::fs::create_dir_all(&jobs).unwrap();
    let media = peer_media(&dir, SECONDS);

    let mut runner = Runner::new(&jobs);
    write_job(&jobs, &mp4_job("good", TAP, &dir.join("good")));
    let events = wait_for(&mut runner, Duration::from_secs(10), |e| matches!(e, CompositorEvent::Started { .. }));
    assert_eq!(events, [CompositorEvent::Started { job_id: "good".into() }]);

    // The job's peer and, interleaved, a peer on a tap nobody runs a job for (a job that just
    // stopped); and a record that is not one.
    let wall = util::unix_ms();
    let mut records = peer_records(TAP, &media, 0, wall);
    let stray = peer_records(STRAY_TAP, &media, 0, wall);
    let stray_count = stray.len() as u64;
    let stray_first_second = stray.iter().filter(|(at, _)| *at < 1000).count() as u64;
    records.extend(stray);
    records.push((500, vec![0xff; 7]));
    records.sort_by_key(|(at, _)| *at);
    let began = Instant::now();
    let span = |runner: &mut Runner, from: u64, to: u64| {
        drive(runner, between(&records, from, to), wall, began, Duration::from_millis(to))
    };

    let events = span(&mut runner, 0, 1000);
    assert_eq!(plain(&events), []);
    let stats = runner.stats();
    assert_eq!(stats.records_no_job, stray_first_second, "{stats:?}");
    assert_eq!(stats.bad_records, 1, "{stats:?}");

    // Not JSON: one report over four scans.
    write_atomically(&jobs, "broken.json", "{\"job_id\": \"broken\", \"tap\": ");
    let events = span(&mut runner, 1000, 2000);
    let failed = failures(&events);
    assert_eq!(failed.len(), 1, "{events:?}");
    assert_eq!(failed[0].0, "broken");
    assert!(failed[0].1.contains("unreadable job file"), "{failed:?}");
    assert_eq!(plain(&events).len(), 1, "{events:?}");
    // Fixed: it starts at the next scan.
    write_job(&jobs, &mp4_job("broken", 2, &dir.join("broken")));
    let events = span(&mut runner, 2000, 2600);
    assert_eq!(plain(&events), [CompositorEvent::Started { job_id: "broken".into() }]);

    // A file where the job's directory would be: one failure that names it.
    let blocker = dir.join("blocker");
    std::fs::write(&blocker, b"not a directory").unwrap();
    write_job(&jobs, &mp4_job("blocked", 3, &blocker.join("recording")));
    let events = span(&mut runner, 2600, 3600);
    let failed = failures(&events);
    assert_eq!(failed.len(), 1, "{events:?}");
    assert_eq!(failed[0].0, "blocked");
    assert!(failed[0].1.contains(&*blocker.join("recording").to_string_lossy()), "{failed:?}");
    assert_eq!(plain(&events).len(), 1, "{events:?}");

    // A second job on the running job's tap: it fails, the first goes on.
    write_job(&jobs, &mp4_job("second", TAP, &dir.join("second")));
    let events = span(&mut runner, 3600, 4600);
    let failed = failures(&events);
    assert_eq!(failed.len(), 1, "{events:?}");
    assert_eq!(failed[0].0, "second");
    assert!(failed[0].1.contains("tap 1") && failed[0].1.contains("good"), "{failed:?}");
    assert_eq!(plain(&events).len(), 1, "{events:?}");
    assert!(!dir.join("second").exists(), "a job that did not start wrote nothing");

    // To the last record (ffmpeg's Opus may end a packet past the last second).
    let events = span(&mut runner, 4600, records.last().unwrap().0 + 1);
    assert_eq!(plain(&events), []);
    let stats = runner.stats();
    assert_eq!(stats.records, records.len() as u64, "{stats:?}");
    assert_eq!(stats.records_no_job, stray_count, "{stats:?}");
    assert_eq!((stats.jobs_started, stats.jobs_failed), (2, 2), "{stats:?}");
    assert_eq!(runner.job_count(), 2);

    for id in ["good", "broken", "blocked", "second"] {
        remove_job(&jobs, id);
    }
    let mut events = Vec::new();
    while events.iter().filter(|e| matches!(e, CompositorEvent::Finished { .. })).count() < 2 {
        events
            .extend(wait_for(&mut runner, Duration::from_secs(20), |e| matches!(e, CompositorEvent::Finished { .. })));
    }
    runner.scan();
    assert_eq!(runner.poll_event(), None, "the jobs that never started have nothing to finish");
    let closed: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            CompositorEvent::FileClosed { file, .. } => Some(file.path.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(closed.len(), 2, "{events:?}");
    for id in ["good", "broken"] {
        let path = dir.join(id).join("composite.1.mp4");
        assert!(closed.contains(&&*path.to_string_lossy()), "{events:?}");
        let p = probe(&path);
        assert_eq!(p.video.as_ref().unwrap().0, "h264");
        assert!(p.errors.is_empty(), "ffprobe {id}: {}", p.errors);
    }
    let p = probe(&dir.join("good").join("composite.1.mp4"));
    let duration = p.duration.unwrap();
    assert!(duration >= f64::from(SECONDS) - 0.3, "{duration} s: the good job ran through everything");
}

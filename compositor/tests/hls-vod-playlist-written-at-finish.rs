//! HLS with `vod`: a live window for viewers while the job runs, every segment kept, and at
//! finish `vod.m3u8` (`VOD`, `#EXT-X-ENDLIST`) listing them all, which ffmpeg plays through
//! from start to end. The job restarted on the same directory appends to it after an
//! `#EXT-X-DISCONTINUITY`, numbering its segments on from the first run's. A paused VOD leaves
//! out the segments that close while it is paused (the live playlist goes on) and goes on
//! after a discontinuity.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::path::Path;
use std::time::Duration;

use common::outputs::{decode_all, durations, push_live, read, segment_files, tag, uris};
use common::{make_media, probe, tempdir};
use compositor::{Composite, Config, HlsOutput, HlsPlaylist, Rendition};

fn run_job(out: &Path, media: &common::Media, seconds: u64) {
    run_job_paused(out, media, seconds, None);
}

/// The job, its VOD recording paused from `paused.0` to `paused.1` (seconds), if given.
fn run_job_paused(out: &Path, media: &common::Media, seconds: u64, paused: Option<(u64, u64)>) {
    let mut hls = HlsOutput::new(out, vec![Rendition { width: 320, height: 180, video_kbps: 300 }]);
    hls.segment_duration = Duration::from_secs(1);
    hls.playlist = HlsPlaylist::Live { segments: 3 };
    hls.vod = true;
    let config = Config { width: 320, height: 180, video_bitrate_kbps: 300, hls: Some(hls), ..Config::default() };
    let mut job = Composite::start(config).unwrap();
    push_live(&mut job, media, Duration::from_secs(seconds), |job, pts| {
        let Some((from, to)) = paused else { return };
        let paused = (Duration::from_secs(from)..Duration::from_secs(to)).contains(&pts);
        if paused != job.recording_paused() {
            job.set_recording_paused(paused).unwrap();
        }
    });
    job.finish(Duration::from_secs(10)).unwrap();
}

#[test]
fn a_paused_vod_leaves_the_paused_segments_out() {
    let dir = tempdir("hls-vod-pause");
    let media = make_media(&dir, 2);
    let out = dir.join("hls");
    run_job_paused(&out, &media, 8, Some((3, 6)));
    let vod = read(&out.join("0").join("vod.m3u8"));
    eprintln!("{vod}");
    let total: f64 = durations(&vod).iter().sum();
    assert!((4.5..=5.5).contains(&total), "{total} s listed for 8 s pushed, 3 s of them paused");
    assert_eq!(vod.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "one discontinuity, at the resume: {vod}");
    let uris = uris(&vod);
    let gap = uris.windows(2).filter(|w| w[0] != w[1] && segment_number(&w[1]) != segment_number(&w[0]) + 1).count();
    assert_eq!(gap, 1, "the paused segments are missing from the list: {uris:?}");
    let p = probe(&out.join("0").join("vod.m3u8"));
    assert!(p.errors.is_empty(), "ffprobe: {}", p.errors);
    let frames = decode_all(&out.join("0").join("vod.m3u8"));
    assert!((130..=170).contains(&frames), "{frames} frames decoded for 5 s recorded");
}

fn segment_number(uri: &str) -> u64 {
    uri.trim_start_matches("seg").trim_end_matches(".ts").parse().unwrap()
}

#[test]
fn a_vod_playlist_lists_every_segment_of_every_run() {
    let dir = tempdir("hls-vod");
    let media = make_media(&dir, 2);
    let out = dir.join("hls");
    let rendition = out.join("0");

    run_job(&out, &media, 6);
    let vod = read(&rendition.join("vod.m3u8"));
    eprintln!("{vod}");
    assert_eq!(tag(&vod, "#EXT-X-PLAYLIST-TYPE"), Some("VOD"));
    assert!(vod.ends_with("#EXT-X-ENDLIST\n"), "{vod}");
    let first_run = uris(&vod);
    assert_eq!(first_run[0], "seg00000.ts");
    assert_eq!(segment_files(&rendition), first_run, "nothing deleted though the live window is 3");
    let live = read(&rendition.join("index.m3u8"));
    assert_eq!(uris(&live).len(), 3, "the live playlist is still a window: {live}");
    let total: f64 = durations(&vod).iter().sum();
    assert!((5.5..=6.5).contains(&total), "{total} s listed for 6 s pushed");
    // A player's view: the whole duration, every frame decodable.
    let p = probe(&rendition.join("vod.m3u8"));
    let duration = p.duration.unwrap();
    assert!((5.5..=6.5).contains(&duration), "ffprobe: {duration} s");
    let frames = decode_all(&rendition.join("vod.m3u8"));
    assert!((165..=195).contains(&frames), "{frames} frames decoded for 6 s");

    // The job again on the same directory: its segments follow the first run's.
    run_job(&out, &media, 3);
    let vod = read(&rendition.join("vod.m3u8"));
    eprintln!("{vod}");
    let both = uris(&vod);
    assert_eq!(both[..first_run.len()], first_run[..], "the first run's segments first");
    assert_eq!(both[first_run.len()], format!("seg{:05}.ts", first_run.len()), "numbering goes on");
    assert_eq!(vod.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{vod}");
    let before_discontinuity = vod.split("#EXT-X-DISCONTINUITY\n").next().unwrap();
    assert_eq!(uris(before_discontinuity), first_run);
    assert_eq!(vod.matches("#EXT-X-ENDLIST").count(), 1, "{vod}");
    assert!(vod.ends_with("#EXT-X-ENDLIST\n"));
    let total: f64 = durations(&vod).iter().sum();
    assert!((8.5..=9.5).contains(&total), "{total} s listed for 6 + 3 s pushed");
    let p = probe(&rendition.join("vod.m3u8"));
    assert!((8.5..=9.5).contains(&p.duration.unwrap()), "ffprobe: {:?}", p.duration);
    let frames = decode_all(&rendition.join("vod.m3u8"));
    assert!((250..=290).contains(&frames), "{frames} frames decoded for 9 s");
}

//! Timed metadata sent while the job runs reaches every live HLS playlist at once as an
//! `#EXT-X-DATERANGE` dated on the segments' program-date-time timeline, with the payload
//! (quotes and all) intact; a job without HLS refuses it.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::outputs::{push_live, read};
use common::{make_media, tempdir};
use compositor::{Composite, Config, Error, HlsOutput, HlsPlaylist, Rendition};

const PAYLOAD: &str = r#"{"type":"poll","id":7}"#;

/// The Unix ms of an ISO 8601 date as the playlists write it (`2026-12-07T02:25:31.123Z`),
/// through `date`, which knows the calendar.
fn unix_ms(iso: &str) -> u64 {
    let out = std::process::Command::new("date").args(["-u", "-d", iso, "+%s%3N"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn attribute<'a>(line: &'a str, name: &str) -> &'a str {
    let value = line.split(&format!("{name}=")).nth(1).unwrap();
    value.trim_start_matches('"').split(['"', ',']).next().unwrap()
}

#[test]
fn timed_metadata_becomes_a_daterange_in_every_live_playlist() {
    let dir = tempdir("hls-metadata");
    let media = make_media(&dir, 2);
    let out = dir.join("hls");
    let mut hls = HlsOutput::new(
        &out,
        vec![
            Rendition { width: 320, height: 180, video_kbps: 300 },
            Rendition { width: 160, height: 90, video_kbps: 100 },
        ],
    );
    hls.segment_duration = Duration::from_secs(1);
    hls.playlist = HlsPlaylist::Live { segments: 4 };
    let config = Config { width: 320, height: 180, video_bitrate_kbps: 300, hls: Some(hls), ..Config::default() };
    let mut job = Composite::start(config).unwrap();

    let mut sent_at_ms = 0;
    let mut checked = false;
    push_live(&mut job, &media, Duration::from_secs(6), |job, pts| {
        if sent_at_ms == 0 && pts >= Duration::from_secs(3) {
            sent_at_ms = u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap();
            job.add_timed_metadata(PAYLOAD, Duration::from_secs(2)).unwrap();
            // At once, not at the next segment.
            for i in 0..2 {
                let playlist = read(&out.join(i.to_string()).join("index.m3u8"));
                assert_eq!(playlist.matches("#EXT-X-DATERANGE:").count(), 1, "{playlist}");
            }
            checked = true;
        }
    });
    assert!(checked);
    job.finish(Duration::from_secs(10)).unwrap();

    for i in 0..2 {
        let playlist = read(&out.join(i.to_string()).join("index.m3u8"));
        eprintln!("{playlist}");
        let line = playlist.lines().find(|l| l.starts_with("#EXT-X-DATERANGE:")).expect("a date range");
        let start = unix_ms(attribute(line, "START-DATE"));
        assert!(start.abs_diff(sent_at_ms) < 300, "START-DATE {start} vs sent at {sent_at_ms}");
        assert_eq!(attribute(line, "DURATION"), "2.000");
        // As 100ms's HLS player reads it: base64 JSON with the payload and its dates.
        use base64::Engine as _;
        let data = base64::engine::general_purpose::STANDARD.decode(attribute(line, "X-100MSLIVE-PAYLOAD")).unwrap();
        let cue: serde_json::Value = serde_json::from_slice(&data).unwrap();
        assert_eq!(cue["payload"], PAYLOAD);
        assert_eq!(cue["start_date"], attribute(line, "START-DATE"));
        assert_eq!(unix_ms(cue["end_date"].as_str().unwrap()), start + 2000);
        // On the segments' timeline: within the dates the playlist's segments cover.
        let dates: Vec<u64> =
            playlist.lines().filter_map(|l| l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:")).map(unix_ms).collect();
        assert!(dates.first().unwrap() <= &start && start <= dates.last().unwrap() + 1000, "{dates:?} vs {start}");
    }

    let mut mp4_only = Composite::start(Config::new(dir.join("mp4"), "room")).unwrap();
    assert!(matches!(mp4_only.add_timed_metadata(PAYLOAD, Duration::ZERO), Err(Error::NoHls)));
    mp4_only.finish(Duration::from_secs(10)).unwrap();
}

//! An HLS event playlist (DVR): it declares `EVENT`, lists every segment from the first while
//! the job runs (none is deleted), and ends with `#EXT-X-ENDLIST` when the job finishes.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::outputs::{durations, push_live, read, segment_files, tag, uris};
use common::{make_media, tempdir};
use compositor::{Composite, Config, HlsOutput, HlsPlaylist, Rendition};

#[test]
fn an_event_playlist_keeps_every_segment() {
    let dir = tempdir("hls-event");
    let media = make_media(&dir, 2);
    let out = dir.join("hls");
    let mut hls = HlsOutput::new(&out, vec![Rendition { width: 640, height: 360, video_kbps: 600 }]);
    hls.segment_duration = Duration::from_secs(1);
    hls.playlist = HlsPlaylist::Event;
    let config = Config { width: 640, height: 360, video_bitrate_kbps: 600, hls: Some(hls), ..Config::default() };
    let mut job = Composite::start(config).unwrap();

    let index = out.join("0").join("index.m3u8");
    let mut listed_at_4s = 0;
    push_live(&mut job, &media, Duration::from_secs(8), |_, pts| {
        if listed_at_4s == 0 && pts >= Duration::from_secs(4) {
            listed_at_4s = uris(&read(&index)).len();
        }
    });
    let running = read(&index);
    let listed = uris(&running);
    assert!(listed_at_4s >= 2 && listed.len() >= 6 && listed.len() > listed_at_4s, "{listed_at_4s} then {running}");
    assert_eq!(tag(&running, "#EXT-X-PLAYLIST-TYPE"), Some("EVENT"));
    assert_eq!(tag(&running, "#EXT-X-MEDIA-SEQUENCE"), Some("0"));
    assert!(!running.contains("#EXT-X-ENDLIST"), "not yet ended: {running}");
    assert_eq!(listed[0], "seg00000.ts");

    job.finish(Duration::from_secs(10)).unwrap();
    let ended = read(&index);
    assert!(ended.ends_with("#EXT-X-ENDLIST\n"), "{ended}");
    let listed = uris(&ended);
    let expected: Vec<String> = (0..listed.len()).map(|n| format!("seg{n:05}.ts")).collect();
    assert_eq!(listed, expected, "every segment, in order");
    assert_eq!(segment_files(&out.join("0")), expected, "none deleted, none unlisted");
    let total: f64 = durations(&ended).iter().sum();
    assert!((7.5..=8.5).contains(&total), "{total} s listed for 8 s pushed");
    assert_eq!(ended.matches("#EXT-X-PROGRAM-DATE-TIME:").count(), listed.len());
}

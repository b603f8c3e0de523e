//! Output configurations that cannot work are refused before anything starts, each with a
//! message naming the problem.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::tempdir;
use compositor::{Composite, Config, Error, HlsOutput, Rendition};

fn refused(config: Config, why: &str) {
    match Composite::start(config) {
        Err(Error::Config(message)) => {
            assert!(message.contains(why), "{message:?} should mention {why:?}");
        }
        other => panic!("expected Error::Config about {why:?}, got {other:?}"),
    }
}

#[test]
fn bad_output_configs_are_refused() {
    let dir = tempdir("bad-configs");
    let rendition = |width, height, video_kbps| Rendition { width, height, video_kbps };
    let hls = |renditions| Some(HlsOutput::new(dir.join("hls"), renditions));
    let base = Config { width: 640, height: 360, video_bitrate_kbps: 800, ..Config::default() };

    refused(base.clone(), "at least one output");
    let url = |i: u32| format!("rtmp://127.0.0.1:1935/live/key{i}");
    refused(Config { rtmp: (0..6).map(url).collect(), ..base.clone() }, "at most 5");
    refused(Config { rtmp: vec!["http://example.com/live/key".into()], ..base.clone() }, "rtmp:// or rtmps://");
    refused(Config { rtmp: vec!["rtmp://example.com/live".into()], ..base.clone() }, "/app/stream");
    refused(Config { rtmp: vec![url(1), url(1)], ..base.clone() }, "twice");
    refused(Config { hls: hls(vec![]), ..base.clone() }, "1 to 3");
    refused(
        Config {
            hls: hls(vec![
                rendition(640, 360, 800),
                rendition(320, 180, 300),
                rendition(160, 90, 100),
                rendition(80, 46, 50),
            ]),
            ..base.clone()
        },
        "1 to 3",
    );
    refused(Config { hls: hls(vec![rendition(640, 360, 800), rendition(321, 180, 300)]), ..base.clone() }, "even");
    refused(
        Config { hls: hls(vec![rendition(640, 360, 800), rendition(1280, 720, 300)]), ..base.clone() },
        "larger than the output",
    );
    refused(Config { hls: hls(vec![rendition(320, 180, 800)]), ..base.clone() }, "output's");
    refused(Config { hls: hls(vec![rendition(640, 360, 500)]), ..base.clone() }, "video_bitrate_kbps");
    let mut odd_segments = HlsOutput::new(dir.join("hls"), vec![rendition(640, 360, 800)]);
    odd_segments.segment_duration = Duration::from_millis(2500);
    refused(Config { hls: Some(odd_segments), ..base.clone() }, "whole seconds");
    refused(Config { width: 641, ..Config::new(&dir, "room") }, "even");

    // Nothing was started or written for any of them.
    assert!(!dir.join("hls").exists());
}

//! The job published to a real RTMP server (ffmpeg listening): what the server records
//! decodes as H.264 and AAC and lasts as long as what the job sent; the destination reports
//! itself connected on its first attempt.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::outputs::{RtmpServer, decode_all, free_port, push_live, rtmp_url};
use common::{make_media, probe, tempdir};
use compositor::{Composite, Config};

#[test]
fn the_stream_reaches_an_rtmp_server() {
    let dir = tempdir("rtmp");
    let media = make_media(&dir, 2);
    let port = free_port();
    let mut server = RtmpServer::start(port, &dir.join("received.flv"));
    let config =
        Config { width: 640, height: 360, video_bitrate_kbps: 800, rtmp: vec![rtmp_url(port)], ..Config::default() };
    let mut job = Composite::start(config).unwrap();

    let mut connected_at = None;
    push_live(&mut job, &media, Duration::from_secs(6), |job, pts| {
        if connected_at.is_none() && job.rtmp_states()[0].connected {
            connected_at = Some(pts);
        }
    });
    let state = job.rtmp_states().remove(0);
    assert_eq!((state.url.as_str(), state.connected, state.attempts), (rtmp_url(port).as_str(), true, 1), "{state:?}");
    assert_eq!(state.last_error, None);
    assert!(connected_at.unwrap() < Duration::from_secs(2), "connected at {connected_at:?}");
    let finished_at = job.running_time().unwrap();
    job.finish(Duration::from_secs(10)).unwrap();
    assert!(server.wait(Duration::from_secs(10)), "the server saw the stream end");

    let p = probe(&server.flv);
    eprintln!("{p:?}");
    let (codec, w, h, frames) = p.video.expect("a video stream");
    assert_eq!((codec.as_str(), w, h), ("h264", 640, 360));
    assert_eq!(p.audio.as_deref(), Some("aac"));
    // From the first frame (a keyframe at 0) to the end of the job.
    let duration = p.duration.unwrap();
    let latest = finished_at.as_secs_f64() + 0.3;
    assert!((5.7..=latest.max(6.3)).contains(&duration), "{duration} s received for 6 s sent");
    assert!((frames as f64 - duration * 30.0).abs() <= 10.0, "{frames} frames in {duration} s");
    assert!(p.errors.is_empty(), "ffprobe: {}", p.errors);
    assert_eq!(decode_all(&server.flv), frames);
}

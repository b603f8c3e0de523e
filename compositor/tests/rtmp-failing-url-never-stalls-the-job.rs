//! One RTMP destination with nothing listening, one working, and an MP4: the working one and
//! the MP4 get the whole job. A server started on the dead destination's port is connected to
//! within the backoff; killed mid-stream and started again, it is reconnected to. Meanwhile
//! the job never fails and the MP4 is complete and plays.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use common::outputs::{RtmpServer, decode_all, free_port, push_live, rtmp_url};
use common::{check_timing, make_media, probe, tempdir};
use compositor::{Composite, Config, Mp4Output, RtmpRetry};

const RETRY: RtmpRetry =
    RtmpRetry { first: Duration::from_millis(250), max: Duration::from_secs(1), stable: Duration::from_secs(30) };
/// The longest wait before an attempt, plus a connection's setup on a busy machine.
const RECONNECT_WITHIN: Duration = Duration::from_secs(3);

#[derive(Debug, PartialEq)]
enum Phase {
    DeadUrl,
    ServerStarted(Instant),
    Connected(Duration),
    Killed,
    Restarted(Instant),
    Reconnected,
}

#[test]
fn a_failing_rtmp_url_never_stalls_the_job() {
    let dir = tempdir("rtmp-isolation");
    let media = make_media(&dir, 2);
    let flaky_port = free_port();
    let good_port = std::iter::repeat_with(free_port).find(|p| *p != flaky_port).unwrap();
    let mut good = RtmpServer::start(good_port, &dir.join("good.flv"));
    let config = Config {
        width: 640,
        height: 360,
        video_bitrate_kbps: 800,
        mp4: Some(Mp4Output::new(dir.join("mp4"), "room")),
        rtmp: vec![rtmp_url(flaky_port), rtmp_url(good_port)],
        rtmp_retry: RETRY,
        ..Config::default()
    };
    let mut job = Composite::start(config).unwrap();

    let mut phase = Phase::DeadUrl;
    let mut flaky: Option<RtmpServer> = None;
    let mut attempts_before_kill = 0;
    push_live(&mut job, &media, Duration::from_secs(14), |job, pts| {
        let [flaky_state, good_state] = <[_; 2]>::try_from(job.rtmp_states()).unwrap();
        match phase {
            Phase::DeadUrl if pts >= Duration::from_millis(2500) => {
                assert!(!flaky_state.connected && flaky_state.attempts >= 2, "{flaky_state:?}");
                assert!(flaky_state.last_error.is_some(), "{flaky_state:?}");
                assert!(good_state.connected && good_state.attempts == 1, "{good_state:?}");
                flaky = Some(RtmpServer::start(flaky_port, &dir.join("flaky-1.flv")));
                phase = Phase::ServerStarted(Instant::now());
            }
            Phase::ServerStarted(at) => {
                if flaky_state.connected {
                    eprintln!("connected {:?} after the server started: {flaky_state:?}", at.elapsed());
                    phase = Phase::Connected(pts);
                } else {
                    assert!(at.elapsed() < RECONNECT_WITHIN, "not connected: {flaky_state:?}");
                }
            }
            Phase::Connected(at) if pts >= at + Duration::from_secs(3) => {
                attempts_before_kill = flaky_state.attempts;
                flaky.as_mut().unwrap().kill();
                phase = Phase::Killed;
            }
            Phase::Killed if !flaky_state.connected => {
                eprintln!("the drop seen: {flaky_state:?}");
                flaky = Some(RtmpServer::start(flaky_port, &dir.join("flaky-2.flv")));
                phase = Phase::Restarted(Instant::now());
            }
            Phase::Restarted(at) => {
                if flaky_state.connected {
                    eprintln!("reconnected {:?} after the restart: {flaky_state:?}", at.elapsed());
                    assert!(flaky_state.attempts > attempts_before_kill);
                    phase = Phase::Reconnected;
                } else {
                    assert!(at.elapsed() < RECONNECT_WITHIN, "not reconnected: {flaky_state:?}");
                }
            }
            _ => {}
        }
        if pts >= Duration::from_secs(1) {
            assert!(good_state.connected && good_state.attempts == 1, "the good one is untouched: {good_state:?}");
        }
    });
    assert_eq!(phase, Phase::Reconnected);
    let finished_at = job.running_time().unwrap();
    job.finish(Duration::from_secs(10)).unwrap();

    // The MP4: the whole job, every frame decodable.
    let mp4 = dir.join("mp4").join("room.1.mp4");
    let p = probe(&mp4);
    eprintln!("mp4 {p:?}");
    check_timing(&p, 14.0, finished_at);
    assert_eq!(p.audio.as_deref(), Some("aac"));
    assert_eq!(decode_all(&mp4), p.video.unwrap().3);

    // The good destination: the whole job too.
    assert!(good.wait(Duration::from_secs(10)), "the good server saw the stream end");
    let p = probe(&good.flv);
    eprintln!("good {p:?}");
    check_timing(&p, 14.0, finished_at);
    assert_eq!(p.video.as_ref().unwrap().0, "h264");
    assert_eq!(p.audio.as_deref(), Some("aac"));
    assert!(p.errors.is_empty(), "ffprobe: {}", p.errors);

    // The restarted server: what the job sent after reconnecting, decodable from its start.
    let mut flaky = flaky.unwrap();
    assert!(flaky.wait(Duration::from_secs(10)), "the restarted server saw the stream end");
    let p = probe(&flaky.flv);
    eprintln!("flaky after the restart {p:?}");
    assert!(p.duration.unwrap() > 2.0, "{p:?}");
    assert_eq!(p.video.as_ref().unwrap().0, "h264");
    assert_eq!(p.audio.as_deref(), Some("aac"));
    assert!(decode_all(&flaky.flv) > 50);
}

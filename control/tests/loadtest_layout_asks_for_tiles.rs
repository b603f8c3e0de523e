//! The load tool against the real platform (control, router, signaling from this build):
//! seven simulcast publishers and one subscriber with `--layout speaker`. The subscriber must
//! get the first video on the high layer, the next five on the low layer, and not the seventh;
//! the run must end on time with its JSON report. This also checks the tool end to end: real
//! REST, signaling, ICE/DTLS/SRTP and data-channel requests, not a simulation.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed test

mod common;

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, TempDir, real_bin_dir};

#[test]
fn speaker_layout_gets_one_high_five_low_and_not_the_seventh() {
    let tmp = TempDir::new("loadtest-layout");
    let data = tmp.path().join("data");
    let bin = real_bin_dir();
    let loadtest = bin.join("loadtest");
    assert!(loadtest.exists(), "loadtest is not built in {}: build the workspace first", bin.display());
    // Free for UDP and for TCP: the router binds both at its port (ICE-TCP).
    let router_port = loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            break port.to_string();
        }
    };
    let d = Daemon::start_with_args(&data, &bin, &tmp.path().join("no-demo"), &[], &["--router-port", &router_port]);

    // The children start after control's first line: wait for the router's socket and signaling.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(data.join("router.sock").exists()
        && TcpStream::connect(("127.0.0.1", d.signaling_port)).is_ok()
        && data.join("credentials.json").exists())
    {
        assert!(Instant::now() < deadline, "router and signaling did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }

    let json = tmp.path().join("report.json");
    let mut child = Command::new(&loadtest)
        .args(["--api-url", &format!("https://localhost:{}", d.port)])
        .args(["--init-url", &format!("https://localhost:{}", d.signaling_port)])
        .arg("--data-dir")
        .arg(&data)
        .args(["--video-publishers", "7", "--subscribers", "1", "--layout", "speaker"])
        .args(["--duration", "6s", "--num-per-second", "20"])
        .arg("--json")
        .arg(&json)
        .arg("--chart")
        .arg(tmp.path().join("chart.svg"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(tmp.path().join("loadtest.log")).unwrap())
        .spawn()
        .unwrap();
    // The tool ends by itself at the end of its media time; a hang is a failure, not a wait.
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("loadtest did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = std::fs::read_to_string(tmp.path().join("loadtest.log")).unwrap_or_default();
    assert!(status.success(), "loadtest failed ({status}):\n{log}");

    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["settings"]["layout"], "speaker");
    let peers = r["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 8);
    for p in peers {
        assert!(p["error"].is_null(), "peer {} failed: {}", p["index"], p["error"]);
    }
    let sub = peers.iter().find(|p| p["publisher"] == false).unwrap();

    // What it asked for: the videos in the order announced, all accepted.
    let tiles = sub["tiles"].as_array().unwrap();
    let layers: Vec<&str> = tiles.iter().map(|t| t["max_layer"].as_str().unwrap()).collect();
    assert_eq!(layers, ["high", "low", "low", "low", "low", "low", "none"], "{tiles:?}");
    assert!(tiles.iter().all(|t| t["accepted"] == true), "{tiles:?}");
    // Publisher index of a track id `lt-video-<index>`.
    let publisher_of = |t: &serde_json::Value| -> u64 {
        t["track_id"].as_str().unwrap().strip_prefix("lt-video-").unwrap().parse().unwrap()
    };

    // What it got: a received track's source id is publisher index << 8 | track (1 + layer for
    // video), and `layer` is the last layer that arrived.
    let videos: Vec<&serde_json::Value> =
        sub["tracks"].as_array().unwrap().iter().filter(|t| t["video"] == true).collect();
    let got = |publisher: u64| -> Vec<&serde_json::Value> {
        videos
            .iter()
            .copied()
            .filter(|t| t["source"].as_u64().unwrap() >> 8 == publisher && t["packets"].as_u64().unwrap() > 0)
            .collect()
    };
    for (tile, want) in tiles.iter().zip(layers) {
        let tracks = got(publisher_of(tile));
        match want {
            "none" => assert!(tracks.is_empty(), "a hidden video arrived: {tracks:?}"),
            _ => {
                assert_eq!(tracks.len(), 1, "one stream per shown video: {tracks:?}");
                let layer = tracks[0]["layer"].as_u64().unwrap();
                if want == "high" {
                    // The router may hold a layer back while its estimate of the link ramps up
                    // (a busy test machine), but never down to the low layer on a loopback link.
                    assert!(layer >= 1, "the speaker tile is above the low layer: {tracks:?}");
                } else {
                    assert_eq!(layer, 0, "a low tile gets only the low layer: {tracks:?}");
                    assert_eq!(tracks[0]["layer_switches"], 0, "{tracks:?}");
                }
            }
        }
    }
    // Audio is always received: one track per publisher.
    let audio =
        sub["tracks"].as_array().unwrap().iter().filter(|t| t["video"] == false && t["packets"].as_u64().unwrap() > 0);
    assert_eq!(audio.count(), 7);
}

//! `GET /metrics` against the real daemon (real HTTPS, real router and signaling processes):
//! it needs a management token, refuses query parameters with a clear error, parses as the
//! Prometheus text format (every sample's family declared before it, histogram buckets
//! cumulative), and its router counters move after real UDP traffic to a shard.
//!
//! Needs the `router` and `signaling` binaries beside `control` (a workspace build).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed test

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime};

use common::{Daemon, TempDir, real_bin_dir as bin_dir};
use store::Store;

/// One sample: metric name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// A strict reader of the text format (0.0.4): `# HELP`/`# TYPE` lines, then samples of the
/// declared family. Panics with the offending line on anything else.
fn parse(text: &str) -> Vec<Sample> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut current: Option<String> = None;
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("bad TYPE line {line:?}"));
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line:?}");
            assert!(types.insert(name.to_owned(), kind.to_owned()).is_none(), "family declared twice: {line:?}");
            current = Some(name.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value: {line:?}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line:?}"));
                let labels = body
                    .split(',')
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("bad label: {line:?}"));
                        let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
                        (k.to_owned(), v.unwrap_or_else(|| panic!("unquoted label: {line:?}")).to_owned())
                    })
                    .collect();
                (name.to_owned(), labels)
            }
        };
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "bad name: {line:?}");
        let family = current.as_deref().unwrap_or_else(|| panic!("sample before any TYPE: {line:?}"));
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|b| types.get(*b).map(String::as_str) == Some("histogram")))
            .unwrap_or(&name);
        assert_eq!(base, family, "sample outside its family: {line:?}");
        out.push((name, labels, value));
    }
    out
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
        .map(|(_, _, v)| v)
        .sum()
}

#[test]
fn metrics_need_a_token_parse_as_prometheus_text_and_move_with_traffic() {
    let tmp = TempDir::new("metrics");
    let data = tmp.path().join("data");
    let d = Daemon::start(&data, &bin_dir(), &tmp.path().join("no-demo"), &[]);
    let store = Store::open(&data.join("platform.db")).unwrap();
    let ws = store.workspace_named("default").unwrap().unwrap();
    let token = store::token::mint_management_token(&ws, Duration::from_secs(600), SystemTime::now());

    // No token, a malformed one, and a query string: clear errors, not metrics.
    let r = d.get("/metrics");
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("Authorization"), "{}", r.text());
    let r = d.call("GET", "/metrics", "not-a-jwt", None);
    assert_eq!(r.status, 401, "{}", r.text());
    let r = d.call("GET", "/metrics?format=json", &token, None);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.json()["message"].as_str().unwrap().contains("no query parameters"), "{}", r.text());
    let r = d.call("POST", "/metrics", &token, Some("{}"));
    assert_eq!(r.status, 405, "{}", r.text());

    // The children start after control's first line: wait until both answer a scrape.
    let deadline = Instant::now() + Duration::from_secs(30);
    let scrape = || {
        let r = d.call("GET", "/metrics", &token, None);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
        parse(&r.text())
    };
    let before = loop {
        let s = scrape();
        if value(&s, "platform_component_up", &[]) == 2.0 && value(&s, "router_shard_info", &[]) >= 1.0 {
            break s;
        }
        assert!(Instant::now() < deadline, "router and signaling never both answered: {s:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    for name in [
        "router_dropped_total",
        "router_forwarded_total",
        "router_latency_seconds_bucket",
        "router_simulcast_layers_stopped_total",
        "router_simulcast_fallbacks_total",
        "router_video_unserved_ms_total",
        "router_ice_tcp_clients",
        "router_ice_tcp_datagrams_out_dropped_total",
        "signaling_join_seconds_bucket",
        "signaling_join_seconds_count",
    ] {
        assert!(before.iter().any(|(n, _, _)| n == name), "{name} missing");
    }
    // The live-layers gauge: one series per count of live layers, none of them with a track yet.
    for live in ["0", "1", "2", "3"] {
        let series = before
            .iter()
            .find(|(n, l, _)| n == "router_simulcast_tracks" && l["shard"] == "0" && l["live_layers"] == live);
        assert_eq!(series.map(|(_, _, v)| *v), Some(0.0), "router_simulcast_tracks live_layers={live}");
    }
    assert_eq!(value(&before, "signaling_active_rooms", &[]), 0.0);
    assert!(value(&before, "control_http_responses_total", &[("code", "4xx")]) >= 4.0);
    // router, signaling, recorder and compositor.
    assert_eq!(value(&before, "control_child_up", &[]), 4.0);

    // Real datagrams to shard 0's socket: 20 that are no known protocol (first byte 0xff).
    let (_, labels, _) = before.iter().find(|(n, l, _)| n == "router_shard_info" && l["shard"] == "0").unwrap();
    let addr: std::net::SocketAddr = labels["addr"].parse().unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..20 {
        udp.send_to(&[0xff; 40], ("127.0.0.1", addr.port())).unwrap();
    }
    let shard0 = [("shard", "0")];
    let moved = loop {
        let s = scrape();
        if value(&s, "router_packets_in_total", &shard0) >= value(&before, "router_packets_in_total", &shard0) + 20.0 {
            break s;
        }
        assert!(Instant::now() < deadline, "packets_in never moved");
        std::thread::sleep(Duration::from_millis(100));
    };
    let drops = |s: &[Sample]| value(s, "router_dropped_total", &[("shard", "0"), ("reason", "unknown_kind")]);
    assert_eq!(drops(&moved) - drops(&before), 20.0);
    let bytes_in = |s: &[Sample]| value(s, "router_bytes_in_total", &shard0);
    assert_eq!(bytes_in(&moved) - bytes_in(&before), 20.0 * 40.0);
    assert!(value(&moved, "router_cpu_seconds_total", &shard0) > 0.0);
    // Histogram buckets are cumulative and end at `+Inf` = `_count`.
    let buckets: Vec<f64> = moved
        .iter()
        .filter(|(n, l, _)| n == "router_latency_seconds_bucket" && l["shard"] == "0")
        .map(|(_, _, v)| *v)
        .collect();
    assert_eq!(buckets.len(), schema::histogram::BOUNDS_US.len() + 1);
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    assert_eq!(buckets.last().copied(), Some(value(&moved, "router_latency_seconds_count", &shard0)));
}

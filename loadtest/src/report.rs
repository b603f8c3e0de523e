//! The run's results: LiveKit-style tables (per track, per subscriber, with totals), the join
//! timeline's percentiles, and the whole report as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::peer::PeerReport;
use crate::stats::Summary;

/// One second of the run, for the chart and the JSON.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TimePoint {
    pub t_s: f64,
    pub joined: u64,
    pub sent_pps: f64,
    pub recv_pps: f64,
    pub recv_mbps: f64,
    /// Mean one-way latency of the packets received in this second, ms.
    pub latency_ms: f64,
    /// CPU of this process, in cores (1.0 = one core busy).
    pub generator_cpu: f64,
    /// CPU of the server processes watched, in cores.
    pub server_cpu: f64,
}

/// The run's settings as given.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub rooms: u32,
    pub video_publishers: u32,
    pub audio_publishers: u32,
    pub subscribers: u32,
    pub duration_s: f64,
    pub simulcast: bool,
    pub video_resolution: String,
    pub num_per_second: f64,
    pub threads: usize,
    /// Peers received no media (`--sink`): no receive-side figures.
    pub sink: bool,
    /// `--layout`: which videos each peer asked for (docs/loadtest.md).
    pub layout: &'static str,
    /// `--drop-layers`: the period, s, for which publishers' upper layers stop and resume.
    pub drop_layers_s: Option<f64>,
}

/// Per published track (source), over every subscriber that received it.
#[derive(Debug, Clone, Serialize)]
pub struct TrackRow {
    pub source: u32,
    pub publisher: u32,
    pub kind: &'static str,
    pub sent_packets: u64,
    pub subscribers: usize,
    pub packets: u64,
    pub expected: u64,
    pub lost: u64,
    pub kbps_per_subscriber: f64,
    pub jitter_ms: f64,
    pub latency_ms: Summary,
    pub freezes: u64,
    pub layer_switches: u64,
}

/// Per subscribing peer.
#[derive(Debug, Clone, Serialize)]
pub struct SubscriberRow {
    pub peer: u32,
    pub tracks: usize,
    pub packets: u64,
    pub lost: u64,
    pub expected: u64,
    pub kbps: f64,
    pub latency_ms: Summary,
    pub freezes: u64,
    /// Time with no forwarded video over the videos it should see (`crate::novideo`);
    /// `None` under `--sink`.
    pub no_video_ms: Option<u64>,
    /// How many videos it should see.
    pub videos: usize,
    pub join_to_first_packet_ms: Option<f64>,
    pub error: Option<String>,
}

/// Percentiles of each join step (ms since the peer started).
#[derive(Debug, Clone, Serialize)]
pub struct JoinRow {
    pub step: &'static str,
    pub ms: Summary,
}

/// Everything a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub settings: Settings,
    pub tracks: Vec<TrackRow>,
    pub subscribers: Vec<SubscriberRow>,
    pub join: Vec<JoinRow>,
    pub totals: Totals,
    pub series: Vec<TimePoint>,
    /// The router's counters over the steady window (None without its control socket).
    pub server: Option<ServerWindow>,
    pub peers: Vec<PeerReport>,
}

/// The server's view of the steady window, from the router's counters and its CPU time.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerWindow {
    pub seconds: f64,
    pub forwarded_per_s: f64,
    pub datagrams_in_per_s: f64,
    pub datagrams_out_per_s: f64,
    pub drops: u64,
    /// CPU time of the router process per forwarded packet, µs.
    pub router_cpu_us_per_forwarded: Option<f64>,
    pub router_cpu_cores: Option<f64>,
    /// The same from the shard threads' own CPU time (the forwarding work alone: no control
    /// or event threads), and its inverse: forwarded packets per second of one busy core.
    pub shard_cpu_us_per_forwarded: Option<f64>,
    pub shard_cpu_cores: Option<f64>,
    pub forwarded_per_shard_cpu_second: Option<f64>,
    /// In-router latency (receive batch → its sends submitted) over the window, µs, from the
    /// `router_latency_seconds` histogram of `GET /metrics`; `None` if the scrape failed.
    pub router_latency_p50_us: Option<f64>,
    pub router_latency_p99_us: Option<f64>,
    pub counters: crate::scrape::Counters,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub peers: usize,
    pub failed: usize,
    pub sent_packets: u64,
    pub packets: u64,
    pub expected: u64,
    pub lost: u64,
    pub loss_percent: f64,
    pub recv_mbps: f64,
    pub latency_ms: Summary,
    pub freezes: u64,
    /// Time with no forwarded video, summed over every subscriber (0 is the target), the
    /// subscriber with the most, and how many had any.
    pub no_video_ms: u64,
    pub no_video_worst_peer: Option<u32>,
    pub no_video_worst_ms: u64,
    pub no_video_subscribers: usize,
    /// Videos watched (per subscriber, summed): what `no_video_ms` is over.
    pub videos_watched: usize,
    pub generator_cpu_cores: f64,
    pub server_cpu_cores: f64,
    pub late_tick_percent: f64,
    /// The generator, not the server, was the limit: its CPU was near the threads it may use,
    /// or its media ticks ran late.
    pub generator_limited: bool,
    /// Signaling's own join time over the run (`signaling_join_seconds` of `GET /metrics`): a
    /// `join` read off its socket to its answer queued. `None` if the scrape failed.
    pub server_join: Option<Quantiles>,
}

/// Quantiles read from a histogram, in ms.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Quantiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
}

impl Quantiles {
    /// From a histogram in seconds (`prom::histogram`); `None` without samples.
    pub fn of(buckets: &crate::prom::Buckets) -> Option<Quantiles> {
        let q = |q: f64| crate::prom::quantile(buckets, q).map(|s| s * 1e3);
        Some(Quantiles {
            count: buckets.last().map_or(0, |&(_, c)| c as u64),
            p50_ms: q(0.5)?,
            p90_ms: q(0.9)?,
            p99_ms: q(0.99)?,
        })
    }
}

/// Builds the tables from the peers' reports. `media_s` is the length of the media window.
pub fn build(
    settings: Settings,
    peers: Vec<PeerReport>,
    series: Vec<TimePoint>,
    server: Option<ServerWindow>,
    media_s: f64,
    mut totals: Totals,
) -> RunReport {
    let secs = media_s.max(0.001);
    let mut by_source: BTreeMap<u32, TrackRow> = BTreeMap::new();
    let mut lat_by_source: BTreeMap<u32, Vec<f64>> = BTreeMap::new();
    let mut all_lat = Vec::new();
    let mut subscribers = Vec::new();
    let sent: BTreeMap<u32, u64> = peers.iter().flat_map(|p| p.sent.iter().map(|s| (s.source, s.packets))).collect();
    for p in &peers {
        let mut lat = Vec::new();
        let (mut packets, mut lost, mut expected, mut bytes, mut freezes) = (0, 0, 0, 0, 0);
        for t in &p.tracks {
            packets += t.packets;
            lost += t.lost();
            expected += t.expected();
            bytes += t.bytes;
            freezes += t.freezes;
            let ms: Vec<f64> = t.latency_us.iter().map(|l| f64::from(*l) / 1000.0).collect();
            lat.extend_from_slice(&ms);
            // Simulcast layers of one video track share a row: key on the video track.
            let source = t.source.map_or(u32::MAX, |s| if s & 0xff >= 1 { (s & !0xff) | 1 } else { s });
            let row = by_source.entry(source).or_insert_with(|| TrackRow {
                source,
                publisher: source >> 8,
                kind: if t.video { "video" } else { "audio" },
                sent_packets: 0,
                subscribers: 0,
                packets: 0,
                expected: 0,
                lost: 0,
                kbps_per_subscriber: 0.0,
                jitter_ms: 0.0,
                latency_ms: Summary::default(),
                freezes: 0,
                layer_switches: 0,
            });
            row.subscribers += 1;
            row.packets += t.packets;
            row.expected += t.expected();
            row.lost += t.lost();
            row.kbps_per_subscriber += t.bytes as f64 * 8.0 / secs / 1000.0;
            row.jitter_ms += t.jitter_us / 1000.0;
            row.freezes += t.freezes;
            row.layer_switches += t.layer_switches;
            lat_by_source.entry(source).or_default().extend_from_slice(&ms);
        }
        if !p.tracks.is_empty() || !p.publisher {
            let first = p.timeline.since_start_ms()[4];
            subscribers.push(SubscriberRow {
                peer: p.index,
                tracks: p.tracks.len(),
                packets,
                lost,
                expected,
                kbps: bytes as f64 * 8.0 / secs / 1000.0,
                latency_ms: Summary::of(&mut lat.clone()),
                freezes,
                no_video_ms: p.no_video_ms,
                videos: p.videos.len(),
                join_to_first_packet_ms: first,
                error: p.error.clone(),
            });
        }
        if let Some(nv) = p.no_video_ms {
            totals.no_video_ms += nv;
            totals.no_video_subscribers += usize::from(nv > 0);
            if nv > totals.no_video_worst_ms {
                totals.no_video_worst_ms = nv;
                totals.no_video_worst_peer = Some(p.index);
            }
        }
        totals.videos_watched += p.videos.len();
        all_lat.append(&mut lat);
        totals.packets += packets;
        totals.lost += lost;
        totals.expected += expected;
        totals.freezes += freezes;
        totals.recv_mbps += bytes as f64 * 8.0 / secs / 1e6;
    }
    for (source, row) in by_source.iter_mut() {
        let n = row.subscribers.max(1) as f64;
        row.kbps_per_subscriber /= n;
        row.jitter_ms /= n;
        row.sent_packets =
            sent.iter()
                .filter(|(s, _)| {
                    if *source & 0xff >= 1 { *s & !0xff == *source & !0xff && *s & 0xff >= 1 } else { *s == source }
                })
                .map(|(_, n)| n)
                .sum();
        if let Some(l) = lat_by_source.get_mut(source) {
            row.latency_ms = Summary::of(l);
        }
    }
    totals.peers = peers.len();
    totals.failed = peers.iter().filter(|p| p.error.is_some()).count();
    totals.sent_packets = peers.iter().flat_map(|p| &p.sent).map(|s| s.packets).sum();
    totals.loss_percent = if totals.expected == 0 { 0.0 } else { 100.0 * totals.lost as f64 / totals.expected as f64 };
    totals.latency_ms = Summary::of(&mut all_lat);
    const STEPS: [&str; 6] = ["ws open", "joined", "ICE connected", "DTLS done", "first packet", "first keyframe"];
    let join = STEPS
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let mut v: Vec<f64> = peers.iter().filter_map(|p| p.timeline.since_start_ms()[i]).collect();
            JoinRow { step, ms: Summary::of(&mut v) }
        })
        .collect::<Vec<_>>();
    let mut join = join;
    let mut rpc: Vec<f64> = peers.iter().filter_map(|p| p.timeline.join_rpc_ms()).collect();
    join.push(JoinRow { step: "join round trip", ms: Summary::of(&mut rpc) });
    RunReport { settings, tracks: by_source.into_values().collect(), subscribers, join, totals, series, server, peers }
}

/// The no-video summary and, with `--drop-layers`, what the publishers did.
fn no_video_lines(r: &RunReport) -> String {
    let mut s = String::new();
    if let Some(period) = r.settings.drop_layers_s {
        let sent = r.peers.iter().flat_map(|p| &p.sent);
        let (stops, padding, ignored) =
            sent.fold((0, 0, 0), |(a, b, c), t| (a + t.stops, b + t.padding_packets, c + t.keyframe_requests_ignored));
        let _ = writeln!(
            s,
            "\n--drop-layers {period:.1} s: publishers stopped an upper layer {stops} times, sent {padding} padding packets on stopped layers and ignored {ignored} keyframe requests for them."
        );
    }
    if r.settings.sink {
        return s;
    }
    let t = &r.totals;
    let subscribers = r.peers.iter().filter(|p| !p.videos.is_empty()).count();
    if t.no_video_ms == 0 {
        let _ = writeln!(
            s,
            "No video (gaps > 500 ms in forwarded video): none, over {} videos watched by {subscribers} subscribers.",
            t.videos_watched
        );
    } else {
        let _ = writeln!(
            s,
            "NO VIDEO: subscribers went {} ms in total without forwarded video (gaps > 500 ms, docs/loadtest.md); worst: peer {} with {} ms; {} of {subscribers} subscribers had some, over {} videos watched.",
            t.no_video_ms,
            t.no_video_worst_peer.map_or("-".to_owned(), |p| p.to_string()),
            t.no_video_worst_ms,
            t.no_video_subscribers,
            t.videos_watched
        );
    }
    s
}

/// The tables, as text.
pub fn tables(r: &RunReport, max_rows: usize) -> String {
    let mut s = String::new();
    if r.settings.sink {
        let _ = writeln!(
            s,
            "\n--sink: peers dropped the media they were sent in the kernel; receive-side columns are empty, the router's counters below measure the run."
        );
    }
    if r.settings.layout != "all" {
        let tiles: Vec<_> = r.peers.iter().flat_map(|p| &p.tiles).collect();
        let shown = tiles.iter().filter(|t| t.max_layer != "none").count();
        let _ = writeln!(
            s,
            "\n--layout {}: the peers asked for {} videos ({shown} shown, {} not), the server accepted {}.",
            r.settings.layout,
            tiles.len(),
            tiles.len() - shown,
            tiles.iter().filter(|t| t.accepted).count()
        );
    }
    let pct = |lost: u64, exp: u64| if exp == 0 { 0.0 } else { 100.0 * lost as f64 / exp as f64 };
    let _ = writeln!(
        s,
        "\nTrack                | Kind  | Sent pkts | Subs | Recv pkts  | Bitrate/sub | Jitter   | Latency p50/p99  | Dropped         | Freezes | Switches"
    );
    for t in &r.tracks {
        let _ = writeln!(
            s,
            "{:<20} | {:<5} | {:>9} | {:>4} | {:>10} | {:>7.0} kbps | {:>5.2} ms | {:>6.2}/{:>6.2} ms | {:>7} ({:>5.2}%) | {:>7} | {:>8}",
            format!("pub {} {}", t.publisher, t.kind),
            t.kind,
            t.sent_packets,
            t.subscribers,
            t.packets,
            t.kbps_per_subscriber,
            t.jitter_ms,
            t.latency_ms.p50,
            t.latency_ms.p99,
            t.lost,
            pct(t.lost, t.expected),
            t.freezes,
            t.layer_switches
        );
    }
    let _ = writeln!(
        s,
        "\nSubscriber | Tracks | Recv pkts  | Bitrate     | Latency p50/p99  | Dropped         | Freezes |   No video | First pkt | Error"
    );
    for sub in r.subscribers.iter().take(max_rows) {
        let _ = writeln!(
            s,
            "{:<10} | {:>6} | {:>10} | {:>6.0} kbps | {:>6.2}/{:>6.2} ms | {:>7} ({:>5.2}%) | {:>7} | {:>10} | {:>6} ms | {}",
            sub.peer,
            sub.tracks,
            sub.packets,
            sub.kbps,
            sub.latency_ms.p50,
            sub.latency_ms.p99,
            sub.lost,
            pct(sub.lost, sub.expected),
            sub.freezes,
            // A non-zero figure is marked, so it stands out in a column of zeros.
            match sub.no_video_ms {
                None => "-".to_owned(),
                Some(0) => "0 ms".to_owned(),
                Some(ms) => format!("!{ms} ms"),
            },
            sub.join_to_first_packet_ms.map_or("-".into(), |v| format!("{v:.0}")),
            sub.error.as_deref().unwrap_or("-")
        );
    }
    if r.subscribers.len() > max_rows {
        let _ = writeln!(s, "… {} more subscribers in the JSON report", r.subscribers.len() - max_rows);
    }
    let t = &r.totals;
    let _ = writeln!(
        s,
        "{:<10} | {:>6} | {:>10} | {:>6.1} Mbps | {:>6.2}/{:>6.2} ms | {:>7} ({:>5.2}%) | {:>7} | {:>7} ms |",
        "Total",
        r.tracks.len(),
        t.packets,
        t.recv_mbps,
        t.latency_ms.p50,
        t.latency_ms.p99,
        t.lost,
        t.loss_percent,
        t.freezes,
        t.no_video_ms
    );
    s.push_str(&no_video_lines(r));
    let _ = writeln!(s, "\nJoin step          |  count |    p50 ms |    p90 ms |    p99 ms |    max ms");
    for j in &r.join {
        let _ = writeln!(
            s,
            "{:<18} | {:>6} | {:>9.1} | {:>9.1} | {:>9.1} | {:>9.1}",
            j.step, j.ms.count, j.ms.p50, j.ms.p90, j.ms.p99, j.ms.max
        );
    }
    if let Some(j) = &r.totals.server_join {
        let _ = writeln!(
            s,
            "{:<18} | {:>6} | {:>9.1} | {:>9.1} | {:>9.1} |   (signaling_join_seconds, /metrics)",
            "join (server)", j.count, j.p50_ms, j.p90_ms, j.p99_ms
        );
    }
    if let Some(w) = &r.server {
        let _ = writeln!(
            s,
            "\nRouter, steady window {:.1} s: forwarded {:.0} pkt/s, datagrams in {:.0}/s out {:.0}/s, drops {}, NACKs in {}, retransmitted {}, PLIs sent {}, layer switches {}{}",
            w.seconds,
            w.forwarded_per_s,
            w.datagrams_in_per_s,
            w.datagrams_out_per_s,
            w.drops,
            w.counters.get("nacks_received").copied().unwrap_or(0),
            w.counters.get("retransmitted").copied().unwrap_or(0),
            w.counters.get("plis_sent").copied().unwrap_or(0),
            w.counters.get("layer_switches").copied().unwrap_or(0),
            match (w.router_cpu_cores, w.router_cpu_us_per_forwarded) {
                (Some(c), Some(us)) => format!(", router CPU {c:.2} cores = {us:.2} CPU-µs per forwarded packet"),
                _ => String::new(),
            }
        );
        if let (Some(c), Some(us), Some(pps)) =
            (w.shard_cpu_cores, w.shard_cpu_us_per_forwarded, w.forwarded_per_shard_cpu_second)
        {
            let _ = writeln!(
                s,
                "Shard threads: {c:.2} cores = {us:.2} CPU-µs per forwarded packet = {pps:.0} forwarded pkt/s per core"
            );
        }
        if let (Some(p50), Some(p99)) = (w.router_latency_p50_us, w.router_latency_p99_us) {
            let _ =
                writeln!(s, "In-router latency (receive → send submitted, /metrics): p50 {p50:.1} µs, p99 {p99:.1} µs");
        }
    }
    let _ = writeln!(
        s,
        "\nPeers {} (failed {}), packets sent {}, received {}, generator CPU {:.2} cores, server CPU {:.2} cores, late media ticks {:.2}%{}",
        t.peers,
        t.failed,
        t.sent_packets,
        t.packets,
        t.generator_cpu_cores,
        t.server_cpu_cores,
        t.late_tick_percent,
        if t.generator_limited {
            "\nWARNING: the load generator was the limit of this run (its CPU or its media schedule), not the server"
        } else {
            ""
        }
    );
    s
}

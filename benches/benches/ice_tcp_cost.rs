//! What a subscriber over ICE-TCP, and one relayed by TURN, cost against one over UDP: one
//! publisher (UDP) sends VP8 and Opus to N str0m subscribers, all over UDP, then all over
//! ICE-TCP, then all through the router's own TURN over TLS and over TCP, then all through a
//! coturn relay over UDP (when `/usr/bin/turnserver` is installed), in one run. Reports the CPU
//! time per datagram sent to the subscribers: the router's (its shard thread, and its ICE-TCP
//! or TURN threads, read from /proc), and for coturn also its whole process, and the ratios to
//! UDP. Run:
//!
//! ```text
//! cargo bench -p benches --bench ice_tcp_cost                 # 20 subscribers, 10 s each
//! ICE_TCP_SUBSCRIBERS=50 ICE_TCP_SECONDS=20 cargo bench -p benches --bench ice_tcp_cost
//! ICE_TCP_PATHS=TURN/UDP cargo bench -p benches --bench ice_tcp_cost   # one path, to profile
//! ```
//!
//! The clients run on the bench's main thread, so their CPU is not counted; only threads named
//! `shard-*`, `ice-tcp*` and `turn-*` are, and coturn's process.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a failed unwrap is a failed run

use std::time::{Duration, Instant};

use integration_tests::client::str0m_extensions;
use integration_tests::media::{OpusStream, Vp8Stream};
use integration_tests::room::produce_params;
use integration_tests::wire::{LiveMedia, Peer, pump_all};
use router::Router;
use router::config::Config;
use schema::RouterCommand;
use schema::api::{ConnectParams, ConsumeParams, ConsumerInfo, IceProtocol, MediaKind, TransportInfo};
use schema::ids::ProducerId;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn call<T: serde::de::DeserializeOwned>(router: &Router, cmd: RouterCommand) -> T {
    serde_json::from_value(router.call(cmd).expect("command succeeds")).expect("reply parses")
}

/// CPU time of this process's threads whose name starts with one of `prefixes`.
fn threads_cpu(prefixes: &[&str]) -> Duration {
    let tick = 1e9 / unsafe_clk_tck();
    let mut ns = 0.0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !prefixes.iter().any(|p| comm.trim_end().starts_with(p)) {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the ")" that ends the command: state is field 3, utime 14, stime 15.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let f: Vec<&str> = rest.split_whitespace().collect();
        let (u, s): (f64, f64) = (f[11].parse().unwrap_or(0.0), f[12].parse().unwrap_or(0.0));
        ns += (u + s) * tick;
    }
    Duration::from_nanos(ns as u64)
}

/// CPU time of a whole process.
fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    Duration::from_nanos((ticks * 1e9 / unsafe_clk_tck()) as u64)
}

/// How the subscribers reach the router.
#[derive(Debug, Clone, Copy)]
enum Path {
    Udp,
    IceTcp,
    /// Through the router's TURN, over UDP, TCP or TLS.
    RouterTurn(&'static str),
    /// Through coturn at this address, its pid and shared secret.
    Turn(std::net::SocketAddr, u32, &'static str),
}

/// coturn on 127.0.0.1 with a shared secret, relaying to loopback peers (the router).
struct Coturn {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

const TURN_SECRET: &str = "bench-secret";

impl Coturn {
    fn start() -> Option<Coturn> {
        let bin = std::path::Path::new("/usr/bin/turnserver");
        if !bin.exists() {
            return None;
        }
        let port = std::net::UdpSocket::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let child = std::process::Command::new(bin)
            .args(["-n", "--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1", "--listening-port"])
            .arg(port.to_string())
            .args(["--use-auth-secret", "--static-auth-secret", TURN_SECRET, "--realm", "bench"])
            .args(["--no-tls", "--no-dtls", "--no-cli", "--allow-loopback-peers", "--min-port", "52000"])
            .args(["--max-port", "52999", "--log-file", "stdout", "--simple-log", "--no-stdout-log"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        // Ready when it answers a request (an unauthenticated Allocate gets a 401).
        std::thread::sleep(Duration::from_millis(500));
        Some(Coturn { child, addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)) })
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unsafe_clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// Datagrams the shard sent: over UDP, over its ICE-TCP connections and to TURN clients.
fn sent(router: &Router) -> u64 {
    let c: serde_json::Value = call(router, RouterCommand::Counters { shard: Some(0) });
    let turn = router.turn().map_or(0, |t| t.stats().tx_datagrams);
    c["shell"]["io"]["tx_datagrams"].as_u64().unwrap_or(0) + c["ice_tcp"]["tx_datagrams"].as_u64().unwrap_or(0) + turn
}

/// A router config with TURN over TCP and TLS (a self-signed certificate in `dir`).
fn turn_config(dir: &std::path::Path) -> Config {
    let files = integration_tests::turn::TurnFiles::write(dir, TURN_SECRET).expect("TURN's files written");
    Config {
        turn_udp_listen: Some("127.0.0.1:0".parse().unwrap()),
        turn_listen: Some("127.0.0.1:0".parse().unwrap()),
        turn_tls_listen: Some("127.0.0.1:0".parse().unwrap()),
        turn_cert: Some(files.cert),
        turn_key: Some(files.key),
        turn_secret_file: Some(files.secret),
        ..Config::default()
    }
}

struct Run {
    /// The router's CPU and, for TURN, the relay's (0 otherwise).
    router_cpu: Duration,
    relay_cpu: Duration,
    datagrams: u64,
}

fn run(path: Path, subscribers: usize, seconds: u64) -> Run {
    let dir = std::env::temp_dir().join(format!("ice-tcp-cost-{}", std::process::id()));
    let base = if matches!(path, Path::RouterTurn(_)) { turn_config(&dir) } else { Config::default() };
    let cfg = Config { shards: 1, base_port: 0, pin: false, ..base };
    let mut router = Router::start(&cfg).expect("router starts");
    let publisher: TransportInfo = call(&router, RouterCommand::CreateTransport { shard: None });
    let mut infos = vec![publisher.clone()];
    let mut peers = vec![Peer::udp()];
    for _ in 0..subscribers {
        let info: TransportInfo = call(&router, RouterCommand::CreateTransport { shard: None });
        let candidate = |p| info.candidates.iter().find(|c| c.protocol == p).unwrap().addr;
        peers.push(match path {
            Path::Udp => Peer::udp(),
            Path::IceTcp => Peer::tcp(candidate(IceProtocol::Tcp)),
            Path::RouterTurn(over) => {
                let turn = router.turn().expect("TURN runs");
                let (user, password) =
                    integration_tests::turn::rest_credential(TURN_SECRET, "bench", Duration::from_secs(3600));
                let router_addr = candidate(IceProtocol::Udp);
                match over {
                    "UDP" => Peer::relayed(turn.udp.unwrap(), &user, &password, router_addr),
                    "TCP" => Peer::relayed_over_stream(turn.tcp.unwrap(), false, &user, &password, router_addr),
                    _ => Peer::relayed_over_stream(turn.tls.unwrap(), true, &user, &password, router_addr),
                }
            }
            Path::Turn(server, _, secret) => {
                let (user, password) =
                    integration_tests::turn::rest_credential(secret, "bench", Duration::from_secs(3600));
                Peer::relayed(server, &user, &password, candidate(IceProtocol::Udp))
            }
        });
        infos.push(info);
    }
    for (p, info) in peers.iter_mut().zip(&infos) {
        let params: ConnectParams = p.client.connect_to(info);
        let _: serde_json::Value = call(&router, RouterCommand::ConnectTransport { transport: info.id, params });
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !peers.iter().all(|p| p.client.connected) {
        assert!(Instant::now() < deadline, "ICE/DTLS did not complete");
        pump_all(&mut peers, Duration::from_millis(10));
    }
    let audio_pub = peers[0].client.publish("a0", MediaKind::Audio);
    let video_pub = peers[0].client.publish("v0", MediaKind::Video);
    let produce = |kind, p| RouterCommand::Produce { transport: publisher.id, params: produce_params(kind, p) };
    let audio: ProducerId = call(&router, produce(MediaKind::Audio, &audio_pub));
    let video: ProducerId = call(&router, produce(MediaKind::Video, &video_pub));
    for (i, info) in infos.iter().enumerate().skip(1) {
        let consume = |producer, rtx| RouterCommand::Consume {
            transport: info.id,
            params: ConsumeParams {
                producer,
                payload_type: None,
                rtx_payload_type: rtx,
                mid: None,
                extensions: str0m_extensions(),
                paused: false,
                preferred_layer: None,
            },
        };
        let (_, vrtx) = peers[i].client.payload_types(MediaKind::Video);
        let a: ConsumerInfo = call(&router, consume(audio, None));
        let v: ConsumerInfo = call(&router, consume(video, vrtx));
        peers[i].client.subscribe("a0", &a);
        peers[i].client.subscribe("v0", &v);
    }

    // About 1 Mbit/s of video: 120 packets a second of 1,100 bytes, each forwarded to every
    // subscriber.
    let mut vp8 = Vp8Stream::new(200, 9000);
    vp8.packets_per_frame = 4;
    vp8.payload_size = 1100;
    let threads: &[&str] = &["shard-", "ice-tcp", "turn-"];
    // The relay's CPU counts too: each datagram to a relayed subscriber crosses it.
    let relay = match path {
        Path::Turn(_, pid, _) => Some(pid),
        _ => None,
    };
    let cpu = || (threads_cpu(threads), relay.map(process_cpu).unwrap_or_default());
    // A second of warm-up (keyframes, feedback), then the measured stretch.
    let start = Instant::now();
    let mut media = LiveMedia::new(OpusStream::new(100, 4800), vp8, start);
    let mut measured: Option<(Instant, (Duration, Duration), u64)> = None;
    while Instant::now() < start + Duration::from_secs(seconds + 1) {
        let now = Instant::now();
        if measured.is_none() && now >= start + Duration::from_secs(1) {
            measured = Some((now, cpu(), sent(&router)));
        }
        media.send_due(&mut peers[0].client, &audio_pub, &video_pub, now);
        pump_all(&mut peers, Duration::from_millis(1));
    }
    let (_, cpu0, sent0) = measured.expect("the run lasted past its warm-up");
    let (router_cpu, relay_cpu) = cpu();
    let result =
        Run { router_cpu: router_cpu - cpu0.0, relay_cpu: relay_cpu - cpu0.1, datagrams: sent(&router) - sent0 };
    router.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn main() {
    let subscribers = env("ICE_TCP_SUBSCRIBERS", 20) as usize;
    let seconds = env("ICE_TCP_SECONDS", 10);
    let coturn = Coturn::start();
    let mut paths = vec![
        ("UDP", Path::Udp),
        ("ICE-TCP", Path::IceTcp),
        ("TURN/TLS (router)", Path::RouterTurn("TLS")),
        ("TURN/TCP (router)", Path::RouterTurn("TCP")),
        ("TURN/UDP (router)", Path::RouterTurn("UDP")),
    ];
    match &coturn {
        Some(c) => paths.push(("TURN/UDP (coturn)", Path::Turn(c.addr, c.child.id(), TURN_SECRET))),
        None => println!("TURN: /usr/bin/turnserver is not installed (apt-get install coturn); not measured"),
    }
    // ICE_TCP_PATHS=TURN/UDP (a substring of the names, comma-separated) runs only those, to
    // profile one; the ratios then need UDP among them.
    if let Ok(only) = std::env::var("ICE_TCP_PATHS") {
        paths.retain(|(name, _)| only.split(',').any(|o| name.contains(o)));
    }
    let mut udp = None;
    for (name, path) in paths {
        let r = run(path, subscribers, seconds);
        let per = |d: Duration| d.as_secs_f64() * 1e6 / r.datagrams.max(1) as f64;
        let us = per(r.router_cpu + r.relay_cpu);
        let relay = if matches!(path, Path::Turn(..)) {
            format!(" + coturn CPU {:.3} s ({:.2} µs per datagram)", r.relay_cpu.as_secs_f64(), per(r.relay_cpu))
        } else {
            String::new()
        };
        println!(
            "{name}: {subscribers} subscribers, {} datagrams sent in {seconds} s, router CPU {:.3} s ({:.2} µs per datagram){relay}: {us:.2} CPU-µs per datagram",
            r.datagrams,
            r.router_cpu.as_secs_f64(),
            per(r.router_cpu),
        );
        match udp {
            None => udp = Some(us),
            Some(base) => println!("{name} / UDP per datagram: {:.2}x (target: at most 1.5x)", us / base),
        }
    }
}

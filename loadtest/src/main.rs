//! `loadtest`: the command line. Flags follow LiveKit's `lk load-test`; presets mirror its
//! published runs, scaled to the machine. See docs/loadtest.md.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};

use loadtest::layer_drop::DropSchedule;
use loadtest::layout::Layout;
use loadtest::peer::{self, Live, PeerPlan};
use loadtest::report::{self, Settings, TimePoint, Totals};
use loadtest::signal::{Api, tls_config};
use loadtest::{Clock, Error, chart};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Preset {
    /// 10 audio publishers, the rest audio-only listeners (LiveKit's "audio only" run).
    Audio,
    /// Everyone publishes audio and video and sees everyone (N × N).
    Meeting,
    /// One video publisher, everyone else watches (1 → N).
    Livestream,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Resolution {
    Low,
    Medium,
    High,
}

#[derive(Debug, Parser)]
#[command(about = "Load-test a running platform with simulated publishers and subscribers (docs/loadtest.md)")]
struct Args {
    /// A preset; the count flags below override its numbers.
    #[arg(long, value_enum)]
    preset: Option<Preset>,
    #[arg(long)]
    rooms: Option<u32>,
    /// Publishers of audio and video, per room.
    #[arg(long)]
    video_publishers: Option<u32>,
    /// Publishers of audio only, per room.
    #[arg(long)]
    audio_publishers: Option<u32>,
    /// Peers that only subscribe, per room.
    #[arg(long)]
    subscribers: Option<u32>,
    /// Media time after the last peer started (e.g. 30s, 2m).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,
    /// Publish video as q/h/f simulcast (the default template's layers).
    #[arg(long, overrides_with = "no_simulcast")]
    simulcast: bool,
    #[arg(long)]
    no_simulcast: bool,
    /// The single layer sent without simulcast.
    #[arg(long, value_enum, default_value = "high")]
    video_resolution: Resolution,
    /// Peers receive no media: their subscribe sockets drop RTP and RTCP in the kernel after
    /// ICE and DTLS, so the generator's CPU goes to publishing only and the router can be driven
    /// to its limit. Receive-side figures (loss, latency, freezes) are then not measured; the
    /// router's counters are (scripts/bench.sh uses this).
    #[arg(long)]
    sink: bool,
    /// The subscribers' screen, as LiveKit's flag: `speaker` (1 video high, 5 low), `3x3` (9
    /// medium), `4x4` (16 low), `5x5` (25 low), or `all` (every video, the router picks the
    /// layer). Videos past the tiles are not received; audio always is.
    #[arg(long, default_value = "all")]
    layout: Layout,
    /// Every simulcast video publisher stops its h and f layers for this long (only q frames;
    /// h and f carry empty padding packets, and ignore keyframe requests), then sends all
    /// layers for this long (each resumed layer starting on a keyframe), and so on, as Chromium
    /// under CPU or bandwidth limits; publishers are staggered (e.g. 3s).
    #[arg(long, value_parser = parse_duration)]
    drop_layers: Option<Duration>,
    /// Peers started per second.
    #[arg(long, default_value_t = 10.0)]
    num_per_second: f64,
    /// Threads of the load generator (its CPU limit).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// control's REST API.
    #[arg(long, default_value = "https://localhost:8443")]
    api_url: String,
    /// signaling's `/init` origin.
    #[arg(long, default_value = "https://localhost:8444")]
    init_url: String,
    /// The platform's data directory (credentials.json and tls/cert.pem).
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    #[arg(long, default_value = "host")]
    publisher_role: String,
    #[arg(long, default_value = "guest")]
    subscriber_role: String,
    /// Server processes whose CPU is watched (default: processes named router and signaling).
    #[arg(long)]
    server_pid: Vec<u32>,
    /// The router's control socket, whose counters are read over the steady window
    /// (default: <data-dir>/router.sock).
    #[arg(long)]
    router_socket: Option<PathBuf>,
    /// Where the JSON report goes.
    #[arg(long, default_value = "loadtest-report.json")]
    json: PathBuf,
    /// Where the SVG chart goes.
    #[arg(long, default_value = "loadtest-chart.svg")]
    chart: PathBuf,
    /// Subscriber rows printed (all are in the JSON).
    #[arg(long, default_value_t = 20)]
    max_rows: usize,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = s.find(|c: char| !c.is_ascii_digit() && c != '.').map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = n.parse().map_err(|_| format!("{s}: not a duration (e.g. 30s, 2m)"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60.0,
        "ms" => n / 1000.0,
        _ => return Err(format!("{s}: unit must be ms, s or m")),
    };
    if !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("{s}: out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn main() {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads.max(1)).enable_all().build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadtest: runtime: {e}");
            std::process::exit(2);
        }
    };
    match rt.block_on(run(args)) {
        Ok(failed) => std::process::exit(if failed { 1 } else { 0 }),
        Err(e) => {
            eprintln!("loadtest: {e}");
            std::process::exit(2);
        }
    }
}

/// Runs the test; true if any peer failed.
async fn run(args: Args) -> Result<bool, Error> {
    let (mut rooms, mut video, mut audio, mut subs) = match args.preset {
        Some(Preset::Audio) => (1, 0, 10, 200),
        Some(Preset::Meeting) => (1, 10, 0, 0),
        Some(Preset::Livestream) => (1, 1, 0, 200),
        None => (1, 1, 0, 10),
    };
    rooms = args.rooms.unwrap_or(rooms);
    video = args.video_publishers.unwrap_or(video);
    audio = args.audio_publishers.unwrap_or(audio);
    subs = args.subscribers.unwrap_or(subs);
    let simulcast = !args.no_simulcast;
    let resolution = match args.video_resolution {
        Resolution::Low => 0,
        Resolution::Medium => 1,
        Resolution::High => 2,
    };
    if rooms == 0 || video + audio + subs == 0 {
        return Err(Error::Setup("nothing to run: give rooms and peers".into()));
    }
    if args.num_per_second.is_nan() || args.num_per_second <= 0.0 {
        return Err(Error::Setup("--num-per-second must be positive".into()));
    }
    if let Some(d) = args.drop_layers {
        if !simulcast {
            return Err(Error::Setup("--drop-layers stops simulcast layers: not with --no-simulcast".into()));
        }
        if d.is_zero() {
            return Err(Error::Setup("--drop-layers must be a positive period".into()));
        }
    }
    let tls = tls_config(Some(&args.data_dir.join("tls/cert.pem")))?;
    let api = Api::from_credentials(&args.api_url, &args.data_dir.join("credentials.json"), tls.clone())?;
    let epoch = Instant::now();
    let clock = Clock::new(epoch);
    let live = Arc::new(Live::default());
    let per_room = video + audio + subs;
    let total = rooms * per_room;
    let ramp = Duration::from_secs_f64(f64::from(total) / args.num_per_second);
    // Every peer's media stops at the same moment: `duration` after the last one started.
    let until = epoch + ramp + args.duration;
    let stamp = clock.now_us() ^ std::process::id() as u64;
    let mut room_ids = Vec::new();
    for r in 0..rooms {
        room_ids.push(api.room(&format!("loadtest-{stamp:x}-{r}")).await?);
    }
    let pids = if args.server_pid.is_empty() {
        find_pids(&["router", "signaling"], &args.data_dir)
    } else {
        args.server_pid.clone()
    };
    eprintln!(
        "loadtest: {rooms} room(s) × ({video} video + {audio} audio publishers, {subs} subscribers), {:.0} s media, simulcast {simulcast}, layout {}{}, watching server pids {pids:?}",
        args.duration.as_secs_f64(),
        args.layout,
        args.drop_layers.map_or(String::new(), |d| format!(", upper layers dropped every {:.1} s", d.as_secs_f64()))
    );

    // The sampler: one point a second, and the progress line.
    let sampler = {
        let live = live.clone();
        let pids = pids.clone();
        tokio::spawn(async move {
            let mut series = Vec::new();
            let mut last = (Instant::now(), 0u64, 0u64, 0u64, 0u64, 0u64, self_cpu(), server_cpu(&pids));
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            while Instant::now() < until + Duration::from_millis(500) {
                tick.tick().await;
                let now = Instant::now();
                let (sent, recv, bytes) = (
                    live.sent_packets.load(Ordering::Relaxed),
                    live.recv_packets.load(Ordering::Relaxed),
                    live.recv_bytes.load(Ordering::Relaxed),
                );
                let (lsum, lcount) =
                    (live.latency_sum_us.load(Ordering::Relaxed), live.latency_count.load(Ordering::Relaxed));
                let (cpu, scpu) = (self_cpu(), server_cpu(&pids));
                let dt = now.duration_since(last.0).as_secs_f64().max(1e-3);
                let p = TimePoint {
                    t_s: now.duration_since(epoch).as_secs_f64(),
                    joined: live.joined.load(Ordering::Relaxed),
                    sent_pps: (sent - last.1) as f64 / dt,
                    recv_pps: (recv - last.2) as f64 / dt,
                    recv_mbps: (bytes - last.3) as f64 * 8.0 / dt / 1e6,
                    latency_ms: if lcount > last.5 {
                        (lsum - last.4) as f64 / (lcount - last.5) as f64 / 1000.0
                    } else {
                        0.0
                    },
                    generator_cpu: (cpu - last.6) / dt,
                    // A watched process that exited takes its time with it: never below zero.
                    server_cpu: ((scpu - last.7) / dt).max(0.0),
                };
                eprint!(
                    "\r[{:>5.0}s] joined {}/{} failed {} | sent {:>7.0} pkt/s | recv {:>8.0} pkt/s {:>7.1} Mbit/s | latency {:>6.2} ms | CPU gen {:.2} srv {:.2}   ",
                    p.t_s,
                    p.joined,
                    total,
                    live.failed.load(Ordering::Relaxed),
                    p.sent_pps,
                    p.recv_pps,
                    p.recv_mbps,
                    p.latency_ms,
                    p.generator_cpu,
                    p.server_cpu
                );
                last = (now, sent, recv, bytes, lsum, lcount, cpu, scpu);
                series.push(p);
            }
            eprintln!();
            series
        })
    };

    // Signaling's join histogram before any peer joins: the run's joins are the difference.
    let joins_before =
        api.metrics().await.map_err(|e| eprintln!("loadtest: GET /metrics (join times left out): {e}")).ok();
    let mut handles = Vec::new();
    let mut next_start = Instant::now();
    let gap = Duration::from_secs_f64(1.0 / args.num_per_second);
    for (r, room_id) in room_ids.iter().enumerate() {
        for i in 0..per_room {
            tokio::time::sleep_until(next_start.into()).await;
            next_start += gap;
            let index = r as u32 * per_room + i;
            let (role, a, v) = if i < video {
                (&args.publisher_role, true, true)
            } else if i < video + audio {
                (&args.publisher_role, true, false)
            } else {
                (&args.subscriber_role, false, false)
            };
            let plan = PeerPlan {
                index,
                room_id: room_id.clone(),
                role: role.clone(),
                audio: a,
                video: v,
                simulcast,
                resolution,
                until,
                sink: args.sink,
                layout: args.layout,
                // Video publishers are the room's first `video` peers: `i` is their place.
                drop_layers: args.drop_layers.filter(|_| v).map(|d| DropSchedule::new(d, i, video)),
            };
            handles.push(tokio::spawn(peer::run(
                plan,
                api.clone(),
                args.init_url.clone(),
                tls.clone(),
                clock,
                live.clone(),
            )));
        }
    }
    // The steady window: every peer started (joins may still be finishing) until the end.
    let socket = args.router_socket.clone().unwrap_or_else(|| args.data_dir.join("router.sock"));
    let router_pid = find_pids(&["router"], &args.data_dir).first().copied();
    let window = {
        let socket = socket.clone();
        let metrics_api = api.clone();
        tokio::spawn(async move {
            let start = epoch + ramp + Duration::from_secs(2).min(args.duration / 4);
            tokio::time::sleep_until(start.into()).await;
            let t0 = Instant::now();
            let c0 = router_pid.map(|p| server_cpu(&[p]));
            let s = socket.clone();
            let lat0 = metrics_api.metrics().await.map_err(|e| eprintln!("\nloadtest: GET /metrics: {e}")).ok();
            let before = tokio::task::spawn_blocking(move || loadtest::scrape::read(&s)).await.ok().flatten()?;
            tokio::time::sleep_until((until - Duration::from_millis(200)).max(t0).into()).await;
            let after = tokio::task::spawn_blocking(move || loadtest::scrape::read(&socket)).await.ok().flatten()?;
            let lat1 = metrics_api.metrics().await.ok();
            let latency = lat0.zip(lat1).map(|(a, b)| {
                let name = "router_latency_seconds";
                loadtest::prom::delta(&loadtest::prom::histogram(&a, name), &loadtest::prom::histogram(&b, name))
            });
            let q = |q: f64| latency.as_ref().and_then(|h| loadtest::prom::quantile(h, q)).map(|s| s * 1e6);
            let secs = t0.elapsed().as_secs_f64().max(1e-3);
            let c1 = router_pid.map(|p| server_cpu(&[p]));
            let d = loadtest::scrape::delta(&before.counters, &after.counters);
            let get = |k: &str| d.get(k).copied().unwrap_or(0) as f64;
            let cpu = c0.zip(c1).map(|(a, b)| (b - a).max(0.0));
            let shard_cpu = d.get(loadtest::scrape::SHARD_CPU_NS).map(|&ns| ns as f64 / 1e9);
            Some(report::ServerWindow {
                seconds: secs,
                forwarded_per_s: get("forwarded") / secs,
                datagrams_in_per_s: get("datagrams_in") / secs,
                datagrams_out_per_s: get("datagrams_out") / secs,
                drops: after.drops_in(&d),
                router_cpu_us_per_forwarded: cpu.filter(|_| get("forwarded") > 0.0).map(|c| c * 1e6 / get("forwarded")),
                router_cpu_cores: cpu.map(|c| c / secs),
                shard_cpu_us_per_forwarded: shard_cpu
                    .filter(|_| get("forwarded") > 0.0)
                    .map(|c| c * 1e6 / get("forwarded")),
                shard_cpu_cores: shard_cpu.map(|c| c / secs),
                forwarded_per_shard_cpu_second: shard_cpu.filter(|&c| c > 0.0).map(|c| get("forwarded") / c),
                router_latency_p50_us: q(0.5),
                router_latency_p99_us: q(0.99),
                counters: d,
            })
        })
    };
    let cpu_start = self_cpu();
    let server_start = server_cpu(&pids);
    let t_start = Instant::now();
    let mut peers = Vec::new();
    for (i, h) in handles.into_iter().enumerate() {
        // A peer stops at `until` by itself; the margin covers leaving. One that hangs anyway is
        // reported, and the run still ends.
        match tokio::time::timeout_at((until + Duration::from_secs(10)).into(), h).await {
            Ok(Ok(r)) => peers.push(r),
            Ok(Err(e)) => eprintln!("\nloadtest: peer {i} panicked: {e}"),
            Err(_) => eprintln!("\nloadtest: peer {i} did not finish"),
        }
    }
    // Both tasks end near `until`: the CPU shares below are over the whole run even when
    // every peer failed at once.
    let series = sampler.await.unwrap_or_default();
    let server = window.await.ok().flatten();
    let wall = t_start.elapsed().as_secs_f64().max(1e-3);
    let generator_cpu = (self_cpu() - cpu_start) / wall;
    let server_cores = ((server_cpu(&pids) - server_start) / wall).max(0.0);
    let ticks = live.ticks.load(Ordering::Relaxed).max(1);
    let late = 100.0 * live.late_ticks.load(Ordering::Relaxed) as f64 / ticks as f64;
    let server_join = joins_before.zip(api.metrics().await.ok()).and_then(|(a, b)| {
        let name = "signaling_join_seconds";
        report::Quantiles::of(&loadtest::prom::delta(
            &loadtest::prom::histogram(&a, name),
            &loadtest::prom::histogram(&b, name),
        ))
    });
    let totals = Totals {
        generator_cpu_cores: generator_cpu,
        server_cpu_cores: server_cores,
        late_tick_percent: late,
        generator_limited: generator_cpu > 0.9 * args.threads as f64 || late > 5.0,
        server_join,
        ..Totals::default()
    };
    let settings = Settings {
        rooms,
        video_publishers: video,
        audio_publishers: audio,
        subscribers: subs,
        duration_s: args.duration.as_secs_f64(),
        simulcast,
        video_resolution: format!("{:?}", args.video_resolution).to_lowercase(),
        num_per_second: args.num_per_second,
        threads: args.threads,
        sink: args.sink,
        layout: args.layout.name(),
        drop_layers_s: args.drop_layers.map(|d| d.as_secs_f64()),
    };
    let media_s = (ramp + args.duration).as_secs_f64();
    let report = report::build(settings, peers, series, server, media_s, totals);
    print!("{}", report::tables(&report, args.max_rows));
    let json = serde_json::to_string_pretty(&report).map_err(|e| Error::Setup(format!("JSON: {e}")))?;
    std::fs::write(&args.json, json)?;
    let title = format!("loadtest: {rooms} room(s), {video} video + {audio} audio publishers, {subs} subscribers");
    std::fs::write(&args.chart, chart::svg(&report.series, &title))?;
    println!("JSON report: {}  chart: {}", args.json.display(), args.chart.display());
    Ok(report.totals.failed > 0)
}

/// CPU time of this process, seconds.
fn self_cpu() -> f64 {
    // SAFETY: getrusage fills the struct it is given; zeroed is a valid rusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a live rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU time of the watched processes (all their threads), seconds.
fn server_cpu(pids: &[u32]) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|s| {
            // Fields after the command name (which may hold spaces) ; utime and stime are 14 and 15.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / hz)
        })
        .sum()
}

/// The platform's processes: named one of `names`, with a path inside the data directory in
/// their command line (control passes it to both), so another platform on the machine is not
/// counted. A relative path is resolved against the process's working directory: control
/// started with its default `--data-dir data` passes `data/router.sock`.
fn find_pids(names: &[&str], data_dir: &std::path::Path) -> Vec<u32> {
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let Ok(procs) = std::fs::read_dir("/proc") else { return Vec::new() };
    procs
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| names.contains(&c.trim())))
        .filter(|pid| {
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
            cmdline.split(|b| *b == 0).filter_map(|a| std::str::from_utf8(a).ok()).any(|arg| {
                let path = std::path::Path::new(arg);
                let full = match &cwd {
                    Some(cwd) if path.is_relative() => cwd.join(path),
                    _ => path.to_path_buf(),
                };
                std::fs::canonicalize(full).is_ok_and(|f| f.starts_with(&dir))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shell copied under the name `router`, left waiting in `cwd` (in its own `read`, so it
    /// starts no child) with `arg` on its command line.
    fn fake_router(bin: &std::path::Path, cwd: &std::path::Path, arg: &str) -> std::process::Child {
        use std::process::Stdio;
        std::process::Command::new(bin)
            .args(["-c", "read line", arg])
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    #[test]
    fn platform_processes_are_found_by_relative_or_absolute_data_paths_and_others_are_not() {
        let tmp = std::env::temp_dir().join(format!("loadtest-pids-{}", std::process::id()));
        let (data, other) = (tmp.join("data"), tmp.join("other"));
        std::fs::create_dir_all(&data).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(data.join("router.sock"), "").unwrap();
        std::fs::write(other.join("router.sock"), "").unwrap();
        let bin = tmp.join("router");
        std::fs::copy("/bin/sh", &bin).unwrap();
        let mut relative = fake_router(&bin, &tmp, "data/router.sock");
        let mut absolute = fake_router(&bin, &other, data.join("router.sock").to_str().unwrap());
        let mut elsewhere = fake_router(&bin, &tmp, "other/router.sock");
        // comm is set at exec: wait until all three are there.
        let mut found = Vec::new();
        for _ in 0..100 {
            found = find_pids(&["router"], &data);
            if found.len() >= 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        found.sort();
        let mut want = vec![relative.id(), absolute.id()];
        want.sort();
        for c in [&mut relative, &mut absolute, &mut elsewhere] {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&tmp);
        assert_eq!(found, want, "the platform's two, not the other data directory's");
    }
}

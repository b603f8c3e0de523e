//! This machine's ceiling for the router's job: the cost of the work no SFU can avoid, measured
//! with the router's own I/O backend, so `scripts/bench.sh` can state the router's speed as a
//! ratio to it (docs/performance.md).
//!
//! The loop does what forwarding must do and nothing else. It receives SRTP datagrams from a
//! feeder, decrypts each in place, and for each of `fanout` sinks writes the packet with that
//! sink's header into a send slot, encrypts it there with that sink's own SRTP context and
//! queues it. The whole receive batch is then flushed at once, as the router's shard does. No
//! parsing, no routing, no statistics, no retransmission cache: what the router spends beyond
//! this loop per forwarded packet is the router's own overhead.
//!
//! The sinks are UDP sockets whose kernel filter discards RTP and RTCP
//! ([`crate::io::drop_media_datagrams`]), the same sinks `loadtest --sink-subscribers` uses, so
//! the kernel's delivery work per datagram is the same in both measurements. The feeder runs on
//! its own thread (pin it to another core), so its cost is not counted; the loop's CPU time is
//! the calling thread's, read from `CLOCK_THREAD_CPUTIME_ID`.
//!
//! ```no_run
//! use router::ceiling::{CeilingConfig, run};
//! let report = run(&CeilingConfig { fanout: 100, ..CeilingConfig::default() })?;
//! println!("{:.0} forwarded packets per CPU-second", report.forwarded_per_cpu_second);
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use router_engine::srtp::{SrtpProfile, SrtpSession};
use serde::Serialize;

use crate::io::{BackendChoice, IoOptions, UdpIo, drop_media_datagrams, pin_current_thread};
use crate::metrics::thread_cpu_time;

/// RTP header the loop writes per sink: version 2, no extensions, 12 bytes.
const RTP_HEADER: usize = 12;
/// Time the loop runs before measuring, so buffers, caches and the feeder settle.
const WARMUP: Duration = Duration::from_millis(500);
/// Packets the feeder keeps in flight ahead of the loop when unpaced. Flooding instead (as fast
/// as the feeder can) overflows the kernel's per-core backlog (`netdev_max_backlog`, 1000) and
/// pushes delivery into `ksoftirqd`, which then starves the loop of input: a run measured
/// 346 packets received in 3 s that way.
const FEED_WINDOW: u64 = 256;

/// What to measure.
#[derive(Debug, Clone)]
pub struct CeilingConfig {
    pub backend: BackendChoice,
    /// Sinks each received packet is sent to.
    pub fanout: usize,
    /// Length of the measured window (after a 0.5 s warm-up).
    pub duration: Duration,
    /// RTP packet length before encryption (header included).
    pub packet_len: usize,
    pub profile: SrtpProfile,
    /// Core the loop (the calling thread) is pinned to.
    pub core: Option<usize>,
    /// Core the feeder thread is pinned to.
    pub feeder_core: Option<usize>,
    /// Packets per second the feeder sends; 0 keeps the loop saturated (a window of packets in
    /// flight ahead of it) and the report is its ceiling.
    pub input_rate: u64,
    /// [`IoOptions::send_budget`], as the router's `send_budget`.
    pub send_budget: usize,
}

impl Default for CeilingConfig {
    fn default() -> Self {
        CeilingConfig {
            backend: BackendChoice::Auto,
            fanout: 10,
            duration: Duration::from_secs(5),
            packet_len: 1200,
            // What the router negotiates with Chromium and str0m (dimpl picks it first).
            profile: SrtpProfile::AeadAes256Gcm,
            core: None,
            feeder_core: None,
            input_rate: 0,
            send_budget: IoOptions::default().send_budget,
        }
    }
}

/// What one measurement found (the window only).
#[derive(Debug, Clone, Serialize)]
pub struct CeilingReport {
    pub backend: &'static str,
    pub profile: String,
    pub fanout: usize,
    pub packet_len: usize,
    pub wall_seconds: f64,
    pub cpu_seconds: f64,
    /// Datagrams received and decrypted.
    pub received: u64,
    /// Datagrams encrypted and handed to the kernel.
    pub forwarded: u64,
    /// Sends the backend counted as failed (a full buffer, a refused commit).
    pub tx_errors: u64,
    pub forwarded_per_cpu_second: f64,
    pub cpu_us_per_forwarded: f64,
    /// Share of the window the loop was on a CPU: near 1 when saturated.
    pub busy: f64,
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

fn session(profile: SrtpProfile) -> io::Result<SrtpSession> {
    let key: Vec<u8> = (0..profile.master_key_len() as u8).collect();
    let salt: Vec<u8> = (0..profile.master_salt_len() as u8).map(|i| i.wrapping_mul(7)).collect();
    SrtpSession::new(profile, &key, &salt).map_err(other)
}

/// Runs the loop on the calling thread for the warm-up and the window, then stops the feeder.
pub fn run(cfg: &CeilingConfig) -> io::Result<CeilingReport> {
    if cfg.fanout == 0 || cfg.packet_len < RTP_HEADER || cfg.packet_len + cfg.profile.rtp_overhead() > 1500 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "fanout must be ≥ 1 and packets 12..1500 bytes"));
    }
    if let Some(core) = cfg.core {
        pin_current_thread(core)?;
    }
    let opts = IoOptions { send_budget: cfg.send_budget, ..IoOptions::default() };
    let mut io = UdpIo::bind("127.0.0.1:0".parse().map_err(other)?, cfg.backend, &opts)?;
    let sinks = (0..cfg.fanout)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0")?;
            drop_media_datagrams(&s)?;
            Ok(s)
        })
        .collect::<io::Result<Vec<_>>>()?;
    let sink_addrs = sinks.iter().map(UdpSocket::local_addr).collect::<io::Result<Vec<SocketAddr>>>()?;
    let mut sink_srtp = (0..cfg.fanout).map(|_| session(cfg.profile)).collect::<io::Result<Vec<_>>>()?;
    let mut sink_seq = vec![0u16; cfg.fanout];
    let mut rx = session(cfg.profile)?;

    let stop = Arc::new(AtomicBool::new(false));
    let taken = Arc::new(AtomicU64::new(0));
    let feeder = {
        let (stop, taken, to, cfg) = (stop.clone(), taken.clone(), io.local_addr(), cfg.clone());
        std::thread::Builder::new().name("ceiling-feeder".into()).spawn(move || feed(&cfg, to, &stop, &taken))?
    };
    let mut taken_total = 0u64;

    let started = Instant::now();
    let mut window: Option<(Instant, Duration, u64)> = None;
    let (mut received, mut forwarded) = (0u64, 0u64);
    let overhead = cfg.profile.rtp_overhead();
    while started.elapsed() < WARMUP + cfg.duration {
        if window.is_none() && started.elapsed() >= WARMUP {
            (received, forwarded) = (0, 0);
            window = Some((Instant::now(), thread_cpu_time(), io.stats().tx_errors));
        }
        taken_total += io.recv(Some(Duration::from_millis(10)), |_, buf, tx| {
            let Ok(n) = rx.unprotect_rtp(buf) else { return };
            received += 1;
            for (i, &dst) in sink_addrs.iter().enumerate() {
                let slot = tx.send_slot();
                if slot.len() < n + overhead {
                    continue;
                }
                slot[..n].copy_from_slice(&buf[..n]);
                sink_seq[i] = sink_seq[i].wrapping_add(1);
                slot[2..4].copy_from_slice(&sink_seq[i].to_be_bytes());
                slot[8..12].copy_from_slice(&(0x5000_0000 + i as u32).to_be_bytes());
                if let Ok(len) = sink_srtp[i].protect_rtp(slot, n) {
                    tx.commit_send(dst, len);
                    forwarded += 1;
                }
            }
        })? as u64;
        taken.store(taken_total, Ordering::Relaxed);
        io.flush()?;
    }
    let (t0, cpu0, err0) = window.unwrap_or((started, Duration::ZERO, 0));
    let cpu_seconds = (thread_cpu_time() - cpu0).as_secs_f64();
    let wall_seconds = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    feeder.join().map_err(|_| other("feeder thread panicked"))??;
    drop(sinks);
    Ok(CeilingReport {
        backend: io.kind().name(),
        profile: format!("{:?}", cfg.profile),
        fanout: cfg.fanout,
        packet_len: cfg.packet_len,
        wall_seconds,
        cpu_seconds,
        received,
        forwarded,
        tx_errors: io.stats().tx_errors - err0,
        forwarded_per_cpu_second: if cpu_seconds > 0.0 { forwarded as f64 / cpu_seconds } else { 0.0 },
        cpu_us_per_forwarded: if forwarded > 0 { cpu_seconds * 1e6 / forwarded as f64 } else { 0.0 },
        busy: if wall_seconds > 0.0 { cpu_seconds / wall_seconds } else { 0.0 },
    })
}

/// Sends encrypted RTP packets with rising sequence numbers to the loop until told to stop,
/// paced in 1 ms steps when a rate is set.
fn feed(cfg: &CeilingConfig, to: SocketAddr, stop: &AtomicBool, taken: &AtomicU64) -> io::Result<()> {
    if let Some(core) = cfg.feeder_core {
        pin_current_thread(core)?;
    }
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(to)?;
    let mut srtp = session(cfg.profile)?;
    let mut plain = vec![0u8; cfg.packet_len];
    plain[0] = 0x80;
    plain[1] = 96;
    plain[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    for (i, b) in plain[RTP_HEADER..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let mut buf = vec![0u8; cfg.packet_len + cfg.profile.rtp_overhead()];
    let started = Instant::now();
    let mut sent = 0u64;
    let mut seq = 0u16;
    while !stop.load(Ordering::Relaxed) {
        if cfg.input_rate > 0 {
            let due = (started.elapsed().as_secs_f64() * cfg.input_rate as f64) as u64;
            if sent >= due {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
        } else if sent >= taken.load(Ordering::Relaxed) + FEED_WINDOW {
            std::thread::yield_now();
            continue;
        }
        seq = seq.wrapping_add(1);
        plain[2..4].copy_from_slice(&seq.to_be_bytes());
        plain[4..8].copy_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
        buf[..plain.len()].copy_from_slice(&plain);
        let len = srtp.protect_rtp(&mut buf, plain.len()).map_err(other)?;
        // A full receive queue drops the datagram, as overload would; the loop reads what it can.
        let _ = socket.send(&buf[..len]);
        sent += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loop_forwards_every_received_packet_to_every_sink() {
        let report = run(&CeilingConfig {
            backend: BackendChoice::Mmsg,
            fanout: 3,
            duration: Duration::from_millis(300),
            input_rate: 2_000,
            ..CeilingConfig::default()
        })
        .expect("ceiling run");
        assert!(report.received > 100, "{report:?}");
        assert_eq!(report.forwarded, 3 * report.received, "{report:?}");
        assert_eq!(report.tx_errors, 0);
        assert!(report.cpu_us_per_forwarded > 0.0);
    }

    #[test]
    fn nonsense_settings_are_refused() {
        let e = run(&CeilingConfig { fanout: 0, ..CeilingConfig::default() }).expect_err("fanout 0");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}

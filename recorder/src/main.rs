//! `recorder`: attaches to the media tap segment, writes per-track files, reports to control
//! on stdout (one JSON [`schema::recording::RecorderEvent`] per line).

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use tracing::{error, info, warn};

use recorder::{Config, Recorder};
use shm_queue::{Consumer, RecvError, Segment};

/// Writes the tracks the router taps to files under a directory.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Inherited fd of the media tap segment (one ring per router shard), made by control.
    #[arg(long)]
    tap_fd: i32,
    /// Where recordings go: `<dir>/<recording_id>/<peer_id>/<track_id>.<part>.<ogg|webm|mp4>`.
    #[arg(long)]
    dir: PathBuf,
    /// Close a part and start the next past this many MiB.
    #[arg(long, default_value_t = 1024)]
    max_part_mib: u64,
    /// ... or past this many seconds.
    #[arg(long, default_value_t = 3600)]
    max_part_seconds: u64,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    // SAFETY: control passes an fd it opened for us and nothing else in this process uses it.
    let segment = match unsafe { Segment::open_raw_fd(args.tap_fd) } {
        Ok(s) => s,
        Err(e) => {
            error!("cannot open the media tap segment (fd {}): {e}", args.tap_fd);
            std::process::exit(1);
        }
    };
    let mut rings = Vec::new();
    for i in 0..segment.rings() {
        match Consumer::attach(&segment, i) {
            Ok(c) => rings.push(c),
            Err(e) => {
                error!(ring = i, "cannot attach to the tap ring: {e}");
                std::process::exit(1);
            }
        }
    }
    info!(rings = rings.len(), dir = %args.dir.display(), "recorder attached to the media tap");
    let mut rec = Recorder::new(Config {
        dir: args.dir,
        max_part_bytes: args.max_part_mib.saturating_mul(1 << 20),
        max_part_ms: args.max_part_seconds.saturating_mul(1000),
    });
    let mut stdout = std::io::stdout().lock();
    let mut last_log = Instant::now();
    while !STOP.load(Ordering::Relaxed) {
        let mut got = 0usize;
        let now = util::unix_ms();
        for ring in rings.iter_mut() {
            // Bounded per ring per pass, so one busy shard cannot starve the others.
            for _ in 0..512 {
                match ring.try_recv_with(|r| rec.handle_record(now, r)) {
                    Ok(Some(())) => got += 1,
                    Ok(None) | Err(RecvError::Timeout) | Err(RecvError::Disconnected) => break,
                    Err(RecvError::Corrupt(why)) => {
                        warn!(why, "tap ring corrupt");
                        break;
                    }
                }
            }
        }
        while let Some(ev) = rec.poll_event() {
            emit(&mut stdout, &ev);
        }
        if got == 0 {
            if rings.len() == 1 {
                // One ring: sleep on its futex instead of polling.
                let r =
                    rings[0].recv_timeout_with(Duration::from_millis(100), |r| rec.handle_record(util::unix_ms(), r));
                if matches!(r, Err(RecvError::Disconnected)) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            } else {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        if last_log.elapsed() >= Duration::from_secs(10) {
            last_log = Instant::now();
            info!(tracks = rec.track_count(), stats = ?rec.stats(), "recorder");
        }
    }
    info!("stopping: closing every file");
    rec.close_all();
    while let Some(ev) = rec.poll_event() {
        emit(&mut stdout, &ev);
    }
}

fn emit(out: &mut impl Write, ev: &schema::recording::RecorderEvent) {
    match serde_json::to_string(ev) {
        Ok(line) => {
            // Control reads these lines; if it is gone there is nobody to tell.
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        Err(e) => warn!(error = %e, "event not serializable"),
    }
}

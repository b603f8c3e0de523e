//! `compositor`: attaches to the compositor's media tap segment, runs the jobs control puts in
//! its jobs directory, reports to control on stdout (one JSON
//! [`schema::compositor::CompositorEvent`] per line).

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use tracing::{error, info, warn};

use compositor::runner::Runner;
use shm_queue::{Consumer, RecvError, Segment};

/// Composites rooms' tracks into recordings and streams, one job per file in a directory.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Inherited fd of the compositor's media tap segment (one ring per router shard), made by
    /// control.
    #[arg(long)]
    tap_fd: i32,
    /// Where control puts the jobs: one `<job_id>.json` each (`schema::compositor::CompositorJob`);
    /// a removed file stops its job.
    #[arg(long)]
    jobs_dir: PathBuf,
}

/// How often the jobs directory is read.
const SCAN_EVERY: Duration = Duration::from_millis(250);

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
            error!("cannot open the compositor's media tap segment (fd {}): {e}", args.tap_fd);
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
    if let Err(e) = std::fs::create_dir_all(&args.jobs_dir) {
        error!(dir = %args.jobs_dir.display(), "cannot create the jobs directory: {e}");
        std::process::exit(1);
    }
    info!(rings = rings.len(), jobs = %args.jobs_dir.display(), "compositor attached to the media tap");
    let mut runner = Runner::new(&args.jobs_dir);
    let mut stdout = std::io::stdout().lock();
    let (mut last_scan, mut last_log) = (Instant::now() - SCAN_EVERY, Instant::now());
    while !STOP.load(Ordering::Relaxed) {
        if last_scan.elapsed() >= SCAN_EVERY {
            last_scan = Instant::now();
            runner.scan();
            runner.check();
        }
        let mut got = 0usize;
        let now = util::unix_ms();
        for ring in rings.iter_mut() {
            // Bounded per ring per pass, so one busy shard cannot starve the others.
            for _ in 0..512 {
                match ring.try_recv_with(|r| runner.handle_record(now, r)) {
                    Ok(Some(())) => got += 1,
                    Ok(None) | Err(RecvError::Timeout) | Err(RecvError::Disconnected) => break,
                    Err(RecvError::Corrupt(why)) => {
                        warn!(why, "tap ring corrupt");
                        break;
                    }
                }
            }
        }
        while let Some(ev) = runner.poll_event() {
            emit(&mut stdout, &ev);
        }
        if got == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
        if last_log.elapsed() >= Duration::from_secs(10) {
            last_log = Instant::now();
            info!(jobs = runner.job_count(), stats = ?runner.stats(), "compositor");
        }
    }
    info!("stopping: closing every job's outputs");
    runner.finish_all();
    while let Some(ev) = runner.poll_event() {
        emit(&mut stdout, &ev);
    }
}

fn emit(out: &mut impl Write, ev: &schema::compositor::CompositorEvent) {
    match serde_json::to_string(ev) {
        Ok(line) => {
            // Control reads these lines; if it is gone there is nobody to tell.
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        Err(e) => warn!(error = %e, "event not serializable"),
    }
}

//! Starts router, signaling, the recorder and the compositor, and keeps them running.
//!
//! Each child has one task: spawn, wait, log how it ended, wait a backoff, spawn again. The
//! backoff starts at 100 ms and doubles up to 5 s, and returns to 100 ms once a child has run for
//! 30 s, so a crash loop costs little and a rare crash restarts at once. On shutdown each child
//! gets SIGTERM, then SIGKILL if it is still there 3 s later.
//!
//! Children inherit control's stderr for their logs; their stdout goes to stderr as well, so
//! control's stdout carries only its own `demo: ...` line. They also inherit the memfd of the
//! router↔signaling link (one fd, the same number for both; the router takes end B with
//! `--link-fd`, signaling end A with `--router-link-fd`). The memfd lives as long as control,
//! so a restarted child attaches to the same segment. Each child is started with
//! `PR_SET_PDEATHSIG`, so it gets SIGTERM if control dies without stopping it.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;
use tracing::{error, info, warn};
use util::LockExt;

use crate::DataDir;
use crate::cli::RunArgs;
use crate::tls::Tls;

/// First restart delay.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Longest restart delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A child that ran this long is considered healthy: its next restart is immediate again.
pub const RESET_AFTER: Duration = Duration::from_secs(30);
/// How long a child has to exit after SIGTERM before it gets SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// What to run for one supervised child.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    pub name: &'static str,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Where the child's stdout lines go (the recorder's reports); `None`: to our stderr.
    pub stdout_lines: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    /// Its CPU priority (nice): 0, or `--compositor-nice` for the compositor, whose jobs may
    /// wait where the router's forwarding may not.
    pub nice: i32,
}

/// The media tap segments' fds (the router writes both; the recorder reads one, the
/// compositor the other) and where the recorder's and the compositor's reports go.
#[derive(Debug)]
pub struct TapSpec<'a> {
    pub fd: &'a OwnedFd,
    pub recorder_lines: tokio::sync::mpsc::UnboundedSender<String>,
    pub compositor_fd: &'a OwnedFd,
    pub compositor_lines: tokio::sync::mpsc::UnboundedSender<String>,
}

/// The command lines of router, signaling, recorder and compositor, and TURN's when it runs
/// (signaling then hands out its URLs).
pub fn child_specs(
    args: &RunArgs,
    dir: &DataDir,
    bin_dir: &Path,
    tls: &Tls,
    link_fd: &OwnedFd,
    tap: TapSpec<'_>,
    turn: Option<crate::turn::Turn>,
) -> Vec<ChildSpec> {
    let fd = link_fd.as_raw_fd().to_string();
    let tap_fd = tap.fd.as_raw_fd().to_string();
    let compositor_tap_fd = tap.compositor_fd.as_raw_fd().to_string();
    let os = |v: &[&dyn AsRef<std::ffi::OsStr>]| v.iter().map(|s| s.as_ref().to_owned()).collect::<Vec<OsString>>();
    let mut router_args = os(&[
        &"--shards",
        &args.router_shards.to_string(),
        &"--backend",
        &args.router_backend.flag(),
        &"--base-port",
        &args.router_port.to_string(),
        &"--listen-ip",
        &args.router_ip.to_string(),
        &"--control-socket",
        &dir.router_socket(),
        &"--link-fd",
        &fd,
        &"--tap-fd",
        &tap_fd,
        &"--compositor-tap-fd",
        &compositor_tap_fd,
    ]);
    for ip in &args.announce_ips {
        router_args.extend(["--announce-ip".into(), ip.to_string().into()]);
    }
    if args.no_ice_tcp {
        router_args.push("--no-ice-tcp".into());
    }
    if let Some(turn) = &turn {
        router_args.extend(turn.router_args.iter().cloned());
    }
    let router =
        ChildSpec { name: "router", program: bin_dir.join("router"), args: router_args, stdout_lines: None, nice: 0 };
    let signaling = ChildSpec {
        name: "signaling",
        program: bin_dir.join("signaling"),
        args: os(&[
            &"--db",
            &dir.db_location(),
            &"--state-dir",
            &dir.signaling_state(),
            &"--listen",
            &args.signaling_listen.to_string(),
            &"--public-url",
            &format!("https://{}:{}", args.public_host, args.signaling_listen.port()),
            &"--cert",
            &tls.cert_path,
            &"--key",
            &tls.key_path,
            &"--router-link-fd",
            &fd,
            &"--admin-socket",
            &dir.signaling_admin_socket(),
            &"--compositor-jobs-dir",
            &dir.compositor_jobs(),
            &"--rate-limit-init",
            &args.rate_limit_init.to_string(),
            &"--rate-limit-websocket",
            &args.rate_limit_websocket.to_string(),
            &"--max-connections-per-ip",
            &args.max_connections_per_ip.to_string(),
            &"--request-timeout-secs",
            &args.request_timeout_secs.to_string(),
        ]),
        stdout_lines: None,
        nice: 0,
    };
    let recorder = ChildSpec {
        name: "recorder",
        program: bin_dir.join("recorder"),
        args: os(&[
            &"--tap-fd",
            &tap_fd,
            &"--dir",
            &dir.recordings(),
            &"--max-part-mib",
            &args.recording_max_part_mib.to_string(),
            &"--max-part-seconds",
            &args.recording_max_part_seconds.to_string(),
        ]),
        stdout_lines: Some(tap.recorder_lines),
        nice: 0,
    };
    let compositor = ChildSpec {
        name: "compositor",
        program: bin_dir.join("compositor"),
        args: os(&[&"--tap-fd", &compositor_tap_fd, &"--jobs-dir", &dir.compositor_jobs()]),
        stdout_lines: Some(tap.compositor_lines),
        nice: args.compositor_nice,
    };
    let mut signaling = signaling;
    let mut specs = vec![router];
    if let Some(turn) = turn {
        for url in &turn.urls {
            signaling.args.extend(["--turn-url".into(), url.into()]);
        }
        signaling.args.extend(["--turn-secret-file".into(), turn.secret_file.into_os_string()]);
    }
    specs.extend([signaling, recorder, compositor]);
    specs
}

/// One child's state as `/api/status` shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChildStatus {
    /// Pid of the running process; `null` between a death and the restart.
    pub pid: Option<u32>,
    /// How many times it was started after the first time.
    pub restarts: u32,
    /// How the last run ended (`exit code 1`, `killed by signal 9`), if one did.
    pub last_exit: Option<String>,
}

/// The state of every child, shared between the supervisors and the HTTP API.
#[derive(Debug, Clone)]
pub struct Status(Arc<Mutex<BTreeMap<&'static str, ChildStatus>>>);

impl Status {
    pub fn new(specs: &[ChildSpec]) -> Status {
        Status(Arc::new(Mutex::new(specs.iter().map(|s| (s.name, ChildStatus::default())).collect())))
    }

    /// A copy of every child's state.
    pub fn snapshot(&self) -> BTreeMap<&'static str, ChildStatus> {
        self.0.lock_unpoisoned().clone()
    }

    fn update(&self, name: &'static str, f: impl FnOnce(&mut ChildStatus)) {
        let mut map = self.0.lock_unpoisoned();
        f(map.entry(name).or_default());
    }
}

/// Runs `spec` until `shutdown` turns true, restarting it whenever it exits.
pub async fn supervise(spec: ChildSpec, status: Status, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = INITIAL_BACKOFF;
    let mut first = true;
    loop {
        if *shutdown.borrow() {
            return;
        }
        if !first {
            status.update(spec.name, |s| s.restarts += 1);
        }
        first = false;
        let started = Instant::now();
        match spawn(&spec) {
            Ok(mut child) => {
                let pid = child.id();
                if let (Some(lines), Some(out)) = (&spec.stdout_lines, child.stdout.take()) {
                    let lines = lines.clone();
                    tokio::spawn(async move {
                        use tokio::io::AsyncBufReadExt;
                        let mut reader = tokio::io::BufReader::new(out).lines();
                        while let Ok(Some(line)) = reader.next_line().await {
                            if lines.send(line).is_err() {
                                return;
                            }
                        }
                    });
                }
                status.update(spec.name, |s| s.pid = pid);
                info!(child = spec.name, pid, program = %spec.program.display(), "started");
                tokio::select! {
                    res = child.wait() => {
                        let how = match res {
                            Ok(st) => describe(st),
                            Err(e) => format!("wait failed: {e}"),
                        };
                        status.update(spec.name, |s| { s.pid = None; s.last_exit = Some(how.clone()); });
                        warn!(child = spec.name, pid, status = %how, ran_for = ?started.elapsed(), "exited");
                    }
                    _ = crate::shutting_down(&mut shutdown) => {
                        let how = stop(spec.name, &mut child).await;
                        status.update(spec.name, |s| { s.pid = None; s.last_exit = Some(how); });
                        return;
                    }
                }
            }
            Err(e) => error!(child = spec.name, program = %spec.program.display(), "cannot start: {e}"),
        }
        if started.elapsed() >= RESET_AFTER {
            backoff = INITIAL_BACKOFF;
        }
        info!(child = spec.name, delay = ?backoff, "restarting");
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = crate::shutting_down(&mut shutdown) => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn spawn(spec: &ChildSpec) -> std::io::Result<tokio::process::Child> {
    let mut cmd = tokio::process::Command::new(&spec.program);
    cmd.args(&spec.args).stdin(Stdio::null()).stderr(Stdio::inherit());
    // stdout to our stderr: control's stdout is for its own one line. A child that reports
    // on stdout (the recorder) gets a pipe read by its supervisor.
    if spec.stdout_lines.is_some() {
        cmd.stdout(Stdio::piped());
    } else {
        cmd.stdout(Stdio::from(std::io::stderr().as_fd().try_clone_to_owned()?));
    }
    cmd.kill_on_drop(true);
    let nice = spec.nice;
    // SAFETY: the closure runs in the forked child before exec and only calls prctl and
    // setpriority, which are async-signal-safe; it touches no memory of the parent.
    unsafe {
        cmd.pre_exec(move || {
            // The child gets SIGTERM if the thread that forked it (a runtime worker, alive as
            // long as control) goes away, so a SIGKILLed control leaves no orphans.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if nice != 0 && libc::setpriority(libc::PRIO_PROCESS, 0, nice) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// SIGTERM, then SIGKILL after [`STOP_GRACE`]; returns how the child ended.
async fn stop(name: &'static str, child: &mut tokio::process::Child) -> String {
    let Some(pid) = child.id() else {
        return "already exited".into();
    };
    info!(child = name, pid, "stopping (SIGTERM)");
    // SAFETY: kill(2) with a pid we spawned and have not reaped (child.id() is Some until wait
    // returns), so it cannot name a recycled process.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let how = match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(Ok(st)) => describe(st),
        Ok(Err(e)) => format!("wait failed: {e}"),
        Err(_) => {
            warn!(child = name, pid, "still running {STOP_GRACE:?} after SIGTERM; sending SIGKILL");
            match child.kill().await {
                Ok(()) => "killed (SIGKILL after SIGTERM timeout)".into(),
                Err(e) => format!("kill failed: {e}"),
            }
        }
    };
    info!(child = name, pid, status = %how, "stopped");
    how
}

fn describe(st: ExitStatus) -> String {
    match (st.code(), st.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => format!("{st}"),
    }
}

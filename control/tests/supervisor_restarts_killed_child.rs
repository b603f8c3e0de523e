//! control starts router and signaling with the link fd, restarts a child killed with SIGKILL,
//! and stops both on SIGTERM; the compositor runs at a lower CPU priority than the router.
//!
//! The children are shell-script stand-ins (the real binaries' flags are being added in
//! parallel): each records its arguments and execs `sleep`, which keeps the inherited fds.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Daemon, TempDir, alive, kill};

fn stand_in(bin: &Path, name: &str) {
    let script = format!("#!/bin/sh\necho \"$@\" > \"$STANDIN_DIR/{name}.args\"\nexec sleep 1000\n");
    let path = bin.join(name);
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn pids(d: &Daemon) -> (Option<u64>, Option<u64>, u64) {
    let j = d.get("/api/status").json();
    let p = &j["processes"];
    (p["router"]["pid"].as_u64(), p["signaling"]["pid"].as_u64(), p["signaling"]["restarts"].as_u64().unwrap())
}

fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value after `flag` in a recorded argument line.
fn arg_after<'a>(args: &'a str, flag: &str) -> &'a str {
    let mut it = args.split_whitespace();
    it.find(|a| *a == flag).unwrap_or_else(|| panic!("{flag} missing in {args:?}"));
    it.next().unwrap()
}

/// A process's nice value (/proc/PID/stat field 19).
fn nice_of(pid: u32) -> i64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat[stat.rfind(')').unwrap() + 2..].split(' ').nth(16).unwrap().parse().unwrap()
}

#[test]
fn a_killed_child_is_restarted_and_both_stop_with_control() {
    let tmp = TempDir::new("supervise");
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    stand_in(&bin, "router");
    stand_in(&bin, "signaling");
    stand_in(&bin, "compositor");
    let data = tmp.path().join("data");
    let mut d = Daemon::start(&data, &bin, &tmp.path().join("none"), &[("STANDIN_DIR", tmp.path())]);

    let (router, signaling) = wait_until("both children", || match pids(&d) {
        (Some(r), Some(s), _) => Some((r as u32, s as u32)),
        _ => None,
    });
    assert!(alive(router) && alive(signaling));

    // Command lines, and the shared-memory link inherited by both at the fd number given.
    let r_args = wait_until("router args", || std::fs::read_to_string(tmp.path().join("router.args")).ok());
    let s_args = wait_until("signaling args", || std::fs::read_to_string(tmp.path().join("signaling.args")).ok());
    assert_eq!(arg_after(&r_args, "--shards"), "1");
    assert_eq!(arg_after(&r_args, "--base-port"), "40000");
    assert_eq!(arg_after(&r_args, "--listen-ip"), "127.0.0.1");
    assert_eq!(arg_after(&r_args, "--control-socket"), data.join("router.sock").to_str().unwrap());
    assert_eq!(arg_after(&s_args, "--db"), data.join("platform.db").to_str().unwrap());
    assert_eq!(arg_after(&s_args, "--listen"), format!("127.0.0.1:{}", d.signaling_port));
    assert_eq!(arg_after(&s_args, "--public-url"), format!("https://localhost:{}", d.signaling_port));
    assert_eq!(arg_after(&s_args, "--cert"), data.join("tls/cert.pem").to_str().unwrap());
    assert_eq!(arg_after(&s_args, "--key"), data.join("tls/key.pem").to_str().unwrap());
    let fd = arg_after(&r_args, "--link-fd");
    assert_eq!(arg_after(&s_args, "--router-link-fd"), fd);
    for pid in [router, signaling] {
        let target = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
        assert!(target.to_string_lossy().contains("memfd:router-signaling"), "{pid}: fd {fd} is {target:?}");
    }

    // The router wins a busy core over the compositor's jobs (`--compositor-nice`, 10).
    let compositor =
        wait_until("the compositor", || d.get("/api/status").json()["processes"]["compositor"]["pid"].as_u64());
    assert_eq!((nice_of(router), nice_of(signaling), nice_of(compositor as u32)), (0, 0, 10));

    kill(signaling, 9);
    let restarted = wait_until("signaling restarted", || match pids(&d) {
        (_, Some(s), restarts) if s as u32 != signaling => Some((s as u32, restarts)),
        _ => None,
    });
    assert_eq!(restarted.1, 1);
    assert!(alive(restarted.0));
    let status = d.get("/api/status").json();
    assert_eq!(status["processes"]["signaling"]["last_exit"], "killed by signal 9");
    assert_eq!(status["processes"]["router"]["pid"], router, "the router was left alone");
    assert_eq!(status["processes"]["router"]["restarts"], 0);
    let fd_target = std::fs::read_link(format!("/proc/{}/fd/{fd}", restarted.0)).unwrap();
    assert!(fd_target.to_string_lossy().contains("memfd:router-signaling"), "the restarted child gets the link too");

    let st = d.stop();
    assert!(st.success(), "{st}");
    for pid in [router, restarted.0] {
        assert!(!alive(pid), "child {pid} outlived control");
    }
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap();
    assert!(log.contains("killed by signal 9"), "the death is logged with its status:\n{log}");
}

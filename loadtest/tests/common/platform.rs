//! The real platform for the tests that run the tool as a process: control (which starts the
//! router and signaling) from the binaries beside the loadtest under test.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The directory of the `loadtest` under test, checked to hold the real `control`, `router` and
/// `signaling` too (a workspace build puts them side by side).
pub fn real_bin_dir() -> PathBuf {
    let loadtest = PathBuf::from(env!("CARGO_BIN_EXE_loadtest"));
    let bin = loadtest.parent().unwrap().to_owned();
    for b in ["control", "router", "signaling"] {
        assert!(bin.join(b).exists(), "{b} is not built in {}: build the workspace first", bin.display());
    }
    bin
}

/// control, run from `bin`; stopped (SIGTERM, so it stops router and signaling too) and its
/// directory removed on drop.
pub struct Platform {
    child: Child,
    pub dir: PathBuf,
    pub api_port: u16,
    pub signaling_port: u16,
}

impl Platform {
    /// Starts control in a fresh directory named after `tag` and waits until the router and
    /// signaling it starts are up.
    pub fn start(tag: &str, bin: &Path) -> Platform {
        let dir = std::env::temp_dir().join(format!("loadtest-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let signaling_port = free();
        // Free for UDP and for TCP: the router binds both at its port (ICE-TCP).
        let router_port = loop {
            let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let port = udp.local_addr().unwrap().port();
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                break port;
            }
        };
        let mut child = Command::new(bin.join("control"))
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--listen", "127.0.0.1:0"])
            .args(["--signaling-listen", &format!("127.0.0.1:{signaling_port}")])
            .arg("--bin-dir")
            .arg(bin)
            .arg("--demo-dir")
            .arg(dir.join("no-demo"))
            .args(["--router-port", &router_port.to_string()])
            .arg("--no-turn")
            // Every peer comes from 127.0.0.1.
            .args(["--rate-limit-init", "0", "--rate-limit-websocket", "0", "--max-connections-per-ip", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("control.log")).unwrap())
            .spawn()
            .unwrap();
        // control's stdout carries one line, `demo: https://localhost:<port>/`, once it listens.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let api_port = line
            .trim()
            .strip_prefix("demo: https://localhost:")
            .and_then(|s| s.strip_suffix('/'))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                let log = std::fs::read_to_string(dir.join("control.log")).unwrap_or_default();
                panic!("control's first line {line:?}; log:\n{log}")
            });
        let p = Platform { child, dir, api_port, signaling_port };
        // The children start after control's first line: wait for the router and signaling.
        let data = p.data();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(data.join("router.sock").exists()
            && TcpStream::connect(("127.0.0.1", signaling_port)).is_ok()
            && data.join("credentials.json").exists())
        {
            assert!(Instant::now() < deadline, "router and signaling did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    /// control's data directory (the tool's `--data-dir`: it reads the credentials there).
    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

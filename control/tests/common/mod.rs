//! Runs the real `control` binary in a temporary data directory and talks HTTPS to it, trusting
//! the certificate it made (so the tests check that certificate too).

#![allow(dead_code)]
// Test support: a failed setup step should panic the test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let p = std::env::temp_dir().join(format!("control-test-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The directory of the `control` under test, checked to hold the real `router` and `signaling`
/// too (a workspace build puts them side by side).
pub fn real_bin_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_control")).parent().unwrap().to_owned();
    for b in ["router", "signaling"] {
        assert!(dir.join(b).exists(), "{b} is not built in {}: build the workspace first", dir.display());
    }
    dir
}

/// A free TCP port on 127.0.0.1 (bound then released; good enough for a test).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running control daemon.
pub struct Daemon {
    pub child: Child,
    pub port: u16,
    pub signaling_port: u16,
    pub data_dir: PathBuf,
}

impl Daemon {
    /// Starts control with `--listen 127.0.0.1:0` and waits for its `demo:` line.
    pub fn start(data_dir: &Path, bin_dir: &Path, demo_dir: &Path, envs: &[(&str, &Path)]) -> Daemon {
        Daemon::start_with_args(data_dir, bin_dir, demo_dir, envs, &[])
    }

    /// [`Daemon::start`] with extra command-line flags (e.g. `--database-url`, or `--listen`
    /// with port 0 instead of `127.0.0.1:0`).
    pub fn start_with_args(
        data_dir: &Path,
        bin_dir: &Path,
        demo_dir: &Path,
        envs: &[(&str, &Path)],
        extra: &[&str],
    ) -> Daemon {
        let signaling_port = free_port();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(data_dir.with_extension("log")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_control"));
        cmd.arg("--data-dir").arg(data_dir);
        // The extra flags may choose their own listen address (it must have port 0).
        if !extra.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        // Tests run in parallel: TURN's fixed ports would clash; the TURN tests choose theirs.
        if !extra.contains(&"--turn-port") {
            cmd.arg("--no-turn");
        }
        cmd.args(["--signaling-listen", &format!("127.0.0.1:{signaling_port}")])
            .arg("--bin-dir")
            .arg(bin_dir)
            .arg("--demo-dir")
            .arg(demo_dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let _ = tx.send(line);
            }
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| {
            let log = std::fs::read_to_string(data_dir.with_extension("log")).unwrap_or_default();
            panic!("control did not print its demo line; log:\n{log}")
        });
        let port = line
            .strip_prefix("demo: https://localhost:")
            .and_then(|s| s.strip_suffix('/'))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first stdout line {line:?}"));
        Daemon { child, port, signaling_port, data_dir: data_dir.to_owned() }
    }

    /// Waits until signaling (a child control starts after its demo line) accepts connections.
    pub fn wait_for_signaling(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.signaling_port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "signaling did not listen within 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &str) -> Reply {
        self.request("POST", path, Some(body))
    }

    /// One HTTPS request on a new connection, verifying the server with `<data-dir>/tls/cert.pem`.
    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> Reply {
        https_request(self.port, &self.data_dir.join("tls/cert.pem"), method, path, body)
    }

    /// A request with `Authorization: Bearer <token>`.
    pub fn call(&self, method: &str, path: &str, token: &str, body: Option<&str>) -> Reply {
        let auth = format!("Bearer {token}");
        https_request_with(
            self.port,
            &self.data_dir.join("tls/cert.pem"),
            method,
            path,
            body,
            &[("Authorization", &auth)],
        )
    }

    /// SIGTERM, and wait for the exit (at most 10 s).
    pub fn stop(&mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "control did not exit within 10 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.stop();
        }
    }
}

/// Sends `sig` to `pid`.
pub fn kill(pid: u32, sig: i32) {
    // SAFETY: plain kill(2); the tests only signal processes they started.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit(") ").next().is_some_and(|rest| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

pub fn client_config(cert_pem: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(cert_pem).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

pub fn https_request(port: u16, cert_pem: &Path, method: &str, path: &str, body: Option<&str>) -> Reply {
    https_request_with(port, cert_pem, method, path, body, &[])
}

/// [`https_request`] with extra request headers.
pub fn https_request_with(
    port: u16,
    cert_pem: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Reply {
    let conn =
        rustls::ClientConnection::new(client_config(cert_pem), ServerName::try_from("localhost").unwrap()).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let body = body.unwrap_or("");
    let mut extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    // JSON unless the caller says otherwise.
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
        extra.push_str("Content-Type: application/json\r\n");
    }
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        Ok(_) => {}
        // A peer closing without close_notify: we have what it sent.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => panic!("reading the reply: {e}"),
    }
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> Reply {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("no end of headers");
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked =
        headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16).unwrap();
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest = &rest[eol + 2 + size + 2..];
        }
        body = out;
    }
    Reply { status, headers, body }
}

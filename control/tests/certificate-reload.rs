//! The HTTPS certificate is replaced without a restart: after SIGHUP, and after its files
//! change, control and signaling serve the new one to new connections while a connection
//! opened before goes on; a broken pair leaves the old certificate in place.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Daemon, TempDir, real_bin_dir};

/// A self-signed certificate for localhost, written to `<dir>/<name>.{cert,key}.pem`.
fn make_cert(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.join(format!("{name}.cert.pem")), dir.join(format!("{name}.key.pem")));
    std::fs::write(&cert, c.cert.pem()).unwrap();
    std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

/// Puts `pair` where the daemon reads its certificate (a rename, as a renewal tool does).
fn install(pair: &(PathBuf, PathBuf), cert: &Path, key: &Path) {
    for (from, to) in [(&pair.0, cert), (&pair.1, key)] {
        let tmp = to.with_extension("new");
        std::fs::copy(from, &tmp).unwrap();
        std::fs::rename(&tmp, to).unwrap();
    }
}

/// A TLS connection to `port` that trusts only `cert`, handshake done; `None` if the server
/// presented another certificate.
fn connect(port: u16, cert: &Path) -> Option<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(common::client_config(cert), name).unwrap();
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).ok()?;
    }
    Some(rustls::StreamOwned::new(conn, tcp))
}

fn serves(port: u16, cert: &Path) -> bool {
    connect(port, cert).is_some()
}

/// `GET /health` on an open keep-alive connection: the status line.
fn health(stream: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>) -> String {
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_string()
}

fn wait_until(what: &str, within: Duration, f: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start(tmp: &TempDir, first: &(PathBuf, PathBuf), poll_secs: &str) -> (Daemon, PathBuf, PathBuf) {
    let (cert, key) = (tmp.path().join("live.cert.pem"), tmp.path().join("live.key.pem"));
    install(first, &cert, &key);
    let args = ["--cert", cert.to_str().unwrap(), "--key", key.to_str().unwrap(), "--cert-poll-secs", poll_secs];
    let d = Daemon::start_with_args(&tmp.path().join("data"), &real_bin_dir(), &tmp.path().join("no-demo"), &[], &args);
    d.wait_for_signaling();
    (d, cert, key)
}

#[test]
fn sighup_serves_the_new_certificate_to_new_connections_and_keeps_open_ones() {
    let tmp = TempDir::new("cert-sighup");
    let (a, b) = (make_cert(tmp.path(), "a"), make_cert(tmp.path(), "b"));
    // No polling: only the signal can make the change.
    let (d, cert, key) = start(&tmp, &a, "0");
    assert!(serves(d.port, &a.0) && serves(d.signaling_port, &a.0), "the first certificate is served");
    let mut open = connect(d.signaling_port, &a.0).unwrap();
    assert!(health(&mut open).contains("200"));

    install(&b, &cert, &key);
    std::thread::sleep(Duration::from_millis(300));
    assert!(serves(d.port, &a.0), "nothing changes before the signal (polling is off)");
    common::kill(d.child.id(), libc::SIGHUP);
    wait_until("control serves the new certificate", Duration::from_secs(10), || serves(d.port, &b.0));
    wait_until("signaling serves the new certificate", Duration::from_secs(10), || serves(d.signaling_port, &b.0));
    assert!(!serves(d.port, &a.0), "the old certificate is gone for new connections");
    assert!(health(&mut open).contains("200"), "a connection opened before the reload goes on");

    // A key that does not belong to the certificate: the running certificate stays.
    std::fs::copy(&a.1, &key).unwrap();
    common::kill(d.child.id(), libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(500));
    assert!(serves(d.port, &b.0), "a mismatched pair is refused and the old certificate kept");
    assert!(common::alive(d.child.id()), "control survives a bad reload");
}

#[test]
fn a_renewed_certificate_file_is_picked_up_without_a_signal() {
    let tmp = TempDir::new("cert-poll");
    let (a, b) = (make_cert(tmp.path(), "a"), make_cert(tmp.path(), "b"));
    let (d, cert, key) = start(&tmp, &a, "1");
    assert!(serves(d.port, &a.0));
    install(&b, &cert, &key);
    wait_until("control serves the renewed certificate", Duration::from_secs(10), || serves(d.port, &b.0));
    wait_until("signaling serves the renewed certificate", Duration::from_secs(10), || serves(d.signaling_port, &b.0));
}

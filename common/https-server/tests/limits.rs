//! The listener against greedy and slow clients, over real TLS on 127.0.0.1: the per-address
//! connection cap, a request whose body never finishes (408), headers that never finish
//! (closed), and a certificate reload that new connections see while an open one goes on.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use https_server::{Limits, ReloadableCert};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Server {
    port: u16,
    dir: std::path::PathBuf,
    cert: Arc<ReloadableCert>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write_cert(dir: &std::path::Path, name: &str) {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.join(format!("{name}.cert.pem")), c.cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key.pem")), c.signing_key.serialize_pem()).unwrap();
}

async fn start(tag: &str, limits: Limits) -> Server {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = std::env::temp_dir().join(format!("https-server-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    write_cert(&dir, "a");
    std::fs::copy(dir.join("a.cert.pem"), dir.join("cert.pem")).unwrap();
    std::fs::copy(dir.join("a.key.pem"), dir.join("key.pem")).unwrap();
    let cert = Arc::new(ReloadableCert::load(dir.join("cert.pem"), dir.join("key.pem")).unwrap());
    let app = axum::Router::new().route("/echo", post(|body: String| async move { body.len().to_string() }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(https_server::serve(listener, cert.server_config(), app, limits, std::future::pending()));
    Server { port, dir, cert }
}

/// A TLS client that trusts `cert_pem` only.
fn connector(cert_pem: &std::path::Path) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert_pem).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    tokio_rustls::TlsConnector::from(Arc::new(
        rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth(),
    ))
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

async fn connect(s: &Server, trusted: &str) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(("127.0.0.1", s.port)).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(Duration::from_secs(5), connector(&s.dir.join(trusted)).connect(name, tcp))
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("handshake timed out")))
}

/// Sends `head` and `body`, then reads until the server closes or answers; the status line.
async fn exchange(tls: &mut Tls, head: &str, body: &[u8]) -> String {
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(body).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf)).await.unwrap().unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_string()
}

#[tokio::test]
async fn connections_past_the_per_address_cap_are_closed_and_a_freed_slot_is_reused() {
    let s = start("cap", Limits { max_per_ip: 2, ..Limits::default() }).await;
    let mut first = connect(&s, "a.cert.pem").await.unwrap();
    let _second = connect(&s, "a.cert.pem").await.unwrap();
    assert!(connect(&s, "a.cert.pem").await.is_err(), "a third connection from 127.0.0.1 is refused");
    let status = exchange(&mut first, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n", b"hi").await;
    assert!(status.contains("200"), "the admitted ones are served: {status}");
    drop(first);
    // The slot frees when the server sees the close.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if connect(&s, "a.cert.pem").await.is_ok() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the closed connection's slot was not freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_body_that_never_finishes_gets_408_and_headers_that_never_finish_are_cut_off() {
    let limits = Limits { max_per_ip: 0, handshake: Duration::from_secs(1), request: Duration::from_secs(1) };
    let s = start("slow", limits).await;
    let mut tls = connect(&s, "a.cert.pem").await.unwrap();
    let status =
        exchange(&mut tls, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", b"only ten b").await;
    assert!(status.contains("408"), "a slow body: {status}");
    let mut tls = connect(&s, "a.cert.pem").await.unwrap();
    let status = exchange(&mut tls, "POST /echo HTTP/1.1\r\nHost: x\r\n", b"").await;
    assert!(!status.contains("200"), "unfinished headers are not served: {status}");
    // A whole request still works.
    let mut tls = connect(&s, "a.cert.pem").await.unwrap();
    let status = exchange(&mut tls, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n", b"abc").await;
    assert!(status.contains("200"), "{status}");
}

#[tokio::test]
async fn a_reloaded_certificate_is_served_to_new_connections_while_open_ones_go_on() {
    let s = start("reload", Limits::default()).await;
    let mut open = connect(&s, "a.cert.pem").await.unwrap();
    write_cert(&s.dir, "b");
    std::fs::copy(s.dir.join("b.cert.pem"), s.dir.join("cert.pem")).unwrap();
    std::fs::copy(s.dir.join("b.key.pem"), s.dir.join("key.pem")).unwrap();
    let before = s.cert.fingerprint();
    let after = s.cert.reload().unwrap();
    assert_ne!(before, after);
    assert!(connect(&s, "b.cert.pem").await.is_ok(), "a new connection gets the new certificate");
    assert!(connect(&s, "a.cert.pem").await.is_err(), "and not the old one");
    let status = exchange(&mut open, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n", b"x").await;
    assert!(status.contains("200"), "the open connection goes on: {status}");
    // A key that does not match the certificate: refused, and the running pair stays.
    std::fs::copy(s.dir.join("a.key.pem"), s.dir.join("key.pem")).unwrap();
    assert!(s.cert.reload().is_err());
    assert_eq!(s.cert.fingerprint(), after);
}

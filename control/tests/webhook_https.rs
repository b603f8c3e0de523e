//! The webhook client over https: it verifies the receiver's certificate (here a self-signed one
//! it is told to trust, as for a private CA), refuses one it does not trust, and rejects URLs it
//! cannot send to without touching the network.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed test

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use bytes::Bytes;
use control::webhooks::{Client, PostError};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A one-connection-at-a-time https server on std threads that answers 204 and reports each
/// request's head and body.
fn receiver() -> (u16, CertificateDer<'static>, mpsc::Receiver<(String, Vec<u8>)>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { continue };
            tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut r = BufReader::new(rustls::StreamOwned::new(conn, tcp));
            let mut head = String::new();
            loop {
                let mut line = String::new();
                // A client that rejects our certificate ends the handshake: nothing to record.
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            if head.is_empty() {
                continue;
            }
            let len = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let mut s = r.into_inner();
            s.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n").unwrap();
            s.conn.send_close_notify();
            let _ = s.flush();
            tx.send((head, body)).unwrap();
        }
    });
    (port, cert, rx)
}

#[tokio::test]
async fn posts_over_https_to_a_trusted_receiver() {
    let (port, cert, rx) = receiver();
    let client = Client::new(Duration::from_secs(5), &[cert]).unwrap();
    let headers = vec![("X-Custom".to_owned(), "v".to_owned())];
    let url = format!("https://localhost:{port}/hook?a=1");
    let status = client.post(&url, &headers, Bytes::from_static(b"{\"id\":\"e\"}")).await.unwrap();
    assert_eq!(status, 204);
    let (head, body) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(head.starts_with("POST /hook?a=1 HTTP/1.1\r\n"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains(&format!("host: localhost:{port}\r\n")), "{head}");
    assert!(lower.contains("content-type: application/json\r\n"), "{head}");
    assert!(lower.contains("x-custom: v\r\n"), "{head}");
    assert_eq!(body, b"{\"id\":\"e\"}");
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_tls_error() {
    let (port, _cert, rx) = receiver();
    let client = Client::new(Duration::from_secs(5), &[]).unwrap();
    let err = client.post(&format!("https://localhost:{port}/"), &[], Bytes::new()).await.unwrap_err();
    assert!(matches!(err, PostError::Tls(_)), "{err:?}");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    assert!(rx.recv_timeout(Duration::from_millis(200)).is_err(), "no request got through");
}

#[tokio::test]
async fn urls_it_cannot_send_to_are_errors() {
    let client = Client::new(Duration::from_secs(5), &[]).unwrap();
    for url in ["ftp://example.com/", "not a url", "/relative", "http://"] {
        let err = client.post(url, &[], Bytes::new()).await.unwrap_err();
        assert!(matches!(err, PostError::Url(_)), "{url}: {err:?}");
    }
    let bad_header = vec![("bad header".to_owned(), "v".to_owned())];
    let err = client.post("http://127.0.0.1:9/", &bad_header, Bytes::new()).await.unwrap_err();
    assert!(matches!(err, PostError::Header(_)), "{err:?}");
}

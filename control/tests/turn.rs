//! TURN: control has the router listen for TURN over UDP, TCP and TLS, and signaling's `/init`
//! hands each client a TURN credential that the shared secret verifies ("REST API for TURN").
//! The relay itself is tested with str0m in
//! `tests/tests/tcp-and-turn-subscribers-get-a-udp-publishers-media.rs` and with the official SDK in
//! `tests/browser/reach.test.mjs` (a browser that can reach only TURN's TLS port).

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Daemon, TempDir, free_port, real_bin_dir};
use store::Store;

#[test]
fn init_hands_out_turn_credentials_that_the_routers_turn_shares_the_secret_of() {
    let tmp = TempDir::new("turn");
    let data = tmp.path().join("data");
    let (port, tls_port) = (free_port().to_string(), free_port().to_string());
    let d = Daemon::start_with_args(
        &data,
        &real_bin_dir(),
        &tmp.path().join("no-demo"),
        &[],
        &["--turn-port", &port, "--turn-tls-port", &tls_port],
    );
    // The router listens for TURN over TCP and TLS (and UDP, on the TCP port's number).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let tcp = |p: &str| std::net::TcpStream::connect(("127.0.0.1", p.parse::<u16>().unwrap())).is_ok();
        if tcp(&port) && tcp(&tls_port) {
            break;
        }
        assert!(Instant::now() < deadline, "the router's TURN did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    d.wait_for_signaling();
    let secret_file = data.join("turn/secret");
    let secret = std::fs::read_to_string(&secret_file).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&secret_file).unwrap().permissions().mode() & 0o777, 0o600);
    let udp = std::net::UdpSocket::bind(("127.0.0.1", port.parse::<u16>().unwrap()));
    assert!(udp.is_err(), "TURN's UDP port is free: the router does not hold it");

    // A client's /init: its own credential for the three TURN URLs.
    let store = Store::open(&data.join("platform.db")).unwrap();
    let ws = store.workspace_named("default").unwrap().unwrap();
    let room = store.upsert_room(&ws.id, "turn-room", None).unwrap();
    let token = store::token::mint_auth_token(&ws, &room.id, "u", "host", Duration::from_secs(600), SystemTime::now());
    let cert = data.join("tls/cert.pem");
    let init = || {
        common::https_request_with(
            d.signaling_port,
            &cert,
            "GET",
            "/init?peer_id=peer-1",
            None,
            &[("Authorization", &format!("Bearer {token}"))],
        )
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let reply = loop {
        let r = init();
        if r.status == 200 {
            break r.json();
        }
        assert!(Instant::now() < deadline, "signaling did not answer /init: {}", r.text());
        std::thread::sleep(Duration::from_millis(100));
    };
    let servers = reply["rtcConfiguration"]["ice_servers"].as_array().unwrap();
    assert_eq!(servers.len(), 1, "{reply}");
    let urls: Vec<&str> = servers[0]["urls"].as_array().unwrap().iter().map(|u| u.as_str().unwrap()).collect();
    assert_eq!(
        urls,
        [
            format!("turn:localhost:{port}?transport=udp"),
            format!("turn:localhost:{port}?transport=tcp"),
            format!("turns:localhost:{tls_port}?transport=tcp"),
        ]
    );
    let username = servers[0]["username"].as_str().unwrap();
    let (expiry, peer) = username.split_once(':').unwrap();
    assert_eq!(peer, "peer-1");
    let expiry: u64 = expiry.parse().unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert!(expiry > now + 12 * 3600, "the credential outlives a session: expires {expiry}, now {now}");
    // The credential is the secret's HMAC of the username: what the router checks.
    let expected = store::token::turn_password(secret.trim(), username);
    assert_eq!(servers[0]["credential"].as_str().unwrap(), expected, "{reply}");

    // TURN's counters are among the metrics.
    let management = store::token::mint_management_token(&ws, Duration::from_secs(600), SystemTime::now());
    let metrics = d.call("GET", "/metrics", &management, None).text();
    for name in ["router_turn_clients ", "router_turn_accepted_total ", "router_turn_datagrams_out_total "] {
        assert!(metrics.lines().any(|l| l.starts_with(name)), "no {name}in the metrics:\n{metrics}");
    }

    // A renewed certificate reaches the router's TURN over TLS: it watches the files.
    let renewed = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(data.join("tls/key.pem"), renewed.signing_key.serialize_pem()).unwrap();
    std::fs::write(data.join("tls/cert.pem"), renewed.cert.pem()).unwrap();
    let log = data.with_extension("log");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("TURN certificate reloaded") {
        assert!(Instant::now() < deadline, "the router's TURN did not reload the renewed certificate");
        std::thread::sleep(Duration::from_millis(100));
    }
}

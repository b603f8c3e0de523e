//! The security suite: every REST route that needs a management token is called without one,
//! with a forged one, an expired one and an auth (client) token, and refuses each with 401, as
//! signaling's routes (`/init`, WHIP, WHEP) refuse a missing, forged, expired or management token;
//! another workspace's token finds none of this workspace's objects; each rate limit trips
//! with 429 and `Retry-After`, and lets the client in again once it has waited; connections
//! past the per-address cap are closed on both HTTPS listeners. The real
//! binaries run (control, router, signaling) on 127.0.0.1.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::{Daemon, Reply, TempDir, real_bin_dir};
use store::Store;

fn start(tag: &str, extra: &[&str]) -> (Daemon, store::Workspace, TempDir) {
    let tmp = TempDir::new(tag);
    let data = tmp.path().join("data");
    let d = Daemon::start_with_args(&data, &real_bin_dir(), &tmp.path().join("no-demo"), &[], extra);
    let ws = Store::open(&data.join("platform.db")).unwrap().workspace_named("default").unwrap().unwrap();
    d.wait_for_signaling();
    (d, ws, tmp)
}

/// A route's path with each `{parameter}` filled in.
fn concrete(path: &str) -> String {
    let (mut out, mut rest) = (String::new(), path);
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        out.push_str("x1");
        rest = &rest[open + rest[open..].find('}').unwrap() + 1..];
    }
    out + rest
}

fn retry_after(r: &Reply) -> u64 {
    r.header("retry-after").unwrap_or_else(|| panic!("429 without Retry-After: {}", r.text())).parse().unwrap()
}

#[test]
fn every_authenticated_route_refuses_missing_forged_expired_and_client_tokens() {
    // Failures are rate-limited too: room for every one of them here.
    let (d, ws, _tmp) = start("sec-routes", &["--rate-limit-auth-failures", "0"]);
    let now = SystemTime::now();
    let hour = Duration::from_secs(3600);
    let forged =
        store::token::mint_management_token(&store::Workspace { secret: "0".repeat(64), ..ws.clone() }, hour, now);
    let expired = store::token::mint_management_token(&ws, Duration::from_secs(1), now - hour);
    let client = store::token::mint_auth_token(&ws, "r", "u", "host", hour, now);
    let mut checked = 0;
    for route in control::http::rest::ROUTES.iter().filter(|r| r.auth) {
        let path = concrete(route.path);
        let none = d.request(route.method, &path, Some("{}"));
        assert_eq!(none.status, 401, "{} {path} without a token: {}", route.method, none.text());
        for (what, token) in [("forged", &forged), ("expired", &expired), ("client", &client)] {
            let r = d.call(route.method, &path, token, Some("{}"));
            assert_eq!(r.status, 401, "{} {path} with a {what} token: {}", route.method, r.text());
        }
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} authenticated routes");
    // The public ones: the code exchange refuses an unknown code, the OpenAPI document is open.
    assert_eq!(d.post("/v2/token", r#"{"code":"aaa-bbbb-ccc","user_id":"u"}"#).status, 404);
    assert_eq!(d.get("/v2/openapi.json").status, 200);
    // Security headers: HSTS everywhere, and the demo's content security policy.
    let page = d.get("/");
    assert_eq!(page.header("strict-transport-security"), Some("max-age=63072000"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    // CORS only where a browser on another origin needs it: not on the REST API.
    assert_eq!(d.request("GET", "/v2/rooms", None).header("access-control-allow-origin"), None);

    // Another workspace's valid token sees none of this one's rooms, and cannot act on them.
    let store = Store::open(&d.data_dir.join("platform.db")).unwrap();
    let other = store.create_workspace("other").unwrap();
    let theirs = store::token::mint_management_token(&other, hour, now);
    let mine = store::token::mint_management_token(&ws, hour, now);
    let room = d.call("POST", "/v2/rooms", &mine, Some(r#"{"name":"private"}"#)).json();
    let id = room["id"].as_str().unwrap();
    for (method, path, body) in [
        ("GET", format!("/v2/rooms/{id}"), None),
        ("POST", format!("/v2/rooms/{id}"), Some(r#"{"enabled":false}"#)),
        ("POST", format!("/v2/room-codes/room/{id}"), Some("{}")),
        ("POST", "/v2/auth-tokens".to_string(), Some(&*format!(r#"{{"room_id":"{id}","role":"host","user_id":"x"}}"#))),
        ("POST", format!("/v2/active-rooms/{id}/end-room"), Some("{}")),
    ] {
        let r = d.call(method, &path, &theirs, body);
        assert_eq!(r.status, 404, "{method} {path} from another workspace: {}", r.text());
    }
}

#[test]
fn each_rate_limit_trips_with_429_and_lets_the_client_back_after_retry_after() {
    let (d, ws, _tmp) = start(
        "sec-limits",
        &[
            "--rate-limit-auth-failures",
            "60",
            "--rate-limit-room-code",
            "60",
            "--rate-limit-init",
            "60",
            "--rate-limit-websocket",
            "60",
        ],
    );
    let good = store::token::mint_management_token(&ws, Duration::from_secs(600), SystemTime::now());

    // REST authentication failures: 60 spent, then even a good token waits.
    for i in 0..60 {
        assert_eq!(d.call("GET", "/v2/rooms", "not-a-jwt", None).status, 401, "failure {i}");
    }
    let blocked = d.call("GET", "/v2/rooms", &good, None);
    assert_eq!(blocked.status, 429, "{}", blocked.text());
    assert_eq!(blocked.json()["code"], 429);
    let wait = retry_after(&blocked);
    assert!((1..=2).contains(&wait), "one failure comes back a second: Retry-After {wait}");
    std::thread::sleep(Duration::from_secs(wait));
    assert_eq!(d.call("GET", "/v2/rooms", &good, None).status, 200, "not let back in after Retry-After");

    // The room-code exchange: 60 guesses, then 429 whatever the code.
    for i in 0..60 {
        let r = d.post("/v2/token", &format!(r#"{{"code":"zzz-zzzz-{i:03}","user_id":"u"}}"#));
        assert_eq!(r.status, 404, "guess {i}: {}", r.text());
    }
    let r = d.post("/v2/token", r#"{"code":"zzz-zzzz-zzz","user_id":"u"}"#);
    assert_eq!(r.status, 429, "{}", r.text());
    std::thread::sleep(Duration::from_secs(retry_after(&r)));
    assert_eq!(d.post("/v2/token", r#"{"code":"zzz-zzzz-zzz","user_id":"u"}"#).status, 404);

    // Signaling's /init: 60, then 429 (with CORS, so the SDK in a browser reads it).
    let cert = d.data_dir.join("tls/cert.pem");
    let init = || common::https_request(d.signaling_port, &cert, "GET", "/init?peer_id=p1", None);
    let deadline = Instant::now() + Duration::from_secs(20);
    while init().status != 401 {
        assert!(Instant::now() < deadline, "signaling did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut last = init();
    for _ in 0..70 {
        if last.status == 429 {
            break;
        }
        last = init();
    }
    assert_eq!(last.status, 429, "{}", last.text());
    assert_eq!(last.header("access-control-allow-origin"), Some("*"));
    std::thread::sleep(Duration::from_secs(retry_after(&last)));
    assert_eq!(init().status, 401, "/init not let back in after Retry-After");

    // The WebSocket upgrade, counted apart from /init.
    let ws_get = || common::https_request(d.signaling_port, &cert, "GET", "/ws?peer=p1&token=x", None);
    let mut last = ws_get();
    for _ in 0..70 {
        if last.status == 429 {
            break;
        }
        last = ws_get();
    }
    assert_eq!(last.status, 429, "{}", last.text());
    assert!(retry_after(&last) >= 1);
}

#[test]
fn every_signaling_route_refuses_missing_forged_expired_and_management_tokens() {
    let (d, ws, _tmp) = start("sec-signaling", &[]);
    let now = SystemTime::now();
    let hour = Duration::from_secs(3600);
    let mine = store::token::mint_management_token(&ws, hour, now);
    let room = d.call("POST", "/v2/rooms", &mine, Some(r#"{"name":"sig"}"#)).json();
    let id = room["id"].as_str().unwrap();
    let forged = store::token::mint_auth_token(
        &store::Workspace { secret: "0".repeat(64), ..ws.clone() },
        id,
        "u",
        "host",
        hour,
        now,
    );
    let expired = store::token::mint_auth_token(&ws, id, "u", "host", Duration::from_secs(1), now - hour);
    let good = store::token::mint_auth_token(&ws, id, "u", "host", hour, now);
    let cert = d.data_dir.join("tls/cert.pem");
    let call = |method: &str, path: &str, token: Option<&str>| {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/sdp")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a));
        }
        common::https_request_with(d.signaling_port, &cert, method, path, Some("v=0\r\n"), &headers)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while call("GET", "/init?peer_id=p1", Some(&good)).status != 200 {
        assert!(Instant::now() < deadline, "signaling did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let resource = format!("/{id}/000000000000000000000000");
    let routes = [
        ("GET", "/init?peer_id=p1".to_string()),
        ("POST", "/whip".to_string()),
        ("POST", "/whep".to_string()),
        ("PATCH", format!("/whip{resource}")),
        ("DELETE", format!("/whip{resource}")),
        ("PATCH", format!("/whep{resource}")),
        ("DELETE", format!("/whep{resource}")),
    ];
    for (method, path) in &routes {
        assert_eq!(call(method, path, None).status, 401, "{method} {path} without a token");
        for (what, token) in [("forged", &forged), ("expired", &expired), ("management", &mine)] {
            let r = call(method, path, Some(token));
            assert_eq!(r.status, 401, "{method} {path} with a {what} token: {}", r.text());
        }
    }
    // With a good token: a malformed offer is 400, an unknown resource 404, nothing minted.
    assert_eq!(call("POST", "/whip", Some(&good)).status, 400);
    assert_eq!(call("DELETE", &format!("/whip{resource}"), Some(&good)).status, 404);

    // The WebSocket: the SDK's socket is refused with an on-error push and a close, which the
    // SDK treats as final (an HTTP refusal would make it retry for a minute).
    let other = Store::open(&d.data_dir.join("platform.db")).unwrap().create_workspace("other").unwrap();
    let theirs = store::token::mint_auth_token(&other, id, "u", "host", hour, now);
    for (what, token, close) in [
        ("forged", forged.as_str(), 4401),
        ("expired", expired.as_str(), 4401),
        ("management", mine.as_str(), 4401),
        ("another workspace's", theirs.as_str(), 4403),
    ] {
        let (error, code) = websocket_refusal(d.signaling_port, &cert, Some(token));
        assert_eq!(code, close, "the socket with a {what} token closes with {close}: {error}");
        assert!(error.contains("\"on-error\""), "a {what} token gets an on-error push: {error}");
    }
    let (error, code) = websocket_refusal(d.signaling_port, &cert, None);
    assert_eq!(code, 4401, "a socket without a token: {error}");
    assert_eq!(websocket_refusal(d.signaling_port, &cert, Some(&good)).1, 0, "a good token keeps its socket");
}

/// Opens signaling's WebSocket with `token` and reads until the server closes it: the first
/// text message and the close code (0: still open after a second).
fn websocket_refusal(port: u16, cert: &std::path::Path, token: Option<&str>) -> (String, u16) {
    use std::io::{Read, Write};
    let mut s = tls_connection(port, cert).unwrap();
    let query = token.map(|t| format!("&token={t}")).unwrap_or_default();
    let upgrade = format!(
        "GET /ws?peer=sec-peer{query} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(upgrade.as_bytes()).unwrap();
    s.sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        let n = s.read(&mut buf).unwrap();
        raw.extend_from_slice(&buf[..n]);
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    assert!(raw.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&raw));
    let mut frames = raw.split_off(head_end);
    let (mut text, mut close) = (String::new(), 0u16);
    loop {
        // Server frames are unmasked: opcode, a 7-bit length (or 126 and 16 bits), the payload.
        while frames.len() >= 2 {
            let opcode = frames[0] & 0x0f;
            let (len, start) = match frames[1] & 0x7f {
                126 if frames.len() >= 4 => (usize::from(u16::from_be_bytes([frames[2], frames[3]])), 4),
                126 => break,
                n => (usize::from(n), 2),
            };
            if frames.len() < start + len {
                break;
            }
            let payload: Vec<u8> = frames.drain(..start + len).skip(start).collect();
            match opcode {
                1 if text.is_empty() => text = String::from_utf8_lossy(&payload).into_owned(),
                8 if payload.len() >= 2 => close = u16::from_be_bytes([payload[0], payload[1]]),
                _ => {}
            }
        }
        if close != 0 {
            return (text, close);
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return (text, close),
            Ok(n) => frames.extend_from_slice(&buf[..n]),
        }
    }
}

#[test]
fn a_revoked_key_is_refused_at_once_and_a_rotated_one_works() {
    let (d, ws, _tmp) = start("sec-keys", &[]);
    let now = SystemTime::now();
    let old = store::token::mint_management_token(&ws, Duration::from_secs(600), now);
    let added = d.call("POST", "/v2/workspace/keys", &old, Some("{}"));
    assert_eq!(added.status, 200, "{}", added.text());
    let added = added.json();
    let new_ws = store::Workspace {
        access_key: added["access_key"].as_str().unwrap().into(),
        secret: added["secret"].as_str().unwrap().into(),
        ..ws.clone()
    };
    let new = store::token::mint_management_token(&new_ws, Duration::from_secs(600), now);
    let keys = d.call("GET", "/v2/workspace/keys", &new, None).json();
    let listed: Vec<&str> =
        keys["data"].as_array().unwrap().iter().map(|k| k["access_key"].as_str().unwrap()).collect();
    assert_eq!(listed, [ws.access_key.as_str(), new_ws.access_key.as_str()]);
    assert!(!keys.to_string().contains(&new_ws.secret), "a listing shows no secret");
    // A client token signed with the old key works until the old key is revoked...
    let room = d.call("POST", "/v2/rooms", &old, Some(r#"{"name":"keys"}"#)).json();
    let client =
        store::token::mint_auth_token(&ws, room["id"].as_str().unwrap(), "u", "host", Duration::from_secs(600), now);
    let cert = d.data_dir.join("tls/cert.pem");
    let init = || {
        common::https_request_with(
            d.signaling_port,
            &cert,
            "GET",
            "/init?peer_id=p1",
            None,
            &[("Authorization", &format!("Bearer {client}"))],
        )
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while init().status != 200 {
        assert!(Instant::now() < deadline, "signaling did not accept the old key's client token: {}", init().text());
        std::thread::sleep(Duration::from_millis(100));
    }
    let revoked = d.call("POST", &format!("/v2/workspace/keys/{}/revoke", ws.access_key), &new, Some("{}"));
    assert_eq!(revoked.status, 200, "{}", revoked.text());
    // ... and from then on neither its management nor its client tokens get in.
    assert_eq!(d.call("GET", "/v2/rooms", &old, None).status, 401);
    assert_eq!(init().status, 401, "signaling still takes a revoked key's token");
    assert_eq!(
        websocket_refusal(d.signaling_port, &cert, Some(&client)).1,
        4401,
        "the socket takes a revoked key's token"
    );
    assert_eq!(d.call("GET", "/v2/rooms", &new, None).status, 200);
    // The last key stays; another workspace's key is not found.
    let last = d.call("POST", &format!("/v2/workspace/keys/{}/revoke", new_ws.access_key), &new, Some("{}"));
    assert_eq!(last.status, 400, "{}", last.text());
    assert_eq!(d.call("POST", "/v2/workspace/keys/nope/revoke", &new, Some("{}")).status, 404);
    // A management token valid for a week is refused however well it is signed.
    let week = store::token::mint_management_token(&new_ws, Duration::from_secs(7 * 86_400), now);
    let r = d.call("GET", "/v2/rooms", &week, None);
    assert_eq!(r.status, 401, "{}", r.text());
}

/// A finished TLS handshake with the daemon's listener at `port`.
fn tls_connection(
    port: u16,
    cert: &std::path::Path,
) -> Option<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>> {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(common::client_config(cert), name).unwrap();
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).ok()?;
    }
    Some(rustls::StreamOwned::new(conn, tcp))
}

#[test]
fn connections_past_the_per_address_cap_are_closed_on_control_and_signaling() {
    let (d, _ws, _tmp) = start("sec-conns", &["--max-connections-per-ip", "2"]);
    let cert = d.data_dir.join("tls/cert.pem");
    for (what, port) in [("control", d.port), ("signaling", d.signaling_port)] {
        let open: Vec<_> = (0..2).map(|_| tls_connection(port, &cert)).collect();
        assert!(open.iter().all(Option::is_some), "{what}: two connections are let in");
        assert!(tls_connection(port, &cert).is_none(), "{what}: a third from the same address is closed");
        drop(open);
        let deadline = Instant::now() + Duration::from_secs(5);
        while tls_connection(port, &cert).is_none() {
            assert!(Instant::now() < deadline, "{what}: closed connections do not free their slots");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

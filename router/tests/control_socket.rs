//! The `router` binary end to end through its control socket.
//!
//! Each test starts the real binary as a child process (two shards, any free ports, no
//! pinning, a control socket under a unique temp path), talks JSON lines to it over a
//! `UnixStream` and checks the replies, the events and how the process starts and stops.
//! A [`RouterProcess`] guard kills the child on drop, so a failed assertion never leaves a
//! router behind; every path carries the test process id and a counter, so tests run in
//! parallel without sharing sockets.
//!
//! ```text
//! let router = RouterProcess::start();
//! let mut c = router.connect();
//! let t = c.ok("create_transport", json!({}));
//! ```

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_router");
/// How long the router may take to create its socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long any single reply or event may take.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// A path under the temp dir no other test (or test process) uses.
fn unique_path(tag: &str, ext: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // Short names: a Unix socket path must fit in sun_path (108 bytes).
    std::env::temp_dir().join(format!("rtr-{}-{n}-{tag}.{ext}", std::process::id()))
}

/// A running `router` child; killed and cleaned up on drop.
struct RouterProcess {
    child: Child,
    socket: PathBuf,
    stderr: PathBuf,
}

impl RouterProcess {
    /// Starts a two-shard router and waits until its control socket accepts connections.
    fn start() -> RouterProcess {
        let socket = unique_path("ctl", "sock");
        let router = RouterProcess::spawn(&socket);
        router.wait_ready();
        router
    }

    /// Starts a router on `socket` without waiting for it.
    fn spawn(socket: &Path) -> RouterProcess {
        let stderr = unique_path("err", "log");
        let err_file = std::fs::File::create(&stderr).expect("create stderr log file in temp dir");
        let child = Command::new(BIN)
            .args(["--shards", "2", "--base-port", "0", "--no-pin", "--control-socket"])
            .arg(socket)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err_file)
            .spawn()
            .expect("spawn the router binary");
        RouterProcess { child, socket: socket.to_path_buf(), stderr }
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.socket.exists() && UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "control socket did not appear within {START_TIMEOUT:?}; stderr:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn connect(&self) -> Conn {
        Conn::new(UnixStream::connect(&self.socket).expect("connect to the control socket"))
    }

    /// What the router wrote to stderr so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits up to `timeout` for the child to exit.
    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the router child") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RouterProcess {
    fn drop(&mut self) {
        // Both fail harmlessly when the child has already exited.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.stderr);
        // Only our own unique path: never another test's socket.
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// One control connection: requests with increasing ids; event lines seen while waiting for a
/// reply are kept for [`Conn::event`].
struct Conn {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
    events: VecDeque<Value>,
}

impl Conn {
    fn new(stream: UnixStream) -> Conn {
        stream.set_read_timeout(Some(REPLY_TIMEOUT)).expect("set read timeout");
        let writer = stream.try_clone().expect("clone the control stream");
        Conn { reader: BufReader::new(stream), writer, next_id: 1, events: VecDeque::new() }
    }

    fn send_line(&mut self, line: &[u8]) {
        self.writer.write_all(line).expect("write request");
        self.writer.write_all(b"\n").expect("write newline");
    }

    /// Reads one JSON line; panics on timeout, EOF or non-JSON.
    fn read_value(&mut self) -> Value {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("read a line from the router within the timeout");
        assert!(n > 0, "router closed the control connection");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("router sent non-JSON {line:?}: {e}"))
    }

    /// The next line that is a reply (has an "id"), stashing events on the way.
    fn read_reply(&mut self) -> Value {
        loop {
            let v = self.read_value();
            if v.get("id").is_some() {
                return v;
            }
            assert!(v.get("event").is_some(), "line is neither a reply nor an event: {v}");
            self.events.push_back(v);
        }
    }

    /// Sends a request and returns the whole reply, checking it echoes our id.
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let req = json!({ "id": id, "method": method, "params": params }).to_string();
        self.send_line(req.as_bytes());
        let reply = self.read_reply();
        assert_eq!(reply["id"], json!(id), "reply to {method} carries the wrong id: {reply}");
        reply
    }

    /// A request that must succeed: its result.
    fn ok(&mut self, method: &str, params: Value) -> Value {
        let reply = self.call(method, params.clone());
        assert!(reply.get("error").is_none(), "{method} {params} failed: {reply}");
        reply.get("result").cloned().unwrap_or_else(|| panic!("{method} reply has no result: {reply}"))
    }

    /// A request that must fail with `code`: the error message.
    fn err(&mut self, method: &str, params: Value, code: &str) -> String {
        let reply = self.call(method, params.clone());
        error_of(&reply, code)
    }

    /// The next event line, waiting up to [`REPLY_TIMEOUT`].
    fn event(&mut self) -> Value {
        if let Some(v) = self.events.pop_front() {
            return v;
        }
        let v = self.read_value();
        assert!(v.get("event").is_some(), "expected an event line, got {v}");
        v
    }
}

/// Checks `reply` is an error with `code` and a message; returns the message.
fn error_of(reply: &Value, code: &str) -> String {
    assert!(reply.get("result").is_none(), "expected error {code}, got {reply}");
    assert_eq!(reply["error"]["code"], json!(code), "wrong error code: {reply}");
    let message = reply["error"]["message"].as_str().unwrap_or_default().to_string();
    assert!(!message.is_empty(), "error {code} has no message: {reply}");
    message
}

fn shard_of(id: &Value) -> u64 {
    id.as_u64().unwrap_or_else(|| panic!("id is not a number: {id}")) >> 24
}

/// A syntactically valid fingerprint (matches no real certificate).
fn some_fingerprint() -> String {
    let hex: Vec<String> = (0..32).map(|i| format!("{:02X}", i * 7 % 256)).collect();
    format!("sha-256 {}", hex.join(":"))
}

fn vp8_params(transport: &Value) -> Value {
    json!({
        "transport": transport,
        "kind": "video",
        "codec": "vp8",
        "payload_type": 96,
        "clock_rate": 90000,
        "ssrc": 1234,
    })
}

#[test]
fn create_transport_returns_ice_lite_server_info_round_robin_across_shards() {
    let router = RouterProcess::start();
    let mut c = router.connect();
    let a = c.ok("create_transport", json!({}));
    let b = c.ok("create_transport", json!({}));
    for t in [&a, &b] {
        for key in ["ice_ufrag", "ice_pwd"] {
            let v = t[key].as_str().unwrap_or_else(|| panic!("{key} missing: {t}"));
            assert!(!v.is_empty(), "{key} empty: {t}");
        }
        let fp = t["fingerprint"].as_str().unwrap_or_default();
        assert!(fp.starts_with("sha-256 "), "fingerprint {fp:?}");
        // 32 bytes as colon-separated hex after the algorithm name.
        assert_eq!(fp["sha-256 ".len()..].split(':').count(), 32, "fingerprint {fp:?}");
        assert_eq!(t["dtls_role"], json!("server"), "{t}");
        assert_eq!(t["ice_lite"], json!(true), "{t}");
        let cand: std::net::SocketAddr = t["candidates"][0]["addr"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("candidate: {t}"));
        assert_eq!(t["candidates"][0]["protocol"], json!("udp"), "{t}");
        assert_eq!(cand.ip(), std::net::IpAddr::from([127, 0, 0, 1]), "{t}");
        assert_ne!(cand.port(), 0, "{t}");
    }
    // Round robin over a fresh router: the first lands on shard 0, the second on shard 1.
    assert_eq!(shard_of(&a["id"]), 0, "{a}");
    assert_eq!(shard_of(&b["id"]), 1, "{b}");
    assert_ne!(a["candidates"][0], b["candidates"][0], "shards share a port: {a} {b}");
    assert_ne!(a["ice_ufrag"], b["ice_ufrag"]);
    // An explicit shard is honoured.
    let c1 = c.ok("create_transport", json!({ "shard": 1 }));
    assert_eq!(shard_of(&c1["id"]), 1, "{c1}");
    assert_eq!(c1["candidate"], b["candidate"]);
    let msg = c.err("create_transport", json!({ "shard": 9 }), "invalid_params");
    assert!(msg.contains('9'), "{msg}");
}

#[test]
fn connect_and_close_transport_report_typed_errors() {
    let router = RouterProcess::start();
    let mut c = router.connect();
    let t = c.ok("create_transport", json!({}));
    let id = t["id"].clone();

    let msg = c.err("connect_transport", json!({ "transport": id, "fingerprint": "garbage" }), "bad_fingerprint");
    assert!(msg.contains("fingerprint"), "{msg}");
    let msg = c.err("connect_transport", json!({ "transport": id, "fingerprint": "sha-1 AB:CD" }), "bad_fingerprint");
    assert!(msg.contains("sha-256"), "{msg}");
    // A valid fingerprint on a transport that does not exist (shard 0's id space).
    c.err(
        "connect_transport",
        json!({ "transport": 0x00ff_fff0u32, "fingerprint": some_fingerprint() }),
        "unknown_transport",
    );
    // An id whose shard byte names no shard is just as unknown.
    c.err(
        "connect_transport",
        json!({ "transport": 0x0700_0001u32, "fingerprint": some_fingerprint() }),
        "unknown_transport",
    );
    c.err("close_transport", json!({ "transport": 0x0700_0001u32 }), "unknown_transport");
    assert_eq!(
        c.ok("connect_transport", json!({ "transport": id, "fingerprint": some_fingerprint(), "ice_ufrag": "abcd" })),
        Value::Null
    );

    assert_eq!(c.ok("close_transport", json!({ "transport": id })), Value::Null);
    let msg = c.err("close_transport", json!({ "transport": id }), "unknown_transport");
    assert!(msg.contains(&id.to_string()), "{msg}");
    c.err("connect_transport", json!({ "transport": id, "fingerprint": some_fingerprint() }), "unknown_transport");
}

#[test]
fn consume_works_on_the_producers_shard_and_is_refused_across_shards() {
    let router = RouterProcess::start();
    let mut c = router.connect();
    let pub0 = c.ok("create_transport", json!({ "shard": 0 }));
    let sub1 = c.ok("create_transport", json!({ "shard": 1 }));
    let sub0 = c.ok("create_transport", json!({ "shard": 0 }));

    let producer = c.ok("produce", vp8_params(&pub0["id"]));
    assert!(producer.is_u64(), "produce returns a producer id: {producer}");
    assert_eq!(shard_of(&producer), 0);
    // The same SSRC twice on one transport is refused.
    c.err("produce", vp8_params(&pub0["id"]), "invalid_params");

    let msg = c.err("consume", json!({ "transport": sub1["id"], "producer": producer }), "invalid_params");
    assert!(msg.contains("different shards"), "message should say why: {msg}");

    let info = c.ok("consume", json!({ "transport": sub0["id"], "producer": producer }));
    assert_ne!(info["ssrc"], json!(0), "{info}");
    assert!(info["ssrc"].is_u64(), "{info}");
    assert_eq!(info["payload_type"], json!(96), "{info}");
    assert_eq!(info["producer"], producer, "{info}");
    assert_eq!(info["kind"], json!("video"), "{info}");
    assert_eq!(info["codec"], json!("vp8"), "{info}");
    assert_eq!(info["clock_rate"], json!(90000), "{info}");
    assert_eq!(shard_of(&info["id"]), 0, "{info}");

    c.err("consume", json!({ "transport": sub0["id"], "producer": 0x00ff_fff0u32 }), "unknown_producer");
    let stats = c.ok("producer_stats", json!({ "producer": producer }));
    assert!(stats.is_object(), "{stats}");
}

#[test]
fn malformed_requests_get_errors_and_the_connection_keeps_working() {
    let router = RouterProcess::start();
    let mut c = router.connect();

    c.send_line(b"{\"id\": 1, \"method\": ");
    let reply = c.read_reply();
    error_of(&reply, "bad_json");
    assert_eq!(reply["id"], Value::Null, "{reply}");

    c.send_line(b"\xff\xfe not utf-8");
    let reply = c.read_reply();
    error_of(&reply, "bad_json");

    let msg = c.err("fly_to_the_moon", json!({}), "bad_request");
    assert!(msg.contains("fly_to_the_moon"), "{msg}");
    c.err("close_transport", json!({ "transport": "not a number" }), "bad_request");
    c.err("produce", json!({}), "bad_request");

    // 100 KB in one line: refused, and the rest of the line does not leak into the next request.
    let mut big = b"{\"id\": 5, \"method\": \"counters\", \"params\": {\"pad\": \"".to_vec();
    big.resize(100 * 1024, b'x');
    big.extend_from_slice(b"\"}}");
    c.send_line(&big);
    let reply = c.read_reply();
    let msg = error_of(&reply, "too_large");
    assert!(msg.contains("65536"), "{msg}");
    assert!(c.ok("counters", json!({ "shard": 1 })).is_object());

    // A line exactly one byte over the limit once its newline is counted: the next request
    // must still be read as its own line, not swallowed by the drain of the long one.
    let mut edge = b"{\"id\": 6, \"method\": \"counters\", \"params\": {\"pad\": \"".to_vec();
    edge.resize(64 * 1024 - 3, b'y');
    edge.extend_from_slice(b"\"}}");
    assert_eq!(edge.len() + 1, 64 * 1024 + 1);
    c.send_line(&edge);
    error_of(&c.read_reply(), "too_large");
    assert!(c.ok("counters", json!({ "shard": 0 })).is_object());

    // A line at the limit (with its newline) is accepted.
    let mut fits = b"{\"id\": 7, \"method\": \"counters\", \"params\": {\"shard\": 0}}".to_vec();
    fits.resize(64 * 1024 - 1, b' ');
    c.send_line(&fits);
    let reply = c.read_reply();
    assert_eq!(reply["id"], json!(7), "{reply}");
    assert!(reply["result"].is_object(), "{reply}");

    // Blank lines get no reply; the next request's reply is the next line.
    c.send_line(b"");
    assert!(c.ok("counters", json!({})).is_object());
}

#[test]
fn counters_report_the_shards_datagrams() {
    let router = RouterProcess::start();
    let mut c = router.connect();
    let counters = c.ok("counters", json!({ "shard": 0 }));
    assert!(counters["datagrams_in"].is_u64(), "{counters}");
    let counters = c.ok("counters", json!({ "shard": 1 }));
    assert!(counters["datagrams_in"].is_u64(), "{counters}");
    c.err("counters", json!({ "shard": 2 }), "invalid_params");
}

#[test]
fn subscriber_receives_transport_closed_event() {
    let router = RouterProcess::start();
    let mut c = router.connect();
    assert_eq!(c.ok("subscribe", json!({})), Value::Null);
    let t = c.ok("create_transport", json!({ "shard": 1 }));
    assert_eq!(c.ok("close_transport", json!({ "transport": t["id"] })), Value::Null);
    let deadline = Instant::now() + REPLY_TIMEOUT;
    loop {
        let ev = c.event();
        if ev["event"]["event"] == json!("transport_closed") {
            assert_eq!(ev["shard"], json!(1), "{ev}");
            assert_eq!(ev["event"]["transport"], t["id"], "{ev}");
            assert_eq!(ev["event"]["reason"], json!("requested"), "{ev}");
            break;
        }
        assert!(Instant::now() < deadline, "no transport_closed event within {REPLY_TIMEOUT:?}");
    }
    // Another connection that did not subscribe gets replies only.
    let mut other = router.connect();
    let t2 = other.ok("create_transport", json!({}));
    other.ok("close_transport", json!({ "transport": t2["id"] }));
    assert!(other.ok("counters", json!({})).is_object());
    assert!(other.events.is_empty(), "unsubscribed connection got events: {:?}", other.events);
}

#[test]
fn sigterm_stops_the_router_and_removes_its_socket() {
    let mut router = RouterProcess::start();
    // A connected client must not keep the process alive.
    let _c = router.connect();
    let pid = router.child.id() as libc::pid_t;
    // SAFETY: signalling our own child process, which has not been reaped yet.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = router.wait_exit(Duration::from_secs(5));
    assert!(status.is_some(), "router still running 5 s after SIGTERM");
    assert!(!router.socket.exists(), "socket file left behind after SIGTERM");
}

#[test]
fn second_router_refuses_a_live_socket() {
    let first = RouterProcess::start();
    let mut second = RouterProcess::spawn(&first.socket);
    let status = second.wait_exit(Duration::from_secs(10)).expect("second router should exit on its own");
    assert!(!status.success(), "second router exited with {status}");
    let log = second.log();
    assert!(log.contains("another router is listening"), "stderr should say why: {log}");
    assert!(log.contains(&*first.socket.to_string_lossy()), "stderr should name the socket: {log}");
    // The first router still owns its socket and answers.
    assert!(first.socket.exists());
    let mut c = first.connect();
    assert!(c.ok("counters", json!({})).is_object());
    drop(c);
    // Dropping `second` must not remove the first router's socket.
    second.socket = unique_path("none", "sock");
    drop(second);
    assert!(first.socket.exists());
}

#[test]
fn help_mentions_the_control_socket() {
    let out = Command::new(BIN).arg("--help").output().expect("run router --help");
    assert!(out.status.success(), "{:?}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("--control-socket"), "{text}");
    assert!(text.contains("--shards"), "{text}");
}

#[test]
fn config_with_an_unknown_key_is_refused() {
    let config = unique_path("cfg", "toml");
    std::fs::write(&config, "shardz = 2\n").expect("write temp config");
    let socket = unique_path("cfgctl", "sock");
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .arg("--control-socket")
        .arg(&socket)
        .args(["--base-port", "0", "--no-pin"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn router with a bad config");
    let mut stderr = String::new();
    // The child exits at once on a bad config, closing stderr; a router that wrongly started
    // would be killed below, so this read is bounded by the kill.
    let mut pipe = child.stderr.take().expect("stderr is piped");
    let reader = std::thread::spawn(move || {
        let _ = pipe.read_to_string(&mut stderr);
        stderr
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().expect("poll child") {
            break Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = reader.join().expect("stderr reader thread");
    let _ = std::fs::remove_file(&config);
    let _ = std::fs::remove_file(&socket);
    let status = status.unwrap_or_else(|| panic!("router with a bad config kept running; stderr:\n{stderr}"));
    assert!(!status.success(), "bad config exited with {status}");
    assert!(stderr.contains("shardz"), "stderr should name the unknown key: {stderr}");
    assert!(stderr.contains(&*config.to_string_lossy()), "stderr should name the file: {stderr}");
}

#[test]
fn requests_of_another_schema_version_are_refused_with_version_mismatch() {
    let ours = schema::SCHEMA_VERSION;
    let router = RouterProcess::start();
    let mut c = router.connect();

    // The current version is served, like a request without "v".
    c.send_line(json!({ "v": ours, "id": 1, "method": "counters", "params": { "shard": 0 } }).to_string().as_bytes());
    let reply = c.read_reply();
    assert_eq!(reply["id"], json!(1), "{reply}");
    assert!(reply["result"]["datagrams_in"].is_u64(), "{reply}");

    // A client newer than the router: the router must be upgraded.
    c.send_line(json!({ "v": ours + 1, "id": 2, "method": "counters", "params": {} }).to_string().as_bytes());
    let reply = c.read_reply();
    assert_eq!(reply["id"], json!(2), "{reply}");
    let msg = error_of(&reply, "version_mismatch");
    assert!(msg.contains("upgrade the router"), "{msg}");
    assert!(msg.contains(&format!("v{}", ours + 1)) && msg.contains(&format!("v{ours}")), "{msg}");

    // An older client: the client must be upgraded. Checked before the method, so even a
    // method this version lacks gets the version error, and so does subscribe.
    c.send_line(json!({ "v": 0, "id": 3, "method": "teleport", "params": {} }).to_string().as_bytes());
    let msg = error_of(&c.read_reply(), "version_mismatch");
    assert!(msg.contains("upgrade the client"), "{msg}");
    c.send_line(json!({ "v": ours + 1, "id": 4, "method": "subscribe" }).to_string().as_bytes());
    error_of(&c.read_reply(), "version_mismatch");

    // A "v" that is not a version number is a bad request.
    for bad in [json!("1"), json!(-1), json!(1.5), json!(70000), Value::Null] {
        c.send_line(json!({ "v": bad, "id": 5, "method": "counters", "params": {} }).to_string().as_bytes());
        error_of(&c.read_reply(), "bad_request");
    }

    // The connection keeps working.
    assert!(c.ok("counters", json!({ "shard": 1 })).is_object());
}

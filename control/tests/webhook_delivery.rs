//! Webhook delivery end to end, over real HTTP on 127.0.0.1 and a real SQLite outbox: every event
//! of a two-peer session arrives once (after de-duplication by id), in order per room, signed and
//! with the endpoint's headers; a failing receiver gets the event on a retry while the room's
//! later events wait; a receiver that never succeeds is given up on, and the room moves on; and
//! `kill -9` of the real daemon between the state change and delivery loses nothing.
//!
//! The receiver is a small HTTP/1.1 server on std threads, written here independently of the
//! client under test.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed test

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::{Daemon, TempDir, free_port};
use control::webhooks::{Config, Dispatcher, verify_signature};
use serde_json::{Value, json};
use store::outbox::{Endpoint, EventRecord};
use store::session::{Activity, PeerRecord, TrackRecord};
use store::{Page, Store, Workspace};

// ---------------------------------------------------------------------------------------------
// The receiver.

#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
    at: Instant,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    fn id(&self) -> String {
        self.json()["id"].as_str().unwrap().to_owned()
    }
}

/// Decides the status of a request, given the ones received before it.
type Script = dyn Fn(&Recorded, &[Recorded]) -> u16 + Send + Sync;

struct Receiver {
    port: u16,
    requests: Arc<Mutex<Vec<Recorded>>>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    fn start(port: u16, script: Arc<Script>) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (reqs, stopped) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (reqs, script) = (reqs.clone(), script.clone());
                std::thread::spawn(move || serve(conn, &reqs, &*script));
            }
        });
        Receiver { port, requests, stop }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/in?src=test", self.port)
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// One request per connection (the client under test opens one per delivery); keep-alive
/// requests after the first are not read.
fn serve(conn: TcpStream, reqs: &Mutex<Vec<Recorded>>, script: &Script) {
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    if r.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("").to_owned());
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 {
            return;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap();
        let prev = headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        assert!(prev.is_none(), "header {k} sent twice");
    }
    let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; len];
    if r.read_exact(&mut body).is_err() {
        return;
    }
    let rec = Recorded { method, path, headers, body, at: Instant::now() };
    let status = {
        let mut all = reqs.lock().unwrap();
        let status = script(&rec, &all);
        all.push(rec);
        status
    };
    if status == 0 {
        // Never answer (the client's timeout is under test).
        std::thread::sleep(Duration::from_secs(30));
        return;
    }
    let mut conn = r.into_inner();
    let _ = write!(conn, "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
}

// ---------------------------------------------------------------------------------------------
// Events.

struct Platform {
    store: Store,
    ws: Workspace,
    secret: String,
}

fn platform(db: &Path, url: &str) -> Platform {
    let store = Store::open(db).unwrap();
    let ws = store.ensure_default_workspace().unwrap();
    let mut headers = serde_json::Map::new();
    headers.insert("X-Custom".into(), json!("custom-value"));
    headers.insert("Authorization".into(), json!("Bearer receiver-token"));
    let ep = store.set_workspace_webhook(&ws.id, Some(Endpoint { url: url.into(), headers, secret: String::new() }));
    let secret = ep.unwrap().unwrap().secret;
    Platform { store, ws, secret }
}

/// Join A, join B, A adds a track, A leaves, B leaves: seven events (session open and close,
/// two joins, the track, two leaves). Returns the room id.
fn two_peer_session(store: &Store, ws: &Workspace, room_name: &str) -> String {
    let room = store.upsert_room(&ws.id, room_name, None).unwrap();
    let t0 = SystemTime::now();
    let a = PeerRecord::new("peer-a", "user-a", "Alice", "host", t0);
    let b = PeerRecord::new("peer-b", "user-b", "Bob", "guest", t0);
    let track = TrackRecord {
        track_id: "track-1".into(),
        stream_id: "stream-1".into(),
        kind: "audio".into(),
        source: "regular".into(),
        mute: false,
        started_at: t0,
    };
    let left = |p: &PeerRecord| Activity::PeerLeft {
        peer: p.clone(),
        reason: "client request".into(),
        message: String::new(),
        session_waits: false,
    };
    for activity in [
        Activity::PeerJoined { peer: a.clone() },
        Activity::PeerJoined { peer: b.clone() },
        Activity::TrackAdded { peer: a.clone(), track },
        left(&a),
        left(&b),
    ] {
        record(store, &room.id, &activity);
    }
    room.id
}

/// Records one activity, retrying while another process (the daemon, marking deliveries) holds
/// the write lock: the store's deferred transaction fails at once with SQLITE_BUSY_SNAPSHOT
/// when another connection wrote since it began reading (busy_timeout does not cover that), and
/// rolls back, so a retry is safe.
fn record(store: &Store, room_id: &str, activity: &Activity) {
    for _ in 0..100 {
        match store.record_activity(room_id, activity, SystemTime::now()) {
            Ok(_) => return,
            Err(e) if format!("{e:?}").contains("DatabaseBusy") => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("recording {activity:?}: {e}"),
        }
    }
    panic!("the database stayed busy");
}

fn events(store: &Store, ws: &Workspace) -> Vec<EventRecord> {
    store.webhook_events(&ws.id, None, None, &Page::first(100)).unwrap().data
}

const SESSION: [&str; 7] = [
    "session.open.success",
    "peer.join.success",
    "peer.join.success",
    "track.add.success",
    "peer.leave.success",
    "peer.leave.success",
    "session.close.success",
];

/// Checks what the receiver got against the store's events: each once after de-duplication by
/// id, in the store's order within each room, correctly signed, with the custom headers.
fn check_received(got: &[Recorded], expected: &[EventRecord], secret: &str) {
    let mut first_seen: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    for r in got {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/hooks/in?src=test");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(r.header("user-agent").is_some_and(|u| !u.is_empty()));
        assert_eq!(r.header("x-custom"), Some("custom-value"));
        assert_eq!(r.header("authorization"), Some("Bearer receiver-token"));
        let id = r.id();
        assert_eq!(r.header("x-webhook-id"), Some(id.as_str()));
        let ts: u64 = r.header("x-webhook-timestamp").unwrap().parse().unwrap();
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        assert!(ts <= now && now - ts < 120, "timestamp {ts} vs now {now}");
        let sig = r.header("x-webhook-signature").unwrap();
        assert!(verify_signature(secret, sig, ts, &r.body), "bad signature {sig} on {id}");
        assert!(!verify_signature("another-secret", sig, ts, &r.body));
        let env = r.json();
        for field in ["version", "id", "app_id", "account_id", "template_id", "timestamp", "type", "data"] {
            assert!(env.get(field).is_some(), "envelope lacks {field}: {env}");
        }
        if seen.insert(id.clone()) {
            first_seen.push(id);
        }
    }
    let want: HashSet<&str> = expected.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(seen.iter().map(String::as_str).collect::<HashSet<_>>(), want, "every event, nothing else");
    // Per room, the order of first arrival is the order the store wrote them.
    let by_id: HashMap<&str, &EventRecord> = expected.iter().map(|e| (e.id.as_str(), e)).collect();
    let mut rooms: HashMap<Option<String>, Vec<&str>> = HashMap::new();
    for id in &first_seen {
        rooms.entry(by_id[id.as_str()].room_id.clone()).or_default().push(id.as_str());
    }
    for (room, got_order) in rooms {
        let want_order: Vec<&str> = expected.iter().filter(|e| e.room_id == room).map(|e| e.id.as_str()).collect();
        assert_eq!(got_order, want_order, "order in room {room:?}");
    }
}

async fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn all_settled(store: &Mutex<Store>, ws: &Workspace, n: usize) -> Option<Vec<EventRecord>> {
    let evs = events(&store.lock().unwrap(), ws);
    (evs.len() == n && evs.iter().all(|e| e.status == "delivered" || e.status == "failed")).then_some(evs)
}

fn fast_retries(_attempts: u32) -> Option<Duration> {
    Some(Duration::from_millis(100))
}

// ---------------------------------------------------------------------------------------------
// Through the library.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_once_in_order_signed_with_the_endpoint_headers() {
    let tmp = TempDir::new("webhook-all");
    let rx = Receiver::start(0, Arc::new(|_: &Recorded, _: &[Recorded]| 200));
    let p = platform(&tmp.path().join("platform.db"), &rx.url());
    // One room's events are written before the dispatcher starts, the other's while it runs.
    two_peer_session(&p.store, &p.ws, "before");
    let (ws, secret) = (p.ws.clone(), p.secret.clone());
    let store = Arc::new(Mutex::new(p.store));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let d = Dispatcher::new(store.clone(), Config::default()).unwrap();
    let wake = d.waker();
    let task = tokio::spawn(d.run(stop_rx));
    two_peer_session(&store.lock().unwrap(), &ws, "during");
    wake.notify_one();

    let evs = wait_for("every event delivered", 20, || all_settled(&store, &ws, 14)).await;
    assert!(evs.iter().all(|e| e.status == "delivered" && e.attempts == 1), "{evs:#?}");
    let kinds: Vec<&str> = evs.iter().filter(|e| e.room_id == evs[0].room_id).map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, SESSION);
    let got = rx.requests();
    assert_eq!(got.len(), 14, "each event once: nothing failed, so nothing is sent twice");
    check_received(&got, &evs, &secret);
    // The store's listing agrees: nothing undelivered.
    let undelivered = store.lock().unwrap().webhook_events(&ws.id, Some("undelivered"), None, &Page::first(100));
    assert!(undelivered.unwrap().data.is_empty());

    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("the dispatcher stops on shutdown").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_three_times_gets_the_event_and_later_events_wait() {
    let tmp = TempDir::new("webhook-retry");
    // The room's first event (session.open) fails three times with 500, then succeeds.
    let rx = Receiver::start(
        0,
        Arc::new(|r: &Recorded, before: &[Recorded]| {
            let is_open = r.json()["type"] == "session.open.success";
            let opens_before = before.iter().filter(|b| b.json()["type"] == "session.open.success").count();
            if is_open && opens_before < 3 { 500 } else { 200 }
        }),
    );
    let p = platform(&tmp.path().join("platform.db"), &rx.url());
    two_peer_session(&p.store, &p.ws, "flaky");
    let (ws, secret) = (p.ws.clone(), p.secret.clone());
    let store = Arc::new(Mutex::new(p.store));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let config = Config { retry: fast_retries, ..Config::default() };
    let task = tokio::spawn(Dispatcher::new(store.clone(), config).unwrap().run(stop_rx));

    let evs = wait_for("every event delivered", 20, || all_settled(&store, &ws, 7)).await;
    assert!(evs.iter().all(|e| e.status == "delivered"), "{evs:#?}");
    assert_eq!(evs[0].kind, "session.open.success");
    assert_eq!(evs[0].attempts, 4, "three failures and a success");
    assert!(evs[1..].iter().all(|e| e.attempts == 1));
    let got = rx.requests();
    assert_eq!(got.len(), 10);
    // The first four requests are the open event; nothing of the room went out before it got through.
    assert!(got[..4].iter().all(|r| r.json()["type"] == "session.open.success"));
    assert!(got[..4].iter().all(|r| r.id() == evs[0].id), "retries resend the same event id");
    // Retries are spaced by the schedule (100 ms here).
    for w in got[..4].windows(2) {
        assert!(w[1].at - w[0].at >= Duration::from_millis(90), "retry too soon: {:?}", w[1].at - w[0].at);
    }
    check_received(&got, &evs, &secret);
    stop_tx.send(true).unwrap();
    task.await.unwrap();
}

fn twice_then_give_up(attempts: u32) -> Option<Duration> {
    (attempts < 2).then_some(Duration::from_millis(50))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_is_given_up_after_its_retries_and_the_room_moves_on() {
    let tmp = TempDir::new("webhook-giveup");
    let rx = Receiver::start(0, Arc::new(|_: &Recorded, _: &[Recorded]| 503));
    let p = platform(&tmp.path().join("platform.db"), &rx.url());
    two_peer_session(&p.store, &p.ws, "down");
    let (ws, secret) = (p.ws.clone(), p.secret.clone());
    let store = Arc::new(Mutex::new(p.store));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let config = Config { retry: twice_then_give_up, ..Config::default() };
    let task = tokio::spawn(Dispatcher::new(store.clone(), config).unwrap().run(stop_rx));

    let evs = wait_for("every event given up", 20, || all_settled(&store, &ws, 7)).await;
    for e in &evs {
        assert_eq!((e.status.as_str(), e.attempts, e.last_error.as_deref()), ("failed", 2, Some("HTTP 503")));
    }
    let listed = store.lock().unwrap().webhook_events(&ws.id, Some("undelivered"), None, &Page::first(100)).unwrap();
    assert_eq!(listed.data.len(), 7, "given-up events are still listed");
    let got = rx.requests();
    assert_eq!(got.len(), 14);
    check_received(&got, &evs, &secret);
    stop_tx.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_silent_receivers_are_recorded_as_such() {
    let tmp = TempDir::new("webhook-errors");
    let silent = Receiver::start(0, Arc::new(|_: &Recorded, _: &[Recorded]| 0));
    let refused = format!("http://127.0.0.1:{}/", free_port());
    let p = platform(&tmp.path().join("platform.db"), &refused);
    let room_refused = two_peer_session(&p.store, &p.ws, "refused");
    // The second room sends to its own endpoint, which never answers.
    let mut attrs = serde_json::Map::new();
    attrs.insert("webhook".into(), json!({"url": silent.url(), "headers": {}, "secret": "room-secret"}));
    p.store.upsert_room_with(&p.ws.id, "silent", None, &attrs).unwrap();
    let room_silent = two_peer_session(&p.store, &p.ws, "silent");
    let ws = p.ws.clone();
    let store = Arc::new(Mutex::new(p.store));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let config = Config { retry: fast_retries, timeout: Duration::from_millis(300), ..Config::default() };
    let task = tokio::spawn(Dispatcher::new(store.clone(), config).unwrap().run(stop_rx));

    let error_of = |room: &str| -> Option<String> {
        let evs = events(&store.lock().unwrap(), &ws);
        let head = evs.iter().find(|e| e.room_id.as_deref() == Some(room))?;
        (head.attempts >= 2).then(|| head.last_error.clone().unwrap_or_default())
    };
    assert_eq!(wait_for("refused twice", 10, || error_of(&room_refused)).await, "connection refused");
    assert_eq!(wait_for("timed out twice", 10, || error_of(&room_silent)).await, "timed out");
    // The silent receiver saw the room's first event only, signed with the room's secret.
    let got = silent.requests();
    assert!(got.len() >= 2 && got.iter().all(|r| r.json()["type"] == "session.open.success"));
    let ts: u64 = got[0].header("x-webhook-timestamp").unwrap().parse().unwrap();
    assert!(verify_signature("room-secret", got[0].header("x-webhook-signature").unwrap(), ts, &got[0].body));
    stop_tx.send(true).unwrap();
    task.await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Through the real daemon.

fn stand_in(bin: &Path, name: &str) {
    let path = bin.join(name);
    std::fs::write(&path, "#!/bin/sh\nexec sleep 1000\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_daemon_before_delivery_loses_nothing() {
    let tmp = TempDir::new("webhook-kill");
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    stand_in(&bin, "router");
    stand_in(&bin, "signaling");
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hooks/in?src=test");
    // Events written before the daemon first starts, with the receiver down.
    let p = platform(&data.join("platform.db"), &url);
    let room = two_peer_session(&p.store, &p.ws, "first");

    let mut d = Daemon::start(&data, &bin, &tmp.path().join("none"), &[]);
    // The daemon tries and fails (nothing listens yet), then is killed before any success.
    let tried = || {
        let evs = events(&p.store, &p.ws);
        let head = evs.iter().find(|e| e.room_id.as_deref() == Some(room.as_str()))?;
        (head.attempts >= 1).then(|| head.last_error.clone())
    };
    assert_eq!(wait_for("a first failed attempt", 15, tried).await.as_deref(), Some("connection refused"));
    d.child.kill().unwrap(); // SIGKILL
    d.child.wait().unwrap();
    // More state changes while it is down.
    two_peer_session(&p.store, &p.ws, "second");

    let rx = Receiver::start(port, Arc::new(|_: &Recorded, _: &[Recorded]| 200));
    let _d = Daemon::start(&data, &bin, &tmp.path().join("none"), &[]);
    // And one while it runs again: found by the dispatcher's poll (another process wrote it).
    two_peer_session(&p.store, &p.ws, "third");
    let shared = Mutex::new(Store::open(&data.join("platform.db")).unwrap());
    let evs = wait_for("every event delivered after the restart", 30, || {
        all_settled(&shared, &p.ws, 21).filter(|evs| evs.iter().all(|e| e.status == "delivered"))
    })
    .await;
    check_received(&rx.requests(), &evs, &p.secret);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_delivery_sends_the_event_again_after_restart() {
    let tmp = TempDir::new("webhook-inflight");
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    stand_in(&bin, "router");
    stand_in(&bin, "signaling");
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    // The first request is held unanswered; the daemon dies while waiting for it.
    let rx = Receiver::start(0, Arc::new(|_: &Recorded, before: &[Recorded]| if before.is_empty() { 0 } else { 200 }));
    let p = platform(&data.join("platform.db"), &rx.url());
    two_peer_session(&p.store, &p.ws, "inflight");

    let mut d = Daemon::start(&data, &bin, &tmp.path().join("none"), &[]);
    wait_for("the first request", 15, || (!rx.requests().is_empty()).then_some(())).await;
    d.child.kill().unwrap(); // SIGKILL
    d.child.wait().unwrap();
    let first = rx.requests()[0].id();
    let evs = events(&p.store, &p.ws);
    assert_eq!(evs[0].id, first);
    assert_eq!((evs[0].status.as_str(), evs[0].attempts), ("pending", 0), "the attempt never finished");

    let _d = Daemon::start(&data, &bin, &tmp.path().join("none"), &[]);
    let evs = wait_for("every event delivered after the restart", 30, || {
        all_settled(&Mutex::new(Store::open(&data.join("platform.db")).unwrap()), &p.ws, 7)
    })
    .await;
    assert!(evs.iter().all(|e| e.status == "delivered"));
    let got = rx.requests();
    assert_eq!(got.iter().filter(|r| r.id() == first).count(), 2, "at least once: sent again after the crash");
    check_received(&got, &evs, &p.secret);
}

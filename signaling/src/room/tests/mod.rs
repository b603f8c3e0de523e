//! The room against an in-memory router: negotiation and permission flows without a router
//! process, a socket or shared memory.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use schema::api::{ConnectParams, ConsumeParams, ConsumerInfo, MediaKind, ProduceParams, TransportInfo};
use schema::ids::{ConsumerId, ProducerId, TransportId};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use util::LockExt;

use super::{HubHandle, Outbound, Room, RoomEnv, RoomMsg};
use crate::events::{RecordingSink, RoomEvent};
use crate::router_api::{RouterApi, RouterFuture};
use crate::rpc::{Incoming, code};

/// One call the room made of the router.
#[derive(Debug, Clone, PartialEq)]
enum Call {
    CreateTransport,
    Connect(TransportId),
    Produce(TransportId, MediaKind),
    Consume(TransportId, ProducerId),
    Close(TransportId),
    Other(&'static str),
}

/// A router that answers every call at once with canned values and remembers the calls.
#[derive(Debug, Default)]
struct FakeRouter {
    calls: Mutex<Vec<Call>>,
    produced: Mutex<BTreeMap<ProducerId, ProduceParams>>,
    next: Mutex<u32>,
    /// What `transport_link_stats` answers per transport (the default: no feedback yet).
    links: Mutex<BTreeMap<TransportId, schema::api::LinkStats>>,
}

impl FakeRouter {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock_unpoisoned().clone()
    }

    fn record(&self, call: Call) -> u32 {
        self.calls.lock_unpoisoned().push(call);
        let mut next = self.next.lock_unpoisoned();
        *next += 1;
        *next
    }

    fn done<'a, T: Send + 'a>(&self, value: T) -> RouterFuture<'a, T> {
        Box::pin(async move { Ok(value) })
    }
}

impl RouterApi for FakeRouter {
    fn create_transport(&self, _shard: Option<u8>) -> RouterFuture<'_, TransportInfo> {
        let id = self.record(Call::CreateTransport);
        self.done(TransportInfo {
            id: TransportId(id),
            ice_ufrag: "rtrU".into(),
            ice_pwd: "routerpasswordrouterpassword".into(),
            ice_lite: true,
            fingerprint: "sha-256 01:23:45:67:89:AB:CD:EF".into(),
            dtls_role: "server".into(),
            candidates: vec![schema::api::IceCandidate::udp(std::net::SocketAddr::from(([192, 0, 2, 1], 40000)))],
        })
    }

    fn connect_transport(&self, transport: TransportId, _params: ConnectParams) -> RouterFuture<'_, ()> {
        self.record(Call::Connect(transport));
        self.done(())
    }

    fn produce(&self, transport: TransportId, params: ProduceParams) -> RouterFuture<'_, ProducerId> {
        let id = ProducerId(self.record(Call::Produce(transport, params.kind)));
        self.produced.lock_unpoisoned().insert(id, params);
        self.done(id)
    }

    fn consume(&self, transport: TransportId, params: ConsumeParams) -> RouterFuture<'_, ConsumerInfo> {
        let id = ConsumerId(self.record(Call::Consume(transport, params.producer)));
        let produced = self.produced.lock_unpoisoned().get(&params.producer).cloned();
        let Some(p) = produced else {
            return Box::pin(async { Err(crate::router_link::CallError::Link("no such producer".into())) });
        };
        self.done(ConsumerInfo {
            id,
            producer: params.producer,
            kind: p.kind,
            codec: p.codec,
            clock_rate: p.clock_rate,
            ssrc: 1000 + id.0,
            payload_type: p.payload_type,
            rtx_ssrc: None,
            rtx_payload_type: None,
        })
    }

    fn pause_consumer(&self, _consumer: ConsumerId, _paused: bool) -> RouterFuture<'_, ()> {
        self.record(Call::Other("pause_consumer"));
        self.done(())
    }

    fn set_preferred_layer(&self, _consumer: ConsumerId, _layer: u8) -> RouterFuture<'_, ()> {
        self.record(Call::Other("set_preferred_layer"));
        self.done(())
    }

    fn set_producer_priority(&self, _producer: ProducerId, _priority: u8) -> RouterFuture<'_, ()> {
        self.record(Call::Other("set_producer_priority"));
        self.done(())
    }

    fn set_transport_max_bitrate(&self, _transport: TransportId, _bps: Option<u64>) -> RouterFuture<'_, ()> {
        self.record(Call::Other("set_transport_max_bitrate"));
        self.done(())
    }

    fn transport_link_stats(&self, transport: TransportId) -> RouterFuture<'_, schema::api::LinkStats> {
        self.record(Call::Other("transport_link_stats"));
        let stats = self.links.lock_unpoisoned().get(&transport).copied().unwrap_or_default();
        self.done(stats)
    }

    fn close_consumer(&self, _consumer: ConsumerId) -> RouterFuture<'_, ()> {
        self.record(Call::Other("close_consumer"));
        self.done(())
    }

    fn close_producer(&self, _producer: ProducerId) -> RouterFuture<'_, ()> {
        self.record(Call::Other("close_producer"));
        self.done(())
    }

    fn close_transport(&self, transport: TransportId) -> RouterFuture<'_, ()> {
        self.record(Call::Close(transport));
        self.done(())
    }

    fn open_data_channel<'a>(&'a self, _transport: TransportId, _label: &'a str) -> RouterFuture<'a, ()> {
        self.record(Call::Other("open_data_channel"));
        self.done(())
    }

    fn send_data<'a>(&'a self, _transport: TransportId, _label: &'a str, _text: &'a str) -> RouterFuture<'a, ()> {
        self.record(Call::Other("send_data"));
        self.done(())
    }

    fn start_tap(
        &self,
        _producer: ProducerId,
        _tap: u32,
        _meta: String,
        _reader: schema::tap::TapReader,
    ) -> RouterFuture<'_, ()> {
        self.record(Call::Other("start_tap"));
        self.done(())
    }

    fn stop_tap(&self, _producer: ProducerId, _tap: Option<u32>) -> RouterFuture<'_, ()> {
        self.record(Call::Other("stop_tap"));
        self.done(())
    }
}

const SESSION: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";

/// One sending m-line of a client offer (`msid` names its track).
fn m_line(kind: &str, mid: u8, rtpmap: &str, track: &str, ssrc: u32) -> String {
    let pt = rtpmap.split(' ').next().unwrap_or_default();
    format!(
        "m={kind} 9 UDP/TLS/RTP/SAVPF {pt}\r\nc=IN IP4 0.0.0.0\r\na=mid:{mid}\r\na=sendonly\r\n\
         a=ice-ufrag:cUfr\r\na=ice-pwd:clientpasswordclientpass\r\na=fingerprint:sha-256 01:02\r\n\
         a=setup:actpass\r\na=rtcp-mux\r\na=msid:stream1 {track}\r\na=rtpmap:{rtpmap}\r\n\
         a=ssrc:{ssrc} cname:x\r\n"
    )
}

fn audio_offer() -> String {
    format!("{SESSION}a=group:BUNDLE 0\r\n{}", m_line("audio", 0, "111 opus/48000/2", "audio1", 1234))
}

fn audio_video_offer() -> String {
    format!(
        "{SESSION}a=group:BUNDLE 0 1\r\n{}{}",
        m_line("audio", 0, "111 opus/48000/2", "audio1", 1234),
        m_line("video", 1, "96 VP8/90000", "video1", 5678)
    )
}

struct TestRoom {
    room: Room,
    router: Arc<FakeRouter>,
    sink: Arc<RecordingSink>,
}

fn test_room() -> TestRoom {
    let router = Arc::new(FakeRouter::default());
    let sink = Arc::new(RecordingSink::default());
    let env = RoomEnv {
        router: router.clone(),
        events: sink.clone(),
        store: None,
        max_session: Duration::from_secs(3600),
        state_dir: None,
        compositor_jobs_dir: None,
        hub: HubHandle::default(),
    };
    let template = store::Template {
        id: "tmpl".into(),
        name: "default".into(),
        workspace_id: "ws".into(),
        roles: store::role::default_roles(),
        parts: store::TemplateParts::default(),
        created_at: 0,
        updated_at: 0,
    };
    TestRoom { room: Room::new("room1".into(), "standup".into(), template, env), router, sink }
}

impl TestRoom {
    /// A socket for `peer_id` with `role`; what the room sends it arrives on the receiver.
    async fn attach(&mut self, peer_id: &str, role: &str) -> mpsc::UnboundedReceiver<Outbound> {
        let (out, rx) = mpsc::unbounded_channel();
        let msg = RoomMsg::Attach { peer_id: peer_id.into(), conn: 1, user_id: peer_id.into(), role: role.into(), out };
        self.room.handle(msg).await;
        rx
    }

    /// The peer's `leave` notification.
    async fn leave(&mut self, peer_id: &str) {
        let msg = Incoming::Notify { method: "leave".into(), params: json!({}) };
        self.room.handle(RoomMsg::Rpc { peer_id: peer_id.into(), conn: 1, msg, received: Instant::now() }).await;
        self.room.flush_events().await;
    }

    async fn request(&mut self, peer_id: &str, id: &str, method: &str, params: Value) {
        let msg = Incoming::Request { id: json!(id), method: method.into(), params };
        self.room.handle(RoomMsg::Rpc { peer_id: peer_id.into(), conn: 1, msg, received: Instant::now() }).await;
        self.room.flush_events().await;
    }
}

/// The response to request `id` among what the socket got so far.
fn response(rx: &mut mpsc::UnboundedReceiver<Outbound>, id: &str) -> Value {
    while let Ok(out) = rx.try_recv() {
        if let Outbound::Text(text) = out {
            let v: Value = serde_json::from_str(&text).expect("the room sends JSON");
            if v["id"] == id {
                return v;
            }
        }
    }
    panic!("no response to {id}");
}

fn produced_kinds(calls: &[Call]) -> Vec<MediaKind> {
    calls
        .iter()
        .filter_map(|c| match c {
            Call::Produce(_, kind) => Some(*kind),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_role_without_video_is_refused_its_video_offer_and_nothing_is_produced() {
    let mut t = test_room();
    let mut rx = t.attach("ann", "audio-only").await;
    t.request("ann", "j", "join", json!({ "offer": { "type": "offer", "sdp": audio_offer() }, "name": "Ann" })).await;
    let joined = response(&mut rx, "j");
    assert_eq!(joined["result"]["type"], "answer", "{joined}");

    let offer = json!({ "desc": { "type": "offer", "sdp": audio_video_offer() } });
    t.request("ann", "o", "offer", offer).await;
    let refused = response(&mut rx, "o");
    assert_eq!(refused["error"]["code"], code::FORBIDDEN, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("role 'audio-only' may not publish"), "{message}");
    assert!(produced_kinds(&t.router.calls()).is_empty(), "{:?}", t.router.calls());
    assert!(!t.sink.events().iter().any(|e| matches!(e, RoomEvent::TrackAdded { .. })));
}

#[tokio::test]
async fn a_permitted_offer_is_answered_and_produces_each_track() {
    let mut t = test_room();
    let mut rx = t.attach("bob", "host").await;
    t.request("bob", "j", "join", json!({ "offer": { "type": "offer", "sdp": audio_offer() } })).await;
    assert_eq!(response(&mut rx, "j")["result"]["type"], "answer");
    let calls = t.router.calls();
    // The publish transport (connected to the join offer), then the subscribe transport.
    assert_eq!(calls[..2], [Call::CreateTransport, Call::Connect(TransportId(1))], "{calls:?}");
    assert!(calls.contains(&Call::Other("open_data_channel")), "{calls:?}");

    let offer = json!({ "desc": { "type": "offer", "sdp": audio_video_offer() } });
    t.request("bob", "o", "offer", offer).await;
    let answered = response(&mut rx, "o");
    let sdp = answered["result"]["sdp"].as_str().unwrap_or_default();
    assert!(sdp.contains("m=audio") && sdp.contains("m=video") && sdp.contains("a=recvonly"), "{answered}");
    let calls = t.router.calls();
    assert_eq!(produced_kinds(&calls), [MediaKind::Audio, MediaKind::Video]);
    assert!(calls.iter().all(|c| !matches!(c, Call::Produce(t, _) if *t != TransportId(1))), "{calls:?}");
    let added = t.sink.events().iter().filter(|e| matches!(e, RoomEvent::TrackAdded { .. })).count();
    assert_eq!(added, 2);
}

#[tokio::test]
async fn a_bad_param_type_keeps_its_own_refusal() {
    let mut t = test_room();
    let mut rx = t.attach("cy", "host").await;
    t.request("cy", "j", "join", json!({ "offer": { "sdp": audio_offer() }, "name": 5 })).await;
    let refused = response(&mut rx, "j");
    assert_eq!(refused["error"]["code"], code::INVALID_PARAMS, "{refused}");
    assert_eq!(refused["error"]["message"], "name must be a string");
    t.request("cy", "j2", "join", json!({ "offer": "v=0" })).await;
    let refused = response(&mut rx, "j2");
    assert_eq!(refused["error"]["code"], code::BAD_REQUEST, "{refused}");
    assert!(t.router.calls().is_empty(), "refused before any router call: {:?}", t.router.calls());
}

// ---- WHIP and WHEP (`http_peers.rs`) ---------------------------------------------------

impl TestRoom {
    async fn http(&mut self, op: super::HttpOp) -> Result<super::HttpReply, super::Refusal> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.room.handle(RoomMsg::Http { op, reply }).await;
        self.room.flush_events().await;
        answer.await.expect("the room answers")
    }
}

#[tokio::test]
async fn a_whip_publisher_is_an_ordinary_peer_to_the_others_and_leaves_on_delete() {
    use super::{HttpOp, HttpPeerKind, HttpReply};
    let mut t = test_room();
    let mut rx = t.attach("sub", "guest").await;
    t.request("sub", "j", "join", json!({ "offer": { "type": "offer", "sdp": audio_offer() } })).await;
    // A WHIP client that writes no msid: its tracks are named by their mids.
    let offer = audio_video_offer().replace("a=msid:stream1 audio1\r\n", "").replace("a=msid:stream1 video1\r\n", "");
    let op = HttpOp::Publish { user_id: "obs".into(), role: "host".into(), name: "OBS".into(), offer };
    let HttpReply::Created { peer_id, sdp } = t.http(op).await.expect("published") else { panic!("no resource") };
    assert!(sdp.contains("a=recvonly") && !sdp.contains("m=application"), "{sdp}");
    let joined = pushes(&mut rx, "on-peer-join");
    assert!(joined.iter().any(|p| p["peer_id"] == peer_id.as_str() && p["info"]["name"] == "OBS"), "{joined:?}");
    assert_eq!(produced_kinds(&t.router.calls()), [MediaKind::Audio, MediaKind::Video], "the join produced nothing");
    let events = t.sink.events();
    assert!(events.iter().any(|e| matches!(e, RoomEvent::PeerJoined { peer, .. } if peer.peer_id == peer_id)));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, RoomEvent::TrackAdded { track, .. } if track.track_id == format!("{peer_id}-1")))
    );

    // Only its own user may end it, and only as WHIP.
    let wrong = HttpOp::End { kind: HttpPeerKind::Whip, peer_id: peer_id.clone(), user_id: "mallory".into() };
    assert_eq!(t.http(wrong).await.unwrap_err().code, code::NOT_FOUND);
    let as_whep = HttpOp::End { kind: HttpPeerKind::Whep, peer_id: peer_id.clone(), user_id: "obs".into() };
    assert_eq!(t.http(as_whep).await.unwrap_err().code, code::NOT_FOUND);
    let end = HttpOp::End { kind: HttpPeerKind::Whip, peer_id: peer_id.clone(), user_id: "obs".into() };
    assert_eq!(t.http(end).await.unwrap(), HttpReply::Done);
    assert!(pushes(&mut rx, "on-peer-leave").iter().any(|p| p["peer_id"] == peer_id.as_str()));
    assert!(!t.room.peers.contains_key(&peer_id));
}

#[tokio::test]
async fn a_socket_cannot_take_a_whip_peer_over() {
    use super::{HttpOp, HttpReply};
    let mut t = test_room();
    let op = HttpOp::Publish { user_id: "obs".into(), role: "host".into(), name: String::new(), offer: audio_offer() };
    let HttpReply::Created { peer_id, .. } = t.http(op).await.expect("published") else { panic!("no resource") };
    assert_eq!(t.room.peers[&peer_id].name, "obs", "no name: the user id");
    let (out, mut rx) = mpsc::unbounded_channel();
    let attach = RoomMsg::Attach { peer_id: peer_id.clone(), conn: 9, user_id: "obs".into(), role: "host".into(), out };
    t.room.handle(attach).await;
    let errors = pushes(&mut rx, "on-error");
    assert_eq!(errors.first().map(|e| e["code"].clone()), Some(json!(code::CONFLICT)), "{errors:?}");
    assert!(t.room.peers[&peer_id].out.is_none(), "the WHIP peer keeps no socket");
}

#[tokio::test]
async fn a_whep_player_gets_consumers_with_its_own_numbers_and_is_seen_by_nobody() {
    use super::{HttpOp, HttpReply};
    let mut t = test_room();
    let mut rx = t.attach("pub", "host").await;
    t.request("pub", "j", "join", json!({ "offer": { "type": "offer", "sdp": audio_offer() } })).await;
    t.request("pub", "o", "offer", json!({ "desc": { "type": "offer", "sdp": audio_video_offer() } })).await;
    let _ = pushes(&mut rx, "on-peer-join");
    let offer = format!(
        "{SESSION}a=group:BUNDLE a v\r\n\
         m=audio 9 UDP/TLS/RTP/SAVPF 109\r\nc=IN IP4 0.0.0.0\r\na=mid:a\r\na=recvonly\r\na=rtcp-mux\r\n\
         a=ice-ufrag:pUfr\r\na=ice-pwd:playerpasswordplayerpass\r\na=fingerprint:sha-256 01:02\r\na=setup:actpass\r\n\
         a=rtpmap:109 opus/48000/2\r\n\
         m=video 9 UDP/TLS/RTP/SAVPF 120\r\nc=IN IP4 0.0.0.0\r\na=mid:v\r\na=recvonly\r\na=rtcp-mux\r\n\
         a=rtpmap:120 VP8/90000\r\n"
    );
    let before = t.router.calls().len();
    let op = HttpOp::Play { user_id: "viewer".into(), role: "guest".into(), source: None, offer };
    let HttpReply::Created { sdp, .. } = t.http(op).await.expect("playing") else { panic!("no resource") };
    assert!(sdp.contains("a=sendonly") && sdp.contains("a=mid:a") && sdp.contains("a=mid:v"), "{sdp}");
    let calls = t.router.calls()[before..].to_vec();
    assert_eq!(calls.iter().filter(|c| matches!(c, Call::Consume(..))).count(), 2, "{calls:?}");
    assert!(pushes(&mut rx, "on-peer-join").is_empty(), "the player is not a peer to the others");
    assert!(
        !t.sink.events().iter().any(|e| matches!(e, RoomEvent::PeerJoined { peer, .. } if peer.user_id == "viewer"))
    );

    let nobody =
        HttpOp::Play { user_id: "v2".into(), role: "guest".into(), source: Some("ghost".into()), offer: String::new() };
    assert_eq!(t.http(nobody).await.unwrap_err().code, code::NOT_FOUND);
    let bad = HttpOp::Play { user_id: "v3".into(), role: "guest".into(), source: None, offer: "v=0\r\n".into() };
    assert_eq!(t.http(bad).await.unwrap_err().code, code::BAD_REQUEST);
}

// ---- Recording and streaming (`jobs.rs`) ----------------------------------------------

/// A room on a real SQLite store, with a compositor jobs directory; both under a fresh
/// directory.
fn test_room_with_store(name: &str) -> (TestRoom, Arc<Mutex<store::Store>>, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("signaling-jobs-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let jobs_dir = dir.join("jobs");
    std::fs::create_dir_all(&jobs_dir).unwrap();
    let store = Arc::new(Mutex::new(store::Store::open(&dir.join("db.sqlite")).unwrap()));
    let mut t = test_room();
    t.room.env.store = Some(store.clone());
    t.room.env.compositor_jobs_dir = Some(jobs_dir.clone());
    (t, store, jobs_dir)
}

impl TestRoom {
    async fn join(&mut self, peer_id: &str, role: &str) -> mpsc::UnboundedReceiver<Outbound> {
        let mut rx = self.attach(peer_id, role).await;
        self.request(peer_id, "j", "join", json!({ "offer": { "type": "offer", "sdp": audio_offer() } })).await;
        assert_eq!(response(&mut rx, "j")["result"]["type"], "answer");
        rx
    }
}

/// Every push of `method` the socket got so far (other messages are dropped).
fn pushes(rx: &mut mpsc::UnboundedReceiver<Outbound>, method: &str) -> Vec<Value> {
    let mut got = Vec::new();
    while let Ok(out) = rx.try_recv() {
        if let Outbound::Text(text) = out {
            let v: Value = serde_json::from_str(&text).expect("the room sends JSON");
            if v["method"] == method {
                got.push(v["params"].clone());
            }
        }
    }
    got
}

/// The response to `id`, keeping the other messages for later.
fn response_keep(rx: &mut mpsc::UnboundedReceiver<Outbound>, id: &str, kept: &mut Vec<Value>) -> Value {
    while let Ok(out) = rx.try_recv() {
        if let Outbound::Text(text) = out {
            let v: Value = serde_json::from_str(&text).expect("the room sends JSON");
            if v["id"] == id {
                return v;
            }
            kept.push(v);
        }
    }
    panic!("no response to {id}");
}

fn live(store: &Arc<Mutex<store::Store>>) -> Vec<store::recording::Recording> {
    store.lock_unpoisoned().live_recordings_of_room("ws", "room1").unwrap()
}

#[tokio::test]
async fn rtmp_start_with_record_creates_a_composite_job_and_tells_everyone_it_is_initialised() {
    let (mut t, store, _) = test_room_with_store("composite");
    let mut host = t.join("host1", "host").await;
    let mut guest = t.join("guest1", "guest").await;
    let _ = pushes(&mut host, "");
    t.request("host1", "r", "rtmp-start", json!({ "record": true, "meeting_url": "https://m.test/x" })).await;
    let mut seen = Vec::new();
    let ok = response_keep(&mut host, "r", &mut seen);
    assert!(ok["result"]["job_id"].is_string(), "{ok}");
    let jobs = live(&store);
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        (jobs[0].kind.as_str(), jobs[0].status.as_str(), jobs[0].started_by.as_str()),
        ("composite", "starting", "host1")
    );
    assert_eq!(jobs[0].spec["meeting_url"], "https://m.test/x");
    let note = seen.iter().find(|v| v["method"] == "on-record-update").expect("on-record-update to the host");
    assert_eq!(note["params"]["type"], "Browser");
    assert_eq!(note["params"]["state"], "initialised");
    let notes = pushes(&mut guest, "on-record-update");
    assert_eq!(notes.len(), 1, "{notes:?}");

    // One composite at a time; the guest may not record at all.
    t.request("host1", "r2", "rtmp-start", json!({ "record": true })).await;
    let refused = response(&mut host, "r2");
    assert_eq!(refused["error"]["code"], code::CONFLICT, "{refused}");
    t.request("guest1", "g", "rtmp-start", json!({ "record": true })).await;
    let refused = response(&mut guest, "g");
    assert_eq!(refused["error"]["code"], code::FORBIDDEN, "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap_or_default().contains("browserRecording"), "{refused}");
    assert_eq!(live(&store).len(), 1);
}

#[tokio::test]
async fn bad_rtmp_starts_are_refused_with_4xx_and_create_nothing() {
    let (mut t, store, _) = test_room_with_store("rtmp-bad");
    let mut host = t.join("host1", "host").await;
    let cases = [
        json!({ "record": false }),
        json!({ "rtmp_urls": ["http://example.test/live"], "record": false }),
        json!({ "rtmp_urls": (0..6).map(|i| format!("rtmp://h/live/{i}")).collect::<Vec<_>>(), "record": false }),
        json!({ "rtmp_urls": "rtmp://h/live", "record": false }),
        json!({ "record": true, "resolution": { "width": 1281, "height": 720 } }),
        json!({ "record": "yes" }),
    ];
    for (i, params) in cases.iter().enumerate() {
        let id = format!("b{i}");
        t.request("host1", &id, "rtmp-start", params.clone()).await;
        let refused = response(&mut host, &id);
        assert_eq!(refused["error"]["code"], code::BAD_REQUEST, "{params}: {refused}");
    }
    assert!(live(&store).is_empty());
    // A good URL makes an RTMP job; stopping with nothing else running stops just it.
    t.request("host1", "ok", "rtmp-start", json!({ "rtmp_urls": ["rtmp://127.0.0.1:1935/live/k"], "record": false }))
        .await;
    assert!(response(&mut host, "ok")["result"].is_object());
    let jobs = live(&store);
    assert_eq!(
        (jobs[0].kind.as_str(), jobs[0].spec["rtmp_urls"][0].as_str()),
        ("rtmp", Some("rtmp://127.0.0.1:1935/live/k"))
    );
}

#[tokio::test]
async fn rtmp_stop_sets_the_jobs_stopping_by_the_peer_and_a_second_stop_finds_nothing() {
    let (mut t, store, _) = test_room_with_store("stop");
    let mut host = t.join("host1", "host").await;
    t.request("host1", "r", "rtmp-start", json!({ "record": true })).await;
    assert!(response(&mut host, "r")["result"].is_object());
    // Control starts it: the room taps its tracks for the compositor.
    let id = live(&store)[0].id.clone();
    let op = super::AdminOp::StartRecording { recording_id: id, tap: 7, reader: schema::tap::TapReader::Compositor };
    let (reply, answer) = tokio::sync::oneshot::channel();
    t.room.handle(RoomMsg::Admin { op, reply }).await;
    assert!(answer.await.unwrap().is_ok());
    t.request("host1", "s", "rtmp-stop", json!({})).await;
    let mut seen = Vec::new();
    let ok = response_keep(&mut host, "s", &mut seen);
    assert_eq!(ok["result"]["stopped"], 1, "{ok}");
    let jobs = live(&store);
    assert_eq!((jobs[0].status.as_str(), jobs[0].stopped_by.as_str()), ("stopping", "host1"));
    let note = seen.iter().rev().find(|v| v["method"] == "on-record-update").expect("the stop is told");
    assert_eq!(note["params"]["state"], "stopped");
    t.request("host1", "s2", "rtmp-stop", json!({})).await;
    // The job is still live (stopping) until control completes it: nothing more to do.
    assert!(response(&mut host, "s2")["result"].is_object());
    // Its taps run on until control says the job ended (the compositor closes its outputs with
    // every input there).
    assert!(t.room.recordings.iter().any(|a| a.recording_id == jobs[0].id));
    store.lock_unpoisoned().set_recording_status(&jobs[0].id, "completed", "", None, 1).unwrap();
    let ended: super::JobState =
        serde_json::from_value(json!({ "id": jobs[0].id, "kind": "composite", "status": "completed" })).unwrap();
    let (reply, answer) = tokio::sync::oneshot::channel();
    t.room.handle(RoomMsg::Admin { op: super::AdminOp::JobState(ended), reply }).await;
    assert!(answer.await.unwrap().is_ok());
    assert!(t.room.recordings.is_empty(), "{:?}", t.room.recordings);
    t.request("host1", "s3", "rtmp-stop", json!({})).await;
    assert_eq!(response(&mut host, "s3")["error"]["code"], code::NOT_FOUND);
}

#[tokio::test]
async fn hls_needs_its_permission_and_timed_metadata_needs_a_running_stream() {
    let (mut t, store, jobs_dir) = test_room_with_store("hls");
    let mut host = t.join("host1", "host").await;
    let mut guest = t.join("guest1", "guest").await;
    t.request("guest1", "g", "hls-start", json!({})).await;
    let refused = response(&mut guest, "g");
    assert_eq!(refused["error"]["code"], code::FORBIDDEN, "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap_or_default().contains("hlsStreaming"), "{refused}");

    let cue = json!({ "metadata_objs": [{ "payload": "hello", "duration": 5 }] });
    t.request("host1", "m0", "hls-timed-metadata", cue.clone()).await;
    assert_eq!(response(&mut host, "m0")["error"]["code"], code::NOT_FOUND);

    t.request(
        "host1",
        "h",
        "hls-start",
        json!({ "variants": [{ "meeting_url": "https://m.test/v" }], "hls_recording": { "hls_vod": true } }),
    )
    .await;
    assert!(response(&mut host, "h")["result"].is_object());
    let job = live(&store).remove(0);
    assert_eq!(
        (job.kind.as_str(), job.spec["hls_vod"].as_bool(), job.spec["meeting_url"].as_str()),
        ("hls", Some(true), Some("https://m.test/v"))
    );
    t.request("host1", "h2", "hls-start", json!({})).await;
    assert_eq!(response(&mut host, "h2")["error"]["code"], code::CONFLICT);

    // Starting, not running yet: the compositor has no stream to put a cue in.
    t.request("host1", "m1", "hls-timed-metadata", cue.clone()).await;
    assert_eq!(response(&mut host, "m1")["error"]["code"], code::CONFLICT);
    store.lock_unpoisoned().set_recording_status(&job.id, "running", "", None, 2).unwrap();
    for (i, bad) in [
        json!({ "metadata_objs": [] }),
        json!({ "metadata_objs": [{ "payload": "", "duration": 5 }] }),
        json!({ "metadata_objs": [{ "payload": "x".repeat(101), "duration": 5 }] }),
        json!({ "metadata_objs": [{ "payload": "x", "duration": 0 }] }),
        json!({ "metadata_objs": "x" }),
    ]
    .iter()
    .enumerate()
    {
        let id = format!("bad{i}");
        t.request("host1", &id, "hls-timed-metadata", bad.clone()).await;
        assert_eq!(response(&mut host, &id)["error"]["code"], code::BAD_REQUEST, "{bad}");
    }
    t.request("guest1", "gm", "hls-timed-metadata", cue).await;
    assert_eq!(response(&mut guest, "gm")["error"]["code"], code::FORBIDDEN);
    let two = json!({ "metadata_objs": [{ "payload": "one", "duration": 5 }, { "payload": "two", "duration": 7 }] });
    t.request("host1", "m2", "hls-timed-metadata", two).await;
    assert_eq!(response(&mut host, "m2")["result"]["job_id"], job.id);
    let mut cues: Vec<(u64, schema::compositor::Cue)> = std::fs::read_dir(&jobs_dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name.strip_prefix(&format!("{}.cue.", job.id))?.strip_suffix(".json")?.parse().ok()?;
            Some((n, serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap()))
        })
        .collect();
    cues.sort_by_key(|(n, _)| *n);
    let got: Vec<(&str, u32)> = cues.iter().map(|(_, c)| (c.payload.as_str(), c.duration_seconds)).collect();
    assert_eq!(got, [("one", 5), ("two", 7)]);

    t.request("host1", "hs", "hls-stop", json!({})).await;
    assert_eq!(response(&mut host, "hs")["result"]["stopped"], 1);
    assert_eq!(live(&store)[0].status, "stopping");
}

#[tokio::test]
async fn job_states_become_the_sdk_notifications_and_a_joining_peer_sees_the_live_jobs() {
    let (mut t, store, _) = test_room_with_store("states");
    let mut host = t.join("host1", "host").await;
    t.request("host1", "h", "hls-start", json!({})).await;
    assert!(response(&mut host, "h")["result"].is_object());
    let mut job = live(&store).remove(0);
    let url = format!("https://x.test/hls/{}/master.m3u8", job.id);
    let mut spec = job.spec.clone();
    spec["playback_url"] = json!(url);
    store.lock_unpoisoned().set_recording_spec(&job.id, &spec).unwrap();
    store.lock_unpoisoned().set_recording_status(&job.id, "running", "", None, 1_700_000_000_000).unwrap();
    job = store.lock_unpoisoned().recording_by_id(&job.id).unwrap().unwrap();
    let _ = pushes(&mut host, "");

    // Control's job_state: what `Recorder::announce` sends.
    let state: super::JobState = serde_json::from_value(json!({
        "id": job.id, "kind": "hls", "status": "running", "created_at": job.created_at,
        "started_at": job.started_at, "started_by": "host1", "error": "", "playback_url": url,
        "rtmp_urls": [], "recording": false, "hls_vod": false, "playlist_type": "live",
    }))
    .unwrap();
    let (reply, answer) = tokio::sync::oneshot::channel();
    t.room.handle(RoomMsg::Admin { op: super::AdminOp::JobState(state), reply }).await;
    assert!(answer.await.unwrap().is_ok());
    let hls = pushes(&mut host, "on-hls-update");
    assert_eq!(hls.len(), 1, "{hls:?}");
    assert_eq!(hls[0]["enabled"], true);
    assert_eq!(hls[0]["variants"][0]["url"], url);
    assert_eq!(hls[0]["variants"][0]["state"], "started");
    assert_eq!(hls[0]["variants"][0]["started_at"], 1_700_000_000_000_i64);

    // A composite that failed: the error is shown.
    let failed: super::JobState =
        serde_json::from_value(json!({ "id": "c1", "kind": "composite", "status": "failed", "error": "no encoder" }))
            .unwrap();
    let (reply, _answer) = tokio::sync::oneshot::channel();
    t.room.handle(RoomMsg::Admin { op: super::AdminOp::JobState(failed), reply }).await;
    let rec = pushes(&mut host, "on-record-update");
    assert_eq!(rec[0]["type"], "Browser");
    assert_eq!(rec[0]["state"], "failed");
    assert_eq!(rec[0]["error"]["message"], "no encoder");
    assert!(rec[0]["error"]["code"].as_i64().is_some_and(|c| c != 0));

    // A peer joining now gets the running HLS stream in its peer-list's room.
    let mut late = t.attach("late", "guest").await;
    t.request("late", "j", "join", json!({ "offer": { "type": "offer", "sdp": audio_offer() } })).await;
    let list = pushes(&mut late, "peer-list");
    let room = &list[0]["room"];
    assert_eq!(room["streaming"]["hls"]["enabled"], true, "{room}");
    assert_eq!(room["streaming"]["hls"]["variants"][0]["url"], url, "{room}");
    assert_eq!(room["streaming"]["rtmp"]["state"], "none", "{room}");
    assert_eq!(room["recording"]["browser"]["enabled"], false, "{room}");
}

/// The session's ends, by name: how many `SessionEnded` events the room emitted.
fn sessions_ended(sink: &RecordingSink) -> usize {
    sink.events().iter().filter(|e| matches!(e, RoomEvent::SessionEnded { .. })).count()
}

#[tokio::test]
async fn a_stream_with_an_auto_stop_timeout_keeps_the_empty_room_s_session_until_it_passes() {
    let (mut t, store, _) = test_room_with_store("linger");
    t.room.template.parts.destinations = json!({ "hlsDestinations": { "main": { "autoStopTimeout": 30 } } });
    let mut host = t.join("host1", "host").await;
    t.request("host1", "h", "hls-start", json!({})).await;
    assert!(response(&mut host, "h")["result"].is_object());
    let session = t.room.session.clone().expect("a session").0;

    // The last peer leaves: the session stays open for the stream, and a peer who comes back
    // within the timeout joins the same session (the job goes on, tapping the new peer).
    t.leave("host1").await;
    assert_eq!(sessions_ended(&t.sink), 0);
    let until = t.room.linger_until.expect("the session waits");
    let _back = t.join("host2", "host").await;
    assert_eq!(t.room.session.as_ref().map(|s| s.0.as_str()), Some(session.as_str()));
    assert_eq!(t.room.linger_until, None);

    // Gone again: still open one second before the timeout, ended at it.
    t.leave("host2").await;
    let until2 = t.room.linger_until.expect("the session waits again");
    assert!(until2 >= until);
    t.room.check_linger(until2 - 1000);
    assert_eq!(sessions_ended(&t.sink), 0);
    t.room.check_linger(until2);
    t.room.flush_events().await;
    assert_eq!(sessions_ended(&t.sink), 1);
    assert!(t.room.session.is_none());
    assert_eq!(live(&store).len(), 1, "control stops the job when it sees the session ended");
}

#[tokio::test]
async fn an_empty_room_waits_only_for_running_jobs_that_ask_for_it() {
    // A stream without the timeout: the session ends with its last peer, as before.
    let (mut t, store, _) = test_room_with_store("no-linger");
    let mut host = t.join("host1", "host").await;
    t.request("host1", "h", "hls-start", json!({})).await;
    assert!(response(&mut host, "h")["result"].is_object());
    t.leave("host1").await;
    assert_eq!((sessions_ended(&t.sink), t.room.linger_until), (1, None));
    drop(store);

    // A waiting session whose job is stopped meanwhile ends at the next check.
    let (mut t, store, _) = test_room_with_store("linger-stopped");
    t.room.template.parts.recordings =
        json!([{ "compositeRecording": { "browserComposite": { "autoStopTimeout": 600 } } }]);
    let mut host = t.join("host1", "host").await;
    t.request("host1", "r", "rtmp-start", json!({ "record": true })).await;
    assert!(response(&mut host, "r")["result"].is_object());
    t.leave("host1").await;
    let until = t.room.linger_until.expect("the session waits for the recording");
    t.room.check_linger(until - 500_000);
    assert_eq!(sessions_ended(&t.sink), 0);
    let job = live(&store).remove(0);
    store.lock_unpoisoned().set_recording_status(&job.id, "stopping", "", None, 2).unwrap();
    t.room.check_linger(until - 500_000);
    t.room.flush_events().await;
    assert_eq!((sessions_ended(&t.sink), t.room.linger_until), (1, None));
}

#[tokio::test]
async fn an_absurd_auto_stop_timeout_waits_without_overflowing() {
    let (mut t, _store, _) = test_room_with_store("linger-huge");
    t.room.template.parts.destinations = json!({ "hlsDestinations": { "main": { "autoStopTimeout": u64::MAX } } });
    let mut host = t.join("host1", "host").await;
    t.request("host1", "h", "hls-start", json!({})).await;
    assert!(response(&mut host, "h")["result"].is_object());
    t.leave("host1").await;
    assert_eq!(t.room.linger_until, Some(u64::MAX), "the session cap ends such a wait");
    assert_eq!(sessions_ended(&t.sink), 0);
}

mod groups;
mod peers;
mod polls;
mod session_store;

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
            candidate: std::net::SocketAddr::from(([192, 0, 2, 1], 40000)),
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

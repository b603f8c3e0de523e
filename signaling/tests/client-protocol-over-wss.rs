//! The 100ms client protocol end to end over real HTTPS and WSS: a real router (one shard, in
//! this process) linked to signaling through the shared-memory queue, a real SQLite store and
//! real HS256 tokens. Clients here speak JSON-RPC by hand with realistic SDP (a Chrome offer),
//! so each step of the protocol and each refusal is checked exactly. Media itself is covered
//! by the browser tests (tests/browser) and the router's own tests.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use signaling::hub::Hub;

#[path = "common/client_sdp.rs"]
mod client_sdp;
#[path = "common/platform.rs"]
mod platform;
use client_sdp::{AUDIO_TRACK, CHROME_OFFER, STREAM, VIDEO_TRACK, answer_for, data_channel_offer};

const WAIT: Duration = Duration::from_secs(5);

struct Platform {
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    store: store::Store,
    workspace: store::Workspace,
    room: store::Room,
    _guard: platform::Guard,
}

async fn platform() -> Platform {
    let h =
        platform::start("signaling-test", |_, _, _| {}, |link, dir, _| Hub::new(link, Some(dir.to_path_buf()))).await;
    let room = h.store.upsert_room(&h.workspace.id, "standup", None).unwrap();
    Platform { addr: h.addr, tls: h.tls, store: h.store, workspace: h.workspace, room, _guard: h.guard }
}

impl Platform {
    fn token(&self, user: &str, role: &str) -> String {
        store::token::mint_auth_token(
            &self.workspace,
            &self.room.id,
            user,
            role,
            Duration::from_secs(3600),
            SystemTime::now(),
        )
    }

    /// `GET path` over HTTPS; (status, JSON body).
    async fn get(&self, path: &str, bearer: Option<&str>) -> (u16, Value) {
        let tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(self.tls.clone()).connect(name, tcp).await.unwrap();
        let auth = bearer.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n");
        tls.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(WAIT, tls.read_to_end(&mut raw)).await;
        let text = String::from_utf8_lossy(&raw);
        let status: u16 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    async fn connect(&self, peer: &str, token: &str) -> Client {
        let url = format!("wss://localhost:{}/ws?peer={peer}&token={token}&protocol_version=2.5", self.addr.port());
        let connector = tokio_tungstenite::Connector::Rustls(self.tls.clone());
        let (ws, _) =
            tokio_tungstenite::connect_async_tls_with_config(url, None, false, Some(connector)).await.unwrap();
        Client { ws, pushes: Vec::new(), next: 0 }
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A hand-driven SDK stand-in: requests, notifies, and a buffer of pushes.
struct Client {
    ws: Ws,
    pushes: Vec<Value>,
    next: u64,
}

impl Client {
    async fn recv(&mut self) -> Option<Value> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await.ok()?? {
                Ok(Message::Text(t)) => return Some(serde_json::from_str(&t).unwrap()),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    async fn send_text(&mut self, text: String) {
        self.ws.send(Message::Text(text.into())).await.unwrap();
    }

    /// A request; its whole response (`result` or `error`). Pushes meanwhile are kept.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = format!("req-{}", self.next);
        self.send_text(json!({"method": method, "params": params, "id": id, "jsonrpc": "2.0"}).to_string()).await;
        loop {
            let msg = self.recv().await.unwrap_or_else(|| panic!("no response to {method}"));
            if msg.get("id").and_then(Value::as_str) == Some(id.as_str()) {
                return msg;
            }
            self.pushes.push(msg);
        }
    }

    async fn notify(&mut self, method: &str, params: Value) {
        self.send_text(json!({"method": method, "params": params}).to_string()).await;
    }

    /// The params of the next push named `method` (earlier ones of other names are kept).
    async fn push(&mut self, method: &str) -> Value {
        if let Some(i) = self.pushes.iter().position(|p| p["method"] == method) {
            return self.pushes.remove(i)["params"].take();
        }
        loop {
            let msg = self.recv().await.unwrap_or_else(|| panic!("no {method} push; had {:?}", self.pushes));
            assert!(
                msg.get("id").is_none() || msg["id"].is_null() || msg.get("method").is_none(),
                "pushes carry no id: {msg}"
            );
            if msg["method"] == method {
                return msg["params"].clone();
            }
            self.pushes.push(msg);
        }
    }

    /// Asserts no push named `method` arrives within a short while.
    async fn no_push(&mut self, method: &str) {
        assert!(!self.pushes.iter().any(|p| p["method"] == method), "unexpected {method}");
        while let Ok(Some(Ok(Message::Text(t)))) =
            tokio::time::timeout(Duration::from_millis(300), self.ws.next()).await
        {
            let msg: Value = serde_json::from_str(&t).unwrap();
            assert_ne!(msg["method"], method, "unexpected {method}: {msg}");
            self.pushes.push(msg);
        }
    }

    /// Opens the session as the SDK does: wait for the policy, join with a data-channel-only
    /// offer, answer the first subscribe offer.
    async fn join(&mut self, name: &str) -> Value {
        let policy = self.push("on-policy-change").await;
        let answer = self.call("join", json!({"name": name, "data": "", "offer": {"type": "offer", "sdp": data_channel_offer()}, "disableVidAutoSub": false})).await;
        assert_eq!(answer["result"]["type"], "answer", "{answer}");
        let offer = self.push("offer").await;
        self.answer_subscribe(&offer).await;
        policy
    }

    async fn answer_subscribe(&mut self, offer: &Value) {
        assert_eq!(offer["type"], "offer");
        let sdp = answer_for(offer["sdp"].as_str().unwrap());
        self.notify("answer", json!({"desc": {"type": "answer", "sdp": sdp}})).await;
    }
}

fn publish_tracks() -> Value {
    json!({
        AUDIO_TRACK: {"track_id": AUDIO_TRACK, "stream_id": STREAM, "type": "audio", "source": "regular", "mute": false, "description": ""},
        VIDEO_TRACK: {"track_id": VIDEO_TRACK, "stream_id": STREAM, "type": "video", "source": "regular", "mute": false, "description": ""},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_answers_a_valid_token_and_refuses_bad_ones_clearly() {
    let p = platform().await;
    let (status, body) = p.get("/init?peer_id=p1", Some(&p.token("ann", "host"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["endpoint"], format!("wss://localhost:{}/ws", p.addr.port()));
    assert!(body["config"].is_object(), "the SDK needs config: {body}");

    let (status, body) = p.get("/init", None).await;
    assert_eq!((status, body["code"].as_u64()), (401, Some(401)), "{body}");
    let (status, body) = p.get("/init", Some("not.a.token")).await;
    assert_eq!(status, 401, "{body}");

    let hour_ago = SystemTime::now() - Duration::from_secs(7200);
    let expired =
        store::token::mint_auth_token(&p.workspace, &p.room.id, "ann", "host", Duration::from_secs(3600), hour_ago);
    let (status, body) = p.get("/init", Some(&expired)).await;
    assert_eq!(status, 401);
    assert!(body["message"].as_str().unwrap().contains("xpired"), "{body}");

    let forged = store::Workspace { secret: "someone else's secret".into(), ..p.workspace.clone() };
    let bad_sig =
        store::token::mint_auth_token(&forged, &p.room.id, "ann", "host", Duration::from_secs(3600), SystemTime::now());
    assert_eq!(p.get("/init", Some(&bad_sig)).await.0, 401);

    let wrong_room = store::token::mint_auth_token(
        &p.workspace,
        "000000000000000000000000",
        "ann",
        "host",
        Duration::from_secs(3600),
        SystemTime::now(),
    );
    let (status, body) = p.get("/init", Some(&wrong_room)).await;
    assert_eq!(status, 403);
    assert!(body["message"].as_str().unwrap().contains("does not exist"), "{body}");

    let (status, body) = p.get("/init", Some(&p.token("ann", "emperor"))).await;
    assert_eq!(status, 403, "unknown role: {body}");

    p.store.set_room_enabled(&p.room.id, false).unwrap();
    let (status, body) = p.get("/init", Some(&p.token("ann", "host"))).await;
    assert_eq!(status, 403);
    assert!(body["message"].as_str().unwrap().contains("disabled"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_with_a_bad_token_gets_on_error_and_is_closed() {
    let p = platform().await;
    let mut c = p.connect("p1", "garbage").await;
    let first = c.recv().await.expect("an on-error push");
    assert_eq!(first["method"], "on-error");
    assert_eq!(first["params"]["code"], 401);
    assert!(c.recv().await.is_none(), "then the socket closes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_peers_join_publish_mute_chat_and_leave() {
    let p = platform().await;
    let mut ann = p.connect("peer-ann", &p.token("ann", "host")).await;
    let policy = ann.join("Ann").await;
    assert_eq!(policy["name"], "host");
    assert!(policy["known_roles"]["guest"]["publishParams"]["allowed"].is_array(), "{policy}");
    let list = ann.push("peer-list").await;
    assert_eq!(list["room"]["name"], "standup");
    assert!(list["peers"].as_object().unwrap().is_empty());

    let mut bob = p.connect("peer-bob", &p.token("bob", "guest")).await;
    let preview = bob.push("room-state").await;
    assert_eq!(
        (preview["peer_count"].as_u64(), preview["room"]["name"].as_str()),
        (Some(1), Some("standup")),
        "{preview}"
    );
    bob.join("Bob").await;
    let joined = ann.push("on-peer-join").await;
    assert_eq!((joined["peer_id"].as_str(), joined["info"]["name"].as_str()), (Some("peer-bob"), Some("Bob")));
    assert_eq!(joined["realtime"], true);
    let list = bob.push("peer-list").await;
    assert_eq!(list["peers"]["peer-ann"]["role"], "host", "{list}");

    // Ann publishes her microphone and camera (one renegotiation, as after a device change).
    let answer =
        ann.call("offer", json!({"desc": {"type": "offer", "sdp": CHROME_OFFER}, "tracks": publish_tracks()})).await;
    let sdp = answer["result"]["sdp"].as_str().unwrap_or_else(|| panic!("{answer}"));
    assert_eq!(sdp.matches("a=recvonly").count(), 2, "{sdp}");
    let added = bob.push("on-track-add").await;
    assert_eq!(added["peer"]["peer_id"], "peer-ann");
    assert_eq!(added["tracks"][VIDEO_TRACK]["type"], "video");
    let offer = bob.push("offer").await;
    let sub_sdp = offer["sdp"].as_str().unwrap();
    assert!(sub_sdp.contains(&format!("a=msid:{STREAM} {AUDIO_TRACK}")), "{sub_sdp}");
    assert!(sub_sdp.contains(&format!("a=msid:{STREAM} {VIDEO_TRACK}")), "{sub_sdp}");
    assert!(sub_sdp.contains("m=application"), "the ion-sfu data channel stays: {sub_sdp}");
    bob.answer_subscribe(&offer).await;
    ann.no_push("on-track-add").await;

    // Mute reaches the others, not the sender.
    let mut muted = publish_tracks()[AUDIO_TRACK].clone();
    muted["mute"] = json!(true);
    ann.notify("track-update", json!({"tracks": {AUDIO_TRACK: muted}})).await;
    let update = bob.push("on-track-update").await;
    assert_eq!(update["tracks"][AUDIO_TRACK]["mute"], true, "{update}");

    // Chat: to everyone but the sender.
    let sent = ann.call("broadcast", json!({"info": {"message": "hello", "type": "chat"}})).await;
    assert!(sent["result"]["message_id"].is_string() && sent["result"]["timestamp"].is_u64(), "{sent}");
    let got = bob.push("on-broadcast").await;
    assert_eq!(got["info"]["message"], "hello");
    assert_eq!(got["peer"]["peer_id"], "peer-ann");
    assert_eq!(got["message_id"], sent["result"]["message_id"]);
    ann.no_push("on-broadcast").await;

    // Name change.
    assert!(bob.call("peer-update", json!({"name": "Robert"})).await["result"].is_object());
    assert_eq!(ann.push("on-peer-update").await["info"]["name"], "Robert");

    // Ping.
    assert!(ann.call("ping", json!({"timestamp": 1})).await["result"]["timestamp"].is_u64());

    // Ann leaves: Bob is told and his subscribe connection drops her tracks.
    ann.notify("leave", json!({"client_reason": "user request"})).await;
    assert_eq!(bob.push("on-peer-leave").await["peer_id"], "peer-ann");
    let offer = bob.push("offer").await;
    assert!(!offer["sdp"].as_str().unwrap().contains("a=sendonly"), "her tracks are no longer sent: {offer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_bad_sdp_bad_json_unknown_methods_and_oversized_messages_get_clear_errors() {
    let p = platform().await;
    let mut carl = p.connect("peer-carl", &p.token("carl", "audio-only")).await;
    carl.join("Carl").await;

    // A role that may not publish video is refused, with the reason.
    let refused =
        carl.call("offer", json!({"desc": {"type": "offer", "sdp": CHROME_OFFER}, "tracks": publish_tracks()})).await;
    assert_eq!(refused["error"]["code"], 403, "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("may not publish"), "{refused}");

    // An SDP with no codec the router forwards.
    let g722_only = CHROME_OFFER
        .replace("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 G7221/16000")
        .replace("a=group:BUNDLE 0 1 2", "a=group:BUNDLE 0 2");
    let audio_only: String = {
        let (head, rest) = g722_only.split_once("m=video").unwrap();
        format!("{head}m=application{}", rest.split("m=application").nth(1).unwrap())
    };
    let bad = carl.call("offer", json!({"desc": {"type": "offer", "sdp": audio_only}, "tracks": {}})).await;
    assert_eq!(bad["error"]["code"], 400, "{bad}");
    assert!(bad["error"]["message"].as_str().unwrap().contains("codec"), "{bad}");

    // Garbage of every kind; the socket survives each.
    carl.send_text("{not json".into()).await;
    let e = carl.recv().await.unwrap();
    assert_eq!(e["error"]["code"], -32700, "{e}");
    carl.send_text("[1,2]".into()).await;
    assert_eq!(carl.recv().await.unwrap()["error"]["code"], -32600);
    let unknown = carl.call("teleport", json!({})).await;
    assert_eq!(unknown["error"]["code"], -32601);
    assert!(unknown["error"]["message"].as_str().unwrap().contains("teleport"));
    let huge = carl.call("broadcast", json!({"info": {"message": "x".repeat(200 * 1024)}})).await;
    assert_eq!(huge["error"]["code"], 413, "{huge}");
    let not_string = carl.call("peer-update", json!({"name": 5})).await;
    assert_eq!(not_string["error"]["code"], -32602);

    // Still in the room and answering.
    assert!(carl.call("ping", json!({})).await["result"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_receives_existing_tracks_and_a_reconnecting_socket_keeps_the_peer() {
    let p = platform().await;
    let mut ann = p.connect("peer-ann", &p.token("ann", "host")).await;
    ann.join("Ann").await;
    let answer =
        ann.call("offer", json!({"desc": {"type": "offer", "sdp": CHROME_OFFER}, "tracks": publish_tracks()})).await;
    assert!(answer["result"]["sdp"].is_string(), "{answer}");

    // Dan joins later: his peer list has Ann with her tracks, and his first subscribe offer
    // already carries them.
    let mut dan = p.connect("peer-dan", &p.token("dan", "guest")).await;
    dan.push("on-policy-change").await;
    let joined =
        dan.call("join", json!({"name": "Dan", "offer": {"type": "offer", "sdp": data_channel_offer()}})).await;
    assert_eq!(joined["result"]["type"], "answer");
    let list = dan.push("peer-list").await;
    assert!(list["peers"]["peer-ann"]["tracks"][VIDEO_TRACK].is_object(), "{list}");
    let offer = dan.push("offer").await;
    assert!(offer["sdp"].as_str().unwrap().contains(VIDEO_TRACK));
    dan.answer_subscribe(&offer).await;

    // Dan's socket drops (no leave) and comes back with the same peer id: he is still in the
    // room, gets the policy and a fresh peer list, and Ann saw no leave.
    drop(dan);
    let mut dan = p.connect("peer-dan", &p.token("dan", "guest")).await;
    assert_eq!(dan.push("on-policy-change").await["name"], "guest");
    assert!(dan.push("peer-list").await["peers"]["peer-ann"].is_object());
    ann.no_push("on-peer-leave").await;
}

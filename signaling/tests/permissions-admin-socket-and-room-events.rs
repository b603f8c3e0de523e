//! The permissioned client methods (role change, remote mute, remove peer, end room), the
//! admin socket, the room events and the session cap, end to end: real WSS clients speaking
//! JSON-RPC by hand, a real router over the shared-memory link, a real SQLite store and real
//! tokens (the harness of `client-protocol-over-wss.rs`).
//!
//! The default template's roles: `host` has every permission, `guest` and `audio-only` none.
//! The tests add two roles to it: `lobby` (publishes nothing, receives nothing) and `listener`
//! (publishes nothing, receives only hosts).

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

use signaling::events::{LeaveReason, RecordingSink, RoomEvent};
use signaling::hub::{Hub, HubOptions};

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
    admin_path: PathBuf,
    sink: Arc<RecordingSink>,
    _guard: platform::Guard,
}

/// The default template plus `lobby` and `listener`.
fn add_test_roles(db: &std::path::Path, template_id: &str) {
    let mut roles = store::role::default_roles();
    let mut lobby = roles["audio-only"].clone();
    lobby.name = "lobby".into();
    lobby.publish_params.allowed = vec![];
    lobby.subscribe_params.subscribe_to_roles = vec![];
    let mut listener = lobby.clone();
    listener.name = "listener".into();
    listener.subscribe_params.subscribe_to_roles = vec!["host".into()];
    roles.insert("lobby".into(), lobby);
    roles.insert("listener".into(), listener);
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute(
        "UPDATE templates SET roles = ?1 WHERE id = ?2",
        rusqlite::params![serde_json::to_string(&roles).unwrap(), template_id],
    )
    .unwrap();
}

async fn platform(max_session: Duration) -> Platform {
    let sink = Arc::new(RecordingSink::default());
    let events = sink.clone();
    let h = platform::start(
        "signaling-perm",
        |db, store, workspace| add_test_roles(db, &store.default_template(&workspace.id).unwrap().id),
        |link, _, db| {
            let options = HubOptions {
                events,
                max_session,
                store: Some(store::Store::open(db).unwrap()),
                compositor_jobs_dir: None,
            };
            Hub::with_options(link, None, options)
        },
    )
    .await;
    let admin_path = h.dir.join("admin.sock");
    let listener = signaling::admin::bind(&admin_path).unwrap();
    tokio::spawn(signaling::admin::run(h.hub.clone(), listener));
    Platform { addr: h.addr, tls: h.tls, store: h.store, workspace: h.workspace, admin_path, sink, _guard: h.guard }
}

impl Platform {
    fn room(&self, name: &str) -> String {
        self.store.upsert_room(&self.workspace.id, name, None).unwrap().id
    }

    fn token(&self, room_id: &str, user: &str, role: &str) -> String {
        store::token::mint_auth_token(
            &self.workspace,
            room_id,
            user,
            role,
            Duration::from_secs(3600),
            SystemTime::now(),
        )
    }

    async fn connect(&self, room_id: &str, peer: &str, role: &str) -> Client {
        let token = self.token(room_id, peer, role);
        let url = format!("wss://localhost:{}/ws?peer={peer}&token={token}&protocol_version=2.5", self.addr.port());
        let connector = tokio_tungstenite::Connector::Rustls(self.tls.clone());
        let (ws, _) =
            tokio_tungstenite::connect_async_tls_with_config(url, None, false, Some(connector)).await.unwrap();
        Client { ws, pushes: Vec::new(), next: 0, id: peer.to_owned() }
    }

    /// Connects and joins.
    async fn joined(&self, room_id: &str, peer: &str, role: &str) -> Client {
        let mut c = self.connect(room_id, peer, role).await;
        c.join(peer).await;
        c
    }

    /// One admin request line and its reply, on a fresh connection.
    async fn admin_raw(&self, line: &str) -> Value {
        let stream = tokio::net::UnixStream::connect(&self.admin_path).await.unwrap();
        let (read, mut write) = stream.into_split();
        write.write_all(line.as_bytes()).await.unwrap();
        write.write_all(b"\n").await.unwrap();
        let mut lines = BufReader::new(read).lines();
        let reply = tokio::time::timeout(WAIT, lines.next_line()).await.unwrap().unwrap().unwrap();
        serde_json::from_str(&reply).unwrap()
    }

    async fn admin(&self, request: Value) -> Value {
        self.admin_raw(&request.to_string()).await
    }

    /// The active room's peer `peer_id` as the admin socket shows it (Null if absent).
    async fn admin_peer(&self, room_id: &str, peer_id: &str) -> Value {
        let reply = self.admin(json!({"id": 1, "op": "active_room", "room_id": room_id})).await;
        reply["ok"]["peers"]
            .as_array()
            .and_then(|peers| peers.iter().find(|p| p["id"] == peer_id).cloned())
            .unwrap_or(Value::Null)
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Client {
    ws: Ws,
    pushes: Vec<Value>,
    next: u64,
    id: String,
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

    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = format!("req-{}", self.next);
        self.send_text(json!({"method": method, "params": params, "id": id, "jsonrpc": "2.0"}).to_string()).await;
        loop {
            let msg = self.recv().await.unwrap_or_else(|| panic!("{}: no response to {method}", self.id));
            if msg.get("id").and_then(Value::as_str) == Some(id.as_str()) {
                return msg;
            }
            self.pushes.push(msg);
        }
    }

    async fn notify(&mut self, method: &str, params: Value) {
        self.send_text(json!({"method": method, "params": params}).to_string()).await;
    }

    async fn push(&mut self, method: &str) -> Value {
        if let Some(i) = self.pushes.iter().position(|p| p["method"] == method) {
            return self.pushes.remove(i)["params"].take();
        }
        loop {
            let msg =
                self.recv().await.unwrap_or_else(|| panic!("{}: no {method} push; had {:?}", self.id, self.pushes));
            if msg["method"] == method {
                return msg["params"].clone();
            }
            self.pushes.push(msg);
        }
    }

    /// Asserts no push named `method` arrives within a short while.
    async fn no_push(&mut self, method: &str) {
        assert!(!self.pushes.iter().any(|p| p["method"] == method), "{}: unexpected {method}", self.id);
        while let Ok(Some(Ok(Message::Text(t)))) =
            tokio::time::timeout(Duration::from_millis(300), self.ws.next()).await
        {
            let msg: Value = serde_json::from_str(&t).unwrap();
            assert_ne!(msg["method"], method, "{}: unexpected {method}: {msg}", self.id);
            self.pushes.push(msg);
        }
    }

    /// Waits until the server closes the socket.
    async fn closed(&mut self) {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => self.pushes.push(serde_json::from_str(&t).unwrap()),
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return,
                Ok(Some(Ok(_))) => {}
                Err(_) => panic!("{}: the socket stayed open", self.id),
            }
        }
    }

    async fn join(&mut self, name: &str) {
        self.push("on-policy-change").await;
        let answer = self.call("join", json!({"name": name, "data": "", "offer": {"type": "offer", "sdp": data_channel_offer()}, "disableVidAutoSub": false})).await;
        assert_eq!(answer["result"]["type"], "answer", "{answer}");
        let offer = self.push("offer").await;
        self.answer_subscribe(&offer).await;
    }

    async fn answer_subscribe(&mut self, offer: &Value) {
        let sdp = answer_for(offer["sdp"].as_str().unwrap());
        self.notify("answer", json!({"desc": {"type": "answer", "sdp": sdp}})).await;
    }

    /// The next subscribe offer, answered; its SDP.
    async fn next_offer(&mut self) -> String {
        let offer = self.push("offer").await;
        self.answer_subscribe(&offer).await;
        offer["sdp"].as_str().unwrap().to_owned()
    }

    /// Publishes microphone and camera.
    async fn publish(&mut self) {
        self.publish_as(AUDIO_TRACK, VIDEO_TRACK).await;
    }

    /// Publishes microphone and camera under these track ids (two publishers in one room need
    /// their own).
    async fn publish_as(&mut self, audio: &str, video: &str) {
        let sdp = CHROME_OFFER.replace(AUDIO_TRACK, audio).replace(VIDEO_TRACK, video);
        let tracks = json!({
            audio: {"track_id": audio, "stream_id": STREAM, "type": "audio", "source": "regular", "mute": false, "description": ""},
            video: {"track_id": video, "stream_id": STREAM, "type": "video", "source": "regular", "mute": false, "description": ""},
        });
        let answer = self.call("offer", json!({"desc": {"type": "offer", "sdp": sdp}, "tracks": tracks})).await;
        assert!(answer["result"]["sdp"].is_string(), "{answer}");
    }
}

fn publish_tracks() -> Value {
    json!({
        AUDIO_TRACK: {"track_id": AUDIO_TRACK, "stream_id": STREAM, "type": "audio", "source": "regular", "mute": false, "description": ""},
        VIDEO_TRACK: {"track_id": VIDEO_TRACK, "stream_id": STREAM, "type": "video", "source": "regular", "mute": false, "description": ""},
    })
}

/// A receiving m-line carries this track.
fn sends(sdp: &str, track: &str) -> bool {
    sdp.split("\r\nm=").any(|s| s.contains(&format!("a=msid:{STREAM} {track}")) && s.contains("a=sendonly"))
}

fn assert_refused(reply: &Value, code: i64, needle: &str, case: &str) {
    assert_eq!(reply["error"]["code"], code, "{case}: {reply}");
    let message = reply["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains(needle), "{case}: the message names '{needle}': {reply}");
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Action {
    MuteTrack,
    UnmuteTrack,
    MuteRole,
    UnmuteRole,
    RemovePeer,
    ChangeRoleForced,
    ChangeRoleRequested,
    EndRoom,
}

/// One case: `actor` (in `actor_role`) does `action` to a guest who publishes audio and
/// video; with the permission it takes effect, without it the error names the permission and
/// nothing changes.
async fn permission_case(p: &Platform, n: usize, actor_role: &str, action: Action, allowed: bool) {
    let case = format!("case {n}: {actor_role} {action:?}");
    let room = p.room(&format!("matrix-{n}"));
    let mut actor = p.joined(&room, &format!("actor{n}"), actor_role).await;
    let tgt = format!("target{n}");
    let mut target = p.joined(&room, &tgt, "guest").await;
    target.publish().await;
    actor.push("on-track-add").await;
    actor.next_offer().await;

    let permission = match action {
        Action::MuteTrack | Action::MuteRole => "mute",
        Action::UnmuteTrack | Action::UnmuteRole => "unmute",
        Action::RemovePeer => "removeOthers",
        Action::ChangeRoleForced | Action::ChangeRoleRequested => "changeRole",
        Action::EndRoom => "endRoom",
    };
    let (method, params, notification) = match action {
        Action::MuteTrack | Action::UnmuteTrack => (
            "track-update-request",
            json!({"requested_for": tgt, "track_id": AUDIO_TRACK, "stream_id": STREAM, "mute": action == Action::MuteTrack}),
            "on-track-update-request",
        ),
        Action::MuteRole | Action::UnmuteRole => (
            "change-track-mute-state-request",
            json!({"roles": ["guest"], "type": "audio", "source": "regular", "value": action == Action::MuteRole}),
            "on-change-track-mute-state-request",
        ),
        Action::RemovePeer => {
            ("peer-leave-request", json!({"requested_for": tgt, "reason": "be gone"}), "on-peer-leave-request")
        }
        Action::ChangeRoleForced => (
            "role-change-request",
            json!({"requested_for": tgt, "role": "audio-only", "force": true}),
            "on-policy-change",
        ),
        Action::ChangeRoleRequested => (
            "role-change-request",
            json!({"requested_for": tgt, "role": "audio-only", "force": false}),
            "on-role-change-request",
        ),
        Action::EndRoom => ("end-room", json!({"lock": false, "reason": "that's all"}), "on-peer-leave-request"),
    };
    let reply = actor.call(method, params).await;

    if !allowed {
        assert_refused(&reply, 403, permission, &case);
        target.no_push(notification).await;
        target.no_push("on-peer-update").await;
        // No effect: the target is still there, unmuted, in its role, with its tracks.
        let state = p.admin_peer(&room, &tgt).await;
        assert_eq!(state["role"], "guest", "{case}: {state}");
        assert_eq!(state["tracks"][AUDIO_TRACK]["mute"], false, "{case}: {state}");
        assert!(state["tracks"][VIDEO_TRACK].is_object(), "{case}: {state}");
        assert!(target.call("ping", json!({})).await["result"].is_object(), "{case}: target still connected");
        actor.no_push("on-peer-leave").await;
        return;
    }

    assert!(reply["result"].is_object(), "{case}: {reply}");
    let got = target.push(notification).await;
    match action {
        Action::MuteTrack | Action::UnmuteTrack => {
            assert_eq!(got["requested_by"], actor.id, "{case}: {got}");
            assert_eq!((got["track_id"].as_str(), got["stream_id"].as_str()), (Some(AUDIO_TRACK), Some(STREAM)));
            assert_eq!(got["mute"], action == Action::MuteTrack, "{case}: {got}");
        }
        Action::MuteRole | Action::UnmuteRole => {
            assert_eq!(got["requested_by"], actor.id, "{case}: {got}");
            assert_eq!(got["value"], action == Action::MuteRole, "{case}: {got}");
            assert_eq!((got["type"].as_str(), got["roles"][0].as_str()), (Some("audio"), Some("guest")));
        }
        Action::RemovePeer => {
            assert_eq!(got["requested_by"], actor.id, "{case}: {got}");
            assert_eq!((got["reason"].as_str(), got["room_end"].as_bool()), (Some("be gone"), Some(false)));
            target.closed().await;
            assert_eq!(actor.push("on-peer-leave").await["peer_id"], tgt, "{case}");
            assert!(p.admin_peer(&room, &tgt).await.is_null(), "{case}: the target is gone");
        }
        Action::ChangeRoleForced => {
            assert_eq!(got["name"], "audio-only", "{case}: the target's SDK is told its new role: {got}");
            let update = target.push("on-peer-update").await;
            assert_eq!((update["peer_id"].as_str(), update["role"].as_str()), (Some(tgt.as_str()), Some("audio-only")));
            assert_eq!(actor.push("on-peer-update").await["role"], "audio-only", "{case}");
            // Audio-only may not publish video: the camera is stopped.
            let removed = actor.push("on-track-remove").await;
            assert!(removed["tracks"][VIDEO_TRACK].is_object(), "{case}: {removed}");
            assert!(removed["tracks"][AUDIO_TRACK].is_null(), "{case}: {removed}");
            let state = p.admin_peer(&room, &tgt).await;
            assert_eq!(state["role"], "audio-only", "{case}: {state}");
            assert!(state["tracks"][VIDEO_TRACK].is_null() && state["tracks"][AUDIO_TRACK].is_object(), "{state}");
        }
        Action::ChangeRoleRequested => {
            assert_eq!(
                (got["requested_by"].as_str(), got["role"].as_str()),
                (Some(actor.id.as_str()), Some("audio-only"))
            );
            let token = got["token"].as_str().unwrap().to_owned();
            assert_eq!(p.admin_peer(&room, &tgt).await["role"], "guest", "{case}: not before it is accepted");
            // Someone else cannot use the token.
            let stolen = actor
                .call("role-change", json!({"requested_by": actor.id, "role": "audio-only", "token": token}))
                .await;
            assert_refused(&stolen, 403, "token", &case);
            let accepted = target
                .call("role-change", json!({"requested_by": actor.id, "role": "audio-only", "token": token}))
                .await;
            assert!(accepted["result"].is_object(), "{case}: {accepted}");
            assert_eq!(target.push("on-policy-change").await["name"], "audio-only");
            assert_eq!(actor.push("on-peer-update").await["role"], "audio-only");
            assert_eq!(p.admin_peer(&room, &tgt).await["role"], "audio-only", "{case}");
            // One use only.
            let again = target.call("role-change", json!({"role": "audio-only", "token": token})).await;
            assert_refused(&again, 403, "token", &case);
        }
        Action::EndRoom => {
            assert_eq!((got["room_end"].as_bool(), got["reason"].as_str()), (Some(true), Some("that's all")));
            assert_eq!(got["requested_by"], actor.id, "{case}: {got}");
            target.closed().await;
            let gone = p.admin(json!({"id": 9, "op": "active_room", "room_id": room})).await;
            assert_eq!(gone["error"]["status"], 404, "{case}: the session ended: {gone}");
            assert!(p.store.room(&room).unwrap().unwrap().enabled, "{case}: lock:false leaves the room enabled");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_permissioned_request_works_with_its_permission_and_changes_nothing_without_it() {
    let p = platform(Duration::from_secs(3600)).await;
    let actions = [
        Action::MuteTrack,
        Action::UnmuteTrack,
        Action::MuteRole,
        Action::UnmuteRole,
        Action::RemovePeer,
        Action::ChangeRoleForced,
        Action::ChangeRoleRequested,
        Action::EndRoom,
    ];
    let mut n = 0;
    for (role, allowed) in [("host", true), ("guest", false), ("audio-only", false)] {
        for action in actions {
            n += 1;
            permission_case(&p, n, role, action, allowed).await;
        }
    }
    assert_eq!(n, 24);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_targets_roles_and_tokens_are_refused_clearly_and_change_nothing() {
    let p = platform(Duration::from_secs(3600)).await;
    let room = p.room("edge");
    let mut host = p.joined(&room, "host1", "host").await;
    let mut bob = p.joined(&room, "bob1", "guest").await;
    bob.publish().await;
    host.push("on-track-add").await;
    host.next_offer().await;

    // 25: an unknown track.
    let r = host
        .call(
            "track-update-request",
            json!({"requested_for": "bob1", "track_id": "nope", "stream_id": STREAM, "mute": true}),
        )
        .await;
    assert_refused(&r, 404, "nope", "unknown track");
    // 26: an unknown peer to remove.
    let r = host.call("peer-leave-request", json!({"requested_for": "ghost", "reason": "x"})).await;
    assert_refused(&r, 404, "ghost", "remove unknown peer");
    // 27: an unknown role.
    let r = host.call("role-change-request", json!({"requested_for": "bob1", "role": "emperor", "force": true})).await;
    assert_refused(&r, 400, "emperor", "unknown role");
    // 28: a role change for an unknown peer.
    let r = host.call("role-change-request", json!({"requested_for": "ghost", "role": "guest", "force": true})).await;
    assert_refused(&r, 404, "ghost", "role change of unknown peer");
    // 29: a made-up token.
    let r = bob.call("role-change", json!({"role": "host", "token": "made-up"})).await;
    assert_refused(&r, 403, "token", "bogus token");
    // 30: a mute request without `mute`.
    let r = host.call("track-update-request", json!({"requested_for": "bob1", "track_id": AUDIO_TRACK})).await;
    assert_refused(&r, 400, "mute", "missing mute");
    // 31: a guest's bulk role change.
    let r = bob.call("role-change-request", json!({"roles": ["host"], "role": "guest", "force": true})).await;
    assert_refused(&r, 403, "changeRole", "bulk role change by a guest");
    bob.no_push("on-peer-update").await;
    let state = p.admin_peer(&room, "bob1").await;
    assert_eq!(state["role"], "guest");
    assert_eq!(p.admin_peer(&room, "host1").await["role"], "host");
    bob.no_push("on-policy-change").await;
    bob.no_push("on-peer-leave-request").await;

    // 32: a token issued in another room is worth nothing here.
    let other = p.room("elsewhere");
    let mut host2 = p.joined(&other, "host2", "host").await;
    let mut carl = p.joined(&other, "carl2", "guest").await;
    let r = host2
        .call("role-change-request", json!({"requested_for": "carl2", "role": "audio-only", "force": false}))
        .await;
    assert!(r["result"].is_object(), "{r}");
    let token = carl.push("on-role-change-request").await["token"].as_str().unwrap().to_owned();
    let r = bob.call("role-change", json!({"role": "audio-only", "token": token})).await;
    assert_refused(&r, 403, "token", "token of another room");
    assert_eq!(p.admin_peer(&room, "bob1").await["role"], "guest");

    // 33: a host's bulk change moves every guest at once, forced.
    let mut dan = p.joined(&room, "dan1", "guest").await;
    let r = host.call("role-change-request", json!({"roles": ["guest"], "role": "audio-only", "force": false})).await;
    assert!(r["result"].is_object(), "{r}");
    assert_eq!(bob.push("on-policy-change").await["name"], "audio-only");
    assert_eq!(dan.push("on-policy-change").await["name"], "audio-only");
    assert_eq!(p.admin_peer(&room, "bob1").await["role"], "audio-only");
    assert_eq!(p.admin_peer(&room, "dan1").await["role"], "audio-only");
    assert_eq!(p.admin_peer(&room, "host1").await["role"], "host");

    // 34: end-room with lock disables the room; a new socket is refused.
    let r = host.call("end-room", json!({"lock": true, "reason": "closing time"})).await;
    assert!(r["result"].is_object(), "{r}");
    bob.closed().await;
    assert!(!p.store.room(&room).unwrap().unwrap().enabled, "locked");
    let mut late = p.connect(&room, "late", "guest").await;
    let refused = late.recv().await.unwrap();
    assert_eq!((refused["method"].as_str(), refused["params"]["code"].as_i64()), (Some("on-error"), Some(403)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_and_publish_rights_follow_a_role_change() {
    let p = platform(Duration::from_secs(3600)).await;
    let room = p.room("stage");
    let mut ann = p.joined(&room, "ann", "host").await;
    ann.publish().await;

    // Bob waits in the lobby: he receives nothing.
    let mut bob = p.connect(&room, "bob", "lobby").await;
    bob.join("bob").await;
    assert!(bob.pushes.iter().all(|m| m["method"] != "offer"));
    let list = bob.push("peer-list").await;
    assert!(list["peers"]["ann"]["tracks"][VIDEO_TRACK].is_object(), "metadata is still listed: {list}");
    // (his first offer was answered by join(); it carried no track of Ann's)

    // Ann lets him in as a guest: his subscribe connection now carries her tracks.
    let r = ann.call("role-change-request", json!({"requested_for": "bob", "role": "guest", "force": true})).await;
    assert!(r["result"].is_object(), "{r}");
    assert_eq!(bob.push("on-policy-change").await["name"], "guest");
    assert_eq!(bob.push("on-peer-update").await["role"], "guest");
    let sdp = bob.next_offer().await;
    assert!(sends(&sdp, AUDIO_TRACK) && sends(&sdp, VIDEO_TRACK), "{sdp}");

    // Bob publishes as a guest. Carl listens to hosts only: Bob's tracks are not his.
    bob.publish_as("bob-audio", "bob-video").await;
    let mut carl = p.joined(&room, "carl", "listener").await;
    carl.no_push("offer").await;
    // Ann makes Bob a host: Carl's subscriptions follow Carl's role, so now he receives Bob.
    let r = ann.call("role-change-request", json!({"requested_for": "bob", "role": "host", "force": true})).await;
    assert!(r["result"].is_object(), "{r}");
    assert_eq!(bob.push("on-policy-change").await["name"], "host");
    let sdp = carl.next_offer().await;
    assert!(sends(&sdp, "bob-audio") && sends(&sdp, AUDIO_TRACK), "Carl now receives Bob (and Ann): {sdp}");
    assert_eq!(sdp.matches("a=sendonly").count(), 4, "Ann's two and Bob's two: {sdp}");

    // Back to the lobby: Bob's tracks stop (the lobby publishes nothing), and he receives nothing.
    let r = ann.call("role-change-request", json!({"requested_for": "bob", "role": "lobby", "force": true})).await;
    assert!(r["result"].is_object(), "{r}");
    assert_eq!(bob.push("on-policy-change").await["name"], "lobby");
    let removed = ann.push("on-track-remove").await;
    assert_eq!(removed["tracks"].as_object().unwrap().len(), 2, "{removed}");
    let sdp = bob.next_offer().await;
    assert!(!sdp.contains("a=sendonly"), "the lobby receives nothing: {sdp}");
    let state = p.admin_peer(&room, "bob").await;
    assert!(state["tracks"].as_object().unwrap().is_empty(), "{state}");
    // And a publish offer with a camera is refused in the lobby.
    let r =
        bob.call("offer", json!({"desc": {"type": "offer", "sdp": CHROME_OFFER}, "tracks": publish_tracks()})).await;
    assert_refused(&r, 403, "may not publish", "publish in the lobby");
    // A reconnect keeps the new role, not the token's.
    drop(bob);
    let mut bob = p.connect(&room, "bob", "guest").await;
    assert_eq!(bob.push("on-policy-change").await["name"], "lobby");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_socket_reads_and_changes_live_rooms() {
    let p = platform(Duration::from_secs(3600)).await;
    let room = p.room("adm");

    // Nobody there yet.
    let r = p.admin(json!({"id": 1, "op": "active_room", "room_id": room})).await;
    assert_eq!((r["id"].as_i64(), r["error"]["status"].as_i64()), (Some(1), Some(404)), "{r}");
    assert_eq!(r["error"]["message"], "room is not active");

    let mut ann = p.joined(&room, "ann", "host").await;
    let mut bob = p.joined(&room, "bob", "guest").await;
    bob.publish().await;

    // metrics: the two joins are in the join-time histogram, each in one bucket.
    let r = p.admin(json!({"id": 20, "op": "metrics"})).await;
    let m = if r["ok"].is_object() { &r["ok"] } else { &r };
    let counts: Vec<u64> =
        m["join_latency"]["counts"].as_array().unwrap().iter().map(|c| c.as_u64().unwrap()).collect();
    assert_eq!(counts.iter().sum::<u64>(), 2, "{r}");
    assert_eq!(counts.len(), m["join_latency_bounds_us"].as_array().unwrap().len() + 1, "{r}");
    assert!(m["join_latency"]["sum_ns"].as_u64() > Some(0), "{r}");

    // active_room
    let r = p.admin(json!({"id": 2, "op": "active_room", "room_id": room})).await;
    let ok = &r["ok"];
    assert_eq!((ok["room_id"].as_str(), ok["room_name"].as_str()), (Some(room.as_str()), Some("adm")), "{r}");
    assert!(ok["session_id"].as_str().is_some_and(|s| !s.is_empty()) && ok["started_at_ms"].as_u64() > Some(0));
    let peers = ok["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 2);
    let b = peers.iter().find(|p| p["id"] == "bob").unwrap();
    assert_eq!(
        (b["name"].as_str(), b["user_id"].as_str(), b["role"].as_str()),
        (Some("bob"), Some("bob"), Some("guest"))
    );
    let t = &b["tracks"][VIDEO_TRACK];
    assert_eq!(
        (t["id"].as_str(), t["stream_id"].as_str(), t["type"].as_str()),
        (Some(VIDEO_TRACK), Some(STREAM), Some("video"))
    );
    assert_eq!((t["mute"].as_bool(), t["source"].as_str()), (Some(false), Some("regular")));
    assert!(t["started_at_ms"].as_u64() > Some(0) && b["joined_at_ms"].as_u64() > Some(0));

    // update_peer: name, metadata and role; the clients see it.
    let r = p
        .admin(json!({"id": 3, "op": "update_peer", "room_id": room, "peer_id": "bob", "name": "Robert", "metadata": "{\"x\":1}", "role": "audio-only"}))
        .await;
    assert_eq!((r["ok"]["name"].as_str(), r["ok"]["role"].as_str()), (Some("Robert"), Some("audio-only")), "{r}");
    assert_eq!(r["ok"]["metadata"], "{\"x\":1}");
    assert!(r["ok"]["tracks"][VIDEO_TRACK].is_null(), "audio-only may not publish video: {r}");
    assert_eq!(ann.push("on-peer-update").await["info"]["name"], "Robert");
    assert_eq!(bob.push("on-policy-change").await["name"], "audio-only");
    let r = p.admin(json!({"id": 4, "op": "update_peer", "room_id": room, "peer_id": "bob", "role": "emperor"})).await;
    assert_eq!(r["error"]["status"], 400, "{r}");
    let r = p.admin(json!({"id": 5, "op": "update_peer", "room_id": room, "peer_id": "ghost", "name": "x"})).await;
    assert_eq!(r["error"]["status"], 404, "{r}");

    // send_message: no sending peer; to everyone, to one peer, to a role.
    let r =
        p.admin(json!({"id": 6, "op": "send_message", "room_id": room, "message": "hello all", "type": "chat"})).await;
    assert_eq!(r["ok"], json!({}), "{r}");
    for c in [&mut ann, &mut bob] {
        let m = c.push("on-broadcast").await;
        assert_eq!(m["info"]["message"], "hello all");
        assert!(m.get("peer").is_none(), "a server message has no sender: {m}");
    }
    let r = p.admin(json!({"id": 7, "op": "send_message", "room_id": room, "message": "psst", "peer_id": "bob"})).await;
    assert_eq!(r["ok"], json!({}), "{r}");
    let m = bob.push("on-broadcast").await;
    assert_eq!(
        (m["info"]["message"].as_str(), m["private"].as_bool(), m["info"]["type"].as_str()),
        (Some("psst"), Some(true), Some("chat"))
    );
    ann.no_push("on-broadcast").await;
    let r = p.admin(json!({"id": 8, "op": "send_message", "room_id": room, "message": "x", "peer_id": "ghost"})).await;
    assert_eq!(r["error"]["status"], 404, "{r}");

    // Malformed requests: each gets an error line, the connection stays usable.
    let r = p.admin_raw("{not json").await;
    assert_eq!(r["error"]["status"], 400, "{r}");
    let r = p.admin(json!({"id": 9, "op": "teleport", "room_id": room})).await;
    assert_eq!((r["id"].as_i64(), r["error"]["status"].as_i64()), (Some(9), Some(400)), "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("teleport"));
    let r = p.admin(json!({"id": 10, "op": "active_room"})).await;
    assert_eq!(r["error"]["status"], 400, "missing room_id: {r}");
    let r = p.admin(json!({"id": 11, "op": "end_room", "room_id": "000000000000000000000000", "reason": "x"})).await;
    assert_eq!(r["error"]["status"], 404, "unknown room: {r}");
    {
        // Two requests on one connection, the first oversized.
        let stream = tokio::net::UnixStream::connect(&p.admin_path).await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut big = vec![b'x'; 70 * 1024];
        big.push(b'\n');
        write.write_all(&big).await.unwrap();
        write
            .write_all(format!("{}\n", json!({"id": 12, "op": "active_room", "room_id": room})).as_bytes())
            .await
            .unwrap();
        let mut lines = BufReader::new(read).lines();
        let first: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert_eq!(first["error"]["status"], 400, "{first}");
        assert!(first["error"]["message"].as_str().unwrap().contains("longer"), "{first}");
        let second: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert_eq!(second["id"], 12, "{second}");
        assert!(second["ok"]["peers"].is_array(), "{second}");
    }

    // remove_peers by role.
    let mut carl = p.joined(&room, "carl", "guest").await;
    let r =
        p.admin(json!({"id": 13, "op": "remove_peers", "room_id": room, "role": "guest", "reason": "cleanup"})).await;
    assert_eq!(r["ok"]["removed"], 1, "{r}");
    let req = carl.push("on-peer-leave-request").await;
    assert_eq!((req["reason"].as_str(), req["room_end"].as_bool()), (Some("cleanup"), Some(false)), "{req}");
    assert!(req.get("requested_by").is_none(), "the API removed him: {req}");
    carl.closed().await;
    assert_eq!(ann.push("on-peer-leave").await["peer_id"], "carl");
    let r = p.admin(json!({"id": 14, "op": "remove_peers", "room_id": room, "peer_id": "ghost", "reason": "x"})).await;
    assert_eq!(r["error"]["status"], 404, "{r}");
    // remove_peers by peer id.
    let r =
        p.admin(json!({"id": 15, "op": "remove_peers", "room_id": room, "peer_id": "bob", "reason": "bye bob"})).await;
    assert_eq!(r["ok"]["removed"], 1, "{r}");
    assert_eq!(bob.push("on-peer-leave-request").await["reason"], "bye bob");
    bob.closed().await;

    // end_room
    let r = p.admin(json!({"id": 16, "op": "end_room", "room_id": room, "reason": "maintenance", "lock": false})).await;
    assert_eq!(r["ok"], json!({}), "{r}");
    let req = ann.push("on-peer-leave-request").await;
    assert_eq!((req["reason"].as_str(), req["room_end"].as_bool()), (Some("maintenance"), Some(true)));
    ann.closed().await;
    let r = p.admin(json!({"id": 17, "op": "active_room", "room_id": room})).await;
    assert_eq!(r["error"]["status"], 404, "{r}");
}

fn leaves(events: &[RoomEvent]) -> Vec<(String, LeaveReason, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            RoomEvent::PeerLeft { peer, reason, message, .. } => Some((peer.peer_id.clone(), *reason, message.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_sink_sees_joins_tracks_and_each_kind_of_leave() {
    let p = platform(Duration::from_secs(3600)).await;
    let room = p.room("events");
    let mut ann = p.joined(&room, "ann", "host").await;
    let mut bob = p.joined(&room, "bob", "guest").await;
    bob.publish().await;
    // Bob leaves by himself.
    bob.notify("leave", json!({"client_reason": "user request"})).await;
    ann.push("on-peer-leave").await;
    // Carl is kicked.
    let _carl = p.joined(&room, "carl", "guest").await;
    let r = ann.call("peer-leave-request", json!({"requested_for": "carl", "reason": "spam"})).await;
    assert!(r["result"].is_object());
    ann.push("on-peer-leave").await;
    // Dan is there when Ann ends the room.
    let mut dan = p.joined(&room, "dan", "guest").await;
    let r = ann.call("end-room", json!({"lock": false, "reason": "over"})).await;
    assert!(r["result"].is_object());
    dan.closed().await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let events = p.sink.events();
    let joined: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            RoomEvent::PeerJoined { peer, room: r, .. } => {
                assert_eq!((r.room_id.as_str(), r.room_name.as_str()), (room.as_str(), "events"));
                assert!(!r.template_id.is_empty() && !r.session_id.is_empty());
                Some(peer.peer_id.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(joined, ["ann", "bob", "carl", "dan"]);
    let added: Vec<(&str, &str)> = events
        .iter()
        .filter_map(|e| match e {
            RoomEvent::TrackAdded { peer, track, .. } => Some((peer.peer_id.as_str(), track.kind.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(added.len(), 2);
    assert!(added.contains(&("bob", "audio")) && added.contains(&("bob", "video")), "{added:?}");
    let removed =
        events.iter().filter(|e| matches!(e, RoomEvent::TrackRemoved { peer, .. } if peer.peer_id == "bob")).count();
    assert_eq!(removed, 2, "his tracks went with him");
    let leaves = leaves(&events);
    assert_eq!(
        leaves,
        [
            ("bob".to_owned(), LeaveReason::ClientRequest, "user request".to_owned()),
            ("carl".to_owned(), LeaveReason::PeerKicked, "spam".to_owned()),
            ("ann".to_owned(), LeaveReason::RoomEnded, "over".to_owned()),
            ("dan".to_owned(), LeaveReason::RoomEnded, "over".to_owned()),
        ]
    );
    let Some(RoomEvent::SessionEnded { reason, ended_by, lock, .. }) = events.last() else {
        panic!("the session ends last: {events:?}")
    };
    assert_eq!((reason.as_str(), ended_by.as_deref(), *lock), ("over", Some("ann"), false));
    assert!(matches!(events.first(), Some(RoomEvent::SessionStarted { .. })), "{:?}", events.first());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_ended_when_it_reaches_the_cap() {
    let p = platform(Duration::from_secs(2)).await;
    let room = p.room("capped");
    let mut ann = p.joined(&room, "ann", "host").await;
    let started = std::time::Instant::now();
    let req = ann.push("on-peer-leave-request").await;
    assert_eq!(req["room_end"], true, "{req}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(5), "{waited:?}");
    ann.closed().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let events = p.sink.events();
    assert_eq!(leaves(&events)[0].1, LeaveReason::RoomEnded);
    assert!(
        events.iter().any(|e| matches!(e, RoomEvent::SessionEnded { reason, .. } if reason == "max duration reached")),
        "{events:?}"
    );
}

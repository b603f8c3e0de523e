//! The `/v2` REST API against the real daemon (real HTTPS, real SQLite, real router and
//! signaling processes): every route's success, its validation errors, 401 for every kind of bad
//! token, 404 across workspaces, pagination; and the OpenAPI document and docs/rest-api.md
//! against the route table.
//!
//! Needs the `router` and `signaling` binaries beside `control` (a workspace build:
//! `cargo build --workspace` or `cargo nextest run --workspace`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed test

mod common;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use common::{Daemon, Reply, TempDir, real_bin_dir as bin_dir};
use serde_json::{Value, json};
use store::Store;
use store::session::{Activity, PeerRecord};

struct Api {
    d: Daemon,
    token: String,
    ws: store::Workspace,
    _tmp: TempDir,
}

impl Api {
    fn start(tag: &str) -> Api {
        let tmp = TempDir::new(tag);
        let data = tmp.path().join("data");
        let d = Daemon::start(&data, &bin_dir(), &tmp.path().join("no-demo"), &[]);
        let store = Store::open(&data.join("platform.db")).unwrap();
        let ws = store.workspace_named("default").unwrap().unwrap();
        let token = store::token::mint_management_token(&ws, Duration::from_secs(600), SystemTime::now());
        Api { d, token, ws, _tmp: tmp }
    }
    fn store(&self) -> Store {
        Store::open(&self.d.data_dir.join("platform.db")).unwrap()
    }
    fn get(&self, path: &str) -> Reply {
        self.d.call("GET", path, &self.token, None)
    }
    fn post(&self, path: &str, body: Value) -> Reply {
        self.d.call("POST", path, &self.token, Some(&body.to_string()))
    }
    fn delete(&self, path: &str) -> Reply {
        self.d.call("DELETE", path, &self.token, None)
    }
}

/// Asserts a status and the error shape; returns the body.
fn expect(r: &Reply, status: u16) -> Value {
    assert_eq!(r.status, status, "{}", r.text());
    let j = r.json();
    if status >= 400 {
        assert_eq!(j["code"], status, "{j}");
        assert!(j["message"].is_string() && j["details"].is_array(), "{j}");
    }
    j
}

fn details(j: &Value) -> Vec<String> {
    j["details"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_owned()).collect()
}

#[test]
fn tokens_are_checked_and_each_bad_kind_is_a_clear_401() {
    let api = Api::start("rest-auth");
    let now = SystemTime::now();
    let ws = &api.ws;
    let hour = Duration::from_secs(3600);
    let expired = store::token::mint_management_token(ws, Duration::from_secs(1), now - hour);
    let future = store::token::mint_management_token(ws, hour, now + hour);
    let wrong_secret =
        store::token::mint_management_token(&store::Workspace { secret: "0".repeat(64), ..ws.clone() }, hour, now);
    let auth_token = store::token::mint_auth_token(ws, "r", "u", "host", hour, now);
    for (token, needle) in [
        (expired.as_str(), "expired"),
        (future.as_str(), "not valid yet"),
        (wrong_secret.as_str(), "signature"),
        (auth_token.as_str(), "wrong token type"),
        ("not-a-jwt", "malformed"),
    ] {
        let r = api.d.call("GET", "/v2/rooms", token, None);
        let j = expect(&r, 401);
        assert_eq!(j["message"], "Token validation error");
        assert!(details(&j)[0].contains(needle), "{needle}: {j}");
    }
    let j = expect(&api.d.get("/v2/rooms"), 401);
    assert!(details(&j)[0].contains("missing Authorization"), "{j}");

    // A second workspace: its token works, and sees none of the first one's objects.
    let store = api.store();
    let other = store.create_workspace("production").unwrap();
    let other_token = store::token::mint_management_token(&other, hour, now);
    let room = expect(&api.post("/v2/rooms", json!({"name": "mine"})), 200);
    let id = room["id"].as_str().unwrap();
    expect(&api.d.call("GET", &format!("/v2/rooms/{id}"), &other_token, None), 404);
    let theirs = expect(&api.d.call("GET", "/v2/rooms", &other_token, None), 200);
    assert_eq!(theirs["data"].as_array().unwrap().len(), 0);
    // Signaling refuses a client token signed by another workspace for this room.
    wait_for_signaling(&api);
    let foreign = store::token::mint_auth_token(&other, id, "u", "host", hour, now);
    let init = common::https_request_with(
        api.d.signaling_port,
        &api.d.data_dir.join("tls/cert.pem"),
        "GET",
        "/init?peer_id=p1",
        None,
        &[("Authorization", &format!("Bearer {foreign}"))],
    );
    assert_eq!(init.status, 403, "{}", init.text());
    let own = store::token::mint_auth_token(ws, id, "u", "host", hour, now);
    let init = common::https_request_with(
        api.d.signaling_port,
        &api.d.data_dir.join("tls/cert.pem"),
        "GET",
        "/init?peer_id=p1",
        None,
        &[("Authorization", &format!("Bearer {own}"))],
    );
    assert_eq!(init.status, 200, "{}", init.text());
    // A rotated key pair of the first workspace works like the first.
    let second_key = store.add_credential(&ws.id).unwrap();
    let t2 = store::token::mint_management_token(&second_key, hour, now);
    expect(&api.d.call("GET", &format!("/v2/rooms/{id}"), &t2, None), 200);
    // Unknown routes and methods are JSON errors too.
    expect(&api.get("/v2/nothing-here"), 404);
    expect(&api.delete("/v2/rooms"), 405);
}

#[test]
fn templates_and_roles_are_validated_field_by_field() {
    let api = Api::start("rest-templates");
    // The default template is there.
    let list = expect(&api.get("/v2/templates"), 200);
    assert_eq!(list["limit"], 10);
    let default = &list["data"][0];
    assert_eq!(default["name"], "default");
    assert!(default["roles"]["host"]["permissions"]["endRoom"].as_bool().unwrap());
    assert!(default["roles"]["guest"].is_object());

    let body = json!({
        "name": "webinar",
        "roles": {
            "speaker": {"publishParams": {"allowed": ["audio", "video", "screen"]}, "subscribeParams": {"subscribeToRoles": ["speaker"]},
                        "permissions": {"endRoom": true}},
            "viewer": {"subscribeParams": {"subscribeToRoles": ["speaker"]}, "priority": 3}
        },
        "settings": {"region": "eu"}
    });
    let t = expect(&api.post("/v2/templates", body.clone()), 200);
    let tid = t["id"].as_str().unwrap().to_owned();
    assert_eq!(t["roles"]["viewer"]["publishParams"]["allowed"], json!([]));
    assert_eq!(t["roles"]["speaker"]["publishParams"]["video"]["width"], 320, "defaults fill what is left out");
    assert_eq!(t["settings"]["region"], "eu");
    // Creating with the same name overwrites that template (same id).
    let again = expect(&api.post("/v2/templates", body), 200);
    assert_eq!(again["id"], tid.as_str());

    // Validation: field-level details.
    let bad = expect(
        &api.post(
            "/v2/templates",
            json!({"name": "bad", "roles": {
                "a": {"subscribeParams": {"subscribeToRoles": ["ghost"]}, "publishParams": {"video": {"width": 9000}}}
            }}),
        ),
        400,
    );
    let d = details(&bad);
    assert!(d.iter().any(|x| x.starts_with("roles.a.subscribeParams.subscribeToRoles[0]: unknown role")), "{d:?}");
    assert!(d.iter().any(|x| x.starts_with("roles.a.publishParams.video.width")), "{d:?}");
    let empty = expect(&api.post("/v2/templates", json!({"name": "empty", "roles": {}})), 400);
    assert_eq!(details(&empty), ["roles: a template needs at least one role"]);
    expect(&api.post("/v2/templates", json!("nope")), 400);
    let r = api.d.call("POST", "/v2/templates", &api.token, Some("{not json"));
    assert!(details(&expect(&r, 400))[0].contains("key must be a string"), "{}", r.text());

    // Get, update (full replace), 404s.
    expect(&api.get(&format!("/v2/templates/{tid}")), 200);
    expect(&api.get("/v2/templates/000000000000000000000000"), 404);
    let upd = expect(&api.post(&format!("/v2/templates/{tid}"), json!({"roles": {"solo": {}}})), 200);
    assert_eq!(upd["name"], "webinar", "a missing name keeps the current one");
    assert_eq!(upd["roles"].as_object().unwrap().keys().collect::<Vec<_>>(), ["solo"]);

    // Roles: create, update, rename, get, delete.
    let role = expect(
        &api.post(&format!("/v2/templates/{tid}/roles/stage"), json!({"publishParams": {"allowed": ["audio"]}, "subscribeParams": {"subscribeToRoles": ["solo", "stage"]}})),
        200,
    );
    assert_eq!(role["name"], "stage");
    let role = expect(&api.post(&format!("/v2/templates/{tid}/roles/stage"), json!({"priority": 2})), 200);
    assert_eq!(role["publishParams"]["allowed"], json!(["audio"]), "an update merges");
    expect(
        &api.post(
            &format!("/v2/templates/{tid}/roles/solo"),
            json!({"subscribeParams": {"subscribeToRoles": ["stage"]}}),
        ),
        200,
    );
    let renamed = expect(&api.post(&format!("/v2/templates/{tid}/roles/stage"), json!({"name": "main-stage"})), 200);
    assert_eq!(renamed["name"], "main-stage");
    let solo = expect(&api.get(&format!("/v2/templates/{tid}/roles/solo")), 200);
    assert_eq!(solo["subscribeParams"]["subscribeToRoles"], json!(["main-stage"]), "a rename follows subscriptions");
    let bad_role = expect(
        &api.post(
            &format!("/v2/templates/{tid}/roles/solo"),
            json!({"priority": 0, "publishParams": {"allowed": ["smell"]}}),
        ),
        400,
    );
    assert_eq!(details(&bad_role).len(), 2, "{bad_role}");
    expect(&api.get(&format!("/v2/templates/{tid}/roles/nobody")), 404);
    let del = api.delete(&format!("/v2/templates/{tid}/roles/main-stage"));
    assert_eq!(del.status, 204, "{}", del.text());
    expect(&api.delete(&format!("/v2/templates/{tid}/roles/main-stage")), 404);
    let solo = expect(&api.get(&format!("/v2/templates/{tid}/roles/solo")), 200);
    assert_eq!(solo["subscribeParams"]["subscribeToRoles"], json!([]));
    let last = expect(&api.delete(&format!("/v2/templates/{tid}/roles/solo")), 400);
    assert_eq!(details(&last), ["roles: a template needs at least one role"]);

    // Settings, destinations, recordings.
    let s = expect(
        &api.post(
            &format!("/v2/templates/{tid}/settings"),
            json!({"region": "us", "roomState": {"messageInterval": 10}}),
        ),
        200,
    );
    assert_eq!(s["region"], "us");
    assert_eq!(expect(&api.get(&format!("/v2/templates/{tid}/settings")), 200)["region"], "us");
    expect(&api.post(&format!("/v2/templates/{tid}/settings"), json!({"region": "moon"})), 400);
    expect(&api.post(&format!("/v2/templates/{tid}/destinations"), json!({"rtmpDestinations": {}})), 200);
    assert!(expect(&api.get(&format!("/v2/templates/{tid}/destinations")), 200)["rtmpDestinations"].is_object());
    let rec = json!([{"name": "rec", "role": "solo", "trackRecording": {"enabled": true}}]);
    assert_eq!(expect(&api.post(&format!("/v2/templates/{tid}/recordings"), rec.clone()), 200), rec);
    assert_eq!(expect(&api.get(&format!("/v2/templates/{tid}/recordings")), 200), rec);
    let two = expect(&api.post(&format!("/v2/templates/{tid}/recordings"), json!([{}, {}])), 400);
    assert_eq!(details(&two), ["recordings: only one recording config is allowed"]);
}

#[test]
fn rooms_codes_tokens_and_pagination() {
    let api = Api::start("rest-rooms");
    let r = expect(
        &api.post(
            "/v2/rooms",
            json!({"name": "Standup", "description": "daily", "region": "eu", "size": 10, "max_duration_seconds": 600}),
        ),
        200,
    );
    let id = r["id"].as_str().unwrap().to_owned();
    assert_eq!((r["enabled"].as_bool(), r["template"].as_str()), (Some(true), Some("default")));
    assert_eq!((r["description"].as_str(), r["max_duration_seconds"].as_u64()), (Some("daily"), Some(600)));
    // Upsert by name, case-insensitively.
    let again = expect(&api.post("/v2/rooms", json!({"name": "standup", "description": "updated"})), 200);
    assert_eq!((again["id"].as_str(), again["description"].as_str()), (Some(id.as_str()), Some("updated")));
    // Validation.
    let bad = expect(
        &api.post("/v2/rooms", json!({"name": "has space", "size": 5000, "max_duration_seconds": 50, "template": "x"})),
        400,
    );
    assert_eq!(details(&bad).len(), 3, "{bad}");
    let bad_name = expect(&api.post("/v2/rooms", json!({"name": "has space"})), 400);
    assert!(details(&bad_name)[0].starts_with("name:"), "{bad_name}");
    expect(&api.post("/v2/rooms", json!({"description": "no name"})), 400);
    expect(&api.post("/v2/rooms", json!({"name": "x", "template_id": "000000000000000000000000"})), 404);
    // Get, update, disable.
    expect(&api.get(&format!("/v2/rooms/{id}")), 200);
    expect(&api.get("/v2/rooms/000000000000000000000000"), 404);
    let off = expect(&api.post(&format!("/v2/rooms/{id}"), json!({"enabled": false})), 200);
    assert_eq!(off["enabled"], false);
    assert!(!api.store().room(&id).unwrap().unwrap().enabled, "disabled in the database signaling reads");
    expect(&api.post(&format!("/v2/rooms/{id}"), json!({"region": "nowhere"})), 400);

    // Pagination over 25 rooms: pages of 10, 10, 5, each continuing where the last stopped.
    for i in 0..25 {
        expect(&api.post("/v2/rooms", json!({"name": format!("room-{i:02}")})), 200);
    }
    let mut seen = Vec::new();
    let mut start = String::new();
    loop {
        let page = expect(&api.get(&format!("/v2/rooms?limit=10&start={start}")), 200);
        let data = page["data"].as_array().unwrap();
        seen.extend(data.iter().map(|r| r["name"].as_str().unwrap().to_owned()));
        match page["last"].as_str() {
            Some(l) => start = l.to_owned(),
            None => break,
        }
        assert_eq!(data.len(), 10);
    }
    assert_eq!(seen.len(), 25, "enabled rooms only by default: {seen:?}");
    assert_eq!(seen[0], "room-00");
    let disabled = expect(&api.get("/v2/rooms?enabled=false"), 200);
    assert_eq!(disabled["data"][0]["id"], id.as_str());
    assert_eq!(disabled["data"][0]["key"], format!("{}:Standup", api.ws.id));
    assert_eq!(expect(&api.get("/v2/rooms?name=room-07"), 200)["data"].as_array().unwrap().len(), 1);
    for bad in ["limit=5", "limit=101", "limit=x", "enabled=maybe", "after=yesterday"] {
        expect(&api.get(&format!("/v2/rooms?{bad}")), 400);
    }

    // Room codes.
    let room2 = expect(&api.post("/v2/rooms", json!({"name": "town-hall"})), 200)["id"].as_str().unwrap().to_owned();
    let codes = expect(&api.post(&format!("/v2/room-codes/room/{room2}"), json!({})), 200);
    let codes = codes["data"].as_array().unwrap();
    assert_eq!(codes.len(), 3, "one per role: {codes:?}");
    let guest_code = codes.iter().find(|c| c["role"] == "guest").unwrap()["code"].as_str().unwrap().to_owned();
    let one = expect(&api.post(&format!("/v2/room-codes/room/{room2}/role/host"), json!({})), 200);
    assert_eq!(one["role"], "host");
    expect(&api.post(&format!("/v2/room-codes/room/{room2}/role/ghost"), json!({})), 404);
    let listed = expect(&api.get(&format!("/v2/room-codes/room/{room2}?role=host")), 200);
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
    expect(&api.get("/v2/room-codes/room/000000000000000000000000"), 404);

    // The exchange: no management token; the token it gives verifies for the code's role.
    let t = expect(&api.d.post("/v2/token", &json!({"code": guest_code, "user_id": "u-42"}).to_string()), 200);
    let (claims, _) =
        store::token::verify_auth_token(&api.store(), t["token"].as_str().unwrap(), SystemTime::now()).unwrap();
    assert_eq!(
        (claims.room_id.as_str(), claims.role.as_str(), claims.user_id.as_str()),
        (room2.as_str(), "guest", "u-42")
    );
    let preflight = api.d.request("OPTIONS", "/v2/token", None);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
    let r = api.d.post("/v2/token", &json!({"code": "zzz-zzzz-zzz"}).to_string());
    expect(&r, 404);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"), "errors carry CORS too, so the SDK can read them");
    let off = expect(&api.post("/v2/room-codes/code", json!({"code": guest_code, "enabled": false})), 200);
    assert_eq!(off["enabled"], false);
    expect(&api.d.post("/v2/token", &json!({"code": guest_code}).to_string()), 403);
    let extra =
        expect(&api.post("/v2/room-codes/code", json!({"code": guest_code, "enabled": true, "role": "host"})), 400);
    assert_eq!(details(&extra), ["role: only code and enabled may be given"]);
    expect(&api.post("/v2/room-codes/code", json!({"code": "abc-defg-hij", "enabled": true})), 404);

    // Auth tokens minted over REST.
    let minted = expect(
        &api.post("/v2/auth-tokens", json!({"room_id": room2, "role": "host", "user_id": "boss", "expires_in": 60})),
        200,
    );
    let (c, _) =
        store::token::verify_auth_token(&api.store(), minted["token"].as_str().unwrap(), SystemTime::now()).unwrap();
    assert_eq!((c.role.as_str(), c.exp - c.iat), ("host", 60));
    let bad = expect(&api.post("/v2/auth-tokens", json!({"room_id": room2, "role": "emperor"})), 400);
    assert!(details(&bad)[0].starts_with("role:"), "{bad}");
    expect(&api.post("/v2/auth-tokens", json!({"role": "host", "expires_in": 0})), 400);
    expect(&api.post("/v2/auth-tokens", json!({"room_id": "000000000000000000000000", "role": "host"})), 404);
}

#[test]
fn prebuilt_layouts_are_per_role_checked_and_read_with_an_auth_token_and_feedback_is_kept() {
    let api = Api::start("rest-layouts");
    let tmpl = expect(
        &api.post(
            "/v2/templates",
            json!({"name": "meet", "roles": {
                "host": {"publishParams": {"allowed": ["audio", "video"]}, "permissions": {"removeOthers": true}},
                "viewer": {"subscribeParams": {"subscribeToRoles": ["host"]}}
            }}),
        ),
        200,
    );
    let tid = tmpl["id"].as_str().unwrap().to_owned();
    let all = expect(&api.get(&format!("/v2/templates/{tid}/layouts")), 200);
    let roles: Vec<&str> = all["data"].as_array().unwrap().iter().map(|l| l["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["host", "viewer"]);
    let host = &all["data"][0];
    assert_eq!(host["template_id"], tid.as_str());
    assert!(host.pointer("/screens/conferencing/default/elements/chat/allow_pinning_messages") == Some(&json!(true)));

    // A bad layout: every problem with its path, and nothing stored.
    let bad = expect(
        &api.post(
            &format!("/v2/templates/{tid}/layouts/viewer"),
            json!({"screens": {"conferencing": {"default": {"elements": {"chat": {"chat_title": 7}, "polls": {}}}}}}),
        ),
        400,
    );
    let d = details(&bad);
    assert!(
        d.iter().any(|e| e.starts_with("screens.conferencing.default.elements.chat.chat_title: must be a string")),
        "{d:?}"
    );
    assert!(d.iter().any(|e| e.starts_with("screens.conferencing.default.elements.polls: unknown field")), "{d:?}");
    expect(&api.post(&format!("/v2/templates/{tid}/layouts/viewer"), json!([1, 2])), 400);
    expect(&api.post(&format!("/v2/templates/{tid}/layouts/nobody"), json!({})), 404);
    expect(&api.get("/v2/templates/000000000000000000000000/layouts"), 404);

    // Set one, read it back; a template replace keeps it; reset brings the default back.
    let mine = json!({"typography": {"font_family": "Lato"}, "screens": {"preview": {"skip_preview_screen": true}}});
    let set = expect(&api.post(&format!("/v2/templates/{tid}/layouts/viewer"), mine), 200);
    assert_eq!((set["typography"]["font_family"].as_str(), set["role"].as_str()), (Some("Lato"), Some("viewer")));
    expect(
        &api.post(
            &format!("/v2/templates/{tid}"),
            json!({"name": "meet", "roles": {"host": {}, "viewer": {"subscribeParams": {"subscribeToRoles": ["host"]}}}}),
        ),
        200,
    );
    let kept = expect(&api.get(&format!("/v2/templates/{tid}/layouts/viewer")), 200);
    assert_eq!(kept["screens"]["preview"]["skip_preview_screen"], true, "{kept}");

    // Prebuilt's read, with a peer's auth token: the token's role first.
    let room = expect(&api.post("/v2/rooms", json!({"name": "meet-room", "template_id": tid})), 200);
    let room_id = room["id"].as_str().unwrap();
    let minted =
        expect(&api.post("/v2/auth-tokens", json!({"room_id": room_id, "role": "viewer", "user_id": "v1"})), 200);
    let auth = minted["token"].as_str().unwrap();
    let ui = api.d.call("GET", "/v2/layouts/ui", auth, None);
    let ui = expect(&ui, 200);
    assert_eq!(ui["data"][0]["role"], "viewer");
    assert_eq!(ui["data"][0]["typography"]["font_family"], "Lato");
    assert_eq!(ui["data"].as_array().unwrap().len(), 2);
    expect(&api.d.call("GET", "/v2/layouts/ui", &api.token, None), 401);
    expect(&api.d.call("GET", "/v2/layouts/ui", "nonsense", None), 401);

    let reset = expect(&api.delete(&format!("/v2/templates/{tid}/layouts/viewer")), 200);
    assert_eq!(reset["typography"]["font_family"], "Inter", "the default again");

    // The event endpoint keeps feedback as sent, for the token's room.
    let fb = json!({"peer": {"peer_id": "p1", "session_id": "s1"}, "payload": {"rating": 4, "comment": "fine"}});
    let kept = api.d.call("POST", "/v2/client/feedback", auth, Some(&fb.to_string()));
    expect(&kept, 200);
    let stored = api.store().feedback(&api.ws.id, Some(room_id), &store::Page::first(10)).unwrap().data;
    assert_eq!((stored.len(), stored[0].peer_id.as_str(), stored[0].role.as_str()), (1, "p1", "viewer"));
    assert_eq!(stored[0].body["payload"]["rating"], 4);
    expect(&api.d.call("POST", "/v2/client/feedback", auth, Some("not json")), 400);
    expect(&api.d.call("POST", "/v2/client/feedback", auth, Some(&"x".repeat(20_000))), 400);
    expect(&api.d.call("POST", "/v2/client/feedback", &api.token, Some("{}")), 401);
}

#[test]
fn polls_are_made_checked_rewritten_while_drafts_and_read_back() {
    let api = Api::start("rest-polls");
    let quiz = json!({
        "id": "capitals", "title": "Capitals", "type": "quiz", "vote": ["guest"],
        "questions": [
            {"text": "Capital of France?", "type": "single-choice", "options": [{"text": "Lyon"}, {"text": "Paris"}], "answer": {"option": 2}},
            {"text": "Say hi", "type": "short-answer", "skippable": true}
        ]
    });
    let made = expect(&api.post("/v2/polls", quiz.clone()), 200);
    assert_eq!((made["id"].as_str(), made["state"].as_str()), (Some("capitals"), Some("created")));
    assert_eq!(made["questions"][0]["index"], 1);
    assert_eq!(made["questions"][0]["options"][1]["text"], "Paris");
    assert_eq!(made["questions"][0]["answer"]["option"], 2);
    expect(&api.post("/v2/polls", quiz), 409);
    let bad = expect(
        &api.post("/v2/polls", json!({"title": "", "type": "survey", "questions": [{"text": "?", "type": "single-choice", "options": [{"text": "one"}]}]})),
        400,
    );
    let d = details(&bad);
    for field in ["title:", "type:", "questions[0].options:"] {
        assert!(d.iter().any(|e| e.starts_with(field)), "{field} in {d:?}");
    }
    let renamed = expect(&api.post("/v2/polls/capitals", json!({"title": "World capitals", "type": "quiz"})), 200);
    assert_eq!(
        (renamed["title"].as_str(), renamed["questions"].as_array().map(Vec::len)),
        (Some("World capitals"), Some(0))
    );
    assert_eq!(expect(&api.get("/v2/polls/capitals"), 200)["title"], "World capitals");
    expect(&api.get("/v2/polls/nope"), 404);
    expect(&api.post("/v2/polls/nope", json!({"title": "x"})), 404);
    let empty = expect(&api.get("/v2/polls/capitals/responses"), 200);
    assert_eq!(empty["data"], json!([]));
    let results = expect(&api.get("/v2/polls/capitals/results"), 200);
    assert_eq!((results["user_count"].as_u64(), results["leaderboard"]["voted_users"].as_u64()), (Some(0), Some(0)));
    expect(&api.get("/v2/polls/capitals/responses?question=x"), 400);
    // A room lists it, 100ms's way of linking a poll to a room.
    let room = expect(&api.post("/v2/rooms", json!({"name": "quiz-room", "polls": ["capitals"]})), 200);
    assert_eq!(room["polls"], json!(["capitals"]));
}

#[test]
fn sessions_active_rooms_and_webhook_settings() {
    let api = Api::start("rest-sessions");
    let room = expect(&api.post("/v2/rooms", json!({"name": "call"})), 200)["id"].as_str().unwrap().to_owned();
    // Sessions come from the database signaling writes; write one directly.
    let store = api.store();
    let t0 = SystemTime::now() - Duration::from_secs(60);
    let a = PeerRecord::new("peer-a", "user-a", "Ann", "host", t0);
    let sid = store.record_activity(&room, &Activity::PeerJoined { peer: a.clone() }, t0).unwrap().unwrap();
    let active = expect(&api.get(&format!("/v2/sessions?room_id={room}")), 200);
    assert_eq!(active["data"][0]["id"], sid.as_str());
    assert_eq!(active["data"][0]["peers"]["peer-a"]["name"], "Ann");
    let left =
        Activity::PeerLeft { peer: a, reason: "client request".into(), message: String::new(), session_waits: false };
    store.record_activity(&room, &left, t0 + Duration::from_secs(30)).unwrap();
    assert_eq!(expect(&api.get("/v2/sessions"), 200)["data"].as_array().unwrap().len(), 0, "active ones by default");
    let ended = expect(&api.get("/v2/sessions?active=false"), 200);
    let s = &ended["data"][0];
    assert_eq!(s["active"], false);
    assert!(s["peers"]["peer-a"]["left_at"].is_string());
    let one = expect(&api.get(&format!("/v2/sessions/{sid}")), 200);
    assert_eq!(one["room_id"], room.as_str());
    expect(&api.get("/v2/sessions/nope"), 404);
    expect(&api.get("/v2/sessions?before=garbage"), 400);

    // Active rooms: the live room is signaling's; an empty room is "not active".
    wait_for_signaling(&api);
    let j = expect(&api.get(&format!("/v2/active-rooms/{room}")), 404);
    assert_eq!(j["message"], "room is not active");
    expect(&api.get(&format!("/v2/active-rooms/{room}/peers")), 404);
    expect(&api.get("/v2/active-rooms/000000000000000000000000"), 404);
    let bad = expect(&api.post(&format!("/v2/active-rooms/{room}/send-message"), json!({"type": "chat"})), 400);
    assert_eq!(details(&bad), ["message: required"]);
    expect(&api.post(&format!("/v2/active-rooms/{room}/remove-peers"), json!({"reason": "x"})), 400);
    expect(&api.post(&format!("/v2/active-rooms/{room}/end-room"), json!({"lock": "yes"})), 400);
    expect(&api.post(&format!("/v2/active-rooms/{room}/peers/p"), json!({})), 400);
    expect(&api.post(&format!("/v2/active-rooms/{room}/peers/p"), json!({"role": "ghost"})), 400);
    expect(&api.post(&format!("/v2/active-rooms/{room}/send-message"), json!({"message": "hi"})), 404);
    expect(&api.post(&format!("/v2/active-rooms/{room}/end-room"), json!({"reason": "done"})), 404);

    // Webhook endpoint and the event log.
    assert_eq!(expect(&api.get("/v2/webhooks"), 200)["url"], Value::Null);
    let set =
        expect(&api.post("/v2/webhooks", json!({"url": "http://127.0.0.1:9/hook", "headers": {"x-app": "demo"}})), 200);
    let secret = set["secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 64);
    let same = expect(&api.post("/v2/webhooks", json!({"url": "http://127.0.0.1:9/hook", "headers": {}})), 200);
    assert_eq!(same["secret"], secret.as_str(), "the same URL keeps its secret");
    expect(&api.post("/v2/webhooks", json!({"url": "gopher://x"})), 400);
    expect(&api.post("/v2/webhooks", json!({"url": "http://x", "headers": {"bad header": "v"}})), 400);
    let events = expect(&api.get("/v2/webhooks/events?limit=100"), 200);
    let kinds: Vec<&str> = events["data"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["session.open.success", "peer.join.success", "peer.leave.success", "session.close.success"]);
    assert_eq!(events["data"][0]["status"], "unrouted", "written before an endpoint existed");
    expect(&api.get("/v2/webhooks/events?status=lost"), 400);
    assert_eq!(api.delete("/v2/webhooks").status, 204);
    assert_eq!(expect(&api.get("/v2/webhooks"), 200)["url"], Value::Null);
}

fn wait_for_signaling(api: &Api) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let room = expect(&api.post("/v2/rooms", json!({"name": "probe"})), 200)["id"].as_str().unwrap().to_owned();
    loop {
        let r = api.get(&format!("/v2/active-rooms/{room}"));
        if r.status == 404 {
            return;
        }
        assert!(Instant::now() < deadline, "signaling's admin socket did not come up: {}", r.text());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn openapi_and_the_docs_cover_every_route() {
    let api = Api::start("rest-docs");
    let doc = expect(&api.d.get("/v2/openapi.json"), 200);
    let paths = doc["paths"].as_object().unwrap();
    let docs = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/rest-api.md")).unwrap();
    let mut count = 0;
    for route in control::http::rest::ROUTES {
        count += 1;
        assert!(paths[route.path][route.method.to_lowercase()].is_object(), "{route:?} is not in the OpenAPI document");
        let line = format!("`{} {}`", route.method, route.path);
        assert!(docs.contains(&line), "docs/rest-api.md does not document {line}");
        // Every documented route exists: a request to it is never the router's "no such route".
        let path = route.path.replace("{template_id}", "t").replace("{role}", "r").replace("{room_id}", "r");
        let path = path.replace("{peer_id}", "p").replace("{session_id}", "s");
        let r = api.d.call(route.method, &path, &api.token, Some("{}"));
        assert_ne!(r.status, 405, "{line}: {}", r.text());
        assert!(r.status != 404 || r.json()["message"] != "no such API endpoint", "{line} is not routed");
    }
    assert_eq!(paths.values().map(|p| p.as_object().unwrap().len()).sum::<usize>(), count);
    // And the docs name no route the table lacks.
    for line in docs.lines().filter(|l| l.starts_with("### `")) {
        let route = line.trim_start_matches("### `").split('`').next().unwrap();
        let (method, path) = route.split_once(' ').unwrap();
        assert!(
            control::http::rest::ROUTES.iter().any(|r| r.method == method && r.path == path),
            "docs/rest-api.md documents {route}, which does not exist"
        );
    }
}

//! `POST /api/token` and `control token` mint auth tokens that `store::token` verifies, for a
//! room created in the default workspace; `/api/config` describes the platform; bad requests
//! get 400 with a JSON `{code, message}`.
//!
//! `--bin-dir` is an empty directory here: router and signaling cannot start (the supervisor
//! logs and retries), which the API does not depend on.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::time::SystemTime;

use common::{Daemon, TempDir};
use store::Store;

#[test]
fn api_token_mints_tokens_that_verify_for_the_named_room_and_role() {
    let tmp = TempDir::new("token");
    let data = tmp.path().join("data");
    std::fs::create_dir(tmp.path().join("bin")).unwrap();
    let d = Daemon::start(&data, &tmp.path().join("bin"), &tmp.path().join("no-demo"), &[]);

    let r = d.post("/api/token", r#"{"room":"standup","user":"alice","role":"host"}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("content-type").unwrap().starts_with("application/json"));
    let j = r.json();
    let token = j["token"].as_str().unwrap();
    let room_id = j["room_id"].as_str().unwrap();
    assert_eq!(room_id.len(), 24);
    assert!(!token.split('.').nth(1).unwrap().contains(['-', '_']), "payload must be atob-decodable");

    let store = Store::open(&data.join("platform.db")).unwrap();
    let (claims, ws) = store::token::verify_auth_token(&store, token, SystemTime::now()).unwrap();
    assert_eq!((claims.room_id.as_str(), claims.user_id.as_str(), claims.role.as_str()), (room_id, "alice", "host"));
    assert_eq!(claims.kind, "app");
    assert!(claims.exp - claims.iat >= 3600, "demo tokens last long enough to use");
    let room = store.room(room_id).unwrap().unwrap();
    assert_eq!((room.name.as_str(), room.workspace_id.as_str()), ("standup", ws.id.as_str()));
    assert!(store.template(&room.template_id).unwrap().unwrap().roles.contains_key("host"));

    // The same room name gives the same room; another name another room.
    let again = d.post("/api/token", r#"{"room":"standup","user":"bob","role":"audio-only"}"#).json();
    assert_eq!(again["room_id"], room_id);
    let other = d.post("/api/token", r#"{"room":"retro","user":"bob","role":"guest"}"#).json();
    assert_ne!(other["room_id"], room_id);
    let (c, _) = store::token::verify_auth_token(&store, other["token"].as_str().unwrap(), SystemTime::now()).unwrap();
    assert_eq!(c.role, "guest");

    // credentials.json holds the same workspace's key, readable by the owner only.
    let creds: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("credentials.json")).unwrap()).unwrap();
    assert_eq!(creds["access_key"], ws.access_key.as_str());
    assert_eq!(creds["secret"], ws.secret.as_str());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data.join("credentials.json")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn api_config_names_the_init_endpoint_roles_and_template() {
    let tmp = TempDir::new("config");
    let data = tmp.path().join("data");
    std::fs::create_dir(tmp.path().join("bin")).unwrap();
    let d = Daemon::start(&data, &tmp.path().join("bin"), &tmp.path().join("no-demo"), &[]);
    let r = d.get("/api/config");
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["initEndpoint"], format!("https://localhost:{}", d.signaling_port));
    assert_eq!(j["roles"], serde_json::json!(["host", "guest", "audio-only"]));
    let store = Store::open(&data.join("platform.db")).unwrap();
    let ws = store.ensure_default_workspace().unwrap();
    assert_eq!(j["templateId"], store.default_template(&ws.id).unwrap().id.as_str());
}

#[test]
fn bad_token_requests_get_400_with_a_json_reason() {
    let tmp = TempDir::new("bad");
    let data = tmp.path().join("data");
    std::fs::create_dir(tmp.path().join("bin")).unwrap();
    let d = Daemon::start(&data, &tmp.path().join("bin"), &tmp.path().join("no-demo"), &[]);
    let long_user = format!(r#"{{"room":"r","user":"{}","role":"host"}}"#, "u".repeat(200));
    let long_room = format!(r#"{{"room":"{}","user":"u","role":"host"}}"#, "r".repeat(200));
    let cases: &[(&str, &str)] = &[
        ("", "expected"),
        ("not json", "expected"),
        (r#"{"room":"r","user":"u"}"#, "role"),
        (r#"{"room":"r","role":"host"}"#, "user"),
        (r#"{"user":"u","role":"host"}"#, "room"),
        (r#"{"room":"r","user":"u","role":"admin"}"#, "unknown role"),
        (r#"{"room":"r","user":"","role":"host"}"#, "user"),
        (r#"{"room":"has space","user":"u","role":"host"}"#, "room"),
        (r#"{"room":"","user":"u","role":"host"}"#, "room"),
        (r#"{"room":7,"user":"u","role":"host"}"#, "expected"),
        (&long_user, "user"),
        (&long_room, "room"),
    ];
    for (body, needle) in cases {
        let r = d.post("/api/token", body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        let j = r.json();
        assert_eq!(j["code"], 400, "{body}");
        let msg = j["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{body}: message {msg:?} should mention {needle:?}");
    }
    // A role typo creates no room.
    let store = Store::open(&data.join("platform.db")).unwrap();
    let ws = store.ensure_default_workspace().unwrap();
    let fresh = store.upsert_room(&ws.id, "r", None).unwrap();
    let via_api = d.post("/api/token", r#"{"room":"r","user":"u","role":"guest"}"#).json();
    assert_eq!(via_api["room_id"], fresh.id.as_str(), "the earlier bad requests did not create room r");

    let r = d.get("/api/token");
    assert_eq!(r.status, 405);
    assert_eq!(r.json()["code"], 405);
    let r = d.get("/api/nope");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["code"], 404);
}

#[test]
fn token_subcommand_prints_a_verifiable_token() {
    let tmp = TempDir::new("cli");
    let data = tmp.path().join("data");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_control"))
        .args(["token", "--room", "cli-room", "--role", "guest", "--user", "script"])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap();
    let store = Store::open(&data.join("platform.db")).unwrap();
    let (c, _) = store::token::verify_auth_token(&store, token.trim(), SystemTime::now()).unwrap();
    assert_eq!((c.user_id.as_str(), c.role.as_str()), ("script", "guest"));
    assert_eq!(store.room(&c.room_id).unwrap().unwrap().name, "cli-room");

    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_control"))
        .args(["token", "--room", "cli-room", "--role", "nobody", "--user", "script"])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown role"));
}

#[test]
fn api_room_codes_gives_a_code_per_role_that_the_code_exchange_turns_into_a_token() {
    let tmp = TempDir::new("codes");
    let data = tmp.path().join("data");
    std::fs::create_dir(tmp.path().join("bin")).unwrap();
    let d = Daemon::start(&data, &tmp.path().join("bin"), &tmp.path().join("no-demo"), &[]);
    let r = d.post("/api/room-codes", r#"{"room":"standup"}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    let codes = j["codes"].as_object().unwrap();
    let mut roles: Vec<&str> = codes.keys().map(String::as_str).collect();
    roles.sort();
    assert_eq!(roles, ["audio-only", "guest", "host"]);
    // Asked again, the same codes: a link handed out stays good.
    assert_eq!(d.post("/api/room-codes", r#"{"room":"standup"}"#).json()["codes"], j["codes"]);
    let exchanged = d.post("/v2/token", &format!(r#"{{"code":{},"user_id":"alice"}}"#, codes["guest"]));
    assert_eq!(exchanged.status, 200, "{}", exchanged.text());
    let store = Store::open(&data.join("platform.db")).unwrap();
    let token = exchanged.json()["token"].as_str().unwrap().to_string();
    let (claims, _) = store::token::verify_auth_token(&store, &token, SystemTime::now()).unwrap();
    assert_eq!((claims.room_id.as_str(), claims.role.as_str()), (j["room_id"].as_str().unwrap(), "guest"));
    assert_eq!(d.post("/api/room-codes", r#"{"room":""}"#).status, 400);
    assert_eq!(d.post("/api/room-codes", "not json").status, 400);
}

/// Bound beyond loopback, the demo's endpoints that let anyone in are off unless the operator
/// says the network is trusted; the room-code exchange (the code is the credential) still works.
#[test]
fn demo_token_endpoints_answer_403_beyond_loopback_unless_opened() {
    for (open, want) in [(false, 403), (true, 200)] {
        let tmp = TempDir::new(if open { "open-demo" } else { "closed-demo" });
        let data = tmp.path().join("data");
        std::fs::create_dir(tmp.path().join("bin")).unwrap();
        let mut args = vec!["--listen", "0.0.0.0:0"];
        if open {
            args.push("--open-demo-tokens");
        }
        let d = Daemon::start_with_args(&data, &tmp.path().join("bin"), &tmp.path().join("no-demo"), &[], &args);
        let token = d.post("/api/token", r#"{"room":"standup","user":"alice","role":"host"}"#);
        assert_eq!(token.status, want, "open={open}: {}", token.text());
        let codes = d.post("/api/room-codes", r#"{"room":"standup"}"#);
        assert_eq!(codes.status, want, "open={open}: {}", codes.text());
        if !open {
            assert!(token.json()["message"].as_str().unwrap().contains("--open-demo-tokens"), "{}", token.text());
        } else {
            let log = std::fs::read_to_string(data.with_extension("log")).unwrap();
            assert!(log.contains("ANYONE WHO CAN REACH"), "the open endpoints are not warned about:\n{log}");
        }
    }
}

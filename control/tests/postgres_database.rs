//! The daemon on PostgreSQL (`--database-url`): its processes (control and signaling) share
//! the database, rooms created over REST survive a restart, and no SQLite file is made.
//!
//! Runs when `STORE_TEST_POSTGRES_URL` names a server (scripts/test.sh starts one with
//! scripts/postgres-test-server.sh); skipped, with a note, otherwise. Needs the `router` and
//! `signaling` binaries beside `control` (a workspace build).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::{Daemon, TempDir, real_bin_dir as bin_dir};
use serde_json::{Value, json};
use store::Store;

/// A fresh database on the test server; dropped with the guard.
struct Database {
    admin: String,
    name: String,
    url: String,
}

impl Database {
    fn create(admin: &str) -> Database {
        let name = format!("control_test_{}", store::new_id());
        let mut c = postgres::Client::connect(admin, postgres::NoTls).unwrap();
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let (base, _) = admin.rsplit_once('/').unwrap();
        Database { admin: admin.to_owned(), url: format!("{base}/{name}"), name }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

fn rooms(d: &Daemon, token: &str) -> Vec<String> {
    let r = d.call("GET", "/v2/rooms", token, None);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["data"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn rooms_live_in_postgres_across_a_restart() {
    let Ok(admin) = std::env::var("STORE_TEST_POSTGRES_URL") else {
        eprintln!("skipped: STORE_TEST_POSTGRES_URL unset");
        return;
    };
    let db = Database::create(&admin);
    let tmp = TempDir::new("control-postgres");
    let data = tmp.path().join("data");
    let no_demo = tmp.path().join("no-demo");
    let mut d = Daemon::start_with_args(&data, &bin_dir(), &no_demo, &[], &["--database-url", &db.url]);
    assert!(!data.join("platform.db").exists(), "no SQLite file when a database URL is given");

    let store = Store::connect(&db.url).unwrap();
    assert!(store.is_postgres());
    let ws = store.workspace_named("default").unwrap().unwrap();
    let token = store::token::mint_management_token(&ws, Duration::from_secs(600), SystemTime::now());
    let r = d.call("POST", "/v2/rooms", &token, Some(&json!({"name": "Kept-Room"}).to_string()));
    assert_eq!(r.status, 200, "{}", r.text());
    let room_id = r.json()["id"].as_str().unwrap().to_owned();

    // Signaling reads the same database: it accepts a token for the room (retrying while it
    // starts up).
    let auth = store::token::mint_auth_token(&ws, &room_id, "u", "host", Duration::from_secs(600), SystemTime::now());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let init = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            common::https_request_with(
                d.signaling_port,
                &data.join("tls/cert.pem"),
                "GET",
                "/init?peer_id=p1",
                None,
                &[("Authorization", &format!("Bearer {auth}"))],
            )
        }));
        match init {
            Ok(r) if r.status == 200 => break,
            Ok(r) => assert!(Instant::now() < deadline, "signaling /init: {} {}", r.status, r.text()),
            Err(_) => assert!(Instant::now() < deadline, "signaling did not come up"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(data.join("signaling-state").is_dir(), "signaling keeps its snapshots in the data directory");
    d.stop();

    // The subcommands take the URL too: `control token` finds the room by name, any case.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_control"))
        .args(["token", "--room", "kept-room", "--role", "guest", "--user", "cli", "--database-url", &db.url])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    let (claims, _) = store::token::verify_auth_token(&store, printed.trim(), SystemTime::now()).unwrap();
    assert_eq!(claims.room_id, room_id);

    let d = Daemon::start_with_args(&data, &bin_dir(), &no_demo, &[], &["--database-url", &db.url]);
    assert_eq!(rooms(&d, &token), ["Kept-Room"]);
    let listed: Value = d.call("GET", &format!("/v2/rooms/{room_id}"), &token, None).json();
    assert_eq!(listed["name"], "Kept-Room");
    assert!(!data.join("platform.db").exists());
}

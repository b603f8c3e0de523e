//! What a peer can learn of the others and of the room: large-room peer queries (`get-peer`,
//! `find-peer`, `peer-iter-next`, `peer-name-search`), `room-info`, `session-info` and the
//! preview's `room-state`; and who may come in (the room's `size`, a role's `maxPeerCount`)
//! with the failure events.

use super::*;

/// Joins `n` guests named `Guest <i>` (peer ids `g00`, `g01`, ...) and puts every third in
/// the group `stage`.
async fn crowd(t: &mut TestRoom, n: usize) -> Vec<mpsc::UnboundedReceiver<Outbound>> {
    let mut sockets = Vec::new();
    for i in 0..n {
        let id = format!("g{i:02}");
        let mut rx = t.attach(&id, "guest").await;
        let join = json!({ "offer": { "type": "offer", "sdp": audio_offer() }, "name": format!("Guest {i}") });
        t.request(&id, "j", "join", join).await;
        assert_eq!(response(&mut rx, "j")["result"]["type"], "answer");
        if i % 3 == 0 {
            t.request(&id, "s", "group-join", json!({ "name": "stage" })).await;
        }
        sockets.push(rx);
    }
    sockets
}

#[tokio::test]
async fn find_peer_pages_through_the_matching_peers_and_get_peer_finds_one() {
    let mut t = test_room();
    let mut host = t.join("host1", "host").await;
    let _crowd = crowd(&mut t, 25).await;
    let _ = pushes(&mut host, "");

    // Every guest, ten at a time, in order, each exactly once.
    t.request("host1", "f", "find-peer", json!({ "role": "guest", "limit": 10 })).await;
    let mut page = response(&mut host, "f")["result"].clone();
    let mut seen = Vec::new();
    loop {
        assert_eq!(page["total"], 25, "{page}");
        seen.extend(page["peers"].as_array().unwrap().iter().map(|p| p["peer_id"].as_str().unwrap().to_owned()));
        assert!(
            page["peers"].as_array().unwrap().iter().all(|p| p["role"] == "guest" && p["info"]["name"].is_string())
        );
        if page["eof"] == true {
            break;
        }
        t.request("host1", "n", "peer-iter-next", json!({ "iterator": page["iterator"], "limit": 10 })).await;
        page = response(&mut host, "n")["result"].clone();
    }
    let want: Vec<String> = (0..25).map(|i| format!("g{i:02}")).collect();
    assert_eq!(seen, want);

    // Filters combine: the group, and a list of ids.
    t.request("host1", "g", "find-peer", json!({ "group": "stage", "limit": 100 })).await;
    let stage = response(&mut host, "g")["result"].clone();
    assert_eq!((stage["total"].as_u64(), stage["eof"].as_bool()), (Some(9), Some(true)), "{stage}");
    t.request("host1", "l", "find-peer", json!({ "peers": ["g03", "g04", "nobody"], "group": "stage" })).await;
    let listed = response(&mut host, "l")["result"].clone();
    assert_eq!(listed["peers"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["peers"][0]["groups"], json!(["stage"]));

    t.request("host1", "p", "get-peer", json!({ "peer_id": "g07" })).await;
    let one = response(&mut host, "p")["result"].clone();
    assert_eq!((one["peer_id"].as_str(), one["info"]["name"].as_str()), (Some("g07"), Some("Guest 7")), "{one}");

    for (id, method, params, want) in [
        ("e1", "get-peer", json!({ "peer_id": "nobody" }), code::NOT_FOUND),
        ("e2", "get-peer", json!({}), code::INVALID_PARAMS),
        ("e3", "find-peer", json!({ "limit": 0 }), code::BAD_REQUEST),
        ("e4", "find-peer", json!({ "limit": 101 }), code::BAD_REQUEST),
        ("e5", "find-peer", json!({ "role": 7 }), code::INVALID_PARAMS),
        ("e6", "peer-iter-next", json!({ "iterator": "not-ours" }), code::BAD_REQUEST),
        ("e7", "peer-iter-next", json!({}), code::INVALID_PARAMS),
        ("e8", "peer-name-search", json!({ "query": "" }), code::BAD_REQUEST),
        ("e9", "peer-name-search", json!({ "query": "x".repeat(300) }), code::BAD_REQUEST),
    ] {
        t.request("host1", id, method, params).await;
        assert_eq!(response(&mut host, id)["error"]["code"], want, "{method}");
    }
}

#[tokio::test]
async fn a_name_search_is_case_insensitive_and_pages_by_offset() {
    let mut t = test_room();
    let mut host = t.join("host1", "host").await;
    let _crowd = crowd(&mut t, 12).await;
    let _ = pushes(&mut host, "");
    // "guest 1" matches Guest 1, 10 and 11.
    t.request("host1", "s", "peer-name-search", json!({ "query": "guest 1", "limit": 2 })).await;
    let first = response(&mut host, "s")["result"].clone();
    let names = |v: &Value| -> Vec<String> {
        v["peers"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(names(&first), ["Guest 1", "Guest 10"], "{first}");
    assert_eq!((first["offset"].as_u64(), first["eof"].as_bool()), (Some(2), Some(false)));
    assert_eq!(first["peers"][0]["role"], "guest");
    t.request("host1", "s2", "peer-name-search", json!({ "query": "GUEST 1", "limit": 2, "offset": 2 })).await;
    let second = response(&mut host, "s2")["result"].clone();
    assert_eq!(names(&second), ["Guest 11"]);
    assert_eq!(second["eof"], true);
}

#[tokio::test]
async fn a_joiner_gets_room_info_everyone_gets_the_head_count_and_a_preview_gets_room_state() {
    let mut t = test_room();
    let mut host = t.join("host1", "host").await;
    let info = pushes(&mut host, "room-info");
    assert_eq!((info[0]["room_id"].as_str(), info[0]["name"].as_str()), (Some("room1"), Some("standup")));
    let mut guest = t.join("guest1", "guest").await;
    let _ = pushes(&mut guest, "");
    let counts: Vec<Value> = pushes(&mut host, "session-info").iter().map(|s| s["peer_count"].clone()).collect();
    assert_eq!(counts, [json!(2)], "the host hears the room grow");

    // A previewing guest (no sendRoomState) gets the count; a previewing host also the peers.
    let mut preview_guest = t.attach("pg", "guest").await;
    let state = pushes(&mut preview_guest, "room-state");
    assert_eq!(state[0]["peer_count"], 2, "{state:?}");
    assert!(state[0].get("peers").is_none(), "a guest may not see who is in");
    t.room.template.roles.get_mut("host").unwrap().permissions.send_room_state = Some(true);
    let mut preview_host = t.attach("ph", "host").await;
    let state = pushes(&mut preview_host, "room-state");
    assert!(state[0]["peers"]["guest1"]["info"]["name"].is_string(), "{state:?}");
    // And again, periodically, with the count as it is then.
    t.leave("guest1").await;
    assert_eq!(pushes(&mut host, "session-info")[0]["peer_count"], 1);
    t.room.refresh_previews(Instant::now() + super::super::room_status::ROOM_STATE_EVERY * 2);
    let state = pushes(&mut preview_guest, "room-state");
    assert_eq!(state[0]["peer_count"], 1, "{state:?}");
}

#[tokio::test]
async fn a_full_role_refuses_joins_and_role_changes_with_failure_events() {
    let mut t = test_room();
    t.room.template.roles.get_mut("host").unwrap().max_peer_count = Some(1);
    t.room.template.roles.get_mut("audio-only").unwrap().max_peer_count = Some(-1);
    let mut nobody = t.attach("ao", "audio-only").await;
    t.request("ao", "j", "join", json!({ "offer": { "type": "offer", "sdp": audio_offer() } })).await;
    let refused = response(&mut nobody, "j");
    assert!(refused["error"]["message"].as_str().unwrap().contains("may not be joined"), "{refused}");
    let mut host = t.join("host1", "host").await;
    let mut second = t.attach("host2", "host").await;
    t.request("host2", "j", "join", json!({ "offer": { "type": "offer", "sdp": audio_offer() }, "name": "Two" })).await;
    let refused = response(&mut second, "j");
    assert_eq!(refused["error"]["code"], code::FORBIDDEN, "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("maxPeerCount is 1"), "{refused}");
    let failed: Vec<_> = t
        .sink
        .events()
        .into_iter()
        .filter_map(|e| match e {
            RoomEvent::JoinFailed { peer, error_message, .. } => Some((peer.peer_id, peer.name, error_message)),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 2);
    assert_eq!((failed[1].0.as_str(), failed[1].1.as_str()), ("host2", "Two"));
    // The host's own repeated join is not counted against it.
    t.request("host1", "again", "join", json!({ "offer": { "type": "offer", "sdp": audio_offer() } })).await;
    assert_eq!(response(&mut host, "again")["result"]["type"], "answer");

    // A guest may not be made a host while the host role is full: nothing changes.
    let mut guest = t.join("guest1", "guest").await;
    let _ = pushes(&mut guest, "");
    t.request(
        "host1",
        "rc",
        "role-change-request",
        json!({ "requested_for": "guest1", "role": "host", "force": true }),
    )
    .await;
    let refused = response(&mut host, "rc");
    assert_eq!(refused["error"]["code"], code::FORBIDDEN, "{refused}");
    assert!(pushes(&mut guest, "on-policy-change").is_empty(), "the guest keeps its role");
    assert!(t.sink.events().iter().any(|e| matches!(e,
        RoomEvent::RoleChangeFailed { peer, role, .. } if peer.peer_id == "guest1" && peer.role == "guest" && role == "host")));
    // Once the host leaves, the place is free.
    t.leave("host1").await;
    t.request("host2", "j2", "join", json!({ "offer": { "type": "offer", "sdp": audio_offer() } })).await;
    assert_eq!(response(&mut second, "j2")["result"]["type"], "answer");
}

#[tokio::test]
async fn a_room_of_size_two_refuses_a_third_peer() {
    let dir = std::env::temp_dir().join(format!("room-size-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = store::Store::open(&dir.join("platform.db")).unwrap();
    let ws = db.ensure_default_workspace().unwrap();
    let mut attrs = serde_json::Map::new();
    attrs.insert("size".into(), json!(2));
    attrs.insert("description".into(), json!("two at most"));
    let row = db.upsert_room_with(&ws.id, "pair", None, &attrs).unwrap();
    let mut t = test_room();
    t.room.id = row.id.clone();
    t.room.env.store = Some(Arc::new(Mutex::new(db)));
    let mut a = t.join("a", "host").await;
    let info = pushes(&mut a, "room-info");
    assert_eq!((info[0]["max_size"].as_u64(), info[0]["description"].as_str()), (Some(2), Some("two at most")));
    let _b = t.join("b", "guest").await;
    let mut c = t.attach("c", "guest").await;
    t.request("c", "j", "join", json!({ "offer": { "type": "offer", "sdp": audio_offer() } })).await;
    let refused = response(&mut c, "j");
    assert_eq!(refused["error"]["code"], code::FORBIDDEN, "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("the room is full"), "{refused}");
    assert!(t.router.calls().iter().filter(|c| **c == Call::CreateTransport).count() == 4, "no transport for c");
    drop(t);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn every_peer_hears_each_peers_downlink_score_from_the_router_and_an_absent_peer_is_zero() {
    let mut t = test_room();
    let mut host = t.join("host1", "host").await;
    let mut guest = t.join("guest1", "guest").await;
    let _ = (pushes(&mut host, ""), pushes(&mut guest, ""));
    let sub = |t: &TestRoom, id: &str| t.room.peers[id].subscribe.as_ref().unwrap().transport.id;
    let good =
        schema::api::LinkStats { estimate_bps: Some(2_000_000), loss_fraction: 0.0, rtt_ms: Some(20), feedbacks: 5 };
    let lossy = schema::api::LinkStats { loss_fraction: 0.15, ..good };
    t.router.links.lock_unpoisoned().insert(sub(&t, "host1"), good);
    t.router.links.lock_unpoisoned().insert(sub(&t, "guest1"), lossy);
    let now = Instant::now();
    t.room.refresh_connection_quality(now).await;
    let scores = |rx: &mut mpsc::UnboundedReceiver<Outbound>| -> Vec<(String, i64)> {
        let got = pushes(rx, "on-connection-quality-update");
        got.last().unwrap()["peers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["peer_id"].as_str().unwrap().to_owned(), p["downlink_score"].as_i64().unwrap()))
            .collect()
    };
    assert_eq!(scores(&mut guest), [("guest1".to_owned(), 2), ("host1".to_owned(), 5)]);
    // Not again within the period; then the guest's socket closes: it scores 0 until it is back.
    t.room.refresh_connection_quality(now + Duration::from_secs(1)).await;
    assert!(pushes(&mut host, "on-connection-quality-update").len() == 1, "one push in the period");
    t.room.handle(RoomMsg::Detach { peer_id: "guest1".into(), conn: 1 }).await;
    t.room.refresh_connection_quality(now + super::super::connection_quality::QUALITY_EVERY).await;
    assert_eq!(scores(&mut host), [("guest1".to_owned(), 0), ("host1".to_owned(), 5)]);
}

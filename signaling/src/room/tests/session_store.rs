//! The session store as the SDK uses it: observers told, limits refused, emptied with the
//! session.

use super::*;

#[tokio::test]
async fn the_session_store_tells_observers_refuses_what_breaks_its_limits_and_ends_with_the_session() {
    let mut t = test_room();
    let mut host = t.join("host1", "host").await;
    let mut guest = t.join("guest1", "guest").await;
    let _ = (pushes(&mut host, ""), pushes(&mut guest, ""));
    // The guest observes `pinned`; nothing is set yet, so nothing is pushed.
    t.request("guest1", "l", "listen-metadata-change", json!({ "keys": ["pinned"] })).await;
    assert!(response(&mut guest, "l")["result"].is_object());
    assert!(pushes(&mut guest, "on-metadata-change").is_empty());
    // The host pins a message: its answer carries the version, the observing guest is told.
    t.request("host1", "s", "set-metadata", json!({ "key": "pinned", "data": {"text": "agenda"} })).await;
    let set = response(&mut host, "s")["result"].clone();
    assert_eq!((set["key"].as_str(), set["change_version"].as_u64()), (Some("pinned"), Some(1)), "{set}");
    let told = pushes(&mut guest, "on-metadata-change");
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["values"][0]["data"]["text"], "agenda");
    assert_eq!(told[0]["values"][0]["updated_by"], "host1");
    assert!(pushes(&mut host, "on-metadata-change").is_empty(), "the host does not observe the key");
    // Reads: a set key, and a missing one as `data: null`.
    t.request("guest1", "g", "get-metadata", json!({ "key": "pinned" })).await;
    assert_eq!(response(&mut guest, "g")["result"]["data"]["text"], "agenda");
    t.request("guest1", "g2", "get-metadata", json!({ "key": "spotlight" })).await;
    let missing = response(&mut guest, "g2")["result"].clone();
    assert_eq!(missing, json!({ "key": "spotlight", "data": null }));
    // A peer that starts observing gets the current values at once.
    t.request("host1", "l2", "listen-metadata-change", json!({ "keys": ["pinned", "spotlight"] })).await;
    let now = pushes(&mut host, "on-metadata-change");
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!(now[0]["values"].as_array().map(Vec::len), Some(1));
    // Refusals, each with its code, and nothing changed by them.
    let cases = [
        (json!({ "key": "pinned", "data": "x".repeat(2000) }), code::TOO_LARGE),
        (json!({ "key": "pinned", "data": "stale", "if_change_version": 0 }), code::CONFLICT),
        (json!({ "key": "", "data": 1 }), code::BAD_REQUEST),
        (json!({ "key": 7, "data": 1 }), code::INVALID_PARAMS),
        (json!({ "key": "pinned", "data": 1, "if_change_version": "one" }), code::INVALID_PARAMS),
    ];
    for (i, (params, want)) in cases.into_iter().enumerate() {
        let id = format!("bad{i}");
        t.request("host1", &id, "set-metadata", params.clone()).await;
        let refused = response(&mut host, &id);
        assert_eq!(refused["error"]["code"], want, "{params}: {refused}");
    }
    t.request("guest1", "l3", "listen-metadata-change", json!({ "keys": "pinned" })).await;
    assert_eq!(response(&mut guest, "l3")["error"]["code"], code::INVALID_PARAMS);
    t.request("guest1", "g3", "get-metadata", json!({ "key": "pinned" })).await;
    assert_eq!(response(&mut guest, "g3")["result"]["data"]["text"], "agenda", "refused writes changed nothing");
    // A compare-and-set with the current version goes through.
    t.request("guest1", "cas", "set-metadata", json!({ "key": "pinned", "data": null, "if_change_version": 1 })).await;
    assert_eq!(response(&mut guest, "cas")["result"]["data"], Value::Null);
    t.request("host1", "s2", "set-metadata", json!({ "key": "pinned", "data": "next" })).await;
    assert_eq!(response(&mut host, "s2")["result"]["data"], "next");
    // The session ends with its last peer: a new one starts with an empty store.
    t.leave("guest1").await;
    t.leave("host1").await;
    let mut back = t.join("host2", "host").await;
    let _ = pushes(&mut back, "");
    t.request("host2", "g4", "get-metadata", json!({ "key": "pinned" })).await;
    assert_eq!(response(&mut back, "g4")["result"]["data"], Value::Null);
}

#[tokio::test]
async fn the_session_store_is_for_joined_peers_only() {
    let mut t = test_room();
    let mut rx = t.attach("early", "host").await;
    t.request("early", "s", "set-metadata", json!({ "key": "k", "data": 1 })).await;
    assert_eq!(response(&mut rx, "s")["error"]["code"], code::CONFLICT);
    t.request("early", "g", "get-metadata", json!({ "key": "k" })).await;
    assert_eq!(response(&mut rx, "g")["error"]["code"], code::CONFLICT);
}

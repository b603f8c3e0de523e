//! Groups as Prebuilt's hand raise uses them: everyone told (the raiser too), a host lowers
//! another's hand, a guest may not, and the limits hold.

use super::*;

/// The groups the `on-peer-update`s about `about` carried, in order.
fn group_updates(rx: &mut mpsc::UnboundedReceiver<Outbound>, about: &str) -> Vec<Value> {
    pushes(rx, "on-peer-update").into_iter().filter(|u| u["peer_id"] == about).map(|u| u["groups"].clone()).collect()
}

#[tokio::test]
async fn a_raised_hand_is_seen_by_everyone_and_a_host_lowers_it() {
    let mut t = test_room();
    let mut host = t.join("host1", "host").await;
    let mut guest = t.join("guest1", "guest").await;
    let _ = (pushes(&mut host, ""), pushes(&mut guest, ""));

    t.request("guest1", "r", "group-join", json!({ "name": "_handraise" })).await;
    let mut kept = Vec::new();
    assert_eq!(response_keep(&mut guest, "r", &mut kept)["result"]["groups"], json!(["_handraise"]));
    assert_eq!(group_updates(&mut host, "guest1"), [json!(["_handraise"])], "the host sees the hand");
    let own: Vec<&Value> =
        kept.iter().filter(|m| m["method"] == "on-peer-update").map(|m| &m["params"]["groups"]).collect();
    assert_eq!(own, [&json!(["_handraise"])], "so does the guest itself (its SDK does not update its own groups)");
    // Joining again changes nothing and tells nobody.
    t.request("guest1", "r2", "group-join", json!({ "name": "_handraise" })).await;
    assert_eq!(response(&mut guest, "r2")["result"]["groups"], json!(["_handraise"]));
    assert!(group_updates(&mut host, "guest1").is_empty());

    // A late joiner's peer list carries the groups.
    let mut late = t.attach("late1", "guest").await;
    t.request("late1", "j", "join", json!({ "offer": { "type": "offer", "sdp": audio_offer() }, "name": "late" }))
        .await;
    let list = pushes(&mut late, "peer-list");
    assert_eq!(list[0]["peers"]["guest1"]["groups"], json!(["_handraise"]), "{list:?}");

    // A guest may not lower the host's... or anyone's hand; the host may.
    t.request("guest1", "x", "group-remove", json!({ "name": "_handraise", "peer_id": "host1" })).await;
    assert_eq!(response(&mut guest, "x")["error"]["code"], code::FORBIDDEN);
    t.request("host1", "lower", "group-remove", json!({ "name": "_handraise", "peer_id": "guest1" })).await;
    let mut kept = Vec::new();
    assert_eq!(response_keep(&mut host, "lower", &mut kept)["result"]["groups"], json!([]));
    assert!(kept.iter().any(|m| m["method"] == "on-peer-update" && m["params"]["groups"] == json!([])));
    assert_eq!(group_updates(&mut guest, "guest1"), [json!([])], "the guest sees its hand lowered");
    t.request("host1", "gone", "group-add", json!({ "name": "stage", "peer_id": "nobody" })).await;
    assert_eq!(response(&mut host, "gone")["error"]["code"], code::NOT_FOUND);
}

#[tokio::test]
async fn group_names_and_counts_have_limits() {
    let mut t = test_room();
    let mut host = t.join("host1", "host").await;
    let _ = pushes(&mut host, "");
    for (i, (params, want)) in [
        (json!({ "name": "" }), code::BAD_REQUEST),
        (json!({ "name": "g".repeat(101) }), code::BAD_REQUEST),
        (json!({ "name": 5 }), code::INVALID_PARAMS),
        (json!({}), code::BAD_REQUEST),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("bad{i}");
        t.request("host1", &id, "group-join", params.clone()).await;
        assert_eq!(response(&mut host, &id)["error"]["code"], want, "{params}");
    }
    for i in 0..20 {
        let id = format!("g{i}");
        t.request("host1", &id, "group-join", json!({ "name": format!("group{i}") })).await;
        assert!(response(&mut host, &id)["result"]["groups"].is_array());
    }
    t.request("host1", "over", "group-join", json!({ "name": "group20" })).await;
    assert_eq!(response(&mut host, "over")["error"]["code"], code::TOO_LARGE);
    t.request("host1", "leave", "group-leave", json!({ "name": "group0" })).await;
    assert_eq!(response(&mut host, "leave")["result"]["groups"].as_array().map(Vec::len), Some(19));
}

//! Data channels through the router: SCTP over DTLS with DCEP, against str0m's independent
//! implementation, on the simulated network with real crypto.
//!
//! - The router opens `ion-sfu` (as the 100ms SDK expects on its subscribe connection), the
//!   client sees it open and gets the router's text; the client's reply comes back as a
//!   `DataChannelMessage` event.
//! - A channel the client opens (the SDK's own `ion-sfu` on its publish connection) is
//!   accepted, and its messages arrive.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::time::Duration;

use integration_tests::client::Client;
use integration_tests::sim::{Link, Sim, SimClient};
use schema::api::{ApiError, Event};
use schema::ids::TransportId;

/// Runs the simulation until `done` holds, for at most `limit` of virtual time.
fn run_until(sim: &mut Sim, limit: Duration, mut done: impl FnMut(&Sim) -> bool) {
    let deadline = sim.now + limit;
    while !done(sim) {
        assert!(sim.now < deadline, "condition not met within {limit:?}");
        sim.step();
    }
}

fn opened(sim: &Sim, transport: TransportId, label: &str) -> usize {
    sim.events
        .iter()
        .filter(
            |(_, e)| matches!(e, Event::DataChannelOpened { transport: t, label: l } if *t == transport && l == label),
        )
        .count()
}

fn messages(sim: &Sim, transport: TransportId, label: &str) -> Vec<String> {
    sim.events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::DataChannelMessage { transport: t, label: l, text } if *t == transport && l == label => {
                Some(text.clone())
            }
            _ => None,
        })
        .collect()
}

#[test]
fn router_opened_channel_carries_text_both_ways() {
    let mut sim = Sim::new(0x5c7b_0001);
    let (c, t) = sim.add_client(Link::default(), Link::default());

    // Nothing is open yet: sending is refused with a typed error.
    let err = sim.engine.send_data(sim.now, t.id, "ion-sfu", "{}").unwrap_err();
    assert_eq!(err, ApiError::DataChannelNotOpen("ion-sfu".into()));
    assert_eq!(err.code(), "data_channel_not_open");

    // Asked for before the association exists: queued, opened once SCTP is up. Twice: one channel.
    sim.engine.open_data_channel(sim.now, t.id, "ion-sfu").unwrap();
    sim.engine.open_data_channel(sim.now, t.id, "ion-sfu").unwrap();
    sim.client(c).start_sctp();
    run_until(&mut sim, Duration::from_secs(5), |s| {
        s.clients[c].client.channel_id("ion-sfu").is_some() && opened(s, t.id, "ion-sfu") > 0
    });
    assert!(sim.engine.data_channel_open(t.id, "ion-sfu"));
    let id = sim.clients[c].client.channel_id("ion-sfu").unwrap();

    // Router → client: text, and an empty message (its own PPID).
    let hello = r#"{"method":"active-speakers","params":{}}"#;
    sim.engine.send_data(sim.now, t.id, "ion-sfu", hello).unwrap();
    sim.engine.send_data(sim.now, t.id, "ion-sfu", "").unwrap();
    run_until(&mut sim, Duration::from_secs(2), |s| s.clients[c].client.channel_data.len() >= 2);
    assert_eq!(sim.clients[c].client.texts_on(id), [hello.to_string(), String::new()]);

    // Client → router: a request as the 100ms SDK sends it, then a reply back with its id.
    let request = r#"{"id":"3c1f","jsonrpc":"2.0","method":"prefer-video-track-state","params":{"max_spatial_layer":"high","track_id":"t1"}}"#;
    assert!(sim.client(c).send_channel(id, false, request.as_bytes()));
    run_until(&mut sim, Duration::from_secs(2), |s| !messages(s, t.id, "ion-sfu").is_empty());
    assert_eq!(messages(&sim, t.id, "ion-sfu"), [request]);
    let reply = r#"{"jsonrpc":"2.0","id":"3c1f","result":{}}"#;
    sim.engine.send_data(sim.now, t.id, "ion-sfu", reply).unwrap();
    run_until(&mut sim, Duration::from_secs(2), |s| s.clients[c].client.channel_data.len() >= 3);
    assert_eq!(sim.clients[c].client.texts_on(id).last().map(String::as_str), Some(reply));

    // A large message is fragmented and reassembled; one over the limit is refused.
    let big = "x".repeat(100_000);
    sim.engine.send_data(sim.now, t.id, "ion-sfu", &big).unwrap();
    run_until(&mut sim, Duration::from_secs(5), |s| s.clients[c].client.channel_data.len() >= 4);
    assert_eq!(sim.clients[c].client.texts_on(id).last().map(String::len), Some(100_000));
    let too_big = "x".repeat(router_engine::sctp::MAX_MESSAGE_SIZE + 1);
    let err = sim.engine.send_data(sim.now, t.id, "ion-sfu", &too_big).unwrap_err();
    assert!(matches!(err, ApiError::MessageTooLarge { max: 262_144, .. }), "{err:?}");

    // Binary from the client is counted and dropped, not delivered as text.
    assert!(sim.client(c).send_channel(id, true, &[1, 2, 3]));
    run_until(&mut sim, Duration::from_secs(2), |s| s.engine.counters().data_channel_binary_dropped == 1);
    assert_eq!(messages(&sim, t.id, "ion-sfu").len(), 1);

    let counters = sim.engine.counters();
    assert_eq!(counters.data_channel_messages_out, 4);
    assert_eq!(counters.data_channel_messages_in, 1);
    assert_eq!(counters.sctp_dropped + counters.dcep_malformed, 0, "{counters:?}");
    assert_eq!(opened(&sim, t.id, "ion-sfu"), 1, "one channel per label");
    assert_eq!(sim.clients[c].client.channels_open.len(), 1);
}

#[test]
fn client_opened_channel_is_accepted_and_delivers() {
    let mut sim = Sim::new(0x5c7b_0002);
    let (c, t) = sim.add_client(Link::default(), Link::default());
    sim.client(c).start_sctp();
    let chan = sim.client(c).open_channel("ion-sfu");
    run_until(&mut sim, Duration::from_secs(5), |s| {
        opened(s, t.id, "ion-sfu") == 1 && s.clients[c].client.channel_id("ion-sfu").is_some()
    });
    assert_eq!(sim.clients[c].client.channel_id("ion-sfu"), Some(chan));

    for i in 0..20 {
        assert!(sim.client(c).send_channel(chan, false, format!("message {i}").as_bytes()));
    }
    run_until(&mut sim, Duration::from_secs(2), |s| messages(s, t.id, "ion-sfu").len() == 20);
    let expected: Vec<String> = (0..20).map(|i| format!("message {i}")).collect();
    assert_eq!(messages(&sim, t.id, "ion-sfu"), expected, "ordered and complete");

    // The router can answer on the client's channel.
    sim.engine.send_data(sim.now, t.id, "ion-sfu", "pong").unwrap();
    run_until(&mut sim, Duration::from_secs(2), |s| !s.clients[c].client.channel_data.is_empty());
    assert_eq!(sim.clients[c].client.texts_on(chan), ["pong"]);

    // Asking the router to open the same label is satisfied by the client's channel; another
    // label opens at once, now that the association is up.
    sim.engine.open_data_channel(sim.now, t.id, "ion-sfu").unwrap();
    sim.engine.open_data_channel(sim.now, t.id, "second").unwrap();
    run_until(&mut sim, Duration::from_secs(2), |s| {
        opened(s, t.id, "second") == 1 && s.clients[c].client.channel_id("second").is_some()
    });
    assert_eq!(opened(&sim, t.id, "ion-sfu"), 1);
    assert_eq!(sim.clients[c].client.channels_open.len(), 2);
}

#[test]
fn data_channels_survive_loss() {
    let lossy = Link { loss: 0.1, ..Link::default() };
    let mut sim = Sim::new(0x5c7b_0003);
    let (c, t) = sim.add_client(Link::default(), Link::default());
    sim.clients[c].up = lossy;
    sim.clients[c].down = lossy;
    sim.engine.open_data_channel(sim.now, t.id, "ion-sfu").unwrap();
    sim.client(c).start_sctp();
    run_until(&mut sim, Duration::from_secs(30), |s| s.clients[c].client.channel_id("ion-sfu").is_some());
    let id = sim.clients[c].client.channel_id("ion-sfu").unwrap();
    run_until(&mut sim, Duration::from_secs(30), |s| opened(s, t.id, "ion-sfu") == 1);
    for i in 0..50 {
        sim.engine.send_data(sim.now, t.id, "ion-sfu", &format!("r{i}")).unwrap();
        assert!(sim.client(c).send_channel(id, false, format!("c{i}").as_bytes()));
        sim.run_for(Duration::from_millis(20));
    }
    run_until(&mut sim, Duration::from_secs(30), |s| {
        s.clients[c].client.texts_on(id).len() == 50 && messages(s, t.id, "ion-sfu").len() == 50
    });
    let want_r: Vec<String> = (0..50).map(|i| format!("r{i}")).collect();
    let want_c: Vec<String> = (0..50).map(|i| format!("c{i}")).collect();
    assert_eq!(sim.clients[c].client.texts_on(id), want_r);
    assert_eq!(messages(&sim, t.id, "ion-sfu"), want_c);
}

#[test]
fn sctp_that_overtakes_signaling_waits_for_the_fingerprint() {
    // ICE, DTLS and the client's SCTP INIT arrive before signaling delivers the client's
    // fingerprint: the router must not talk SCTP to an unverified peer, but must not make it
    // wait for an INIT retransmission (seconds) once the fingerprint arrives either.
    let mut sim = Sim::new(0x5c7b_0005);
    let info = sim.engine.create_transport(sim.now).unwrap();
    let mut client = Client::new("10.0.1.1:5000".parse().unwrap(), sim.now);
    let params = client.connect_to(&info);
    client.start_sctp();
    sim.clients.push(SimClient::new(client, Link::default(), Link::default()));
    sim.engine.open_data_channel(sim.now, info.id, "ion-sfu").unwrap();
    sim.run_for(Duration::from_millis(500));
    assert!(sim.clients[0].client.connected, "the client finished DTLS");
    assert_eq!(opened(&sim, info.id, "ion-sfu"), 0, "no SCTP before the fingerprint is checked");
    assert!(sim.clients[0].client.channels_open.is_empty());

    sim.engine.connect_transport(info.id, &params).unwrap();
    run_until(&mut sim, Duration::from_millis(300), |s| {
        opened(s, info.id, "ion-sfu") == 1 && s.clients[0].client.channel_id("ion-sfu").is_some()
    });
}

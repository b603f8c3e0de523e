//! A client that goes silent loses its transport once ICE consent expires (30 s), and the
//! router says so; a client that keeps talking keeps its transport.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::time::Duration;

use integration_tests::sim::{Link, Sim};
use schema::api::{CloseReason, Event};

#[test]
fn silent_transport_is_closed_after_consent_expiry() {
    let mut sim = Sim::new(0x5eed_0005);
    let (_alive, alive_t) = sim.add_client(Link::default(), Link::default());
    let (silent, silent_t) = sim.add_client(Link::default(), Link::default());
    sim.run_for(Duration::from_secs(2));
    sim.clients[silent].up.down = true;
    let went_silent = sim.now;
    sim.run_for(Duration::from_secs(40));

    let closed: Vec<_> = sim
        .events
        .iter()
        .filter_map(|(at, e)| match e {
            Event::TransportClosed { transport, reason } => Some((*at, *transport, reason.clone())),
            _ => None,
        })
        .collect();
    let (at, _, reason) = closed.iter().find(|(_, t, _)| *t == silent_t.id).expect("silent transport closed");
    assert_eq!(*reason, CloseReason::ConsentExpired);
    let after = *at - went_silent;
    assert!(after >= Duration::from_secs(25) && after <= Duration::from_secs(32), "closed after {after:?}");
    assert!(closed.iter().all(|(_, t, _)| *t != alive_t.id), "the live transport was closed");
    assert_eq!(sim.engine.transport_count(), 1);
}

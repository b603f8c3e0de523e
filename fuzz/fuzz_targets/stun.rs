//! STUN parser and ICE-lite agent under arbitrary datagrams: nothing may panic, and whatever the
//! agent writes back must itself parse.
#![no_main]
use std::net::SocketAddr;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use router_engine::ice::{IceCredentials, IceLite};
use router_engine::stun;

fuzz_target!(|data: &[u8]| {
    let _ = stun::is_stun(data);
    let Ok(msg) = stun::parse(data) else {
        return;
    };
    let _ = (
        msg.method(),
        msg.class(),
        msg.is_binding_request(),
        msg.transaction_id(),
        msg.username(),
        msg.use_candidate(),
        msg.ice_controlling(),
        msg.ice_controlled(),
        msg.priority(),
        msg.xor_mapped_address(),
        msg.error_code(),
        msg.has_integrity(),
        msg.has_fingerprint(),
        msg.unknown_comprehension_required(),
    );
    let _ = msg.verify_integrity(b"fuzz-password-0123456789");
    let _ = msg.verify_integrity(b"");

    // Fixed credentials so inputs from the corpus can reach the authenticated paths.
    let creds = IceCredentials {
        ufrag: "fuzz".into(),
        pwd: "fuzz-password-0123456789".into(),
    };
    let now = Instant::now();
    let mut agent = IceLite::new(creds, now);
    let from: SocketAddr = ([192, 0, 2, 1], 4000).into();
    let mut out = [0u8; 1500];
    let len = match agent.handle_stun(now, from, &msg, &mut out) {
        Ok(reply) => reply.len,
        Err(e) => e.reply_len(),
    };
    if len > 0 {
        assert!(
            stun::parse(&out[..len]).is_ok(),
            "agent wrote an unparseable answer"
        );
    }
    while agent.poll_event().is_some() {}
    if let Some(t) = agent.poll_timeout() {
        agent.handle_timeout(t);
    }
});

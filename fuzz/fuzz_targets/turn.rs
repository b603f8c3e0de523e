//! The router's TURN under arbitrary client bytes, as a TCP stream and as datagrams: cutting
//! frames and answering them must never panic, and every answer must itself parse as STUN.
#![no_main]
use std::net::SocketAddr;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use router::turn::allocation::{Allocation, Context, Credentials, Outcome, Peers};
use router::turn::wire;
use router_engine::stun;

fuzz_target!(|data: &[u8]| {
    let creds = Credentials::new(b"secret", "rtc");
    let peers = Peers::new([("127.0.0.1:40000".parse::<SocketAddr>().unwrap(), 0)]);
    let client: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    let mut allocation = Allocation::new(client, &creds);
    let now = Instant::now();
    let mut reserve = || Some("127.0.0.1:61000".parse().unwrap());
    let mut ctx = Context { unix_now: 1_800_000_000, creds: &creds, peers: &peers, reserve: &mut reserve };
    let check = |outcome: Outcome<'_>| match outcome {
        Outcome::Reply(r) | Outcome::ReplyAndClose(r) | Outcome::Bound { reply: r, .. } => {
            assert!(stun::parse(&r).is_ok(), "an answer that does not parse");
        }
        Outcome::Relay { .. } | Outcome::Nothing => {}
    };
    // As a stream: frames back to back.
    let mut rest = data;
    while let Ok(Some((frame, used))) = wire::next_frame(rest) {
        check(allocation.handle(frame, now, &mut ctx));
        rest = &rest[used..];
    }
    // As one datagram.
    if let Ok(frame) = wire::datagram_frame(data) {
        check(allocation.handle(frame, now, &mut ctx));
    }
});

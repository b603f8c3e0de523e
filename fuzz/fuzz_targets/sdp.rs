#![no_main]
//! Parses an SDP from a client, writes it back, and answers it as a publish offer against a
//! fixed router transport: the path every client offer takes through signaling.
use libfuzzer_sys::fuzz_target;
use schema::api::{IceCandidate, TransportInfo};
use schema::ids::TransportId;
use signaling::sdp::{PublishPolicy, Sdp, answer_publish_offer};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(sdp) = Sdp::parse(text) {
        // Whatever parses must write back into something that parses again.
        let again = sdp.to_string();
        assert!(Sdp::parse(&again).is_ok(), "written SDP does not parse again");
    }
    let router = TransportInfo {
        id: TransportId(1),
        ice_ufrag: "abcd".into(),
        ice_pwd: "abcdefghijklmnopqrstuvwx".into(),
        ice_lite: true,
        fingerprint: format!("sha-256 {}", ["AB"; 32].join(":")),
        dtls_role: "server".into(),
        candidates: vec![
            IceCandidate::udp("127.0.0.1:40000".parse().expect("valid address")),
            IceCandidate::tcp("127.0.0.1:40000".parse().expect("valid address")),
        ],
    };
    let _ = answer_publish_offer(text, &router, &PublishPolicy::default());
});

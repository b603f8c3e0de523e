//! What the signaling tests share: a router transport to answer and offer against. The
//! end-to-end tests also include `client_sdp.rs` (a client's SDP) and `platform.rs` (a running
//! router, store and signaling server) by path.

use schema::api::{IceCandidate, TransportInfo};
use schema::ids::TransportId;

/// A router transport as `create_transport` returns it, with a fixed fingerprint.
pub fn router_transport(id: u32, candidate: &str) -> TransportInfo {
    TransportInfo {
        id: TransportId(id),
        ice_ufrag: "rtrU".into(),
        ice_pwd: "routerpasswordrouterpassword".into(),
        ice_lite: true,
        fingerprint:
            "sha-256 01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF"
                .into(),
        dtls_role: "server".into(),
        candidates: vec![IceCandidate::udp(candidate.parse().expect("test candidate is a socket address"))],
    }
}

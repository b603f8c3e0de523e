//! SDP for the two peer connections of a 100ms-style client, as pure functions over text.
//!
//! - [`parse`]: the SDP model, parser and writer (what WebRTC uses of RFC 8866).
//! - [`publish`]: the client offers on its publish connection; [`answer_publish_offer`] picks
//!   codecs and extensions against what the router forwards and returns the answer SDP plus the
//!   router commands (`connect_transport`, one `produce` per sending m-line).
//! - [`subscribe`]: the server offers on the subscribe connection; [`subscribe_offer`] writes
//!   one m-line per router consumer, keeping mids and m-line order stable across
//!   renegotiations, and [`read_subscribe_answer`] checks the client's answer.
//!
//! The router is ICE-lite and a DTLS server: every SDP we write says `a=ice-lite`, carries the
//! router's host candidates (UDP, then passive ICE-TCP, for each announced address), and makes the client the DTLS client (`a=setup:passive` when we
//! answer, `a=setup:actpass` when we offer, which the client must answer with `active`).

mod attribute;
pub mod parse;
pub mod playback;
pub mod publish;
pub mod subscribe;

use std::net::SocketAddr;

use schema::api::{IceProtocol, TransportInfo};
use thiserror::Error;

pub use parse::{
    Attribute, Candidate, Direction, Extmap, Fmtp, Media, Origin, ParseError, Rid, RtcpFb, Rtpmap, Sdp, Setup,
    Simulcast, SimulcastRid, SsrcAttr, SsrcGroup,
};
pub use playback::{PlaybackLine, PlaybackPlan, PlaybackSource, plan_playback};
pub use publish::{PublishAnswer, PublishPolicy, PublishedTrack, RejectReason, RejectedMedia, answer_publish_offer};
pub use subscribe::{
    SlotState, SubscribeAnswer, SubscribeOffer, SubscribeOptions, SubscribeSlot, SubscribeTrack, assign_mids,
    read_subscribe_answer, subscribe_extensions, subscribe_offer,
};

/// Why an offer or answer cannot be negotiated. Each maps to one JSON-RPC error at the edge.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SdpError {
    #[error("malformed SDP: {0}")]
    Parse(#[from] ParseError),
    #[error("the SDP has more than one m-line and no BUNDLE group")]
    NoBundle,
    #[error("m-line {0} has no mid")]
    MissingMid(usize),
    #[error("mid {0} appears twice")]
    DuplicateMid(String),
    #[error("no ICE username fragment or password")]
    MissingIceCredentials,
    #[error("no DTLS fingerprint")]
    MissingFingerprint,
    #[error("DTLS role {0:?} is not acceptable: the router is the DTLS server")]
    BadSetup(Option<Setup>),
    #[error("no usable codec in any m-line")]
    NoUsableCodec,
    #[error("the answer does not match the offer: {0}")]
    AnswerMismatch(String),
    #[error("mid {0} cannot be used for this track: {1}")]
    MidConflict(String, &'static str),
    #[error("the router's transport info is unusable: {0}")]
    BadTransportInfo(&'static str),
}

/// The priority of the router's `index`th host candidate (RFC 8445 5.1.2.1: type preference
/// 126 for host, component 1). UDP candidates get local preferences from 65535 down, ICE-TCP
/// ones from 32767 down, so a client pairs UDP first and TCP only when UDP fails (RFC 6544 4.2).
fn host_priority(protocol: IceProtocol, index: usize) -> u32 {
    let base: u32 = match protocol {
        IceProtocol::Udp => 65535,
        IceProtocol::Tcp => 32767,
    };
    let local = base.saturating_sub(u32::try_from(index).unwrap_or(u32::MAX)).max(1);
    (126 << 24) | (local << 8) | 255
}

/// The address an m-line and its `c=` line name: the first UDP candidate, or the discard
/// address when there is none (RFC 8839 5.1: candidates alone then say where to send).
fn media_address(router: &TransportInfo) -> SocketAddr {
    router.udp_candidate().unwrap_or(SocketAddr::from(([0, 0, 0, 0], 9)))
}

/// `c=` value for an address.
fn connection_line(addr: &SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("IN IP4 {}", a.ip()),
        SocketAddr::V6(a) => format!("IN IP6 {}", a.ip()),
    }
}

/// The router's ICE and DTLS attributes for one m-line: credentials, fingerprint, setup role,
/// its one host candidate.
fn router_transport_attributes(router: &TransportInfo, setup: Setup) -> Result<Vec<Attribute>, SdpError> {
    let (algorithm, value) =
        router.fingerprint.split_once(' ').ok_or(SdpError::BadTransportInfo("fingerprint is not `<hash> <hex>`"))?;
    Ok(vec![
        Attribute::IceUfrag(router.ice_ufrag.clone()),
        Attribute::IcePwd(router.ice_pwd.clone()),
        Attribute::Fingerprint { algorithm: algorithm.to_string(), value: value.to_string() },
        Attribute::Setup(setup),
    ])
}

/// The router's candidates as `a=candidate` lines, then `a=end-of-candidates` (the router
/// gathers nothing later). A TCP candidate is passive (RFC 6544): the client connects to it.
fn router_candidates(router: &TransportInfo) -> impl Iterator<Item = Attribute> + '_ {
    router
        .candidates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (transport, rest) = match c.protocol {
                IceProtocol::Udp => ("udp", None),
                IceProtocol::Tcp => ("tcp", Some("tcptype passive".to_string())),
            };
            Attribute::Candidate(Candidate {
                foundation: (i + 1).to_string(),
                component: 1,
                transport: transport.into(),
                priority: host_priority(c.protocol, i),
                address: c.addr.ip().to_string(),
                port: c.addr.port(),
                typ: "host".into(),
                rest,
            })
        })
        .chain(std::iter::once(Attribute::EndOfCandidates))
}

/// The remote side's ICE ufrag, password, fingerprint and setup role: from the first m-line
/// that is not rejected and has them (with BUNDLE they are the same everywhere), else from the
/// session level.
/// The session part of an answer from the router's transport to `offer`: ICE-lite, no
/// m-lines yet.
fn answer_skeleton(router: &TransportInfo, offer: &Sdp) -> Sdp {
    Sdp {
        origin: parse::Origin {
            username: "-".into(),
            session_id: router.id.0.to_string(),
            session_version: offer.origin.session_version,
            address_type: "IP4".into(),
            address: "0.0.0.0".into(),
        },
        name: "-".into(),
        timing: "0 0".into(),
        connection: None,
        attributes: vec![Attribute::IceLite],
        media: Vec::new(),
    }
}

fn remote_transport(sdp: &Sdp) -> Result<(String, String, String, Option<Setup>), SdpError> {
    fn find<T>(sdp: &Sdp, f: impl Fn(&Attribute) -> Option<T>) -> Option<T> {
        let live = sdp.media.iter().filter(|m| m.port != 0);
        live.chain(sdp.media.iter())
            .find_map(|m| m.attributes.iter().find_map(&f))
            .or_else(|| sdp.attributes.iter().find_map(&f))
    }
    let ufrag = find(sdp, |a| match a {
        Attribute::IceUfrag(u) => Some(u.clone()),
        _ => None,
    });
    let pwd = find(sdp, |a| match a {
        Attribute::IcePwd(p) => Some(p.clone()),
        _ => None,
    });
    let fingerprint = find(sdp, |a| match a {
        Attribute::Fingerprint { algorithm, value } => Some(format!("{algorithm} {value}")),
        _ => None,
    });
    let setup = find(sdp, |a| match a {
        Attribute::Setup(s) => Some(*s),
        _ => None,
    });
    let (Some(ufrag), Some(pwd)) = (ufrag, pwd) else { return Err(SdpError::MissingIceCredentials) };
    let fingerprint = fingerprint.ok_or(SdpError::MissingFingerprint)?;
    Ok((ufrag, pwd, fingerprint, setup))
}

/// Checks that every m-line has a mid and that mids are unique (unified plan).
fn check_mids(sdp: &Sdp) -> Result<(), SdpError> {
    for (i, m) in sdp.media.iter().enumerate() {
        let mid = m.mid().ok_or(SdpError::MissingMid(i))?;
        if sdp.media[..i].iter().any(|o| o.mid() == Some(mid)) {
            return Err(SdpError::DuplicateMid(mid.to_string()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use schema::api::IceCandidate;
    use schema::ids::TransportId;

    use super::*;

    #[test]
    fn every_candidate_is_offered_udp_preferred_and_tcp_passive() {
        let router = TransportInfo {
            id: TransportId(1),
            ice_ufrag: "uf".into(),
            ice_pwd: "pw".repeat(11),
            ice_lite: true,
            fingerprint: "sha-256 AB:CD".into(),
            dtls_role: "server".into(),
            candidates: vec![
                IceCandidate::udp("203.0.113.7:40000".parse().unwrap()),
                IceCandidate::udp("[2001:db8::7]:40000".parse().unwrap()),
                IceCandidate::tcp("203.0.113.7:40000".parse().unwrap()),
            ],
        };
        let offer = subscribe_offer(&router, &[], &SubscribeOptions::default(), None).unwrap().sdp;
        let lines: Vec<&str> = offer
            .lines()
            .filter(|l| l.starts_with("a=candidate") || l.starts_with("m=") || l.starts_with("c="))
            .collect();
        assert_eq!(
            lines,
            [
                "m=application 40000 UDP/DTLS/SCTP webrtc-datachannel",
                "c=IN IP4 203.0.113.7",
                "a=candidate:1 1 udp 2130706431 203.0.113.7 40000 typ host",
                "a=candidate:2 1 udp 2130706175 2001:db8::7 40000 typ host",
                "a=candidate:3 1 tcp 2122317311 203.0.113.7 40000 typ host tcptype passive",
            ]
        );
        // Browsers must rank the TCP candidate below every UDP one.
        assert!(host_priority(IceProtocol::Tcp, 0) < host_priority(IceProtocol::Udp, 100));
    }
}

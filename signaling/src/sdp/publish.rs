//! Answering a client's offer on its publish connection.
//!
//! The client offers (unified plan, BUNDLE, rtcp-mux), one m-line per published track, sendonly
//! (the 100ms SDK) or sendrecv (other stacks), plus an `m=application` for its data channel.
//! For each m-line we pick one codec the router forwards (Opus; VP8, then H.264 with
//! packetization-mode=1, then VP9, or the policy's order) and its RTX, keep the header extensions
//! the router reads, and answer `recvonly`. The result carries, besides the answer text, what
//! the router needs: [`ConnectParams`] for `connect_transport` and one [`ProduceParams`] per
//! sending m-line, with the msid stream and track ids that signaling maps to 100ms track ids.
//!
//! ```no_run
//! # fn f(offer: &str, router: &schema::api::TransportInfo) -> Result<(), signaling::sdp::SdpError> {
//! use signaling::sdp::{answer_publish_offer, PublishPolicy};
//! let answer = answer_publish_offer(offer, router, &PublishPolicy::default())?;
//! // engine.connect_transport(router.id, &answer.connect)?;
//! for track in &answer.tracks {
//!     // engine.produce(router.id, track.produce.clone())?; remember track.track_id ↔ producer
//! }
//! // reply {type: "answer", sdp: answer.sdp}
//! # Ok(()) }
//! ```

use schema::api::{ConnectParams, ExtensionIds, LayerParams, MediaKind, ProduceParams, TransportInfo};
use schema::codec::Codec;
use schema::layers::rid_layer;

use super::parse::{Attribute, Direction, Extmap, Fmtp, Media, Rid, RtcpFb, Rtpmap, Sdp, Setup, fmtp_param};
use super::{
    SdpError, answer_skeleton, check_mids, connection_line, media_address, remote_transport, router_candidates,
    router_transport_attributes,
};

/// What a client may publish: the role's permissions and the codecs the deployment prefers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishPolicy {
    pub allow_audio: bool,
    pub allow_video: bool,
    /// Accept the `m=application` data channel line. The 100ms SDK's first offer has only that
    /// line and expects it accepted so ICE and DTLS come up at join.
    pub accept_data_channel: bool,
    /// Accept `a=simulcast` (echo the rids as `recv`) and SSRC simulcast (`a=ssrc-group:SIM`):
    /// the producer gets one layer per rid or SSRC. Off: the client sends one encoding (rids
    /// unanswered) or only the first SIM layer is forwarded.
    pub accept_simulcast: bool,
    /// Video codecs in order of preference; the first one the offer has wins.
    pub video_codecs: Vec<Codec>,
}

impl Default for PublishPolicy {
    fn default() -> Self {
        PublishPolicy {
            allow_audio: true,
            allow_video: true,
            accept_data_channel: true,
            accept_simulcast: true,
            video_codecs: vec![Codec::Vp8, Codec::H264, Codec::Vp9],
        }
    }
}

/// Why one m-line of an offer was rejected (answered with port 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectReason {
    /// The role may not publish this kind of media.
    NotAllowed(MediaKind),
    /// None of the offered codecs is one the router forwards (or the policy allows).
    NoUsableCodec,
    /// A media kind or transport protocol we do not handle (`m=text`, plain RTP/AVP, ...).
    Unsupported(String),
    /// RTP without `a=rtcp-mux`.
    NoRtcpMux,
    /// The m-line is not in the BUNDLE group: the router has one 5-tuple per transport.
    NotBundled,
    /// The policy refused the data channel.
    DataChannelRefused,
    /// The offer itself disabled it (port 0).
    Disabled,
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RejectReason::NotAllowed(k) => write!(f, "the role may not publish {k:?}"),
            RejectReason::NoUsableCodec => f.write_str("no usable codec"),
            RejectReason::Unsupported(what) => write!(f, "unsupported media: {what}"),
            RejectReason::NoRtcpMux => f.write_str("rtcp-mux is required"),
            RejectReason::NotBundled => f.write_str("the m-line is not bundled"),
            RejectReason::DataChannelRefused => f.write_str("data channel not accepted"),
            RejectReason::Disabled => f.write_str("disabled in the offer"),
        }
    }
}

/// An m-line answered with port 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedMedia {
    pub index: usize,
    pub mid: String,
    pub reason: RejectReason,
}

/// One track the client will send: the router's `produce` parameters and its ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedTrack {
    pub mid: String,
    /// `a=msid` stream id (the 100ms `stream_id`), or from `a=ssrc:<n> msid:`.
    pub stream_id: Option<String>,
    /// `a=msid` track id (the 100ms `track_id`).
    pub track_id: Option<String>,
    /// Simulcast rids the client offered, in its order (for when the router forwards layers).
    pub rids: Vec<String>,
    /// The chosen codec's `a=fmtp` parameters, to repeat in subscribers' offers.
    pub fmtp: Option<String>,
    pub produce: ProduceParams,
}

/// The answer and what to tell the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishAnswer {
    pub sdp: String,
    /// For `connect_transport`: the client's fingerprint and ufrag.
    pub connect: ConnectParams,
    /// One per m-line the client sends on, in m-line order.
    pub tracks: Vec<PublishedTrack>,
    /// m-lines accepted but idle (the client stopped sending: an unpublished track).
    pub inactive: Vec<String>,
    pub rejected: Vec<RejectedMedia>,
    /// The data channel's mid, when accepted.
    pub data_channel: Option<String>,
}

/// The RTCP feedback the router handles, answered when offered.
const FEEDBACK: [&str; 4] = ["nack", "nack pli", "ccm fir", "transport-cc"];

/// A codec picked from an m-line.
#[derive(Debug, Clone)]
struct Choice {
    codec: Codec,
    rtpmap: Rtpmap,
    fmtp: Option<String>,
    rtx: Option<Rtpmap>,
    rtx_fmtp: Option<Fmtp>,
}

/// Answers a publish offer. See the module docs for what is chosen; m-lines that cannot be
/// used are answered with port 0 and listed in [`PublishAnswer::rejected`].
pub fn answer_publish_offer(
    offer: &str,
    router: &TransportInfo,
    policy: &PublishPolicy,
) -> Result<PublishAnswer, SdpError> {
    let offer = Sdp::parse(offer)?;
    check_mids(&offer)?;
    let (ufrag, _pwd, fingerprint, setup) = remote_transport(&offer)?;
    // The router only does the DTLS server side, so the client must be able to be the client.
    if !matches!(setup, Some(Setup::ActPass) | Some(Setup::Active)) {
        return Err(SdpError::BadSetup(setup));
    }
    let bundle = offer.bundle();
    if bundle.is_none() && offer.media.len() > 1 {
        return Err(SdpError::NoBundle);
    }
    let transport = router_transport_attributes(router, Setup::Passive)?;

    let mut answer = answer_skeleton(router, &offer);
    let mut out = PublishAnswer {
        sdp: String::new(),
        connect: ConnectParams { fingerprint, ice_ufrag: Some(ufrag) },
        tracks: Vec::new(),
        inactive: Vec::new(),
        rejected: Vec::new(),
        data_channel: None,
    };
    let mut bundled = Vec::new();
    for (index, m) in offer.media.iter().enumerate() {
        // check_mids guarantees every m-line has a mid.
        let mid = m.mid().unwrap_or_default().to_string();
        let reject = |reason| RejectedMedia { index, mid: mid.clone(), reason };
        let verdict = if m.port == 0 {
            Err(RejectReason::Disabled)
        } else if bundle.is_some_and(|b| !b.contains(&mid)) {
            Err(RejectReason::NotBundled)
        } else {
            answer_media(m, &mid, router, policy, &transport)
        };
        match verdict {
            Ok(Answered { media, track, data_channel }) => {
                if let Some(t) = track {
                    out.tracks.push(t);
                } else if data_channel {
                    out.data_channel = Some(mid.clone());
                } else {
                    out.inactive.push(mid.clone());
                }
                answer.media.push(media);
                bundled.push(mid);
            }
            Err(reason) => {
                answer.media.push(rejected_media(m, &mid));
                out.rejected.push(reject(reason));
            }
        }
    }
    if bundled.is_empty() {
        return Err(SdpError::NoUsableCodec);
    }
    answer.attributes.push(Attribute::Group { semantics: "BUNDLE".into(), mids: bundled });
    answer.attributes.push(Attribute::MsidSemantic("WMS".into()));
    out.sdp = answer.to_string();
    Ok(out)
}

struct Answered {
    media: Media,
    track: Option<PublishedTrack>,
    data_channel: bool,
}

/// The answer to a rejected m-line: port 0, the same kind and protocol, one format (RFC 3264
/// 6: a rejected stream keeps at least one format), its mid.
pub(super) fn rejected_media(m: &Media, mid: &str) -> Media {
    let format = m.formats.first().cloned().unwrap_or_else(|| "0".into());
    let mut r = Media::new(&m.kind, 0, &m.proto, vec![format]);
    r.connection = Some("IN IP4 0.0.0.0".into());
    r.attributes.push(Attribute::Mid(mid.to_string()));
    r.attributes.push(Attribute::Direction(Direction::Inactive));
    r
}

pub(super) fn is_rtp_proto(p: &str) -> bool {
    matches!(p, "UDP/TLS/RTP/SAVPF" | "UDP/TLS/RTP/SAVP" | "RTP/SAVPF")
}

fn answer_media(
    m: &Media,
    mid: &str,
    router: &TransportInfo,
    policy: &PublishPolicy,
    transport: &[Attribute],
) -> Result<Answered, RejectReason> {
    let kind = match m.kind.as_str() {
        "audio" => MediaKind::Audio,
        "video" => MediaKind::Video,
        "application" => return answer_application(m, mid, router, policy, transport),
        other => return Err(RejectReason::Unsupported(other.to_string())),
    };
    if !is_rtp_proto(&m.proto) {
        return Err(RejectReason::Unsupported(m.proto.clone()));
    }
    let allowed = match kind {
        MediaKind::Audio => policy.allow_audio,
        MediaKind::Video => policy.allow_video,
    };
    if !allowed {
        return Err(RejectReason::NotAllowed(kind));
    }
    if !m.has(&Attribute::RtcpMux) {
        return Err(RejectReason::NoRtcpMux);
    }
    let choice = choose_codec(m, kind, policy).ok_or(RejectReason::NoUsableCodec)?;
    let sending = m.direction().sends();

    let mut formats = vec![choice.rtpmap.pt.to_string()];
    if let Some(r) = &choice.rtx {
        formats.push(r.pt.to_string());
    }
    let mut a = Media::new(&m.kind, media_address(router).port(), &m.proto, formats);
    a.connection = Some(connection_line(&media_address(router)));
    a.attributes.push(Attribute::Mid(mid.to_string()));
    a.attributes.extend(transport.iter().cloned());
    a.attributes.extend(router_candidates(router));
    a.attributes.push(Attribute::Direction(if sending { Direction::RecvOnly } else { Direction::Inactive }));
    a.attributes.push(Attribute::RtcpMux);
    if m.has(&Attribute::RtcpRsize) {
        a.attributes.push(Attribute::RtcpRsize);
    }
    let mut extensions = ExtensionIds::default();
    for e in m.extmaps() {
        // An extension the client will not send is of no use to a receiver.
        if matches!(e.direction, Some(Direction::RecvOnly | Direction::Inactive)) {
            continue;
        }
        if extensions.set_from_uri(e.id, &e.uri) {
            a.attributes.push(Attribute::Extmap(Extmap {
                id: e.id,
                direction: None,
                uri: e.uri.clone(),
                params: None,
            }));
        }
    }
    let pt = choice.rtpmap.pt;
    a.attributes.push(Attribute::Rtpmap(choice.rtpmap.clone()));
    for fb in FEEDBACK {
        if m.rtcp_fbs(pt).any(|f| f.value == fb) {
            a.attributes.push(Attribute::RtcpFb(RtcpFb { pt: Some(pt), value: fb.into() }));
        }
    }
    if let Some(f) = &choice.fmtp {
        a.attributes.push(Attribute::Fmtp(Fmtp { pt, params: f.clone() }));
    }
    if let (Some(r), Some(f)) = (&choice.rtx, &choice.rtx_fmtp) {
        a.attributes.push(Attribute::Rtpmap(r.clone()));
        a.attributes.push(Attribute::Fmtp(f.clone()));
    }

    // Simulcast: the rids the client sends, in its preference order.
    let mut rids: Vec<String> = match m.simulcast() {
        Some(s) if !s.send.is_empty() => s.send.iter().filter_map(|alts| alts.first()).map(|r| r.rid.clone()).collect(),
        _ => m.rids().filter(|r| r.send).map(|r| r.id.clone()).collect(),
    };
    rids.retain(|r| m.rids().any(|x| x.send && x.id == *r));
    if policy.accept_simulcast && !rids.is_empty() && sending {
        for r in &rids {
            a.attributes.push(Attribute::Rid(Rid { id: r.clone(), send: false, params: None }));
        }
        a.attributes.push(Attribute::Simulcast(super::Simulcast {
            send: Vec::new(),
            recv: rids.iter().map(|r| vec![super::SimulcastRid { rid: r.clone(), paused: false }]).collect(),
        }));
    }

    let layers = if policy.accept_simulcast && sending { simulcast_layers(m, &rids) } else { Vec::new() };
    let track = sending.then(|| {
        let (ssrc, rtx_ssrc) = primary_ssrcs(m);
        let (stream_id, track_id) = match m.msid() {
            Some((s, t)) => (Some(s.to_string()), t.map(str::to_string)),
            None => ssrc_msid(m, ssrc),
        };
        PublishedTrack {
            mid: mid.to_string(),
            stream_id: stream_id.filter(|s| s != "-"),
            track_id,
            rids: rids.clone(),
            fmtp: choice.fmtp.clone(),
            produce: ProduceParams {
                kind,
                codec: choice.codec,
                payload_type: pt,
                clock_rate: choice.rtpmap.clock_rate,
                rtx_payload_type: choice.rtx.as_ref().map(|r| r.pt),
                ssrc,
                rtx_ssrc: if ssrc.is_some() { rtx_ssrc } else { None },
                mid: Some(mid.to_string()),
                rid: None,
                extensions,
                paused: false,
                layers,
                priority: 0,
            },
        }
    });
    Ok(Answered { media: a, track, data_channel: false })
}

fn answer_application(
    m: &Media,
    mid: &str,
    router: &TransportInfo,
    policy: &PublishPolicy,
    transport: &[Attribute],
) -> Result<Answered, RejectReason> {
    // Only the RFC 8841 form (`UDP/DTLS/SCTP webrtc-datachannel`) that browsers send today.
    if !matches!(m.proto.as_str(), "UDP/DTLS/SCTP" | "DTLS/SCTP")
        || m.formats.first().map(String::as_str) != Some("webrtc-datachannel")
    {
        return Err(RejectReason::Unsupported(format!("application {}", m.proto)));
    }
    if !policy.accept_data_channel {
        return Err(RejectReason::DataChannelRefused);
    }
    let media = application_media(mid, router, transport, &m.proto);
    Ok(Answered { media, track: None, data_channel: true })
}

/// An `m=application` section for a data channel on the router's transport.
pub(super) fn application_media(mid: &str, router: &TransportInfo, transport: &[Attribute], proto: &str) -> Media {
    let mut a = Media::new("application", media_address(router).port(), proto, vec!["webrtc-datachannel".into()]);
    a.connection = Some(connection_line(&media_address(router)));
    a.attributes.push(Attribute::Mid(mid.to_string()));
    a.attributes.extend(transport.iter().cloned());
    a.attributes.extend(router_candidates(router));
    a.attributes.push(Attribute::SctpPort(5000));
    a.attributes.push(Attribute::MaxMessageSize(262_144));
    a
}

/// The router's layers for a simulcast m-line, lowest first: one per rid (the 100ms rids `q`,
/// `h`, `f` sorted low to high; other names in the client's order, which browsers send low
/// to high), or one per SSRC of an `a=ssrc-group:SIM` with its FID (RTX) partner. Empty for
/// a single encoding.
fn simulcast_layers(m: &Media, rids: &[String]) -> Vec<LayerParams> {
    if rids.len() > 1 {
        let mut rids: Vec<&String> = rids.iter().take(3).collect();
        if rids.iter().all(|r| rid_layer(r).is_some()) {
            rids.sort_by_key(|r| rid_layer(r));
        }
        return rids.into_iter().map(|r| LayerParams { rid: Some(r.clone()), ssrc: None, rtx_ssrc: None }).collect();
    }
    let Some(sim) = m.ssrc_groups().find(|g| g.semantics == "SIM" && g.ssrcs.len() > 1) else {
        return Vec::new();
    };
    let fid_of = |ssrc: u32| {
        m.ssrc_groups()
            .find(|g| g.semantics == "FID" && g.ssrcs.first() == Some(&ssrc))
            .and_then(|g| g.ssrcs.get(1).copied())
    };
    sim.ssrcs.iter().take(3).map(|&s| LayerParams { rid: None, ssrc: Some(s), rtx_ssrc: fid_of(s) }).collect()
}

/// The media SSRC and its RTX partner: the first simulcast (SIM) layer if the client munged
/// one in, else the first FID group, else the first `a=ssrc`.
fn primary_ssrcs(m: &Media) -> (Option<u32>, Option<u32>) {
    let sim = m.ssrc_groups().find(|g| g.semantics == "SIM").and_then(|g| g.ssrcs.first().copied());
    let fid_of = |ssrc: u32| {
        m.ssrc_groups()
            .find(|g| g.semantics == "FID" && g.ssrcs.first() == Some(&ssrc))
            .and_then(|g| g.ssrcs.get(1).copied())
    };
    if let Some(s) = sim {
        return (Some(s), fid_of(s));
    }
    if let Some(g) = m.ssrc_groups().find(|g| g.semantics == "FID") {
        return (g.ssrcs.first().copied(), g.ssrcs.get(1).copied());
    }
    (m.ssrcs().next().map(|s| s.ssrc), None)
}

/// `a=ssrc:<n> msid:<stream> <track>`, the older place for the ids.
fn ssrc_msid(m: &Media, ssrc: Option<u32>) -> (Option<String>, Option<String>) {
    let v = m.ssrcs().find(|s| Some(s.ssrc) == ssrc && s.name == "msid").and_then(|s| s.value.as_deref());
    match v.map(|v| v.split_once(' ').unwrap_or((v, ""))) {
        Some((s, t)) => (Some(s.to_string()), (!t.is_empty()).then(|| t.to_string())),
        None => (None, None),
    }
}

/// Picks the codec for an m-line: Opus for audio; for video the policy's order, and inside
/// H.264 and VP9 the most compatible profile. Among equals the client's order wins.
fn choose_codec(m: &Media, kind: MediaKind, policy: &PublishPolicy) -> Option<Choice> {
    let offered = |r: &&Rtpmap| m.formats.iter().any(|f| f.parse::<u8>().ok() == Some(r.pt));
    let order: &[Codec] = match kind {
        MediaKind::Audio => &[Codec::Opus],
        MediaKind::Video => &policy.video_codecs,
    };
    for &codec in order {
        if codec.is_video() != (kind == MediaKind::Video) {
            continue;
        }
        let best = m
            .rtpmaps()
            .filter(offered)
            .filter(|r| Codec::from_encoding_name(&r.encoding) == Some(codec))
            .filter(|r| r.clock_rate == if codec == Codec::Opus { 48_000 } else { 90_000 })
            .filter_map(|r| {
                let fmtp = m.fmtp(r.pt).map(|f| f.params.as_str());
                rank(codec, fmtp).map(|rank| (rank, r))
            })
            .min_by_key(|(rank, _)| *rank);
        let Some((_, r)) = best else { continue };
        let (rtx, rtx_fmtp) = m
            .rtpmaps()
            .filter(offered)
            .filter(|x| x.encoding.eq_ignore_ascii_case("rtx") && x.clock_rate == r.clock_rate)
            .find_map(|x| {
                let f = m.fmtp(x.pt)?;
                (f.get("apt").and_then(|a| a.parse::<u8>().ok()) == Some(r.pt)).then(|| (x.clone(), f.clone()))
            })
            .map_or((None, None), |(x, f)| (Some(x), Some(f)));
        return Some(Choice { codec, rtpmap: r.clone(), fmtp: m.fmtp(r.pt).map(|f| f.params.clone()), rtx, rtx_fmtp });
    }
    None
}

/// Lower is better; `None` is unusable.
pub(super) fn rank(codec: Codec, fmtp: Option<&str>) -> Option<u8> {
    let get = |k| fmtp.and_then(|f| fmtp_param(f, k));
    match codec {
        Codec::Opus | Codec::Vp8 => Some(0),
        Codec::Vp9 => match get("profile-id") {
            None | Some("0") => Some(0),
            Some(_) => Some(1),
        },
        Codec::H264 => {
            // packetization-mode=0 forbids fragmentation (FU-A): useless for real video sizes.
            if get("packetization-mode") != Some("1") {
                return None;
            }
            let plid = get("profile-level-id").map(str::to_ascii_lowercase);
            match plid.as_deref() {
                Some("42e01f") => Some(0),
                // Constrained baseline at another level (42e0xx) or baseline (4200xx).
                Some(p) if p.starts_with("42e0") || p.starts_with("4200") => Some(1),
                // Main, high and the rest: decodable by most, but not every, subscriber.
                Some(_) => Some(2),
                None => Some(3),
            }
        }
    }
}

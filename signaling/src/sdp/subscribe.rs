//! The server's offers on a client's subscribe connection, and reading the client's answers.
//!
//! The server is always the offerer here. Each offer lists every track the client should
//! receive, one `sendonly` m-line per router consumer, plus the `m=application` line of the
//! `ion-sfu` data channel. Across renegotiations the m-lines keep their mids and their order
//! (browsers require both): a track that goes away leaves its m-line `inactive`; a new track
//! takes an m-line that was already inactive in the previous, answered offer, or a new one at
//! the end. Mids are plain integers, which the 100ms SDK needs to find a track's msid.
//!
//! One renegotiation, in order:
//!
//! 1. [`assign_mids`] gives each track its mid (the router's `consume` needs it for the mid
//!    header extension), and [`subscribe_extensions`] the extension ids to consume with.
//! 2. `consume` on the router for each new track; build a [`SubscribeTrack`] per track.
//! 3. [`subscribe_offer`] writes the offer; keep the returned [`SubscribeOffer`] as the
//!    `previous` of the next round.
//! 4. [`read_subscribe_answer`] checks the client's answer and returns the `connect_transport`
//!    parameters (needed after the first answer only).
//!
//! ```
//! use schema::api::{IceCandidate, MediaKind, TransportInfo};
//! use schema::ids::TransportId;
//! use signaling::sdp::{assign_mids, subscribe_offer, SubscribeOptions};
//! let router = TransportInfo {
//!     id: TransportId(1), ice_ufrag: "uf".into(), ice_pwd: "pw".repeat(11), ice_lite: true,
//!     fingerprint: "sha-256 AB:CD".into(), dtls_role: "server".into(),
//!     candidates: vec![IceCandidate::udp("192.0.2.1:40000".parse().unwrap())],
//! };
//! // No tracks yet: just the data channel.
//! let offer = subscribe_offer(&router, &[], &SubscribeOptions::default(), None).unwrap();
//! assert!(offer.sdp.contains("m=application 40000 UDP/DTLS/SCTP webrtc-datachannel"));
//! assert_eq!(assign_mids(Some(&offer), &[(MediaKind::Audio, "t1")]), vec!["1".to_string()]);
//! ```

use schema::api::{ConnectParams, ConsumerInfo, ExtensionIds, MediaKind, TransportInfo};
use schema::codec::Codec;
use schema::extensions::{URI_ABS_SEND_TIME, URI_AUDIO_LEVEL, URI_MID, URI_TRANSPORT_CC, URI_VIDEO_ORIENTATION};

use super::parse::{
    Attribute, Direction, Extmap, Fmtp, Media, Origin, RtcpFb, Rtpmap, Sdp, Setup, SsrcAttr, SsrcGroup,
};
use super::publish::application_media;
use super::{
    SdpError, connection_line, media_address, remote_transport, router_candidates, router_transport_attributes,
};

/// One track to send to the client: the router's consumer and the ids the client's SDK
/// matches it by.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SubscribeTrack {
    pub consumer: ConsumerInfo,
    /// From [`assign_mids`]; the same mid given to the router's `consume`.
    pub mid: String,
    /// The publisher's msid stream id (the 100ms `stream_id`).
    pub stream_id: String,
    /// The publisher's msid track id (the 100ms `track_id`).
    pub track_id: String,
    /// The extension ids given to `consume` ([`subscribe_extensions`]).
    pub extensions: ExtensionIds,
    /// The publisher's `a=fmtp` for the codec ([`super::PublishedTrack::fmtp`]); a default
    /// for the codec when `None`.
    pub fmtp: Option<String>,
}

/// What an m-line of the subscribe connection carries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SlotState {
    /// Sending this track.
    Active(SubscribeTrack),
    /// Idle; holds the last track, whose codec keeps describing the m-line.
    Inactive(SubscribeTrack),
    /// The data channel.
    DataChannel,
}

/// One m-line of the subscribe connection.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SubscribeSlot {
    pub mid: String,
    pub state: SlotState,
}

impl SubscribeSlot {
    fn kind(&self) -> Option<MediaKind> {
        match &self.state {
            SlotState::Active(t) | SlotState::Inactive(t) => Some(t.consumer.kind),
            SlotState::DataChannel => None,
        }
    }
}

/// An offer and the m-line layout it fixed; the `previous` of the next offer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SubscribeOffer {
    pub sdp: String,
    /// The `o=` session id (stable for the connection) and version (one more per offer).
    pub session_id: u64,
    pub version: u64,
    /// The m-lines in order.
    pub slots: Vec<SubscribeSlot>,
}

/// What the client's answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeAnswer {
    /// For `connect_transport` (the client's fingerprint and ufrag).
    pub connect: ConnectParams,
    /// Mids of m-lines we offered with something on them that the client refused (port 0 or
    /// `inactive`).
    pub refused: Vec<String>,
}

/// The header extension ids the router should `consume` with for this subscriber. Fixed per
/// kind (the server offers, so it picks), and the same numbers browsers use.
pub fn subscribe_extensions(kind: MediaKind) -> ExtensionIds {
    let mut e = ExtensionIds { abs_send_time: Some(2), transport_cc: Some(3), mid: Some(4), ..ExtensionIds::default() };
    match kind {
        MediaKind::Audio => e.audio_level = Some(1),
        MediaKind::Video => e.video_orientation = Some(13),
    }
    e
}

/// Picks the mid of each track (kind, track id) for the next offer: the mid it already has;
/// else an m-line of the same kind that was inactive in `previous` (so its old track's removal
/// was already negotiated); else a new integer mid after every mid in use.
pub fn assign_mids(previous: Option<&SubscribeOffer>, tracks: &[(MediaKind, &str)]) -> Vec<String> {
    let slots = previous.map(|p| p.slots.as_slice()).unwrap_or_default();
    let mut next = next_free_mid(slots);
    let mut taken: Vec<&str> = Vec::new();
    let mut out = Vec::with_capacity(tracks.len());
    for &(kind, track_id) in tracks {
        let current = slots.iter().find(|s| matches!(&s.state, SlotState::Active(t) if t.track_id == track_id));
        let recycled = || {
            slots.iter().find(|s| {
                matches!(&s.state, SlotState::Inactive(t) if t.consumer.kind == kind)
                    && !taken.contains(&s.mid.as_str())
            })
        };
        let mid = match current.or_else(recycled) {
            Some(s) => s.mid.clone(),
            None => {
                next += 1;
                (next - 1).to_string()
            }
        };
        if let Some(s) = slots.iter().find(|s| s.mid == mid) {
            taken.push(s.mid.as_str());
        }
        out.push(mid);
    }
    out
}

fn next_free_mid(slots: &[SubscribeSlot]) -> u64 {
    slots.iter().filter_map(|s| s.mid.parse::<u64>().ok()).map(|m| m + 1).max().unwrap_or(0)
}

/// Options of [`subscribe_offer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// Add an `m=application` line for the data channel (once; it then stays).
    pub data_channel: bool,
    /// Our `a=setup`. RFC 8842 says an offerer must say `actpass`, and browsers then answer
    /// `active`, which the router (always the DTLS server) needs. Some stacks (str0m) answer
    /// `actpass` with `passive`; for them offer `passive` (RFC 5763 allowed it, and browsers
    /// accept it too), which leaves the answerer only `active`.
    pub setup: Setup,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions { data_channel: true, setup: Setup::ActPass }
    }
}

/// Writes the next offer for the subscribe connection. `tracks` is the full set the client
/// should receive now; slots of `previous` whose track is missing go inactive.
pub fn subscribe_offer(
    router: &TransportInfo,
    tracks: &[SubscribeTrack],
    options: &SubscribeOptions,
    previous: Option<&SubscribeOffer>,
) -> Result<SubscribeOffer, SdpError> {
    if !matches!(options.setup, Setup::ActPass | Setup::Passive) {
        return Err(SdpError::BadSetup(Some(options.setup)));
    }
    let mut slots: Vec<SubscribeSlot> = previous.map(|p| p.slots.clone()).unwrap_or_default();
    for (i, t) in tracks.iter().enumerate() {
        if tracks[..i].iter().any(|o| o.mid == t.mid) {
            return Err(SdpError::DuplicateMid(t.mid.clone()));
        }
        if t.mid.is_empty() || t.mid.contains(char::is_whitespace) {
            return Err(SdpError::MidConflict(t.mid.clone(), "not a valid mid"));
        }
    }
    for slot in &mut slots {
        let kind = slot.kind();
        let new = tracks.iter().find(|t| t.mid == slot.mid);
        slot.state = match (std::mem::replace(&mut slot.state, SlotState::DataChannel), new) {
            (SlotState::DataChannel, Some(_)) => {
                return Err(SdpError::MidConflict(slot.mid.clone(), "it is the data channel's"));
            }
            (SlotState::DataChannel, None) => SlotState::DataChannel,
            (_, Some(t)) if Some(t.consumer.kind) != kind => {
                return Err(SdpError::MidConflict(slot.mid.clone(), "its m-line has another media kind"));
            }
            (SlotState::Active(old), Some(t)) if old.track_id != t.track_id => {
                return Err(SdpError::MidConflict(slot.mid.clone(), "its m-line still carries another track"));
            }
            (_, Some(t)) => SlotState::Active(t.clone()),
            (SlotState::Active(old) | SlotState::Inactive(old), None) => SlotState::Inactive(old),
        };
    }
    for t in tracks {
        if !slots.iter().any(|s| s.mid == t.mid) {
            slots.push(SubscribeSlot { mid: t.mid.clone(), state: SlotState::Active(t.clone()) });
        }
    }
    if options.data_channel && !slots.iter().any(|s| s.state == SlotState::DataChannel) {
        let mid = next_free_mid(&slots).to_string();
        slots.push(SubscribeSlot { mid, state: SlotState::DataChannel });
    }

    let session_id = previous.map_or(u64::from(router.id.0), |p| p.session_id);
    let version = previous.map_or(1, |p| p.version + 1);
    let transport = router_transport_attributes(router, options.setup)?;
    let mut sdp = Sdp {
        origin: Origin {
            username: "-".into(),
            session_id: session_id.to_string(),
            session_version: version,
            address_type: "IP4".into(),
            address: "0.0.0.0".into(),
        },
        name: "-".into(),
        timing: "0 0".into(),
        connection: None,
        attributes: vec![
            Attribute::IceLite,
            Attribute::Group { semantics: "BUNDLE".into(), mids: slots.iter().map(|s| s.mid.clone()).collect() },
            Attribute::MsidSemantic("WMS *".into()),
        ],
        media: Vec::new(),
    };
    for slot in &slots {
        let media = match &slot.state {
            SlotState::DataChannel => application_media(&slot.mid, router, &transport, "UDP/DTLS/SCTP"),
            SlotState::Active(t) => track_media(&slot.mid, t, true, router, &transport),
            SlotState::Inactive(t) => track_media(&slot.mid, t, false, router, &transport),
        };
        sdp.media.push(media);
    }
    Ok(SubscribeOffer { sdp: sdp.to_string(), session_id, version, slots })
}

fn encoding(codec: Codec) -> (&'static str, Option<u8>) {
    match codec {
        Codec::Opus => ("opus", Some(2)),
        Codec::Vp8 => ("VP8", None),
        Codec::Vp9 => ("VP9", None),
        Codec::H264 => ("H264", None),
    }
}

fn default_fmtp(codec: Codec) -> Option<&'static str> {
    match codec {
        Codec::Opus => Some("minptime=10;useinbandfec=1"),
        Codec::Vp8 => None,
        Codec::Vp9 => Some("profile-id=0"),
        Codec::H264 => Some("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"),
    }
}

pub(super) fn track_media(
    mid: &str,
    t: &SubscribeTrack,
    active: bool,
    router: &TransportInfo,
    transport: &[Attribute],
) -> Media {
    let c = &t.consumer;
    let kind = match c.kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
    };
    let rtx = c.rtx_payload_type.zip(c.rtx_ssrc);
    let mut formats = vec![c.payload_type.to_string()];
    if let Some((pt, _)) = rtx {
        formats.push(pt.to_string());
    }
    let mut m = Media::new(kind, media_address(router).port(), "UDP/TLS/RTP/SAVPF", formats);
    m.connection = Some(connection_line(&media_address(router)));
    m.attributes.push(Attribute::Mid(mid.to_string()));
    m.attributes.extend(transport.iter().cloned());
    m.attributes.extend(router_candidates(router));
    m.attributes.push(Attribute::Direction(if active { Direction::SendOnly } else { Direction::Inactive }));
    if active {
        m.attributes.push(Attribute::Msid { stream: t.stream_id.clone(), track: Some(t.track_id.clone()) });
    }
    m.attributes.push(Attribute::RtcpMux);
    m.attributes.push(Attribute::RtcpRsize);
    for id in 1..=14u8 {
        if let Some(uri) = t.extensions.uri_of(id) {
            // Only the ones this kind uses: an audio m-line has no video orientation, etc.
            let fits = match uri {
                URI_AUDIO_LEVEL => c.kind == MediaKind::Audio,
                URI_VIDEO_ORIENTATION => c.kind == MediaKind::Video,
                URI_MID | URI_ABS_SEND_TIME | URI_TRANSPORT_CC => true,
                // rid / repaired-rid: the router sends one plain stream per consumer.
                _ => false,
            };
            if fits {
                m.attributes.push(Attribute::Extmap(Extmap { id, direction: None, uri: uri.into(), params: None }));
            }
        }
    }
    let pt = c.payload_type;
    let (name, channels) = encoding(c.codec);
    m.attributes.push(Attribute::Rtpmap(Rtpmap { pt, encoding: name.into(), clock_rate: c.clock_rate, channels }));
    let mut fbs: Vec<&str> = Vec::new();
    if t.extensions.transport_cc.is_some() {
        fbs.push("transport-cc");
    }
    if c.kind == MediaKind::Video {
        fbs.extend(["nack", "nack pli", "ccm fir"]);
    }
    for fb in fbs {
        m.attributes.push(Attribute::RtcpFb(RtcpFb { pt: Some(pt), value: fb.into() }));
    }
    if let Some(f) = t.fmtp.as_deref().or(default_fmtp(c.codec)) {
        m.attributes.push(Attribute::Fmtp(Fmtp { pt, params: f.into() }));
    }
    if let Some((rtx_pt, _)) = rtx {
        m.attributes.push(Attribute::Rtpmap(Rtpmap {
            pt: rtx_pt,
            encoding: "rtx".into(),
            clock_rate: c.clock_rate,
            channels: None,
        }));
        m.attributes.push(Attribute::Fmtp(Fmtp { pt: rtx_pt, params: format!("apt={pt}") }));
    }
    if active {
        let mut ssrcs = vec![c.ssrc];
        if let Some((_, rtx_ssrc)) = rtx {
            ssrcs.push(rtx_ssrc);
            m.attributes.push(Attribute::SsrcGroup(SsrcGroup { semantics: "FID".into(), ssrcs: ssrcs.clone() }));
        }
        for ssrc in ssrcs {
            // The stream id as CNAME: tracks of one publisher stream are synchronised together.
            m.attributes.push(Attribute::Ssrc(SsrcAttr {
                ssrc,
                name: "cname".into(),
                value: Some(t.stream_id.clone()),
            }));
            m.attributes.push(Attribute::Ssrc(SsrcAttr {
                ssrc,
                name: "msid".into(),
                value: Some(format!("{} {}", t.stream_id, t.track_id)),
            }));
        }
    }
    m
}

/// Reads the client's answer to `offer`: its DTLS fingerprint and ICE ufrag, checked against
/// what the router needs (`a=setup:active`: the router is the DTLS server), and which m-lines
/// it refused.
pub fn read_subscribe_answer(answer: &str, offer: &SubscribeOffer) -> Result<SubscribeAnswer, SdpError> {
    let sdp = Sdp::parse(answer)?;
    if sdp.media.len() != offer.slots.len() {
        return Err(SdpError::AnswerMismatch(format!(
            "{} m-lines answered, {} offered",
            sdp.media.len(),
            offer.slots.len()
        )));
    }
    let (ufrag, _pwd, fingerprint, setup) = remote_transport(&sdp)?;
    if setup != Some(Setup::Active) {
        return Err(SdpError::BadSetup(setup));
    }
    let mut refused = Vec::new();
    for (m, slot) in sdp.media.iter().zip(&offer.slots) {
        // A rejected m-line may drop its mid; a kept one must repeat ours.
        if m.port != 0 && m.mid() != Some(slot.mid.as_str()) {
            return Err(SdpError::AnswerMismatch(format!("expected mid {}, got {:?}", slot.mid, m.mid())));
        }
        let expected_kind = match slot.kind() {
            Some(MediaKind::Audio) => "audio",
            Some(MediaKind::Video) => "video",
            None => "application",
        };
        if m.kind != expected_kind {
            return Err(SdpError::AnswerMismatch(format!("mid {} answered as {}", slot.mid, m.kind)));
        }
        let wanted = matches!(slot.state, SlotState::Active(_) | SlotState::DataChannel);
        let accepted = m.port != 0 && (slot.state == SlotState::DataChannel || m.direction().receives());
        if wanted && !accepted {
            refused.push(slot.mid.clone());
        }
        if m.port != 0 && slot.kind().is_some() && m.direction().sends() {
            return Err(SdpError::AnswerMismatch(format!("mid {} answered {}", slot.mid, m.direction().as_str())));
        }
    }
    Ok(SubscribeAnswer { connect: ConnectParams { fingerprint, ice_ufrag: Some(ufrag) }, refused })
}

//! Answering a WHEP player's offer: the client offers `recvonly` m-lines (usually one audio,
//! one video), and the server answers `sendonly` with router consumers on them.
//!
//! Unlike the subscribe connection of the 100ms SDK, where the server offers and picks every
//! number, here the client picked the mids, payload types and header extension ids, so the
//! consumers are made with the client's numbers. Two steps:
//!
//! 1. [`plan_playback`] matches each offered m-line with one of the tracks to play (by kind
//!    and codec: the router forwards, it does not transcode) and returns, per matched line,
//!    the client's payload type, RTX payload type, mid and extension ids for `consume`.
//! 2. After `consume`, [`PlaybackPlan::answer`] writes the answer with the consumers' SSRCs.
//!
//! ```
//! use schema::api::{IceCandidate, MediaKind, TransportInfo};
//! use schema::codec::Codec;
//! use schema::ids::TransportId;
//! use signaling::sdp::{PlaybackSource, plan_playback};
//! let offer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
//!     m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=recvonly\r\na=rtcp-mux\r\n\
//!     a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuv\r\na=fingerprint:sha-256 AB:CD\r\n\
//!     a=setup:actpass\r\na=rtpmap:111 opus/48000/2\r\n";
//! let plan = plan_playback(offer, &[PlaybackSource { kind: MediaKind::Audio, codec: Codec::Opus, fmtp: None }]).unwrap();
//! assert_eq!(plan.lines[0].payload_type, 111);
//! assert_eq!(plan.lines[0].source, 0);
//! ```

use schema::api::{ConnectParams, ExtensionIds, MediaKind, TransportInfo};
use schema::codec::Codec;
use schema::extensions::{URI_ABS_SEND_TIME, URI_AUDIO_LEVEL, URI_MID, URI_TRANSPORT_CC, URI_VIDEO_ORIENTATION};

use super::parse::{Attribute, Media, Sdp, Setup, fmtp_param};
use super::publish::{is_rtp_proto, rank, rejected_media};
use super::subscribe::track_media;
use super::{SdpError, SubscribeTrack, answer_skeleton, check_mids, remote_transport, router_transport_attributes};

/// A track the player may be given: what the router's producer carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaybackSource {
    pub kind: MediaKind,
    pub codec: Codec,
    /// The publisher's `a=fmtp` for the codec (an H.264 profile is matched against it).
    pub fmtp: Option<String>,
}

/// An offered m-line that will carry one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaybackLine {
    /// Its place among the offer's m-lines.
    pub index: usize,
    pub mid: String,
    /// Index into the sources given to [`plan_playback`].
    pub source: usize,
    /// The client's payload type for the source's codec, and its RTX partner if offered.
    pub payload_type: u8,
    pub rtx_payload_type: Option<u8>,
    /// The client's ids of the header extensions the router writes.
    pub extensions: ExtensionIds,
}

/// What an offer asks for, before the consumers exist.
#[derive(Debug, Clone)]
pub struct PlaybackPlan {
    offer: Sdp,
    /// For `connect_transport`: the client's fingerprint and ufrag.
    pub connect: ConnectParams,
    /// The m-lines that get a track; the others are answered with port 0.
    pub lines: Vec<PlaybackLine>,
}

/// Matches an offer's m-lines with `sources`, each source used once, in the offer's order.
/// Fails when the offer is malformed, cannot be answered by a DTLS server, or no m-line
/// can carry any source (nothing to play with the offered codecs).
pub fn plan_playback(offer: &str, sources: &[PlaybackSource]) -> Result<PlaybackPlan, SdpError> {
    let offer = Sdp::parse(offer)?;
    check_mids(&offer)?;
    let (ufrag, _pwd, fingerprint, setup) = remote_transport(&offer)?;
    if !matches!(setup, Some(Setup::ActPass) | Some(Setup::Active)) {
        return Err(SdpError::BadSetup(setup));
    }
    if offer.bundle().is_none() && offer.media.len() > 1 {
        return Err(SdpError::NoBundle);
    }
    let mut used = vec![false; sources.len()];
    let mut lines = Vec::new();
    for (index, m) in offer.media.iter().enumerate() {
        let mid = m.mid().unwrap_or_default().to_string();
        let bundled = offer.bundle().is_none_or(|b| b.contains(&mid));
        let kind = match m.kind.as_str() {
            "audio" => MediaKind::Audio,
            "video" => MediaKind::Video,
            _ => continue,
        };
        if m.port == 0
            || !bundled
            || !is_rtp_proto(&m.proto)
            || !m.direction().receives()
            || !m.has(&Attribute::RtcpMux)
        {
            continue;
        }
        let matched = sources
            .iter()
            .enumerate()
            .filter(|(i, s)| !used[*i] && s.kind == kind)
            .find_map(|(i, s)| offered_payload_type(m, s).map(|(pt, rtx)| (i, pt, rtx)));
        let Some((source, payload_type, rtx_payload_type)) = matched else { continue };
        used[source] = true;
        lines.push(PlaybackLine {
            index,
            mid,
            source,
            payload_type,
            rtx_payload_type,
            extensions: extensions(m, kind),
        });
    }
    if lines.is_empty() {
        return Err(SdpError::NoUsableCodec);
    }
    Ok(PlaybackPlan { connect: ConnectParams { fingerprint, ice_ufrag: Some(ufrag) }, lines, offer })
}

/// The client's payload type for the source's codec (for H.264: packetization-mode 1, the
/// publisher's profile first) and the RTX payload type that repairs it.
fn offered_payload_type(m: &Media, source: &PlaybackSource) -> Option<(u8, Option<u8>)> {
    let offered = |pt: u8| m.formats.iter().any(|f| f.parse::<u8>().ok() == Some(pt));
    let wanted_profile = source.fmtp.as_deref().and_then(|f| fmtp_param(f, "profile-level-id"));
    let pt = m
        .rtpmaps()
        .filter(|r| offered(r.pt) && Codec::from_encoding_name(&r.encoding) == Some(source.codec))
        .filter_map(|r| {
            let fmtp = m.fmtp(r.pt).map(|f| f.params.as_str());
            let usable = rank(source.codec, fmtp)?;
            let same_profile = wanted_profile.is_some()
                && fmtp.and_then(|f| fmtp_param(f, "profile-level-id")).map(str::to_ascii_lowercase)
                    == wanted_profile.map(str::to_ascii_lowercase);
            Some((!same_profile, usable, r.pt))
        })
        .min()
        .map(|(_, _, pt)| pt)?;
    let rtx = m.rtpmaps().filter(|r| offered(r.pt) && r.encoding.eq_ignore_ascii_case("rtx")).find_map(|r| {
        let apt = m.fmtp(r.pt)?.get("apt")?.parse::<u8>().ok()?;
        (apt == pt).then_some(r.pt)
    });
    Some((pt, rtx))
}

/// The offered ids of the extensions the router writes on this kind of m-line.
fn extensions(m: &Media, kind: MediaKind) -> ExtensionIds {
    let mut ids = ExtensionIds::default();
    for e in m.extmaps() {
        let wanted = match e.uri.as_str() {
            URI_MID | URI_ABS_SEND_TIME | URI_TRANSPORT_CC => true,
            URI_AUDIO_LEVEL => kind == MediaKind::Audio,
            URI_VIDEO_ORIENTATION => kind == MediaKind::Video,
            _ => false,
        };
        if wanted {
            ids.set_from_uri(e.id, &e.uri);
        }
    }
    ids
}

impl PlaybackPlan {
    /// The answer: each planned line `sendonly` with its consumer (`tracks[i]` for
    /// `lines[i]`), the other m-lines rejected.
    pub fn answer(&self, router: &TransportInfo, tracks: &[SubscribeTrack]) -> Result<String, SdpError> {
        let transport = router_transport_attributes(router, Setup::Passive)?;
        let mut answer = answer_skeleton(router, &self.offer);
        let mut bundled = Vec::new();
        for (index, m) in self.offer.media.iter().enumerate() {
            let mid = m.mid().unwrap_or_default();
            let line = self.lines.iter().position(|l| l.index == index);
            match line.and_then(|i| tracks.get(i)) {
                Some(t) => {
                    answer.media.push(track_media(mid, t, true, router, &transport));
                    bundled.push(mid.to_string());
                }
                None => answer.media.push(rejected_media(m, mid)),
            }
        }
        if bundled.is_empty() {
            return Err(SdpError::NoUsableCodec);
        }
        answer.attributes.push(Attribute::Group { semantics: "BUNDLE".into(), mids: bundled });
        answer.attributes.push(Attribute::MsidSemantic("WMS *".into()));
        Ok(answer.to_string())
    }
}

#[cfg(test)]
mod tests {
    use schema::api::{ConsumerInfo, IceCandidate};
    use schema::ids::{ConsumerId, ProducerId, TransportId};

    use super::*;

    /// What Chromium offers for `addTransceiver('video'|'audio', {direction: 'recvonly'})`,
    /// cut down: VP8 and two H.264 profiles with RTX, Opus, and the usual extensions.
    const OFFER: &str = "v=0\r\no=- 42 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1 2\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 127\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=recvonly\r\na=rtcp-mux\r\n\
        a=ice-ufrag:Ab12\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 AB:CD\r\na=setup:actpass\r\n\
        a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
        a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
        a=extmap:13 urn:3gpp:video-orientation\r\n\
        a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n\
        a=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640c1f\r\n\
        a=rtpmap:103 H264/90000\r\na=fmtp:103 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
        a=rtpmap:127 rtx/90000\r\na=fmtp:127 apt=103\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=recvonly\r\na=rtcp-mux\r\n\
        a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
        a=rtpmap:111 opus/48000/2\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:2\r\na=recvonly\r\na=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\n";

    fn router() -> TransportInfo {
        TransportInfo {
            id: TransportId(7),
            ice_ufrag: "uf".into(),
            ice_pwd: "pw".repeat(11),
            ice_lite: true,
            fingerprint: "sha-256 AB:CD".into(),
            dtls_role: "server".into(),
            candidates: vec![IceCandidate::udp("192.0.2.1:40000".parse().unwrap())],
        }
    }

    fn source(kind: MediaKind, codec: Codec, fmtp: Option<&str>) -> PlaybackSource {
        PlaybackSource { kind, codec, fmtp: fmtp.map(str::to_string) }
    }

    #[test]
    fn each_source_takes_the_players_numbers_and_the_rest_is_rejected() {
        let sources = [
            source(MediaKind::Audio, Codec::Opus, None),
            source(MediaKind::Video, Codec::H264, Some("packetization-mode=1;profile-level-id=42e01f")),
        ];
        let plan = plan_playback(OFFER, &sources).unwrap();
        assert_eq!(plan.lines.len(), 2, "one video and one audio source: the second video m-line stays empty");
        let video = &plan.lines[0];
        assert_eq!((video.mid.as_str(), video.source), ("0", 1));
        assert_eq!(
            (video.payload_type, video.rtx_payload_type),
            (103, Some(127)),
            "the publisher's profile and its RTX"
        );
        assert_eq!(
            (video.extensions.mid, video.extensions.transport_cc, video.extensions.video_orientation),
            (Some(4), Some(3), Some(13))
        );
        let audio = &plan.lines[1];
        assert_eq!((audio.mid.as_str(), audio.source, audio.payload_type), ("1", 0, 111));
        assert_eq!((audio.extensions.audio_level, audio.extensions.video_orientation), (Some(1), None));
        assert_eq!(plan.connect.ice_ufrag.as_deref(), Some("Ab12"));

        let tracks: Vec<SubscribeTrack> = plan
            .lines
            .iter()
            .enumerate()
            .map(|(i, l)| SubscribeTrack {
                consumer: ConsumerInfo {
                    id: ConsumerId(i as u32),
                    producer: ProducerId(i as u32),
                    kind: sources[l.source].kind,
                    codec: sources[l.source].codec,
                    clock_rate: if sources[l.source].kind == MediaKind::Audio { 48_000 } else { 90_000 },
                    ssrc: 1000 + i as u32,
                    payload_type: l.payload_type,
                    rtx_ssrc: l.rtx_payload_type.map(|_| 2000),
                    rtx_payload_type: l.rtx_payload_type,
                },
                mid: l.mid.clone(),
                stream_id: "stream".into(),
                track_id: format!("track{i}"),
                extensions: l.extensions,
                fmtp: sources[l.source].fmtp.clone(),
            })
            .collect();
        let answer = Sdp::parse(&plan.answer(&router(), &tracks).unwrap()).unwrap();
        assert_eq!(answer.media.len(), 3, "every offered m-line is answered, in order");
        assert_eq!(answer.bundle(), Some(&["0".to_string(), "1".to_string()][..]));
        let v = &answer.media[0];
        assert_eq!(v.direction(), super::super::Direction::SendOnly);
        assert_eq!(v.formats, ["103", "127"]);
        assert!(v.ssrcs().any(|s| s.ssrc == 1000), "the consumer's SSRC is announced");
        assert!(v.has(&Attribute::Setup(Setup::Passive)), "the router is the DTLS server");
        assert_eq!(answer.media[2].port, 0, "the second video m-line has nothing to carry");
    }

    #[test]
    fn an_offer_that_cannot_play_anything_is_refused() {
        let vp9_only = [source(MediaKind::Video, Codec::Vp9, None)];
        assert_eq!(plan_playback(OFFER, &vp9_only).unwrap_err(), SdpError::NoUsableCodec, "no codec in common");
        let sending = OFFER.replace("a=recvonly", "a=sendonly");
        let vp8 = [source(MediaKind::Video, Codec::Vp8, None)];
        assert_eq!(plan_playback(&sending, &vp8).unwrap_err(), SdpError::NoUsableCodec, "a player must receive");
        let passive = OFFER.replace("a=setup:actpass", "a=setup:passive");
        assert_eq!(plan_playback(&passive, &vp8).unwrap_err(), SdpError::BadSetup(Some(Setup::Passive)));
        assert!(matches!(plan_playback("v=0\r\nnonsense\r\n", &vp8), Err(SdpError::Parse(_))));
        assert!(plan_playback(OFFER, &[]).is_err(), "nothing to play");
    }
}

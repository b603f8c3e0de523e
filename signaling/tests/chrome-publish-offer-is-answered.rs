//! Realistic browser offers (Chrome's unified plan: many codecs, extmaps, FID groups, msid;
//! Chrome simulcast with rids; Firefox's session-level attributes) parse, round-trip, and get
//! the answer and router parameters we expect.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use schema::api::{MediaKind, TransportInfo};
use schema::codec::Codec;
use signaling::sdp::parse::Sdp;
use signaling::sdp::{Attribute, Direction, PublishPolicy, RejectReason, SdpError, Setup, answer_publish_offer};

const CHROME: &str = include_str!("data/chrome-publish-offer.sdp");

fn router() -> TransportInfo {
    common::router_transport(42, "203.0.113.5:40001")
}

#[test]
fn chrome_offer_parses_and_round_trips() {
    let sdp = Sdp::parse(CHROME).unwrap();
    assert_eq!(sdp.media.len(), 3);
    assert_eq!(sdp.bundle().unwrap(), ["0", "1", "2"]);
    let video = &sdp.media[1];
    assert_eq!(video.formats.len(), 25);
    assert_eq!(video.direction(), Direction::SendOnly);
    assert_eq!(video.rtpmaps().count(), 25);
    assert_eq!(video.extmaps().count(), 11);
    assert_eq!(video.ssrc_groups().next().unwrap().ssrcs, [1111111111, 2222222222]);
    assert_eq!(video.fmtp(102).unwrap().get("profile-level-id"), Some("42001f"));
    assert!(video.attributes.iter().any(|a| matches!(a, Attribute::Other { name, .. } if name == "rtcp")));
    assert!(sdp.media[2].has(&Attribute::SctpPort(5000)));
    assert!(sdp.media[2].has(&Attribute::MaxMessageSize(262144)));
    // Writing and reading again gives the same model; our text is stable.
    let written = sdp.to_string();
    assert_eq!(Sdp::parse(&written).unwrap(), sdp);
    assert_eq!(Sdp::parse(&written).unwrap().to_string(), written);
    // And our writer reproduces Chrome's text line for line.
    assert_eq!(written, CHROME);
}

#[test]
fn chrome_offer_gets_opus_vp8_and_its_rtx() {
    let r = router();
    let a = answer_publish_offer(CHROME, &r, &PublishPolicy::default()).unwrap();
    assert!(a.rejected.is_empty());
    assert_eq!(a.data_channel.as_deref(), Some("2"));
    assert_eq!(a.connect.ice_ufrag.as_deref(), Some("Jd2R"));
    assert!(a.connect.fingerprint.starts_with("sha-256 7B:8B:F0"));

    let audio = &a.tracks[0];
    assert_eq!((audio.mid.as_str(), audio.produce.kind, audio.produce.codec), ("0", MediaKind::Audio, Codec::Opus));
    assert_eq!((audio.produce.payload_type, audio.produce.clock_rate), (111, 48000));
    assert_eq!(audio.produce.ssrc, Some(3735928559));
    assert_eq!(audio.produce.rtx_ssrc, None);
    assert_eq!(audio.fmtp.as_deref(), Some("minptime=10;useinbandfec=1;usedtx=1"));
    assert_eq!(audio.produce.extensions.audio_level, Some(1));
    assert_eq!(audio.track_id.as_deref(), Some("a1b2c3d4-0000-4000-8000-aaaaaaaaaaaa"));
    assert_eq!(audio.stream_id.as_deref(), Some("5f3c1d2e-8a7b-4c6d-9e0f-112233445566"));

    let video = &a.tracks[1];
    assert_eq!(
        (video.produce.codec, video.produce.payload_type, video.produce.rtx_payload_type),
        (Codec::Vp8, 96, Some(97))
    );
    assert_eq!((video.produce.ssrc, video.produce.rtx_ssrc), (Some(1111111111), Some(2222222222)));
    let e = video.produce.extensions;
    assert_eq!(
        (e.abs_send_time, e.transport_cc, e.mid, e.rid, e.repaired_rid),
        (Some(2), Some(3), Some(4), Some(10), Some(11))
    );
    assert_eq!(e.video_orientation, Some(13));
    assert_eq!(e.audio_level, None);

    let sdp = Sdp::parse(&a.sdp).unwrap();
    assert!(sdp.attributes.contains(&Attribute::IceLite));
    assert_eq!(sdp.bundle().unwrap(), ["0", "1", "2"]);
    for m in &sdp.media {
        assert_eq!(m.port, 40001);
        assert_eq!(m.connection.as_deref(), Some("IN IP4 203.0.113.5"));
        assert!(m.has(&Attribute::Setup(Setup::Passive)));
        assert!(m.has(&Attribute::IceUfrag("rtrU".into())));
        assert!(
            m.attributes.iter().any(|a| matches!(a, Attribute::Candidate(c) if c.port == 40001 && c.typ == "host"))
        );
    }
    let v = &sdp.media[1];
    assert_eq!(v.formats, ["96", "97"]);
    assert_eq!(v.direction(), Direction::RecvOnly);
    let fbs: Vec<&str> = v.rtcp_fbs(96).map(|f| f.value.as_str()).collect();
    assert_eq!(fbs, ["nack", "nack pli", "ccm fir", "transport-cc"], "goog-remb is not ours to answer");
    assert_eq!(v.fmtp(97).unwrap().get("apt"), Some("96"));
    // Extensions we don't read (toffset, playout-delay, ...) are not answered.
    let uris: Vec<&str> = v.extmaps().map(|e| e.uri.as_str()).collect();
    assert!(!uris.iter().any(|u| u.contains("toffset") || u.contains("playout-delay")));
    assert_eq!(uris.len(), 6);
    // No ssrc or msid of ours in a recvonly answer.
    assert_eq!(v.ssrcs().count(), 0);
}

#[test]
fn h264_prefers_constrained_baseline_with_packetization_mode_1() {
    let policy = PublishPolicy { video_codecs: vec![Codec::H264, Codec::Vp8], ..PublishPolicy::default() };
    let a = answer_publish_offer(CHROME, &router(), &policy).unwrap();
    let video = &a.tracks[1];
    assert_eq!(
        (video.produce.codec, video.produce.payload_type, video.produce.rtx_payload_type),
        (Codec::H264, 106, Some(107))
    );
    assert_eq!(video.fmtp.as_deref(), Some("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"));

    // Without 42e01f: baseline 42001f (mode 1) beats main and high.
    let no_cb =
        CHROME.replace("packetization-mode=1;profile-level-id=42e01f", "packetization-mode=0;profile-level-id=42e01f");
    let a = answer_publish_offer(&no_cb, &router(), &policy).unwrap();
    assert_eq!(a.tracks[1].produce.payload_type, 102);

    let vp9 = PublishPolicy { video_codecs: vec![Codec::Vp9], ..PublishPolicy::default() };
    let a = answer_publish_offer(CHROME, &router(), &vp9).unwrap();
    assert_eq!(
        (a.tracks[1].produce.payload_type, a.tracks[1].produce.rtx_payload_type),
        (98, Some(99)),
        "profile 0 first"
    );
}

#[test]
fn role_without_video_gets_the_video_line_rejected() {
    let policy = PublishPolicy { allow_video: false, ..PublishPolicy::default() };
    let a = answer_publish_offer(CHROME, &router(), &policy).unwrap();
    assert_eq!(a.tracks.len(), 1);
    assert_eq!(a.rejected.len(), 1);
    assert_eq!(a.rejected[0].mid, "1");
    assert_eq!(a.rejected[0].reason, RejectReason::NotAllowed(MediaKind::Video));
    let sdp = Sdp::parse(&a.sdp).unwrap();
    assert_eq!(sdp.media[1].port, 0);
    assert_eq!(sdp.bundle().unwrap(), ["0", "2"], "a rejected m-line leaves the bundle");
}

#[test]
fn offer_with_no_usable_codec_is_an_error() {
    // Only PCMU audio, no data channel.
    let text = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\na=ice-ufrag:abcd\r\n\
        a=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 00:11\r\na=setup:actpass\r\na=rtcp-mux\r\n\
        a=rtpmap:0 PCMU/8000\r\n";
    assert_eq!(answer_publish_offer(text, &router(), &PublishPolicy::default()).unwrap_err(), SdpError::NoUsableCodec);
    // The same line with VP8 but no rtcp-mux is rejected for that reason.
    let video_without_mux = CHROME.replace("a=rtcp-mux\r\n", "");
    let a = answer_publish_offer(&video_without_mux, &router(), &PublishPolicy::default()).unwrap();
    assert!(a.rejected.iter().all(|r| r.reason == RejectReason::NoRtcpMux));
    assert_eq!(a.rejected.len(), 2);
}

#[test]
fn the_100ms_join_offer_with_only_a_data_channel_is_accepted() {
    let start = CHROME.find("m=application").unwrap();
    let join = format!("{}{}", &CHROME[..CHROME.find("m=audio").unwrap()], &CHROME[start..])
        .replace("a=group:BUNDLE 0 1 2", "a=group:BUNDLE 2");
    let a = answer_publish_offer(&join, &router(), &PublishPolicy::default()).unwrap();
    assert!(a.tracks.is_empty());
    assert_eq!(a.data_channel.as_deref(), Some("2"));
    assert!(a.sdp.contains("m=application 40001 UDP/DTLS/SCTP webrtc-datachannel\r\n"));
    assert!(a.sdp.contains("a=sctp-port:5000\r\n"));
    let refuse = PublishPolicy { accept_data_channel: false, ..PublishPolicy::default() };
    assert_eq!(answer_publish_offer(&join, &router(), &refuse).unwrap_err(), SdpError::NoUsableCodec);
}

#[test]
fn unpublished_track_is_answered_inactive() {
    // The SDK stops a sender: its m-line goes inactive and keeps its place.
    let mut sdp = Sdp::parse(CHROME).unwrap();
    for a in &mut sdp.media[1].attributes {
        if *a == Attribute::Direction(Direction::SendOnly) {
            *a = Attribute::Direction(Direction::Inactive);
        }
    }
    sdp.media[1]
        .attributes
        .retain(|a| !matches!(a, Attribute::Ssrc(_) | Attribute::SsrcGroup(_) | Attribute::Msid { .. }));
    let a = answer_publish_offer(&sdp.to_string(), &router(), &PublishPolicy::default()).unwrap();
    assert_eq!(a.tracks.len(), 1);
    assert_eq!(a.inactive, ["1"]);
    let answer = Sdp::parse(&a.sdp).unwrap();
    assert_eq!(answer.media[1].direction(), Direction::Inactive);
    assert_ne!(answer.media[1].port, 0);
}

#[test]
fn chrome_simulcast_offer_lists_rids_and_produces_by_mid() {
    let video_start = CHROME.find("m=video").unwrap();
    let app_start = CHROME.find("m=application").unwrap();
    let mut video = CHROME[video_start..app_start].to_string();
    let ssrc_start = video.find("a=ssrc-group").unwrap();
    video.truncate(ssrc_start);
    video.push_str("a=rid:q send\r\na=rid:h send\r\na=rid:f send\r\na=simulcast:send q;h;f\r\n");
    let offer = format!("{}{}{}", &CHROME[..video_start], video, &CHROME[app_start..]);
    // Simulcast is accepted by default: one layer per rid, lowest first.
    let a = answer_publish_offer(&offer, &router(), &PublishPolicy::default()).unwrap();
    let v = &a.tracks[1];
    assert_eq!(v.rids, ["q", "h", "f"]);
    assert_eq!((v.produce.ssrc, v.produce.mid.as_deref(), v.produce.rid.as_deref()), (None, Some("1"), None));
    assert!(a.sdp.contains("a=rid:q recv\r\na=rid:h recv\r\na=rid:f recv\r\na=simulcast:recv q;h;f\r\n"));
    let rids: Vec<_> = v.produce.layers.iter().map(|l| l.rid.as_deref()).collect();
    assert_eq!(rids, [Some("q"), Some("h"), Some("f")]);
    // In 100ms template order (f first) the layers still come out lowest first.
    let fhq = offer.replace(
        "a=rid:q send\r\na=rid:h send\r\na=rid:f send\r\na=simulcast:send q;h;f",
        "a=rid:f send\r\na=rid:h send\r\na=rid:q send\r\na=simulcast:send f;h;q",
    );
    let a = answer_publish_offer(&fhq, &router(), &PublishPolicy::default()).unwrap();
    let rids: Vec<_> = a.tracks[1].produce.layers.iter().map(|l| l.rid.as_deref()).collect();
    assert_eq!(rids, [Some("q"), Some("h"), Some("f")]);
    // Refused: the client then sends one encoding, and one stream is produced.
    let refuse = PublishPolicy { accept_simulcast: false, ..PublishPolicy::default() };
    let a = answer_publish_offer(&offer, &router(), &refuse).unwrap();
    assert!(!a.sdp.contains("a=simulcast"));
    assert!(a.tracks[1].produce.layers.is_empty());
}

#[test]
fn firefox_style_session_level_attributes_are_found() {
    let text = "v=0\r\no=mozilla...THIS_IS_SDPARTA-99.0 6043427963534553545 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
        a=fingerprint:sha-256 AA:BB:CC\r\na=group:BUNDLE 0\r\na=ice-options:trickle\r\na=msid-semantic:WMS *\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 109 9 0 8 101\r\nc=IN IP4 0.0.0.0\r\na=sendonly\r\n\
        a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
        a=extmap:2/recvonly urn:ietf:params:rtp-hdrext:csrc-audio-level\r\n\
        a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=fmtp:109 maxplaybackrate=48000;stereo=1;useinbandfec=1\r\n\
        a=fmtp:101 0-15\r\na=ice-pwd:2bd6b24bc3f5b9ab8cf9a1c1cc4c0b3e\r\na=ice-ufrag:f1b6ca8a\r\na=mid:0\r\n\
        a=msid:{7a2f} {3c1e}\r\na=rtcp-mux\r\na=rtpmap:109 opus/48000/2\r\na=rtpmap:9 G722/8000/1\r\n\
        a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=setup:actpass\r\n\
        a=ssrc:2655508255 cname:{6f9e}\r\n";
    let a = answer_publish_offer(text, &router(), &PublishPolicy::default()).unwrap();
    assert_eq!(a.connect.fingerprint, "sha-256 AA:BB:CC");
    let t = &a.tracks[0];
    assert_eq!((t.produce.payload_type, t.produce.ssrc), (109, Some(2655508255)));
    assert_eq!(t.produce.extensions.mid, Some(3));
    assert_eq!((t.stream_id.as_deref(), t.track_id.as_deref()), (Some("{7a2f}"), Some("{3c1e}")));
}

#[test]
fn offer_that_wants_to_be_dtls_server_is_refused() {
    let passive = CHROME.replace("a=setup:actpass", "a=setup:passive");
    assert_eq!(
        answer_publish_offer(&passive, &router(), &PublishPolicy::default()).unwrap_err(),
        SdpError::BadSetup(Some(Setup::Passive))
    );
    let no_bundle = CHROME.replace("a=group:BUNDLE 0 1 2\r\n", "");
    assert_eq!(answer_publish_offer(&no_bundle, &router(), &PublishPolicy::default()).unwrap_err(), SdpError::NoBundle);
    let no_mid = CHROME.replace("a=mid:1\r\n", "");
    assert_eq!(
        answer_publish_offer(&no_mid, &router(), &PublishPolicy::default()).unwrap_err(),
        SdpError::MissingMid(1)
    );
}

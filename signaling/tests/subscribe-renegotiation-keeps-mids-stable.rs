//! Subscribe offers across renegotiations: mids and m-line order never change, a removed
//! track's m-line goes inactive, a new track recycles an m-line that was already inactive or is
//! appended, and str0m (as the client) accepts every offer in the sequence.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use schema::api::{ConsumerInfo, MediaKind, TransportInfo};
use schema::codec::Codec;
use schema::ids::{ConsumerId, ProducerId};
use signaling::sdp::parse::Sdp;
use signaling::sdp::{
    Attribute, Direction, SdpError, Setup, SlotState, SubscribeOffer, SubscribeOptions, SubscribeTrack, assign_mids,
    read_subscribe_answer, subscribe_extensions, subscribe_offer,
};
use str0m::Rtc;
use str0m::change::SdpOffer;

fn router() -> TransportInfo {
    common::router_transport(9, "192.0.2.1:40000")
}

fn track(n: u32, kind: MediaKind, mid: &str) -> SubscribeTrack {
    let (codec, clock, pt, rtx) = match kind {
        MediaKind::Audio => (Codec::Opus, 48000, 111, None),
        MediaKind::Video => (Codec::Vp8, 90000, 96, Some(97)),
    };
    SubscribeTrack {
        consumer: ConsumerInfo {
            id: ConsumerId(n),
            producer: ProducerId(100 + n),
            kind,
            codec,
            clock_rate: clock,
            ssrc: 1000 + n,
            payload_type: pt,
            rtx_ssrc: rtx.map(|_| 2000 + n),
            rtx_payload_type: rtx,
        },
        mid: mid.into(),
        stream_id: format!("stream-{n}"),
        track_id: format!("track-{n}"),
        extensions: subscribe_extensions(kind),
        fmtp: None,
    }
}

/// The tracks for a list of (n, kind), with mids from `assign_mids`.
fn tracks(previous: Option<&SubscribeOffer>, list: &[(u32, MediaKind)]) -> Vec<SubscribeTrack> {
    let ids: Vec<String> = list.iter().map(|(n, _)| format!("track-{n}")).collect();
    let keys: Vec<(MediaKind, &str)> = list.iter().zip(&ids).map(|((_, k), id)| (*k, id.as_str())).collect();
    let mids = assign_mids(previous, &keys);
    list.iter().zip(mids).map(|((n, k), mid)| track(*n, *k, &mid)).collect()
}

fn mids(offer: &SubscribeOffer) -> Vec<&str> {
    offer.slots.iter().map(|s| s.mid.as_str()).collect()
}

/// str0m accepts the offer; its answer passes our checks.
fn str0m_accepts(rtc: &mut Rtc, offer: &SubscribeOffer) {
    let answer = rtc.sdp_api().accept_offer(SdpOffer::from_sdp_string(&offer.sdp).unwrap()).unwrap();
    let read = read_subscribe_answer(&answer.to_sdp_string(), offer).unwrap();
    assert!(read.refused.is_empty(), "refused {:?}", read.refused);
}

#[test]
fn mids_stay_put_and_inactive_lines_are_recycled() {
    let r = router();
    let opts = SubscribeOptions { data_channel: true, setup: Setup::Passive };
    let mut rtc = Rtc::new(std::time::Instant::now());

    // 1. Data channel only (the first offer at join).
    let o1 = subscribe_offer(&r, &[], &opts, None).unwrap();
    assert_eq!(mids(&o1), ["0"]);
    str0m_accepts(&mut rtc, &o1);

    // 2. Two tracks arrive: appended after the data channel.
    let t2 = tracks(Some(&o1), &[(1, MediaKind::Audio), (2, MediaKind::Video)]);
    let o2 = subscribe_offer(&r, &t2, &opts, Some(&o1)).unwrap();
    assert_eq!(mids(&o2), ["0", "1", "2"]);
    assert_eq!(o2.version, o1.version + 1);
    assert_eq!(o2.session_id, o1.session_id);
    let sdp = Sdp::parse(&o2.sdp).unwrap();
    assert_eq!(sdp.bundle().unwrap(), ["0", "1", "2"]);
    let video = &sdp.media[2];
    assert_eq!(video.direction(), Direction::SendOnly);
    assert_eq!(video.msid(), Some(("stream-2", Some("track-2"))));
    assert_eq!(video.ssrc_groups().next().unwrap().ssrcs, [1002, 2002]);
    assert!(video.ssrcs().any(|s| s.ssrc == 1002 && s.name == "cname" && s.value.as_deref() == Some("stream-2")));
    assert_eq!(video.fmtp(97).unwrap().get("apt"), Some("96"));
    assert!(video.has(&Attribute::Setup(Setup::Passive)));
    str0m_accepts(&mut rtc, &o2);

    // 3. The audio track goes away: its m-line stays, inactive, without ssrc or msid.
    let t3 = tracks(Some(&o2), &[(2, MediaKind::Video)]);
    assert_eq!(t3[0].mid, "2");
    let o3 = subscribe_offer(&r, &t3, &opts, Some(&o2)).unwrap();
    assert_eq!(mids(&o3), ["0", "1", "2"]);
    assert!(matches!(o3.slots[1].state, SlotState::Inactive(_)));
    let audio = &Sdp::parse(&o3.sdp).unwrap().media[1];
    assert_eq!(audio.direction(), Direction::Inactive);
    assert_ne!(audio.port, 0);
    assert_eq!(audio.ssrcs().count(), 0);
    assert_eq!(audio.msid(), None);
    str0m_accepts(&mut rtc, &o3);

    // 4. A new audio track recycles the inactive audio m-line; a new video one is appended.
    let t4 = tracks(Some(&o3), &[(2, MediaKind::Video), (3, MediaKind::Audio), (4, MediaKind::Video)]);
    let assigned: Vec<&str> = t4.iter().map(|t| t.mid.as_str()).collect();
    assert_eq!(assigned, ["2", "1", "3"]);
    let o4 = subscribe_offer(&r, &t4, &opts, Some(&o3)).unwrap();
    assert_eq!(mids(&o4), ["0", "1", "2", "3"]);
    let sdp = Sdp::parse(&o4.sdp).unwrap();
    assert_eq!(sdp.media[1].msid(), Some(("stream-3", Some("track-3"))));
    str0m_accepts(&mut rtc, &o4);
}

#[test]
fn mid_conflicts_are_errors() {
    let r = router();
    let opts = SubscribeOptions::default();
    let o1 = subscribe_offer(&r, &[track(1, MediaKind::Audio, "1")], &opts, None).unwrap();
    // An active m-line cannot switch tracks in one step (its removal must be negotiated first).
    let err = subscribe_offer(&r, &[track(2, MediaKind::Audio, "1")], &opts, Some(&o1)).unwrap_err();
    assert!(matches!(err, SdpError::MidConflict(m, _) if m == "1"));
    // Nor change kind, nor take the data channel's mid.
    let err = subscribe_offer(&r, &[track(1, MediaKind::Video, "1")], &opts, Some(&o1)).unwrap_err();
    assert!(matches!(err, SdpError::MidConflict(..)));
    let dc = o1.slots.iter().find(|s| s.state == SlotState::DataChannel).unwrap().mid.clone();
    let err =
        subscribe_offer(&r, &[track(1, MediaKind::Audio, "1"), track(2, MediaKind::Audio, &dc)], &opts, Some(&o1))
            .unwrap_err();
    assert!(matches!(err, SdpError::MidConflict(..)));
    let err = subscribe_offer(&r, &[track(1, MediaKind::Audio, "5"), track(2, MediaKind::Audio, "5")], &opts, None)
        .unwrap_err();
    assert_eq!(err, SdpError::DuplicateMid("5".into()));
}

#[test]
fn browser_like_answers_are_checked() {
    let r = router();
    let o = subscribe_offer(&r, &[track(1, MediaKind::Video, "0")], &SubscribeOptions::default(), None).unwrap();
    assert!(o.sdp.contains("a=setup:actpass\r\n") && o.sdp.contains("a=ice-lite\r\n"));
    let answer = |setup: &str, dir: &str, port: u16| {
        format!(
            "v=0\r\no=- 5 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n\
             m=video {port} UDP/TLS/RTP/SAVPF 96 97\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:brow\r\n\
             a=ice-pwd:browserpasswordbrowser\r\na=fingerprint:sha-256 AA:BB\r\na=setup:{setup}\r\na={dir}\r\n\
             a=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\n\
             m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=sctp-port:5000\r\n"
        )
    };
    let ok = read_subscribe_answer(&answer("active", "recvonly", 9), &o).unwrap();
    assert_eq!(ok.connect.fingerprint, "sha-256 AA:BB");
    assert_eq!(ok.connect.ice_ufrag.as_deref(), Some("brow"));
    assert!(ok.refused.is_empty());
    assert_eq!(
        read_subscribe_answer(&answer("passive", "recvonly", 9), &o).unwrap_err(),
        SdpError::BadSetup(Some(Setup::Passive))
    );
    assert_eq!(read_subscribe_answer(&answer("active", "inactive", 9), &o).unwrap().refused, ["0"]);
    assert_eq!(read_subscribe_answer(&answer("active", "recvonly", 0), &o).unwrap().refused, ["0"]);
    assert!(matches!(read_subscribe_answer(&answer("active", "sendonly", 9), &o), Err(SdpError::AnswerMismatch(_))));
    let swapped = answer("active", "recvonly", 9).replace("a=mid:0", "a=mid:7");
    assert!(matches!(read_subscribe_answer(&swapped, &o), Err(SdpError::AnswerMismatch(_))));
}

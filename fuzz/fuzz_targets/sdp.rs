#![no_main]
//! Parses an SDP from a client, writes it back, and answers it as a publish offer and as a
//! WHEP player's offer against a fixed router transport: the paths every client offer takes
//! through signaling.
use libfuzzer_sys::fuzz_target;
use schema::api::{IceCandidate, TransportInfo};
use schema::ids::TransportId;
use schema::api::{ConsumerInfo, MediaKind};
use schema::codec::Codec;
use schema::ids::{ConsumerId, ProducerId};
use signaling::sdp::{PlaybackSource, PublishPolicy, Sdp, SubscribeTrack, answer_publish_offer, plan_playback};

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
    let sources = [
        PlaybackSource { kind: MediaKind::Video, codec: Codec::H264, fmtp: Some("profile-level-id=42e01f".into()) },
        PlaybackSource { kind: MediaKind::Audio, codec: Codec::Opus, fmtp: None },
    ];
    if let Ok(plan) = plan_playback(text, &sources) {
        let tracks: Vec<SubscribeTrack> = plan
            .lines
            .iter()
            .map(|l| SubscribeTrack {
                consumer: ConsumerInfo {
                    id: ConsumerId(1),
                    producer: ProducerId(1),
                    kind: sources[l.source].kind,
                    codec: sources[l.source].codec,
                    clock_rate: 90_000,
                    ssrc: 1,
                    payload_type: l.payload_type,
                    rtx_ssrc: l.rtx_payload_type.map(|_| 2),
                    rtx_payload_type: l.rtx_payload_type,
                },
                mid: l.mid.clone(),
                stream_id: "s".into(),
                track_id: "t".into(),
                extensions: l.extensions,
                fmtp: sources[l.source].fmtp.clone(),
            })
            .collect();
        let answer = plan.answer(&router, &tracks).expect("a plan with lines is answerable");
        assert!(Sdp::parse(&answer).is_ok(), "the WHEP answer does not parse");
    }
});

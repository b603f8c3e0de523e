//! The SDP both ways against an independent WebRTC stack. A str0m publisher offers audio and
//! video (sendonly) through its SDP API; `answer_publish_offer` answers it against a real
//! engine on the simulated network, and the router produces from the returned parameters. A
//! second str0m peer accepts `subscribe_offer` for consumers of those producers, and its answer
//! goes through `read_subscribe_answer` to `connect_transport`. ICE and DTLS complete on both
//! connections with only what the SDP carried, and the subscriber receives every frame.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::time::Duration;

use integration_tests::client::{Client, Publication};
use integration_tests::media::{OpusStream, Vp8Stream, is_vp8_keyframe_start, tag};
use integration_tests::sim::{Link, Sim, SimClient};
use schema::api::{ConsumeParams, Event, MediaKind};
use schema::ids::TransportId;
use signaling::sdp::{
    PublishPolicy, SdpError, Setup, SubscribeOptions, SubscribeTrack, answer_publish_offer, assign_mids,
    read_subscribe_answer, subscribe_extensions, subscribe_offer,
};
use str0m::Candidate;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind as StrKind};

fn connected(sim: &Sim, transport: TransportId) -> bool {
    sim.events.iter().any(|(_, e)| matches!(e, Event::TransportConnected { transport: t, .. } if *t == transport))
}

/// Runs the simulation until client `i` and the router both report the transport connected.
fn wait_connected(sim: &mut Sim, i: usize, transport: TransportId) {
    let deadline = sim.now + Duration::from_secs(10);
    while sim.now < deadline {
        sim.step();
        if connected(sim, transport) && sim.clients[i].client.connected {
            return;
        }
    }
    panic!("client {i} did not connect through SDP-negotiated parameters");
}

fn new_client(sim: &Sim, n: u8) -> Client {
    let addr: SocketAddr = format!("10.0.1.{n}:5000").parse().unwrap();
    let mut c = Client::new(addr, sim.now);
    c.rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
    c
}

#[test]
fn str0m_publishes_and_subscribes_through_our_sdp() {
    let mut sim = Sim::new(7);

    // --- Publish connection: str0m offers, we answer. ---
    let mut publisher = new_client(&sim, 1);
    let mut api = publisher.rtc.sdp_api();
    let audio_mid =
        api.add_media(StrKind::Audio, Direction::SendOnly, Some("stream-1".into()), Some("track-audio".into()), None);
    let video_mid =
        api.add_media(StrKind::Video, Direction::SendOnly, Some("stream-1".into()), Some("track-video".into()), None);
    let (offer, pending) = api.apply().unwrap();
    let offer_text = offer.to_sdp_string();

    let pub_transport = sim.engine.create_transport(sim.now).unwrap();
    let answer = answer_publish_offer(&offer_text, &pub_transport, &PublishPolicy::default()).unwrap();
    assert!(answer.rejected.is_empty(), "{:?}", answer.rejected);
    assert_eq!(answer.tracks.len(), 2, "one track per sendonly m-line");
    let audio = answer.tracks.iter().find(|t| t.mid == audio_mid.to_string()).unwrap();
    let video = answer.tracks.iter().find(|t| t.mid == video_mid.to_string()).unwrap();
    assert_eq!(audio.produce.codec, schema::codec::Codec::Opus);
    assert_eq!(video.produce.codec, schema::codec::Codec::Vp8);
    assert_eq!((audio.stream_id.as_deref(), audio.track_id.as_deref()), (Some("stream-1"), Some("track-audio")));
    assert_eq!((video.stream_id.as_deref(), video.track_id.as_deref()), (Some("stream-1"), Some("track-video")));
    assert!(video.produce.rtx_payload_type.is_some(), "str0m offers RTX for VP8");
    assert!(video.produce.extensions.mid.is_some() && video.produce.extensions.transport_cc.is_some());

    sim.engine.connect_transport(pub_transport.id, &answer.connect).unwrap();
    let audio_producer = sim.engine.produce(pub_transport.id, audio.produce.clone()).unwrap();
    let video_producer = sim.engine.produce(pub_transport.id, video.produce.clone()).unwrap();
    publisher.rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer.sdp).unwrap()).unwrap();
    sim.clients.push(SimClient::new(publisher, Link::default(), Link::default()));
    wait_connected(&mut sim, 0, pub_transport.id);

    // What the publisher sends on: the SSRCs and payload types we read from its offer.
    let publication = |t: &signaling::sdp::PublishedTrack| Publication {
        mid: t.mid.as_str().into(),
        ssrc: t.produce.ssrc.expect("str0m signals its SSRCs"),
        rtx_ssrc: t.produce.rtx_ssrc,
        pt: t.produce.payload_type,
        rtx_pt: t.produce.rtx_payload_type,
    };
    let audio_pub = publication(audio);
    let video_pub = publication(video);

    // --- Subscribe connection: we offer, str0m answers. ---
    let sub_transport = sim.engine.create_transport(sim.now).unwrap();
    let mids = assign_mids(None, &[(MediaKind::Audio, "track-audio"), (MediaKind::Video, "track-video")]);
    let mut tracks = Vec::new();
    for ((producer, published), mid) in [(audio_producer, audio), (video_producer, video)].into_iter().zip(&mids) {
        let consumer = sim
            .engine
            .consume(
                sub_transport.id,
                ConsumeParams {
                    producer,
                    payload_type: None,
                    rtx_payload_type: published.produce.rtx_payload_type,
                    mid: Some(mid.clone()),
                    extensions: subscribe_extensions(published.produce.kind),
                    paused: false,
                    preferred_layer: None,
                },
            )
            .unwrap();
        tracks.push(SubscribeTrack {
            consumer,
            mid: mid.clone(),
            stream_id: published.stream_id.clone().unwrap(),
            track_id: published.track_id.clone().unwrap(),
            extensions: subscribe_extensions(published.produce.kind),
            fmtp: published.fmtp.clone(),
        });
    }
    // str0m answers `actpass` with `passive` (browsers say `active`): the check catches that,
    // since the router can only be the DTLS server...
    let actpass = subscribe_offer(&sub_transport, &tracks, &SubscribeOptions::default(), None).unwrap();
    let mut probe = new_client(&sim, 3);
    let probe_answer = probe.rtc.sdp_api().accept_offer(SdpOffer::from_sdp_string(&actpass.sdp).unwrap()).unwrap();
    assert_eq!(
        read_subscribe_answer(&probe_answer.to_sdp_string(), &actpass).unwrap_err(),
        SdpError::BadSetup(Some(Setup::Passive))
    );
    // ...so for str0m we offer `passive`, which leaves it only `active`. No data channel: the
    // router has no SCTP yet.
    let options = SubscribeOptions { data_channel: false, setup: Setup::Passive };
    let sub_offer = subscribe_offer(&sub_transport, &tracks, &options, None).unwrap();
    let mut subscriber = new_client(&sim, 2);
    let sub_answer = subscriber.rtc.sdp_api().accept_offer(SdpOffer::from_sdp_string(&sub_offer.sdp).unwrap()).unwrap();
    let read = read_subscribe_answer(&sub_answer.to_sdp_string(), &sub_offer).unwrap();
    assert!(read.refused.is_empty(), "str0m accepted every m-line: {:?}", read.refused);
    sim.engine.connect_transport(sub_transport.id, &read.connect).unwrap();
    sim.clients.push(SimClient::new(subscriber, Link::default(), Link::default()));
    wait_connected(&mut sim, 1, sub_transport.id);

    // --- Media: 3 s of Opus and VP8 through the router. ---
    let mut opus = OpusStream::new(1, 1000);
    let mut vp8 = Vp8Stream::new(1, 5000);
    for tick in 0..150u32 {
        let now = sim.now;
        let p = opus.next_packet();
        sim.client(0).send(&audio_pub, now, p.seq, p.ts, p.marker, &p.payload);
        if tick % 3 == 0 {
            for p in vp8.next_frame() {
                sim.client(0).send(&video_pub, now, p.seq, p.ts, p.marker, &p.payload);
            }
        }
        sim.run_for(Duration::from_millis(20));
    }
    sim.run_for(Duration::from_millis(500));

    let sub = &sim.clients[1].client;
    let audio_in = sub.received_on(tracks[0].consumer.ssrc);
    let video_in = sub.received_on(tracks[1].consumer.ssrc);
    assert!(audio_in.len() >= 140, "audio packets received: {}", audio_in.len());
    assert!(video_in.len() >= 140, "video packets received: {}", video_in.len());
    assert_eq!(audio_in[0].pt, tracks[0].consumer.payload_type);
    assert!(is_vp8_keyframe_start(&video_in[0].payload), "video starts on a keyframe");
    // Frames arrive in order, every packet of each.
    let frames: Vec<u32> = video_in.iter().filter_map(|r| tag(&r.payload)).map(|(f, _)| f).collect();
    assert!(frames.windows(2).all(|w| w[0] <= w[1]), "video frames in order");
    assert_eq!(frames.len(), video_in.len());
}

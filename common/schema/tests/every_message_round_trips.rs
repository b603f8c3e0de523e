//! Every variant of every message survives both framings unchanged: the JSON envelope and the
//! binary frame. The sample lists below are exhaustive on purpose; the `match` in
//! `covers_every_variant` fails to compile when a variant is added without a sample.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::net::SocketAddr;

use schema::api::{
    ApiError, AudioLevel, CloseReason, ConnectParams, ConsumeParams, ConsumerInfo, ConsumerLayers, Event, IceCandidate,
    LayerParams, LinkStats, MediaKind, ProduceParams, StreamStats, TransportInfo,
};
use schema::codec::Codec;
use schema::extensions::ExtensionIds;
use schema::frame;
use schema::ids::{ConsumerId, ProducerId, TransportId};
use schema::{
    Message, MessageKind, RouterCommand, RouterEvent, RouterReply, RouterRequest, RouterResponse, SCHEMA_VERSION,
};

const T: TransportId = TransportId(0x0100_0001);
const P: ProducerId = ProducerId(0x0100_0002);
const C: ConsumerId = ConsumerId(0x0100_0003);

fn extensions() -> ExtensionIds {
    ExtensionIds {
        mid: Some(1),
        rid: Some(2),
        repaired_rid: Some(3),
        abs_send_time: Some(4),
        transport_cc: Some(5),
        audio_level: None,
        video_orientation: Some(13),
    }
}

fn commands() -> Vec<RouterCommand> {
    vec![
        RouterCommand::CreateTransport { shard: None },
        RouterCommand::CreateTransport { shard: Some(3) },
        RouterCommand::ConnectTransport {
            transport: T,
            params: ConnectParams { fingerprint: "sha-256 AB:CD".into(), ice_ufrag: Some("uf".into()) },
        },
        RouterCommand::ConnectTransport {
            transport: T,
            params: ConnectParams { fingerprint: "sha-256 AB:CD".into(), ice_ufrag: None },
        },
        RouterCommand::Produce {
            transport: T,
            params: ProduceParams {
                kind: MediaKind::Video,
                codec: Codec::Vp8,
                payload_type: 96,
                clock_rate: 90_000,
                rtx_payload_type: Some(97),
                ssrc: Some(u32::MAX),
                rtx_ssrc: Some(2),
                mid: Some("0".into()),
                rid: Some("h".into()),
                extensions: extensions(),
                paused: true,
                layers: vec![
                    LayerParams { rid: Some("q".into()), ssrc: Some(5), rtx_ssrc: Some(6) },
                    LayerParams { rid: Some("f".into()), ssrc: None, rtx_ssrc: None },
                ],
                priority: 2,
            },
        },
        RouterCommand::Produce {
            transport: T,
            params: ProduceParams {
                kind: MediaKind::Audio,
                codec: Codec::Opus,
                payload_type: 111,
                clock_rate: 48_000,
                rtx_payload_type: None,
                ssrc: None,
                rtx_ssrc: None,
                mid: None,
                rid: None,
                extensions: ExtensionIds::default(),
                paused: false,
                layers: vec![],
                priority: 0,
            },
        },
        RouterCommand::Consume {
            transport: T,
            params: ConsumeParams {
                producer: P,
                payload_type: Some(100),
                rtx_payload_type: Some(101),
                mid: Some("1".into()),
                extensions: extensions(),
                paused: false,
                preferred_layer: Some(1),
            },
        },
        RouterCommand::PauseProducer { producer: P, paused: true },
        RouterCommand::PauseConsumer { consumer: C, paused: false },
        RouterCommand::CloseTransport { transport: T },
        RouterCommand::CloseProducer { producer: P },
        RouterCommand::CloseConsumer { consumer: C },
        RouterCommand::ProducerStats { producer: P },
        RouterCommand::ConsumerStats { consumer: C },
        RouterCommand::OpenDataChannel { transport: T, label: "ion-sfu".into() },
        RouterCommand::SendData { transport: T, label: "ion-sfu".into(), text: "{\"id\":\"é\"}\n".into() },
        RouterCommand::SendData { transport: T, label: String::new(), text: String::new() },
        RouterCommand::SetPreferredLayer { consumer: C, layer: 2 },
        RouterCommand::SetProducerPriority { producer: P, priority: 3 },
        RouterCommand::SetTransportMaxBitrate { transport: T, max_bitrate_bps: Some(3_200_000) },
        RouterCommand::SetTransportMaxBitrate { transport: T, max_bitrate_bps: None },
        RouterCommand::ConsumerLayers { consumer: C },
        RouterCommand::TransportLinkStats { transport: T },
        RouterCommand::Counters { shard: Some(0) },
        RouterCommand::Counters { shard: None },
        RouterCommand::StartTap {
            producer: P,
            tap: 7,
            meta: r#"{"track_id":"t"}"#.into(),
            reader: schema::tap::TapReader::Compositor,
        },
        RouterCommand::StopTap { producer: P, tap: Some(7) },
    ]
}

fn close_reasons() -> Vec<CloseReason> {
    vec![
        CloseReason::Requested,
        CloseReason::ConsentExpired,
        CloseReason::FingerprintMismatch,
        CloseReason::Dtls("alert: \"bad certificate\"\n".into()),
        CloseReason::ProducerClosed,
        CloseReason::TransportClosed,
    ]
}

fn events() -> Vec<Event> {
    let stats = StreamStats {
        packets: u64::MAX,
        bytes: 1,
        packets_lost: -3,
        nacks: 4,
        retransmitted: 5,
        plis: 6,
        keyframes: 7,
    };
    let remote: SocketAddr = "[2001:db8::1]:50000".parse().unwrap();
    let mut v = vec![
        Event::TransportConnected { transport: T, remote },
        Event::TransportConnected { transport: T, remote: "192.0.2.1:1".parse().unwrap() },
        Event::ProducerFirstPacket { producer: P, ssrc: 42 },
        Event::KeyframeSeen { producer: P },
        Event::Stats { producer: Some(P), consumer: None, stats: stats.clone() },
        Event::Stats { producer: None, consumer: Some(C), stats: StreamStats::default() },
        Event::DataChannelOpened { transport: T, label: "ion-sfu".into() },
        Event::DataChannelMessage { transport: T, label: "ion-sfu".into(), text: "{\"id\":\"x\"} ✓".into() },
        Event::ConsumerLayersChanged {
            consumer: C,
            preferred: Some(2),
            target: Some(0),
            current: None,
            degraded: true,
        },
        Event::LayersNeeded { producer: P, needed: vec![true, true, false] },
        Event::AudioLevels { levels: vec![AudioLevel { producer: P, level: 80 }] },
        Event::AudioLevels { levels: vec![] },
    ];
    for reason in close_reasons() {
        v.push(Event::TransportClosed { transport: T, reason: reason.clone() });
        v.push(Event::ProducerClosed { producer: P, reason: reason.clone() });
        v.push(Event::ConsumerClosed { consumer: C, reason });
    }
    v
}

fn api_errors() -> Vec<ApiError> {
    vec![
        ApiError::UnknownTransport(T),
        ApiError::UnknownProducer(P),
        ApiError::UnknownConsumer(C),
        ApiError::BadFingerprint("sha-1 is not supported".into()),
        ApiError::InvalidParams("ssrc 1 is taken".into()),
        ApiError::Crypto("unicode: é ✓".into()),
        ApiError::DataChannelNotOpen("ion-sfu".into()),
        ApiError::MessageTooLarge { len: 300_000, max: 262_144 },
    ]
}

fn results() -> Vec<schema::RouterResult> {
    let info = TransportInfo {
        id: T,
        ice_ufrag: "ufrag".into(),
        ice_pwd: "pwd".into(),
        ice_lite: true,
        fingerprint: "sha-256 00:11".into(),
        dtls_role: "server".into(),
        candidates: vec![
            IceCandidate::udp("127.0.0.1:40000".parse().unwrap()),
            IceCandidate::tcp("[::1]:40000".parse().unwrap()),
        ],
    };
    let consumer = ConsumerInfo {
        id: C,
        producer: P,
        kind: MediaKind::Video,
        codec: Codec::H264,
        clock_rate: 90_000,
        ssrc: 9,
        payload_type: 102,
        rtx_ssrc: None,
        rtx_payload_type: Some(103),
    };
    let mut v: Vec<schema::RouterResult> = vec![
        Ok(RouterResponse::Done),
        Ok(info.into()),
        Ok(consumer.into()),
        Ok(P.into()),
        Ok(StreamStats::default().into()),
        Ok(ConsumerLayers { preferred: Some(2), estimate_bps: Some(1_500_000), ..ConsumerLayers::default() }.into()),
        Ok(LinkStats { estimate_bps: Some(900_000), loss_fraction: 0.25, rtt_ms: Some(40), feedbacks: 3 }.into()),
        Ok(RouterResponse::Counters(
            serde_json::json!({ "datagrams_in": 5, "nested": { "f": 1.5, "list": [1, "two", null] } })
                .as_object()
                .cloned()
                .unwrap(),
        )),
    ];
    v.extend(api_errors().into_iter().map(Err));
    v
}

fn all_messages() -> Vec<Message> {
    let mut msgs = Vec::new();
    for (i, command) in commands().into_iter().enumerate() {
        msgs.push(Message::RouterCommand(RouterRequest { id: i as u64 * 1_000_003, command }));
    }
    msgs.push(Message::RouterCommand(RouterRequest { id: u64::MAX, command: RouterCommand::Counters { shard: None } }));
    for (i, result) in results().into_iter().enumerate() {
        msgs.push(Message::RouterReply(RouterReply { id: i as u64, result }));
    }
    for (i, event) in events().into_iter().enumerate() {
        msgs.push(Message::RouterEvent(RouterEvent { shard: i as u8, event }));
    }
    msgs
}

/// Fails to compile when a variant is added to one of these enums without a sample above.
#[test]
fn covers_every_variant() {
    let mut seen = std::collections::BTreeSet::new();
    for m in all_messages() {
        let name = match &m {
            Message::RouterCommand(r) => match r.command {
                RouterCommand::CreateTransport { .. }
                | RouterCommand::ConnectTransport { .. }
                | RouterCommand::Produce { .. }
                | RouterCommand::Consume { .. }
                | RouterCommand::PauseProducer { .. }
                | RouterCommand::PauseConsumer { .. }
                | RouterCommand::CloseTransport { .. }
                | RouterCommand::CloseProducer { .. }
                | RouterCommand::CloseConsumer { .. }
                | RouterCommand::ProducerStats { .. }
                | RouterCommand::ConsumerStats { .. }
                | RouterCommand::OpenDataChannel { .. }
                | RouterCommand::SendData { .. }
                | RouterCommand::SetPreferredLayer { .. }
                | RouterCommand::SetProducerPriority { .. }
                | RouterCommand::SetTransportMaxBitrate { .. }
                | RouterCommand::ConsumerLayers { .. }
                | RouterCommand::TransportLinkStats { .. }
                | RouterCommand::StartTap { .. }
                | RouterCommand::StopTap { .. }
                | RouterCommand::Counters { .. } => r.command.method().to_string(),
            },
            Message::RouterReply(r) => match &r.result {
                Ok(_) => "ok".to_string(),
                Err(e) => match e {
                    ApiError::UnknownTransport(_)
                    | ApiError::UnknownProducer(_)
                    | ApiError::UnknownConsumer(_)
                    | ApiError::BadFingerprint(_)
                    | ApiError::InvalidParams(_)
                    | ApiError::Crypto(_)
                    | ApiError::DataChannelNotOpen(_)
                    | ApiError::MessageTooLarge { .. } => e.code().to_string(),
                },
            },
            Message::RouterEvent(e) => match &e.event {
                Event::TransportConnected { .. } => "transport_connected".into(),
                Event::TransportClosed { .. } => "transport_closed".into(),
                Event::ProducerFirstPacket { .. } => "producer_first_packet".into(),
                Event::KeyframeSeen { .. } => "keyframe_seen".into(),
                Event::ProducerClosed { .. } => "producer_closed".into(),
                Event::ConsumerClosed { .. } => "consumer_closed".into(),
                Event::Stats { .. } => "stats".into(),
                Event::DataChannelOpened { .. } => "data_channel_opened".into(),
                Event::DataChannelMessage { .. } => "data_channel_message".into(),
                Event::ConsumerLayersChanged { .. } => "consumer_layers_changed".into(),
                Event::LayersNeeded { .. } => "layers_needed".into(),
                Event::AudioLevels { .. } => "audio_levels".into(),
            },
        };
        seen.insert(name);
    }
    // 21 commands, "ok" and 8 error codes, 12 events.
    assert_eq!(seen.len(), 21 + 1 + 8 + 12, "{seen:?}");
    for c in Codec::ALL {
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Codec>(&json).unwrap(), c);
    }
    for k in [MediaKind::Audio, MediaKind::Video] {
        assert_eq!(serde_json::from_str::<MediaKind>(&serde_json::to_string(&k).unwrap()).unwrap(), k);
    }
}

#[test]
fn every_message_round_trips_through_the_json_envelope() {
    for msg in all_messages() {
        let line = frame::encode_json(&msg).unwrap();
        assert!(line.starts_with(&format!("{{\"v\":{SCHEMA_VERSION},\"type\":\"")), "{line}");
        assert!(!line.contains('\n'), "one message, one line: {line}");
        assert_eq!(frame::decode_json(&line).unwrap(), msg, "{line}");
    }
}

#[test]
fn every_message_round_trips_through_the_binary_frame() {
    for msg in all_messages() {
        let mut buf = vec![0xaa]; // encode appends: what was there stays
        frame::encode(&msg, &mut buf).unwrap();
        assert_eq!(buf[0], 0xaa);
        let frame_bytes = &buf[1..];
        let header = frame::Header::parse(frame_bytes).unwrap();
        assert_eq!(header.version, SCHEMA_VERSION);
        assert_eq!(header.kind, msg.kind().as_u16());
        assert_eq!(header.frame_len(), frame_bytes.len());
        assert_eq!(frame::decode(frame_bytes).unwrap(), msg);
    }
}

#[test]
fn frames_back_to_back_decode_one_by_one() {
    let msgs = all_messages();
    let mut buf = Vec::new();
    for m in &msgs {
        frame::encode(m, &mut buf).unwrap();
    }
    let mut rest = &buf[..];
    for m in &msgs {
        let (got, used) = frame::decode_prefix(rest).unwrap();
        assert_eq!(&got, m);
        rest = &rest[used..];
    }
    assert!(rest.is_empty());
}

#[test]
fn kinds_are_the_documented_numbers() {
    assert_eq!(MessageKind::RouterCommand.as_u16(), 1);
    assert_eq!(MessageKind::RouterReply.as_u16(), 2);
    assert_eq!(MessageKind::RouterEvent.as_u16(), 3);
    for k in MessageKind::ALL {
        assert_eq!(MessageKind::from_u16(k.as_u16()), Some(k));
    }
    assert_eq!(MessageKind::from_u16(0), None);
    assert_eq!(MessageKind::from_u16(4), None);
}

/// The router's control socket speaks the command's own JSON form: keep it stable.
#[test]
fn command_json_matches_the_control_socket_protocol() {
    let cmd: RouterCommand = serde_json::from_value(serde_json::json!({
        "method": "produce",
        "params": { "transport": 1, "kind": "video", "codec": "vp8", "payload_type": 96, "clock_rate": 90000, "ssrc": 1234 }
    }))
    .unwrap();
    let RouterCommand::Produce { transport, params } = &cmd else { panic!("{cmd:?}") };
    assert_eq!((*transport, params.ssrc, params.extensions), (TransportId(1), Some(1234), ExtensionIds::default()));
    let v = serde_json::to_value(&RouterCommand::CloseTransport { transport: T }).unwrap();
    assert_eq!(v, serde_json::json!({ "method": "close_transport", "params": { "transport": 0x0100_0001 } }));
    let ev = serde_json::to_value(RouterEvent { shard: 1, event: Event::KeyframeSeen { producer: P } }).unwrap();
    assert_eq!(ev, serde_json::json!({ "shard": 1, "event": { "event": "keyframe_seen", "producer": 0x0100_0002 } }));
}

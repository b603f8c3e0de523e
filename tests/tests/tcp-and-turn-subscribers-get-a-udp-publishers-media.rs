//! ICE over TCP and TURN over TCP and TLS end to end on 127.0.0.1: a str0m publisher over UDP
//! and a str0m subscriber whose only path is a TCP connection: to the shard's passive ICE-TCP
//! candidate (RFC 6544; the test frames each datagram as RFC 4571 says), or to the router's
//! TURN listener, plain or TLS, its channel bound to the shard. The subscriber completes ICE
//! and DTLS over it and receives every audio and video frame in order; the router counts the
//! connection. A connection that does not open with STUN is closed.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use integration_tests::client::str0m_extensions;
use integration_tests::media::{OpusStream, Vp8Stream, tag};
use integration_tests::room::produce_params;
use integration_tests::wire::{LiveMedia, Peer, pump_all};
use router::Router;
use router::config::Config;
use schema::RouterCommand;
use schema::api::{ConnectParams, ConsumeParams, ConsumerInfo, IceProtocol, MediaKind, TransportInfo};
use schema::ids::{ProducerId, TransportId};

fn call<T: serde::de::DeserializeOwned>(router: &Router, cmd: RouterCommand) -> T {
    let v = router.call(cmd).expect("command succeeds");
    serde_json::from_value(v).expect("reply parses")
}

fn tcp_candidate(info: &TransportInfo) -> SocketAddr {
    info.candidates.iter().find(|c| c.protocol == IceProtocol::Tcp).expect("an ICE-TCP candidate").addr
}

fn udp_candidate(info: &TransportInfo) -> SocketAddr {
    info.candidates.iter().find(|c| c.protocol == IceProtocol::Udp).expect("a UDP candidate").addr
}

#[test]
fn a_subscriber_over_ice_tcp_receives_every_frame_in_order() {
    let cfg = Config { shards: 1, base_port: 0, pin: false, ..Config::default() };
    let mut router = Router::start(&cfg).expect("router starts");
    let counters = subscriber_receives_every_frame(&router, |info| {
        // UDP first, then the passive TCP candidate at the same IP.
        let protocols: Vec<IceProtocol> = info.candidates.iter().map(|c| c.protocol).collect();
        assert_eq!(protocols, [IceProtocol::Udp, IceProtocol::Tcp], "{:?}", info.candidates);
        Peer::tcp(tcp_candidate(info))
    });
    let tcp = &counters["ice_tcp"];
    assert_eq!(tcp["open"], 1, "{tcp}");
    assert!(tcp["tx_datagrams"].as_u64().unwrap() > 300, "{tcp}");
    assert_eq!(tcp["tx_dropped"], 0, "{tcp}");
    assert_eq!(tcp["rx_dropped"], 0, "{tcp}");
    router.shutdown();
}

/// A router with TURN over TCP and TLS (a self-signed certificate) and ICE-TCP off.
fn router_with_turn(dir: &std::path::Path) -> (Router, String) {
    let secret = "turn-test-secret";
    let files = integration_tests::turn::TurnFiles::write(dir, secret).unwrap();
    let cfg = Config {
        shards: 1,
        base_port: 0,
        pin: false,
        ice_tcp: false,
        turn_udp_listen: Some("127.0.0.1:0".parse().unwrap()),
        turn_listen: Some("127.0.0.1:0".parse().unwrap()),
        turn_tls_listen: Some("127.0.0.1:0".parse().unwrap()),
        turn_cert: Some(files.cert),
        turn_key: Some(files.key),
        turn_secret_file: Some(files.secret),
        ..Config::default()
    };
    (Router::start(&cfg).expect("router starts"), secret.into())
}

#[test]
fn subscribers_relayed_by_the_routers_turn_over_udp_tcp_and_tls_receive_every_frame_in_order() {
    let dir = std::env::temp_dir().join(format!("turn-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (mut router, secret) = router_with_turn(&dir);
    let turn = router.turn().expect("TURN runs");
    let (udp, tcp, tls) = (turn.udp.unwrap(), turn.tcp.unwrap(), turn.tls.unwrap());
    let mut before = 0;
    for (server, over) in [(udp, "UDP"), (tcp, "TCP"), (tls, "TLS")] {
        let (user, password) =
            integration_tests::turn::rest_credential(&secret, "subscriber", Duration::from_secs(600));
        let counters = subscriber_receives_every_frame(&router, |info| {
            assert!(info.candidates.iter().all(|c| c.protocol == IceProtocol::Udp), "ICE-TCP is off");
            match over {
                "UDP" => Peer::relayed(server, &user, &password, udp_candidate(info)),
                _ => Peer::relayed_over_stream(server, over == "TLS", &user, &password, udp_candidate(info)),
            }
        });
        let relayed = router.turn().unwrap().stats();
        assert!(relayed.tx_datagrams > before + 300, "over {over}: {relayed:?}");
        before = relayed.tx_datagrams;
        assert_eq!(relayed.tx_dropped, 0, "{relayed:?}");
        assert_eq!(relayed.rx_dropped, 0, "{relayed:?}");
        assert_eq!(counters["transports"], 2, "{counters}");
    }
    router.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A UDP publisher sends four seconds of audio and video; the subscriber `make` gives (for
/// its transport's info) receives every frame in order. Returns shard 0's counters.
fn subscriber_receives_every_frame(router: &Router, make: impl FnOnce(&TransportInfo) -> Peer) -> serde_json::Value {
    let publisher: TransportInfo = call(router, RouterCommand::CreateTransport { shard: None });
    let subscriber: TransportInfo = call(router, RouterCommand::CreateTransport { shard: None });
    let mut peers = vec![Peer::udp(), make(&subscriber)];
    for (p, info) in peers.iter_mut().zip([&publisher, &subscriber]) {
        let params: ConnectParams = p.client.connect_to(info);
        let _: serde_json::Value = call(router, RouterCommand::ConnectTransport { transport: info.id, params });
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !peers.iter().all(|p| p.client.connected) {
        assert!(Instant::now() < deadline, "ICE/DTLS did not complete (TCP connected: {})", peers[1].client.connected);
        pump_all(&mut peers, Duration::from_millis(10));
    }

    let audio_pub = peers[0].client.publish("a0", MediaKind::Audio);
    let video_pub = peers[0].client.publish("v0", MediaKind::Video);
    let produce = |kind, p| RouterCommand::Produce { transport: publisher.id, params: produce_params(kind, p) };
    let audio: ProducerId = call(router, produce(MediaKind::Audio, &audio_pub));
    let video: ProducerId = call(router, produce(MediaKind::Video, &video_pub));
    let consume = |producer, rtx| RouterCommand::Consume {
        transport: TransportId(subscriber.id.0),
        params: ConsumeParams {
            producer,
            payload_type: None,
            rtx_payload_type: rtx,
            mid: None,
            extensions: str0m_extensions(),
            paused: false,
            preferred_layer: None,
        },
    };
    let (_, vrtx) = peers[1].client.payload_types(MediaKind::Video);
    let a: ConsumerInfo = call(router, consume(audio, None));
    let v: ConsumerInfo = call(router, consume(video, vrtx));
    peers[1].client.subscribe("a0", &a);
    peers[1].client.subscribe("v0", &v);

    // Four seconds of media: Opus every 20 ms, VP8 at 30 fps (a keyframe first, then on request).
    let start = Instant::now();
    let mut media = LiveMedia::new(OpusStream::new(100, 4800), Vp8Stream::new(200, 9000), start);
    while Instant::now() < start + Duration::from_secs(4) {
        media.send_due(&mut peers[0].client, &audio_pub, &video_pub, Instant::now());
        pump_all(&mut peers, Duration::from_millis(2));
    }
    pump_all(&mut peers, Duration::from_millis(500));

    let client = &peers[1].client;
    for (info, what, sent) in [(&a, "audio", media.opus.frame), (&v, "video", media.vp8.frame)] {
        let got = client.received_on(info.ssrc);
        assert!(!got.is_empty(), "the TCP subscriber got no {what}");
        for w in got.windows(2) {
            assert_eq!(w[1].seq, w[0].seq.wrapping_add(1), "{what} sequence numbers not continuous over TCP");
            assert!(tag(&w[1].payload).unwrap() > tag(&w[0].payload).unwrap(), "{what} out of order over TCP");
        }
        let last = tag(&got[got.len() - 1].payload).unwrap().0;
        assert!(last + 3 >= sent, "{what} stopped at frame {last} of {sent}");
    }

    let counters: serde_json::Value = call(router, RouterCommand::Counters { shard: Some(0) });
    for info in [&publisher, &subscriber] {
        let _: serde_json::Value = call(router, RouterCommand::CloseTransport { transport: info.id });
    }
    counters
}

#[test]
fn a_connection_that_does_not_open_with_stun_is_closed() {
    let cfg = Config { shards: 1, base_port: 0, pin: false, ..Config::default() };
    let mut router = Router::start(&cfg).expect("router starts");
    let info: TransportInfo = call(&router, RouterCommand::CreateTransport { shard: None });
    let mut stream = TcpStream::connect(tcp_candidate(&info)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // A DTLS-looking record (first byte 22) where a connectivity check belongs.
    stream.write_all(&[0, 3, 22, 254, 253]).unwrap();
    let mut buf = [0u8; 16];
    let n = stream.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the router answered a connection that never sent STUN");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let counters: serde_json::Value = call(&router, RouterCommand::Counters { shard: Some(0) });
        if counters["ice_tcp"]["closed_not_stun"] == 1 && counters["ice_tcp"]["open"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "not counted as closed: {}", counters["ice_tcp"]);
        std::thread::sleep(Duration::from_millis(20));
    }
    router.shutdown();
}

#[test]
fn turn_refuses_what_is_not_turn_and_relays_only_to_the_router() {
    let dir = std::env::temp_dir().join(format!("turn-misuse-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (mut router, secret) = router_with_turn(&dir);
    let turn = router.turn().unwrap();
    let (tcp, tls) = (turn.tcp.unwrap(), turn.tls.unwrap());
    // HTTP on the TCP port, and plain STUN-less bytes on the TLS port: closed unanswered.
    for (server, bytes) in
        [(tcp, &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..]), (tls, &b"\x00\x01\x00\x00hello world"[..])]
    {
        let mut stream = TcpStream::connect(server).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        stream.write_all(bytes).unwrap();
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).unwrap_or(0);
        assert!(n == 0 || buf[0] == 0x15, "{server} answered {:?} to bytes that are not TURN", &buf[..n]);
    }
    let stats = router.turn().unwrap().stats();
    assert!(stats.closed_not_stun >= 1, "{stats:?}");
    // A good credential, but a peer that is not the router: refused.
    let (user, password) = integration_tests::turn::rest_credential(&secret, "x", Duration::from_secs(60));
    let mut stream = integration_tests::turn::TurnStream::connect(tls, true).unwrap();
    let err =
        integration_tests::turn::allocate_on_stream(&mut stream, &user, &password, "127.0.0.1:22".parse().unwrap())
            .unwrap_err();
    assert!(err.contains("ChannelBind refused: 403"), "{err}");
    // A wrong password: refused at Allocate.
    let mut stream = integration_tests::turn::TurnStream::connect(tcp, false).unwrap();
    let err = integration_tests::turn::allocate_on_stream(&mut stream, &user, "wrong", "127.0.0.1:22".parse().unwrap())
        .unwrap_err();
    assert!(err.contains("Allocate refused: 401"), "{err}");
    router.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

//! SCTP and DCEP garbage inside a verified DTLS session is dropped and counted, never fatal,
//! and the channels that are well formed keep working.
//!
//! str0m never sends bad SCTP, so the peer here is built from parts: dimpl as the DTLS client
//! (real handshake, real crypto) and a bare sctp-proto association on top of it, which lets the
//! test write any payload with any PPID on any stream.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::sync::Arc;

use integration_tests::sim::Sim;
use router_engine::dtls::Fingerprint;
use router_engine::sctp::{DcepOpen, SCTP_PORT};
use router_engine::stun;
use schema::api::{ConnectParams, Event};
use schema::ids::TransportId;
use sctp_proto::{
    Association, AssociationHandle, ClientConfig, DatagramEvent, Endpoint, EndpointConfig, Event as SctpEvent, Payload,
    PayloadProtocolIdentifier as Ppi,
};

/// A DTLS client with an SCTP association, talking to the router by `Sim::inject`.
struct RawPeer {
    addr: SocketAddr,
    dtls: dimpl::Dtls,
    dtls_connected: bool,
    endpoint: Endpoint,
    assoc: (AssociationHandle, Association),
    sctp_connected: bool,
    buf: Vec<u8>,
}

const SCTP_ADDR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), SCTP_PORT);

impl RawPeer {
    /// Creates a transport, passes ICE with one binding request, and completes DTLS.
    fn connect(sim: &mut Sim) -> (RawPeer, TransportId) {
        let addr: SocketAddr = "10.0.9.1:5000".parse().unwrap();
        let info = sim.engine.create_transport(sim.now).unwrap();
        let cert = dimpl::certificate::generate_self_signed_certificate().unwrap();
        let fingerprint = Fingerprint::of_der(&cert.certificate).to_string();
        sim.engine.connect_transport(info.id, &ConnectParams { fingerprint, ice_ufrag: Some("rawc".into()) }).unwrap();

        let mut buf = [0u8; 512];
        let username = format!("{}:rawc", info.ice_ufrag);
        let n = stun::write_binding_request(
            [3; 12],
            username.as_bytes(),
            info.ice_pwd.as_bytes(),
            1,
            Some(7),
            true,
            &mut buf,
        )
        .unwrap();
        sim.inject(addr, buf[..n].to_vec());
        assert_eq!(sim.take_router_output().len(), 1, "binding success response");

        let config = Arc::new(dimpl::Config::builder().build().unwrap());
        let mut dtls = dimpl::Dtls::new_12(config, cert, sim.now);
        dtls.set_active(true);
        dtls.handle_timeout(sim.now).unwrap();
        let mut endpoint = Endpoint::new(Arc::new(EndpointConfig::new()), None);
        let assoc = endpoint.connect(ClientConfig::new(), SCTP_ADDR).unwrap();
        let mut peer =
            RawPeer { addr, dtls, dtls_connected: false, endpoint, assoc, sctp_connected: false, buf: vec![0; 2048] };
        for _ in 0..20 {
            if peer.dtls_connected {
                break;
            }
            peer.exchange(sim);
        }
        assert!(peer.dtls_connected, "DTLS handshake with the router");
        (peer, info.id)
    }

    /// Sends what DTLS and (once DTLS is up) SCTP have queued, and takes in the router's
    /// replies, until both sides are quiet.
    fn exchange(&mut self, sim: &mut Sim) {
        for _ in 0..50 {
            let mut sent = self.flush_dtls(sim);
            if self.dtls_connected {
                let mut packets = Vec::new();
                let (_, assoc) = &mut self.assoc;
                while let Some(t) = assoc.poll_transmit(sim.now) {
                    if let Payload::RawEncode(p) = t.payload {
                        packets.extend(p.into_iter().map(|b| b.to_vec()));
                    }
                }
                for p in packets {
                    sent |= self.send_app(sim, &p);
                }
            }
            let replies = sim.take_router_output();
            if replies.is_empty() && !sent {
                return;
            }
            for (dst, data) in replies {
                if dst == self.addr {
                    self.dtls.handle_packet(&data).unwrap();
                }
            }
        }
    }

    /// Sends DTLS output; feeds received application data to SCTP. True if anything was sent.
    fn flush_dtls(&mut self, sim: &mut Sim) -> bool {
        let mut sent = false;
        let mut app = Vec::new();
        loop {
            match self.dtls.poll_output(&mut self.buf) {
                dimpl::Output::Packet(p) => {
                    sim.inject(self.addr, p.to_vec());
                    sent = true;
                }
                dimpl::Output::Connected => self.dtls_connected = true,
                dimpl::Output::ApplicationData(d) => app.push(d.to_vec()),
                dimpl::Output::Timeout(_) => break,
                _ => {}
            }
        }
        for data in app {
            let Some((h, DatagramEvent::AssociationEvent(ev))) =
                self.endpoint.handle(sim.now, SCTP_ADDR, None, None, data.into())
            else {
                continue;
            };
            let (handle, assoc) = &mut self.assoc;
            assert_eq!(h, *handle);
            assoc.handle_event(ev);
            while let Some(e) = assoc.poll_endpoint_event() {
                if let Some(back) = self.endpoint.handle_event(*handle, e) {
                    assoc.handle_event(back);
                }
            }
            while let Some(e) = assoc.poll() {
                if matches!(e, SctpEvent::Connected) {
                    self.sctp_connected = true;
                }
            }
        }
        sent
    }

    /// Sends one DTLS application data record with these bytes.
    fn send_app(&mut self, sim: &mut Sim, data: &[u8]) -> bool {
        self.dtls.send_application_data(data).unwrap();
        self.flush_dtls(sim)
    }

    /// Text messages received on a stream (DCEP and binary skipped).
    fn read_texts(&mut self, stream: u16) -> Vec<String> {
        let (_, assoc) = &mut self.assoc;
        let mut out = Vec::new();
        let Ok(mut s) = assoc.stream(stream) else { return out };
        while let Ok(Some(chunks)) = s.read_sctp() {
            let mut data = vec![0u8; chunks.len()];
            chunks.read(&mut data).unwrap();
            if chunks.ppi == Ppi::String {
                out.push(String::from_utf8(data).unwrap());
            }
        }
        out
    }

    fn write(&mut self, stream: u16, ppi: Ppi, data: &[u8]) {
        let (_, assoc) = &mut self.assoc;
        let mut s = match assoc.stream(stream) {
            Ok(s) => s,
            Err(_) => assoc.open_stream(stream, ppi).unwrap(),
        };
        s.write_with_ppi(data, ppi).unwrap();
    }
}

fn drain_events(sim: &mut Sim) {
    let now = sim.now;
    while let Some(e) = sim.engine.poll_event() {
        sim.events.push((now, e));
    }
}

#[test]
fn garbage_sctp_and_dcep_are_dropped_and_counted() {
    let mut sim = Sim::new(0x5c7b_0004);
    let (mut peer, transport) = RawPeer::connect(&mut sim);
    drain_events(&mut sim);
    assert!(
        sim.events.iter().any(|(_, e)| matches!(e, Event::TransportConnected { transport: t, .. } if *t == transport))
    );

    // Not SCTP at all, and SCTP-shaped bytes with a wrong checksum: before an association...
    let c0 = sim.engine.counters().clone();
    peer.send_app(&mut sim, &[0xde; 40]);
    let mut bad_crc = vec![0x13, 0x88, 0x13, 0x88, 0, 0, 0, 0, 0xba, 0xad, 0xf0, 0x0d, 1, 0, 0, 20];
    bad_crc.resize(32, 0);
    peer.send_app(&mut sim, &bad_crc);
    assert_eq!(sim.engine.counters().sctp_dropped, c0.sctp_dropped + 2);

    // ... and the association still comes up afterwards.
    for _ in 0..10 {
        peer.exchange(&mut sim);
    }
    assert!(peer.sctp_connected, "SCTP association with the router");
    peer.send_app(&mut sim, &[0x00; 3]);
    assert_eq!(sim.engine.counters().sctp_dropped, c0.sctp_dropped + 3);

    // Stream 0: a truncated DATA_CHANNEL_OPEN.
    peer.write(0, Ppi::Dcep, &[0x03, 0x00, 0x01]);
    // Stream 2: a good channel, then text that is not UTF-8, binary, and good text.
    let open = DcepOpen::reliable_ordered("raw");
    let mut buf = [0u8; 32];
    let n = open.write(&mut buf).unwrap();
    peer.write(2, Ppi::Dcep, &buf[..n]);
    peer.write(2, Ppi::String, &[0xff, 0xfe, 0x00]);
    peer.write(2, Ppi::Binary, &[1, 2, 3]);
    peer.write(2, Ppi::String, b"ok");
    // Stream 4: text with no channel. Stream 6: an ACK for nothing. Stream 2 again: a second OPEN.
    peer.write(4, Ppi::String, b"orphan");
    peer.write(6, Ppi::Dcep, &[0x02]);
    peer.write(2, Ppi::Dcep, &buf[..n]);
    peer.exchange(&mut sim);
    drain_events(&mut sim);

    let c = sim.engine.counters().clone();
    println!("{c:?}");
    assert_eq!(c.dcep_malformed, c0.dcep_malformed + 3, "truncated OPEN, stray ACK, second OPEN");
    assert_eq!(c.data_channel_dropped, c0.data_channel_dropped + 2, "bad UTF-8, no channel");
    assert_eq!(c.data_channel_binary_dropped, c0.data_channel_binary_dropped + 1);
    assert_eq!(c.data_channel_messages_in, c0.data_channel_messages_in + 1);
    let opened: Vec<&str> = sim
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::DataChannelOpened { transport: t, label } if *t == transport => Some(label.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(opened, ["raw"]);
    let texts: Vec<&str> = sim
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::DataChannelMessage { transport: t, label, text } if *t == transport && label == "raw" => {
                Some(text.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(texts, ["ok"]);

    // The good channel still carries text both ways. (The router's message goes out with its
    // next SCTP activity: here, the peer's packet.)
    sim.engine.send_data(sim.now, transport, "raw", "from router").unwrap();
    peer.write(2, Ppi::String, b"still ok");
    peer.exchange(&mut sim);
    drain_events(&mut sim);
    assert!(sim.events.iter().any(|(_, e)| matches!(e, Event::DataChannelMessage { text, .. } if text == "still ok")));
    assert_eq!(peer.read_texts(2), ["from router"]);
}

//! The router's media engine: everything a WebRTC SFU shard does to a packet, with no I/O.
//!
//! No sockets, threads, async or clock: every input carries `now`, every output is written
//! into a buffer the caller provides ([`Transmit`]), and events are drained with
//! [`Engine::poll_event`]. The router's shard loop (crate `router`) is the only thing that
//! touches the network; tests drive the same engine over a simulated network.
//!
//! # Data flow
//!
//! ```text
//! datagram ─► demux by first byte (RFC 7983)
//!   ├─ STUN ─► ufrag → transport ─► ice::IceLite (answer, learn address, nominate, consent)
//!   ├─ DTLS ─► address → transport ─► dtls::DtlsState (dimpl server, fingerprint check, SRTP keys)
//!   │           └─ application data ─► sctp::SctpTransport (data channels: SCTP + DCEP) ─► events
//!   └─ SRTP ─► address → transport ─► srtp::SrtpSession::unprotect (in place)
//!        ├─ RTP  ─► rtp::parse ─► SSRC (or mid/rid) → producer
//!        │           ├─ stats, NACK generator, RTX cache, TWCC arrival, keyframe detection
//!        │           └─ per consumer: new SSRC/seq/ts + its extension ids, written and
//!        │              encrypted straight into the send buffer
//!        └─ RTCP ─► rtcp::packets ─► SR (producer), PLI/FIR (throttled to the producer),
//!                    NACK (answered from the RTX cache, as RTX when negotiated)
//! timers (Engine::handle_timeout): ICE consent, DTLS retransmits, NACKs, TWCC feedback, SR/RR
//! ```
//!
//! # Example
//!
//! ```
//! use std::time::Instant;
//! use router_engine::{Engine, EngineConfig, VecTransmit};
//!
//! let now = Instant::now();
//! let mut engine = Engine::new(EngineConfig::default(), now).unwrap();
//! let info = engine.create_transport(now).unwrap();
//! assert!(info.ice_lite && info.fingerprint.starts_with("sha-256 "));
//! // Feed datagrams with `handle_datagram`, run `handle_timeout` at `poll_timeout()`,
//! // and send what lands in the `Transmit`.
//! let mut out = VecTransmit::default();
//! engine.handle_timeout(engine.poll_timeout(), &mut out);
//! ```

pub mod allocation;
pub mod api;
pub mod bwe;
pub mod codec;
pub mod dtls;
mod engine;
pub mod ice;
pub mod ids;
pub mod liveness;
pub mod meters;
pub mod nack;
pub mod rtcp;
pub mod rtp;
pub mod rtx_cache;
pub mod sctp;
pub mod simulcast;
pub mod srtp;
pub mod stats;
pub mod stun;
pub mod tap;
pub mod twcc;
pub mod uplink;

pub use api::EngineConfig;
pub use engine::{Counters, Engine, MTU, Transmit, VecTransmit};

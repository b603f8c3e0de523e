//! The shard engine: every transport, producer and consumer of one shard, and the packet path
//! between them. See the crate guide for the flow. This module holds the [`Engine`] itself and
//! its entry points (`handle_datagram`, `handle_timeout`, `poll_timeout`, `poll_event`); the
//! children hold the rest by concern:
//! - `objects`: the entities (transport, producer and layer, consumer) and their small impls,
//! - `counters`: [`Counters`],
//! - `commands`: the command API; `taps`: recording; `data_channels`: SCTP glue,
//! - `demux`: datagram input (STUN, DTLS, SRTP, RTP to its producer),
//! - `forward`: RTP out to consumers; `forwarder`: the pure per-consumer decision,
//! - `feedback`: RTCP in and out, NACK answers, keyframe requests,
//! - `downlink`: a subscriber's bandwidth; `timers`: periodic work; `live_layers`: layer liveness.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use schema::api::{ApiError, Event};
use schema::ids::{ConsumerId, ProducerId, TransportId};

use crate::api::EngineConfig;
use crate::dtls::{Certificate, Fingerprint};
use crate::ids::FastMap;

mod commands;
mod counters;
mod data_channels;
mod demux;
mod downlink;
mod feedback;
mod forward;
mod forwarder;
mod live_layers;
mod objects;
mod taps;
mod timers;

pub use counters::Counters;
use objects::{Consumer, Producer, Transport};

/// Where the engine writes datagrams to send: the shell's send batch in production, a vector
/// in tests. The engine writes each datagram straight into `buffer()` (SRTP encrypts in place
/// there), then commits it.
pub trait Transmit {
    /// A buffer of at least [`MTU`] bytes for the next datagram.
    fn buffer(&mut self) -> &mut [u8];
    /// The first `len` bytes of the last `buffer()` go to `dst`.
    fn commit(&mut self, dst: SocketAddr, len: usize);
}

/// The largest datagram the engine writes.
pub const MTU: usize = 1500;

/// Collects transmits into owned buffers: for tests and simulations.
#[derive(Debug, Default)]
pub struct VecTransmit {
    scratch: Vec<u8>,
    pub sent: Vec<(SocketAddr, Vec<u8>)>,
}

impl Transmit for VecTransmit {
    fn buffer(&mut self) -> &mut [u8] {
        self.scratch.resize(MTU, 0);
        &mut self.scratch
    }
    fn commit(&mut self, dst: SocketAddr, len: usize) {
        self.sent.push((dst, self.scratch[..len].to_vec()));
    }
}

/// One shard's media engine. See the crate documentation.
pub struct Engine {
    cfg: EngineConfig,
    cert: Certificate,
    dtls_config: Arc<dimpl::Config>,
    next_id: u32,
    transports: FastMap<TransportId, Transport>,
    producers: FastMap<ProducerId, Producer>,
    consumers: FastMap<ConsumerId, Consumer>,
    by_ufrag: std::collections::HashMap<String, TransportId>,
    by_addr: FastMap<SocketAddr, TransportId>,
    events: VecDeque<Event>,
    counters: Counters,
    dtls_scratch: Vec<u8>,
    rtcp_scratch: Vec<u8>,
    nack_scratch: Vec<u16>,
    rtcp_keyframes: Vec<(ProducerId, u8)>,
    rtcp_resends: Vec<(ConsumerId, u16)>,
    next_tick: Instant,
    next_stats: Instant,
    /// Transports with SCTP output to flush (from commands, or a transport just verified).
    sctp_dirty: Vec<TransportId>,
    /// When the dirty transports should be flushed; `poll_timeout` returns no later.
    sctp_wake: Option<Instant>,
    next_audio_levels: Instant,
    /// The last [`Event::AudioLevels`] named someone (so one empty report follows).
    audio_levels_nonempty: bool,
    /// Where tapped producers' packets go, per reader (the recorder's ring, the compositor's);
    /// a reader without a sink: its taps are refused.
    tap_sinks: crate::tap::TapSinks,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("transports", &self.transports.len())
            .field("producers", &self.producers.len())
            .field("consumers", &self.consumers.len())
            .finish()
    }
}

/// How often the engine wakes for housekeeping when nothing else is due (NACK, TWCC, RTCP).
const TICK: Duration = Duration::from_millis(10);

/// Interval of [`Event::AudioLevels`] (the SDK's active speaker: at most every 500 ms).
const AUDIO_LEVEL_INTERVAL: Duration = Duration::from_millis(500);

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    // A failure of the system RNG leaves zeros; SSRC collisions are resolved by the
    // receiver, so this is not a safety issue.
    let _ = aws_lc_rs::rand::fill(&mut b);
    u32::from_be_bytes(b)
}

impl Engine {
    /// A new engine with a fresh certificate. `now` anchors its clocks.
    pub fn new(cfg: EngineConfig, now: Instant) -> Result<Engine, ApiError> {
        let cert = Certificate::generate().map_err(ApiError::Crypto)?;
        let dtls_config = crate::dtls::server_config().map_err(ApiError::Crypto)?;
        Ok(Engine {
            cfg,
            cert,
            dtls_config,
            next_id: 1,
            transports: FastMap::default(),
            producers: FastMap::default(),
            consumers: FastMap::default(),
            by_ufrag: Default::default(),
            by_addr: FastMap::default(),
            events: VecDeque::new(),
            counters: Counters::default(),
            dtls_scratch: vec![0; 2048],
            rtcp_scratch: vec![0; MTU],
            nack_scratch: Vec::with_capacity(64),
            rtcp_keyframes: Vec::new(),
            rtcp_resends: Vec::new(),
            next_tick: now,
            next_stats: now + Duration::from_secs(1),
            sctp_dirty: Vec::new(),
            sctp_wake: None,
            next_audio_levels: now + AUDIO_LEVEL_INTERVAL,
            audio_levels_nonempty: false,
            tap_sinks: Default::default(),
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Sets the candidates (when the shell learns its bound port).
    pub fn set_candidates(&mut self, candidates: Vec<schema::api::IceCandidate>) {
        self.cfg.candidates = candidates;
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.cert.fingerprint
    }

    fn next_id(&mut self) -> u32 {
        let id = self.next_id;
        // 24 bits of counter per shard: 16 M objects before wrapping, ample for one shard's life.
        self.next_id = (self.next_id + 1) & 0x00ff_ffff;
        if self.next_id == 0 {
            self.next_id = 1;
        }
        (u32::from(self.cfg.shard) << 24) | id
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Handles one received datagram. `buf` is decrypted in place.
    pub fn handle_datagram(&mut self, now: Instant, src: SocketAddr, buf: &mut [u8], out: &mut dyn Transmit) {
        self.counters.datagrams_in += 1;
        match buf.first() {
            // RFC 7983 demultiplexing by the first byte.
            Some(0..=3) => self.handle_stun(now, src, buf, out),
            Some(20..=63) => self.handle_dtls(now, src, buf, out),
            Some(128..=191) => self.handle_srtp(now, src, buf, out),
            _ => self.counters.unknown_kind += 1,
        }
    }

    /// When the engine next needs [`Engine::handle_timeout`].
    pub fn poll_timeout(&self) -> Instant {
        match self.sctp_wake {
            Some(w) => w.min(self.next_tick),
            None => self.next_tick,
        }
    }

    /// Runs timers: ICE consent, DTLS retransmission, NACKs, TWCC feedback, RTCP reports,
    /// bandwidth allocation and probing, audio levels.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut dyn Transmit) {
        if !self.sctp_dirty.is_empty() {
            for id in std::mem::take(&mut self.sctp_dirty) {
                self.drive_sctp(now, id, out);
            }
        }
        self.sctp_wake = None;
        if now < self.next_tick {
            return;
        }
        self.next_tick = now + TICK;
        let ids: Vec<TransportId> = self.transports.keys().copied().collect();
        for &id in &ids {
            self.transport_timers(now, id, out);
        }
        for &id in &ids {
            self.allocate_downlink(now, id);
        }
        // Keyframe requests for consumers waiting to start or switch, and NACKs toward
        // producers.
        self.tap_timers(now);
        let pids: Vec<ProducerId> = self.producers.keys().copied().collect();
        for pid in pids {
            self.producer_timers(now, pid, out);
        }
        self.report_audio_levels(now);
        self.report_stats(now);
    }
}

//! `loadtest`: simulated rooms of publishers and subscribers against a running platform, in
//! the spirit of LiveKit's `lk load-test`, through the same doors a browser uses: the REST API
//! for a room and tokens, `GET /init`, the signaling WebSocket (100ms's JSON-RPC), and real
//! ICE, DTLS and SRTP to the router from an independent WebRTC stack (str0m).
//!
//! Data flow: [`peer::run`] is one participant (one tokio task; str0m is sans-IO, so
//! thousands share a few threads). Publishers send synthetic VP8 (simulcast q/h/f) and Opus
//! from `synth-media`, each payload carrying a [`stamp`] (source id, send time); str0m answers
//! NACKs from its send buffer, and a PLI forces a keyframe. Subscribers feed every received
//! packet to [`stats::TrackRecv`] (loss, jitter, latency, freezes, layer switches) and mark
//! their [`stats::JoinTimeline`], and every video packet to [`novideo::Watch`] (time with no
//! forwarded video). With `--drop-layers`, publishers stop and restore their upper simulcast
//! layers on a [`layer_drop::DropSchedule`], as a browser under load does. [`report`] turns the peers' reports into LiveKit-style
//! tables, a JSON file and an SVG chart. The server's side of the steady window comes from
//! the router's control socket ([`scrape`]) and control's `GET /metrics` ([`prom`]: the
//! in-router latency histogram).
//!
//! The accounting is sans-IO (times are arguments), so `tests/` checks it on the simulated
//! network of the integration tests, where loss and latency are known. The tests that run the
//! tool as a process start the real platform with `tests/common/platform.rs`.
//!
//! ```
//! let mut t = loadtest::stats::TrackRecv::new(false);
//! let mut opus = synth_media::OpusStream::new(1, 0);
//! let mut p = opus.next_packet();
//! loadtest::stamp::write(&mut p.payload, loadtest::stamp::Stamp { source: 0, sent_us: 1_000 });
//! t.on_packet(21_000, p.seq, p.ts, p.marker, &p.payload);
//! assert_eq!(t.latency_us, [20_000]);
//! ```

pub mod chart;
pub mod layer_drop;
pub mod layout;
pub mod novideo;
pub mod peer;
pub mod prom;
pub mod report;
pub mod scrape;
pub mod signal;
pub mod stamp;
pub mod stats;

use std::time::Instant;

/// What can go wrong; every variant names the step and the cause.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("setup: {0}")]
    Setup(String),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("signaling: {0}")]
    Signal(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// The run's clock: µs since one instant, shared by every publisher and subscriber of the
/// process, so a send stamp and an arrival time compare directly.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    pub fn new(epoch: Instant) -> Clock {
        Clock { epoch }
    }

    pub fn now_us(&self) -> u64 {
        self.at_us(Instant::now())
    }

    pub fn at_us(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX)
    }
}

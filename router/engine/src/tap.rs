//! The media tap: where a tapped producer's packets go besides its consumers.
//!
//! A producer tapped with [`crate::Engine::start_tap`] has each received RTP packet (after
//! SRTP and RTX repair, so exactly what consumers get) and each sender report offered to the
//! engine's [`TapSink`] as a [`TapRecord`]. The shell's sink writes them into a shared-memory
//! ring to the recorder; a test's sink keeps them in memory. A sink never blocks: when it has
//! no room it refuses the record, and the engine counts the drop (`Counters::tap_dropped`).
//!
//! The engine repeats a `Start` record per tapped producer every [`START_REPEAT`], so a
//! restarted recorder learns each track again, and when the sink reports that a new reader
//! attached, every tapped video producer is asked for a keyframe so the new reader can begin
//! a decodable file at once.

use std::time::{Duration, Instant};

use schema::tap::TapRecord;

/// How often a tapped producer's `Start` record is repeated.
pub const START_REPEAT: Duration = Duration::from_secs(1);

/// Receives tap records. Implementations must not block.
pub trait TapSink {
    /// Offers one record; `false` means it was dropped (no room).
    fn offer(&mut self, record: &TapRecord<'_>) -> bool;
    /// `true` once each time a new reader attached since the last call (a restarted recorder):
    /// the engine then asks every tapped video producer for a keyframe.
    fn reader_changed(&mut self) -> bool {
        false
    }
}

/// A sink keeping every record in memory, encoded; for tests and tools.
#[derive(Debug, Default)]
pub struct VecTapSink {
    pub records: Vec<Vec<u8>>,
    /// Refuse records once this many are held (to test drops); `None` keeps all.
    pub limit: Option<usize>,
}

impl TapSink for VecTapSink {
    fn offer(&mut self, record: &TapRecord<'_>) -> bool {
        if self.limit.is_some_and(|l| self.records.len() >= l) {
            return false;
        }
        let mut buf = Vec::with_capacity(record.encoded_len());
        record.encode(&mut buf);
        self.records.push(buf);
        true
    }
}

/// One producer's tap.
#[derive(Debug, Clone)]
pub(crate) struct Tap {
    pub id: u32,
    pub meta: String,
    /// When the `Start` record is due again.
    pub next_start: Instant,
    /// Ask the publisher for a keyframe at the next timer run.
    pub wants_keyframe: bool,
}

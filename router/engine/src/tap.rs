//! The media tap: where a tapped producer's packets go besides its consumers.
//!
//! A producer tapped with [`crate::Engine::start_tap`] has each received RTP packet (after
//! SRTP and RTX repair, so exactly what consumers get) and each sender report offered to the
//! [`TapSink`] of the tap's reader ([`TapReader`]: recorder or compositor) as a [`TapRecord`].
//! A producer can carry several taps (a track recording and a composite job at once), each
//! with its own number and reader. The shell's sinks write into shared-memory rings, one
//! segment per reader; a test's sink keeps them in memory. A sink never blocks: when it has
//! no room it refuses the record, and the engine counts the drop (`Counters::tap_dropped`).
//!
//! The engine repeats a `Start` record per tapped producer every [`START_REPEAT`], so a
//! restarted recorder learns each track again, and when the sink reports that a new reader
//! attached, every tapped video producer is asked for a keyframe so the new reader can begin
//! a decodable file at once.

use std::time::{Duration, Instant};

use schema::tap::{TapReader, TapRecord};

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

/// The engine's sinks, one per [`TapReader`] (the recorder's ring, the compositor's ring).
#[derive(Default)]
pub(crate) struct TapSinks {
    sinks: [Option<Box<dyn TapSink + Send>>; TapReader::ALL.len()],
}

impl TapSinks {
    pub fn set(&mut self, reader: TapReader, sink: Box<dyn TapSink + Send>) {
        self.sinks[reader.index()] = Some(sink);
    }

    pub fn has(&self, reader: TapReader) -> bool {
        self.sinks[reader.index()].is_some()
    }

    pub fn get_mut(&mut self, reader: TapReader) -> Option<&mut (dyn TapSink + Send + 'static)> {
        self.sinks[reader.index()].as_deref_mut()
    }

    /// Offers one record per tap of a producer (`make` builds it from the tap's number), and
    /// counts what was taken and what was refused.
    pub fn offer_each<'r>(
        &mut self,
        taps: &[Tap],
        counters: &mut crate::Counters,
        make: impl Fn(u32) -> TapRecord<'r>,
    ) {
        for tap in taps {
            let Some(sink) = self.get_mut(tap.reader) else { continue };
            if sink.offer(&make(tap.id)) {
                counters.tap_records += 1;
            } else {
                counters.tap_dropped += 1;
            }
        }
    }
}

/// A sink whose records stay readable after the engine took it: its clones share one list.
/// For tests and tools that feed the records on (to a recorder, a compositor) as they come.
#[derive(Debug, Clone, Default)]
pub struct SharedTapSink(pub std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

impl SharedTapSink {
    /// The records offered since the last call, encoded.
    pub fn take(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

impl TapSink for SharedTapSink {
    fn offer(&mut self, record: &TapRecord<'_>) -> bool {
        let mut buf = Vec::with_capacity(record.encoded_len());
        record.encode(&mut buf);
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(buf);
        true
    }
}

/// One tap of a producer.
#[derive(Debug, Clone)]
pub(crate) struct Tap {
    pub id: u32,
    pub reader: TapReader,
    pub meta: String,
    /// When the `Start` record is due again.
    pub next_start: Instant,
    /// Ask the publisher for a keyframe at the next timer run.
    pub wants_keyframe: bool,
}

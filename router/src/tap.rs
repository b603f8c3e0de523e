//! The router's end of the media tap: each shard writes the [`schema::tap::TapRecord`]s of
//! its tapped producers into its own ring of the tap segment (ring index = shard index), which
//! control created and the recorder reads. One producer per ring, so shards share nothing.
//!
//! Writing never blocks: a full ring (a slow or dead recorder) refuses the record and the
//! engine counts it in `tap_dropped`; forwarding to subscribers is unaffected.

use router_engine::tap::TapSink;
use schema::tap::TapRecord;
use shm_queue::{Producer, Segment};

/// Tap sink over one shared-memory ring.
#[derive(Debug)]
pub struct ShmTapSink {
    ring: Producer,
    reader_pid: u32,
    calls: u32,
}

/// How many `reader_changed` calls (engine ticks, 10 ms) between two looks at the reader's pid.
const READER_CHECK_EVERY: u32 = 20;

impl ShmTapSink {
    /// Attaches as the producer of ring `ring` of `segment`.
    pub fn attach(segment: &Segment, ring: usize) -> Result<ShmTapSink, shm_queue::Error> {
        let ring = Producer::attach(segment, ring)?;
        let reader_pid = ring.peer_pid();
        Ok(ShmTapSink { ring, reader_pid, calls: 0 })
    }
}

impl TapSink for ShmTapSink {
    fn offer(&mut self, record: &TapRecord<'_>) -> bool {
        let len = record.encoded_len();
        self.ring.send_with(len, |buf| record.encode_into(buf)).is_ok()
    }

    fn reader_changed(&mut self) -> bool {
        self.calls = self.calls.wrapping_add(1);
        if !self.calls.is_multiple_of(READER_CHECK_EVERY) {
            return false;
        }
        let pid = self.ring.peer_pid();
        if pid != self.reader_pid {
            self.reader_pid = pid;
            return pid != 0;
        }
        false
    }
}

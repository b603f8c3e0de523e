//! The media tap: producers recorded through a sink (the recorder's ring).

use std::time::Instant;

use schema::api::ApiError;
use schema::ids::ProducerId;

use super::Engine;

impl Engine {
    pub fn set_tap_sink(&mut self, sink: Box<dyn crate::tap::TapSink + Send>) {
        self.tap_sink = Some(sink);
    }

    /// Taps a producer for recording: its packets are offered to the tap sink as `tap`.
    pub fn start_tap(&mut self, now: Instant, id: ProducerId, tap: u32, meta: String) -> Result<(), ApiError> {
        if self.tap_sink.is_none() {
            return Err(ApiError::InvalidParams("this router has no media tap (started without --tap-fd)".into()));
        }
        let p = self.producers.get_mut(&id).ok_or(ApiError::UnknownProducer(id))?;
        let old = p.tap.replace(crate::tap::Tap { id: tap, meta, next_start: now, wants_keyframe: true });
        if let Some(old) = old
            && old.id != tap
        {
            self.offer_tap(&schema::tap::TapRecord::Stop { tap: old.id, producer: id.0 });
        }
        self.tap_timers(now);
        Ok(())
    }

    /// Ends a producer's tap; a producer without one is fine (idempotent).
    pub fn stop_tap(&mut self, id: ProducerId) -> Result<(), ApiError> {
        let p = self.producers.get_mut(&id).ok_or(ApiError::UnknownProducer(id))?;
        if let Some(tap) = p.tap.take() {
            self.offer_tap(&schema::tap::TapRecord::Stop { tap: tap.id, producer: id.0 });
        }
        Ok(())
    }

    pub(super) fn offer_tap(&mut self, rec: &schema::tap::TapRecord<'_>) {
        if let Some(sink) = self.tap_sink.as_mut() {
            if sink.offer(rec) {
                self.counters.tap_records += 1;
            } else {
                self.counters.tap_dropped += 1;
            }
        }
    }

    /// Repeats due `Start` records, and asks for keyframes when a new reader attached.
    pub(super) fn tap_timers(&mut self, now: Instant) {
        let Some(sink) = self.tap_sink.as_mut() else { return };
        let reader_changed = sink.reader_changed();
        for p in self.producers.values_mut() {
            let Some(tap) = p.tap.as_mut() else { continue };
            if reader_changed {
                // The new reader knows no track yet: tell it before the keyframe arrives.
                tap.wants_keyframe = true;
                tap.next_start = now;
            }
            if now < tap.next_start {
                continue;
            }
            tap.next_start = now + crate::tap::START_REPEAT;
            let rec = schema::tap::TapRecord::Start {
                tap: tap.id,
                producer: p.id.0,
                codec: p.params.codec,
                clock_rate: p.params.clock_rate,
                meta: &tap.meta,
            };
            if sink.offer(&rec) {
                self.counters.tap_records += 1;
            } else {
                self.counters.tap_dropped += 1;
            }
        }
    }
}

//! The media tap: producers copied to a reader's sink (the recorder's ring, the compositor's).

use std::time::Instant;

use schema::api::ApiError;
use schema::ids::ProducerId;
use schema::tap::{TapReader, TapRecord};

use super::Engine;
use crate::tap::{Tap, TapSink};

impl Engine {
    /// Where the taps of `reader` go; a reader without a sink has its taps refused.
    pub fn set_tap_sink(&mut self, reader: TapReader, sink: Box<dyn TapSink + Send>) {
        self.tap_sinks.set(reader, sink);
    }

    /// Taps a producer for `reader`: its packets are offered to that reader's sink as `tap`.
    /// The same number again updates the tap (its metadata) and asks for a keyframe.
    pub fn start_tap(
        &mut self,
        now: Instant,
        id: ProducerId,
        tap: u32,
        meta: String,
        reader: TapReader,
    ) -> Result<(), ApiError> {
        if !self.tap_sinks.has(reader) {
            return Err(ApiError::InvalidParams(format!(
                "this router has no media tap for the {reader:?} (started without its tap segment)"
            )));
        }
        let p = self.producers.get_mut(&id).ok_or(ApiError::UnknownProducer(id))?;
        let fresh = Tap { id: tap, reader, meta, next_start: now, wants_keyframe: true };
        match p.taps.iter_mut().find(|t| t.id == tap) {
            Some(old) if old.reader == reader => *old = fresh,
            Some(old) => {
                // The number moved to another reader: the old one hears the tap end.
                let stop = TapRecord::Stop { tap, producer: id.0 };
                let old_taps = [std::mem::replace(old, fresh)];
                self.tap_sinks.offer_each(&old_taps, &mut self.counters, |_| stop);
            }
            None => p.taps.push(fresh),
        }
        self.tap_timers(now);
        Ok(())
    }

    /// Ends one tap of a producer (`Some`), or all of them; a tap that is not there is fine
    /// (idempotent).
    pub fn stop_tap(&mut self, id: ProducerId, tap: Option<u32>) -> Result<(), ApiError> {
        let p = self.producers.get_mut(&id).ok_or(ApiError::UnknownProducer(id))?;
        let (ended, kept): (Vec<Tap>, Vec<Tap>) =
            std::mem::take(&mut p.taps).into_iter().partition(|t| tap.is_none_or(|n| n == t.id));
        p.taps = kept;
        self.tap_sinks.offer_each(&ended, &mut self.counters, |tap| TapRecord::Stop { tap, producer: id.0 });
        Ok(())
    }

    /// Repeats due `Start` records, and asks for keyframes when a new reader attached.
    pub(super) fn tap_timers(&mut self, now: Instant) {
        let changed = TapReader::ALL.map(|r| self.tap_sinks.get_mut(r).is_some_and(|s| s.reader_changed()));
        for p in self.producers.values_mut() {
            for tap in &mut p.taps {
                if changed[tap.reader.index()] {
                    // The new reader knows no track yet: tell it before the keyframe arrives.
                    tap.wants_keyframe = true;
                    tap.next_start = now;
                }
                if now < tap.next_start {
                    continue;
                }
                tap.next_start = now + crate::tap::START_REPEAT;
                let Some(sink) = self.tap_sinks.get_mut(tap.reader) else { continue };
                let rec = TapRecord::Start {
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
}

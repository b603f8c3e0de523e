//! The per-consumer forwarding decision, as LiveKit's forwarder: [`Consumer::translate`] takes
//! one producer packet and says drop (and why) or forward with which sequence number,
//! timestamp and VP8 picture ids. It holds the whole decision (pause, simulcast layer and
//! switch, start of numbering, old packets) and reads no clock, socket or random source, so a
//! table of rows tests it; the engine then only writes, encrypts and counts.

use std::time::Instant;

use schema::api::MediaKind;

use super::objects::{Consumer, SeqSync};
use crate::codec::Vp8Descriptor;
use crate::simulcast::{self, LayerDecision};

/// How far behind the newest packet a consumer's start mark trails (see `Consumer::translate`).
const START_MARK_LAG: i16 = 8192;

/// What the forwarding decision reads of one producer packet.
#[derive(Debug, Clone, Copy)]
pub(super) struct IncomingPacket<'a> {
    /// The producer's layer it came on (0 for a plain track).
    pub(super) layer: u8,
    pub(super) seq: u16,
    pub(super) ts: u32,
    pub(super) marker: bool,
    /// A video keyframe's packet: where a decoder can join, so where a layer switch may happen.
    pub(super) keyframe: bool,
    /// No payload (padding only): forwarded with the stream, but it serves no video.
    pub(super) padding_only: bool,
    /// VP8: the payload descriptor, whose picture id and TL0PICIDX are rewritten.
    pub(super) vp8: Option<&'a Vp8Descriptor>,
}

/// The decision for one packet and one consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Translation {
    Forward(Forward),
    Drop(DropReason),
}

/// A packet to send, with the consumer's numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Forward {
    pub(super) seq: u16,
    pub(super) ts: u32,
    pub(super) marker: bool,
    /// VP8: the picture id and TL0PICIDX to write.
    pub(super) vp8: Option<(u16, u8)>,
    /// It carries media (not padding only): the subscriber's video is being served.
    pub(super) media: bool,
    /// This packet switched the consumer's current layer (its first packet on `to`).
    pub(super) switched: Option<Switch>,
}

/// A change of the forwarded simulcast layer; `from` is `None` at the start or on resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Switch {
    pub(super) from: Option<u8>,
    pub(super) to: u8,
}

/// Why a packet is not forwarded to a consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DropReason {
    /// The consumer is paused (by its subscriber or by signaling).
    Paused,
    /// The allocation gives this consumer no layer now.
    NoLayer,
    /// A layer the consumer neither forwards nor switches to.
    OtherLayer,
    /// The target layer, but not a keyframe: the switch waits for one (the old layer goes on).
    WaitingForKeyframe,
    /// The current layer, but with no numbering for it yet (it restarts on a keyframe).
    NotStarted,
    /// Older than where the consumer started on this layer: its subscriber never had the stream
    /// before it.
    BeforeStart,
}

impl Consumer {
    /// Decides what to do with one packet of the producer for this consumer, and moves the
    /// consumer's forwarding state on (layer switch, numbering). Sending is the caller's: after a
    /// successful send it calls [`Consumer::note_sent`].
    pub(super) fn translate(&mut self, p: &IncomingPacket<'_>, now: Instant) -> Translation {
        if self.paused {
            return Translation::Drop(DropReason::Paused);
        }
        let mut switched = None;
        let sync = if self.kind == MediaKind::Video {
            match simulcast::decide(&self.layers, p.layer, p.keyframe) {
                LayerDecision::Drop => {
                    let reason = match self.layers.target {
                        None => DropReason::NoLayer,
                        Some(target) if target == p.layer => DropReason::WaitingForKeyframe,
                        Some(_) => DropReason::OtherLayer,
                    };
                    return Translation::Drop(reason);
                }
                LayerDecision::Forward => match self.sync {
                    Some(s) if s.layer == p.layer => s,
                    _ => return Translation::Drop(DropReason::NotStarted),
                },
                LayerDecision::Switch { from, to } => {
                    let s = self.start_sync(p.layer, p.seq, p.ts, now, p.vp8);
                    self.set_sync(s);
                    self.layers.current = Some(to);
                    self.switch_started = None;
                    if from.is_some() {
                        self.switches += 1;
                    }
                    switched = Some(Switch { from, to });
                    s
                }
            }
        } else {
            match self.sync {
                Some(s) => s,
                None => {
                    let s = self.start_sync(p.layer, p.seq, p.ts, now, None);
                    self.set_sync(s);
                    s
                }
            }
        };
        let since_start = p.seq.wrapping_sub(sync.start_seq) as i16;
        if since_start < 0 {
            return Translation::Drop(DropReason::BeforeStart);
        }
        // Keep the start mark within half the sequence space behind the stream, or after
        // 32768 packets every new packet would look older than the start.
        if since_start > START_MARK_LAG
            && let Some(s) = self.sync.as_mut()
        {
            s.start_seq = p.seq.wrapping_sub(START_MARK_LAG as u16);
        }
        Translation::Forward(Forward {
            seq: p.seq.wrapping_add(sync.seq_offset),
            ts: p.ts.wrapping_add(sync.ts_offset),
            marker: p.marker,
            vp8: p.vp8.map(|d| sync.vp8_out(d)),
            media: !p.padding_only,
            switched,
        })
    }

    /// The numbering that starts forwarding `layer` at this packet.
    fn start_sync(&self, layer: u8, in_seq: u16, in_ts: u32, now: Instant, vp8: Option<&Vp8Descriptor>) -> SeqSync {
        // VP8: continue the picture id and TL0PICIDX after the last ones sent (a new stream would
        // look to the decoder like lost frames).
        let (pid_offset, tl0_offset) = match (self.last_vp8, vp8) {
            (Some((last_pid, last_tl0)), Some(d)) => (
                last_pid.wrapping_add(1).wrapping_sub(d.picture_id.unwrap_or(0)) & 0x7fff,
                last_tl0.wrapping_add(1).wrapping_sub(d.tl0_pic_idx.unwrap_or(0)),
            ),
            _ => (0, 0),
        };
        let (next_seq, next_ts) = match self.last_out {
            // Continue after a pause or another layer: next sequence number, and a timestamp
            // advanced by the wall-clock time that passed, so the receiver's jitter buffer sees
            // real time.
            Some((last_seq, last_ts, at)) => {
                let elapsed = now.saturating_duration_since(at);
                let ticks = (elapsed.as_secs_f64() * self.clock_rate as f64) as u32;
                (last_seq.wrapping_add(1), last_ts.wrapping_add(ticks.max(1)))
            }
            None => self.first_out,
        };
        SeqSync {
            layer,
            start_seq: in_seq,
            seq_offset: next_seq.wrapping_sub(in_seq),
            ts_offset: next_ts.wrapping_sub(in_ts),
            pid_offset,
            tl0_offset,
        }
    }

    /// Starts forwarding with this numbering (at the start, on resume, or at a switch).
    fn set_sync(&mut self, s: SeqSync) {
        self.sync = Some(s);
        let first_out = s.start_seq.wrapping_add(s.seq_offset);
        self.history.rotate_right(1);
        self.history[0] = Some((first_out, s));
    }

    /// The numbering an outgoing sequence number was sent with (for NACKs after a switch).
    pub(super) fn sync_for(&self, out_seq: u16) -> Option<SeqSync> {
        self.history.iter().flatten().find(|(first, _)| out_seq.wrapping_sub(*first) as i16 >= 0).map(|&(_, s)| s)
    }

    /// Remembers the newest packet sent; a late (reordered) one does not move it back.
    pub(super) fn note_sent(&mut self, seq: u16, ts: u32, now: Instant, vp8: Option<(u16, u8)>) {
        let newer = self.last_out.is_none_or(|(last, _, _)| seq.wrapping_sub(last) as i16 > 0);
        if newer {
            self.last_out = Some((seq, ts, now));
            if vp8.is_some() {
                self.last_vp8 = vp8;
            }
        }
    }
}

impl SeqSync {
    /// The VP8 picture id and TL0PICIDX to send for a packet with this descriptor.
    pub(super) fn vp8_out(&self, d: &Vp8Descriptor) -> (u16, u8) {
        let pid = d.picture_id.unwrap_or(0).wrapping_add(self.pid_offset) & 0x7fff;
        let tl0 = d.tl0_pic_idx.unwrap_or(0).wrapping_add(self.tl0_offset);
        (pid, tl0)
    }
}

#[cfg(test)]
mod tests;

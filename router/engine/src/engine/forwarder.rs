//! The per-consumer forwarding decision: a pure drop-or-forward with the rewritten numbering.

use std::time::Instant;

use super::objects::{Consumer, SeqSync};
use super::random_u32;
use crate::codec::Vp8Descriptor;

/// How far behind the newest packet a consumer's start mark trails (see `Consumer::translate`).
pub(super) const START_MARK_LAG: i16 = 8192;

pub(super) fn start_sync(
    c: &Consumer,
    layer: u8,
    in_seq: u16,
    in_ts: u32,
    now: Instant,
    vp8: Option<&Vp8Descriptor>,
) -> SeqSync {
    // VP8: continue the picture id and TL0PICIDX after the last ones sent (a new stream would
    // look to the decoder like lost frames).
    let (pid_offset, tl0_offset) = match (c.last_vp8, vp8) {
        (Some((last_pid, last_tl0)), Some(d)) => (
            last_pid.wrapping_add(1).wrapping_sub(d.picture_id.unwrap_or(0)) & 0x7fff,
            last_tl0.wrapping_add(1).wrapping_sub(d.tl0_pic_idx.unwrap_or(0)),
        ),
        _ => (0, 0),
    };
    match c.last_out {
        // Continue after a pause or another layer: next sequence number, and a timestamp
        // advanced by the wall-clock time that passed, so the receiver's jitter buffer sees
        // real time.
        Some((last_seq, last_ts, at)) => {
            let elapsed = now.saturating_duration_since(at);
            let ticks = (elapsed.as_secs_f64() * c.clock_rate as f64) as u32;
            let next_ts = last_ts.wrapping_add(ticks.max(1));
            SeqSync {
                layer,
                start_seq: in_seq,
                seq_offset: last_seq.wrapping_add(1).wrapping_sub(in_seq),
                ts_offset: next_ts.wrapping_sub(in_ts),
                pid_offset,
                tl0_offset,
            }
        }
        None => {
            let first_seq = random_u32() as u16 & 0x7fff;
            let first_ts = random_u32();
            SeqSync {
                layer,
                start_seq: in_seq,
                seq_offset: first_seq.wrapping_sub(in_seq),
                ts_offset: first_ts.wrapping_sub(in_ts),
                pid_offset,
                tl0_offset,
            }
        }
    }
}

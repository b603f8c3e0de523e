//! The transport-cc feedback packet (RTCP RTPFB FMT=15,
//! draft-holmer-rmcat-transport-wide-cc-extensions-01): a zero-copy parser ([`TwccFeedback`])
//! and the writer the receiver side (`crate::twcc`) builds its feedback with.

use thiserror::Error;

use super::{PT_RTPFB, write_common_header};

/// Receive delta unit.
pub const TICK_US: i64 = 250;
/// Reference time unit (64 ms) in ticks.
pub(crate) const TICKS_PER_REFERENCE: i64 = 256;
/// Header (4) + SSRCs (8) + base/count (4) + reference/fb count (4).
pub(crate) const FIXED_LEN: usize = 20;

/// Why a transport-cc feedback packet is malformed.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum TwccError {
    #[error("feedback of {0} bytes is shorter than its 16-byte fixed part")]
    TooShort(usize),
    #[error("packet status chunks end before the packet status count is covered")]
    ChunksTruncated,
    #[error("receive deltas run past the end of the packet")]
    DeltasTruncated,
    #[error("reserved packet status symbol 3")]
    ReservedSymbol,
}

/// Decodes one 16-bit status chunk: `(symbols it holds, symbol at index i)`.
fn chunk_len(chunk: u16) -> usize {
    if chunk & 0x8000 == 0 {
        (chunk & 0x1fff) as usize
    } else if chunk & 0x4000 == 0 {
        14
    } else {
        7
    }
}

fn chunk_symbol(chunk: u16, i: usize) -> u8 {
    if chunk & 0x8000 == 0 {
        ((chunk >> 13) & 0x3) as u8
    } else if chunk & 0x4000 == 0 {
        ((chunk >> (13 - i)) & 0x1) as u8
    } else {
        ((chunk >> (12 - 2 * i)) & 0x3) as u8
    }
}

/// Zero-copy view of a transport-cc feedback packet, validated at parse time so iterating
/// cannot fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwccFeedback<'a> {
    pub sender_ssrc: u32,
    pub media_ssrc: u32,
    pub base_seq: u16,
    pub status_count: u16,
    /// 24-bit reference time in 64 ms units (wraps).
    pub reference_time: u32,
    pub fb_count: u8,
    chunks: &'a [u8],
    deltas: &'a [u8],
}

impl<'a> TwccFeedback<'a> {
    /// Parses the body after the 4-byte RTCP common header (sender SSRC onwards), with RTCP
    /// padding already removed.
    pub fn parse(body: &'a [u8]) -> Result<Self, TwccError> {
        if body.len() < 16 {
            return Err(TwccError::TooShort(body.len()));
        }
        let be16 = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
        let be32 = |at: usize| u32::from_be_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]);
        let status_count = be16(10);
        let mut remaining = status_count as usize;
        let mut pos = 16;
        let mut delta_bytes = 0usize;
        while remaining > 0 {
            let Some(c) = body.get(pos..pos + 2) else {
                return Err(TwccError::ChunksTruncated);
            };
            let chunk = u16::from_be_bytes([c[0], c[1]]);
            pos += 2;
            let n = chunk_len(chunk).min(remaining);
            if chunk & 0x8000 == 0 {
                // One symbol repeated: count its deltas without walking the run.
                delta_bytes += n * symbol_delta_len(chunk_symbol(chunk, 0))?;
            } else {
                for i in 0..n {
                    delta_bytes += symbol_delta_len(chunk_symbol(chunk, i))?;
                }
            }
            remaining -= n;
        }
        let chunks = &body[16..pos];
        let deltas = body.get(pos..pos + delta_bytes).ok_or(TwccError::DeltasTruncated)?;
        Ok(TwccFeedback {
            sender_ssrc: be32(0),
            media_ssrc: be32(4),
            base_seq: be16(8),
            status_count,
            reference_time: be32(12) >> 8,
            fb_count: body[15],
            chunks,
            deltas,
        })
    }

    /// Reference time in microseconds (not wrapped: callers compare consecutive feedbacks).
    pub fn reference_time_us(&self) -> i64 {
        i64::from(self.reference_time) * TICKS_PER_REFERENCE * TICK_US
    }

    /// Every reported packet in order: `(seq, Some(receive delta in µs))` if received,
    /// `(seq, None)` if reported lost. The first delta is relative to the reference time.
    pub fn packets(&self) -> TwccPackets<'a> {
        TwccPackets {
            chunks: self.chunks,
            deltas: self.deltas,
            chunk_pos: 0,
            in_chunk: 0,
            delta_pos: 0,
            seq: self.base_seq,
            remaining: self.status_count,
        }
    }
}

fn symbol_delta_len(symbol: u8) -> Result<usize, TwccError> {
    match symbol {
        0 => Ok(0),
        1 => Ok(1),
        2 => Ok(2),
        _ => Err(TwccError::ReservedSymbol),
    }
}

/// Iterator of [`TwccFeedback::packets`].
#[derive(Debug, Clone)]
pub struct TwccPackets<'a> {
    chunks: &'a [u8],
    deltas: &'a [u8],
    chunk_pos: usize,
    in_chunk: usize,
    delta_pos: usize,
    seq: u16,
    remaining: u16,
}

impl Iterator for TwccPackets<'_> {
    type Item = (u16, Option<i64>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        loop {
            let c = self.chunks.get(self.chunk_pos..self.chunk_pos + 2)?;
            let chunk = u16::from_be_bytes([c[0], c[1]]);
            if self.in_chunk >= chunk_len(chunk) {
                // Also skips run-length chunks of length 0.
                self.chunk_pos += 2;
                self.in_chunk = 0;
                continue;
            }
            let symbol = chunk_symbol(chunk, self.in_chunk);
            self.in_chunk += 1;
            let delta = match symbol {
                1 => {
                    let d = *self.deltas.get(self.delta_pos)?;
                    self.delta_pos += 1;
                    Some(i64::from(d) * TICK_US)
                }
                2 => {
                    let d = self.deltas.get(self.delta_pos..self.delta_pos + 2)?;
                    self.delta_pos += 2;
                    Some(i64::from(i16::from_be_bytes([d[0], d[1]])) * TICK_US)
                }
                _ => None,
            };
            let seq = self.seq;
            self.seq = self.seq.wrapping_add(1);
            self.remaining -= 1;
            return Some((seq, delta));
        }
    }
}

/// One packet a feedback reports as received: its unwrapped transport-wide sequence number and
/// its receive delta in [`TICK_US`] ticks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReportedPacket {
    pub(crate) seq: i64,
    pub(crate) delta: i64,
}

impl ReportedPacket {
    fn symbol(&self) -> u8 {
        if (0..=255).contains(&self.delta) { 1 } else { 2 }
    }
}

/// The fixed fields of a feedback: `base` and `count` unwrapped, `reference` in 64 ms units.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FeedbackHeader {
    pub(crate) sender_ssrc: u32,
    pub(crate) media_ssrc: u32,
    pub(crate) base: i64,
    pub(crate) count: i64,
    pub(crate) reference: i64,
    pub(crate) fb_count: u8,
}

/// Writes a feedback reporting `pkts` (sorted, within `base..base + count`; the others are
/// reported lost) into `out`, the RTCP common header included. Returns its padded length, or
/// `None` when `out` is too small (the caller sizes `out` for what it reports).
pub(crate) fn write_feedback(out: &mut [u8], h: &FeedbackHeader, pkts: &[ReportedPacket]) -> Option<usize> {
    out[4..8].copy_from_slice(&h.sender_ssrc.to_be_bytes());
    out[8..12].copy_from_slice(&h.media_ssrc.to_be_bytes());
    out[12..14].copy_from_slice(&(h.base as u16).to_be_bytes());
    out[14..16].copy_from_slice(&(h.count as u16).to_be_bytes());
    let ref_and_count = ((h.reference as u32 & 0x00ff_ffff) << 8) | u32::from(h.fb_count);
    out[16..20].copy_from_slice(&ref_and_count.to_be_bytes());
    let mut pos = FIXED_LEN + encode_chunks(pkts, h.base, h.count, &mut out[FIXED_LEN..])?;
    for a in pkts {
        if a.symbol() == 1 {
            *out.get_mut(pos)? = a.delta as u8;
            pos += 1;
        } else {
            out.get_mut(pos..pos + 2)?.copy_from_slice(&(a.delta as i16).to_be_bytes());
            pos += 2;
        }
    }
    let pad = (4 - pos % 4) % 4;
    let padded = pos + pad;
    if pad > 0 {
        out.get_mut(pos..padded)?.fill(0);
        out[padded - 1] = pad as u8;
    }
    write_common_header(out, pad > 0, 15, PT_RTPFB, padded).ok()?;
    Some(padded)
}

/// `(symbol, run length)` at status index `j` of the feedback starting at `base`.
fn run_at(pkts: &[ReportedPacket], base: i64, j: i64, count: i64) -> (u8, i64) {
    let seq = base + j;
    let at = pkts.partition_point(|a| a.seq < seq);
    match pkts.get(at) {
        Some(a) if a.seq == seq => {
            let sym = a.symbol();
            let mut run = 1;
            while let Some(b) = pkts.get(at + run as usize) {
                if b.seq != seq + run || b.symbol() != sym {
                    break;
                }
                run += 1;
            }
            (sym, run.min(count - j))
        }
        Some(a) => (0, (a.seq - seq).min(count - j)),
        None => (0, count - j),
    }
}

/// Greedy chunk encoding: long runs as run-length chunks, mixed 0/1 stretches as 14-symbol
/// one-bit vectors, anything with large deltas as 7-symbol two-bit vectors. Symbols past the
/// status count in a vector are 0 (not received), so no delta is expected for them.
fn encode_chunks(pkts: &[ReportedPacket], base: i64, count: i64, out: &mut [u8]) -> Option<usize> {
    let mut pos = 0;
    let mut j = 0;
    let symbol = |k: i64| run_at(pkts, base, k, count).0;
    while j < count {
        let (sym, run) = run_at(pkts, base, j, count);
        let n1 = (count - j).min(14);
        let chunk: u16;
        if run >= 14 {
            let n = run.min(8191);
            chunk = (u16::from(sym) << 13) | n as u16;
            j += n;
        } else if (0..n1).all(|k| symbol(j + k) <= 1) {
            let mut c = 0x8000u16;
            for k in 0..n1 {
                c |= u16::from(symbol(j + k)) << (13 - k);
            }
            chunk = c;
            j += n1;
        } else if run >= 7 {
            chunk = (u16::from(sym) << 13) | run as u16;
            j += run;
        } else {
            let n2 = (count - j).min(7);
            let mut c = 0xc000u16;
            for k in 0..n2 {
                c |= u16::from(symbol(j + k)) << (12 - 2 * k);
            }
            chunk = c;
            j += n2;
        }
        out.get_mut(pos..pos + 2)?.copy_from_slice(&chunk.to_be_bytes());
        pos += 2;
    }
    Some(pos)
}

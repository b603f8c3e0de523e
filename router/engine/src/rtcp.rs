//! Zero-copy RTCP (RFC 3550, RFC 4585, RFC 5104) parsing and writing.
//!
//! Data flow: an SRTCP packet, once unprotected, is a compound of RTCP packets; [`packets`]
//! walks it and yields one [`RtcpPacket`] view per packet (sender and receiver reports, SDES,
//! BYE, NACK, PLI, FIR, REMB, transport-cc). Views borrow the buffer and iterate lazily (report
//! blocks, NACKed sequence numbers, FIR entries, SSRC lists), so nothing allocates. Each packet
//! is validated when it is yielded, so the iterators inside a view cannot fail; after the first
//! malformed packet the walk ends with that error.
//!
//! The writers ([`write_sender_report`], [`write_nack`], [`write_pli`], ...) fill a
//! `&mut [u8]` and return the length written, so a compound packet is built by writing one
//! after another into the same buffer.
//!
//! ```
//! use router_engine::rtcp::{self, RtcpPacket};
//! let mut buf = [0u8; 64];
//! let n = rtcp::write_receiver_report(&mut buf, 1, &[]).unwrap();
//! let m = rtcp::write_nack(&mut buf[n..], 1, 2, &[10, 12, 40]).unwrap();
//! let mut it = rtcp::packets(&buf[..n + m]);
//! assert!(matches!(it.next(), Some(Ok(RtcpPacket::ReceiverReport { ssrc: 1, .. }))));
//! let Some(Ok(RtcpPacket::Nack { lost, .. })) = it.next() else { panic!() };
//! assert_eq!(lost.collect::<Vec<_>>(), vec![10, 12, 40]);
//! ```

use thiserror::Error;

use crate::twcc::{TwccError, TwccFeedback};

pub const PT_SR: u8 = 200;
pub const PT_RR: u8 = 201;
pub const PT_SDES: u8 = 202;
pub const PT_BYE: u8 = 203;
pub const PT_APP: u8 = 204;
/// Transport layer feedback (RFC 4585): NACK (FMT 1), transport-cc (FMT 15).
pub const PT_RTPFB: u8 = 205;
/// Payload-specific feedback (RFC 4585): PLI (FMT 1), FIR (FMT 4), REMB (FMT 15, "REMB").
pub const PT_PSFB: u8 = 206;

const REPORT_BLOCK_LEN: usize = 24;

/// Why bytes are not a valid RTCP packet, or a packet cannot be written.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum RtcpError {
    #[error("{0} bytes left, shorter than an RTCP header")]
    TooShort(usize),
    #[error("RTCP version {0}, expected 2")]
    BadVersion(u8),
    #[error("length field says {declared} bytes, {available} available")]
    LengthOverrun { declared: usize, available: usize },
    #[error("padding count {0} is zero or longer than the packet")]
    BadPadding(u8),
    #[error("packet type {packet_type} (fmt {fmt}) too short for its contents")]
    Truncated { packet_type: u8, fmt: u8 },
    #[error("transport-cc feedback: {0}")]
    Twcc(#[from] TwccError),
    #[error("output buffer of {have} bytes is too small, {need} needed")]
    BufferTooSmall { need: usize, have: usize },
    #[error("{0} items do not fit in the packet's count field")]
    TooMany(usize),
    #[error("a NACK needs at least one sequence number")]
    EmptyNack,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// One report block of an SR or RR (RFC 3550 6.4.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportBlock {
    pub ssrc: u32,
    pub fraction_lost: u8,
    /// 24-bit signed on the wire; clamped to that range when written.
    pub cumulative_lost: i32,
    pub ext_highest_seq: u32,
    pub jitter: u32,
    pub lsr: u32,
    pub dlsr: u32,
}

impl ReportBlock {
    fn read(b: &[u8]) -> Self {
        // Sign-extend the 24-bit cumulative loss.
        let lost = (be32(b, 4) << 8) as i32 >> 8;
        ReportBlock {
            ssrc: be32(b, 0),
            fraction_lost: b[4],
            cumulative_lost: lost,
            ext_highest_seq: be32(b, 8),
            jitter: be32(b, 12),
            lsr: be32(b, 16),
            dlsr: be32(b, 20),
        }
    }

    fn write(&self, out: &mut [u8]) {
        let lost = self.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as u32 & 0x00ff_ffff;
        out[0..4].copy_from_slice(&self.ssrc.to_be_bytes());
        out[4..8].copy_from_slice(&((u32::from(self.fraction_lost) << 24) | lost).to_be_bytes());
        out[8..12].copy_from_slice(&self.ext_highest_seq.to_be_bytes());
        out[12..16].copy_from_slice(&self.jitter.to_be_bytes());
        out[16..20].copy_from_slice(&self.lsr.to_be_bytes());
        out[20..24].copy_from_slice(&self.dlsr.to_be_bytes());
    }
}

/// Iterator over the report blocks of an SR or RR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlocks<'a> {
    data: &'a [u8],
}

impl Iterator for ReportBlocks<'_> {
    type Item = ReportBlock;
    fn next(&mut self) -> Option<ReportBlock> {
        let b = self.data.get(..REPORT_BLOCK_LEN)?;
        self.data = &self.data[REPORT_BLOCK_LEN..];
        Some(ReportBlock::read(b))
    }
}

/// Iterator over a list of 32-bit SSRCs (BYE, REMB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SsrcList<'a> {
    data: &'a [u8],
}

impl Iterator for SsrcList<'_> {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        let b = self.data.get(..4)?;
        self.data = &self.data[4..];
        Some(be32(b, 0))
    }
}

/// Sequence numbers requested by a generic NACK, expanded from its PID+BLP pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NackSeqs<'a> {
    pairs: &'a [u8],
    /// Bit index within the current pair: 0 is the PID itself, 1..=16 the BLP bits.
    bit: u8,
}

impl Iterator for NackSeqs<'_> {
    type Item = u16;
    fn next(&mut self) -> Option<u16> {
        loop {
            let pair = self.pairs.get(..4)?;
            let pid = be16(pair, 0);
            let blp = be16(pair, 2);
            let bit = self.bit;
            if bit > 16 {
                self.pairs = &self.pairs[4..];
                self.bit = 0;
                continue;
            }
            self.bit += 1;
            if bit == 0 {
                return Some(pid);
            }
            if blp & (1 << (bit - 1)) != 0 {
                return Some(pid.wrapping_add(u16::from(bit)));
            }
        }
    }
}

/// Iterator over FIR entries `(ssrc, command sequence number)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirEntries<'a> {
    data: &'a [u8],
}

impl Iterator for FirEntries<'_> {
    type Item = (u32, u8);
    fn next(&mut self) -> Option<(u32, u8)> {
        let b = self.data.get(..8)?;
        self.data = &self.data[8..];
        Some((be32(b, 0), b[4]))
    }
}

/// Iterator over SDES chunks, validated when the packet was parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdesChunks<'a> {
    data: &'a [u8],
    remaining: u8,
}

/// One SDES chunk: an SSRC and its items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdesChunk<'a> {
    pub ssrc: u32,
    pub items: SdesItems<'a>,
}

impl<'a> SdesChunk<'a> {
    /// The CNAME item's text, if present.
    pub fn cname(&self) -> Option<&'a [u8]> {
        self.items.clone().find(|(t, _)| *t == 1).map(|(_, v)| v)
    }
}

/// Iterator over `(item type, value)` of one SDES chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdesItems<'a> {
    data: &'a [u8],
}

impl<'a> Iterator for SdesItems<'a> {
    type Item = (u8, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let kind = *self.data.first()?;
        if kind == 0 {
            return None;
        }
        let len = *self.data.get(1)? as usize;
        let value = self.data.get(2..2 + len)?;
        self.data = &self.data[2 + len..];
        Some((kind, value))
    }
}

/// Walks one SDES chunk at the start of `data`: `(items length, total chunk length)`.
fn sdes_chunk_extent(data: &[u8]) -> Option<(usize, usize)> {
    if data.len() < 4 {
        return None;
    }
    let mut p = 4;
    loop {
        let kind = *data.get(p)?;
        if kind == 0 {
            // A null octet ends the list, then null padding to the next 32-bit boundary.
            let end = (p + 1).div_ceil(4) * 4;
            return (end <= data.len()).then_some((p - 4, end));
        }
        let len = *data.get(p + 1)? as usize;
        p += 2 + len;
    }
}

impl<'a> Iterator for SdesChunks<'a> {
    type Item = SdesChunk<'a>;
    fn next(&mut self) -> Option<SdesChunk<'a>> {
        if self.remaining == 0 {
            return None;
        }
        let (items_len, total) = sdes_chunk_extent(self.data)?;
        let chunk = SdesChunk { ssrc: be32(self.data, 0), items: SdesItems { data: &self.data[4..4 + items_len] } };
        self.data = &self.data[total..];
        self.remaining -= 1;
        Some(chunk)
    }
}

/// One RTCP packet of a compound, as a view over the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket<'a> {
    SenderReport {
        ssrc: u32,
        ntp_time: u64,
        rtp_time: u32,
        packet_count: u32,
        octet_count: u32,
        reports: ReportBlocks<'a>,
    },
    ReceiverReport {
        ssrc: u32,
        reports: ReportBlocks<'a>,
    },
    Sdes {
        chunks: SdesChunks<'a>,
    },
    Bye {
        ssrcs: SsrcList<'a>,
        reason: Option<&'a [u8]>,
    },
    Nack {
        sender_ssrc: u32,
        media_ssrc: u32,
        lost: NackSeqs<'a>,
    },
    Pli {
        sender_ssrc: u32,
        media_ssrc: u32,
    },
    Fir {
        sender_ssrc: u32,
        entries: FirEntries<'a>,
    },
    Remb {
        sender_ssrc: u32,
        bitrate_bps: u64,
        ssrcs: SsrcList<'a>,
    },
    TransportCc(TwccFeedback<'a>),
    /// Anything else (APP, XR, RRR, other feedback formats): the body after the header.
    Unknown {
        packet_type: u8,
        fmt: u8,
        body: &'a [u8],
    },
}

/// Walks a compound RTCP packet. Ends after the first error.
pub fn packets(buf: &[u8]) -> Packets<'_> {
    Packets { buf, done: false }
}

/// Iterator returned by [`packets`].
#[derive(Debug, Clone)]
pub struct Packets<'a> {
    buf: &'a [u8],
    done: bool,
}

impl<'a> Iterator for Packets<'a> {
    type Item = Result<RtcpPacket<'a>, RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.buf.is_empty() {
            return None;
        }
        let r = self.next_packet();
        if r.is_err() {
            self.done = true;
        }
        Some(r)
    }
}

impl<'a> Packets<'a> {
    fn next_packet(&mut self) -> Result<RtcpPacket<'a>, RtcpError> {
        let buf = self.buf;
        if buf.len() < 4 {
            return Err(RtcpError::TooShort(buf.len()));
        }
        let version = buf[0] >> 6;
        if version != 2 {
            return Err(RtcpError::BadVersion(version));
        }
        let len = 4 * (be16(buf, 2) as usize + 1);
        if len > buf.len() {
            return Err(RtcpError::LengthOverrun { declared: len, available: buf.len() });
        }
        let packet = &buf[..len];
        self.buf = &buf[len..];
        let mut end = len;
        if packet[0] & 0x20 != 0 {
            let pad = packet[len - 1];
            if pad == 0 || pad as usize > len - 4 {
                return Err(RtcpError::BadPadding(pad));
            }
            end -= pad as usize;
        }
        parse_body(packet[0] & 0x1f, packet[1], &packet[4..end])
    }
}

fn parse_body(count: u8, packet_type: u8, body: &[u8]) -> Result<RtcpPacket<'_>, RtcpError> {
    let truncated = RtcpError::Truncated { packet_type, fmt: count };
    let blocks = |at: usize| -> Result<ReportBlocks<'_>, RtcpError> {
        let end = at + REPORT_BLOCK_LEN * count as usize;
        // Bytes past the blocks are profile-specific extensions, which we ignore.
        let data = body.get(at..end).ok_or(truncated)?;
        Ok(ReportBlocks { data })
    };
    match packet_type {
        PT_SR => {
            if body.len() < 24 {
                return Err(truncated);
            }
            Ok(RtcpPacket::SenderReport {
                ssrc: be32(body, 0),
                ntp_time: (u64::from(be32(body, 4)) << 32) | u64::from(be32(body, 8)),
                rtp_time: be32(body, 12),
                packet_count: be32(body, 16),
                octet_count: be32(body, 20),
                reports: blocks(24)?,
            })
        }
        PT_RR => {
            if body.len() < 4 {
                return Err(truncated);
            }
            Ok(RtcpPacket::ReceiverReport { ssrc: be32(body, 0), reports: blocks(4)? })
        }
        PT_SDES => {
            let mut rest = body;
            for _ in 0..count {
                let (_, total) = sdes_chunk_extent(rest).ok_or(truncated)?;
                rest = &rest[total..];
            }
            Ok(RtcpPacket::Sdes { chunks: SdesChunks { data: body, remaining: count } })
        }
        PT_BYE => {
            let n = 4 * count as usize;
            let data = body.get(..n).ok_or(truncated)?;
            let reason = body.get(n).and_then(|&l| body.get(n + 1..n + 1 + l as usize));
            Ok(RtcpPacket::Bye { ssrcs: SsrcList { data }, reason })
        }
        PT_RTPFB | PT_PSFB => {
            if body.len() < 8 {
                return Err(truncated);
            }
            let sender_ssrc = be32(body, 0);
            let media_ssrc = be32(body, 4);
            let fci = &body[8..];
            match (packet_type, count) {
                (PT_RTPFB, 1) => Ok(RtcpPacket::Nack {
                    sender_ssrc,
                    media_ssrc,
                    lost: NackSeqs { pairs: &fci[..fci.len() / 4 * 4], bit: 0 },
                }),
                (PT_RTPFB, 15) => Ok(RtcpPacket::TransportCc(TwccFeedback::parse(body)?)),
                (PT_PSFB, 1) => Ok(RtcpPacket::Pli { sender_ssrc, media_ssrc }),
                (PT_PSFB, 4) => {
                    Ok(RtcpPacket::Fir { sender_ssrc, entries: FirEntries { data: &fci[..fci.len() / 8 * 8] } })
                }
                (PT_PSFB, 15) if fci.starts_with(b"REMB") => {
                    if fci.len() < 8 {
                        return Err(truncated);
                    }
                    let n = fci[4] as usize;
                    let exp = fci[5] >> 2;
                    let mantissa = (u64::from(fci[5] & 3) << 16) | (u64::from(fci[6]) << 8) | u64::from(fci[7]);
                    // An 18-bit mantissa shifted by up to 63 can exceed u64: saturate.
                    let bitrate_bps = u64::try_from(u128::from(mantissa) << exp).unwrap_or(u64::MAX);
                    let data = fci.get(8..8 + 4 * n).ok_or(truncated)?;
                    Ok(RtcpPacket::Remb { sender_ssrc, bitrate_bps, ssrcs: SsrcList { data } })
                }
                _ => Ok(RtcpPacket::Unknown { packet_type, fmt: count, body }),
            }
        }
        _ => Ok(RtcpPacket::Unknown { packet_type, fmt: count, body }),
    }
}

fn need(out: &[u8], len: usize) -> Result<(), RtcpError> {
    if out.len() < len {
        return Err(RtcpError::BufferTooSmall { need: len, have: out.len() });
    }
    Ok(())
}

/// Writes the 4-byte common header of a packet of `total_len` bytes (a multiple of 4).
pub(crate) fn write_common_header(
    out: &mut [u8],
    padding: bool,
    count_or_fmt: u8,
    packet_type: u8,
    total_len: usize,
) -> Result<(), RtcpError> {
    need(out, total_len.max(4))?;
    let words =
        (total_len / 4).checked_sub(1).and_then(|w| u16::try_from(w).ok()).ok_or(RtcpError::TooMany(total_len))?;
    out[0] = 0x80 | if padding { 0x20 } else { 0 } | (count_or_fmt & 0x1f);
    out[1] = packet_type;
    out[2..4].copy_from_slice(&words.to_be_bytes());
    Ok(())
}

/// The sender information of a sender report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SenderInfo {
    pub ssrc: u32,
    pub ntp_time: u64,
    pub rtp_time: u32,
    pub packet_count: u32,
    pub octet_count: u32,
}

/// Writes a sender report with up to 31 report blocks.
pub fn write_sender_report(out: &mut [u8], info: &SenderInfo, reports: &[ReportBlock]) -> Result<usize, RtcpError> {
    if reports.len() > 31 {
        return Err(RtcpError::TooMany(reports.len()));
    }
    let len = 28 + REPORT_BLOCK_LEN * reports.len();
    write_common_header(out, false, reports.len() as u8, PT_SR, len)?;
    out[4..8].copy_from_slice(&info.ssrc.to_be_bytes());
    out[8..16].copy_from_slice(&info.ntp_time.to_be_bytes());
    out[16..20].copy_from_slice(&info.rtp_time.to_be_bytes());
    out[20..24].copy_from_slice(&info.packet_count.to_be_bytes());
    out[24..28].copy_from_slice(&info.octet_count.to_be_bytes());
    for (i, r) in reports.iter().enumerate() {
        r.write(&mut out[28 + REPORT_BLOCK_LEN * i..]);
    }
    Ok(len)
}

/// Writes a receiver report with up to 31 report blocks.
pub fn write_receiver_report(out: &mut [u8], ssrc: u32, reports: &[ReportBlock]) -> Result<usize, RtcpError> {
    if reports.len() > 31 {
        return Err(RtcpError::TooMany(reports.len()));
    }
    let len = 8 + REPORT_BLOCK_LEN * reports.len();
    write_common_header(out, false, reports.len() as u8, PT_RR, len)?;
    out[4..8].copy_from_slice(&ssrc.to_be_bytes());
    for (i, r) in reports.iter().enumerate() {
        r.write(&mut out[8 + REPORT_BLOCK_LEN * i..]);
    }
    Ok(len)
}

fn write_feedback_ssrcs(out: &mut [u8], sender_ssrc: u32, media_ssrc: u32) {
    out[4..8].copy_from_slice(&sender_ssrc.to_be_bytes());
    out[8..12].copy_from_slice(&media_ssrc.to_be_bytes());
}

/// Writes a generic NACK for `seqs`, given in sequence order (wrapping allowed, duplicates
/// skipped): each run within 17 of a PID becomes one PID+BLP pair.
pub fn write_nack(out: &mut [u8], sender_ssrc: u32, media_ssrc: u32, seqs: &[u16]) -> Result<usize, RtcpError> {
    if seqs.is_empty() {
        return Err(RtcpError::EmptyNack);
    }
    need(out, 12)?;
    let mut pos = 12;
    let mut pair: Option<(u16, u16)> = None;
    let flush = |out: &mut [u8], pos: &mut usize, (pid, blp): (u16, u16)| {
        need(out, *pos + 4)?;
        out[*pos..*pos + 2].copy_from_slice(&pid.to_be_bytes());
        out[*pos + 2..*pos + 4].copy_from_slice(&blp.to_be_bytes());
        *pos += 4;
        Ok::<(), RtcpError>(())
    };
    for &seq in seqs {
        match pair {
            Some((pid, ref mut blp)) => {
                let diff = seq.wrapping_sub(pid);
                if diff == 0 {
                    continue;
                }
                if (1..=16).contains(&diff) {
                    *blp |= 1 << (diff - 1);
                } else {
                    flush(out, &mut pos, (pid, *blp))?;
                    pair = Some((seq, 0));
                }
            }
            None => pair = Some((seq, 0)),
        }
    }
    if let Some(p) = pair {
        flush(out, &mut pos, p)?;
    }
    write_common_header(out, false, 1, PT_RTPFB, pos)?;
    write_feedback_ssrcs(out, sender_ssrc, media_ssrc);
    Ok(pos)
}

/// Writes a picture loss indication.
pub fn write_pli(out: &mut [u8], sender_ssrc: u32, media_ssrc: u32) -> Result<usize, RtcpError> {
    write_common_header(out, false, 1, PT_PSFB, 12)?;
    write_feedback_ssrcs(out, sender_ssrc, media_ssrc);
    Ok(12)
}

/// Writes a full intra request (RFC 5104) with `(media ssrc, command sequence number)` entries.
pub fn write_fir(out: &mut [u8], sender_ssrc: u32, entries: &[(u32, u8)]) -> Result<usize, RtcpError> {
    let len = 12 + 8 * entries.len();
    write_common_header(out, false, 4, PT_PSFB, len)?;
    // RFC 5104 4.3.1.2: the media source SSRC field is unused and set to 0.
    write_feedback_ssrcs(out, sender_ssrc, 0);
    for (i, &(ssrc, seq)) in entries.iter().enumerate() {
        let at = 12 + 8 * i;
        out[at..at + 4].copy_from_slice(&ssrc.to_be_bytes());
        out[at + 4..at + 8].copy_from_slice(&[seq, 0, 0, 0]);
    }
    Ok(len)
}

/// Writes a REMB (draft-alvestrand-rmcat-remb) for up to 255 SSRCs. The bitrate is rounded
/// down to what an 18-bit mantissa and 6-bit exponent hold.
pub fn write_remb(out: &mut [u8], sender_ssrc: u32, bitrate_bps: u64, ssrcs: &[u32]) -> Result<usize, RtcpError> {
    if ssrcs.len() > 255 {
        return Err(RtcpError::TooMany(ssrcs.len()));
    }
    let len = 20 + 4 * ssrcs.len();
    write_common_header(out, false, 15, PT_PSFB, len)?;
    write_feedback_ssrcs(out, sender_ssrc, 0);
    let mut mantissa = bitrate_bps;
    let mut exp = 0u32;
    while mantissa >= 1 << 18 {
        mantissa >>= 1;
        exp += 1;
    }
    // exp <= 46 for a u64, so it fits the 6-bit field; mantissa < 2^18.
    let word = (exp << 18) | mantissa as u32;
    out[12..16].copy_from_slice(b"REMB");
    out[16] = ssrcs.len() as u8;
    out[17..20].copy_from_slice(&word.to_be_bytes()[1..]);
    for (i, s) in ssrcs.iter().enumerate() {
        out[20 + 4 * i..24 + 4 * i].copy_from_slice(&s.to_be_bytes());
    }
    Ok(len)
}

/// Writes an SDES packet with one chunk holding a CNAME (at most 255 bytes), which RFC 3550
/// requires in every compound packet.
pub fn write_sdes_cname(out: &mut [u8], ssrc: u32, cname: &[u8]) -> Result<usize, RtcpError> {
    if cname.len() > 255 {
        return Err(RtcpError::TooMany(cname.len()));
    }
    // Chunk: SSRC, CNAME item (type, length, text), then at least one null octet, padded.
    let len = 4 + (4 + 2 + cname.len() + 1).div_ceil(4) * 4;
    write_common_header(out, false, 1, PT_SDES, len)?;
    out[4..8].copy_from_slice(&ssrc.to_be_bytes());
    out[8] = 1;
    out[9] = cname.len() as u8;
    out[10..10 + cname.len()].copy_from_slice(cname);
    out[10 + cname.len()..len].fill(0);
    Ok(len)
}

/// Writes a BYE for up to 31 SSRCs, without a reason.
pub fn write_bye(out: &mut [u8], ssrcs: &[u32]) -> Result<usize, RtcpError> {
    if ssrcs.len() > 31 {
        return Err(RtcpError::TooMany(ssrcs.len()));
    }
    let len = 4 + 4 * ssrcs.len();
    write_common_header(out, false, ssrcs.len() as u8, PT_BYE, len)?;
    for (i, s) in ssrcs.iter().enumerate() {
        out[4 + 4 * i..8 + 4 * i].copy_from_slice(&s.to_be_bytes());
    }
    Ok(len)
}

#[cfg(test)]
// A test that unwraps fails loudly on the input it was given, which is what a test should do.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rand::{Rng, SeedableRng, rngs::SmallRng};
    use rtcp::goodbye::Goodbye;
    use rtcp::payload_feedbacks::full_intra_request::{FirEntry, FullIntraRequest};
    use rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
    use rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
    use rtcp::receiver_report::ReceiverReport;
    use rtcp::reception_report::ReceptionReport;
    use rtcp::sender_report::SenderReport;
    use rtcp::source_description::{SdesType, SourceDescription, SourceDescriptionChunk, SourceDescriptionItem};
    use rtcp::transport_feedbacks::transport_layer_nack::{NackPair, TransportLayerNack};
    use webrtc_util::marshal::Marshal;

    fn their_report(i: u32) -> ReceptionReport {
        ReceptionReport {
            ssrc: 0x1000 + i,
            fraction_lost: 25 + i as u8,
            total_lost: 1000 * i + 7,
            last_sequence_number: 0x0001_fff0 + i,
            jitter: 333,
            last_sender_report: 0xabcd_0000,
            delay: 65536,
        }
    }

    fn ours_from(r: &ReceptionReport) -> ReportBlock {
        ReportBlock {
            ssrc: r.ssrc,
            fraction_lost: r.fraction_lost,
            cumulative_lost: r.total_lost as i32,
            ext_highest_seq: r.last_sequence_number,
            jitter: r.jitter,
            lsr: r.last_sender_report,
            dlsr: r.delay,
        }
    }

    fn only(buf: &[u8]) -> RtcpPacket<'_> {
        let mut it = packets(buf);
        let p = it.next().unwrap().unwrap();
        assert!(it.next().is_none());
        p
    }

    fn unmarshal_one<T: Clone + 'static>(buf: &[u8]) -> T {
        let mut b = Bytes::copy_from_slice(buf);
        let pkts = rtcp::packet::unmarshal(&mut b).unwrap();
        assert_eq!(pkts.len(), 1);
        pkts[0].as_any().downcast_ref::<T>().unwrap().clone()
    }

    #[test]
    fn sender_report_roundtrips_with_rtcp_crate() {
        let sr = SenderReport {
            ssrc: 0xdead_beef,
            ntp_time: 0x0102_0304_0506_0708,
            rtp_time: 90_000,
            packet_count: 12,
            octet_count: 3400,
            reports: vec![their_report(1), their_report(2)],
            profile_extensions: Bytes::new(),
        };
        let buf = sr.marshal().unwrap();
        let RtcpPacket::SenderReport { ssrc, ntp_time, rtp_time, packet_count, octet_count, reports } = only(&buf)
        else {
            panic!("not an SR")
        };
        assert_eq!(
            (ssrc, ntp_time, rtp_time, packet_count, octet_count),
            (0xdead_beef, 0x0102_0304_0506_0708, 90_000, 12, 3400)
        );
        let want: Vec<_> = sr.reports.iter().map(ours_from).collect();
        assert_eq!(reports.collect::<Vec<_>>(), want);

        let mut out = [0u8; 128];
        let info = SenderInfo { ssrc, ntp_time, rtp_time, packet_count, octet_count };
        let n = write_sender_report(&mut out, &info, &want).unwrap();
        assert_eq!(unmarshal_one::<SenderReport>(&out[..n]), sr);
    }

    #[test]
    fn receiver_report_roundtrips_with_rtcp_crate() {
        let rr = ReceiverReport {
            ssrc: 5,
            reports: vec![their_report(0), their_report(3), their_report(9)],
            profile_extensions: Bytes::new(),
        };
        let buf = rr.marshal().unwrap();
        let RtcpPacket::ReceiverReport { ssrc, reports } = only(&buf) else { panic!("not an RR") };
        assert_eq!(ssrc, 5);
        let want: Vec<_> = rr.reports.iter().map(ours_from).collect();
        assert_eq!(reports.collect::<Vec<_>>(), want);
        let mut out = [0u8; 128];
        let n = write_receiver_report(&mut out, 5, &want).unwrap();
        assert_eq!(unmarshal_one::<ReceiverReport>(&out[..n]), rr);
    }

    #[test]
    fn cumulative_lost_is_24_bit_signed() {
        let block = ReportBlock { cumulative_lost: -2, ..Default::default() };
        let mut out = [0u8; 64];
        let n = write_receiver_report(&mut out, 1, &[block]).unwrap();
        assert_eq!(&out[12..16], &[0, 0xff, 0xff, 0xfe]);
        let RtcpPacket::ReceiverReport { mut reports, .. } = only(&out[..n]) else { panic!() };
        assert_eq!(reports.next().unwrap().cumulative_lost, -2);
        let big = ReportBlock { cumulative_lost: i32::MAX, ..Default::default() };
        write_receiver_report(&mut out, 1, &[big]).unwrap();
        assert_eq!(&out[12..16], &[0, 0x7f, 0xff, 0xff]);
    }

    #[test]
    fn nack_roundtrips_with_rtcp_crate() {
        let seqs = [65530u16, 65531, 65535, 0, 4, 9, 100, 116, 117, 117];
        let mut out = [0u8; 64];
        let n = write_nack(&mut out, 1, 2, &seqs).unwrap();
        let theirs = unmarshal_one::<TransportLayerNack>(&out[..n]);
        assert_eq!((theirs.sender_ssrc, theirs.media_ssrc), (1, 2));
        let their_seqs: Vec<u16> = theirs.nacks.iter().flat_map(|p| p.packet_list()).collect();
        let mut want = seqs.to_vec();
        want.dedup();
        assert_eq!(their_seqs, want);
        assert_eq!(theirs.nacks.len(), 3); // 65530.., 100 (+16), 117

        let RtcpPacket::Nack { sender_ssrc, media_ssrc, lost } = only(&out[..n]) else { panic!() };
        assert_eq!((sender_ssrc, media_ssrc), (1, 2));
        assert_eq!(lost.collect::<Vec<_>>(), want);

        let nack = TransportLayerNack {
            sender_ssrc: 3,
            media_ssrc: 4,
            nacks: vec![
                NackPair { packet_id: 10, lost_packets: 0b1000_0000_0000_0101 },
                NackPair { packet_id: 500, lost_packets: 0 },
            ],
        };
        let buf = nack.marshal().unwrap();
        let RtcpPacket::Nack { lost, .. } = only(&buf) else { panic!() };
        assert_eq!(lost.collect::<Vec<_>>(), vec![10, 11, 13, 26, 500]);
    }

    #[test]
    fn pli_and_fir_roundtrip_with_rtcp_crate() {
        let pli = PictureLossIndication { sender_ssrc: 7, media_ssrc: 8 };
        let buf = pli.marshal().unwrap();
        assert_eq!(only(&buf), RtcpPacket::Pli { sender_ssrc: 7, media_ssrc: 8 });
        let mut out = [0u8; 64];
        let n = write_pli(&mut out, 7, 8).unwrap();
        assert_eq!(&out[..n], &buf[..]);

        let fir = FullIntraRequest {
            sender_ssrc: 1,
            media_ssrc: 0,
            fir: vec![FirEntry { ssrc: 11, sequence_number: 3 }, FirEntry { ssrc: 12, sequence_number: 255 }],
        };
        let buf = fir.marshal().unwrap();
        let RtcpPacket::Fir { sender_ssrc, entries } = only(&buf) else { panic!() };
        assert_eq!(sender_ssrc, 1);
        assert_eq!(entries.collect::<Vec<_>>(), vec![(11, 3), (12, 255)]);
        let n = write_fir(&mut out, 1, &[(11, 3), (12, 255)]).unwrap();
        assert_eq!(unmarshal_one::<FullIntraRequest>(&out[..n]), fir);
    }

    #[test]
    fn remb_roundtrips_with_rtcp_crate() {
        for bitrate in [0u64, 1, 262_143, 1_500_000, 8_000_000_000] {
            let remb =
                ReceiverEstimatedMaximumBitrate { sender_ssrc: 9, bitrate: bitrate as f32, ssrcs: vec![1, 2, 3] };
            let buf = remb.marshal().unwrap();
            let RtcpPacket::Remb { sender_ssrc, bitrate_bps, ssrcs } = only(&buf) else { panic!() };
            assert_eq!(sender_ssrc, 9);
            assert_eq!(ssrcs.collect::<Vec<_>>(), vec![1, 2, 3]);
            // Both round down to an 18-bit mantissa.
            assert!(bitrate_bps <= bitrate && bitrate_bps as f64 >= bitrate as f64 * 0.9999);

            let mut out = [0u8; 64];
            let n = write_remb(&mut out, 9, bitrate, &[1, 2, 3]).unwrap();
            let theirs = unmarshal_one::<ReceiverEstimatedMaximumBitrate>(&out[..n]);
            assert_eq!(theirs.ssrcs, vec![1, 2, 3]);
            if bitrate == 0 {
                // rtcp 0.17 decodes a zero mantissa as 2^23 (its float conversion assumes an
                // implicit leading bit); our bytes are the ones it marshals itself for 0.
                assert_eq!(&out[..n], &buf[..]);
                continue;
            }
            assert!(
                (theirs.bitrate as f64 - bitrate as f64).abs() <= bitrate as f64 * 1e-4,
                "{bitrate}: {} {:?}",
                theirs.bitrate,
                &out[..n]
            );
        }
    }

    #[test]
    fn sdes_and_bye_roundtrip_with_rtcp_crate() {
        let mut out = [0u8; 128];
        for cname in [&b""[..], b"a", b"ab", b"abc", b"user@example.org"] {
            let n = write_sdes_cname(&mut out, 42, cname).unwrap();
            assert_eq!(n % 4, 0);
            let theirs = unmarshal_one::<SourceDescription>(&out[..n]);
            assert_eq!(theirs.chunks[0].source, 42);
            assert_eq!(&theirs.chunks[0].items[0].text[..], cname);
            let RtcpPacket::Sdes { mut chunks } = only(&out[..n]) else { panic!() };
            let chunk = chunks.next().unwrap();
            assert_eq!((chunk.ssrc, chunk.cname()), (42, Some(cname)));
        }
        let sdes = SourceDescription {
            chunks: vec![
                SourceDescriptionChunk {
                    source: 1,
                    items: vec![
                        SourceDescriptionItem { sdes_type: SdesType::SdesCname, text: Bytes::from_static(b"one") },
                        SourceDescriptionItem { sdes_type: SdesType::SdesTool, text: Bytes::from_static(b"tool") },
                    ],
                },
                SourceDescriptionChunk {
                    source: 2,
                    items: vec![SourceDescriptionItem {
                        sdes_type: SdesType::SdesCname,
                        text: Bytes::from_static(b"two!"),
                    }],
                },
            ],
        };
        let buf = sdes.marshal().unwrap();
        let RtcpPacket::Sdes { chunks } = only(&buf) else { panic!() };
        let got: Vec<_> = chunks.map(|c| (c.ssrc, c.items.collect::<Vec<_>>())).collect();
        assert_eq!(got, vec![(1, vec![(1, &b"one"[..]), (6, &b"tool"[..])]), (2, vec![(1, &b"two!"[..])])]);

        let bye = Goodbye { sources: vec![5, 6], reason: Bytes::from_static(b"bye") };
        let buf = bye.marshal().unwrap();
        let RtcpPacket::Bye { ssrcs, reason } = only(&buf) else { panic!() };
        assert_eq!(ssrcs.collect::<Vec<_>>(), vec![5, 6]);
        assert_eq!(reason, Some(&b"bye"[..]));
        let n = write_bye(&mut out, &[5, 6]).unwrap();
        assert_eq!(unmarshal_one::<Goodbye>(&out[..n]).sources, vec![5, 6]);
    }

    #[test]
    fn compound_packet_yields_each_packet_in_order() {
        let mut buf = [0u8; 256];
        let mut n = write_receiver_report(&mut buf, 1, &[ReportBlock::default()]).unwrap();
        n += write_sdes_cname(&mut buf[n..], 1, b"cname").unwrap();
        n += write_pli(&mut buf[n..], 1, 2).unwrap();
        n += write_remb(&mut buf[n..], 1, 500_000, &[2]).unwrap();
        // An APP packet we don't interpret.
        buf[n..n + 12].copy_from_slice(&[0x81, PT_APP, 0, 2, 0, 0, 0, 1, b'n', b'a', b'm', b'e']);
        n += 12;
        let kinds: Vec<_> = packets(&buf[..n])
            .map(|p| match p.unwrap() {
                RtcpPacket::ReceiverReport { .. } => "rr",
                RtcpPacket::Sdes { .. } => "sdes",
                RtcpPacket::Pli { .. } => "pli",
                RtcpPacket::Remb { .. } => "remb",
                RtcpPacket::Unknown { packet_type: PT_APP, fmt: 1, .. } => "app",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, vec!["rr", "sdes", "pli", "remb", "app"]);
        // The rtcp crate reads our compound too.
        let mut b = Bytes::copy_from_slice(&buf[..n - 12]);
        assert_eq!(rtcp::packet::unmarshal(&mut b).unwrap().len(), 4);
    }

    #[test]
    fn malformed_compounds_end_with_an_error() {
        let mut buf = [0u8; 64];
        let n = write_pli(&mut buf, 1, 2).unwrap();
        // Truncated length field.
        let mut it = packets(&buf[..n - 1]);
        assert!(matches!(it.next(), Some(Err(RtcpError::LengthOverrun { .. }))));
        assert!(it.next().is_none());
        // Trailing garbage after a good packet.
        let mut it = packets(&buf[..n + 2]);
        assert!(it.next().unwrap().is_ok());
        assert_eq!(it.next(), Some(Err(RtcpError::TooShort(2))));
        assert!(it.next().is_none());
        // Wrong version.
        let mut bad = buf;
        bad[0] = 0x41;
        assert_eq!(packets(&bad[..n]).next(), Some(Err(RtcpError::BadVersion(1))));
        // Padding longer than the packet.
        bad[0] = 0xa1;
        bad[n - 1] = 20;
        assert_eq!(packets(&bad[..n]).next(), Some(Err(RtcpError::BadPadding(20))));
        // RR claiming more blocks than present.
        let m = write_receiver_report(&mut buf, 1, &[]).unwrap();
        buf[0] |= 2;
        assert!(matches!(packets(&buf[..m]).next(), Some(Err(RtcpError::Truncated { packet_type: PT_RR, .. }))));
        // REMB with more SSRCs than present.
        let m = write_remb(&mut buf, 1, 1000, &[1]).unwrap();
        buf[16] = 2;
        assert!(matches!(packets(&buf[..m]).next(), Some(Err(RtcpError::Truncated { .. }))));
        // SDES chunk whose item runs off the end.
        let m = write_sdes_cname(&mut buf, 1, b"abc").unwrap();
        buf[9] = 40;
        assert!(matches!(packets(&buf[..m]).next(), Some(Err(RtcpError::Truncated { .. }))));
        assert!(matches!(write_pli(&mut buf[..11], 1, 2), Err(RtcpError::BufferTooSmall { .. })));
        assert_eq!(write_nack(&mut buf, 1, 2, &[]), Err(RtcpError::EmptyNack));
        assert!(matches!(write_nack(&mut buf[..15], 1, 2, &[1]), Err(RtcpError::BufferTooSmall { .. })));
    }

    #[test]
    fn random_and_truncated_input_never_panics() {
        let mut rng = SmallRng::seed_from_u64(11);
        let mut buf = [0u8; 128];
        let pts = [PT_SR, PT_RR, PT_SDES, PT_BYE, PT_RTPFB, PT_PSFB];
        let mut seen = [0u32; 10];
        for _ in 0..200_000 {
            let len = rng.random_range(0..buf.len());
            rng.fill(&mut buf[..len]);
            // Bias towards plausible headers: version 2, known types, lengths that fit.
            let mut at = 0;
            while at + 4 <= len && rng.random_bool(0.9) {
                buf[at] = 0x80 | (buf[at] & 0x3f);
                buf[at + 1] = pts[rng.random_range(0..pts.len())];
                let words = rng.random_range(0..=((len - at) / 4) as u16);
                buf[at + 2..at + 4].copy_from_slice(&words.saturating_sub(1).to_be_bytes());
                if buf[at + 1] >= PT_RTPFB && rng.random_bool(0.5) {
                    buf[at] = (buf[at] & 0xe0) | [1, 4, 15][rng.random_range(0..3)];
                    if at + 16 <= len {
                        buf[at + 14] = 0; // small transport-cc status counts
                    }
                }
                if buf[at + 1] == PT_PSFB && rng.random_bool(0.3) && at + 16 <= len {
                    buf[at + 12..at + 16].copy_from_slice(b"REMB");
                }
                at += 4 * words.max(1) as usize;
            }
            for p in packets(&buf[..len]) {
                if let Ok(p) = &p {
                    let kind = match p {
                        RtcpPacket::SenderReport { .. } => 0,
                        RtcpPacket::ReceiverReport { .. } => 1,
                        RtcpPacket::Sdes { .. } => 2,
                        RtcpPacket::Bye { .. } => 3,
                        RtcpPacket::Nack { .. } => 4,
                        RtcpPacket::Pli { .. } => 5,
                        RtcpPacket::Fir { .. } => 6,
                        RtcpPacket::Remb { .. } => 7,
                        RtcpPacket::TransportCc(_) => 8,
                        RtcpPacket::Unknown { .. } => 9,
                    };
                    seen[kind] += 1;
                }
                match p {
                    Ok(RtcpPacket::SenderReport { reports, .. }) | Ok(RtcpPacket::ReceiverReport { reports, .. }) => {
                        assert!(reports.count() <= 31)
                    }
                    Ok(RtcpPacket::Sdes { chunks }) => {
                        for c in chunks {
                            let _ = c.items.count();
                        }
                    }
                    Ok(RtcpPacket::Bye { ssrcs, .. }) | Ok(RtcpPacket::Remb { ssrcs, .. }) => {
                        let _ = ssrcs.count();
                    }
                    Ok(RtcpPacket::Nack { lost, .. }) => assert!(lost.count() <= 17 * 32),
                    Ok(RtcpPacket::Fir { entries, .. }) => {
                        let _ = entries.count();
                    }
                    Ok(RtcpPacket::TransportCc(fb)) => {
                        assert_eq!(fb.packets().count(), fb.status_count as usize)
                    }
                    _ => {}
                }
            }
        }
        // Every kind must have been reached for this to test the views' iterators.
        assert!(seen.iter().all(|&n| n > 0), "{seen:?}");
    }
}

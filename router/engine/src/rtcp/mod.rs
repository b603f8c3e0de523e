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

pub mod twcc;

pub use twcc::{TwccError, TwccFeedback, TwccPackets};

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
mod tests;

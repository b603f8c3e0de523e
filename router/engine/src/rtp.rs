//! Zero-copy RTP (RFC 3550) header parsing, RFC 8285 header extensions, in-place rewriting for
//! forwarding, fresh header writing and RTX (RFC 4588) wrapping.
//!
//! Data flow on the router's packet path: a datagram that [`is_rtp_or_rtcp`] and not
//! [`is_rtcp`] is SRTP-unprotected in place, then [`parse`]d into an [`RtpHeader`]. The header
//! holds only values and offsets (it is `Copy` and borrows nothing), so the same buffer can then
//! be rewritten in place ([`set_sequence_number`], [`set_ssrc`], ...) or the header rebuilt with
//! a subscriber's own extension ids ([`write_header`]). Extensions are read by id through
//! [`RtpHeader::find_extension`] and the typed readers ([`read_transport_cc`], [`read_str`], ...),
//! with ids mapped from SDP `a=extmap` lines by [`schema::extensions::ExtensionIds`].
//!
//! We parse ourselves rather than with the `rtp` crate because its unmarshal allocates per packet
//! (a `Vec` of CSRCs and of extensions, `Bytes` payloads); here nothing allocates.
//!
//! ```
//! use router_engine::rtp;
//! let mut pkt = [0x80, 96, 0, 1, 0, 0, 0, 10, 0, 0, 0, 42, 0xde, 0xad];
//! let h = rtp::parse(&pkt).unwrap();
//! assert_eq!((h.sequence_number, h.ssrc), (1, 42));
//! assert_eq!(h.payload(&pkt), &[0xde, 0xad]);
//! rtp::set_ssrc(&mut pkt, 7).unwrap();
//! assert_eq!(rtp::parse(&pkt).unwrap().ssrc, 7);
//! ```

use thiserror::Error;

/// Length of the fixed RTP header (before CSRCs and extensions).
pub const FIXED_HEADER_LEN: usize = 12;
/// RFC 8285 one-byte header extension profile.
pub const PROFILE_ONE_BYTE: u16 = 0xBEDE;
/// RFC 8285 two-byte header extension profile (the low 4 bits are "appbits").
pub const PROFILE_TWO_BYTE: u16 = 0x1000;

/// Why bytes are not an RTP packet, or a header cannot be written.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum RtpError {
    #[error("packet of {0} bytes is shorter than the 12-byte RTP header")]
    TooShort(usize),
    #[error("RTP version {0}, expected 2")]
    BadVersion(u8),
    #[error("CSRC list runs past the end of the packet")]
    CsrcOverrun,
    #[error("header extension runs past the end of the packet")]
    ExtensionOverrun,
    #[error("padding count {0} is zero or larger than the payload")]
    BadPadding(u8),
    #[error("output buffer of {have} bytes is too small, {need} needed")]
    BufferTooSmall { need: usize, have: usize },
    #[error("header extension id {0} cannot be written")]
    BadExtensionId(u8),
    #[error("header extension of {0} bytes is too long")]
    ExtensionTooLong(usize),
    #[error("{0} CSRCs, at most 15 fit")]
    TooManyCsrcs(usize),
    #[error("payload type {0} is above 127")]
    BadPayloadType(u8),
    #[error("RTX payload too short for the original sequence number")]
    RtxTooShort,
}

/// RFC 7983 demultiplexing: true when the first byte says RTP or RTCP (128..=191).
pub fn is_rtp_or_rtcp(buf: &[u8]) -> bool {
    matches!(buf.first(), Some(128..=191))
}

/// RFC 5761 demultiplexing of RTP and RTCP on one port: the second byte (RTCP packet type,
/// which for RTP would be marker + payload type) is in 192..=223. Assumes [`is_rtp_or_rtcp`].
pub fn is_rtcp(buf: &[u8]) -> bool {
    buf.len() >= 2 && is_rtp_or_rtcp(buf) && matches!(buf[1], 192..=223)
}

/// Where the header extension block sits in the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtensionBlock {
    /// The 16-bit "defined by profile" field: 0xBEDE, 0x100x or anything else (RFC 3550).
    pub profile: u16,
    /// Offset of the first extension byte (after the 4-byte profile/length word).
    pub offset: usize,
    /// Length of the extension data in bytes (a multiple of 4).
    pub len: usize,
}

/// A parsed RTP header: values and offsets into the packet it came from, no borrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub version: u8,
    pub padding: bool,
    pub marker: bool,
    pub payload_type: u8,
    pub sequence_number: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub csrc_count: u8,
    /// Bytes from the start of the packet to the payload (fixed header, CSRCs, extensions).
    pub header_len: usize,
    /// Payload bytes, excluding any RTP padding.
    pub payload_len: usize,
    /// Padding bytes at the end (including the count byte), 0 when `padding` is false.
    pub padding_len: u8,
    pub extension: Option<ExtensionBlock>,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses an RTP header, checking the version, that CSRCs and the extension block fit, and
/// that the padding count is sane. Extension contents are not validated here: the iterator
/// stops at the first malformed element instead.
pub fn parse(buf: &[u8]) -> Result<RtpHeader, RtpError> {
    if buf.len() < FIXED_HEADER_LEN {
        return Err(RtpError::TooShort(buf.len()));
    }
    let version = buf[0] >> 6;
    if version != 2 {
        return Err(RtpError::BadVersion(version));
    }
    let padding = buf[0] & 0x20 != 0;
    let has_ext = buf[0] & 0x10 != 0;
    let csrc_count = buf[0] & 0x0f;
    let mut header_len = FIXED_HEADER_LEN + 4 * csrc_count as usize;
    if buf.len() < header_len {
        return Err(RtpError::CsrcOverrun);
    }
    let extension = if has_ext {
        if buf.len() < header_len + 4 {
            return Err(RtpError::ExtensionOverrun);
        }
        let profile = be16(buf, header_len);
        let len = 4 * be16(buf, header_len + 2) as usize;
        let offset = header_len + 4;
        if buf.len() < offset + len {
            return Err(RtpError::ExtensionOverrun);
        }
        header_len = offset + len;
        Some(ExtensionBlock { profile, offset, len })
    } else {
        None
    };
    let mut padding_len = 0u8;
    if padding {
        // RFC 3550 5.1: the last octet counts the padding including itself, so 0 is invalid.
        let count = buf[buf.len() - 1];
        if count == 0 || count as usize > buf.len() - header_len {
            return Err(RtpError::BadPadding(count));
        }
        padding_len = count;
    }
    Ok(RtpHeader {
        version,
        padding,
        marker: buf[1] & 0x80 != 0,
        payload_type: buf[1] & 0x7f,
        sequence_number: be16(buf, 2),
        timestamp: be32(buf, 4),
        ssrc: be32(buf, 8),
        csrc_count,
        header_len,
        payload_len: buf.len() - header_len - padding_len as usize,
        padding_len,
        extension,
    })
}

impl RtpHeader {
    /// The payload (without padding) of the packet this header was parsed from.
    /// Returns an empty slice if `buf` is not that packet and is too short.
    pub fn payload<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        buf.get(self.header_len..self.header_len + self.payload_len).unwrap_or(&[])
    }

    /// The CSRC identifiers of the packet this header was parsed from.
    pub fn csrcs<'a>(&self, buf: &'a [u8]) -> impl Iterator<Item = u32> + 'a {
        let end = FIXED_HEADER_LEN + 4 * self.csrc_count as usize;
        buf.get(FIXED_HEADER_LEN..end)
            .unwrap_or(&[])
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }

    /// The RFC 8285 extensions as `(id, data)`. Yields nothing for other profiles or no block.
    pub fn extensions<'a>(&self, buf: &'a [u8]) -> Extensions<'a> {
        match self.extension {
            Some(ext) => Extensions::new(ext.profile, buf.get(ext.offset..ext.offset + ext.len).unwrap_or(&[])),
            None => Extensions::new(0, &[]),
        }
    }

    /// The data of the first extension with this id.
    pub fn find_extension<'a>(&self, buf: &'a [u8], id: u8) -> Option<&'a [u8]> {
        if id == 0 {
            return None;
        }
        self.extensions(buf).find(|(i, _)| *i == id).map(|(_, d)| d)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExtForm {
    OneByte,
    TwoByte,
    Other,
}

/// Iterator over RFC 8285 header extension elements; stops at the first malformed element.
#[derive(Debug, Clone)]
pub struct Extensions<'a> {
    form: ExtForm,
    data: &'a [u8],
    pos: usize,
}

impl<'a> Extensions<'a> {
    fn new(profile: u16, data: &'a [u8]) -> Self {
        let form = if profile == PROFILE_ONE_BYTE {
            ExtForm::OneByte
        } else if profile & 0xfff0 == PROFILE_TWO_BYTE {
            ExtForm::TwoByte
        } else {
            ExtForm::Other
        };
        Extensions { form, data, pos: 0 }
    }
}

impl<'a> Iterator for Extensions<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let b = *self.data.get(self.pos)?;
            if b == 0 {
                // Padding byte between elements (both forms).
                self.pos += 1;
                continue;
            }
            let (id, start, len) = match self.form {
                ExtForm::Other => return None,
                ExtForm::OneByte => {
                    let id = b >> 4;
                    if id == 15 || id == 0 {
                        // RFC 8285 4.2: id 15 is reserved, stop processing the rest; id 0 is
                        // only padding (a zero byte, handled above), so a length with it is
                        // malformed.
                        self.pos = self.data.len();
                        return None;
                    }
                    (id, self.pos + 1, (b & 0x0f) as usize + 1)
                }
                ExtForm::TwoByte => {
                    let len = *self.data.get(self.pos + 1)? as usize;
                    (b, self.pos + 2, len)
                }
            };
            let Some(value) = self.data.get(start..start + len) else {
                self.pos = self.data.len();
                return None;
            };
            self.pos = start + len;
            return Some((id, value));
        }
    }
}

/// Parses `buf` and returns the data of the first extension with this id: a shortcut for
/// when only one extension is wanted (with a parsed header, use [`RtpHeader::find_extension`]).
pub fn find_extension(buf: &[u8], id: u8) -> Option<&[u8]> {
    parse(buf).ok()?.find_extension(buf, id)
}

/// The transport-wide sequence number (2 bytes, big-endian).
pub fn read_transport_cc(data: &[u8]) -> Option<u16> {
    (data.len() >= 2).then(|| be16(data, 0))
}

/// RFC 6464 audio level: `(voice activity, level in -dBov 0..=127)`.
pub fn read_audio_level(data: &[u8]) -> Option<(bool, u8)> {
    let b = *data.first()?;
    Some((b & 0x80 != 0, b & 0x7f))
}

/// abs-send-time: the raw 24-bit 6.18 fixed-point seconds value (wraps every 64 s).
pub fn read_abs_send_time(data: &[u8]) -> Option<u32> {
    (data.len() >= 3).then(|| u32::from_be_bytes([0, data[0], data[1], data[2]]))
}

/// Converts a 6.18 fixed-point abs-send-time to microseconds within its 64 s period.
pub fn abs_send_time_to_micros(value: u32) -> u64 {
    (u64::from(value & 0x00ff_ffff) * 1_000_000) >> 18
}

/// mid / rid / repaired-rid text. Trailing NULs (seen from some senders that pad the element)
/// are dropped; empty or non-UTF-8 values are rejected.
pub fn read_str(data: &[u8]) -> Option<&str> {
    let end = data.iter().rposition(|&b| b != 0)? + 1;
    std::str::from_utf8(&data[..end]).ok()
}

/// Video orientation (CVO) byte: `(camera is back-facing, horizontal flip, rotation degrees)`.
pub fn read_video_orientation(data: &[u8]) -> Option<(bool, bool, u16)> {
    let b = *data.first()?;
    Some((b & 0x08 != 0, b & 0x04 != 0, u16::from(b & 0x03) * 90))
}

fn check_rewritable(buf: &[u8]) -> Result<(), RtpError> {
    if buf.len() < FIXED_HEADER_LEN {
        return Err(RtpError::TooShort(buf.len()));
    }
    Ok(())
}

/// Rewrites the sequence number in place.
pub fn set_sequence_number(buf: &mut [u8], seq: u16) -> Result<(), RtpError> {
    check_rewritable(buf)?;
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    Ok(())
}

/// Rewrites the timestamp in place.
pub fn set_timestamp(buf: &mut [u8], ts: u32) -> Result<(), RtpError> {
    check_rewritable(buf)?;
    buf[4..8].copy_from_slice(&ts.to_be_bytes());
    Ok(())
}

/// Rewrites the SSRC in place.
pub fn set_ssrc(buf: &mut [u8], ssrc: u32) -> Result<(), RtpError> {
    check_rewritable(buf)?;
    buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
    Ok(())
}

/// Rewrites the payload type in place, keeping the marker bit.
pub fn set_payload_type(buf: &mut [u8], pt: u8) -> Result<(), RtpError> {
    check_rewritable(buf)?;
    if pt > 127 {
        return Err(RtpError::BadPayloadType(pt));
    }
    buf[1] = (buf[1] & 0x80) | pt;
    Ok(())
}

/// Sets or clears the marker bit in place.
pub fn set_marker(buf: &mut [u8], marker: bool) -> Result<(), RtpError> {
    check_rewritable(buf)?;
    buf[1] = (buf[1] & 0x7f) | if marker { 0x80 } else { 0 };
    Ok(())
}

/// Fields of a header written by [`write_header`]. The padding bit is never set: padding
/// belongs to the payload the caller appends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeaderFields<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence_number: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub csrcs: &'a [u32],
}

/// Length [`write_header`] will produce for these CSRCs and extensions.
pub fn header_len(csrc_count: usize, extensions: &[(u8, &[u8])]) -> Result<usize, RtpError> {
    let base = FIXED_HEADER_LEN + 4 * csrc_count;
    if extensions.is_empty() {
        return Ok(base);
    }
    let per_element = match extension_form(extensions)? {
        ExtForm::OneByte => 1,
        _ => 2,
    };
    let data: usize = extensions.iter().map(|(_, d)| per_element + d.len()).sum();
    Ok(base + 4 + data.div_ceil(4) * 4)
}

fn extension_form(extensions: &[(u8, &[u8])]) -> Result<ExtForm, RtpError> {
    let mut one_byte = true;
    for &(id, data) in extensions {
        if id == 0 {
            return Err(RtpError::BadExtensionId(id));
        }
        if data.len() > 255 {
            return Err(RtpError::ExtensionTooLong(data.len()));
        }
        if id > 14 || data.is_empty() || data.len() > 16 {
            one_byte = false;
        }
    }
    Ok(if one_byte { ExtForm::OneByte } else { ExtForm::TwoByte })
}

/// Writes a fresh RTP header with the given extensions into `out` and returns its length.
/// Uses the one-byte form when every id is 1..=14 and every length 1..=16, else the two-byte
/// form; the block is zero-padded to a multiple of 4 bytes.
pub fn write_header(out: &mut [u8], fields: &HeaderFields<'_>, extensions: &[(u8, &[u8])]) -> Result<usize, RtpError> {
    if fields.csrcs.len() > 15 {
        return Err(RtpError::TooManyCsrcs(fields.csrcs.len()));
    }
    if fields.payload_type > 127 {
        return Err(RtpError::BadPayloadType(fields.payload_type));
    }
    let total = header_len(fields.csrcs.len(), extensions)?;
    if out.len() < total {
        return Err(RtpError::BufferTooSmall { need: total, have: out.len() });
    }
    let x = if extensions.is_empty() { 0 } else { 0x10 };
    out[0] = 0x80 | x | fields.csrcs.len() as u8;
    out[1] = (if fields.marker { 0x80 } else { 0 }) | fields.payload_type;
    out[2..4].copy_from_slice(&fields.sequence_number.to_be_bytes());
    out[4..8].copy_from_slice(&fields.timestamp.to_be_bytes());
    out[8..12].copy_from_slice(&fields.ssrc.to_be_bytes());
    let mut pos = FIXED_HEADER_LEN;
    for csrc in fields.csrcs {
        out[pos..pos + 4].copy_from_slice(&csrc.to_be_bytes());
        pos += 4;
    }
    if extensions.is_empty() {
        return Ok(pos);
    }
    let form = extension_form(extensions)?;
    let profile = if form == ExtForm::OneByte { PROFILE_ONE_BYTE } else { PROFILE_TWO_BYTE };
    let words = (total - pos - 4) / 4;
    out[pos..pos + 2].copy_from_slice(&profile.to_be_bytes());
    // `words` fits: at most 255 extensions of 257 bytes would overflow, but the caller's
    // buffer (an MTU) bounds `total` long before that; check anyway rather than truncate.
    let words = u16::try_from(words).map_err(|_| RtpError::ExtensionTooLong(total))?;
    out[pos + 2..pos + 4].copy_from_slice(&words.to_be_bytes());
    pos += 4;
    for &(id, data) in extensions {
        if form == ExtForm::OneByte {
            out[pos] = (id << 4) | (data.len() as u8 - 1);
            pos += 1;
        } else {
            out[pos] = id;
            out[pos + 1] = data.len() as u8;
            pos += 2;
        }
        out[pos..pos + data.len()].copy_from_slice(data);
        pos += data.len();
    }
    out[pos..total].fill(0);
    Ok(total)
}

/// The original sequence number (OSN) at the start of an RTX payload (RFC 4588 4).
pub fn rtx_original_sequence(payload: &[u8]) -> Option<u16> {
    (payload.len() >= 2).then(|| be16(payload, 0))
}

/// What changes between an original packet and its RTX copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtxParams {
    pub ssrc: u32,
    pub payload_type: u8,
    pub sequence_number: u16,
}

/// Builds an RTX packet (RFC 4588) from an original RTP packet: the same header (CSRCs and
/// extensions kept) with the RTX SSRC, payload type and sequence number, then the original
/// sequence number, then the original payload without padding. Returns the length written.
pub fn write_rtx(original: &[u8], rtx: &RtxParams, out: &mut [u8]) -> Result<usize, RtpError> {
    let h = parse(original)?;
    let total = h.header_len + 2 + h.payload_len;
    if out.len() < total {
        return Err(RtpError::BufferTooSmall { need: total, have: out.len() });
    }
    out[..h.header_len].copy_from_slice(&original[..h.header_len]);
    out[0] &= !0x20; // the padding is not copied
    set_payload_type(out, rtx.payload_type)?;
    set_sequence_number(out, rtx.sequence_number)?;
    set_ssrc(out, rtx.ssrc)?;
    out[h.header_len..h.header_len + 2].copy_from_slice(&h.sequence_number.to_be_bytes());
    out[h.header_len + 2..total].copy_from_slice(h.payload(original));
    Ok(total)
}

/// Restores the original packet from an RTX packet: the OSN becomes the sequence number, and
/// the original SSRC and payload type (known from the SDP's `apt` and ssrc-group) are set.
pub fn unwrap_rtx(
    rtx_packet: &[u8],
    original_ssrc: u32,
    original_payload_type: u8,
    out: &mut [u8],
) -> Result<usize, RtpError> {
    let h = parse(rtx_packet)?;
    let payload = h.payload(rtx_packet);
    let osn = rtx_original_sequence(payload).ok_or(RtpError::RtxTooShort)?;
    let total = h.header_len + payload.len() - 2;
    if out.len() < total {
        return Err(RtpError::BufferTooSmall { need: total, have: out.len() });
    }
    out[..h.header_len].copy_from_slice(&rtx_packet[..h.header_len]);
    out[0] &= !0x20;
    set_payload_type(out, original_payload_type)?;
    set_sequence_number(out, osn)?;
    set_ssrc(out, original_ssrc)?;
    out[h.header_len..total].copy_from_slice(&payload[2..]);
    Ok(total)
}

#[cfg(test)]
// A test that unwraps fails loudly on the input it was given, which is what a test should do.
#[allow(clippy::unwrap_used)]
mod tests;

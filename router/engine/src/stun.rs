//! STUN codec (RFC 8489) for the ICE-lite agent: a zero-copy parser and writers into caller buffers.
//!
//! The router only ever *answers* Binding requests, so this module is deliberately small: it
//! understands the attributes ICE uses (USERNAME, MESSAGE-INTEGRITY, FINGERPRINT, PRIORITY,
//! USE-CANDIDATE, ICE-CONTROLLING, ICE-CONTROLLED, XOR-MAPPED-ADDRESS, ERROR-CODE) and treats the
//! rest as opaque.
//!
//! Data flow: the shard classifies a datagram with [`is_stun`] (RFC 7983 first byte + magic
//! cookie), [`parse`] validates the framing once (header, length, every attribute's TLV bounds,
//! FINGERPRINT position and CRC) and records where the interesting attributes are, so every
//! accessor afterwards is O(1) and nothing is allocated. The ICE agent (`crate::ice`) then checks
//! MESSAGE-INTEGRITY with [`StunMessage::verify_integrity`] and writes its answer with
//! [`write_binding_success`] or [`write_binding_error`] straight into the send buffer.
//!
//! ```
//! use router_engine::stun;
//! let tx = [7u8; 12];
//! let mut req = [0u8; 128];
//! let n = stun::write_binding_request(tx, b"local:remote", b"pwd-of-local", 100, Some(1), true, &mut req).unwrap();
//! let msg = stun::parse(&req[..n]).unwrap();
//! assert!(msg.is_binding_request());
//! assert_eq!(msg.username(), Some(&b"local:remote"[..]));
//! assert!(msg.verify_integrity(b"pwd-of-local"));
//!
//! let mut resp = [0u8; 128];
//! let from = "192.0.2.1:4000".parse().unwrap();
//! let n = stun::write_binding_success(msg.transaction_id(), from, b"pwd-of-local", &mut resp).unwrap();
//! let answer = stun::parse(&resp[..n]).unwrap();
//! assert_eq!(answer.xor_mapped_address(), Some(from));
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use aws_lc_rs::{constant_time, hmac};

/// The fixed value in bytes 4..8 of every RFC 5389/8489 message.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Size of the STUN header (type, length, cookie, transaction id).
pub const HEADER_LEN: usize = 20;
/// XOR'd into the CRC-32 of FINGERPRINT so STUN CRCs differ from those of other protocols.
const FINGERPRINT_XOR: u32 = 0x5354_554e;
/// HMAC-SHA1 output size, the value length of MESSAGE-INTEGRITY.
const INTEGRITY_LEN: usize = 20;

/// The Binding method, the only one ICE uses.
pub const METHOD_BINDING: u16 = 0x001;

/// Attribute types this module knows about (RFC 8489 section 18.3, RFC 8445 section 16.1).
pub mod attr {
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    pub const USERNAME: u16 = 0x0006;
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    pub const ERROR_CODE: u16 = 0x0009;
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    pub const REALM: u16 = 0x0014;
    pub const NONCE: u16 = 0x0015;
    pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
    pub const PASSWORD_ALGORITHM: u16 = 0x001D;
    pub const USERHASH: u16 = 0x001E;
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    pub const PRIORITY: u16 = 0x0024;
    pub const USE_CANDIDATE: u16 = 0x0025;
    pub const SOFTWARE: u16 = 0x8022;
    pub const FINGERPRINT: u16 = 0x8028;
    pub const ICE_CONTROLLED: u16 = 0x8029;
    pub const ICE_CONTROLLING: u16 = 0x802A;
}

/// Errors of the STUN codec. Parsing errors mean "drop the datagram and count it".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    #[error("datagram of {len} bytes is shorter than a STUN header")]
    Truncated { len: usize },
    #[error("not a STUN message (top bits or magic cookie)")]
    NotStun,
    #[error("STUN length {declared} is not a multiple of 4")]
    UnalignedLength { declared: usize },
    #[error("STUN length field says {declared} bytes of attributes, datagram carries {actual}")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("attribute {typ:#06x} runs past the end of the message")]
    AttributeOverflow { typ: u16 },
    #[error("attribute {typ:#06x} has a malformed value")]
    BadAttribute { typ: u16 },
    #[error("an attribute follows FINGERPRINT, which must be last")]
    FingerprintNotLast,
    #[error("FINGERPRINT does not match the message")]
    FingerprintMismatch,
    #[error("output buffer too small, {need} bytes needed")]
    BufferTooSmall { need: usize },
    #[error("attribute value of {len} bytes does not fit a STUN attribute")]
    ValueTooLong { len: usize },
    #[error("error code {0} is outside 300..=699")]
    InvalidErrorCode(u16),
}

/// The class bits of the message type (RFC 8489 section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Request,
    Indication,
    SuccessResponse,
    ErrorResponse,
}

impl Class {
    fn bits(self) -> u16 {
        match self {
            Class::Request => 0b00,
            Class::Indication => 0b01,
            Class::SuccessResponse => 0b10,
            Class::ErrorResponse => 0b11,
        }
    }
}

/// Interleave method and class into the 14-bit message type: C1 sits at bit 8, C0 at bit 4.
fn message_type(class: Class, method: u16) -> u16 {
    let c = class.bits();
    let m = method & 0x0FFF;
    (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 1) << 4) | ((c & 2) << 7)
}

/// RFC 7983: a datagram whose first byte is 0..=3 is STUN; the cookie makes it unambiguous.
pub fn is_stun(buf: &[u8]) -> bool {
    buf.len() >= HEADER_LEN && buf[0] <= 3 && read_u32(buf, 4) == Some(MAGIC_COOKIE)
}

/// ERROR-CODE attribute content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode<'a> {
    /// 300..=699, e.g. 401 Unauthorized, 487 Role Conflict.
    pub code: u16,
    /// The reason phrase (UTF-8 checked at parse time).
    pub reason: &'a str,
}

/// A validated view of one STUN message. Offsets point at attribute *values* inside `buf`.
///
/// Only the first occurrence of each attribute counts (RFC 8489 section 14), and attributes
/// after MESSAGE-INTEGRITY other than FINGERPRINT are ignored, as the RFC requires, because they
/// are not covered by the HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StunMessage<'a> {
    buf: &'a [u8],
    msg_type: u16,
    username: Option<(u16, u16)>,
    priority: Option<u32>,
    use_candidate: bool,
    ice_controlling: Option<u64>,
    ice_controlled: Option<u64>,
    xor_mapped: Option<u16>,
    error_code: Option<(u16, u16)>,
    /// Offset of the MESSAGE-INTEGRITY attribute *header*.
    integrity: Option<u16>,
    has_fingerprint: bool,
    unknown_required: Option<u16>,
}

fn read_u16(buf: &[u8], at: usize) -> Option<u16> {
    let b = buf.get(at..at + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn read_u64(buf: &[u8], at: usize) -> Option<u64> {
    let b: [u8; 8] = buf.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

/// Comprehension-required attributes (type < 0x8000) we understand or knowingly ignore.
fn is_known_required(typ: u16) -> bool {
    matches!(
        typ,
        attr::MAPPED_ADDRESS
            | attr::USERNAME
            | attr::MESSAGE_INTEGRITY
            | attr::ERROR_CODE
            | attr::UNKNOWN_ATTRIBUTES
            | attr::REALM
            | attr::NONCE
            | attr::MESSAGE_INTEGRITY_SHA256
            | attr::PASSWORD_ALGORITHM
            | attr::USERHASH
            | attr::XOR_MAPPED_ADDRESS
            | attr::PRIORITY
            | attr::USE_CANDIDATE
    )
}

/// Parse and validate one STUN message occupying exactly `buf` (one UDP datagram).
///
/// Checks: header, length (multiple of 4, equal to the datagram), every attribute's TLV bounds
/// with its padding, the value sizes of the attributes we read, FINGERPRINT last and correct.
/// Padding bytes are not required to be zero (RFC 5769's own vectors pad with spaces).
pub fn parse(buf: &[u8]) -> Result<StunMessage<'_>, StunError> {
    if buf.len() < HEADER_LEN {
        return Err(StunError::Truncated { len: buf.len() });
    }
    let msg_type = read_u16(buf, 0).ok_or(StunError::Truncated { len: buf.len() })?;
    if msg_type & 0xC000 != 0 || read_u32(buf, 4) != Some(MAGIC_COOKIE) {
        return Err(StunError::NotStun);
    }
    let declared = usize::from(read_u16(buf, 2).ok_or(StunError::NotStun)?);
    if declared % 4 != 0 {
        return Err(StunError::UnalignedLength { declared });
    }
    let actual = buf.len() - HEADER_LEN;
    if declared != actual {
        return Err(StunError::LengthMismatch { declared, actual });
    }

    let mut msg = StunMessage {
        buf,
        msg_type,
        username: None,
        priority: None,
        use_candidate: false,
        ice_controlling: None,
        ice_controlled: None,
        xor_mapped: None,
        error_code: None,
        integrity: None,
        has_fingerprint: false,
        unknown_required: None,
    };

    let mut pos = HEADER_LEN;
    while pos < buf.len() {
        if msg.has_fingerprint {
            return Err(StunError::FingerprintNotLast);
        }
        // Declared length is a multiple of 4 and attributes are padded to 4, so a header always
        // fits when pos < len; the get() still guards it.
        let typ = read_u16(buf, pos).ok_or(StunError::AttributeOverflow { typ: 0 })?;
        let len = usize::from(read_u16(buf, pos + 2).ok_or(StunError::AttributeOverflow { typ })?);
        let value_at = pos + 4;
        let padded = (len + 3) & !3;
        let next = value_at + padded;
        if next > buf.len() {
            return Err(StunError::AttributeOverflow { typ });
        }
        let value = &buf[value_at..value_at + len];
        let bad = StunError::BadAttribute { typ };
        // u16 offsets are enough: a datagram carrying a STUN message is at most 20 + 65535 bytes,
        // and value_at < buf.len() <= 65555 is checked below for the values we keep.
        let off = u16::try_from(value_at).map_err(|_| bad)?;

        if typ == attr::FINGERPRINT {
            if len != 4 {
                return Err(bad);
            }
            // The CRC covers everything before the attribute; the length field already counts
            // FINGERPRINT because it is the last attribute.
            let want = read_u32(buf, value_at).ok_or(bad)?;
            let got = crc32fast::hash(&buf[..pos]) ^ FINGERPRINT_XOR;
            if want != got {
                return Err(StunError::FingerprintMismatch);
            }
            msg.has_fingerprint = true;
        } else if msg.integrity.is_some() {
            // After MESSAGE-INTEGRITY only FINGERPRINT matters; anything else is not
            // authenticated and must be ignored (RFC 8489 section 14.5).
        } else {
            match typ {
                attr::MESSAGE_INTEGRITY => {
                    if len != INTEGRITY_LEN {
                        return Err(bad);
                    }
                    msg.integrity = Some(u16::try_from(pos).map_err(|_| bad)?);
                }
                attr::USERNAME if msg.username.is_none() => {
                    // RFC 8489: < 513 bytes. u16 fits because len came from a u16.
                    if len > 512 {
                        return Err(bad);
                    }
                    msg.username = Some((off, len as u16));
                }
                attr::PRIORITY if msg.priority.is_none() => {
                    if len != 4 {
                        return Err(bad);
                    }
                    msg.priority = Some(read_u32(value, 0).ok_or(bad)?);
                }
                attr::USE_CANDIDATE => {
                    if len != 0 {
                        return Err(bad);
                    }
                    msg.use_candidate = true;
                }
                attr::ICE_CONTROLLING if msg.ice_controlling.is_none() => {
                    if len != 8 {
                        return Err(bad);
                    }
                    msg.ice_controlling = Some(read_u64(value, 0).ok_or(bad)?);
                }
                attr::ICE_CONTROLLED if msg.ice_controlled.is_none() => {
                    if len != 8 {
                        return Err(bad);
                    }
                    msg.ice_controlled = Some(read_u64(value, 0).ok_or(bad)?);
                }
                attr::XOR_MAPPED_ADDRESS if msg.xor_mapped.is_none() => {
                    let ok = match value.get(1) {
                        Some(1) => len == 8,
                        Some(2) => len == 20,
                        _ => false,
                    };
                    if !ok {
                        return Err(bad);
                    }
                    msg.xor_mapped = Some(off);
                }
                attr::ERROR_CODE if msg.error_code.is_none() => {
                    if !(4..=4 + 763).contains(&len) {
                        return Err(bad);
                    }
                    let class = u16::from(value[2] & 0x07);
                    let number = u16::from(value[3]);
                    if !(3..=6).contains(&class) || number > 99 {
                        return Err(bad);
                    }
                    if std::str::from_utf8(&value[4..]).is_err() {
                        return Err(bad);
                    }
                    msg.error_code = Some((off, len as u16));
                }
                t if t < 0x8000 && !is_known_required(t) && msg.unknown_required.is_none() => {
                    msg.unknown_required = Some(t);
                }
                _ => {}
            }
        }
        pos = next;
    }
    Ok(msg)
}

impl<'a> StunMessage<'a> {
    /// The whole message as received.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// The 12-bit method (1 = Binding).
    pub fn method(&self) -> u16 {
        let t = self.msg_type;
        (t & 0x000F) | ((t & 0x00E0) >> 1) | ((t & 0x3E00) >> 2)
    }

    pub fn class(&self) -> Class {
        match ((self.msg_type >> 7) & 0b10) | ((self.msg_type >> 4) & 0b01) {
            0b00 => Class::Request,
            0b01 => Class::Indication,
            0b10 => Class::SuccessResponse,
            _ => Class::ErrorResponse,
        }
    }

    pub fn is_binding_request(&self) -> bool {
        self.class() == Class::Request && self.method() == METHOD_BINDING
    }

    pub fn transaction_id(&self) -> [u8; 12] {
        let mut tx = [0u8; 12];
        // parse() guaranteed buf.len() >= HEADER_LEN.
        tx.copy_from_slice(&self.buf[8..HEADER_LEN]);
        tx
    }

    /// USERNAME value, for ICE "receiver-ufrag:sender-ufrag".
    pub fn username(&self) -> Option<&'a [u8]> {
        let (off, len) = self.username?;
        self.buf.get(usize::from(off)..usize::from(off) + usize::from(len))
    }

    pub fn use_candidate(&self) -> bool {
        self.use_candidate
    }

    pub fn ice_controlling(&self) -> Option<u64> {
        self.ice_controlling
    }

    pub fn ice_controlled(&self) -> Option<u64> {
        self.ice_controlled
    }

    pub fn priority(&self) -> Option<u32> {
        self.priority
    }

    /// Whether MESSAGE-INTEGRITY is present (it may still be wrong).
    pub fn has_integrity(&self) -> bool {
        self.integrity.is_some()
    }

    /// Whether a (valid: parse checked it) FINGERPRINT is present.
    pub fn has_fingerprint(&self) -> bool {
        self.has_fingerprint
    }

    /// The first comprehension-required attribute type this module does not understand, for a
    /// 420 answer.
    pub fn unknown_comprehension_required(&self) -> Option<u16> {
        self.unknown_required
    }

    /// XOR-MAPPED-ADDRESS decoded with the cookie (and transaction id for IPv6).
    pub fn xor_mapped_address(&self) -> Option<SocketAddr> {
        let off = usize::from(self.xor_mapped?);
        self.decode_xor_address(self.buf.get(off..)?)
    }

    /// The value of the first attribute of type `typ` covered by MESSAGE-INTEGRITY (all of
    /// them when there is none): TURN reads its own attributes (RFC 8656) this way.
    pub fn attribute(&self, typ: u16) -> Option<&'a [u8]> {
        let end = self.integrity.map_or(self.buf.len(), usize::from);
        let mut pos = HEADER_LEN;
        while pos + 4 <= end {
            let t = read_u16(self.buf, pos)?;
            let len = usize::from(read_u16(self.buf, pos + 2)?);
            if t == typ {
                return self.buf.get(pos + 4..pos + 4 + len);
            }
            pos += 4 + ((len + 3) & !3);
        }
        None
    }

    /// Any XOR-encoded address attribute (XOR-PEER-ADDRESS, XOR-RELAYED-ADDRESS, ...) of this
    /// message, by type.
    pub fn xor_address(&self, typ: u16) -> Option<SocketAddr> {
        let v = self.attribute(typ)?;
        match (v.get(1), v.len()) {
            (Some(1), 8) | (Some(2), 20) => self.decode_xor_address(v),
            _ => None,
        }
    }

    fn decode_xor_address(&self, v: &[u8]) -> Option<SocketAddr> {
        decode_xor_address(v, &self.transaction_id())
    }

    /// ERROR-CODE, in error responses.
    pub fn error_code(&self) -> Option<ErrorCode<'a>> {
        let (off, len) = self.error_code?;
        let v = self.buf.get(usize::from(off)..usize::from(off) + usize::from(len))?;
        let code = u16::from(v[2] & 0x07) * 100 + u16::from(*v.get(3)?);
        let reason = std::str::from_utf8(v.get(4..)?).ok()?;
        Some(ErrorCode { code, reason })
    }

    /// Check MESSAGE-INTEGRITY with a short-term credential `key` (the ICE password).
    pub fn verify_integrity(&self, key: &[u8]) -> bool {
        self.verify_integrity_with(&hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key))
    }

    /// As [`Self::verify_integrity`], with a key prepared once (the ICE agent keeps one per
    /// session so the per-packet cost is the HMAC only).
    pub fn verify_integrity_with(&self, key: &hmac::Key) -> bool {
        let Some(mi) = self.integrity.map(usize::from) else {
            return false;
        };
        let (Some(header), Some(body), Some(tag)) =
            (self.buf.get(..HEADER_LEN), self.buf.get(HEADER_LEN..mi), self.buf.get(mi + 4..mi + 4 + INTEGRITY_LEN))
        else {
            return false;
        };
        // The HMAC covers the message as it was when MESSAGE-INTEGRITY was appended: the length
        // field counts up to and including MESSAGE-INTEGRITY, not a FINGERPRINT that followed.
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(header);
        let len = (mi + 4 + INTEGRITY_LEN - HEADER_LEN) as u16;
        h[2..4].copy_from_slice(&len.to_be_bytes());
        let mut ctx = hmac::Context::with_key(key);
        ctx.update(&h);
        ctx.update(body);
        let computed = ctx.sign();
        constant_time::verify_slices_are_equal(computed.as_ref(), tag).is_ok()
    }
}

/// An XOR-encoded address attribute's value, decoded with the cookie (and, for IPv6, the
/// message's transaction id `tx`).
pub fn decode_xor_address(v: &[u8], tx: &[u8; 12]) -> Option<SocketAddr> {
    let family = *v.get(1)?;
    let port = read_u16(v, 2)? ^ (MAGIC_COOKIE >> 16) as u16;
    let ip = match family {
        1 => {
            let x = read_u32(v, 4)? ^ MAGIC_COOKIE;
            IpAddr::V4(Ipv4Addr::from(x))
        }
        2 => {
            let mut octets: [u8; 16] = v.get(4..20)?.try_into().ok()?;
            let mask = xor_mask_v6(tx);
            for (o, m) in octets.iter_mut().zip(mask) {
                *o ^= m;
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

fn xor_mask_v6(tx: &[u8; 12]) -> [u8; 16] {
    let mut mask = [0u8; 16];
    mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    mask[4..].copy_from_slice(tx);
    mask
}

/// Builds one STUN message in a caller buffer. Attributes are appended in call order; finish
/// with [`MessageWriter::message_integrity`] and/or [`MessageWriter::fingerprint`], then
/// [`MessageWriter::finish`].
#[derive(Debug)]
pub struct MessageWriter<'o> {
    out: &'o mut [u8],
    pos: usize,
    tx: [u8; 12],
}

impl<'o> MessageWriter<'o> {
    pub fn new(out: &'o mut [u8], class: Class, method: u16, tx: [u8; 12]) -> Result<Self, StunError> {
        let h = out.get_mut(..HEADER_LEN).ok_or(StunError::BufferTooSmall { need: HEADER_LEN })?;
        h[0..2].copy_from_slice(&message_type(class, method).to_be_bytes());
        h[2..4].copy_from_slice(&[0, 0]);
        h[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        h[8..20].copy_from_slice(&tx);
        Ok(Self { out, pos: HEADER_LEN, tx })
    }

    fn set_length(&mut self, body_len: usize) {
        // Callers only pass lengths of attributes that fit (checked in `attribute`), and a
        // buffer of any size yields < 2^16 here because `attribute` refuses to grow past it.
        self.out[2..4].copy_from_slice(&(body_len as u16).to_be_bytes());
    }

    /// Append one attribute with zero padding.
    pub fn attribute(&mut self, typ: u16, value: &[u8]) -> Result<&mut Self, StunError> {
        self.attribute_with(typ, value.len(), |v| v.copy_from_slice(value))
    }

    fn attribute_with(&mut self, typ: u16, len: usize, fill: impl FnOnce(&mut [u8])) -> Result<&mut Self, StunError> {
        let len16 = u16::try_from(len).map_err(|_| StunError::ValueTooLong { len })?;
        let padded = (len + 3) & !3;
        let end = self.pos + 4 + padded;
        if end - HEADER_LEN > usize::from(u16::MAX) - 3 {
            return Err(StunError::ValueTooLong { len });
        }
        let dst = self.out.get_mut(self.pos..end).ok_or(StunError::BufferTooSmall { need: end })?;
        dst[0..2].copy_from_slice(&typ.to_be_bytes());
        dst[2..4].copy_from_slice(&len16.to_be_bytes());
        fill(&mut dst[4..4 + len]);
        dst[4 + len..].fill(0);
        self.pos = end;
        Ok(self)
    }

    pub fn username(&mut self, username: &[u8]) -> Result<&mut Self, StunError> {
        self.attribute(attr::USERNAME, username)
    }

    pub fn priority(&mut self, priority: u32) -> Result<&mut Self, StunError> {
        self.attribute(attr::PRIORITY, &priority.to_be_bytes())
    }

    pub fn ice_controlling(&mut self, tiebreaker: u64) -> Result<&mut Self, StunError> {
        self.attribute(attr::ICE_CONTROLLING, &tiebreaker.to_be_bytes())
    }

    pub fn ice_controlled(&mut self, tiebreaker: u64) -> Result<&mut Self, StunError> {
        self.attribute(attr::ICE_CONTROLLED, &tiebreaker.to_be_bytes())
    }

    pub fn use_candidate(&mut self) -> Result<&mut Self, StunError> {
        self.attribute(attr::USE_CANDIDATE, &[])
    }

    pub fn xor_mapped_address(&mut self, addr: SocketAddr) -> Result<&mut Self, StunError> {
        self.xor_address(attr::XOR_MAPPED_ADDRESS, addr)
    }

    /// Any XOR-encoded address attribute (XOR-PEER-ADDRESS, XOR-RELAYED-ADDRESS, ...).
    pub fn xor_address(&mut self, typ: u16, addr: SocketAddr) -> Result<&mut Self, StunError> {
        let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
        match addr.ip() {
            IpAddr::V4(ip) => {
                let x = u32::from(ip) ^ MAGIC_COOKIE;
                self.attribute_with(typ, 8, |v| {
                    v[0] = 0;
                    v[1] = 1;
                    v[2..4].copy_from_slice(&port.to_be_bytes());
                    v[4..8].copy_from_slice(&x.to_be_bytes());
                })
            }
            IpAddr::V6(ip) => {
                let mask = xor_mask_v6(&self.tx);
                let octets = ip.octets();
                self.attribute_with(typ, 20, |v| {
                    v[0] = 0;
                    v[1] = 2;
                    v[2..4].copy_from_slice(&port.to_be_bytes());
                    for (i, (o, m)) in octets.iter().zip(mask).enumerate() {
                        v[4 + i] = o ^ m;
                    }
                })
            }
        }
    }

    /// ERROR-CODE: `code` in 300..=699; the reason phrase is cut (on a char boundary) to the
    /// RFC's 763-byte limit.
    pub fn error_code(&mut self, code: u16, reason: &str) -> Result<&mut Self, StunError> {
        if !(300..=699).contains(&code) {
            return Err(StunError::InvalidErrorCode(code));
        }
        let mut cut = reason.len().min(763);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        let reason = &reason.as_bytes()[..cut];
        self.attribute_with(attr::ERROR_CODE, 4 + reason.len(), |v| {
            v[0] = 0;
            v[1] = 0;
            v[2] = (code / 100) as u8;
            v[3] = (code % 100) as u8;
            v[4..].copy_from_slice(reason);
        })
    }

    /// UNKNOWN-ATTRIBUTES, for 420 answers.
    pub fn unknown_attributes(&mut self, types: &[u16]) -> Result<&mut Self, StunError> {
        self.attribute_with(attr::UNKNOWN_ATTRIBUTES, types.len() * 2, |v| {
            for (chunk, t) in v.chunks_exact_mut(2).zip(types) {
                chunk.copy_from_slice(&t.to_be_bytes());
            }
        })
    }

    /// Append MESSAGE-INTEGRITY (HMAC-SHA1 keyed with `key`) over everything so far.
    pub fn message_integrity(&mut self, key: &hmac::Key) -> Result<&mut Self, StunError> {
        let end = self.pos + 4 + INTEGRITY_LEN;
        if self.out.len() < end {
            return Err(StunError::BufferTooSmall { need: end });
        }
        // The length field must already count MESSAGE-INTEGRITY when the HMAC is computed.
        self.set_length(end - HEADER_LEN);
        let tag = hmac::sign(key, &self.out[..self.pos]);
        self.attribute_with(attr::MESSAGE_INTEGRITY, INTEGRITY_LEN, |v| v.copy_from_slice(tag.as_ref()))
    }

    /// Append FINGERPRINT; must be the last attribute.
    pub fn fingerprint(&mut self) -> Result<&mut Self, StunError> {
        let end = self.pos + 8;
        if self.out.len() < end {
            return Err(StunError::BufferTooSmall { need: end });
        }
        self.set_length(end - HEADER_LEN);
        let crc = crc32fast::hash(&self.out[..self.pos]) ^ FINGERPRINT_XOR;
        self.attribute_with(attr::FINGERPRINT, 4, |v| v.copy_from_slice(&crc.to_be_bytes()))
    }

    /// Fix the length field and return the message size.
    pub fn finish(mut self) -> usize {
        let pos = self.pos;
        self.set_length(pos - HEADER_LEN);
        pos
    }
}

fn sha1_key(key: &[u8]) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key)
}

/// Binding success response: XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY, FINGERPRINT.
pub fn write_binding_success(
    tx_id: [u8; 12],
    mapped: SocketAddr,
    integrity_key: &[u8],
    out: &mut [u8],
) -> Result<usize, StunError> {
    write_binding_success_with(tx_id, mapped, &sha1_key(integrity_key), out)
}

/// As [`write_binding_success`] with a prepared HMAC key.
pub fn write_binding_success_with(
    tx_id: [u8; 12],
    mapped: SocketAddr,
    key: &hmac::Key,
    out: &mut [u8],
) -> Result<usize, StunError> {
    let mut w = MessageWriter::new(out, Class::SuccessResponse, METHOD_BINDING, tx_id)?;
    w.xor_mapped_address(mapped)?.message_integrity(key)?.fingerprint()?;
    Ok(w.finish())
}

/// Binding error response: ERROR-CODE, MESSAGE-INTEGRITY when the request was authenticated
/// (`integrity_key` is Some), FINGERPRINT.
pub fn write_binding_error(
    tx_id: [u8; 12],
    code: u16,
    reason: &str,
    integrity_key: Option<&[u8]>,
    out: &mut [u8],
) -> Result<usize, StunError> {
    let key = integrity_key.map(sha1_key);
    write_binding_error_with(tx_id, code, reason, key.as_ref(), &[], out)
}

/// As [`write_binding_error`] with a prepared key and an optional UNKNOWN-ATTRIBUTES list (420).
pub fn write_binding_error_with(
    tx_id: [u8; 12],
    code: u16,
    reason: &str,
    key: Option<&hmac::Key>,
    unknown: &[u16],
    out: &mut [u8],
) -> Result<usize, StunError> {
    let mut w = MessageWriter::new(out, Class::ErrorResponse, METHOD_BINDING, tx_id)?;
    w.error_code(code, reason)?;
    if !unknown.is_empty() {
        w.unknown_attributes(unknown)?;
    }
    if let Some(key) = key {
        w.message_integrity(key)?;
    }
    w.fingerprint()?;
    Ok(w.finish())
}

/// A Binding request as a controlling ICE agent sends it (for tests and client tools).
pub fn write_binding_request(
    tx_id: [u8; 12],
    username: &[u8],
    key: &[u8],
    priority: u32,
    controlling_tiebreaker: Option<u64>,
    use_candidate: bool,
    out: &mut [u8],
) -> Result<usize, StunError> {
    let mut w = MessageWriter::new(out, Class::Request, METHOD_BINDING, tx_id)?;
    w.username(username)?.priority(priority)?;
    if let Some(t) = controlling_tiebreaker {
        w.ice_controlling(t)?;
    }
    if use_candidate {
        w.use_candidate()?;
    }
    w.message_integrity(&sha1_key(key))?.fingerprint()?;
    Ok(w.finish())
}

#[cfg(test)]
mod tests;

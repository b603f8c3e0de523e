//! SRTP and SRTCP (RFC 3711, with the AEAD profile of RFC 7714) for the packet hot path.
//!
//! An [`SrtpSession`] holds the keys of **one direction** of a DTLS-SRTP association, derived
//! once from the master key and salt (RFC 3711 4.3, AES-CM PRF, kdr 0), plus the per-SSRC state
//! that the packet transforms need: the rollover counter (ROC) and replay window of each SSRC
//! received, the highest index of each SSRC sent, and the SRTCP index of each SSRC sent.
//! After the DTLS handshake, [`sessions_from_dtls_keying_material`] splits the exported keying
//! material (RFC 5764 4.2) into the outbound (protect) and inbound (unprotect) sessions.
//!
//! Data flow in the router: a packet from a publisher is unprotected in place in its receive
//! buffer ([`SrtpSession::unprotect_rtp`]); for each subscriber the forwarder rewrites the header
//! and protects straight into a send buffer ([`SrtpSession::protect_rtp_into`], or
//! [`SrtpSession::protect_rtp_split_into`] with the rewritten header kept apart from the shared
//! payload), so the payload is copied exactly once per subscriber, by the cipher itself.
//!
//! Nothing here allocates per packet: keys are aws-lc-rs objects built once (an AES-GCM
//! `LessSafeKey`, or an AES-CTR key plus an HMAC-SHA1 key), nonces and IVs live on the stack,
//! and the per-SSRC state sits in a small sorted map that grows only when a new SSRC appears
//! (bounded, [`DEFAULT_MAX_SSRCS`] by default). Receive-side state is committed only after a
//! packet authenticates, so forged packets can neither advance a ROC nor fill the map.
//!
//! ```
//! use router_engine::srtp::{SrtpProfile, SrtpSession};
//!
//! let profile = SrtpProfile::AeadAes128Gcm;
//! let (key, salt) = ([1u8; 16], [2u8; 12]);
//! let mut sender = SrtpSession::new(profile, &key, &salt)?;
//! let mut receiver = SrtpSession::new(profile, &key, &salt)?;
//!
//! // A 12-byte RTP header (V=2, PT 96, seq 1, ts 0, SSRC 0x1234) and a 4-byte payload.
//! let rtp = [0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 1, 2, 3, 4];
//! let mut buf = [0u8; 64];
//! buf[..rtp.len()].copy_from_slice(&rtp);
//! let protected_len = sender.protect_rtp(&mut buf, rtp.len())?;
//! assert_eq!(protected_len, rtp.len() + profile.rtp_overhead());
//!
//! let plain_len = receiver.unprotect_rtp(&mut buf[..protected_len])?;
//! assert_eq!(&buf[..plain_len], &rtp);
//! # Ok::<(), router_engine::srtp::SrtpError>(())
//! ```

mod kdf;
mod state;
#[cfg(test)]
mod tests;

use aws_lc_rs::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{AES_128, EncryptingKey, EncryptionContext, UnboundCipherKey};
use aws_lc_rs::{constant_time, hmac};

use kdf::Kdf;
use state::{ReplayWindow, SsrcMap};

/// Default bound on the SSRCs one session tracks per kind (RTP send, RTP receive, RTCP send,
/// RTCP receive). A subscriber in a large room receives many streams on one session, so this is
/// generous; lower it with [`SrtpSession::with_max_ssrcs`].
pub const DEFAULT_MAX_SSRCS: usize = 256;

const GCM_TAG_LEN: usize = 16;
const HMAC_SHA1_80_TAG_LEN: usize = 10;
const SRTCP_INDEX_LEN: usize = 4;
/// The part of an RTCP packet SRTCP leaves in clear: V/P/RC, PT, length, sender SSRC.
const RTCP_CLEAR_HEADER_LEN: usize = 8;
const RTP_FIXED_HEADER_LEN: usize = 12;
/// The SRTCP index is 31 bits; the top bit of its word is the E (encrypted) flag.
const MAX_SRTCP_INDEX: u32 = 0x7FFF_FFFF;
const SRTCP_E_FLAG: u32 = 0x8000_0000;

/// An SRTP protection profile negotiated by DTLS-SRTP (RFC 5764, RFC 7714).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SrtpProfile {
    /// `SRTP_AEAD_AES_128_GCM` (RFC 7714): AES-128-GCM, 16-byte tag, 12-byte salt. Preferred.
    AeadAes128Gcm,
    /// `SRTP_AEAD_AES_256_GCM` (RFC 7714): AES-256-GCM. DTLS servers (dimpl among them) pick it
    /// first when the client offers it, as Chromium and str0m do.
    AeadAes256Gcm,
    /// `SRTP_AES128_CM_HMAC_SHA1_80` (RFC 3711): AES-128 counter mode, 80-bit HMAC-SHA1 tag.
    Aes128CmHmacSha1_80,
}

impl SrtpProfile {
    /// Length of the master key in bytes.
    pub const fn master_key_len(self) -> usize {
        match self {
            Self::AeadAes256Gcm => 32,
            _ => 16,
        }
    }

    /// Whether the profile is an AEAD (GCM) one.
    pub const fn is_aead(self) -> bool {
        matches!(self, Self::AeadAes128Gcm | Self::AeadAes256Gcm)
    }

    /// Length of the master salt in bytes.
    pub const fn master_salt_len(self) -> usize {
        match self {
            Self::AeadAes128Gcm | Self::AeadAes256Gcm => 12,
            Self::Aes128CmHmacSha1_80 => 14,
        }
    }

    /// Bytes SRTP adds to an RTP packet (the authentication tag).
    pub const fn rtp_overhead(self) -> usize {
        match self {
            Self::AeadAes128Gcm | Self::AeadAes256Gcm => GCM_TAG_LEN,
            Self::Aes128CmHmacSha1_80 => HMAC_SHA1_80_TAG_LEN,
        }
    }

    /// Bytes SRTCP adds to an RTCP packet (the tag plus the 4-byte E flag and SRTCP index).
    pub const fn rtcp_overhead(self) -> usize {
        self.rtp_overhead() + SRTCP_INDEX_LEN
    }

    /// Bytes of DTLS keying material to export for this profile (RFC 5764 4.2): two master keys
    /// and two master salts.
    pub const fn keying_material_len(self) -> usize {
        2 * (self.master_key_len() + self.master_salt_len())
    }

    /// The profile's id in the DTLS `use_srtp` extension (RFC 5764 4.1.2, RFC 7714 14.2).
    pub const fn dtls_id(self) -> u16 {
        match self {
            Self::AeadAes128Gcm => 0x0007,
            Self::AeadAes256Gcm => 0x0008,
            Self::Aes128CmHmacSha1_80 => 0x0001,
        }
    }

    /// The profile with a DTLS `use_srtp` id, if we support it.
    pub const fn from_dtls_id(id: u16) -> Option<Self> {
        match id {
            0x0007 => Some(Self::AeadAes128Gcm),
            0x0008 => Some(Self::AeadAes256Gcm),
            0x0001 => Some(Self::Aes128CmHmacSha1_80),
            _ => None,
        }
    }
}

/// Why an SRTP or SRTCP operation failed. Every packet error is a value, never a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SrtpError {
    /// The packet is shorter than its header, or than header plus SRTP trailer.
    #[error("packet too short")]
    TooShort,
    /// The packet is not RTP/RTCP version 2.
    #[error("not an RTP/RTCP version 2 packet")]
    BadVersion,
    /// A header handed to `protect_rtp_split_into` is not exactly one RTP header.
    #[error("header length does not match the RTP header it contains")]
    HeaderLength,
    /// The caller's buffer cannot hold the protected packet.
    #[error("buffer too small: need {needed} bytes, have {available}")]
    BufferTooSmall {
        /// Bytes the protected packet needs.
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
    /// The authentication tag did not verify (forged, corrupted, or wrong keys or ROC).
    #[error("authentication failed")]
    Auth,
    /// The packet index was already received, or is too old for the replay window.
    #[error("replayed or too old packet")]
    Replay,
    /// A new SSRC would exceed the session's bound.
    #[error("too many SSRCs in one session (limit {0})")]
    TooManySsrcs(usize),
    /// The packet index is outside the 48-bit SRTP / 31-bit SRTCP space: the keys must be
    /// renewed (RFC 3711 9.2), or a retransmission reaches back before the stream's start.
    #[error("packet index out of range; rekeying required")]
    IndexOutOfRange,
    /// The master key has the wrong length for the profile.
    #[error("master key must be {expected} bytes, got {got}")]
    BadKeyLength {
        /// Length the profile needs.
        expected: usize,
        /// Length given.
        got: usize,
    },
    /// The master salt has the wrong length for the profile.
    #[error("master salt must be {expected} bytes, got {got}")]
    BadSaltLength {
        /// Length the profile needs.
        expected: usize,
        /// Length given.
        got: usize,
    },
    /// The DTLS keying material has the wrong length for the profile.
    #[error("keying material must be {expected} bytes, got {got}")]
    BadKeyingMaterialLength {
        /// Length the profile needs.
        expected: usize,
        /// Length given.
        got: usize,
    },
    /// The crypto library refused an operation that should not fail.
    #[error("crypto library failure")]
    Crypto,
}

/// The transform keys for one of RTP or RTCP in one direction.
// A session holds two of these for its whole life and never an array of them, so the size gap
// between variants costs nothing; boxing would add a pointer chase per packet.
#[allow(clippy::large_enum_variant)]
enum Cipher {
    Gcm { key: LessSafeKey, salt: [u8; 12] },
    CmHmacSha1 { key: EncryptingKey, salt: [u8; 14], auth: hmac::Key },
}

impl std::fmt::Debug for Cipher {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Gcm { .. } => f.write_str("Cipher::Gcm"),
            Self::CmHmacSha1 { .. } => f.write_str("Cipher::CmHmacSha1"),
        }
    }
}

impl Cipher {
    fn derive(
        profile: SrtpProfile,
        kdf: &Kdf<'_>,
        enc_label: u8,
        auth_label: u8,
        salt_label: u8,
    ) -> Result<Self, SrtpError> {
        let mut key_buf = [0u8; 32];
        let key = &mut key_buf[..profile.master_key_len()];
        kdf.derive(enc_label, key)?;
        match profile {
            SrtpProfile::AeadAes128Gcm | SrtpProfile::AeadAes256Gcm => {
                let mut salt = [0u8; 12];
                kdf.derive(salt_label, &mut salt)?;
                let alg = if profile == SrtpProfile::AeadAes256Gcm { &AES_256_GCM } else { &AES_128_GCM };
                let key = UnboundKey::new(alg, key).map_err(|_| SrtpError::Crypto)?;
                Ok(Self::Gcm { key: LessSafeKey::new(key), salt })
            }
            SrtpProfile::Aes128CmHmacSha1_80 => {
                let mut salt = [0u8; 14];
                kdf.derive(salt_label, &mut salt)?;
                let mut auth_key = [0u8; 20];
                kdf.derive(auth_label, &mut auth_key)?;
                let key = UnboundCipherKey::new(&AES_128, key).map_err(|_| SrtpError::Crypto)?;
                Ok(Self::CmHmacSha1 {
                    key: EncryptingKey::ctr(key).map_err(|_| SrtpError::Crypto)?,
                    salt,
                    auth: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &auth_key),
                })
            }
        }
    }

    /// Encrypts `buf[hdr_len..plain_len]` in place and writes the tag after it.
    /// The caller has checked that `buf` holds `plain_len + tag` bytes.
    fn seal_rtp(
        &self,
        buf: &mut [u8],
        hdr_len: usize,
        plain_len: usize,
        ssrc: u32,
        index: u64,
    ) -> Result<(), SrtpError> {
        let (pkt, trailer) = buf.split_at_mut(plain_len);
        match self {
            Self::Gcm { key, salt } => {
                let (hdr, payload) = pkt.split_at_mut(hdr_len);
                let nonce = Nonce::assume_unique_for_key(rtp_gcm_nonce(salt, ssrc, index));
                let tag =
                    key.seal_in_place_separate_tag(nonce, Aad::from(&*hdr), payload).map_err(|_| SrtpError::Crypto)?;
                trailer[..GCM_TAG_LEN].copy_from_slice(tag.as_ref());
            }
            Self::CmHmacSha1 { key, salt, auth } => {
                let iv = cm_iv(salt, ssrc, index);
                key.less_safe_encrypt(&mut pkt[hdr_len..], EncryptionContext::Iv128(iv.into()))
                    .map_err(|_| SrtpError::Crypto)?;
                let roc = ((index >> 16) as u32).to_be_bytes();
                let tag = hmac_sha1(auth, pkt, &roc);
                trailer[..HMAC_SHA1_80_TAG_LEN].copy_from_slice(&tag.as_ref()[..HMAC_SHA1_80_TAG_LEN]);
            }
        }
        Ok(())
    }

    /// Authenticates and decrypts the whole SRTP packet `pkt` in place; returns the plaintext
    /// length. The caller has checked that `pkt` holds the header and the tag.
    fn open_rtp(&self, pkt: &mut [u8], hdr_len: usize, ssrc: u32, index: u64) -> Result<usize, SrtpError> {
        match self {
            Self::Gcm { key, salt } => {
                let end = pkt.len() - GCM_TAG_LEN;
                let (hdr, rest) = pkt.split_at_mut(hdr_len);
                let (ciphertext, tag) = rest.split_at_mut(end - hdr_len);
                let nonce = Nonce::assume_unique_for_key(rtp_gcm_nonce(salt, ssrc, index));
                key.open_in_place_separate_tag(nonce, Aad::from(&*hdr), tag, ciphertext)
                    .map_err(|_| SrtpError::Auth)?;
                Ok(end)
            }
            Self::CmHmacSha1 { key, salt, auth } => {
                let end = pkt.len() - HMAC_SHA1_80_TAG_LEN;
                let (authenticated, tag) = pkt.split_at_mut(end);
                let roc = ((index >> 16) as u32).to_be_bytes();
                let expected = hmac_sha1(auth, authenticated, &roc);
                constant_time::verify_slices_are_equal(&expected.as_ref()[..HMAC_SHA1_80_TAG_LEN], tag)
                    .map_err(|_| SrtpError::Auth)?;
                let iv = cm_iv(salt, ssrc, index);
                key.less_safe_encrypt(&mut authenticated[hdr_len..], EncryptionContext::Iv128(iv.into()))
                    .map_err(|_| SrtpError::Crypto)?;
                Ok(end)
            }
        }
    }

    /// Encrypts `buf[8..plain_len]` in place and appends the SRTCP trailer (RFC 3711 3.4 order:
    /// E|index then tag; RFC 7714 9.1 order: tag then E|index).
    fn seal_rtcp(&self, buf: &mut [u8], plain_len: usize, ssrc: u32, index: u32) -> Result<(), SrtpError> {
        let e_index = (SRTCP_E_FLAG | index).to_be_bytes();
        match self {
            Self::Gcm { key, salt } => {
                let (pkt, trailer) = buf.split_at_mut(plain_len);
                let (hdr, payload) = pkt.split_at_mut(RTCP_CLEAR_HEADER_LEN);
                let aad = rtcp_gcm_aad(hdr, e_index);
                let nonce = Nonce::assume_unique_for_key(rtcp_gcm_nonce(salt, ssrc, index));
                let tag =
                    key.seal_in_place_separate_tag(nonce, Aad::from(aad), payload).map_err(|_| SrtpError::Crypto)?;
                trailer[..GCM_TAG_LEN].copy_from_slice(tag.as_ref());
                trailer[GCM_TAG_LEN..GCM_TAG_LEN + SRTCP_INDEX_LEN].copy_from_slice(&e_index);
            }
            Self::CmHmacSha1 { key, salt, auth } => {
                let iv = cm_iv(salt, ssrc, u64::from(index));
                key.less_safe_encrypt(&mut buf[RTCP_CLEAR_HEADER_LEN..plain_len], EncryptionContext::Iv128(iv.into()))
                    .map_err(|_| SrtpError::Crypto)?;
                let auth_end = plain_len + SRTCP_INDEX_LEN;
                buf[plain_len..auth_end].copy_from_slice(&e_index);
                let tag = hmac_sha1(auth, &buf[..auth_end], &[]);
                buf[auth_end..auth_end + HMAC_SHA1_80_TAG_LEN].copy_from_slice(&tag.as_ref()[..HMAC_SHA1_80_TAG_LEN]);
            }
        }
        Ok(())
    }

    /// Authenticates (and, with the E flag, decrypts) the SRTCP packet `pkt` in place; returns
    /// the RTCP length. The caller has checked that `pkt` holds the header and the trailer.
    fn open_rtcp(&self, pkt: &mut [u8], ssrc: u32, e_index: [u8; 4]) -> Result<usize, SrtpError> {
        let word = u32::from_be_bytes(e_index);
        let encrypted = word & SRTCP_E_FLAG != 0;
        let index = word & MAX_SRTCP_INDEX;
        let len = pkt.len();
        match self {
            Self::Gcm { key, salt } => {
                let end = len - GCM_TAG_LEN - SRTCP_INDEX_LEN;
                let nonce = Nonce::assume_unique_for_key(rtcp_gcm_nonce(salt, ssrc, index));
                if encrypted {
                    let (hdr, rest) = pkt.split_at_mut(RTCP_CLEAR_HEADER_LEN);
                    let (ciphertext, rest) = rest.split_at_mut(end - RTCP_CLEAR_HEADER_LEN);
                    let aad = rtcp_gcm_aad(hdr, e_index);
                    key.open_in_place_separate_tag(nonce, Aad::from(aad), &rest[..GCM_TAG_LEN], ciphertext)
                        .map_err(|_| SrtpError::Auth)?;
                } else {
                    // RFC 7714 9.2: unencrypted SRTCP authenticates the whole packet plus
                    // E|index as AAD over an empty plaintext. Swap tag and E|index in place so
                    // the AAD is one contiguous slice, with no copy to a scratch buffer.
                    pkt[end..].rotate_left(GCM_TAG_LEN);
                    let (aad, tag) = pkt.split_at_mut(len - GCM_TAG_LEN);
                    key.open_in_place_separate_tag(nonce, Aad::from(&*aad), tag, &mut [])
                        .map_err(|_| SrtpError::Auth)?;
                }
                Ok(end)
            }
            Self::CmHmacSha1 { key, salt, auth } => {
                let auth_end = len - HMAC_SHA1_80_TAG_LEN;
                let end = auth_end - SRTCP_INDEX_LEN;
                let (authenticated, tag) = pkt.split_at_mut(auth_end);
                let expected = hmac_sha1(auth, authenticated, &[]);
                constant_time::verify_slices_are_equal(&expected.as_ref()[..HMAC_SHA1_80_TAG_LEN], tag)
                    .map_err(|_| SrtpError::Auth)?;
                if encrypted {
                    let iv = cm_iv(salt, ssrc, u64::from(index));
                    key.less_safe_encrypt(
                        &mut authenticated[RTCP_CLEAR_HEADER_LEN..end],
                        EncryptionContext::Iv128(iv.into()),
                    )
                    .map_err(|_| SrtpError::Crypto)?;
                }
                Ok(end)
            }
        }
    }
}

/// RFC 7714 8.1: `00 00 || SSRC || ROC || SEQ`, XOR the session salt.
fn rtp_gcm_nonce(salt: &[u8; 12], ssrc: u32, index: u64) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
    // ROC || SEQ is the 48-bit packet index.
    iv[6..12].copy_from_slice(&index.to_be_bytes()[2..]);
    xor_in_place(&mut iv, salt);
    iv
}

/// RFC 7714 9.1: `00 00 || SSRC || 00 00 || 0 || SRTCP index`, XOR the session salt.
fn rtcp_gcm_nonce(salt: &[u8; 12], ssrc: u32, index: u32) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
    iv[8..12].copy_from_slice(&index.to_be_bytes());
    xor_in_place(&mut iv, salt);
    iv
}

/// RFC 7714 9.1: the AAD of encrypted SRTCP is the clear 8-byte header then E|index.
fn rtcp_gcm_aad(hdr: &[u8], e_index: [u8; 4]) -> [u8; 12] {
    let mut aad = [0u8; 12];
    aad[..RTCP_CLEAR_HEADER_LEN].copy_from_slice(&hdr[..RTCP_CLEAR_HEADER_LEN]);
    aad[RTCP_CLEAR_HEADER_LEN..].copy_from_slice(&e_index);
    aad
}

/// RFC 3711 4.1.1: `IV = (k_s * 2^16) XOR (SSRC * 2^64) XOR (i * 2^16)`.
fn cm_iv(salt: &[u8; 14], ssrc: u32, index: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[4..8].copy_from_slice(&ssrc.to_be_bytes());
    iv[8..14].copy_from_slice(&index.to_be_bytes()[2..]);
    xor_in_place(&mut iv[..14], salt);
    iv
}

fn xor_in_place(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d ^= s;
    }
}

fn hmac_sha1(key: &hmac::Key, data: &[u8], suffix: &[u8]) -> hmac::Tag {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(data);
    ctx.update(suffix);
    ctx.sign()
}

/// Length of the RTP header at the start of `pkt` (fixed header, CSRCs, header extension).
fn rtp_header_len(pkt: &[u8]) -> Result<usize, SrtpError> {
    if pkt.len() < RTP_FIXED_HEADER_LEN {
        return Err(SrtpError::TooShort);
    }
    if pkt[0] >> 6 != 2 {
        return Err(SrtpError::BadVersion);
    }
    let mut len = RTP_FIXED_HEADER_LEN + 4 * usize::from(pkt[0] & 0x0F);
    if pkt[0] & 0x10 != 0 {
        let ext = pkt.get(len..len + 4).ok_or(SrtpError::TooShort)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
    }
    if len > pkt.len() {
        return Err(SrtpError::TooShort);
    }
    Ok(len)
}

/// SSRC and sequence number of an RTP packet at least 12 bytes long.
fn rtp_ids(pkt: &[u8]) -> (u32, u16) {
    (u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]), u16::from_be_bytes([pkt[2], pkt[3]]))
}

/// Sender SSRC of an RTCP packet; checks the version and the 8-byte minimum.
fn rtcp_ssrc(pkt: &[u8]) -> Result<u32, SrtpError> {
    if pkt.len() < RTCP_CLEAR_HEADER_LEN {
        return Err(SrtpError::TooShort);
    }
    if pkt[0] >> 6 != 2 {
        return Err(SrtpError::BadVersion);
    }
    Ok(u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]))
}

fn check_room(buf_len: usize, plain_len: usize, overhead: usize) -> Result<usize, SrtpError> {
    let needed = plain_len.saturating_add(overhead);
    if buf_len < needed {
        return Err(SrtpError::BufferTooSmall { needed, available: buf_len });
    }
    Ok(needed)
}

/// One direction of an SRTP/SRTCP association: keys plus per-SSRC packet index state.
///
/// Protect and unprotect keep separate per-SSRC state, but a session normally does only one of
/// the two: keys are per direction, and reusing a keystream for two senders would be fatal.
#[derive(Debug)]
pub struct SrtpSession {
    profile: SrtpProfile,
    rtp: Cipher,
    rtcp: Cipher,
    /// Highest index protected per SSRC (for the sender's ROC).
    rtp_send: SsrcMap<ReplayWindow>,
    /// Highest index and replay window per SSRC received.
    rtp_recv: SsrcMap<ReplayWindow>,
    /// Next SRTCP index per SSRC sent.
    rtcp_send: SsrcMap<u32>,
    /// SRTCP replay window per SSRC received.
    rtcp_recv: SsrcMap<ReplayWindow>,
}

/// Splits DTLS-exported keying material (RFC 5764 4.2: client key | server key | client salt |
/// server salt) into `(outbound, inbound)`: the session to protect what we send, and the one to
/// unprotect what we receive.
pub fn sessions_from_dtls_keying_material(
    profile: SrtpProfile,
    material: &[u8],
    we_are_dtls_server: bool,
) -> Result<(SrtpSession, SrtpSession), SrtpError> {
    let expected = profile.keying_material_len();
    if material.len() != expected {
        return Err(SrtpError::BadKeyingMaterialLength { expected, got: material.len() });
    }
    let (k, s) = (profile.master_key_len(), profile.master_salt_len());
    let (client_key, rest) = material.split_at(k);
    let (server_key, rest) = rest.split_at(k);
    let (client_salt, server_salt) = rest.split_at(s);
    let client = SrtpSession::new(profile, client_key, client_salt)?;
    let server = SrtpSession::new(profile, server_key, server_salt)?;
    Ok(if we_are_dtls_server { (server, client) } else { (client, server) })
}

impl SrtpSession {
    /// Derives the session keys for one direction from its master key and salt.
    pub fn new(profile: SrtpProfile, master_key: &[u8], master_salt: &[u8]) -> Result<Self, SrtpError> {
        if master_key.len() != profile.master_key_len() {
            return Err(SrtpError::BadKeyLength { expected: profile.master_key_len(), got: master_key.len() });
        }
        if master_salt.len() != profile.master_salt_len() {
            return Err(SrtpError::BadSaltLength { expected: profile.master_salt_len(), got: master_salt.len() });
        }
        let kdf = Kdf::new(master_key, master_salt)?;
        let rtp = Cipher::derive(profile, &kdf, kdf::LABEL_RTP_ENCRYPTION, kdf::LABEL_RTP_AUTH, kdf::LABEL_RTP_SALT)?;
        let rtcp =
            Cipher::derive(profile, &kdf, kdf::LABEL_RTCP_ENCRYPTION, kdf::LABEL_RTCP_AUTH, kdf::LABEL_RTCP_SALT)?;
        Ok(Self {
            profile,
            rtp,
            rtcp,
            rtp_send: SsrcMap::new(DEFAULT_MAX_SSRCS),
            rtp_recv: SsrcMap::new(DEFAULT_MAX_SSRCS),
            rtcp_send: SsrcMap::new(DEFAULT_MAX_SSRCS),
            rtcp_recv: SsrcMap::new(DEFAULT_MAX_SSRCS),
        })
    }

    /// Sets the bound on SSRCs tracked per kind (RTP/RTCP, send/receive).
    #[must_use]
    pub fn with_max_ssrcs(mut self, max: usize) -> Self {
        self.rtp_send.set_max(max);
        self.rtp_recv.set_max(max);
        self.rtcp_send.set_max(max);
        self.rtcp_recv.set_max(max);
        self
    }

    /// The session's protection profile.
    pub fn profile(&self) -> SrtpProfile {
        self.profile
    }

    /// Drops all state of `ssrc` (a stream ended), freeing its slot. Returns whether any existed.
    pub fn forget_ssrc(&mut self, ssrc: u32) -> bool {
        let a = self.rtp_send.remove(ssrc);
        let b = self.rtp_recv.remove(ssrc);
        let c = self.rtcp_send.remove(ssrc);
        let d = self.rtcp_recv.remove(ssrc);
        a | b | c | d
    }

    /// Rollover counter of the highest packet protected on `ssrc`, if any was.
    pub fn send_roc(&self, ssrc: u32) -> Option<u32> {
        self.rtp_send.lookup(ssrc).map(ReplayWindow::roc)
    }

    /// Rollover counter of the highest packet accepted on `ssrc`, if any was.
    pub fn recv_roc(&self, ssrc: u32) -> Option<u32> {
        self.rtp_recv.lookup(ssrc).map(ReplayWindow::roc)
    }

    /// Protects the RTP packet `buf[..plain_len]` in place and appends the tag; returns the
    /// SRTP length, `plain_len + profile.rtp_overhead()`.
    pub fn protect_rtp(&mut self, buf: &mut [u8], plain_len: usize) -> Result<usize, SrtpError> {
        let plain = buf.get(..plain_len).ok_or(SrtpError::TooShort)?;
        let hdr_len = rtp_header_len(plain)?;
        let (ssrc, seq) = rtp_ids(plain);
        let needed = check_room(buf.len(), plain_len, self.profile.rtp_overhead())?;
        let slot = self.rtp_send.slot(ssrc)?;
        let mut stream = self.rtp_send.get(slot);
        let index = stream.estimate_rtp_index(seq).ok_or(SrtpError::IndexOutOfRange)?;
        self.rtp.seal_rtp(buf, hdr_len, plain_len, ssrc, index)?;
        stream.commit(index);
        self.rtp_send.put(slot, ssrc, stream);
        Ok(needed)
    }

    /// Protects the RTP packet `plain` into `out` (the fan-out path: one decrypted packet, one
    /// encryption per subscriber straight into its send buffer); returns the SRTP length.
    pub fn protect_rtp_into(&mut self, plain: &[u8], out: &mut [u8]) -> Result<usize, SrtpError> {
        let hdr_len = rtp_header_len(plain)?;
        let (header, payload) = plain.split_at(hdr_len);
        self.protect_rtp_split_into(header, payload, out)
    }

    /// Protects the RTP packet `header || payload` into `out`; returns the SRTP length.
    ///
    /// For forwarding, where each subscriber gets its own rewritten header (SSRC, sequence
    /// number, timestamp) but shares the payload: nothing is assembled in between. `header`
    /// must be exactly one RTP header, CSRCs and extension included.
    pub fn protect_rtp_split_into(
        &mut self,
        header: &[u8],
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, SrtpError> {
        let hdr_len = rtp_header_len(header)?;
        if hdr_len != header.len() {
            return Err(SrtpError::HeaderLength);
        }
        let (ssrc, seq) = rtp_ids(header);
        let plain_len = hdr_len + payload.len();
        let needed = check_room(out.len(), plain_len, self.profile.rtp_overhead())?;
        let slot = self.rtp_send.slot(ssrc)?;
        let mut stream = self.rtp_send.get(slot);
        let index = stream.estimate_rtp_index(seq).ok_or(SrtpError::IndexOutOfRange)?;
        out[..hdr_len].copy_from_slice(header);
        match &self.rtp {
            Cipher::Gcm { key, salt } => {
                // The cipher writes the ciphertext straight from the shared payload.
                let (_, rest) = out.split_at_mut(hdr_len);
                let (ciphertext, rest) = rest.split_at_mut(payload.len());
                let nonce = Nonce::assume_unique_for_key(rtp_gcm_nonce(salt, ssrc, index));
                key.seal_out_of_place_scatter(
                    nonce,
                    Aad::from(header),
                    payload,
                    ciphertext,
                    &[],
                    &mut rest[..GCM_TAG_LEN],
                )
                .map_err(|_| SrtpError::Crypto)?;
            }
            Cipher::CmHmacSha1 { .. } => {
                // aws-lc-rs' CTR mode only works in place, so copy then encrypt.
                out[hdr_len..plain_len].copy_from_slice(payload);
                self.rtp.seal_rtp(out, hdr_len, plain_len, ssrc, index)?;
            }
        }
        stream.commit(index);
        self.rtp_send.put(slot, ssrc, stream);
        Ok(needed)
    }

    /// Authenticates and decrypts the SRTP packet `buf` in place; returns the RTP length (the
    /// plaintext is `buf[..len]`). On error, `buf`'s payload is unspecified and no state changes.
    pub fn unprotect_rtp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let tag_len = self.profile.rtp_overhead();
        let auth_len = buf.len().checked_sub(tag_len).ok_or(SrtpError::TooShort)?;
        // The header must end before the tag.
        let hdr_len = rtp_header_len(&buf[..auth_len])?;
        let (ssrc, seq) = rtp_ids(buf);
        let slot = self.rtp_recv.slot(ssrc)?;
        let mut stream = self.rtp_recv.get(slot);
        // An index that cannot exist is older than anything we could accept.
        let index = stream.estimate_rtp_index(seq).ok_or(SrtpError::Replay)?;
        stream.check(index)?;
        let len = self.rtp.open_rtp(buf, hdr_len, ssrc, index)?;
        // Authenticated: now the guessed ROC and the window may move.
        stream.commit(index);
        self.rtp_recv.put(slot, ssrc, stream);
        Ok(len)
    }

    /// Protects the RTCP compound packet `buf[..plain_len]` in place (encrypted, E flag set) and
    /// appends the SRTCP index and tag; returns the SRTCP length.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], plain_len: usize) -> Result<usize, SrtpError> {
        let plain = buf.get(..plain_len).ok_or(SrtpError::TooShort)?;
        let ssrc = rtcp_ssrc(plain)?;
        let needed = check_room(buf.len(), plain_len, self.profile.rtcp_overhead())?;
        let slot = self.rtcp_send.slot(ssrc)?;
        let index = self.rtcp_send.get(slot);
        if index > MAX_SRTCP_INDEX {
            return Err(SrtpError::IndexOutOfRange);
        }
        self.rtcp.seal_rtcp(buf, plain_len, ssrc, index)?;
        self.rtcp_send.put(slot, ssrc, index + 1);
        Ok(needed)
    }

    /// Authenticates (and decrypts) the SRTCP packet `buf` in place; returns the RTCP length.
    /// On error, `buf`'s contents are unspecified and no state changes.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let overhead = self.profile.rtcp_overhead();
        if buf.len() < RTCP_CLEAR_HEADER_LEN + overhead {
            return Err(SrtpError::TooShort);
        }
        let ssrc = rtcp_ssrc(buf)?;
        let at = match self.profile {
            SrtpProfile::AeadAes128Gcm | SrtpProfile::AeadAes256Gcm => buf.len() - SRTCP_INDEX_LEN,
            SrtpProfile::Aes128CmHmacSha1_80 => buf.len() - overhead,
        };
        let e_index = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
        let index = u32::from_be_bytes(e_index) & MAX_SRTCP_INDEX;
        let slot = self.rtcp_recv.slot(ssrc)?;
        let mut stream = self.rtcp_recv.get(slot);
        stream.check(u64::from(index))?;
        let len = self.rtcp.open_rtcp(buf, ssrc, e_index)?;
        stream.commit(u64::from(index));
        self.rtcp_recv.put(slot, ssrc, stream);
        Ok(len)
    }
}

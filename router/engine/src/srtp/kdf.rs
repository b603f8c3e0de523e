//! SRTP key derivation (RFC 3711 section 4.3) with the AES-CM PRF and a key derivation rate of 0.
//!
//! The PRF output for a label is the AES counter-mode keystream under the master key, started at
//! `IV = (label-keyed salt) * 2^16`; so we run aws-lc-rs' AES-CTR over a zeroed buffer instead of
//! encrypting counter blocks one by one. With kdr 0 the "index DIV kdr" term is zero, and the
//! input block is just the master salt with the label XORed into its eighth byte (the label is
//! the high byte of the 56-bit key id that sits right-aligned in the 112-bit salt).
//!
//! AEAD profiles (RFC 7714 section 11) have a 96-bit master salt; it is used left-aligned and
//! zero-padded to 112 bits, which is what libsrtp and every browser do.

use aws_lc_rs::cipher::{AES_128, AES_256, EncryptingKey, EncryptionContext, UnboundCipherKey};

use super::SrtpError;

/// Label of the SRTP encryption key.
pub(crate) const LABEL_RTP_ENCRYPTION: u8 = 0x00;
/// Label of the SRTP authentication key.
pub(crate) const LABEL_RTP_AUTH: u8 = 0x01;
/// Label of the SRTP salt.
pub(crate) const LABEL_RTP_SALT: u8 = 0x02;
/// Label of the SRTCP encryption key.
pub(crate) const LABEL_RTCP_ENCRYPTION: u8 = 0x03;
/// Label of the SRTCP authentication key.
pub(crate) const LABEL_RTCP_AUTH: u8 = 0x04;
/// Label of the SRTCP salt.
pub(crate) const LABEL_RTCP_SALT: u8 = 0x05;

/// The AES-CM PRF keyed with one master key; derives any number of session keys and salts.
pub(crate) struct Kdf<'a> {
    prf: EncryptingKey,
    master_salt: &'a [u8],
}

impl<'a> Kdf<'a> {
    /// `master_key` must be 16 bytes (AES-128) or 32 (AES-256: RFC 7714 derives AES-256-GCM
    /// session keys with the AES-256 PRF), `master_salt` at most 14 bytes.
    pub(crate) fn new(master_key: &[u8], master_salt: &'a [u8]) -> Result<Self, SrtpError> {
        if master_salt.len() > 14 {
            return Err(SrtpError::BadSaltLength { expected: 14, got: master_salt.len() });
        }
        let alg = if master_key.len() == 32 { &AES_256 } else { &AES_128 };
        let key = UnboundCipherKey::new(alg, master_key)
            .map_err(|_| SrtpError::BadKeyLength { expected: 16, got: master_key.len() })?;
        let prf = EncryptingKey::ctr(key).map_err(|_| SrtpError::Crypto)?;
        Ok(Self { prf, master_salt })
    }

    /// Fills `out` with the PRF output for `label` (the first `out.len()` keystream bytes).
    pub(crate) fn derive(&self, label: u8, out: &mut [u8]) -> Result<(), SrtpError> {
        let mut iv = [0u8; 16];
        iv[..self.master_salt.len()].copy_from_slice(self.master_salt);
        iv[7] ^= label;
        out.fill(0);
        self.prf.less_safe_encrypt(out, EncryptionContext::Iv128(iv.into())).map_err(|_| SrtpError::Crypto)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            // The literals below are well-formed hex; a typo fails the test loudly.
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("test vector is hex"))
            .collect()
    }

    /// RFC 3711 appendix B.3: key derivation test vectors.
    #[test]
    fn derives_rfc3711_b3_session_keys() {
        let master_key = hex("E1F97A0D3E018BE0D64FA32C06DE4139");
        let master_salt = hex("0EC675AD498AFEEBB6960B3AABE6");
        let kdf = Kdf::new(&master_key, &master_salt).expect("valid lengths");

        let mut key = [0u8; 16];
        kdf.derive(LABEL_RTP_ENCRYPTION, &mut key).expect("derive");
        assert_eq!(key.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));

        let mut salt = [0u8; 14];
        kdf.derive(LABEL_RTP_SALT, &mut salt).expect("derive");
        assert_eq!(salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));

        // The RFC lists 94 bytes of the authentication keystream; the first 20 are the
        // HMAC-SHA1 key, the rest check that the counter keeps running across blocks.
        let mut auth = [0u8; 94];
        kdf.derive(LABEL_RTP_AUTH, &mut auth).expect("derive");
        assert_eq!(
            auth.to_vec(),
            hex("CEBE321F6FF7716B6FD4AB49AF256A15 6D38BAA48F0A0ACF3C34E2359E6CDBCE
                 E049646C43D9327AD175578EF7227098 6371C10C9A369AC2F94A8C5FBCDDDC25
                 6D6E919A48B610EF17C2041E47403576 6B68642C59BBFC2F34DB60DBDFB2")
        );
    }

    #[test]
    fn labels_give_distinct_keys() {
        let kdf = Kdf::new(&[7u8; 16], &[9u8; 14]).expect("valid lengths");
        let mut seen = Vec::new();
        for label in [
            LABEL_RTP_ENCRYPTION,
            LABEL_RTP_AUTH,
            LABEL_RTP_SALT,
            LABEL_RTCP_ENCRYPTION,
            LABEL_RTCP_AUTH,
            LABEL_RTCP_SALT,
        ] {
            let mut k = [0u8; 16];
            kdf.derive(label, &mut k).expect("derive");
            assert!(!seen.contains(&k));
            seen.push(k);
        }
    }

    #[test]
    fn rejects_bad_master_lengths() {
        assert!(matches!(Kdf::new(&[0u8; 15], &[0u8; 14]), Err(SrtpError::BadKeyLength { .. })));
        assert!(matches!(Kdf::new(&[0u8; 16], &[0u8; 15]), Err(SrtpError::BadSaltLength { .. })));
    }
}

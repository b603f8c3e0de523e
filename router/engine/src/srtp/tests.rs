//! SRTP behaviour, checked against webrtc-srtp 0.17 (an independent implementation) and against
//! hand-built packets for the cases it does not cover.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use webrtc_srtp::context::Context;
use webrtc_srtp::protection_profile::ProtectionProfile;

use super::kdf::{self, Kdf};
use super::*;

const PROFILES: [SrtpProfile; 3] =
    [SrtpProfile::AeadAes128Gcm, SrtpProfile::AeadAes256Gcm, SrtpProfile::Aes128CmHmacSha1_80];

fn theirs_profile(p: SrtpProfile) -> ProtectionProfile {
    match p {
        SrtpProfile::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
        SrtpProfile::AeadAes256Gcm => ProtectionProfile::AeadAes256Gcm,
        SrtpProfile::Aes128CmHmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
    }
}

fn master(profile: SrtpProfile, seed: u8) -> (Vec<u8>, Vec<u8>) {
    let key = (0..profile.master_key_len() as u8).map(|i| i.wrapping_mul(7) ^ seed).collect();
    let salt = (0..profile.master_salt_len() as u8).map(|i| i.wrapping_mul(13) ^ seed.rotate_left(3)).collect();
    (key, salt)
}

fn ours(profile: SrtpProfile, seed: u8) -> SrtpSession {
    let (key, salt) = master(profile, seed);
    SrtpSession::new(profile, &key, &salt).expect("valid master key and salt")
}

fn theirs(profile: SrtpProfile, seed: u8) -> Context {
    let (key, salt) = master(profile, seed);
    Context::new(&key, &salt, theirs_profile(profile), None, None).expect("valid key")
}

/// An RTP packet with `csrcs` CSRCs, an optional one-byte-header extension, random payload.
fn rtp_packet(rng: &mut StdRng, ssrc: u32, seq: u16, csrcs: u8, ext: bool, len: usize) -> Vec<u8> {
    let mut p = vec![0x80 | csrcs, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    if ext {
        p[0] |= 0x10;
    }
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&u32::from(seq).wrapping_mul(960).to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    for c in 0..u32::from(csrcs) {
        p.extend_from_slice(&(0x1000 + c).to_be_bytes());
    }
    if ext {
        // Two words: id 1 (1 byte) + padding, id 3 abs-send-time (3 bytes).
        p.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x02, 0x10, 0xAA, 0x00, 0x00, 0x32, 1, 2, 3]);
    }
    p.extend((0..len).map(|_| rng.random::<u8>()));
    p
}

/// A receiver report from `ssrc` with `blocks` report blocks of random content.
fn rtcp_packet(rng: &mut StdRng, ssrc: u32, blocks: u8) -> Vec<u8> {
    let words = 1 + 6 * u16::from(blocks);
    let mut p = vec![0x80 | blocks, 201];
    p.extend_from_slice(&words.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..24 * usize::from(blocks)).map(|_| rng.random::<u8>()));
    p
}

fn protect(s: &mut SrtpSession, plain: &[u8]) -> Vec<u8> {
    let mut buf = plain.to_vec();
    buf.resize(plain.len() + s.profile().rtp_overhead(), 0);
    let n = s.protect_rtp(&mut buf, plain.len()).expect("protect");
    assert_eq!(n, buf.len());
    buf
}

fn protect_rtcp(s: &mut SrtpSession, plain: &[u8]) -> Vec<u8> {
    let mut buf = plain.to_vec();
    buf.resize(plain.len() + s.profile().rtcp_overhead(), 0);
    let n = s.protect_rtcp(&mut buf, plain.len()).expect("protect");
    assert_eq!(n, buf.len());
    buf
}

fn unprotect(s: &mut SrtpSession, srtp: &[u8]) -> Result<Vec<u8>, SrtpError> {
    let mut buf = srtp.to_vec();
    let n = s.unprotect_rtp(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

fn unprotect_rtcp(s: &mut SrtpSession, srtcp: &[u8]) -> Result<Vec<u8>, SrtpError> {
    let mut buf = srtcp.to_vec();
    let n = s.unprotect_rtcp(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

/// A stream starting near the end of the sequence space, so it wraps (ROC 0 -> 1).
fn wrapping_stream(rng: &mut StdRng, ssrc: u32, count: u16) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let seq = 65_300u16.wrapping_add(i);
            let len = rng.random_range(0..1200);
            rtp_packet(rng, ssrc, seq, (i % 3) as u8, i % 2 == 0, len)
        })
        .collect()
}

#[test]
fn ours_protect_theirs_unprotect_rtp_across_rollover() {
    for profile in PROFILES {
        let mut rng = StdRng::seed_from_u64(1);
        let mut tx = ours(profile, 1);
        let mut rx = theirs(profile, 1);
        for plain in wrapping_stream(&mut rng, 0xCAFE_0001, 600) {
            let srtp = protect(&mut tx, &plain);
            assert_ne!(srtp[..plain.len()], plain[..], "payload must be encrypted");
            let back = rx.decrypt_rtp(&srtp).expect("webrtc-srtp accepts our packet");
            assert_eq!(back.as_ref(), &plain[..], "{profile:?}");
        }
        assert_eq!(tx.send_roc(0xCAFE_0001), Some(1));
    }
}

#[test]
fn theirs_protect_ours_unprotect_rtp_across_rollover() {
    for profile in PROFILES {
        let mut rng = StdRng::seed_from_u64(2);
        let mut tx = theirs(profile, 2);
        let mut rx = ours(profile, 2);
        for plain in wrapping_stream(&mut rng, 0xCAFE_0002, 600) {
            let srtp = tx.encrypt_rtp(&plain).expect("webrtc-srtp protects");
            assert_eq!(srtp.len(), plain.len() + profile.rtp_overhead());
            let back = unprotect(&mut rx, &srtp).expect("we accept webrtc-srtp's packet");
            assert_eq!(back, plain, "{profile:?}");
        }
        assert_eq!(rx.recv_roc(0xCAFE_0002), Some(1));
    }
}

#[test]
fn reordered_packets_across_rollover_are_accepted() {
    for profile in PROFILES {
        let mut rng = StdRng::seed_from_u64(3);
        let mut tx = theirs(profile, 3);
        let mut rx = ours(profile, 3);
        let mut packets: Vec<(Vec<u8>, Vec<u8>)> = wrapping_stream(&mut rng, 77, 500)
            .into_iter()
            .map(|p| (tx.encrypt_rtp(&p).expect("protect").to_vec(), p))
            .collect();
        // Swap neighbours in chunks of up to 8 packets: reorder without exceeding the window.
        for chunk in packets[1..].chunks_mut(8) {
            chunk.reverse();
        }
        for (srtp, plain) in &packets {
            assert_eq!(&unprotect(&mut rx, srtp).expect("accepted"), plain);
        }
        // Every one of them is now a replay.
        for (srtp, _) in packets.iter().rev().take(100) {
            assert_eq!(unprotect(&mut rx, srtp), Err(SrtpError::Replay));
        }
    }
}

#[test]
fn rtcp_cross_checks_both_ways() {
    for profile in PROFILES {
        let mut rng = StdRng::seed_from_u64(4);
        let mut our_tx = ours(profile, 4);
        let mut their_rx = theirs(profile, 4);
        let mut their_tx = theirs(profile, 5);
        let mut our_rx = ours(profile, 5);
        for i in 0..200u32 {
            let plain = rtcp_packet(&mut rng, 0xABC0 + i % 3, (i % 4) as u8);
            let srtcp = protect_rtcp(&mut our_tx, &plain);
            if plain.len() > 8 {
                assert_ne!(srtcp[8..plain.len()], plain[8..], "encrypted");
            }
            let back = their_rx.decrypt_rtcp(&srtcp).expect("webrtc-srtp accepts ours");
            assert_eq!(back.as_ref(), &plain[..], "{profile:?}");

            let srtcp = their_tx.encrypt_rtcp(&plain).expect("webrtc-srtp protects");
            assert_eq!(srtcp.len(), plain.len() + profile.rtcp_overhead());
            let back = unprotect_rtcp(&mut our_rx, &srtcp).expect("we accept theirs");
            assert_eq!(back, plain, "{profile:?}");
        }
    }
}

#[test]
fn srtcp_index_counts_per_ssrc_with_e_flag() {
    for profile in PROFILES {
        let mut rng = StdRng::seed_from_u64(6);
        let mut tx = ours(profile, 6);
        let index_at = |srtcp: &[u8]| {
            let at = match profile {
                SrtpProfile::AeadAes128Gcm | SrtpProfile::AeadAes256Gcm => srtcp.len() - 4,
                SrtpProfile::Aes128CmHmacSha1_80 => srtcp.len() - 14,
            };
            u32::from_be_bytes(srtcp[at..at + 4].try_into().expect("4 bytes"))
        };
        let a0 = protect_rtcp(&mut tx, &rtcp_packet(&mut rng, 1, 1));
        let b0 = protect_rtcp(&mut tx, &rtcp_packet(&mut rng, 2, 1));
        let a1 = protect_rtcp(&mut tx, &rtcp_packet(&mut rng, 1, 1));
        assert_eq!(index_at(&a0), 0x8000_0000);
        assert_eq!(index_at(&b0), 0x8000_0000);
        assert_eq!(index_at(&a1), 0x8000_0001);
    }
}

#[test]
fn protect_into_matches_in_place() {
    for profile in PROFILES {
        let mut rng = StdRng::seed_from_u64(7);
        let mut a = ours(profile, 7);
        let mut b = ours(profile, 7);
        let mut c = ours(profile, 7);
        let mut rx = theirs(profile, 7);
        for plain in wrapping_stream(&mut rng, 0x5151, 300) {
            let in_place = protect(&mut a, &plain);
            let mut out = vec![0u8; 1500];
            let n = b.protect_rtp_into(&plain, &mut out).expect("protect into");
            assert_eq!(&out[..n], &in_place[..]);
            let hdr = rtp_header_len(&plain).expect("valid header");
            let mut out2 = vec![0u8; 1500];
            let n2 = c.protect_rtp_split_into(&plain[..hdr], &plain[hdr..], &mut out2).expect("protect split into");
            assert_eq!(&out2[..n2], &in_place[..]);
            assert_eq!(rx.decrypt_rtp(&out[..n]).expect("valid").as_ref(), &plain[..]);
        }
    }
}

#[test]
fn split_into_rejects_header_with_payload_attached() {
    let mut s = ours(SrtpProfile::AeadAes128Gcm, 8);
    let mut rng = StdRng::seed_from_u64(8);
    let plain = rtp_packet(&mut rng, 1, 1, 0, false, 20);
    let mut out = [0u8; 100];
    assert_eq!(s.protect_rtp_split_into(&plain, &[], &mut out), Err(SrtpError::HeaderLength));
}

#[test]
fn replayed_rtp_and_rtcp_are_rejected() {
    for profile in PROFILES {
        let mut rng = StdRng::seed_from_u64(9);
        let mut tx = ours(profile, 9);
        let mut rx = ours(profile, 9);
        let p1 = protect(&mut tx, &rtp_packet(&mut rng, 5, 100, 0, false, 50));
        let p2 = protect(&mut tx, &rtp_packet(&mut rng, 5, 101, 0, false, 50));
        unprotect(&mut rx, &p1).expect("first");
        assert_eq!(unprotect(&mut rx, &p1), Err(SrtpError::Replay));
        unprotect(&mut rx, &p2).expect("second");
        assert_eq!(unprotect(&mut rx, &p2), Err(SrtpError::Replay));
        assert_eq!(unprotect(&mut rx, &p1), Err(SrtpError::Replay));

        let c1 = protect_rtcp(&mut tx, &rtcp_packet(&mut rng, 5, 1));
        unprotect_rtcp(&mut rx, &c1).expect("first");
        assert_eq!(unprotect_rtcp(&mut rx, &c1), Err(SrtpError::Replay));
    }
}

#[test]
fn packets_older_than_the_window_are_rejected() {
    for profile in PROFILES {
        let mut rng = StdRng::seed_from_u64(10);
        let mut tx = ours(profile, 10);
        let mut rx = ours(profile, 10);
        let old = protect(&mut tx, &rtp_packet(&mut rng, 5, 1000, 0, false, 10));
        for seq in 1001..1200u16 {
            let p = protect(&mut tx, &rtp_packet(&mut rng, 5, seq, 0, false, 10));
            unprotect(&mut rx, &p).expect("in order");
        }
        // Never received, but 199 behind the highest: too old to tell from a replay.
        assert_eq!(unprotect(&mut rx, &old), Err(SrtpError::Replay));
    }
}

#[test]
fn tampered_bytes_fail_authentication() {
    for profile in PROFILES {
        let mut rng = StdRng::seed_from_u64(11);
        let mut tx = ours(profile, 11);
        let mut rx = ours(profile, 11);
        let plain = rtp_packet(&mut rng, 9, 40_000, 2, true, 200);
        assert_eq!(rtp_header_len(&plain), Ok(32), "12 fixed + 2 CSRCs + 12 extension");
        let srtp = protect(&mut tx, &plain);
        for i in 0..srtp.len() {
            let mut bad = srtp.clone();
            bad[i] ^= 0x01;
            let r = unprotect(&mut rx, &bad);
            // Two CSRCs at 12..20, extension header at 20..24 (its length field may make the
            // header overrun the packet instead), extension data at 24..hdr.
            let authenticated = (2..4).contains(&i) || (12..20).contains(&i);
            if authenticated || (24..).contains(&i) {
                // Payload, tag, sequence number, CSRCs and extension are all authenticated.
                assert_eq!(r, Err(SrtpError::Auth), "{profile:?} byte {i}");
            } else {
                assert!(r.is_err(), "{profile:?} byte {i}");
            }
        }
        // Failed packets changed no state: the genuine one still goes through.
        assert_eq!(unprotect(&mut rx, &srtp).expect("genuine"), plain);

        let rtcp = rtcp_packet(&mut rng, 9, 2);
        let srtcp = protect_rtcp(&mut tx, &rtcp);
        for i in 0..srtcp.len() {
            let mut bad = srtcp.clone();
            bad[i] ^= 0x01;
            assert!(unprotect_rtcp(&mut rx, &bad).is_err(), "{profile:?} byte {i}");
        }
        assert_eq!(unprotect_rtcp(&mut rx, &srtcp).expect("genuine"), rtcp);
    }
}

#[test]
fn forged_packet_does_not_advance_roc() {
    for profile in PROFILES {
        let mut rng = StdRng::seed_from_u64(12);
        let mut tx = ours(profile, 12);
        let mut rx = ours(profile, 12);
        let p = protect(&mut tx, &rtp_packet(&mut rng, 3, 65_530, 0, false, 10));
        unprotect(&mut rx, &p).expect("genuine");
        // A forged packet past the wrap would move ROC to 1 if state were committed early.
        let mut forged = rtp_packet(&mut rng, 3, 10, 0, false, 10);
        forged.extend_from_slice(&[0u8; 16][..profile.rtp_overhead()]);
        assert_eq!(unprotect(&mut rx, &forged), Err(SrtpError::Auth));
        assert_eq!(rx.recv_roc(3), Some(0));
        let next = protect(&mut tx, &rtp_packet(&mut rng, 3, 65_531, 0, false, 10));
        unprotect(&mut rx, &next).expect("stream continues at ROC 0");
    }
}

#[test]
fn truncated_packets_error_without_panic() {
    for profile in PROFILES {
        let mut rng = StdRng::seed_from_u64(13);
        let mut tx = ours(profile, 13);
        let plain = rtp_packet(&mut rng, 4, 7, 3, true, 64);
        let srtp = protect(&mut tx, &plain);
        let srtcp = protect_rtcp(&mut tx, &rtcp_packet(&mut rng, 4, 2));
        for n in 0..srtp.len() {
            let mut rx = ours(profile, 13);
            assert!(unprotect(&mut rx, &srtp[..n]).is_err(), "{profile:?} len {n}");
        }
        for n in 0..srtcp.len() {
            let mut rx = ours(profile, 13);
            assert!(unprotect_rtcp(&mut rx, &srtcp[..n]).is_err(), "{profile:?} len {n}");
        }
        // Truncated plaintext headers on the protect side, too.
        let hdr = rtp_header_len(&plain).expect("valid");
        for n in 0..hdr {
            let mut buf = plain[..n].to_vec();
            buf.resize(n + 16, 0);
            assert!(tx.protect_rtp(&mut buf, n).is_err(), "len {n}");
        }
        for n in 0..8 {
            let mut buf = vec![0x80u8; n + 20];
            assert_eq!(tx.protect_rtcp(&mut buf, n), Err(SrtpError::TooShort));
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = StdRng::seed_from_u64(14);
    for profile in PROFILES {
        let mut s = ours(profile, 14);
        for i in 0..20_000 {
            let len = rng.random_range(0..200);
            let mut buf: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            if i % 2 == 0 && len > 0 {
                // Version 2, so the parsers go past the first check.
                buf[0] = (buf[0] & 0x3F) | 0x80;
            }
            let plain_len = rng.random_range(0..=len + 4);
            assert!(s.unprotect_rtp(&mut buf.clone()).is_err());
            assert!(s.unprotect_rtcp(&mut buf.clone()).is_err());
            let _ = s.protect_rtp(&mut buf.clone(), plain_len);
            let _ = s.protect_rtcp(&mut buf.clone(), plain_len);
            let mut out = [0u8; 64];
            let _ = s.protect_rtp_into(&buf, &mut out);
        }
    }
}

#[test]
fn buffer_without_room_for_tag_is_an_error() {
    for profile in PROFILES {
        let mut rng = StdRng::seed_from_u64(15);
        let mut s = ours(profile, 15);
        let plain = rtp_packet(&mut rng, 1, 1, 0, false, 100);
        let mut buf = plain.clone();
        buf.resize(plain.len() + profile.rtp_overhead() - 1, 0);
        assert_eq!(
            s.protect_rtp(&mut buf, plain.len()),
            Err(SrtpError::BufferTooSmall { needed: plain.len() + profile.rtp_overhead(), available: buf.len() })
        );
        let mut out = vec![0u8; plain.len()];
        assert!(matches!(s.protect_rtp_into(&plain, &mut out), Err(SrtpError::BufferTooSmall { .. })));
        let rtcp = rtcp_packet(&mut rng, 1, 1);
        let mut buf = rtcp.clone();
        buf.resize(rtcp.len() + profile.rtcp_overhead() - 1, 0);
        assert!(matches!(s.protect_rtcp(&mut buf, rtcp.len()), Err(SrtpError::BufferTooSmall { .. })));
        let too_long = buf.len() + 1;
        assert_eq!(s.protect_rtp(&mut buf, too_long), Err(SrtpError::TooShort));
    }
}

#[test]
fn ssrc_count_is_bounded_and_forged_ssrcs_take_no_slot() {
    for profile in PROFILES {
        let mut rng = StdRng::seed_from_u64(16);
        let mut tx = ours(profile, 16).with_max_ssrcs(2);
        let mut rx = ours(profile, 16).with_max_ssrcs(2);
        protect(&mut tx, &rtp_packet(&mut rng, 1, 1, 0, false, 10));
        protect(&mut tx, &rtp_packet(&mut rng, 2, 1, 0, false, 10));
        let mut buf = rtp_packet(&mut rng, 3, 1, 0, false, 10);
        let n = buf.len();
        buf.resize(n + 16, 0);
        assert_eq!(tx.protect_rtp(&mut buf, n), Err(SrtpError::TooManySsrcs(2)));
        assert!(tx.forget_ssrc(1));
        tx.protect_rtp(&mut buf, n).expect("slot freed");

        // Forged packets from many SSRCs fail auth and leave the map empty.
        for ssrc in 100..200 {
            let mut forged = rtp_packet(&mut rng, ssrc, 1, 0, false, 10);
            forged.extend_from_slice(&[0u8; 16][..profile.rtp_overhead()]);
            assert_eq!(unprotect(&mut rx, &forged), Err(SrtpError::Auth));
        }
        let genuine = protect(&mut tx, &rtp_packet(&mut rng, 2, 2, 0, false, 10));
        unprotect(&mut rx, &genuine).expect("legit SSRC still gets a slot");
    }
}

#[test]
fn dtls_keying_material_follows_rfc5764_layout() {
    for profile in PROFILES {
        let material: Vec<u8> = (0..profile.keying_material_len() as u8).collect();
        let (k, s) = (profile.master_key_len(), profile.master_salt_len());
        let client_key = &material[..k];
        let server_key = &material[k..2 * k];
        let client_salt = &material[2 * k..2 * k + s];
        let server_salt = &material[2 * k + s..];

        let (mut client_out, mut client_in) =
            sessions_from_dtls_keying_material(profile, &material, false).expect("client");
        let (mut server_out, mut server_in) =
            sessions_from_dtls_keying_material(profile, &material, true).expect("server");
        let mut rng = StdRng::seed_from_u64(17);
        let plain = rtp_packet(&mut rng, 1, 1, 0, false, 30);

        // What the client sends is keyed with client_write_key/salt, and the server reads it.
        let from_client = protect(&mut client_out, &plain);
        let mut ctx = Context::new(client_key, client_salt, theirs_profile(profile), None, None).expect("valid");
        assert_eq!(ctx.decrypt_rtp(&from_client).expect("client key").as_ref(), &plain[..]);
        assert_eq!(unprotect(&mut server_in, &from_client).expect("server reads"), plain);

        let from_server = protect(&mut server_out, &plain);
        let mut ctx = Context::new(server_key, server_salt, theirs_profile(profile), None, None).expect("valid");
        assert_eq!(ctx.decrypt_rtp(&from_server).expect("server key").as_ref(), &plain[..]);
        assert_eq!(unprotect(&mut client_in, &from_server).expect("client reads"), plain);

        assert!(matches!(
            sessions_from_dtls_keying_material(profile, &material[1..], true),
            Err(SrtpError::BadKeyingMaterialLength { .. })
        ));
    }
}

#[test]
fn wrong_master_lengths_are_rejected() {
    for profile in PROFILES {
        let (key, salt) = master(profile, 0);
        assert!(matches!(SrtpSession::new(profile, &key[1..], &salt), Err(SrtpError::BadKeyLength { .. })));
        assert!(matches!(SrtpSession::new(profile, &key, &salt[1..]), Err(SrtpError::BadSaltLength { .. })));
    }
}

#[test]
fn profile_constants() {
    use SrtpProfile::*;
    assert_eq!(AeadAes128Gcm.keying_material_len(), 56);
    assert_eq!(Aes128CmHmacSha1_80.keying_material_len(), 60);
    assert_eq!(AeadAes128Gcm.rtcp_overhead(), 20);
    assert_eq!(Aes128CmHmacSha1_80.rtcp_overhead(), 14);
    for p in PROFILES {
        assert_eq!(SrtpProfile::from_dtls_id(p.dtls_id()), Some(p));
    }
}

/// Unencrypted SRTCP (E flag clear) is legal; webrtc-srtp cannot send it, so build it by hand
/// from the derived SRTCP keys with aws-lc-rs primitives directly.
#[test]
fn unencrypted_srtcp_is_authenticated_and_accepted() {
    for profile in PROFILES {
        let (key, salt) = master(profile, 18);
        let kdf = Kdf::new(&key, &salt).expect("valid");
        let mut rng = StdRng::seed_from_u64(18);
        let rtcp = rtcp_packet(&mut rng, 0xD00D, 2);
        let index: u32 = 42;
        let e_index = index.to_be_bytes(); // E flag clear
        let mut srtcp = rtcp.clone();
        match profile {
            SrtpProfile::AeadAes128Gcm | SrtpProfile::AeadAes256Gcm => {
                let mut kb = [0u8; 32];
                let k = &mut kb[..profile.master_key_len()];
                kdf.derive(kdf::LABEL_RTCP_ENCRYPTION, k).expect("derive");
                let mut s = [0u8; 12];
                kdf.derive(kdf::LABEL_RTCP_SALT, &mut s).expect("derive");
                let alg =
                    if profile == SrtpProfile::AeadAes256Gcm { &aws_lc_rs::aead::AES_256_GCM } else { &AES_128_GCM };
                let key = LessSafeKey::new(UnboundKey::new(alg, k).expect("key"));
                let mut aad = rtcp.clone();
                aad.extend_from_slice(&e_index);
                let nonce = Nonce::assume_unique_for_key(rtcp_gcm_nonce(&s, 0xD00D, index));
                let tag = key.seal_in_place_separate_tag(nonce, Aad::from(&aad), &mut []).expect("seal");
                srtcp.extend_from_slice(tag.as_ref());
                srtcp.extend_from_slice(&e_index);
            }
            SrtpProfile::Aes128CmHmacSha1_80 => {
                let mut a = [0u8; 20];
                kdf.derive(kdf::LABEL_RTCP_AUTH, &mut a).expect("derive");
                srtcp.extend_from_slice(&e_index);
                let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &a), &srtcp);
                srtcp.extend_from_slice(&tag.as_ref()[..10]);
            }
        }
        let mut rx = ours(profile, 18);
        let mut bad = srtcp.clone();
        bad[10] ^= 0x80;
        assert_eq!(unprotect_rtcp(&mut rx, &bad), Err(SrtpError::Auth));
        assert_eq!(unprotect_rtcp(&mut rx, &srtcp).expect("accepted"), rtcp);
        assert_eq!(unprotect_rtcp(&mut rx, &srtcp), Err(SrtpError::Replay));
    }
}

#[test]
fn different_keys_do_not_interoperate() {
    for profile in PROFILES {
        let mut rng = StdRng::seed_from_u64(19);
        let mut tx = ours(profile, 19);
        let mut rx = ours(profile, 20);
        let p = protect(&mut tx, &rtp_packet(&mut rng, 1, 1, 0, false, 100));
        assert_eq!(unprotect(&mut rx, &p), Err(SrtpError::Auth));
    }
}

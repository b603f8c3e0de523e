//! SRTP protect and unprotect of a 1200-byte RTP packet, ours (aws-lc-rs) against webrtc-srtp
//! 0.17 (RustCrypto), per profile, so the ratio comes out of one run:
//! `cargo bench -p benches --bench srtp -j2`.
//!
//! Every iteration uses a fresh sequence number, so the ROC estimation and the replay window
//! do their real work; unprotect inputs are protected in the (untimed) batch setup.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use router_engine::srtp::{SrtpProfile, SrtpSession};
use webrtc_srtp::context::Context;
use webrtc_srtp::protection_profile::ProtectionProfile;

const PACKET_LEN: usize = 1200;
const SSRC: u32 = 0x1234_5678;

fn rtp_packet(seq: u16) -> Vec<u8> {
    let mut p = vec![0u8; PACKET_LEN];
    p[0] = 0x90; // V=2, one-byte header extension follows
    p[1] = 96;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
    p[8..12].copy_from_slice(&SSRC.to_be_bytes());
    // abs-send-time and transport-cc, as a browser would send them.
    p[12..24].copy_from_slice(&[0xBE, 0xDE, 0, 2, 0x32, 1, 2, 3, 0x51, 0, 7, 0]);
    for (i, b) in p[24..].iter_mut().enumerate() {
        *b = i as u8;
    }
    p
}

fn set_seq(p: &mut [u8], seq: u16) {
    p[2..4].copy_from_slice(&seq.to_be_bytes());
}

fn keys(profile: SrtpProfile) -> (Vec<u8>, Vec<u8>) {
    ((0..profile.master_key_len() as u8).collect(), (0..profile.master_salt_len() as u8).map(|i| i * 3).collect())
}

/// Fresh packets with rising sequence numbers, protected by our sender (untimed setup of the
/// unprotect benches, ours and theirs alike).
fn protected(profile: SrtpProfile) -> impl FnMut() -> Vec<u8> {
    let mut tx = ours(profile);
    let mut seq = 0u16;
    move || {
        seq = seq.wrapping_add(1);
        let mut buf = rtp_packet(seq);
        buf.resize(PACKET_LEN + profile.rtp_overhead(), 0);
        tx.protect_rtp(&mut buf, PACKET_LEN).expect("protect");
        buf
    }
}

fn ours(profile: SrtpProfile) -> SrtpSession {
    let (k, s) = keys(profile);
    SrtpSession::new(profile, &k, &s).expect("valid master key and salt")
}

fn theirs(profile: SrtpProfile) -> Context {
    let (k, s) = keys(profile);
    let p = match profile {
        SrtpProfile::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
        SrtpProfile::AeadAes256Gcm => ProtectionProfile::AeadAes256Gcm,
        SrtpProfile::Aes128CmHmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
    };
    Context::new(&k, &s, p, None, None).expect("valid master key and salt")
}

fn bench_profile(c: &mut Criterion, profile: SrtpProfile, name: &str) {
    let mut g = c.benchmark_group(format!("srtp_1200/{name}"));
    g.throughput(Throughput::Bytes(PACKET_LEN as u64));

    g.bench_function("ours/protect_in_place", |b| {
        let mut s = ours(profile);
        let mut buf = rtp_packet(0);
        buf.resize(PACKET_LEN + profile.rtp_overhead(), 0);
        let mut seq = 0u16;
        b.iter(|| {
            seq = seq.wrapping_add(1);
            set_seq(&mut buf, seq);
            black_box(s.protect_rtp(black_box(&mut buf), PACKET_LEN).expect("protect"))
        });
    });

    g.bench_function("ours/protect_into", |b| {
        let mut s = ours(profile);
        let mut plain = rtp_packet(0);
        let mut out = vec![0u8; 1500];
        let mut seq = 0u16;
        b.iter(|| {
            seq = seq.wrapping_add(1);
            set_seq(&mut plain, seq);
            black_box(s.protect_rtp_into(black_box(&plain), &mut out).expect("protect"))
        });
    });

    g.bench_function("webrtc/protect", |b| {
        let mut ctx = theirs(profile);
        let mut plain = rtp_packet(0);
        let mut seq = 0u16;
        b.iter(|| {
            seq = seq.wrapping_add(1);
            set_seq(&mut plain, seq);
            black_box(ctx.encrypt_rtp(black_box(&plain)).expect("protect"))
        });
    });

    g.bench_function("ours/unprotect", |b| {
        let mut rx = ours(profile);
        b.iter_batched_ref(
            protected(profile),
            |buf| black_box(rx.unprotect_rtp(buf).expect("unprotect")),
            BatchSize::SmallInput,
        );
    });

    g.bench_function("webrtc/unprotect", |b| {
        let mut ctx = theirs(profile);
        b.iter_batched_ref(
            protected(profile),
            |buf| black_box(ctx.decrypt_rtp(buf).expect("unprotect")),
            BatchSize::SmallInput,
        );
    });

    g.finish();
}

fn srtp(c: &mut Criterion) {
    bench_profile(c, SrtpProfile::AeadAes128Gcm, "aead_aes128_gcm");
    bench_profile(c, SrtpProfile::AeadAes256Gcm, "aead_aes256_gcm");
    bench_profile(c, SrtpProfile::Aes128CmHmacSha1_80, "aes128_cm_hmac_sha1_80");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    targets = srtp
}
criterion_main!(benches);

//! RTCP parsing and writing against the webrtc-rs `rtcp` crate and malformed input.

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
    let RtcpPacket::SenderReport { ssrc, ntp_time, rtp_time, packet_count, octet_count, reports } = only(&buf) else {
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
        let remb = ReceiverEstimatedMaximumBitrate { sender_ssrc: 9, bitrate: bitrate as f32, ssrcs: vec![1, 2, 3] };
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

//! RTP header parsing and writing, extensions and RTX, against the webrtc-rs `rtp` crate and malformed input.

use super::*;
use bytes::Bytes;
use rand::{Rng, SeedableRng, rngs::SmallRng};
use schema::extensions::{ExtensionIds, URI_MID, URI_TRANSPORT_CC};
use webrtc_util::marshal::{Marshal, Unmarshal};

fn theirs(extension_profile: u16, extensions: &[(u8, &[u8])], csrc: Vec<u32>, padding: bool) -> rtp::packet::Packet {
    rtp::packet::Packet {
        header: rtp::header::Header {
            version: 2,
            padding,
            extension: !extensions.is_empty(),
            marker: true,
            payload_type: 111,
            sequence_number: 65535,
            timestamp: 0xdead_beef,
            ssrc: 0x1234_5678,
            csrc,
            extension_profile,
            extensions: extensions
                .iter()
                .map(|(id, d)| rtp::header::Extension { id: *id, payload: Bytes::copy_from_slice(d) })
                .collect(),
            extensions_padding: 0,
        },
        payload: Bytes::from_static(&[1, 2, 3, 4, 5]),
    }
}

fn collect_ext(h: &RtpHeader, buf: &[u8]) -> Vec<(u8, Vec<u8>)> {
    h.extensions(buf).map(|(i, d)| (i, d.to_vec())).collect()
}

#[test]
fn parses_one_byte_extensions_marshalled_by_rtp_crate() {
    let exts: [(u8, &[u8]); 3] = [(1, b"0"), (3, &[0x12, 0x34]), (14, &[0x80 | 30])];
    let buf = theirs(PROFILE_ONE_BYTE, &exts, vec![], false).marshal().unwrap();
    let h = parse(&buf).unwrap();
    assert_eq!(h.version, 2);
    assert!(h.marker);
    assert_eq!(h.payload_type, 111);
    assert_eq!(h.sequence_number, 65535);
    assert_eq!(h.timestamp, 0xdead_beef);
    assert_eq!(h.ssrc, 0x1234_5678);
    assert_eq!(h.payload(&buf), &[1, 2, 3, 4, 5]);
    assert_eq!(h.extension.unwrap().profile, PROFILE_ONE_BYTE);
    let got = collect_ext(&h, &buf);
    let want: Vec<_> = exts.iter().map(|(i, d)| (*i, d.to_vec())).collect();
    assert_eq!(got, want);
    assert_eq!(read_str(h.find_extension(&buf, 1).unwrap()), Some("0"));
    assert_eq!(read_transport_cc(h.find_extension(&buf, 3).unwrap()), Some(0x1234));
    assert_eq!(read_audio_level(h.find_extension(&buf, 14).unwrap()), Some((true, 30)));
    assert_eq!(h.find_extension(&buf, 2), None);
    assert_eq!(find_extension(&buf, 3), Some(&[0x12, 0x34][..]));
    assert_eq!(find_extension(&buf[..5], 3), None);
}

#[test]
fn parses_two_byte_extensions_csrcs_and_padding_from_rtp_crate() {
    let long = [7u8; 20];
    let exts: [(u8, &[u8]); 3] = [(1, b""), (20, b"hi"), (200, &long)];
    let mut pkt = theirs(PROFILE_TWO_BYTE, &exts, vec![11, 22, 33], true);
    pkt.header.padding = false; // the rtp crate leaves padding bytes to the caller
    let mut buf = pkt.marshal().unwrap().to_vec();
    buf[0] |= 0x20;
    buf.extend_from_slice(&[0, 0, 3]);
    let h = parse(&buf).unwrap();
    assert!(h.padding);
    assert_eq!(h.padding_len, 3);
    assert_eq!(h.csrc_count, 3);
    assert_eq!(h.csrcs(&buf).collect::<Vec<_>>(), vec![11, 22, 33]);
    assert_eq!(h.payload(&buf), &[1, 2, 3, 4, 5]);
    let got = collect_ext(&h, &buf);
    let want: Vec<_> = exts.iter().map(|(i, d)| (*i, d.to_vec())).collect();
    assert_eq!(got, want);
    // And the rtp crate agrees on the payload once padding is stripped.
    let back = rtp::packet::Packet::unmarshal(&mut &buf[..]).unwrap();
    assert_eq!(&back.payload[..], h.payload(&buf));
}

#[test]
fn written_headers_unmarshal_in_rtp_crate() {
    let cases: [&[(u8, &[u8])]; 4] = [
        &[],
        &[(1, b"a"), (5, &[1, 2, 3])],
        &[(15, b"x")],                // id 15 forces two-byte
        &[(2, b""), (3, &[9u8; 17])], // empty and >16 bytes force two-byte
    ];
    for exts in cases {
        let mut out = [0u8; 128];
        let fields = HeaderFields {
            marker: true,
            payload_type: 96,
            sequence_number: 513,
            timestamp: 90_000,
            ssrc: 0xabcd,
            csrcs: &[5, 6],
        };
        let n = write_header(&mut out, &fields, exts).unwrap();
        assert_eq!(n % 4, 0);
        assert_eq!(n, header_len(2, exts).unwrap());
        out[n..n + 3].copy_from_slice(&[0xaa, 0xbb, 0xcc]);
        let wire = &out[..n + 3];
        let theirs = rtp::packet::Packet::unmarshal(&mut &wire[..]).unwrap();
        assert_eq!(theirs.header.sequence_number, 513);
        assert_eq!(theirs.header.ssrc, 0xabcd);
        assert_eq!(theirs.header.csrc, vec![5, 6]);
        assert!(theirs.header.marker);
        assert_eq!(&theirs.payload[..], &[0xaa, 0xbb, 0xcc]);
        for (id, data) in exts {
            assert_eq!(theirs.header.get_extension(*id).as_deref(), Some(*data));
        }
        let ours = parse(wire).unwrap();
        assert_eq!(ours.header_len, n);
        assert_eq!(collect_ext(&ours, wire).len(), exts.len());
    }
}

#[test]
fn write_header_rejects_bad_input() {
    let mut out = [0u8; 64];
    let f = HeaderFields::default();
    assert_eq!(write_header(&mut out, &f, &[(0, b"a")]), Err(RtpError::BadExtensionId(0)));
    assert_eq!(write_header(&mut out, &f, &[(1, &[0u8; 256])]), Err(RtpError::ExtensionTooLong(256)));
    assert!(matches!(write_header(&mut out[..20], &f, &[(1, &[0u8; 16])]), Err(RtpError::BufferTooSmall { .. })));
    let bad_pt = HeaderFields { payload_type: 128, ..f };
    assert_eq!(write_header(&mut out, &bad_pt, &[]), Err(RtpError::BadPayloadType(128)));
}

#[test]
fn in_place_rewrites_change_only_their_field() {
    let mut buf = theirs(PROFILE_ONE_BYTE, &[(1, b"m")], vec![9], false).marshal().unwrap().to_vec();
    let before = parse(&buf).unwrap();
    set_sequence_number(&mut buf, 7).unwrap();
    set_timestamp(&mut buf, 8).unwrap();
    set_ssrc(&mut buf, 9).unwrap();
    set_payload_type(&mut buf, 100).unwrap();
    let h = parse(&buf).unwrap();
    assert_eq!((h.sequence_number, h.timestamp, h.ssrc, h.payload_type, h.marker), (7, 8, 9, 100, true));
    set_marker(&mut buf, false).unwrap();
    let h = parse(&buf).unwrap();
    assert!(!h.marker);
    assert_eq!(h.payload_type, 100);
    assert_eq!(h.header_len, before.header_len);
    assert_eq!(collect_ext(&h, &buf), vec![(1, b"m".to_vec())]);
    assert_eq!(set_ssrc(&mut buf[..11], 1), Err(RtpError::TooShort(11)));
    assert_eq!(set_payload_type(&mut buf, 200), Err(RtpError::BadPayloadType(200)));
}

#[test]
fn demux_by_first_and_second_byte() {
    assert!(is_rtp_or_rtcp(&[0x80, 96]));
    assert!(!is_rtp_or_rtcp(&[0x00, 1])); // STUN
    assert!(!is_rtp_or_rtcp(&[22, 254])); // DTLS
    assert!(!is_rtp_or_rtcp(&[]));
    assert!(is_rtcp(&[0x80, 200]));
    assert!(is_rtcp(&[0x81, 205]));
    assert!(!is_rtcp(&[0x80, 96]));
    assert!(!is_rtcp(&[0x80, 0x80 | 96])); // RTP with marker, PT 96 => 224
    assert!(!is_rtcp(&[0x80]));
}

#[test]
fn malformed_headers_are_errors() {
    let ok = [0x80u8, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1];
    assert_eq!(parse(&ok[..11]), Err(RtpError::TooShort(11)));
    let mut v1 = ok;
    v1[0] = 0x40;
    assert_eq!(parse(&v1), Err(RtpError::BadVersion(1)));
    let mut cc = ok;
    cc[0] = 0x81;
    assert_eq!(parse(&cc), Err(RtpError::CsrcOverrun));
    let mut x = ok.to_vec();
    x[0] = 0x90;
    assert_eq!(parse(&x), Err(RtpError::ExtensionOverrun));
    x.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10]);
    assert_eq!(parse(&x), Err(RtpError::ExtensionOverrun));
    let mut p = ok.to_vec();
    p[0] = 0xa0;
    p.push(0);
    assert_eq!(parse(&p), Err(RtpError::BadPadding(0)));
    *p.last_mut().unwrap() = 2;
    assert_eq!(parse(&p), Err(RtpError::BadPadding(2)));
    *p.last_mut().unwrap() = 1;
    assert_eq!(parse(&p).unwrap().payload_len, 0);
}

#[test]
fn extension_iterator_stops_on_malformed_elements() {
    // One-byte: padding, a good element, then a length that runs past the block.
    let mut buf = vec![0x90, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xbe, 0xde, 0, 2];
    buf.extend_from_slice(&[0x00, 0x10, 0xaa, 0x2f, 1, 2, 3, 4]);
    let h = parse(&buf).unwrap();
    assert_eq!(collect_ext(&h, &buf), vec![(1, vec![0xaa])]);
    // One-byte id 0 with a nonzero length is malformed, not an element.
    buf[16..24].copy_from_slice(&[0x10, 0xaa, 0x01, 0xbb, 0xcc, 0, 0, 0]);
    assert_eq!(collect_ext(&parse(&buf).unwrap(), &buf), vec![(1, vec![0xaa])]);
    // One-byte id 15 stops processing.
    buf[16..24].copy_from_slice(&[0xf0, 0x10, 0xaa, 0, 0, 0, 0, 0]);
    assert!(collect_ext(&parse(&buf).unwrap(), &buf).is_empty());
    // Two-byte with a length byte missing at the end.
    buf[12..16].copy_from_slice(&[0x10, 0x00, 0, 2]);
    buf[16..24].copy_from_slice(&[1, 1, 0xaa, 0, 0, 0, 0, 9]);
    assert_eq!(collect_ext(&parse(&buf).unwrap(), &buf), vec![(1, vec![0xaa])]);
    // A non-RFC 8285 profile yields nothing.
    buf[12..14].copy_from_slice(&[0x12, 0x34]);
    assert!(collect_ext(&parse(&buf).unwrap(), &buf).is_empty());
}

#[test]
fn typed_readers_decode_extension_values() {
    assert_eq!(read_transport_cc(&[1]), None);
    assert_eq!(read_audio_level(&[0x7f]), Some((false, 127)));
    assert_eq!(read_audio_level(&[]), None);
    assert_eq!(read_abs_send_time(&[0x40, 0, 0]), Some(0x40_0000));
    assert_eq!(abs_send_time_to_micros(0x40_0000), 16_000_000);
    assert_eq!(read_abs_send_time(&[1, 2]), None);
    assert_eq!(read_str(b"q\0"), Some("q"));
    assert_eq!(read_str(b""), None);
    assert_eq!(read_str(&[0xff]), None);
    assert_eq!(read_video_orientation(&[0x0b]), Some((true, false, 270)));
}

#[test]
fn extension_ids_map_extmap_uris() {
    let mut ids = ExtensionIds::default();
    assert!(ids.set_from_uri(3, URI_TRANSPORT_CC));
    assert!(ids.set_from_uri(4, URI_MID));
    assert!(!ids.set_from_uri(9, "urn:example:unknown"));
    assert_eq!(ids.transport_cc, Some(3));
    assert_eq!(ids.mid, Some(4));
    assert_eq!(ids.uri_of(3), Some(URI_TRANSPORT_CC));
    assert_eq!(ids.uri_of(9), None);
}

#[test]
fn rtx_wraps_and_unwraps_original_packet() {
    let mut orig = theirs(PROFILE_ONE_BYTE, &[(2, b"r0")], vec![], false).marshal().unwrap().to_vec();
    orig[0] |= 0x20;
    orig.extend_from_slice(&[0, 2]);
    let params = RtxParams { ssrc: 0x5555, payload_type: 97, sequence_number: 10 };
    let mut rtx_buf = [0u8; 256];
    let n = write_rtx(&orig, &params, &mut rtx_buf).unwrap();
    let rtx_pkt = &rtx_buf[..n];
    let theirs = rtp::packet::Packet::unmarshal(&mut &rtx_pkt[..]).unwrap();
    assert_eq!(theirs.header.ssrc, 0x5555);
    assert_eq!(theirs.header.payload_type, 97);
    assert_eq!(theirs.header.sequence_number, 10);
    assert!(!theirs.header.padding);
    assert_eq!(&theirs.payload[..], &[0xff, 0xff, 1, 2, 3, 4, 5]);
    let h = parse(rtx_pkt).unwrap();
    assert_eq!(rtx_original_sequence(h.payload(rtx_pkt)), Some(65535));
    assert_eq!(h.find_extension(rtx_pkt, 2), Some(&b"r0"[..]));

    let mut back = [0u8; 256];
    let m = unwrap_rtx(rtx_pkt, 0x1234_5678, 111, &mut back).unwrap();
    let oh = parse(&orig).unwrap();
    let bh = parse(&back[..m]).unwrap();
    assert_eq!(bh.sequence_number, oh.sequence_number);
    assert_eq!(bh.ssrc, oh.ssrc);
    assert_eq!(bh.payload_type, oh.payload_type);
    assert_eq!(bh.payload(&back[..m]), oh.payload(&orig));
    assert!(matches!(write_rtx(&orig, &params, &mut rtx_buf[..10]), Err(RtpError::BufferTooSmall { .. })));
    let empty = [0x80u8, 97, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0];
    assert_eq!(unwrap_rtx(&empty, 1, 1, &mut back), Err(RtpError::RtxTooShort));
}

#[test]
fn random_and_truncated_input_never_panics() {
    let mut rng = SmallRng::seed_from_u64(7);
    let mut buf = [0u8; 96];
    let (mut parsed, mut extensions_seen) = (0, 0);
    for _ in 0..200_000 {
        let len = rng.random_range(0..buf.len());
        rng.fill(&mut buf[..len]);
        // Bias towards plausible headers so the deeper paths are reached.
        if len > 0 && rng.random_bool(0.8) {
            buf[0] = 0x80 | (buf[0] & 0x3f);
        }
        if len > 13 && rng.random_bool(0.5) {
            let p = if rng.random_bool(0.5) { PROFILE_ONE_BYTE } else { PROFILE_TWO_BYTE };
            let at = 12 + 4 * (buf[0] & 0x0f) as usize;
            if at + 4 <= len {
                buf[0] |= 0x10;
                buf[at..at + 2].copy_from_slice(&p.to_be_bytes());
                let words = rng.random_range(0..=(len - at - 4) / 4) as u16;
                buf[at + 2..at + 4].copy_from_slice(&words.to_be_bytes());
            }
        }
        let pkt = &buf[..len];
        if let Ok(h) = parse(pkt) {
            parsed += 1;
            assert!(h.header_len + h.payload_len <= len);
            for (id, data) in h.extensions(pkt) {
                assert!(id != 0 && data.len() <= len);
                extensions_seen += 1;
            }
            let _ = h.csrcs(pkt).count();
            let _ = h.find_extension(pkt, 1);
            let mut out = [0u8; 128];
            let _ = write_rtx(pkt, &RtxParams { ssrc: 1, payload_type: 1, sequence_number: 1 }, &mut out);
            let _ = unwrap_rtx(pkt, 1, 1, &mut out);
        }
        let _ = is_rtcp(pkt);
    }
    // The biasing above must actually reach the deeper code, or this test proves little.
    assert!(parsed > 20_000 && extensions_seen > 10_000, "{parsed} {extensions_seen}");
}

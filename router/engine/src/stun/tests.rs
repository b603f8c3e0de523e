//! STUN parsing and writing: RFC 5769 vectors, round trips and malformed input.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test.

use super::*;
use rand::{Rng, SeedableRng, rngs::StdRng};

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace().map(|b| u8::from_str_radix(b, 16).unwrap()).collect()
}

const RFC5769_KEY: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";
const RFC5769_TX: [u8; 12] = [0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae];

// RFC 5769 section 2.1: request with SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME
// "evtj:h6vY" (padded with spaces), MESSAGE-INTEGRITY, FINGERPRINT.
fn rfc5769_request() -> Vec<u8> {
    hex("00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
         80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
         00 24 00 04 6e 00 01 ff
         80 29 00 08 93 2f f9 b1 51 26 3b 36
         00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
         00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
         80 28 00 04 e5 7a 3b cf")
}

// RFC 5769 section 2.2: IPv4 response, mapped 192.0.2.1:32853.
fn rfc5769_ipv4_response() -> Vec<u8> {
    hex("01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
         80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
         00 20 00 08 00 01 a1 47 e1 12 a6 43
         00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
         80 28 00 04 c0 7d 4c 96")
}

// RFC 5769 section 2.3: IPv6 response, mapped [2001:db8:1234:5678:11:2233:4455:6677]:32853.
fn rfc5769_ipv6_response() -> Vec<u8> {
    hex("01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
         80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
         00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
         00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
         80 28 00 04 c8 fb 0b 4c")
}

#[test]
fn rfc5769_request_parses_and_verifies() {
    let buf = rfc5769_request();
    assert!(is_stun(&buf));
    let m = parse(&buf).unwrap();
    assert!(m.is_binding_request());
    assert_eq!(m.transaction_id(), RFC5769_TX);
    assert_eq!(m.username(), Some(&b"evtj:h6vY"[..]));
    assert_eq!(m.priority(), Some(0x6e00_01ff));
    assert_eq!(m.ice_controlled(), Some(0x932f_f9b1_5126_3b36));
    assert_eq!(m.ice_controlling(), None);
    assert!(!m.use_candidate());
    assert!(m.has_fingerprint());
    assert!(m.verify_integrity(RFC5769_KEY));
    assert!(!m.verify_integrity(b"VOkJxbRl1RmTxUk/WvJxBu"));
}

#[test]
fn rfc5769_ipv4_response_parses_and_verifies() {
    let buf = rfc5769_ipv4_response();
    let m = parse(&buf).unwrap();
    assert_eq!(m.class(), Class::SuccessResponse);
    assert_eq!(m.method(), METHOD_BINDING);
    assert_eq!(m.xor_mapped_address(), Some("192.0.2.1:32853".parse().unwrap()));
    assert!(m.verify_integrity(RFC5769_KEY));
}

#[test]
fn rfc5769_ipv6_response_parses_and_verifies() {
    let buf = rfc5769_ipv6_response();
    let m = parse(&buf).unwrap();
    assert_eq!(m.xor_mapped_address(), Some("[2001:db8:1234:5678:11:2233:4455:6677]:32853".parse().unwrap()));
    assert!(m.verify_integrity(RFC5769_KEY));
}

/// Our writer must reproduce the RFC's XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY and FINGERPRINT
/// bytes when given the RFC's SOFTWARE attribute (including its space padding).
#[test]
fn writer_reproduces_rfc5769_ipv6_response_bytes() {
    let want = rfc5769_ipv6_response();
    let mut out = [0u8; 256];
    let mut w = MessageWriter::new(&mut out, Class::SuccessResponse, METHOD_BINDING, RFC5769_TX).unwrap();
    w.attribute(attr::SOFTWARE, b"test vector").unwrap();
    let n = w.finish();
    // The RFC pads SOFTWARE with a space; put it there before the HMAC covers it.
    out[n - 1] = 0x20;
    let mut w = MessageWriter { out: &mut out, pos: n, tx: RFC5769_TX };
    w.xor_mapped_address("[2001:db8:1234:5678:11:2233:4455:6677]:32853".parse().unwrap())
        .unwrap()
        .message_integrity(&sha1_key(RFC5769_KEY))
        .unwrap()
        .fingerprint()
        .unwrap();
    let n = w.finish();
    assert_eq!(&out[..n], &want[..]);
}

#[test]
fn request_round_trips_through_writer_and_parser() {
    let mut out = [0u8; 200];
    let n = write_binding_request(
        [9; 12],
        b"abcd:efgh",
        b"password-password-1234",
        0x7e7f_00ff,
        Some(0x0102_0304_0506_0708),
        true,
        &mut out,
    )
    .unwrap();
    let m = parse(&out[..n]).unwrap();
    assert!(m.is_binding_request());
    assert_eq!(m.transaction_id(), [9; 12]);
    assert_eq!(m.username(), Some(&b"abcd:efgh"[..]));
    assert_eq!(m.priority(), Some(0x7e7f_00ff));
    assert_eq!(m.ice_controlling(), Some(0x0102_0304_0506_0708));
    assert!(m.use_candidate());
    assert!(m.verify_integrity(b"password-password-1234"));
    assert!(!m.verify_integrity(b"password-password-1235"));
}

#[test]
fn success_response_carries_v4_and_v6_mapped_addresses() {
    for addr in ["203.0.113.9:61000", "[2001:db8::7]:5000"] {
        let addr: SocketAddr = addr.parse().unwrap();
        let mut out = [0u8; 128];
        let n = write_binding_success([3; 12], addr, b"k", &mut out).unwrap();
        let m = parse(&out[..n]).unwrap();
        assert_eq!(m.class(), Class::SuccessResponse);
        assert_eq!(m.xor_mapped_address(), Some(addr));
        assert!(m.verify_integrity(b"k"));
    }
}

#[test]
fn error_response_carries_code_and_reason() {
    let mut out = [0u8; 128];
    let n = write_binding_error([1; 12], 487, "Role Conflict", Some(b"k"), &mut out).unwrap();
    let m = parse(&out[..n]).unwrap();
    assert_eq!(m.class(), Class::ErrorResponse);
    assert_eq!(m.method(), METHOD_BINDING);
    let e = m.error_code().unwrap();
    assert_eq!((e.code, e.reason), (487, "Role Conflict"));
    assert!(m.verify_integrity(b"k"));

    let n = write_binding_error([1; 12], 401, "Unauthorized", None, &mut out).unwrap();
    let m = parse(&out[..n]).unwrap();
    assert_eq!(m.error_code().unwrap().code, 401);
    assert!(!m.has_integrity());
    assert!(!m.verify_integrity(b"k"));

    assert_eq!(write_binding_error([1; 12], 200, "no", None, &mut out), Err(StunError::InvalidErrorCode(200)));
}

#[test]
fn writers_refuse_small_buffers() {
    let addr: SocketAddr = "[2001:db8::7]:5000".parse().unwrap();
    let mut full = [0u8; 128];
    let need = write_binding_success([3; 12], addr, b"k", &mut full).unwrap();
    for size in 0..need {
        let mut out = vec![0u8; size];
        assert!(matches!(write_binding_success([3; 12], addr, b"k", &mut out), Err(StunError::BufferTooSmall { .. })));
    }
}

#[test]
fn truncated_messages_are_refused() {
    let buf = rfc5769_request();
    assert_eq!(parse(&buf[..10]), Err(StunError::Truncated { len: 10 }));
    for cut in HEADER_LEN..buf.len() {
        assert!(parse(&buf[..cut]).is_err(), "cut at {cut} parsed");
    }
}

#[test]
fn oversized_messages_are_refused() {
    let mut buf = rfc5769_request();
    buf.extend_from_slice(&[0; 4]);
    assert_eq!(parse(&buf), Err(StunError::LengthMismatch { declared: 0x58, actual: 0x5c }));
}

#[test]
fn attribute_running_past_the_end_is_refused() {
    let mut buf = rfc5769_request();
    // USERNAME header at offset 20+20+8+12 = 60: claim 200 bytes.
    assert_eq!(&buf[60..62], &[0x00, 0x06]);
    buf[62..64].copy_from_slice(&200u16.to_be_bytes());
    assert_eq!(parse(&buf), Err(StunError::AttributeOverflow { typ: attr::USERNAME }));
}

#[test]
fn unaligned_length_and_bad_cookie_are_refused() {
    let mut buf = rfc5769_request();
    buf[3] = 0x57;
    assert_eq!(parse(&buf), Err(StunError::UnalignedLength { declared: 0x57 }));
    let mut buf = rfc5769_request();
    buf[5] ^= 1;
    assert!(!is_stun(&buf));
    assert_eq!(parse(&buf), Err(StunError::NotStun));
    let mut buf = rfc5769_request();
    buf[0] = 0x40;
    assert!(!is_stun(&buf));
    assert_eq!(parse(&buf), Err(StunError::NotStun));
}

#[test]
fn fingerprint_mismatch_is_refused() {
    let mut buf = rfc5769_request();
    let last = buf.len() - 1;
    buf[last] ^= 0x01;
    assert_eq!(parse(&buf), Err(StunError::FingerprintMismatch));
    // A change anywhere in the body breaks the CRC too.
    let mut buf = rfc5769_request();
    buf[30] ^= 0x80;
    assert_eq!(parse(&buf), Err(StunError::FingerprintMismatch));
}

#[test]
fn attribute_after_fingerprint_is_refused() {
    // A correct CRC (computed with the final length field) followed by an empty SOFTWARE.
    let mut buf = rfc5769_request();
    let fp_at = buf.len() - 8;
    buf.extend_from_slice(&[0x80, 0x22, 0x00, 0x00]);
    let len = (buf.len() - HEADER_LEN) as u16;
    buf[2..4].copy_from_slice(&len.to_be_bytes());
    let crc = crc32fast::hash(&buf[..fp_at]) ^ FINGERPRINT_XOR;
    buf[fp_at + 4..fp_at + 8].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(parse(&buf), Err(StunError::FingerprintNotLast));
}

#[test]
fn tampered_message_fails_integrity() {
    // Build without FINGERPRINT so the tamper is caught by the HMAC, not the CRC.
    let mut out = [0u8; 128];
    let mut w = MessageWriter::new(&mut out, Class::Request, METHOD_BINDING, [5; 12]).unwrap();
    w.username(b"a:b").unwrap().priority(10).unwrap().message_integrity(&sha1_key(b"pw")).unwrap();
    let n = w.finish();
    assert!(parse(&out[..n]).unwrap().verify_integrity(b"pw"));
    out[HEADER_LEN + 4 + 4 + 4 + 3] ^= 1; // last byte of PRIORITY
    let m = parse(&out[..n]).unwrap();
    assert_eq!(m.priority(), Some(11));
    assert!(!m.verify_integrity(b"pw"));
}

#[test]
fn attributes_after_integrity_are_ignored() {
    let mut out = [0u8; 128];
    let mut w = MessageWriter::new(&mut out, Class::Request, METHOD_BINDING, [5; 12]).unwrap();
    w.username(b"a:b")
        .unwrap()
        .message_integrity(&sha1_key(b"pw"))
        .unwrap()
        .use_candidate()
        .unwrap()
        .priority(5)
        .unwrap();
    let n = w.finish();
    let m = parse(&out[..n]).unwrap();
    assert!(!m.use_candidate());
    assert_eq!(m.priority(), None);
    assert!(m.verify_integrity(b"pw"));
}

#[test]
fn malformed_known_attributes_are_refused() {
    // PRIORITY with 3 bytes.
    let mut out = [0u8; 64];
    let mut w = MessageWriter::new(&mut out, Class::Request, METHOD_BINDING, [5; 12]).unwrap();
    w.attribute(attr::PRIORITY, &[1, 2, 3]).unwrap();
    let n = w.finish();
    assert_eq!(parse(&out[..n]), Err(StunError::BadAttribute { typ: attr::PRIORITY }));
    // MESSAGE-INTEGRITY of 19 bytes.
    let mut w = MessageWriter::new(&mut out, Class::Request, METHOD_BINDING, [5; 12]).unwrap();
    w.attribute(attr::MESSAGE_INTEGRITY, &[0; 19]).unwrap();
    let n = w.finish();
    assert!(parse(&out[..n]).is_err());
    // XOR-MAPPED-ADDRESS with family 3.
    let mut w = MessageWriter::new(&mut out, Class::Request, METHOD_BINDING, [5; 12]).unwrap();
    w.attribute(attr::XOR_MAPPED_ADDRESS, &[0, 3, 0, 0, 0, 0, 0, 0]).unwrap();
    let n = w.finish();
    assert!(parse(&out[..n]).is_err());
}

#[test]
fn unknown_comprehension_required_attribute_is_reported() {
    let mut out = [0u8; 64];
    let mut w = MessageWriter::new(&mut out, Class::Request, METHOD_BINDING, [5; 12]).unwrap();
    w.attribute(0xC057, &[0, 1, 0, 0]).unwrap(); // optional (GOOG-NETWORK-INFO): fine
    w.attribute(0x7777, &[1]).unwrap();
    let n = w.finish();
    let m = parse(&out[..n]).unwrap();
    assert_eq!(m.unknown_comprehension_required(), Some(0x7777));
}

#[test]
fn message_type_encoding_round_trips() {
    for class in [Class::Request, Class::Indication, Class::SuccessResponse, Class::ErrorResponse] {
        for method in [0x001, 0x003, 0x0ABC, 0x0FFF] {
            let mut out = [0u8; 20];
            let w = MessageWriter::new(&mut out, class, method, [0; 12]).unwrap();
            let n = w.finish();
            let m = parse(&out[..n]).unwrap();
            assert_eq!((m.class(), m.method()), (class, method));
        }
    }
    // Known wire values: binding success 0x0101, binding error 0x0111.
    assert_eq!(message_type(Class::SuccessResponse, 1), 0x0101);
    assert_eq!(message_type(Class::ErrorResponse, 1), 0x0111);
}

fn exercise(buf: &[u8]) {
    let _ = is_stun(buf);
    if let Ok(m) = parse(buf) {
        let _ = (
            m.method(),
            m.class(),
            m.transaction_id(),
            m.username(),
            m.use_candidate(),
            m.ice_controlling(),
            m.ice_controlled(),
            m.priority(),
            m.xor_mapped_address(),
            m.error_code(),
        );
        let _ = m.verify_integrity(b"key");
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = StdRng::seed_from_u64(0x5354_554e);
    let mut buf = [0u8; 256];
    for i in 0..10_000 {
        let len = rng.random_range(0..buf.len());
        rng.fill(&mut buf[..len]);
        if i % 2 == 0 && len >= HEADER_LEN {
            // Make half of them look like STUN so the attribute walker gets exercised.
            buf[0] &= 0x01;
            buf[2..4].copy_from_slice(&((len - HEADER_LEN) as u16).to_be_bytes());
            buf[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        }
        exercise(&buf[..len]);
    }
}

#[test]
fn mutated_valid_messages_never_panic() {
    let mut rng = StdRng::seed_from_u64(7);
    let seeds = [rfc5769_request(), rfc5769_ipv4_response(), rfc5769_ipv6_response()];
    for i in 0..10_000 {
        let mut buf = seeds[i % seeds.len()].clone();
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(HEADER_LEN..buf.len());
            buf[at] = rng.random();
        }
        let cut = rng.random_range(0..=buf.len());
        exercise(&buf[..cut]);
        exercise(&buf);
    }
}

//! Bad frames and envelopes are typed errors, never panics: truncations, wrong magic, other
//! schema versions, oversized lengths, unknown kinds, trailing bytes, garbage payloads, and
//! random bytes (seeded, so a failure reproduces).

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use rand::{Rng, SeedableRng, rngs::SmallRng};

use schema::api::Event;
use schema::frame::{self, FrameError, HEADER_LEN, MAGIC, MAX_PAYLOAD_LEN};
use schema::ids::ProducerId;
use schema::{Message, RouterCommand, RouterEvent, RouterRequest, SCHEMA_VERSION};

fn sample() -> Message {
    Message::RouterCommand(RouterRequest { id: 3, command: RouterCommand::CloseProducer { producer: ProducerId(5) } })
}

fn encoded() -> Vec<u8> {
    let mut buf = Vec::new();
    frame::encode(&sample(), &mut buf).unwrap();
    buf
}

/// A raw frame with any header fields and payload.
fn raw(magic: u16, version: u16, kind: u16, len: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&magic.to_le_bytes());
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&kind.to_le_bytes());
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(payload);
    b
}

#[test]
fn every_truncation_is_a_truncated_error() {
    let buf = encoded();
    for cut in 0..buf.len() {
        let err = frame::decode(&buf[..cut]).unwrap_err();
        let needed = if cut < HEADER_LEN { HEADER_LEN } else { buf.len() };
        assert_eq!(err, FrameError::Truncated { needed, have: cut }, "cut at {cut}");
    }
}

#[test]
fn newer_and_older_peers_are_refused_with_advice() {
    let payload = &encoded()[HEADER_LEN..];
    let newer = raw(MAGIC, SCHEMA_VERSION + 1, 1, payload.len() as u32, payload);
    let err = frame::decode(&newer).unwrap_err();
    assert_eq!(err, FrameError::VersionMismatch { ours: SCHEMA_VERSION, theirs: SCHEMA_VERSION + 1 });
    assert_eq!(err.code(), "version_mismatch");
    let text = err.to_string();
    assert!(text.contains("upgrade this process"), "{text}");
    assert!(text.contains(&format!("v{}", SCHEMA_VERSION + 1)), "{text}");

    let older = raw(MAGIC, 0, 1, payload.len() as u32, payload);
    let text = frame::decode(&older).unwrap_err().to_string();
    assert!(text.contains("upgrade the peer"), "{text}");

    // The version is checked before the kind and the payload: another version's kinds and
    // payloads mean other things, so they must not be reported as this version's errors.
    let other = SCHEMA_VERSION + 1;
    let alien = raw(MAGIC, other, 999, 3, b"???");
    assert!(matches!(frame::decode(&alien), Err(FrameError::VersionMismatch { theirs, .. }) if theirs == other));
}

#[test]
fn json_envelope_checks_its_version_first() {
    let line = frame::encode_json(&sample()).unwrap();
    let next = SCHEMA_VERSION + 1;
    let newer = line.replacen(&format!("\"v\":{SCHEMA_VERSION}"), &format!("\"v\":{next}"), 1);
    let err = frame::decode_json(&newer).unwrap_err();
    assert_eq!(err, FrameError::VersionMismatch { ours: SCHEMA_VERSION, theirs: next });
    // Even when the rest would not parse in this version.
    let err = frame::decode_json(r#"{"v": 9, "type": "teleport", "to": "mars"}"#).unwrap_err();
    assert!(matches!(err, FrameError::VersionMismatch { theirs: 9, .. }), "{err}");

    let missing = r#"{"type":"router_command","id":3,"command":{"method":"counters","params":{}}}"#;
    assert_eq!(frame::decode_json(missing), Err(FrameError::MissingVersion));
    let null = r#"{"v":null,"type":"router_command","id":3,"command":{"method":"counters","params":{}}}"#;
    assert_eq!(frame::decode_json(null), Err(FrameError::MissingVersion));
    for bad_v in [r#""1""#, "-1", "1.5", "65536", "[]", "{}"] {
        let text = format!(r#"{{"v": {bad_v}, "type": "router_command"}}"#);
        assert!(matches!(frame::decode_json(&text), Err(FrameError::Payload(_))), "{text}");
    }
    let v = SCHEMA_VERSION;
    for garbage in [
        String::new(),
        "{".into(),
        "[1,2]".into(),
        "\"str\"".into(),
        format!(r#"{{"v":{v}}}"#),
        format!(r#"{{"v":{v},"type":"nope"}}"#),
        format!(r#"{{"v":{v},"type":"router_event","shard":300}}"#),
    ] {
        assert!(matches!(frame::decode_json(&garbage), Err(FrameError::Payload(_))), "{garbage:?}");
    }
    let huge = format!(r#"{{"v":{v},"pad":"{}"}}"#, "x".repeat(MAX_PAYLOAD_LEN));
    assert!(matches!(frame::decode_json(&huge), Err(FrameError::TooLarge { .. })));
}

#[test]
fn header_errors_are_typed() {
    let payload = &encoded()[HEADER_LEN..];
    let bad_magic = raw(0x1234, SCHEMA_VERSION, 1, payload.len() as u32, payload);
    assert_eq!(frame::decode(&bad_magic), Err(FrameError::BadMagic { found: 0x1234 }));

    // A length over the limit is refused from the header alone, without waiting for the payload.
    let oversized = raw(MAGIC, SCHEMA_VERSION, 1, u32::MAX, b"");
    assert_eq!(frame::decode(&oversized), Err(FrameError::TooLarge { len: u32::MAX as usize, max: MAX_PAYLOAD_LEN }));
    let just_over = raw(MAGIC, SCHEMA_VERSION, 1, MAX_PAYLOAD_LEN as u32 + 1, b"");
    assert!(matches!(frame::decode(&just_over), Err(FrameError::TooLarge { .. })));

    for kind in [0u16, 4, 100, 200, u16::MAX] {
        let unknown = raw(MAGIC, SCHEMA_VERSION, kind, payload.len() as u32, payload);
        assert_eq!(frame::decode(&unknown), Err(FrameError::UnknownKind(kind)));
        // A reader can still skip it.
        assert_eq!(frame::Header::parse(&unknown).unwrap().frame_len(), unknown.len());
    }

    let mut trailing = encoded();
    trailing.extend_from_slice(b"xyz");
    assert_eq!(frame::decode(&trailing), Err(FrameError::TrailingBytes(3)));
    assert_eq!(frame::decode_prefix(&trailing).unwrap().0, sample());
}

#[test]
fn payloads_that_do_not_match_their_kind_are_payload_errors() {
    let event =
        serde_json::to_vec(&RouterEvent { shard: 0, event: Event::KeyframeSeen { producer: ProducerId(1) } }).unwrap();
    for (kind, payload) in [
        (1u16, &event[..]),    // an event body under the command kind
        (2, b"{}".as_slice()), // a reply without id or result
        (3, b"null".as_slice()),
        (1, b"".as_slice()),
        (1, b"\xff\xfe\x00".as_slice()),
        (1, br#"{"id":1,"command":{"method":"produce","params":{}}}"#.as_slice()),
        (1, br#"{"id":-1,"command":{"method":"counters","params":{}}}"#.as_slice()),
    ] {
        let f = raw(MAGIC, SCHEMA_VERSION, kind, payload.len() as u32, payload);
        let err = frame::decode(&f).unwrap_err();
        assert!(matches!(err, FrameError::Payload(_)), "kind {kind} payload {payload:?}: {err:?}");
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = SmallRng::seed_from_u64(0x005c_4e3a);
    let good = encoded();
    let mut buf = vec![0u8; 256];
    for i in 0..200_000 {
        let len = rng.random_range(0..buf.len());
        rng.fill(&mut buf[..len]);
        match i % 4 {
            // Pure noise.
            0 => {}
            // A valid header (so the payload parser is reached) over random payload bytes.
            1 if len >= HEADER_LEN => {
                let kind = rng.random_range(0..5u16);
                let h = raw(MAGIC, SCHEMA_VERSION, kind, (len - HEADER_LEN) as u32, b"");
                buf[..HEADER_LEN].copy_from_slice(&h);
            }
            // A valid frame with a few bytes flipped.
            2 if len >= good.len() => {
                buf[..good.len()].copy_from_slice(&good);
                for _ in 0..rng.random_range(1..4) {
                    let at = rng.random_range(0..good.len());
                    buf[at] ^= rng.random::<u8>() | 1;
                }
            }
            _ => {}
        }
        let input = &buf[..len];
        if let Ok((_, used)) = frame::decode_prefix(input) {
            assert!(used <= len);
        }
        let _ = frame::decode(input);
        if let Ok(text) = std::str::from_utf8(input) {
            let _ = frame::decode_json(text);
        }
    }
}

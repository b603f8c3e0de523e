//! Untrusted SDP: random bytes, mutated real offers, truncations and oversize inputs give a
//! typed error (or a valid parse), never a panic, and the limits hold.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use schema::api::TransportInfo;
use signaling::sdp::parse::{MAX_MEDIA, MAX_SDP_LEN, ParseError, Sdp};
use signaling::sdp::{PublishPolicy, SdpError, answer_publish_offer};

const CHROME: &str = include_str!("data/chrome-publish-offer.sdp");

fn router() -> TransportInfo {
    common::router_transport(1, "[2001:db8::1]:40000")
}

/// Everything we do with untrusted text: parse, write back, answer.
fn exercise(text: &str) {
    if let Ok(sdp) = Sdp::parse(text) {
        // Whatever parses must write out as something that parses to the same model.
        let again = Sdp::parse(&sdp.to_string()).expect("our own output parses");
        assert_eq!(again, sdp);
    }
    let _ = answer_publish_offer(text, &router(), &PublishPolicy::default());
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = StdRng::seed_from_u64(1);
    for _ in 0..3000 {
        let len = rng.random_range(0..400);
        let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        exercise(&String::from_utf8_lossy(&bytes));
        // Random lines made of SDP-ish pieces reach deeper than random bytes.
        let pieces = [
            "v=0",
            "o=- 1 1 IN IP4 x",
            "s=-",
            "t=0 0",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111",
            "a=",
            ":",
            " ",
            "/",
            "a=rtpmap:",
            "a=fmtp:",
            "a=extmap:",
            "a=ssrc:",
            "a=ssrc-group:FID",
            "a=simulcast:send ",
            "a=rid:",
            "a=candidate:",
            "a=msid:",
            "a=setup:",
            "a=fingerprint:",
            "a=mid:",
            "\r\n",
            "\n",
            "255",
            "0",
            "99999999999",
            "~",
            ";",
            ",",
        ];
        let mut s = String::new();
        for _ in 0..rng.random_range(0..60) {
            s.push_str(pieces[rng.random_range(0..pieces.len())]);
        }
        exercise(&s);
    }
}

#[test]
fn mutated_chrome_offers_never_panic() {
    let mut rng = StdRng::seed_from_u64(2);
    let base = CHROME.as_bytes();
    for _ in 0..3000 {
        let mut b = base.to_vec();
        for _ in 0..rng.random_range(1..8) {
            let i = rng.random_range(0..b.len());
            match rng.random_range(0..4) {
                0 => b[i] = rng.random(),
                1 => {
                    b.remove(i);
                }
                2 => {
                    let alphabet = b" :/;=~\r\n0123456789";
                    b.insert(i, alphabet[rng.random_range(0..alphabet.len())])
                }
                _ => b.truncate(i),
            }
            if b.is_empty() {
                break;
            }
        }
        exercise(&String::from_utf8_lossy(&b));
    }
    // Line-level mutations: drop, duplicate or swap whole lines.
    let lines: Vec<&str> = CHROME.split("\r\n").collect();
    for _ in 0..1000 {
        let mut l = lines.clone();
        let i = rng.random_range(0..l.len());
        let j = rng.random_range(0..l.len());
        match rng.random_range(0..3) {
            0 => {
                l.remove(i);
            }
            1 => l.insert(i, lines[j]),
            _ => l.swap(i, j),
        }
        exercise(&l.join("\r\n"));
    }
}

#[test]
fn limits_are_enforced() {
    let big = format!("{}{}", CHROME, "a=x-padding:0123456789abcdef\r\n".repeat(MAX_SDP_LEN / 30));
    assert!(matches!(Sdp::parse(&big), Err(ParseError::TooLarge(_))));
    let head = &CHROME[..CHROME.find("m=audio").unwrap()];
    let many = format!("{head}{}", "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n".repeat(MAX_MEDIA + 1));
    assert_eq!(Sdp::parse(&many), Err(ParseError::TooManyMedia));
    assert_eq!(Sdp::parse(""), Err(ParseError::Empty));
    assert_eq!(Sdp::parse("\r\n\r\n"), Err(ParseError::Empty));
}

#[test]
fn bad_lines_report_their_number() {
    let bad = CHROME.replacen("a=rtpmap:111 opus/48000/2", "a=rtpmap:300 opus/48000/2", 1);
    let line = CHROME.split("\r\n").position(|l| l == "a=rtpmap:111 opus/48000/2").unwrap() + 1;
    assert_eq!(Sdp::parse(&bad), Err(ParseError::BadLine { line, reason: "bad payload type" }));
    assert!(matches!(Sdp::parse("v=1\r\n"), Err(ParseError::BadLine { line: 1, .. })));
    assert!(matches!(Sdp::parse("v=0\r\nhello\r\n"), Err(ParseError::BadLine { line: 2, .. })));
    assert_eq!(Sdp::parse("v=0\r\ns=-\r\nt=0 0\r\n"), Err(ParseError::Missing("o=")));
    let reserved = CHROME.replace("a=extmap:4 urn", "a=extmap:15 urn");
    assert!(matches!(Sdp::parse(&reserved), Err(ParseError::BadLine { reason: "reserved extmap id", .. })));
    assert!(matches!(
        answer_publish_offer("v=0\r\nm=audio\r\n", &router(), &PublishPolicy::default()),
        Err(SdpError::Parse(ParseError::BadLine { line: 2, .. }))
    ));
}

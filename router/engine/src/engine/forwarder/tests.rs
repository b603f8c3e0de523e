//! Table-driven tests of `Consumer::translate`: each row is a consumer and a sequence of steps
//! (packets with the expected decision, or a change of the consumer's state between packets).

use std::time::{Duration, Instant};

use schema::api::MediaKind;
use schema::codec::Codec;
use schema::ids::{ConsumerId, ProducerId, TransportId};

use super::{DropReason, IncomingPacket, Translation};
use crate::engine::objects::{Consumer, ConsumerSetup};
use crate::simulcast::LayerState;

/// The first packet ever sent gets these (random in the engine).
const FIRST_SEQ: u16 = 1000;
const FIRST_TS: u32 = 50_000;

fn consumer(kind: MediaKind, target: Option<u8>) -> Consumer {
    Consumer::new(ConsumerSetup {
        id: ConsumerId(1),
        transport: TransportId(2),
        producer: ProducerId(3),
        kind,
        codec: if kind == MediaKind::Video { Codec::Vp8 } else { Codec::Opus },
        clock_rate: 90_000,
        ssrc: 1234,
        payload_type: 96,
        rtx_ssrc: None,
        rtx_payload_type: None,
        mid: None,
        paused: false,
        layers: LayerState { preferred: Some(2), target, current: None },
        first_out: (FIRST_SEQ, FIRST_TS),
        rtx_seq: 0,
        resend_window: 16,
    })
}

/// One packet: its layer, sequence number, timestamp, when it arrives (ms), and flags.
#[derive(Clone, Copy)]
struct Pkt {
    layer: u8,
    seq: u16,
    ts: u32,
    at_ms: u64,
    key: bool,
    marker: bool,
    padding: bool,
}

const fn pkt(layer: u8, seq: u16, ts: u32, at_ms: u64) -> Pkt {
    Pkt { layer, seq, ts, at_ms, key: false, marker: false, padding: false }
}
const fn key(layer: u8, seq: u16, ts: u32, at_ms: u64) -> Pkt {
    Pkt { key: true, ..pkt(layer, seq, ts, at_ms) }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Forwarded with media: sequence number, timestamp, marker.
    Fwd(u16, u32, bool),
    /// Forwarded, padding only.
    Padding(u16, u32),
    Drop(DropReason),
}
use Expect::*;

enum Step {
    Packet(Pkt, Expect),
    /// The allocation changes the target layer.
    Target(Option<u8>),
    /// `Engine::pause_consumer`: a resume restarts on a keyframe with the numbering continued.
    Pause(bool),
}
use Step::*;

struct Row {
    name: &'static str,
    kind: MediaKind,
    target: Option<u8>,
    steps: &'static [Step],
}

const ROWS: &[Row] = &[
    Row {
        name: "first packet (a keyframe) starts the numbering, then in order",
        kind: MediaKind::Video,
        target: Some(0),
        steps: &[
            Packet(pkt(0, 499, 9000, 0), Drop(DropReason::WaitingForKeyframe)),
            Packet(key(0, 500, 9000, 0), Fwd(FIRST_SEQ, FIRST_TS, false)),
            Packet(pkt(0, 501, 9000, 1), Fwd(FIRST_SEQ + 1, FIRST_TS, false)),
            Packet(Pkt { marker: true, ..pkt(0, 502, 9000, 2) }, Fwd(FIRST_SEQ + 2, FIRST_TS, true)),
            Packet(pkt(0, 503, 12_000, 33), Fwd(FIRST_SEQ + 3, FIRST_TS + 3000, false)),
        ],
    },
    Row {
        name: "audio starts on any packet",
        kind: MediaKind::Audio,
        target: Some(0),
        steps: &[
            Packet(pkt(0, 7, 960, 0), Fwd(FIRST_SEQ, FIRST_TS, false)),
            Packet(pkt(0, 8, 1920, 20), Fwd(FIRST_SEQ + 1, FIRST_TS + 960, false)),
        ],
    },
    Row {
        name: "switch on the target's keyframe: the old layer goes on until then, numbering continues",
        kind: MediaKind::Video,
        target: Some(0),
        steps: &[
            Packet(key(0, 500, 9000, 0), Fwd(FIRST_SEQ, FIRST_TS, false)),
            Target(Some(1)),
            Packet(pkt(1, 7000, 100, 10), Drop(DropReason::WaitingForKeyframe)),
            Packet(pkt(0, 501, 9900, 10), Fwd(FIRST_SEQ + 1, FIRST_TS + 900, false)),
            Packet(pkt(2, 30, 5, 15), Drop(DropReason::OtherLayer)),
            // 10 ms after the last packet sent: the timestamp moves on by 900 ticks at 90 kHz.
            Packet(key(1, 7001, 1000, 20), Fwd(FIRST_SEQ + 2, FIRST_TS + 1800, false)),
            Packet(pkt(0, 502, 10_800, 20), Drop(DropReason::OtherLayer)),
            Packet(pkt(1, 7002, 4000, 53), Fwd(FIRST_SEQ + 3, FIRST_TS + 4800, false)),
        ],
    },
    Row {
        name: "paused consumer drops; a resume restarts on a keyframe with the numbering continued",
        kind: MediaKind::Video,
        target: Some(0),
        steps: &[
            Packet(key(0, 500, 9000, 0), Fwd(FIRST_SEQ, FIRST_TS, false)),
            Pause(true),
            Packet(key(0, 501, 18_000, 100), Drop(DropReason::Paused)),
            Pause(false),
            Packet(pkt(0, 502, 27_000, 200), Drop(DropReason::WaitingForKeyframe)),
            Packet(key(0, 503, 36_000, 300), Fwd(FIRST_SEQ + 1, FIRST_TS + 27_000, false)),
        ],
    },
    Row {
        name: "no layer from the allocation drops everything",
        kind: MediaKind::Video,
        target: None,
        steps: &[Packet(key(0, 500, 9000, 0), Drop(DropReason::NoLayer))],
    },
    Row {
        name: "padding-only packets are forwarded in sequence, marked as no media",
        kind: MediaKind::Video,
        target: Some(0),
        steps: &[
            Packet(key(0, 500, 9000, 0), Fwd(FIRST_SEQ, FIRST_TS, false)),
            Packet(Pkt { padding: true, ..pkt(0, 501, 9000, 5) }, Padding(FIRST_SEQ + 1, FIRST_TS)),
            Packet(pkt(0, 502, 12_000, 33), Fwd(FIRST_SEQ + 2, FIRST_TS + 3000, false)),
        ],
    },
    Row {
        name: "older than the start is dropped; late but after the start is forwarded in place",
        kind: MediaKind::Video,
        target: Some(0),
        steps: &[
            Packet(key(0, 500, 9000, 0), Fwd(FIRST_SEQ, FIRST_TS, false)),
            Packet(pkt(0, 499, 9000, 1), Drop(DropReason::BeforeStart)),
            Packet(pkt(0, 503, 9000, 2), Fwd(FIRST_SEQ + 3, FIRST_TS, false)),
            Packet(pkt(0, 502, 9000, 3), Fwd(FIRST_SEQ + 2, FIRST_TS, false)),
            Packet(pkt(0, 65_000, 9000, 4), Drop(DropReason::BeforeStart)),
        ],
    },
];

#[test]
fn translate_table() {
    let t0 = Instant::now();
    for row in ROWS {
        let mut c = consumer(row.kind, row.target);
        for (i, step) in row.steps.iter().enumerate() {
            match *step {
                Target(target) => c.layers.target = target,
                Pause(paused) => {
                    if c.paused && !paused {
                        c.sync = None;
                        c.layers.current = None;
                    }
                    c.paused = paused;
                }
                Packet(p, expect) => {
                    let now = t0 + Duration::from_millis(p.at_ms);
                    let packet = IncomingPacket {
                        layer: p.layer,
                        seq: p.seq,
                        ts: p.ts,
                        marker: p.marker,
                        keyframe: p.key,
                        padding_only: p.padding,
                        vp8: None,
                    };
                    let got = match c.translate(&packet, now) {
                        Translation::Forward(f) => {
                            // As the engine does after a successful send.
                            c.note_sent(f.seq, f.ts, now, f.vp8);
                            if f.media { Fwd(f.seq, f.ts, f.marker) } else { Padding(f.seq, f.ts) }
                        }
                        Translation::Drop(reason) => Drop(reason),
                    };
                    assert_eq!(got, expect, "{}: step {i}", row.name);
                }
            }
        }
    }
}

#[test]
fn a_switch_is_reported_once_and_counted_unless_it_is_the_start() {
    let t0 = Instant::now();
    let mut c = consumer(MediaKind::Video, Some(0));
    let first =
        IncomingPacket { layer: 0, seq: 10, ts: 0, marker: false, keyframe: true, padding_only: false, vp8: None };
    let Translation::Forward(f) = c.translate(&first, t0) else { panic!("not forwarded") };
    assert_eq!(f.switched, Some(super::Switch { from: None, to: 0 }));
    assert_eq!(c.switches, 0);
    c.note_sent(f.seq, f.ts, t0, f.vp8);
    c.layers.target = Some(1);
    let Translation::Forward(f) = c.translate(&IncomingPacket { layer: 1, seq: 90, ..first }, t0) else {
        panic!("not forwarded")
    };
    assert_eq!(f.switched, Some(super::Switch { from: Some(0), to: 1 }));
    assert_eq!((c.switches, c.layers.current), (1, Some(1)));
    let Translation::Forward(f) = c.translate(&IncomingPacket { layer: 1, seq: 91, keyframe: false, ..first }, t0)
    else {
        panic!("not forwarded")
    };
    assert_eq!(f.switched, None);
}

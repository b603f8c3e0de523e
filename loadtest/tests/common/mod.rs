//! What the loadtest's tests share: stamped media through the engine on the simulated network,
//! and the subscriber's received packets fed to the tool's accounting (the accounting tests);
//! the real platform to run the tool against ([`platform`], the process tests).

// Each test binary uses its own part of this module.
#![allow(dead_code)]

pub mod platform;

use std::time::{Duration, Instant};

use integration_tests::room::Room;
use integration_tests::sim::Sim;
use loadtest::Clock;
use loadtest::stamp::{self, Stamp};
use loadtest::stats::TrackRecv;

/// The publisher's sending: Opus every 20 ms, VP8 every 33 ms, each payload stamped with its
/// virtual send time; keyframe requests answered with a keyframe.
#[derive(Debug, Default)]
pub struct Sender {
    pub sent_audio: u64,
    pub sent_video: u64,
    pub first_send: Option<Instant>,
    answered: usize,
    next_audio: Option<Instant>,
    next_video: Option<Instant>,
}

impl Sender {
    pub fn run(&mut self, sim: &mut Sim, room: &mut Room, clock: &Clock, d: Duration) {
        let until = sim.now + d;
        let mut next_audio = self.next_audio.unwrap_or(sim.now);
        let mut next_video = self.next_video.unwrap_or(sim.now);
        while sim.now < until {
            sim.run_until(next_audio.min(next_video).min(until));
            let now = sim.now;
            self.first_send.get_or_insert(now);
            let requests = sim.client(room.publisher).keyframe_requests;
            if requests > self.answered {
                self.answered = requests;
                room.video.force_keyframe();
            }
            let stamp = Stamp { source: 0, sent_us: clock.at_us(now) };
            if now >= next_audio {
                next_audio += Duration::from_millis(20);
                let mut p = room.audio.next_packet();
                assert!(stamp::write(&mut p.payload, stamp));
                let publication = room.audio_pub.clone();
                sim.client(room.publisher).send(&publication, now, p.seq, p.ts, p.marker, &p.payload);
                self.sent_audio += 1;
            }
            if now >= next_video {
                next_video += Duration::from_micros(33_333);
                let publication = room.video_pub.clone();
                for mut p in room.video.next_frame() {
                    assert!(stamp::write(&mut p.payload, Stamp { source: 1, ..stamp }));
                    sim.client(room.publisher).send(&publication, now, p.seq, p.ts, p.marker, &p.payload);
                    self.sent_video += 1;
                }
            }
        }
        self.next_audio = Some(next_audio);
        self.next_video = Some(next_video);
    }
}

/// The tool's accounting of what a subscriber received on one SSRC.
pub fn account(sim: &Sim, client: usize, ssrc: u32, video: bool, clock: &Clock) -> TrackRecv {
    let mut t = TrackRecv::new(video);
    for r in sim.clients[client].client.received_on(ssrc) {
        t.on_packet(clock.at_us(r.at), r.ext_seq, r.timestamp, r.marker, &r.payload);
    }
    t
}

//! A simulcast call on the simulated network: a publisher sending three VP8 layers (rids `q`,
//! `h`, `f`, each its own SSRC with RTX) and Opus, and subscribers whose links can be capped.
//! The publisher answers a keyframe request with a keyframe of the layer asked for, as a
//! browser does, unless a test tells it not to. A layer can also be made to carry only padding,
//! as Chromium's stopped layers do when its encoder is limited (`padding_only`).

use std::time::{Duration, Instant};

use schema::api::{ConsumeParams, ConsumerInfo, ConsumerLayers, LayerParams, MediaKind};
use schema::ids::ProducerId;

use crate::client::{Publication, str0m_extensions};
use crate::media::{OpusStream, Vp8Stream, layer_of};
use crate::room::produce_params;
use crate::sim::{Link, Sim};

/// The layers' rids, lowest first.
pub const RIDS: [&str; 3] = ["q", "h", "f"];

/// How the router learns the layers' streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signaled {
    /// Each layer's SSRC and RTX SSRC (SSRC simulcast, `a=ssrc-group:SIM`).
    Ssrcs,
    /// Only the rids: the router binds each SSRC from the mid and rid header extensions.
    Rids,
}

#[derive(Debug)]
pub struct SimulcastSubscriber {
    pub client: usize,
    pub video: ConsumerInfo,
    pub audio: ConsumerInfo,
}

/// One received video packet of a subscriber: its sequence number (extended), the layer its
/// payload says, whether it starts a keyframe, and when it arrived.
#[derive(Debug, Clone, Copy)]
pub struct Got {
    pub seq: u64,
    pub layer: u8,
    pub keyframe: bool,
    pub picture_id: Option<u16>,
    pub at: Instant,
}

pub struct SimulcastRoom {
    pub publisher: usize,
    pub layers: Vec<Publication>,
    pub audio_pub: Publication,
    pub video_producer: ProducerId,
    pub audio_producer: ProducerId,
    pub streams: Vec<Vp8Stream>,
    pub audio: OpusStream,
    pub subscribers: Vec<SimulcastSubscriber>,
    /// Layers the publisher sends (a test can stop one, or never start it).
    pub sending: [bool; 3],
    /// Layers whose keyframe requests the publisher ignores (and that send no periodic ones).
    pub deaf: [bool; 3],
    /// Layers whose encoder is stopped while their stream goes on, as Chromium's do when its
    /// CPU or uplink runs short: every frame time two padding packets (no payload, new sequence
    /// numbers, the last frame's timestamp). A layer resumes with a keyframe, as a browser's
    /// encoder does. (Chromium's redundant RTX copies are dropped before liveness looks:
    /// `duplicate-retransmissions-are-not-forwarded.rs`.)
    pub padding_only: [bool; 3],
    was_padding: [bool; 3],
    /// Obey REMB as a browser does: a layer is sent only while it and every layer below it fit
    /// in the last REMB received (the lowest is always sent).
    pub obey_remb: bool,
    next_audio: Instant,
    next_video: Instant,
    answered: usize,
}

impl std::fmt::Debug for SimulcastRoom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulcastRoom").field("subscribers", &self.subscribers.len()).finish()
    }
}

/// About what each layer of [`SimulcastRoom`] sends, in bits per second (see `setup`).
pub const LAYER_BPS: [u64; 3] = [150_000, 430_000, 1_050_000];

impl SimulcastRoom {
    /// Layer sizes: `q` one 600-byte packet a frame (about 150 kbit/s), `h` two of 900 (about
    /// 430 kbit/s), `f` four of 1100 (about 1.05 Mbit/s), all at 30 frames a second.
    pub fn setup(sim: &mut Sim, signaled: Signaled, publisher_link: (Link, Link)) -> SimulcastRoom {
        let (publisher, transport) = sim.add_client(publisher_link.0, publisher_link.1);
        let audio_pub = sim.client(publisher).publish("a0", MediaKind::Audio);
        let layers = sim.client(publisher).publish_simulcast("v0", &RIDS);
        let audio_producer =
            sim.engine.produce(transport.id, produce_params(MediaKind::Audio, &audio_pub)).expect("produce audio");
        let mut video = produce_params(MediaKind::Video, &layers[0]);
        video.ssrc = None;
        video.rtx_ssrc = None;
        video.layers = layers
            .iter()
            .zip(RIDS)
            .map(|(l, rid)| match signaled {
                Signaled::Ssrcs => LayerParams { rid: None, ssrc: Some(l.ssrc), rtx_ssrc: l.rtx_ssrc },
                Signaled::Rids => LayerParams { rid: Some(rid.into()), ssrc: None, rtx_ssrc: None },
            })
            .collect();
        let video_producer = sim.engine.produce(transport.id, video).expect("produce simulcast video");
        let streams = (0..3u8)
            .map(|i| {
                let mut s = Vp8Stream::new(10_000 * u64::from(i + 1), 90_000 * (u32::from(i) + 1));
                s.layer = i;
                s.packets_per_frame = [1, 2, 4][usize::from(i)];
                s.payload_size = [600, 900, 1100][usize::from(i)];
                s.width = 320 << i;
                s.height = 180 << i;
                s.picture_id = Some(1000 * (u16::from(i) + 1));
                s
            })
            .collect();
        SimulcastRoom {
            publisher,
            layers,
            audio_pub,
            video_producer,
            audio_producer,
            streams,
            audio: OpusStream::new(1000, 48_000),
            subscribers: Vec::new(),
            sending: [true; 3],
            deaf: [false; 3],
            padding_only: [false; 3],
            was_padding: [false; 3],
            obey_remb: false,
            next_audio: sim.now,
            next_video: sim.now,
            answered: 0,
        }
    }

    /// Connects a subscriber and subscribes it to the video (with RTX, wanting `preferred`, the
    /// top when `None`) and the audio.
    pub fn add_subscriber(&mut self, sim: &mut Sim, link: (Link, Link), preferred: Option<u8>) -> usize {
        let (client, transport) = sim.add_client(link.0, link.1);
        let (_, vrtx) = sim.client(client).payload_types(MediaKind::Video);
        let consume = |producer, rtx, mid: &str| ConsumeParams {
            producer,
            payload_type: None,
            rtx_payload_type: rtx,
            mid: Some(mid.into()),
            extensions: str0m_extensions(),
            paused: false,
            preferred_layer: preferred,
        };
        let video = sim.engine.consume(transport.id, consume(self.video_producer, vrtx, "v0")).expect("consume video");
        let audio = sim.engine.consume(transport.id, consume(self.audio_producer, None, "a0")).expect("consume audio");
        sim.client(client).subscribe("v0", &video);
        sim.client(client).subscribe("a0", &audio);
        self.subscribers.push(SimulcastSubscriber { client, video, audio });
        self.subscribers.len() - 1
    }

    /// Sends media for `d` of virtual time.
    pub fn run(&mut self, sim: &mut Sim, d: Duration) {
        let until = sim.now + d;
        while sim.now < until {
            let next = self.next_audio.min(self.next_video).min(until);
            sim.run_until(next);
            let now = sim.now;
            let rids = sim.client(self.publisher).keyframe_request_rids.clone();
            for rid in &rids[self.answered..] {
                for (i, s) in self.streams.iter_mut().enumerate() {
                    if !self.deaf[i] && rid.as_deref().is_none_or(|r| r == RIDS[i]) {
                        s.force_keyframe();
                    }
                }
            }
            self.answered = rids.len();
            if self.obey_remb
                && let Some(&(_, limit)) = sim.client(self.publisher).remb.last()
            {
                let mut used = 0;
                for (i, bps) in LAYER_BPS.into_iter().enumerate().skip(1) {
                    used += bps;
                    self.sending[i] = used + LAYER_BPS[0] <= limit;
                }
            }
            if now >= self.next_audio {
                self.next_audio += Duration::from_millis(20);
                let p = self.audio.next_packet();
                let publication = self.audio_pub.clone();
                sim.client(self.publisher).send(&publication, now, p.seq, p.ts, p.marker, &p.payload);
            }
            if now >= self.next_video {
                self.next_video += Duration::from_micros(33_333);
                for i in 0..3 {
                    if self.deaf[i] {
                        // No periodic keyframes either: a layer whose keyframe never comes.
                        self.streams[i].keyframe_interval = u32::MAX;
                    }
                    let publication = self.layers[i].clone();
                    if self.padding_only[i] && self.sending[i] {
                        self.was_padding[i] = true;
                        let s = &mut self.streams[i];
                        let last_ts = s.ts.wrapping_sub(3000);
                        for _ in 0..2 {
                            sim.client(self.publisher).send(&publication, now, s.seq, last_ts, false, &[]);
                            s.seq += 1;
                        }
                        // The clock goes on: the frame after the stop is 33 ms later per frame.
                        s.ts = s.ts.wrapping_add(3000);
                        s.frame += 1;
                        continue;
                    }
                    if std::mem::take(&mut self.was_padding[i]) {
                        self.streams[i].force_keyframe();
                    }
                    let frame = self.streams[i].next_frame();
                    if !self.sending[i] {
                        continue;
                    }
                    for p in frame {
                        sim.client(self.publisher).send(&publication, now, p.seq, p.ts, p.marker, &p.payload);
                    }
                }
            }
        }
    }

    /// Video a subscriber received, in arrival order, repaired retransmissions included.
    pub fn received(&self, sim: &Sim, sub: usize) -> Vec<Got> {
        let s = &self.subscribers[sub];
        sim.clients[s.client]
            .client
            .received_on(s.video.ssrc)
            .into_iter()
            .filter_map(|r| {
                Some(Got {
                    seq: r.ext_seq,
                    layer: layer_of(&r.payload)?,
                    keyframe: crate::media::is_vp8_keyframe_start(&r.payload),
                    picture_id: crate::media::vp8_picture_id(&r.payload),
                    at: r.at,
                })
            })
            .collect()
    }

    /// Runs in 10 ms steps until a packet of `layer` reaches the subscriber (one that arrives
    /// from now on), for at most `limit`; returns how long it took.
    pub fn run_until_layer(&mut self, sim: &mut Sim, sub: usize, layer: u8, limit: Duration) -> Option<Duration> {
        let start = sim.now;
        while sim.now < start + limit {
            self.run(sim, Duration::from_millis(10));
            if let Some(g) = self.received(sim, sub).iter().find(|g| g.at >= start && g.layer == layer) {
                return Some(g.at - start);
            }
        }
        None
    }

    /// The longest time between two video packets the subscriber received after `from` (and
    /// from `from` to the first, and from the last to now).
    pub fn longest_gap(&self, sim: &Sim, sub: usize, from: Instant) -> Duration {
        let mut last = from;
        let mut longest = Duration::ZERO;
        for g in self.received(sim, sub).iter().filter(|g| g.at >= from) {
            longest = longest.max(g.at - last);
            last = g.at;
        }
        longest.max(sim.now - last)
    }

    /// Every change of layer in the stream the subscriber decodes (its packets in sequence
    /// order: a retransmission or a reordered packet of the layer before a switch may arrive
    /// after it) is on a keyframe; returns the layers in stream order (one entry per change).
    pub fn layer_sequence_switching_on_keyframes(&self, sim: &Sim, sub: usize) -> Vec<u8> {
        let mut got = self.received(sim, sub);
        got.sort_by_key(|g| g.seq);
        got.dedup_by_key(|g| g.seq);
        let mut seq: Vec<u8> = Vec::new();
        for g in &got {
            if seq.last() != Some(&g.layer) {
                assert!(g.keyframe, "switch to {} not on a keyframe: {g:?}", g.layer);
                seq.push(g.layer);
            }
        }
        seq
    }

    pub fn layers_of(&self, sim: &Sim, sub: usize) -> ConsumerLayers {
        sim.engine.consumer_layers(self.subscribers[sub].video.id).expect("consumer exists")
    }
}

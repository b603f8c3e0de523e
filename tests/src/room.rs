//! The common scenario: one publisher sending Opus and VP8 through the router to N subscribers.

use std::time::{Duration, Instant};

use schema::api::{ConsumeParams, ConsumerInfo, MediaKind, ProduceParams};
use schema::ids::ProducerId;

use crate::client::{Publication, str0m_extensions};
use crate::media::{OpusStream, Vp8Stream};
use crate::sim::{Link, Sim};

/// A subscriber's view of the room.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub client: usize,
    pub audio: ConsumerInfo,
    pub video: ConsumerInfo,
}

/// Publisher, its streams and the subscribers.
#[derive(Debug)]
pub struct Room {
    pub publisher: usize,
    pub audio_pub: Publication,
    pub video_pub: Publication,
    pub audio_producer: ProducerId,
    pub video_producer: ProducerId,
    pub subscribers: Vec<Subscriber>,
    pub audio: OpusStream,
    pub video: Vp8Stream,
    next_audio: Instant,
    next_video: Instant,
    /// Keyframe requests the publisher has already answered.
    answered_requests: usize,
    /// Every packet the publisher sent: (kind, frame tag).
    pub sent_audio: u64,
    pub sent_video: u64,
}

/// Produce parameters matching a str0m publication.
pub fn produce_params(kind: MediaKind, p: &Publication) -> ProduceParams {
    ProduceParams {
        kind,
        codec: match kind {
            MediaKind::Audio => schema::codec::Codec::Opus,
            MediaKind::Video => schema::codec::Codec::Vp8,
        },
        payload_type: p.pt,
        clock_rate: if kind == MediaKind::Audio { 48_000 } else { 90_000 },
        rtx_payload_type: p.rtx_pt,
        ssrc: Some(p.ssrc),
        rtx_ssrc: p.rtx_ssrc,
        mid: Some(p.mid.to_string()),
        rid: None,
        extensions: str0m_extensions(),
        paused: false,
        layers: Vec::new(),
        priority: 0,
    }
}

impl Room {
    /// Connects a publisher and `subscribers` subscribers, publishes, and subscribes them all.
    pub fn setup(
        sim: &mut Sim,
        subscribers: usize,
        publisher_link: (Link, Link),
        subscriber_link: (Link, Link),
    ) -> Room {
        let (publisher, pub_transport) = sim.add_client(publisher_link.0, publisher_link.1);
        let audio_pub = sim.client(publisher).publish("a0", MediaKind::Audio);
        let video_pub = sim.client(publisher).publish("v0", MediaKind::Video);
        let audio_producer =
            sim.engine.produce(pub_transport.id, produce_params(MediaKind::Audio, &audio_pub)).expect("produce audio");
        let video_producer =
            sim.engine.produce(pub_transport.id, produce_params(MediaKind::Video, &video_pub)).expect("produce video");
        let mut room = Room {
            publisher,
            audio_pub,
            video_pub,
            audio_producer,
            video_producer,
            subscribers: Vec::new(),
            audio: OpusStream::new(1000, 48_000),
            video: Vp8Stream::new(2000, 90_000),
            next_audio: sim.now,
            next_video: sim.now,
            answered_requests: 0,
            sent_audio: 0,
            sent_video: 0,
        };
        for _ in 0..subscribers {
            room.add_subscriber(sim, subscriber_link);
        }
        room
    }

    /// Connects one more subscriber and subscribes it to both tracks.
    pub fn add_subscriber(&mut self, sim: &mut Sim, link: (Link, Link)) -> usize {
        let (client, transport) = sim.add_client(link.0, link.1);
        let (_, vrtx) = sim.client(client).payload_types(MediaKind::Video);
        let audio = sim
            .engine
            .consume(
                transport.id,
                ConsumeParams {
                    producer: self.audio_producer,
                    payload_type: None,
                    rtx_payload_type: None,
                    mid: Some("a0".into()),
                    extensions: str0m_extensions(),
                    paused: false,
                    preferred_layer: None,
                },
            )
            .expect("consume audio");
        let video = sim
            .engine
            .consume(
                transport.id,
                ConsumeParams {
                    producer: self.video_producer,
                    payload_type: None,
                    rtx_payload_type: vrtx,
                    mid: Some("v0".into()),
                    extensions: str0m_extensions(),
                    paused: false,
                    preferred_layer: None,
                },
            )
            .expect("consume video");
        sim.client(client).subscribe("a0", &audio);
        sim.client(client).subscribe("v0", &video);
        self.subscribers.push(Subscriber { client, audio, video });
        self.subscribers.len() - 1
    }

    /// Sends media for `d` of virtual time: 50 audio packets/s and 30 video frames/s. The
    /// publisher answers every keyframe request with a keyframe, as a browser does.
    pub fn run(&mut self, sim: &mut Sim, d: Duration) {
        let until = sim.now + d;
        while sim.now < until {
            let next = self.next_audio.min(self.next_video).min(until);
            sim.run_until(next);
            let now = sim.now;
            let requests = sim.client(self.publisher).keyframe_requests;
            if requests > self.answered_requests {
                self.answered_requests = requests;
                self.video.force_keyframe();
            }
            if now >= self.next_audio {
                self.next_audio += Duration::from_millis(20);
                let p = self.audio.next_packet();
                let publication = self.audio_pub.clone();
                sim.client(self.publisher).send(&publication, now, p.seq, p.ts, p.marker, &p.payload);
                self.sent_audio += 1;
            }
            if now >= self.next_video {
                self.next_video += Duration::from_micros(33_333);
                let publication = self.video_pub.clone();
                for p in self.video.next_frame() {
                    sim.client(self.publisher).send(&publication, now, p.seq, p.ts, p.marker, &p.payload);
                    self.sent_video += 1;
                }
            }
        }
    }
}

//! One simulated participant: a signaling WebSocket and two str0m peer connections (publish and
//! subscribe, as the 100ms SDK has), each on its own UDP socket, driven by one task. str0m is
//! sans-IO, so this task only moves datagrams, wakes at str0m's timeouts and media ticks, and
//! hands events to the accounting in [`crate::stats`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::ChannelId;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpWrite, SeqNo};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use synth_media::{OpusStream, Packet, Vp8Stream};
use tokio::net::UdpSocket;

use crate::layer_drop::{DropSchedule, LayerDrop, Tick};
use crate::layout::{Layout, Tile, Tiles};
use crate::novideo::{VideoWatch, Watch};
use crate::signal::{Api, Incoming, Signal};
use crate::stamp::{self, Stamp};
use crate::stats::{JoinTimeline, Step, TrackRecv};
use crate::{Clock, Error};

/// How long joining may take before the peer gives up (and says so in the report).
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// One video layer a publisher sends: rid, packets per frame, payload bytes, size.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Layer {
    pub rid: &'static str,
    pub packets_per_frame: u16,
    pub payload_size: usize,
    pub width: u16,
    pub height: u16,
}

/// The layers of the default template's simulcast (q/h/f), at bitrates near a browser's
/// (≈ 150 kbit/s, 480 kbit/s, 1.8 Mbit/s at 30 fps).
pub const LAYERS: [Layer; 3] = [
    Layer { rid: "q", packets_per_frame: 1, payload_size: 620, width: 320, height: 180 },
    Layer { rid: "h", packets_per_frame: 2, payload_size: 1000, width: 640, height: 360 },
    Layer { rid: "f", packets_per_frame: 7, payload_size: 1100, width: 1280, height: 720 },
];

/// What a participant does.
#[derive(Debug, Clone)]
pub struct PeerPlan {
    pub index: u32,
    pub room_id: String,
    pub role: String,
    pub audio: bool,
    pub video: bool,
    pub simulcast: bool,
    /// The single layer sent without simulcast (index into [`LAYERS`]).
    pub resolution: usize,
    /// When the media stops and the peer leaves.
    pub until: Instant,
    /// Receive no media: the subscribe connection's socket drops RTP and RTCP in the kernel
    /// once attached (ICE and DTLS still complete), so the generator spends nothing on what the
    /// router forwards and the router's counters alone measure the run (`--sink`).
    pub sink: bool,
    /// Which videos this peer shows, and how large (`--layout`).
    pub layout: Layout,
    /// When this publisher's upper simulcast layers stop (`--drop-layers`).
    pub drop_layers: Option<DropSchedule>,
}

/// Counters every peer adds to, for the progress line and the time series.
#[derive(Debug, Default)]
pub struct Live {
    pub joined: AtomicU64,
    pub failed: AtomicU64,
    pub sent_packets: AtomicU64,
    pub sent_bytes: AtomicU64,
    pub recv_packets: AtomicU64,
    pub recv_bytes: AtomicU64,
    pub latency_sum_us: AtomicU64,
    pub latency_count: AtomicU64,
    /// Media ticks more than 10 ms late: the generator falling behind.
    pub late_ticks: AtomicU64,
    pub ticks: AtomicU64,
}

/// What one participant saw.
#[derive(Debug, Clone, Serialize)]
pub struct PeerReport {
    pub index: u32,
    pub role: String,
    pub publisher: bool,
    pub timeline: JoinTimeline,
    pub tracks: Vec<TrackRecv>,
    pub sent: Vec<SentTrack>,
    /// The videos asked for under `--layout` (empty with `all`).
    pub tiles: Vec<Tile>,
    /// Time with no forwarded video, summed over the videos this peer should see
    /// ([`crate::novideo`]); `None` under `--sink` (nothing is received).
    pub no_video_ms: Option<u64>,
    /// Each of those videos.
    pub videos: Vec<VideoWatch>,
    pub error: Option<String>,
}

/// What a publisher sent on one track (layer).
#[derive(Debug, Clone, Serialize)]
pub struct SentTrack {
    pub source: u32,
    pub kind: &'static str,
    pub rid: Option<&'static str>,
    /// Media packets (padding apart).
    pub packets: u64,
    pub bytes: u64,
    pub keyframes_on_request: u64,
    /// `--drop-layers`: times the layer stopped, the padding it sent while stopped, and the
    /// keyframe requests it ignored then.
    pub stops: u64,
    pub padding_packets: u64,
    pub keyframe_requests_ignored: u64,
}

impl SentTrack {
    fn new(source: u32, kind: &'static str, rid: Option<&'static str>) -> SentTrack {
        SentTrack {
            source,
            kind,
            rid,
            packets: 0,
            bytes: 0,
            keyframes_on_request: 0,
            stops: 0,
            padding_packets: 0,
            keyframe_requests_ignored: 0,
        }
    }
}

/// A str0m peer connection on its own UDP socket.
struct Pc {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    timeout: Instant,
    events: Vec<Event>,
    /// The `ion-sfu` channel, once open, and the text messages it brought (on the subscribe
    /// connection: the server's replies to `prefer-video-track-state`).
    channel: Option<ChannelId>,
    channel_texts: Vec<String>,
}

impl Pc {
    async fn new(now: Instant) -> Result<Pc, Error> {
        let socket = UdpSocket::bind("127.0.0.1:0").await.map_err(|e| Error::Setup(format!("UDP bind: {e}")))?;
        let local = socket.local_addr().map_err(|e| Error::Setup(format!("UDP: {e}")))?;
        // RTP mode: the synthetic packets go out as they are, and arrive as packets, not frames.
        let mut rtc = Rtc::builder().set_rtp_mode(true).build(now);
        let cand = Candidate::host(local, "udp").map_err(|e| Error::Setup(format!("candidate: {e}")))?;
        rtc.add_local_candidate(cand);
        Ok(Pc { rtc, socket, local, timeout: now, events: Vec::new(), channel: None, channel_texts: Vec::new() })
    }

    /// Drains str0m's output: sends datagrams, keeps events, notes the next timeout.
    fn drive(&mut self, live: &Live) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.timeout = t;
                    return;
                }
                Ok(Output::Transmit(t)) => {
                    // A full socket buffer drops the datagram, as a congested network would.
                    if self.socket.try_send_to(&t.contents, t.destination).is_ok() {
                        live.sent_bytes.fetch_add(t.contents.len() as u64, Ordering::Relaxed);
                    }
                }
                Ok(Output::Event(e)) => self.events.push(e),
                Err(_) => {
                    self.timeout = Instant::now() + Duration::from_millis(50);
                    return;
                }
            }
        }
    }

    fn input(&mut self, now: Instant, src: SocketAddr, data: &[u8], live: &Live) {
        if let Ok(r) = Receive::new(Protocol::Udp, src, self.local, data) {
            let _ = self.rtc.handle_input(Input::Receive(now, r));
        }
        // RTP mode keeps one packet until the next poll, so drain after each datagram.
        self.drive(live);
    }

    fn tick(&mut self, now: Instant, live: &Live) {
        let _ = self.rtc.handle_input(Input::Timeout(now));
        self.drive(live);
    }
}

/// One outgoing media stream of a publisher.
enum Source {
    Audio(OpusStream),
    Video(Vp8Stream),
}

struct Outgoing {
    mid: Mid,
    rid: Option<Rid>,
    pt: Option<Pt>,
    source: Source,
    next: Instant,
    sent: SentTrack,
    /// An upper layer under `--drop-layers`.
    drop: Option<LayerDrop>,
    /// The last frame's RTP timestamp and send time: a stopped layer's padding carries them.
    last_frame: Option<(u32, Instant)>,
}

/// The subscriber side's accounting for one peer.
struct Inbound {
    tracks: HashMap<u32, TrackRecv>,
    watch: Watch,
}

/// Runs one participant to the end of the plan; never fails, a failure is in the report.
pub async fn run(
    plan: PeerPlan,
    api: Api,
    init_url: String,
    tls: Arc<rustls::ClientConfig>,
    clock: Clock,
    live: Arc<Live>,
) -> PeerReport {
    let mut timeline = JoinTimeline::default();
    let mut inbound = Inbound { tracks: HashMap::new(), watch: Watch::new(plan.layout.asks_for_video()) };
    let mut outgoing = Vec::new();
    let mut tiles = Tiles::new(plan.layout);
    let publisher = plan.audio || plan.video;
    let result =
        session(&plan, &api, &init_url, tls, &clock, &live, &mut timeline, &mut inbound, &mut outgoing, &mut tiles)
            .await;
    if result.is_err() {
        live.failed.fetch_add(1, Ordering::Relaxed);
    }
    // The run's end, or the peer's if it failed first.
    let (no_video_ms, videos) = inbound.watch.finish(clock.at_us(plan.until.min(Instant::now())));
    let mut tracks: Vec<TrackRecv> = inbound.tracks.into_values().collect();
    tracks.sort_by_key(|t| t.source);
    PeerReport {
        index: plan.index,
        role: plan.role.clone(),
        publisher,
        timeline,
        tracks,
        sent: outgoing.into_iter().map(|o| o.sent).collect(),
        tiles: tiles.into_tiles(),
        no_video_ms: (!plan.sink).then_some(no_video_ms),
        videos: if plan.sink { Vec::new() } else { videos },
        error: result.err().map(|e| e.to_string()),
    }
}

#[allow(clippy::too_many_arguments)] // one participant's whole life; the pieces are its state
async fn session(
    plan: &PeerPlan,
    api: &Api,
    init_url: &str,
    tls: Arc<rustls::ClientConfig>,
    clock: &Clock,
    live: &Live,
    timeline: &mut JoinTimeline,
    inbound: &mut Inbound,
    outgoing: &mut Vec<Outgoing>,
    tiles: &mut Tiles,
) -> Result<(), Error> {
    timeline.mark(Step::Start, clock.now_us());
    let peer_id = format!("lt-{}-{}", plan.index, clock.now_us());
    let token = api.auth_token(&plan.room_id, &plan.role, &peer_id).await?;
    let endpoint = crate::signal::init(init_url, &token, &peer_id, tls.clone()).await?;
    let mut sig = Signal::connect(&endpoint, &peer_id, &token, tls).await?;
    timeline.mark(Step::WsOpen, clock.now_us());

    let join_deadline = Instant::now() + JOIN_TIMEOUT;
    // The SDK sends `join` only after the policy arrived.
    let mut early_pushes = Vec::new();
    loop {
        match tokio::time::timeout_at(join_deadline.into(), sig.recv()).await {
            Err(_) => return Err(Error::Signal("no on-policy-change".into())),
            Ok(Incoming::Push(m, _)) if m == "on-policy-change" => break,
            Ok(Incoming::Push(m, p)) => early_pushes.push((m, p)),
            Ok(Incoming::Closed) => return Err(Error::Signal("socket closed before the policy".into())),
            Ok(Incoming::Response(..)) => {}
        }
    }

    let now = Instant::now();
    let mut publish = Pc::new(now).await?;
    let mut subscribe = Pc::new(now).await?;
    if plan.sink {
        router::io::drop_media_datagrams(&subscribe.socket)
            .map_err(|e| Error::Setup(format!("media filter on the subscribe socket: {e}")))?;
    }
    let mut api_sdp = publish.rtc.sdp_api();
    api_sdp.add_channel("ion-sfu".into());
    let (offer, pending) = api_sdp.apply().ok_or_else(|| Error::Signal("no join offer".into()))?;
    timeline.mark(Step::JoinSent, clock.now_us());
    let join_id = sig
        .request(
            "join",
            json!({"name": format!("loadtest-{}", plan.index), "data": "", "offer": {"type": "offer", "sdp": offer.to_sdp_string()},
                   "disableVidAutoSub": plan.layout.asks_for_video(), "simulcast": plan.simulcast, "server_sub_degrade": false}),
        )
        .await?;

    // Publish state: the pending offer and the request it went in.
    let mut awaiting: Option<(String, SdpPendingOffer)> = Some((join_id.clone(), pending));
    let mut publish_sent = false;
    let mut published = Vec::new();
    let mut joined = false;
    let mut ping_at = Instant::now() + Duration::from_secs(3);
    let mut buf_pub = vec![0u8; 2048];
    let mut buf_sub = vec![0u8; 2048];
    let mut pushes = early_pushes.into_iter().collect::<std::collections::VecDeque<_>>();

    loop {
        let now = Instant::now();
        if now >= plan.until {
            if !joined {
                return Err(Error::Signal("not joined by the end of the run".into()));
            }
            break;
        }
        if !joined && now >= join_deadline {
            return Err(Error::Signal("join timed out".into()));
        }
        // Signaling pushes that arrived before the join answer are handled after it.
        if joined {
            while let Some((m, p)) = pushes.pop_front() {
                on_push(&m, p, &mut subscribe, &mut sig, tiles, live).await?;
            }
        }
        let mut wake = publish.timeout.min(subscribe.timeout).min(ping_at).min(plan.until);
        for o in outgoing.iter() {
            wake = wake.min(o.next);
        }
        tokio::select! {
            biased;
            r = publish.socket.recv_from(&mut buf_pub) => {
                if let Ok((n, src)) = r {
                    publish.input(Instant::now(), src, &buf_pub[..n], live);
                }
            }
            r = subscribe.socket.recv_from(&mut buf_sub) => {
                if let Ok((n, src)) = r {
                    subscribe.input(Instant::now(), src, &buf_sub[..n], live);
                }
            }
            msg = sig.recv() => match msg {
                Incoming::Closed => return Err(Error::Signal("signaling closed the socket".into())),
                Incoming::Response(id, result) => {
                    let Some((want, _)) = &awaiting else { continue };
                    if *want != id {
                        continue;
                    }
                    let Some((_, pending)) = awaiting.take() else { continue };
                    let answer = result.map_err(|e| Error::Signal(format!("offer refused: {e}")))?;
                    let sdp = answer["sdp"].as_str().ok_or_else(|| Error::Signal(format!("answer without sdp: {answer}")))?;
                    let sdp = SdpAnswer::from_sdp_string(sdp).map_err(|e| Error::Signal(format!("answer SDP: {e}")))?;
                    publish.rtc.sdp_api().accept_answer(pending, sdp).map_err(|e| Error::Signal(format!("answer: {e}")))?;
                    publish.drive(live);
                    if id == join_id {
                        joined = true;
                        timeline.mark(Step::Joined, clock.now_us());
                        live.joined.fetch_add(1, Ordering::Relaxed);
                    } else {
                        start_media(plan, &mut publish, &published, outgoing);
                    }
                }
                Incoming::Push(m, p) => {
                    if joined { on_push(&m, p, &mut subscribe, &mut sig, tiles, live).await?; } else { pushes.push_back((m, p)); }
                }
            },
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        let now = Instant::now();
        if now >= publish.timeout {
            publish.tick(now, live);
        }
        if now >= subscribe.timeout {
            subscribe.tick(now, live);
        }
        if now >= ping_at {
            sig.request("ping", json!({"timestamp": clock.now_us() / 1000})).await?;
            ping_at = now + Duration::from_secs(3);
        }
        // The publish connection is up: offer the tracks (one renegotiation, all at once).
        if joined && !publish_sent && (plan.audio || plan.video) && awaiting.is_none() {
            let (id, pending, mids) = publish_offer(plan, &mut publish, &mut sig).await?;
            awaiting = Some((id, pending));
            published = mids;
            publish_sent = true;
        }
        let media_pc = if plan.audio || plan.video { &mut publish } else { &mut subscribe };
        on_events(media_pc, clock, timeline, inbound, outgoing, live, true);
        let other = if plan.audio || plan.video { &mut subscribe } else { &mut publish };
        on_events(other, clock, timeline, inbound, outgoing, live, false);
        ask_for_tiles(&mut subscribe, tiles, &mut inbound.watch, clock, live);
        if let Some(refused) = tiles.refused() {
            return Err(Error::Signal(refused.to_owned()));
        }
        send_media(now, clock, &mut publish, outgoing, live);
    }
    sig.close().await;
    Ok(())
}

/// The publish offer with the plan's tracks, and the `tracks` map the SDK sends beside it.
async fn publish_offer(
    plan: &PeerPlan,
    pc: &mut Pc,
    sig: &mut Signal,
) -> Result<(String, SdpPendingOffer, Vec<(Mid, MediaKind)>), Error> {
    let mut mids = Vec::new();
    let stream = format!("lt-stream-{}", plan.index);
    let mut tracks = serde_json::Map::new();
    let mut api = pc.rtc.sdp_api();
    for (kind, on) in [(MediaKind::Audio, plan.audio), (MediaKind::Video, plan.video)] {
        if !on {
            continue;
        }
        let (name, simulcast) = match kind {
            MediaKind::Audio => ("audio", None),
            MediaKind::Video => {
                let s = plan.simulcast.then(|| {
                    let mut s = Simulcast::new();
                    for l in LAYERS {
                        s.add_send_layer(SimulcastLayer::new(l.rid));
                    }
                    s
                });
                ("video", s)
            }
        };
        let track = format!("lt-{name}-{}", plan.index);
        mids.push((
            api.add_media(kind, Direction::SendOnly, Some(stream.clone()), Some(track.clone()), simulcast),
            kind,
        ));
        tracks.insert(
            track.clone(),
            json!({"track_id": track, "stream_id": stream, "type": name, "source": "regular", "mute": false, "description": ""}),
        );
    }
    let (offer, pending) = api.apply().ok_or_else(|| Error::Signal("no publish offer".into()))?;
    let id = sig
        .request("offer", json!({"desc": {"type": "offer", "sdp": offer.to_sdp_string()}, "tracks": tracks}))
        .await?;
    Ok((id, pending, mids))
}

/// The server's pushes that need an action: a subscribe offer gets an answer; announced tracks
/// become tiles.
async fn on_push(
    method: &str,
    params: Value,
    sub: &mut Pc,
    sig: &mut Signal,
    tiles: &mut Tiles,
    live: &Live,
) -> Result<(), Error> {
    tiles.on_push(method, &params);
    if method != "offer" {
        return Ok(());
    }
    let sdp = params["sdp"].as_str().ok_or_else(|| Error::Signal("subscribe offer without sdp".into()))?;
    // The router is the DTLS server. An `actpass` offer makes str0m choose passive, which a
    // browser would not; `passive` leaves it `active`, as a browser answers.
    let sdp = sdp.replace("a=setup:actpass", "a=setup:passive");
    let offer = SdpOffer::from_sdp_string(&sdp).map_err(|e| Error::Signal(format!("subscribe offer SDP: {e}")))?;
    let answer = sub.rtc.sdp_api().accept_offer(offer).map_err(|e| Error::Signal(format!("subscribe offer: {e}")))?;
    sub.drive(live);
    sig.notify("answer", json!({"desc": {"type": "answer", "sdp": answer.to_sdp_string()}})).await
}

/// Writes the layout's pending `prefer-video-track-state` requests on the subscribe
/// connection's `ion-sfu` channel once it is open, each once its track is in that connection;
/// one the channel does not take waits.
/// A request accepted for a shown video starts its no-video accounting.
fn ask_for_tiles(sub: &mut Pc, tiles: &mut Tiles, watch: &mut Watch, clock: &Clock, live: &Live) {
    for text in sub.channel_texts.drain(..) {
        if let Some(t) = tiles.on_reply(&text)
            && t.max_layer != "none"
        {
            watch.on_shown(&t.track_id, clock.now_us());
        }
    }
    let Some(id) = sub.channel else { return };
    let mut wrote = false;
    while let Some(request) = tiles.next_request(|track| watch.has_line(track)) {
        let taken = sub.rtc.channel(id).is_some_and(|mut ch| ch.write(false, request.as_bytes()).unwrap_or(false));
        if !taken {
            tiles.unsend(&request);
            break;
        }
        wrote = true;
    }
    if wrote {
        sub.drive(live);
    }
}

/// After the publish answer: one outgoing stream per track (per layer with simulcast).
fn start_media(plan: &PeerPlan, pc: &mut Pc, mids: &[(Mid, MediaKind)], outgoing: &mut Vec<Outgoing>) {
    let now = Instant::now();
    for &(mid, kind) in mids {
        let codec = if kind == MediaKind::Audio { Codec::Opus } else { Codec::Vp8 };
        // str0m offered its own payload types and the answer keeps them; `writer` is for
        // frame mode only.
        let remote = pc.rtc.media(mid).map(|m| m.remote_pts().to_vec()).unwrap_or_default();
        let pt = pc.rtc.codec_config().find(|p| p.spec().codec == codec && remote.contains(&p.pt())).map(|p| p.pt());
        match kind {
            MediaKind::Audio if plan.audio => {
                let source = stamp::source_id(plan.index, 0);
                outgoing.push(Outgoing {
                    mid,
                    rid: None,
                    pt,
                    source: Source::Audio(OpusStream::new(1, 0)),
                    next: now,
                    sent: SentTrack::new(source, "audio", None),
                    drop: None,
                    last_frame: None,
                });
            }
            MediaKind::Video if plan.video => {
                let layers: Vec<(usize, Layer)> = if plan.simulcast {
                    LAYERS.iter().copied().enumerate().collect()
                } else {
                    vec![(plan.resolution, LAYERS[plan.resolution])]
                };
                for (i, l) in layers {
                    let mut v = Vp8Stream::new(1, 0);
                    v.packets_per_frame = l.packets_per_frame;
                    v.payload_size = l.payload_size;
                    v.layer = i as u8;
                    v.width = l.width;
                    v.height = l.height;
                    v.keyframe_interval = 90;
                    v.picture_id = Some(0);
                    let source = stamp::source_id(plan.index, 1 + i as u8);
                    outgoing.push(Outgoing {
                        mid,
                        rid: plan.simulcast.then(|| l.rid.into()),
                        pt,
                        source: Source::Video(v),
                        next: now,
                        sent: SentTrack::new(source, "video", plan.simulcast.then_some(l.rid)),
                        // `q` never stops: Chromium drops layers from the top.
                        drop: plan.drop_layers.filter(|_| plan.simulcast && i > 0).map(LayerDrop::new),
                        last_frame: None,
                    });
                }
            }
            _ => {}
        }
    }
}

/// Sends the packets that are due: Opus every 20 ms, a VP8 frame every 33 ms per layer.
fn send_media(now: Instant, clock: &Clock, pc: &mut Pc, outgoing: &mut [Outgoing], live: &Live) {
    let mut wrote = false;
    for o in outgoing.iter_mut() {
        if now < o.next {
            continue;
        }
        live.ticks.fetch_add(1, Ordering::Relaxed);
        if now.duration_since(o.next) > Duration::from_millis(10) {
            live.late_ticks.fetch_add(1, Ordering::Relaxed);
        }
        let Some(pt) = o.pt else { continue };
        let (packets, period, wallclock) = match &mut o.source {
            Source::Audio(s) => (vec![s.next_packet()], Duration::from_millis(20), now),
            Source::Video(s) => {
                let (packets, wallclock) = video_tick(now, clock, s, o.drop.as_mut(), &mut o.last_frame);
                (packets, Duration::from_micros(33_333), wallclock)
            }
        };
        if let Some(d) = &o.drop {
            o.sent.stops = d.stops;
        }
        // Keep the schedule, but do not try to catch up a backlog in one burst.
        o.next = (o.next + period).max(now);
        let mut api = pc.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(o.mid, o.rid) else { continue };
        for mut p in packets {
            // Padding (empty) has no room for a stamp, and nothing to repair.
            let padding = p.payload.is_empty();
            if padding {
                o.sent.padding_packets += 1;
            } else {
                stamp::write(&mut p.payload, Stamp { source: o.sent.source, sent_us: clock.now_us() });
                o.sent.packets += 1;
                o.sent.bytes += p.payload.len() as u64;
            }
            live.sent_packets.fetch_add(1, Ordering::Relaxed);
            let audio = matches!(o.source, Source::Audio(_));
            let ext = if audio {
                ExtensionValues { audio_level: Some(-30), voice_activity: Some(true), ..Default::default() }
            } else {
                ExtensionValues::default()
            };
            let write = RtpWrite::new(pt, SeqNo::from(p.seq), p.ts, wallclock, p.payload)
                .marker(p.marker)
                .ext_vals(ext)
                .nackable(!padding);
            tx.write_rtp(write);
            wrote = true;
        }
    }
    if wrote {
        pc.drive(live);
    }
}

/// One frame tick of a video layer: its frame and the wall-clock time it was captured, or,
/// for a layer `--drop-layers` has stopped, one padding packet or nothing. A stopped layer's
/// RTP clock keeps running (its next frame is stamped with the capture time, as a browser's);
/// its padding carries the last frame's timestamp and capture time, as Chromium's does.
fn video_tick(
    now: Instant,
    clock: &Clock,
    v: &mut Vp8Stream,
    drop: Option<&mut LayerDrop>,
    last_frame: &mut Option<(u32, Instant)>,
) -> (Vec<Packet>, Instant) {
    match drop.map(|d| d.on_tick(clock.at_us(now))) {
        None | Some(Tick::Frame { keyframe: false }) => {}
        // A resumed layer starts with a keyframe, as a browser's encoder does.
        Some(Tick::Frame { keyframe: true }) => v.force_keyframe(),
        Some(tick) => {
            let (ts, at) = last_frame.unwrap_or((v.ts, now));
            let mut out = Vec::new();
            if tick == Tick::Padding {
                out.push(Packet { seq: v.seq, ts, marker: false, payload: Vec::new() });
                v.seq += 1;
            }
            // One frame interval at 90 kHz, what `next_frame` would have advanced.
            v.ts = v.ts.wrapping_add(3000);
            return (out, at);
        }
    }
    let frame = v.next_frame();
    if let Some(p) = frame.first() {
        *last_frame = Some((p.ts, now));
    }
    (frame, now)
}

/// str0m's events: connection steps, received packets, keyframe requests.
fn on_events(
    pc: &mut Pc,
    clock: &Clock,
    timeline: &mut JoinTimeline,
    inbound: &mut Inbound,
    outgoing: &mut [Outgoing],
    live: &Live,
    media_pc: bool,
) {
    for e in pc.events.drain(..) {
        match e {
            Event::IceConnectionStateChange(IceConnectionState::Connected | IceConnectionState::Completed)
                if media_pc =>
            {
                timeline.mark(Step::IceConnected, clock.now_us());
            }
            Event::Connected if media_pc => timeline.mark(Step::DtlsDone, clock.now_us()),
            Event::RtpPacket(p) => {
                let at = clock.at_us(p.timestamp);
                let video = p.time.frequency().get() == 90_000;
                let t = inbound.tracks.entry(*p.header.ssrc).or_insert_with(|| TrackRecv::new(video));
                let before = t.latency_us.len();
                t.on_packet(at, *p.seq_no, p.header.timestamp, p.header.marker, &p.payload);
                live.recv_packets.fetch_add(1, Ordering::Relaxed);
                live.recv_bytes.fetch_add(p.payload.len() as u64, Ordering::Relaxed);
                if let Some(l) = t.latency_us.get(before) {
                    live.latency_sum_us.fetch_add(u64::from(*l), Ordering::Relaxed);
                    live.latency_count.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(k) = t.first_keyframe_us {
                    timeline.mark(Step::FirstKeyframe, k);
                }
                if let Some(f) = t.first_packet_us {
                    timeline.mark(Step::FirstPacket, f);
                }
                if video {
                    let ssrc = p.header.ssrc;
                    let rtc = &mut pc.rtc;
                    inbound.watch.on_packet(*ssrc, at, p.payload.len(), || {
                        rtc.direct_api().stream_rx(&ssrc).map(|s| s.mid().to_string())
                    });
                }
            }
            // A video the router sends us: a subscription whose no-video time counts.
            Event::MediaAdded(m) if m.kind == MediaKind::Video && m.direction == Direction::RecvOnly => {
                let track_id = pc.rtc.media(m.mid).map(|media| media.track_id().to_owned()).unwrap_or_default();
                inbound.watch.on_video_line(&m.mid.to_string(), &track_id, clock.now_us());
            }
            Event::ChannelOpen(id, label) if label == "ion-sfu" => pc.channel = Some(id),
            Event::ChannelData(d) if !d.binary => pc.channel_texts.push(String::from_utf8_lossy(&d.data).into_owned()),
            Event::KeyframeRequest(r) => {
                for o in outgoing.iter_mut() {
                    if o.mid != r.mid || o.rid != r.rid {
                        continue;
                    }
                    // A browser not encoding a layer cannot send its keyframe.
                    if o.drop.as_ref().is_some_and(LayerDrop::is_dropped) {
                        o.sent.keyframe_requests_ignored += 1;
                    } else if let Source::Video(v) = &mut o.source {
                        v.force_keyframe();
                        o.sent.keyframes_on_request += 1;
                    }
                }
            }
            _ => {}
        }
    }
}

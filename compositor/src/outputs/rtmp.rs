//! RTMP destinations, each isolated from the job and from the others.
//!
//! ```text
//! main pipeline: tee "h264" → queue (leaky) → appsink ─┐ callbacks hand each sample to every
//!                tee "aac"  → queue (leaky) → appsink ─┘ destination's feed (never blocking)
//! per URL, its own pipeline and thread:
//!                appsrc (H.264) → h264parse ─┐
//!                appsrc (AAC) ───────────────┴→ flvmux (streamable) → rtmp2sink
//! ```
//!
//! In GStreamer 1.22 a tee passes a branch's flow error upstream, so an rtmp2sink whose server
//! refuses or drops the connection would fail the whole job. Behind an appsink nothing flows
//! back: the appsink always succeeds, and a destination's pipeline fails alone. Its thread
//! then tears it down and builds a new one after a backoff ([`Backoff`]), for as long as the
//! job runs. A new connection starts at the next keyframe (at most one GOP away) with its
//! timestamps from zero; a destination that cannot keep up drops what it cannot take (video
//! until the next keyframe) rather than slowing the job.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use util::LockExt;

use super::{Taps, link_tee, static_pad};
use crate::config::RtmpRetry;
use crate::pipeline::{Error, build_err, make};

/// What a caller can report about one RTMP destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpState {
    pub url: String,
    /// Publishing now: the server accepted the stream and bytes are going out.
    pub connected: bool,
    /// Connections tried since the job started (the first included).
    pub attempts: u32,
    /// Why the latest connection failed or ended, if one did.
    pub last_error: Option<String>,
}

/// No connection within this long is a failure (rtmp2sink's own timeout covers a silent
/// server during the handshake, not one that never answers the publish).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Connected, but not a byte sent for this long plus a GOP (a new connection sends nothing
/// before its first keyframe): the peer stopped reading.
const STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// What a destination may hold unsent before it drops (a few seconds at the usual bitrates).
const MAX_QUEUED_VIDEO: u64 = 8 << 20;
const MAX_QUEUED_AUDIO: u64 = 1 << 20;
/// How often a destination's thread looks at its pipeline and at the job.
const POLL: Duration = Duration::from_millis(100);

/// The RTMP outputs of a running job.
#[derive(Debug)]
pub(crate) struct Rtmp {
    destinations: Vec<Arc<Destination>>,
    stop: Arc<Stop>,
    workers: Vec<JoinHandle<()>>,
}

#[derive(Debug)]
struct Destination {
    url: String,
    state: Mutex<RtmpState>,
    /// The current connection's sources, while there is one.
    feed: Mutex<Option<Feed>>,
}

#[derive(Debug)]
struct Feed {
    video: gst_app::AppSrc,
    audio: gst_app::AppSrc,
    /// The main pipeline's PTS of this connection's first keyframe: its time zero.
    base: Option<gst::ClockTime>,
    /// Video was dropped: wait for a keyframe before sending more.
    resync: bool,
}

/// How the job tells the destinations' threads to end.
#[derive(Debug, Default)]
struct Stop {
    ending: Mutex<Option<Ending>>,
    changed: Condvar,
}

#[derive(Debug, Clone, Copy)]
enum Ending {
    /// Send what was pushed, close the stream, give up at the deadline.
    Finish(Instant),
    /// Drop everything now.
    Abort,
}

impl Stop {
    fn ending(&self) -> Option<Ending> {
        *self.ending.lock_unpoisoned()
    }

    fn set(&self, ending: Ending) {
        *self.ending.lock_unpoisoned() = Some(ending);
        self.changed.notify_all();
    }

    /// Sleeps `wait` unless the job ends first; true if it did.
    fn sleep(&self, wait: Duration) -> bool {
        let guard = self.ending.lock_unpoisoned();
        let (guard, _) =
            self.changed.wait_timeout_while(guard, wait, |e| e.is_none()).unwrap_or_else(|p| p.into_inner());
        guard.is_some()
    }
}

/// The wait before the next connection attempt: `first`, doubling per failure up to `max`,
/// back to `first` after a connection that lasted `stable`.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    retry: RtmpRetry,
    next: Duration,
}

impl Backoff {
    pub fn new(retry: RtmpRetry) -> Backoff {
        Backoff { retry, next: retry.first }
    }

    /// A connection failed after being up for `connected_for` (`None`: it never was).
    pub fn failed(&mut self, connected_for: Option<Duration>) -> Duration {
        if connected_for.is_some_and(|d| d >= self.retry.stable) {
            self.next = self.retry.first;
        }
        let wait = self.next;
        self.next = (self.next * 2).min(self.retry.max);
        wait
    }
}

/// Hangs the appsinks off the tees and starts every destination's first connection (before
/// the main pipeline plays, so that none misses the first keyframe).
pub(crate) fn build(
    pipeline: &gst::Pipeline,
    taps: &Taps,
    urls: &[String],
    retry: RtmpRetry,
    gop: Duration,
) -> Result<Rtmp, Error> {
    let destinations: Vec<Arc<Destination>> = urls
        .iter()
        .map(|url| {
            Arc::new(Destination {
                url: url.clone(),
                state: Mutex::new(RtmpState { url: url.clone(), connected: false, attempts: 0, last_error: None }),
                feed: Mutex::new(None),
            })
        })
        .collect();
    for (tee, video) in [(&taps.h264, true), (&taps.aac, false)] {
        let queue = make("queue")?;
        queue.set_property_from_str("leaky", "downstream");
        let sink = gst_app::AppSink::builder().sync(false).build();
        // Live pipelines do not preroll; an appsink that waited for one would hold the start.
        sink.set_property("async", false);
        let to = destinations.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    // The appsink never fails the tee: a sample it cannot get is skipped.
                    if let Ok(sample) = sink.pull_sample() {
                        for d in &to {
                            d.push(&sample, video);
                        }
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        pipeline.add_many([&queue, sink.upcast_ref()]).map_err(build_err("add an RTMP appsink"))?;
        queue.link(&sink).map_err(build_err("link an RTMP appsink"))?;
        link_tee(tee, &static_pad(&queue, "sink")?)?;
    }
    let stop = Arc::new(Stop::default());
    let mut workers = Vec::new();
    for d in &destinations {
        let first = Session::open(d);
        let (d, stop) = (d.clone(), stop.clone());
        let worker = std::thread::Builder::new()
            .name("rtmp".into())
            .spawn(move || run(&d, first, &stop, retry, STALL_TIMEOUT + gop))
            .map_err(|e| Error::Build(format!("cannot start an RTMP thread: {e}")))?;
        workers.push(worker);
    }
    Ok(Rtmp { destinations, stop, workers })
}

impl Rtmp {
    pub fn states(&self) -> Vec<RtmpState> {
        self.destinations.iter().map(|d| d.state.lock_unpoisoned().clone()).collect()
    }

    /// Call once the main pipeline has ended (all it made is in the feeds): each connected
    /// destination sends the rest and closes its stream, until `deadline`.
    pub fn finish(mut self, deadline: Instant) {
        self.stop.set(Ending::Finish(deadline));
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl Drop for Rtmp {
    fn drop(&mut self) {
        self.stop.set(Ending::Abort);
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl Destination {
    /// A sample of the main encode, on the main pipeline's streaming thread: never blocks.
    fn push(&self, sample: &gst::Sample, video: bool) {
        let Some(buffer) = sample.buffer() else { return };
        let mut feed = self.feed.lock_unpoisoned();
        let Some(f) = feed.as_mut() else { return };
        // Running time, the one clock both streams share: x264enc's buffers carry a PTS 1000 h
        // on, in a segment starting there.
        let segment = sample.segment().and_then(|s| s.downcast_ref::<gst::ClockTime>());
        let running = |t: gst::ClockTime| segment.map_or(Some(t), |s| s.to_running_time(t));
        let Some(pts) = buffer.pts().and_then(running) else { return };
        let (src, limit) = if video {
            let key = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
            if f.base.is_none() || f.resync {
                if !key {
                    return;
                }
                f.base = f.base.or(Some(pts));
                f.resync = false;
            }
            (&f.video, MAX_QUEUED_VIDEO)
        } else {
            // Audio starts with the first keyframe, so the stream starts decodable.
            if f.base.is_none_or(|base| pts < base) {
                return;
            }
            (&f.audio, MAX_QUEUED_AUDIO)
        };
        let base = f.base.unwrap_or(gst::ClockTime::ZERO);
        if src.current_level_bytes() > limit {
            f.resync |= video;
            tracing::debug!(url = %self.url, video, "RTMP destination behind: dropped");
            return;
        }
        let mut out = buffer.copy();
        {
            let b = out.make_mut();
            b.set_pts(pts.saturating_sub(base));
            b.set_dts(buffer.dts().and_then(running).map(|d| d.saturating_sub(base)));
        }
        let mut rebased = gst::Sample::builder().buffer(&out);
        let caps = sample.caps_owned();
        if let Some(caps) = &caps {
            rebased = rebased.caps(caps);
        }
        // A refused push (the pipeline is going down) is the worker's to see on its bus.
        let _ = src.push_sample(&rebased.build());
    }
}

/// One connection attempt: its pipeline, playing.
struct Session {
    pipeline: gst::Pipeline,
    sink: gst::Element,
    opened: Instant,
}

enum Outcome {
    Ended,
    Failed { error: String, connected_for: Option<Duration> },
}

impl Session {
    fn open(d: &Destination) -> Result<Session, String> {
        d.state.lock_unpoisoned().attempts += 1;
        let pipeline = gst::Pipeline::new();
        let source = || {
            // Not live: flvmux then interleaves by timestamp alone, and the sink (sync=false)
            // sends as the job produces.
            gst_app::AppSrc::builder().format(gst::Format::Time).is_live(false).block(false).max_bytes(u64::MAX).build()
        };
        let (video, audio) = (source(), source());
        let build = || -> Result<gst::Element, Error> {
            let h264parse = make("h264parse")?;
            let mux = make("flvmux")?;
            mux.set_property("streamable", true);
            let sink = make("rtmp2sink")?;
            sink.set_property("location", d.url.as_str());
            sink.set_property("sync", false);
            pipeline
                .add_many([video.upcast_ref(), audio.upcast_ref(), &h264parse, &mux, &sink])
                .map_err(build_err("add an RTMP pipeline"))?;
            video.link(&h264parse).map_err(build_err("link RTMP video"))?;
            let mux_video = mux.request_pad_simple("video").ok_or_else(|| Error::Build("flvmux video pad".into()))?;
            let mux_audio = mux.request_pad_simple("audio").ok_or_else(|| Error::Build("flvmux audio pad".into()))?;
            static_pad(&h264parse, "src")?.link(&mux_video).map_err(|e| Error::Build(format!("{e:?}")))?;
            static_pad(audio.upcast_ref(), "src")?.link(&mux_audio).map_err(|e| Error::Build(format!("{e:?}")))?;
            mux.link(&sink).map_err(build_err("link flvmux to rtmp2sink"))?;
            Ok(sink)
        };
        let sink = build().map_err(|e| e.to_string())?;
        *d.feed.lock_unpoisoned() = Some(Feed { video, audio, base: None, resync: false });
        // rtmp2sink connects in the background (async-connect): this returns at once.
        if pipeline.set_state(gst::State::Playing).is_err() {
            d.feed.lock_unpoisoned().take();
            let _ = pipeline.set_state(gst::State::Null);
            return Err("the RTMP pipeline did not start".into());
        }
        Ok(Session { pipeline, sink, opened: Instant::now() })
    }

    /// Watches the connection until it fails or the job ends.
    fn watch(&self, d: &Destination, stop: &Stop, stall: Duration) -> Outcome {
        let Some(bus) = self.pipeline.bus() else {
            return Outcome::Failed { error: "pipeline without a bus".into(), connected_for: None };
        };
        let mut connected_at: Option<Instant> = None;
        let (mut sent, mut progress_at) = (0u64, Instant::now());
        loop {
            match stop.ending() {
                Some(Ending::Abort) => return Outcome::Ended,
                Some(Ending::Finish(deadline)) => {
                    self.finish(d, &bus, deadline);
                    return Outcome::Ended;
                }
                None => {}
            }
            let connected_for = connected_at.map(|t| t.elapsed());
            if let Some(msg) = bus.timed_pop_filtered(
                gst::ClockTime::from_nseconds(super::nanos(POLL)),
                &[gst::MessageType::Error, gst::MessageType::Eos],
            ) {
                let error = match msg.view() {
                    gst::MessageView::Error(e) => match e.debug() {
                        Some(debug) => format!("{} ({debug})", e.error()),
                        None => e.error().to_string(),
                    },
                    _ => "the stream ended".to_string(),
                };
                return Outcome::Failed { error, connected_for };
            }
            let now_sent = bytes_sent(&self.sink);
            if now_sent > sent {
                (sent, progress_at) = (now_sent, Instant::now());
                if connected_at.is_none() {
                    connected_at = Some(Instant::now());
                    d.state.lock_unpoisoned().connected = true;
                    tracing::info!(url = %d.url, "RTMP destination connected");
                }
            } else if connected_at.is_some() && progress_at.elapsed() > stall {
                return Outcome::Failed { error: format!("nothing sent for {stall:?}"), connected_for };
            }
            if connected_at.is_none() && self.opened.elapsed() > CONNECT_TIMEOUT {
                return Outcome::Failed { error: format!("not connected within {CONNECT_TIMEOUT:?}"), connected_for };
            }
        }
    }

    /// Ends the stream cleanly: the feed's last samples go out, then FLV's end and the RTMP
    /// stop commands.
    fn finish(&self, d: &Destination, bus: &gst::Bus, deadline: Instant) {
        let Some(feed) = d.feed.lock_unpoisoned().take() else { return };
        if !d.state.lock_unpoisoned().connected {
            return;
        }
        let _ = feed.video.end_of_stream();
        let _ = feed.audio.end_of_stream();
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = bus.timed_pop_filtered(
            gst::ClockTime::from_nseconds(super::nanos(left)),
            &[gst::MessageType::Error, gst::MessageType::Eos],
        );
    }

    fn close(self, d: &Destination) {
        d.feed.lock_unpoisoned().take();
        let _ = self.pipeline.set_state(gst::State::Null);
        d.state.lock_unpoisoned().connected = false;
    }
}

/// rtmp2sink's count of bytes written to its connection: zero until the server has accepted
/// the stream (the connection object exists only after the publish succeeded).
fn bytes_sent(sink: &gst::Element) -> u64 {
    sink.property::<Option<gst::Structure>>("stats").and_then(|s| s.get::<u64>("out-bytes-total").ok()).unwrap_or(0)
}

/// A destination's thread: connect, watch, and after a failure wait and connect again,
/// until the job ends.
fn run(d: &Destination, first: Result<Session, String>, stop: &Stop, retry: RtmpRetry, stall: Duration) {
    let mut backoff = Backoff::new(retry);
    let mut next = Some(first);
    loop {
        let attempt = next.take().unwrap_or_else(|| Session::open(d));
        let outcome = match attempt {
            Ok(session) => {
                let outcome = session.watch(d, stop, stall);
                session.close(d);
                outcome
            }
            Err(error) => Outcome::Failed { error, connected_for: None },
        };
        let Outcome::Failed { error, connected_for } = outcome else { return };
        tracing::warn!(url = %d.url, ?connected_for, "RTMP destination failed: {error}");
        d.state.lock_unpoisoned().last_error = Some(error);
        if stop.sleep(backoff.failed(connected_for)) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_resets_after_a_stable_connection() {
        let mut b = Backoff::new(RtmpRetry::default());
        let waits: Vec<u64> = (0..7).map(|_| b.failed(None).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(b.failed(Some(Duration::from_secs(59))).as_secs(), 30, "not stable yet");
        assert_eq!(b.failed(Some(Duration::from_secs(60))).as_secs(), 1);
        assert_eq!(b.failed(None).as_secs(), 2);
    }
}

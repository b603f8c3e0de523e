//! The GStreamer pipeline of one compositing job: encoded frames in, one encode out to every
//! output of the job.
//!
//! ```text
//! per video input: appsrc (video/x-vp8 | video/x-h264 au) → [h264parse] → vp8dec | avdec_h264
//!                  → videoconvert → textoverlay (the peer's name) → videoscale
//!                  → compositor sink pad (placed by `layout`, as the `director` arranges)
//! per audio input: appsrc (audio/x-opus) → opusdec → audioconvert → audioresample
//!                  → level (loudness, for the active speaker) → audiomixer pad
//! always:          videotestsrc (live, black) → capsfilter W×H@fps → compositor pad (zorder 0)
//! per peer without a camera on: videotestsrc (live, grey) → capsfilter 640×360@fps
//!                  → textoverlay (the peer's name) → compositor pad
//!
//! compositor (force-live, black) → capsfilter W×H@fps I420 → tee "raw"
//!   tee "raw" → queue → x264enc → h264parse → byte-stream caps → tee "h264"
//! audiomixer (force-live) → capsfilter 48 kHz stereo → queue → audioconvert → avenc_aac
//!   → aacparse → tee "aac"
//! the tees → the outputs (crate::outputs): MP4, HLS renditions, RTMP destinations
//! ```
//!
//! `tiles.rs` places the video pads as the director arranges them, and makes the placeholders.
//!
//! Both mixers are live on their own (`force-live`, a construct-only property of 1.22's
//! aggregators): they emit a frame every 1/fps and 10 ms of audio on the clock whether or not an
//! input has data, so a silent or frozen publisher, or none at all, never stalls the output.
//! Inputs are live appsrcs stamped by the caller (`do-timestamp=false`): the caller's PTS is
//! running time, i.e. time since [`Composite::start`]; a frame may arrive up to
//! [`Config::latency`] after its PTS and still make its output frame.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

mod tiles;

use self::tiles::Placeholder;
use crate::config::Config;
use crate::director::{Arrangement, Director};
use crate::outputs::hls::{self, Hls};
use crate::outputs::rtmp::{self, Rtmp, RtmpState};
use crate::outputs::{self, Taps, h264_encoder, nanos};

/// One input of a job, named by the caller (e.g. a track's index in the job).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InputId(pub u32);

impl fmt::Display for InputId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "input {}", self.0)
    }
}

/// The encoded format an input receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// VP8 frames, as the recorder's `Vp8Depacketizer` assembles them.
    Vp8,
    /// H.264 access units in Annex B (start codes), SPS and PPS in band before an IDR.
    H264,
    /// Opus packets (one per push), 48 kHz.
    Opus,
}

impl InputKind {
    fn is_video(self) -> bool {
        matches!(self, InputKind::Vp8 | InputKind::H264)
    }
}

/// Why a job could not start, take a frame or finish.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("GStreamer could not be initialised: {0}")]
    Init(#[from] gst::glib::Error),
    #[error("GStreamer element {element} is missing (Debian package {package})")]
    MissingElement { element: &'static str, package: &'static str },
    #[error("cannot build the pipeline: {0}")]
    Build(String),
    #[error("bad configuration: {0}")]
    Config(String),
    #[error("{0} does not exist")]
    UnknownInput(InputId),
    #[error("{0} exists already")]
    DuplicateInput(InputId),
    #[error("{input} takes {kind:?}, not this kind of frame")]
    WrongKind { input: InputId, kind: InputKind },
    #[error("{input} refused a frame: {flow:?}")]
    Push { input: InputId, flow: gst::FlowError },
    #[error("the pipeline failed in {element}: {message} ({debug})")]
    Pipeline { element: String, message: String, debug: String },
    #[error("the output was not closed within {0:?}")]
    FinishTimeout(Duration),
    #[error("an output failed: {0}")]
    Output(String),
    #[error("the job has no HLS output")]
    NoHls,
    #[error("the job records nothing to pause (no MP4 output, no HLS VOD)")]
    NothingToPause,
}

/// The Debian package that ships each element we use, for the error that names a missing one.
pub(crate) fn package_of(element: &str) -> &'static str {
    match element {
        "vp8dec" | "aacparse" | "mp4mux" | "splitmuxsink" | "flvmux" => "gstreamer1.0-plugins-good",
        "x264enc" => "gstreamer1.0-plugins-ugly",
        "h264parse" | "hlssink2" | "rtmp2sink" => "gstreamer1.0-plugins-bad",
        "avdec_h264" | "avenc_aac" => "gstreamer1.0-libav",
        _ => "gstreamer1.0-plugins-base",
    }
}

pub(crate) fn make(element: &'static str) -> Result<gst::Element, Error> {
    gst::ElementFactory::make(element)
        .build()
        .map_err(|_| Error::MissingElement { element, package: package_of(element) })
}

/// A capsfilter for raw I420 video of a size (square pixels) and, when given, a frame rate.
pub(crate) fn i420_capsfilter(width: u32, height: u32, fps: Option<u32>) -> Result<gst::Element, Error> {
    let mut caps = gst::Caps::builder("video/x-raw")
        .field("format", "I420")
        .field("width", i32::try_from(width).unwrap_or(i32::MAX))
        .field("height", i32::try_from(height).unwrap_or(i32::MAX))
        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1));
    if let Some(fps) = fps {
        caps = caps.field("framerate", gst::Fraction::new(i32::try_from(fps).unwrap_or(30), 1));
    }
    gst::ElementFactory::make("capsfilter").property("caps", caps.build()).build().map_err(build_err("capsfilter"))
}

pub(crate) fn build_err(what: &str) -> impl FnOnce(gst::glib::BoolError) -> Error + '_ {
    move |e| Error::Build(format!("{what}: {e}"))
}

struct Input {
    kind: InputKind,
    src: gst_app::AppSrc,
    /// The branch's elements, source first, all owned by the pipeline.
    elements: Vec<gst::Element>,
    /// The compositor's or audiomixer's request pad the branch feeds.
    mixer_pad: gst::Pad,
    /// Video: writes the peer's name on the tile.
    name_overlay: Option<gst::Element>,
}

/// How often each audio input's loudness is measured for the active speaker.
const LEVEL_INTERVAL: Duration = Duration::from_millis(250);

/// The `level` element of an audio input is named after it, so its messages name the input.
fn level_name(id: InputId) -> String {
    format!("level{}", id.0)
}

/// One running compositing job. Dropping it without [`Composite::finish`] stops the pipeline at
/// once: the MP4 part then ends at its last whole fragment and the HLS playlists at their last
/// segment, as after a crash, and the RTMP connections are dropped.
pub struct Composite {
    config: Config,
    pipeline: gst::Pipeline,
    compositor: gst::Element,
    audiomixer: gst::Element,
    /// The end of the latest frame pushed (PTS plus its duration): where `finish` ends the output.
    end: Duration,
    inputs: BTreeMap<InputId, Input>,
    /// Who is on screen and where.
    director: Director,
    /// The arrangement the mixer pads were last set to.
    shown: Option<Arrangement>,
    /// The placeholder tiles, by peer.
    placeholders: BTreeMap<String, Placeholder>,
    hls: Option<Hls>,
    rtmp: Option<Rtmp>,
    /// Pauses the MP4 output (`set_recording_paused`).
    mp4_gate: Option<outputs::pause::PauseGate>,
    finished: bool,
}

impl fmt::Debug for Composite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Composite")
            .field("config", &self.config)
            .field("inputs", &self.inputs.iter().map(|(id, i)| (*id, i.kind)).collect::<Vec<_>>())
            .field("shown", &self.shown)
            .finish()
    }
}

impl Composite {
    /// Builds the mixers, the encoders and every output and sets the pipeline playing: the
    /// output runs (black and silent) from now, and PTS 0 of the inputs is now.
    pub fn start(config: Config) -> Result<Composite, Error> {
        config.check()?;
        gst::init()?;
        let pipeline = gst::Pipeline::new();
        let latency_ns = nanos(config.latency);

        // force-live is construct-only in 1.22: it must be given to the builder, a later
        // set_property is refused.
        let compositor = gst::ElementFactory::make("compositor")
            .property("force-live", true)
            .property_from_str("background", "black")
            .property("latency", latency_ns)
            .property("min-upstream-latency", latency_ns)
            .property("ignore-inactive-pads", true)
            .build()
            .map_err(|_| Error::MissingElement { element: "compositor", package: package_of("compositor") })?;
        let video_caps = i420_capsfilter(config.width, config.height, Some(config.fps))?;
        let raw_tee = make("tee")?;
        let video_queue = make("queue")?;
        let [x264, h264parse] = h264_encoder(&config, config.video_bitrate_kbps)?;
        // One format on the tee that every branch takes: hlssink2's mpegtsmux wants
        // byte-stream, the MP4 and RTMP branches convert with their own h264parse.
        let h264_caps = gst::ElementFactory::make("capsfilter")
            .property(
                "caps",
                gst::Caps::builder("video/x-h264")
                    .field("stream-format", "byte-stream")
                    .field("alignment", "au")
                    .build(),
            )
            .build()
            .map_err(build_err("capsfilter"))?;
        let h264_tee = make("tee")?;

        let audiomixer = gst::ElementFactory::make("audiomixer")
            .property("force-live", true)
            .property("latency", latency_ns)
            .property("min-upstream-latency", latency_ns)
            .property("ignore-inactive-pads", true)
            .build()
            .map_err(|_| Error::MissingElement { element: "audiomixer", package: package_of("audiomixer") })?;
        let audio_caps = gst::ElementFactory::make("capsfilter")
            .property(
                "caps",
                gst::Caps::builder("audio/x-raw").field("rate", 48_000i32).field("channels", 2i32).build(),
            )
            .build()
            .map_err(build_err("capsfilter"))?;
        let audio_queue = make("queue")?;
        let audio_convert = make("audioconvert")?;
        let aac = make("avenc_aac")?;
        aac.set_property("bitrate", i32::try_from(config.audio_bitrate_bps).unwrap_or(128_000));
        let aacparse = make("aacparse")?;
        let aac_tee = make("tee")?;

        pipeline
            .add_many([
                &compositor,
                &video_caps,
                &raw_tee,
                &video_queue,
                &x264,
                &h264parse,
                &h264_caps,
                &h264_tee,
                &audiomixer,
                &audio_caps,
                &audio_queue,
                &audio_convert,
                &aac,
                &aacparse,
                &aac_tee,
            ])
            .map_err(build_err("add"))?;
        gst::Element::link_many([&compositor, &video_caps, &raw_tee]).map_err(build_err("link the video output"))?;
        gst::Element::link_many([&video_queue, &x264, &h264parse, &h264_caps, &h264_tee])
            .map_err(build_err("link the main encode"))?;
        outputs::link_tee(&raw_tee, &outputs::static_pad(&video_queue, "sink")?)?;
        gst::Element::link_many([&audiomixer, &audio_caps, &audio_queue, &audio_convert, &aac, &aacparse, &aac_tee])
            .map_err(build_err("link the audio output"))?;
        // A black live picture under the tiles, so the compositor always has a sink pad: once
        // its last pad is released (the job's last camera leaves), 1.22's compositor repeats
        // one PTS in a loop and splitmuxsink fails the file ("Queued GOP time is negative";
        // tests/last-camera-leaves-mid-job.rs).
        let background = gst::ElementFactory::make("videotestsrc")
            .property("is-live", true)
            .property_from_str("pattern", "black")
            .build()
            .map_err(|_| Error::MissingElement { element: "videotestsrc", package: package_of("videotestsrc") })?;
        let background_caps = gst::ElementFactory::make("capsfilter")
            .property("caps", video_caps.property::<gst::Caps>("caps"))
            .build()
            .map_err(build_err("capsfilter"))?;
        pipeline.add_many([&background, &background_caps]).map_err(build_err("add the background"))?;
        background.link(&background_caps).map_err(build_err("link the background"))?;
        let background_pad =
            compositor.request_pad_simple("sink_%u").ok_or_else(|| Error::Build("compositor background pad".into()))?;
        background_pad.set_property("zorder", 0u32);
        background_caps
            .static_pad("src")
            .ok_or_else(|| Error::Build("background src pad".into()))?
            .link(&background_pad)
            .map_err(|e| Error::Build(format!("link the background to the compositor: {e:?}")))?;

        let taps = Taps { raw: raw_tee, h264: h264_tee, aac: aac_tee };
        let mp4_gate = config.mp4.as_ref().map(|mp4| outputs::build_mp4(&pipeline, &taps, mp4)).transpose()?;
        let hls = config.hls.as_ref().map(|h| hls::build(&pipeline, &taps, &config, h)).transpose()?;
        let rtmp = if config.rtmp.is_empty() {
            None
        } else {
            Some(rtmp::build(&pipeline, &taps, &config.rtmp, config.rtmp_retry, config.gop())?)
        };
        if let (Some(hls), Some(bus)) = (&hls, pipeline.bus()) {
            let hls = hls.clone();
            bus.set_sync_handler(move |_, msg| {
                hls.handle_message(msg);
                gst::BusSyncReply::Pass
            });
        }

        let director = Director::new(config.layout);
        let composite = Composite {
            config,
            pipeline,
            compositor,
            audiomixer,
            end: Duration::ZERO,
            inputs: BTreeMap::new(),
            director,
            shown: None,
            placeholders: BTreeMap::new(),
            hls,
            rtmp,
            mp4_gate,
            finished: false,
        };
        composite.pipeline.set_state(gst::State::Playing).map_err(|_| composite.state_error("start"))?;
        if let Some(hls) = &composite.hls {
            hls.set_anchor(composite.running_time().unwrap_or_default());
        }
        Ok(composite)
    }

    /// The job's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The pipeline's running time: the PTS a frame arriving now should carry (at the latest).
    pub fn running_time(&self) -> Option<Duration> {
        self.pipeline.current_running_time().map(|t| Duration::from_nanos(t.nseconds()))
    }

    /// Adds an input; a video input gets a tile (the layout is recomputed for all of them).
    pub fn add_input(&mut self, id: InputId, kind: InputKind) -> Result<(), Error> {
        if self.inputs.contains_key(&id) {
            return Err(Error::DuplicateInput(id));
        }
        let caps = match kind {
            InputKind::Vp8 => gst::Caps::builder("video/x-vp8").build(),
            InputKind::H264 => gst::Caps::builder("video/x-h264")
                .field("stream-format", "byte-stream")
                .field("alignment", "au")
                .build(),
            // WebRTC's Opus is signalled as two channels; mono packets decode to stereo.
            InputKind::Opus => gst::Caps::builder("audio/x-opus")
                .field("channel-mapping-family", 0i32)
                .field("channels", 2i32)
                .field("rate", 48_000i32)
                .build(),
        };
        let src = gst_app::AppSrc::builder()
            .name(format!("in{}", id.0))
            .caps(&caps)
            .is_live(true)
            .format(gst::Format::Time)
            .do_timestamp(false)
            // A second of video at a high bitrate; past it a push fails rather than blocking
            // the caller (the tap reader must never stall).
            .max_bytes(4 << 20)
            .block(false)
            .build();
        let mut elements: Vec<gst::Element> = vec![src.clone().upcast()];
        match kind {
            InputKind::Vp8 => elements.push(make("vp8dec")?),
            InputKind::H264 => {
                elements.push(make("h264parse")?);
                elements.push(make("avdec_h264")?);
            }
            InputKind::Opus => elements.push(make("opusdec")?),
        }
        let mut name_overlay = None;
        if kind.is_video() {
            elements.push(make("videoconvert")?);
            // Scaled with the picture (auto-resize), so the name keeps its share of the tile.
            let overlay = make("textoverlay")?;
            overlay.set_property_from_str("valignment", "bottom");
            overlay.set_property_from_str("halignment", "left");
            overlay.set_property("font-desc", "Sans Bold 20");
            overlay.set_property("shaded-background", true);
            elements.push(overlay.clone());
            name_overlay = Some(overlay);
            elements.push(make("videoscale")?);
        } else {
            elements.push(make("audioconvert")?);
            elements.push(make("audioresample")?);
            let level = gst::ElementFactory::make("level")
                .name(level_name(id))
                .property("interval", nanos(LEVEL_INTERVAL))
                .property("post-messages", true)
                .build()
                .map_err(|_| Error::MissingElement { element: "level", package: package_of("level") })?;
            elements.push(level);
        }
        self.pipeline.add_many(&elements).map_err(build_err("add an input"))?;
        let mixer = if kind.is_video() { &self.compositor } else { &self.audiomixer };
        let link = || -> Result<gst::Pad, Error> {
            gst::Element::link_many(&elements).map_err(build_err("link an input"))?;
            let pad = mixer.request_pad_simple("sink_%u").ok_or_else(|| Error::Build("mixer sink pad".into()))?;
            let last =
                elements.last().and_then(|e| e.static_pad("src")).ok_or_else(|| Error::Build("src pad".into()))?;
            last.link(&pad).map_err(|e| Error::Build(format!("link an input to its mixer: {e:?}")))?;
            Ok(pad)
        };
        let mixer_pad = match link() {
            Ok(pad) => pad,
            Err(e) => {
                let _ = self.pipeline.remove_many(&elements);
                return Err(e);
            }
        };
        if kind.is_video() {
            mixer_pad.set_property_from_str("sizing-policy", "keep-aspect-ratio");
        }
        for e in &elements {
            e.sync_state_with_parent().map_err(build_err("start an input"))?;
        }
        self.inputs.insert(id, Input { kind, src, elements, mixer_pad, name_overlay });
        self.director.add(id, kind.is_video());
        self.arrange();
        tracing::debug!(%id, ?kind, "input added");
        Ok(())
    }

    /// Removes an input at once (what it had queued is dropped); the other tiles are laid out again.
    pub fn remove_input(&mut self, id: InputId) -> Result<(), Error> {
        let input = self.inputs.remove(&id).ok_or(Error::UnknownInput(id))?;
        let mixer = if input.kind.is_video() { &self.compositor } else { &self.audiomixer };
        self.remove_branch(mixer, &input.mixer_pad, &input.elements);
        self.director.remove(id);
        self.arrange();
        tracing::debug!(%id, "input removed");
        Ok(())
    }

    /// Takes a source's branch out of the running pipeline without failing it.
    fn remove_branch(&self, mixer: &gst::Element, mixer_pad: &gst::Pad, elements: &[gst::Element]) {
        // What the branch still pushes once unlinked is dropped here: its source's thread would
        // otherwise get "not linked" for a frame already queued and fail the whole pipeline
        // (measured: 4 removals in 20 right after a push). Probes run before the link is
        // looked at, so this covers the window until the branch is stopped.
        if let Some(out) = mixer_pad.peer() {
            out.add_probe(gst::PadProbeType::DATA_DOWNSTREAM, |_, _| gst::PadProbeReturn::Drop);
        }
        // Release the mixer's pad first: that flushes it, so a push blocked in the mixer returns
        // and the branch can be stopped without waiting on the aggregator.
        mixer.release_request_pad(mixer_pad);
        for e in elements {
            // Locked first: the pipeline, in a state change of its own (it has them while it
            // runs), would otherwise set a child it still holds back to PLAYING, and the
            // source's thread then ran on after the branch was gone (measured: once in about
            // 200 removals, a "not linked" error for the whole pipeline).
            e.set_locked_state(true);
            let _ = e.set_state(gst::State::Null);
        }
        let _ = self.pipeline.remove_many(elements);
    }

    /// One encoded video frame (a VP8 frame or an H.264 access unit), `pts` in running time.
    pub fn push_video(&mut self, id: InputId, frame: Vec<u8>, pts: Duration, keyframe: bool) -> Result<(), Error> {
        let input = self.inputs.get(&id).ok_or(Error::UnknownInput(id))?;
        if !input.kind.is_video() {
            return Err(Error::WrongKind { input: id, kind: input.kind });
        }
        push(&input.src, id, frame, pts, None, !keyframe)?;
        self.end = self.end.max(pts + Duration::from_secs(1) / self.config.fps);
        Ok(())
    }

    /// One Opus packet, `pts` in running time.
    pub fn push_audio(&mut self, id: InputId, packet: Vec<u8>, pts: Duration) -> Result<(), Error> {
        let input = self.inputs.get(&id).ok_or(Error::UnknownInput(id))?;
        if input.kind != InputKind::Opus {
            return Err(Error::WrongKind { input: id, kind: input.kind });
        }
        let duration = opus_duration(&packet);
        push(&input.src, id, packet, pts, duration, false)?;
        self.end = self.end.max(pts + duration.unwrap_or(Duration::from_millis(20)));
        Ok(())
    }

    /// Takes what the pipeline reported since the last call (non-blocking): the audio inputs'
    /// loudness moves the active speaker (and the layout with it), and the first error, if
    /// any, is returned. Call it a few times a second.
    pub fn poll(&mut self) -> Option<Error> {
        let bus = self.pipeline.bus()?;
        while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error, gst::MessageType::Element]) {
            if let Some(e) = pipeline_error(&msg) {
                return Some(e);
            }
            if let Some((id, db, at)) = level_report(&msg) {
                self.director.note_level(id, db, u64::try_from(at.as_millis()).unwrap_or(u64::MAX));
            }
        }
        self.arrange();
        None
    }

    /// The first error the pipeline reported, if any (what a failed state change left).
    fn first_error(&self) -> Option<Error> {
        let bus = self.pipeline.bus()?;
        let msg = bus.pop_filtered(&[gst::MessageType::Error])?;
        pipeline_error(&msg)
    }

    /// Ends the job: the output runs on to the end of the last frame pushed (or to now, if
    /// that is later), then the encoders drain and the muxer closes the part; waits at most
    /// `timeout` for that.
    ///
    /// The mixers are `force-live`, and in GStreamer 1.22 a force-live aggregator does not end
    /// its output when all its inputs have ended (it goes on producing black and silence), so
    /// the end is cut here: a probe on each mixer's output drops the first buffer at or past
    /// the end and sends EOS downstream instead. Audio and video end at the same time.
    pub fn finish(mut self, timeout: Duration) -> Result<(), Error> {
        let deadline = std::time::Instant::now() + timeout;
        self.finished = true;
        let end = self.end.max(self.running_time().unwrap_or_default());
        let end = gst::ClockTime::from_nseconds(u64::try_from(end.as_nanos()).unwrap_or(u64::MAX));
        for mixer in [&self.compositor, &self.audiomixer] {
            let Some(src) = mixer.static_pad("src") else { continue };
            let ended = std::sync::atomic::AtomicBool::new(false);
            src.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
                let past_end = info.buffer().and_then(|b| b.pts()).is_some_and(|pts| pts >= end);
                if !past_end {
                    return gst::PadProbeReturn::Ok;
                }
                if !ended.swap(true, std::sync::atomic::Ordering::Relaxed)
                    && let Some(peer) = pad.peer()
                {
                    peer.send_event(gst::event::Eos::new());
                }
                gst::PadProbeReturn::Drop
            });
        }
        // Only now end the inputs (which drains the decoders' last frames): a mixer whose inputs
        // have all ended no longer waits for the clock and races ahead, so the cut must already
        // be in place (measured: without it the file ran up to a second past the end).
        for input in self.inputs.values() {
            let _ = input.src.end_of_stream();
        }
        let bus = self.pipeline.bus().ok_or_else(|| Error::Build("pipeline without a bus".into()))?;
        let msg = bus.timed_pop_filtered(
            gst::ClockTime::from_nseconds(u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX)),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        );
        let result = match msg {
            None => Err(Error::FinishTimeout(timeout)),
            Some(m) => match pipeline_error(&m) {
                Some(e) => Err(e),
                None => Ok(()),
            },
        };
        let _ = self.pipeline.set_state(gst::State::Null);
        // The appsinks have had the last samples: the RTMP destinations send them and close.
        if let Some(rtmp) = self.rtmp.take() {
            rtmp.finish(deadline);
        }
        let ended = self.hls.as_ref().map_or(Ok(()), Hls::finish);
        result.and(ended)
    }

    /// The state of each RTMP destination, in the order of [`Config::rtmp`].
    pub fn rtmp_states(&self) -> Vec<RtmpState> {
        self.rtmp.as_ref().map(Rtmp::states).unwrap_or_default()
    }

    /// Pauses or resumes what the job records: the MP4 output leaves out what happens while
    /// paused and goes on without a gap from the first keyframe after the resume (one is
    /// asked for); an HLS VOD leaves out the segments that close while paused and goes on
    /// after a discontinuity. The live HLS playlists and RTMP are not paused: viewers go on
    /// watching.
    pub fn set_recording_paused(&mut self, paused: bool) -> Result<(), Error> {
        let vod = self.hls.as_ref().filter(|h| h.has_vod());
        if self.mp4_gate.is_none() && vod.is_none() {
            return Err(Error::NothingToPause);
        }
        if let Some(gate) = &self.mp4_gate {
            gate.set_paused(paused);
        }
        if let Some(hls) = vod {
            hls.set_vod_paused(paused);
        }
        Ok(())
    }

    /// The time the MP4 output left out (pauses that ended).
    pub fn recording_paused_for(&self) -> Duration {
        self.mp4_gate.as_ref().map_or(Duration::ZERO, |g| g.paused_for())
    }

    /// Whether the recording is paused (for the MP4, or waiting for the keyframe that ends a
    /// pause).
    pub fn recording_paused(&self) -> bool {
        self.mp4_gate.as_ref().is_some_and(|g| g.is_paused()) || self.hls.as_ref().is_some_and(|h| h.vod_paused())
    }

    /// Timed metadata for HLS players: an `#EXT-X-DATERANGE` starting now (its START-DATE on
    /// the segments' `#EXT-X-PROGRAM-DATE-TIME` timeline) and lasting `duration`, with
    /// `payload` in `X-100MSLIVE-PAYLOAD` (base64 JSON with its dates, as 100ms's HLS player
    /// reads it), written into every rendition's live playlist at
    /// once and into the VOD playlist at finish.
    pub fn add_timed_metadata(&mut self, payload: &str, duration: Duration) -> Result<(), Error> {
        let hls = self.hls.as_ref().ok_or(Error::NoHls)?;
        hls.add_timed_metadata(payload, duration, self.running_time().unwrap_or_default())
    }

    fn state_error(&self, what: &str) -> Error {
        self.first_error().unwrap_or_else(|| Error::Build(format!("the pipeline did not {what}")))
    }
}

impl Drop for Composite {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.pipeline.set_state(gst::State::Null);
        }
    }
}

fn push(
    src: &gst_app::AppSrc,
    id: InputId,
    data: Vec<u8>,
    pts: Duration,
    duration: Option<Duration>,
    delta: bool,
) -> Result<(), Error> {
    let mut buffer = gst::Buffer::from_mut_slice(data);
    {
        // A buffer just made from a Vec has one owner, so it is writable.
        let Some(b) = buffer.get_mut() else { return Err(Error::Build("new buffer not writable".into())) };
        b.set_pts(gst::ClockTime::from_nseconds(u64::try_from(pts.as_nanos()).unwrap_or(u64::MAX)));
        if let Some(d) = duration {
            b.set_duration(gst::ClockTime::from_nseconds(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)));
        }
        if delta {
            b.set_flags(gst::BufferFlags::DELTA_UNIT);
        }
    }
    src.push_buffer(buffer).map(|_| ()).map_err(|flow| Error::Push { input: id, flow })
}

/// A `level` element's report: its input, the loudest channel's RMS (dBov) and the running
/// time it was measured at.
fn level_report(msg: &gst::Message) -> Option<(InputId, f64, Duration)> {
    let s = msg.structure().filter(|s| s.name() == "level")?;
    let id = msg.src()?.name().strip_prefix("level")?.parse().ok().map(InputId)?;
    let rms = s.get::<gst::glib::ValueArray>("rms").ok()?;
    let db = rms.iter().filter_map(|v| v.get::<f64>().ok()).fold(f64::NEG_INFINITY, f64::max);
    let at = s.get::<u64>("running-time").ok()?;
    Some((id, db, Duration::from_nanos(at)))
}

fn pipeline_error(msg: &gst::Message) -> Option<Error> {
    match msg.view() {
        gst::MessageView::Error(e) => Some(Error::Pipeline {
            element: msg.src().map(|s| s.path_string().to_string()).unwrap_or_default(),
            message: e.error().to_string(),
            debug: e.debug().map(|d| d.to_string()).unwrap_or_default(),
        }),
        _ => None,
    }
}

/// An Opus packet's duration from its TOC byte (RFC 6716 §3.1), so the decoder and mixer know
/// each buffer's extent without waiting for the next; `None` for a malformed packet (which is
/// still pushed: the decoder drops it, and the job's end is not moved by it).
pub fn opus_duration(packet: &[u8]) -> Option<Duration> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    // Frame length per configuration number: SILK 0-11, hybrid 12-15, CELT 16-31.
    let frame_us: u64 = match config {
        0..=11 => [10_000, 20_000, 40_000, 60_000][usize::from(config % 4)],
        12..=15 => [10_000, 20_000][usize::from(config % 2)],
        _ => [2_500, 5_000, 10_000, 20_000][usize::from(config % 4)],
    };
    let frames: u64 = match toc & 0x3 {
        0 => 1,
        1 | 2 => 2,
        _ => u64::from(*packet.get(1)? & 0x3f),
    };
    // RFC 6716 §3.2.5: a packet holds at most 120 ms; more is a malformed packet, whose claim
    // must not stretch the job's end (`finish` runs the output to the last frame's end).
    let total = frame_us * frames;
    if frames == 0 || total > 120_000 {
        return None;
    }
    Some(Duration::from_micros(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opus_toc_durations() {
        assert_eq!(opus_duration(&[0xfc, 0xff, 0xfe]), Some(Duration::from_millis(20))); // CELT FB 20 ms
        assert_eq!(opus_duration(&[0x78]), Some(Duration::from_millis(20))); // SILK WB 20 ms (config 15)
        assert_eq!(opus_duration(&[0x08 | 0x01]), Some(Duration::from_millis(40))); // SILK 20 ms ×2
        assert_eq!(opus_duration(&[0x03 | 0x18, 0x02]), Some(Duration::from_millis(120))); // 60 ms ×2, code 3
        assert_eq!(opus_duration(&[0x03 | 0x18, 0x03]), None); // 180 ms: over the 120 ms limit
        assert_eq!(opus_duration(&[0x03, 0x00]), None);
        assert_eq!(opus_duration(&[]), None);
    }
}

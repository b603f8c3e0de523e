//! The compositor: turns a room's tracks into one picture and one sound, encoded once (H.264 +
//! AAC) for every output of a job. It is the core of issue 18's destinations (composite
//! recording, HLS, RTMP), built on GStreamer 1.22 (Debian 12's) through the `gstreamer` crates
//! rather than a headless browser.
//!
//! # Data flow
//!
//! ```text
//! the router's media tap (TapRecord: Start, Rtp, SenderReport, Stop) → TapFeed: per track the
//!   recorder's reorder buffer, depacketizer, simulcast layer pick and RTP/wall-clock timing
//! encoded frames (VP8 frames / H.264 access units / Opus packets, PTS in the job's running time)
//!   → Composite::push_video / push_audio → per input: appsrc → decoder → scale/convert
//!   → compositor (tiles placed by `layout`) → x264enc ─┐
//!   → audiomixer                           → avenc_aac ─┴→ splitmuxsink(mp4mux, fragmented)
//!   → <dir>/<prefix>.<n>.mp4
//! ```
//!
//! - [`layout`]: pure and unit-tested: where each tile goes for N inputs (grid; speaker large
//!   with the others in a strip).
//! - [`pipeline`]: the GStreamer pipeline of one job ([`Composite`]): start, add and remove
//!   inputs while it runs, push frames, change the layout, finish (EOS, wait for the file to
//!   close). The output runs on the clock whether or not inputs send anything, and the MP4 is
//!   fragmented, so a killed process leaves a file that plays up to its last fragment.
//! - [`tap_feed`]: one room's tap records into a job ([`TapFeed`]): a Start adds an input
//!   (VP8, H.264 or Opus), RTP becomes frames through the recorder's own track code
//!   (`recorder::recorder::track`, not a copy), a frame's PTS is its RTP time placed by its
//!   track's sender report (else its arrival) relative to the job's first frame, a Stop pushes
//!   what is held and removes the input. Sans-IO: time is an argument.
//!
//! # What exists and what does not yet
//!
//! Exists: the pipeline above and its tests, on real media made by ffmpeg:
//! `tests/composite-mp4-ffprobe.rs` (two VP8 cameras and an Opus tone composited into one MP4
//! that ffprobe reads: h264 + aac, duration, size, frame count; a process aborted mid-job
//! leaves a file that decodes without a message) and `tests/inputs-join-and-leave-mid-job.rs`
//! (a VP8 and an H.264 camera joining and leaving while the job runs; the tiles and their
//! letterboxing checked on decoded pictures), `tests/bad-input-never-stops-the-job.rs` (garbage
//! on one input while another is composited; API misuse as typed errors; a job with no input),
//! `tests/layout-switches-to-speaker-mid-job.rs` (grid, then speaker with a strip, on decoded
//! pictures), `tests/tapped-tracks-become-a-composite-mp4.rs` (ffmpeg's VP8 in two simulcast
//! layers and Opus, packetized into tap records with sender reports, a sequence wrap and
//! reordering, fed through [`TapFeed`] in real time; the top layer followed, every frame pushed
//! once, every input removed by its Stop, the MP4 read by ffprobe). `tests/cost-of-a-720p-four-camera-job.rs` measures CPU
//! (ignored; run by name). `tests/last-camera-leaves-mid-job.rs`: the job's only camera
//! leaves and the file still closes (the compositor keeps a black live background input, so
//! it never runs without a sink pad).
//! Not yet: the process that attaches to the tap rings and runs a `TapFeed` per job, and its
//! supervision by control; asking for keyframes (the recorder's `KeyframeWanted`) when a
//! tapped video track waits for one; re-anchoring on later sender reports (drift over a long
//! job); H.264 through the tap tested end to end (the Annex B conversion is unit-tested);
//! names on tiles, HLS, RTMP, pause/resume, the REST and signaling surface.
//!
//! # Example
//!
//! ```no_run
//! use compositor::{Composite, Config, InputId, InputKind};
//! use std::time::Duration;
//! # fn main() -> Result<(), compositor::Error> {
//! let mut job = Composite::start(Config::new("/tmp/composite", "room"))?;
//! job.add_input(InputId(1), InputKind::Vp8)?;
//! # let (vp8_keyframe, opus_packet) = (Vec::new(), Vec::new());
//! job.push_video(InputId(1), vp8_keyframe, Duration::ZERO, true)?;
//! job.add_input(InputId(2), InputKind::Opus)?;
//! job.push_audio(InputId(2), opus_packet, Duration::ZERO)?;
//! job.finish(Duration::from_secs(5))?; // /tmp/composite/room.1.mp4 is closed
//! # Ok(()) }
//! ```

pub mod layout;
pub mod pipeline;
pub mod tap_feed;

pub use layout::{LayoutKind, Rect};
pub use pipeline::{Composite, Config, Error, InputId, InputKind};
pub use tap_feed::{FeedStats, TapFeed};

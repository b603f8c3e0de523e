//! The compositor: turns a room's tracks into one picture and one sound, encoded once (H.264 +
//! AAC) for every output of a job. It is the core of issue 18's destinations (composite
//! recording, HLS, RTMP), built on GStreamer 1.22 (Debian 12's) through the `gstreamer` crates
//! rather than a headless browser.
//!
//! # Data flow
//!
//! ```text
//! encoded frames (VP8 frames / H.264 access units / Opus packets, PTS from the caller)
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
//! pictures). `tests/cost-of-a-720p-four-camera-job.rs` measures CPU (ignored; run by name).
//! Not yet: reading the router's media tap (the recorder's depacketizers will feed
//! `push_video`, and sender reports will give the PTS), the process and its supervision by
//! control, names on tiles, HLS, RTMP, pause/resume, the REST and signaling surface.
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

pub use layout::{LayoutKind, Rect};
pub use pipeline::{Composite, Config, Error, InputId, InputKind};

//! The compositor: turns a room's tracks into one picture and one sound, encoded once (H.264 +
//! AAC) for every output of a job: crash-safe MP4, an HLS ladder, RTMP destinations, in any
//! combination. It is the core of issue 18's destinations, built on GStreamer 1.22 (Debian
//! 12's) through the `gstreamer` crates rather than a headless browser.
//!
//! # Data flow
//!
//! ```text
//! the router's media tap (TapRecord: Start, Rtp, SenderReport, Stop) → TapFeed: per track the
//!   recorder's reorder buffer, depacketizer and RTP/wall-clock timing, and the simulcast
//!   layer its tile needs (`layers`)
//! encoded frames (VP8 frames / H.264 access units / Opus packets, PTS in the job's running time)
//!   → Composite::push_video / push_audio → per input: appsrc → decoder → scale/convert
//!   → compositor (tiles placed by `layout`) → tee ─→ x264enc (the main encode) → tee ─┐
//!                                                  └→ per lower HLS rendition: scale → x264enc
//!   → audiomixer → avenc_aac → tee ──────────────────────────────────────────────────┤
//!   MP4:  splitmuxsink(mp4mux, fragmented) → <dir>/<prefix>.<n>.mp4              ◄───┤
//!   HLS:  hlssink2 per rendition → <dir>/<i>/seg<n>.ts; playlists written here:      │
//!         <dir>/<i>/index.m3u8 (live or event), <dir>/<i>/vod.m3u8, <dir>/master.m3u8 ◄┤
//!   RTMP: appsink → per URL its own pipeline: appsrc → flvmux → rtmp2sink        ◄───┘
//! ```
//!
//! - [`config`]: what a job produces ([`Config`]: picture, encode, [`Mp4Output`],
//!   [`HlsOutput`], RTMP URLs, [`RtmpRetry`]), checked as a whole: a bad combination is an
//!   [`Error::Config`] before anything starts.
//! - [`layout`]: pure and unit-tested: where each tile goes for N inputs (grid; speaker large
//!   with the others in a strip).
//! - [`director`]: pure and unit-tested: which tiles show and in what order ([`Arrangement`]),
//!   from what the tracks' metadata says ([`InputFacts`]: peer, name, screenshare, muted) and
//!   the audio inputs' loudness: a screenshare is large, in the speaker mode the active
//!   speaker (loudest for a second) is large, a muted camera leaves the layout.
//! - [`pipeline`]: the GStreamer pipeline of one job ([`Composite`]): start, add and remove
//!   inputs while it runs, describe them (names written on the tiles by `textoverlay`), push
//!   frames, measure each audio input's loudness (`level`, read in [`Composite::poll`]),
//!   change the layout, timed metadata, RTMP states, finish
//!   (EOS, wait for the outputs to close). The output runs on the clock whether or not inputs
//!   send anything.
//! - `outputs` (private): the branches off the tees. MP4 is fragmented, so a killed process
//!   leaves a file that plays up to its last fragment. HLS: hlssink2 cuts TS segments on
//!   keyframes (the GOP is the segment duration in every rendition, so they cut together);
//!   the media and multivariant playlists are ours (`#EXT-X-PLAYLIST-TYPE`,
//!   `#EXT-X-PROGRAM-DATE-TIME` on every segment, `#EXT-X-DATERANGE` for timed metadata,
//!   `CODECS` from the caps), a restarted job continues them after an
//!   `#EXT-X-DISCONTINUITY`. RTMP: a destination that refuses or drops cannot stall or fail
//!   the job or the others: it has its own pipeline behind an appsink, rebuilt with backoff
//!   (1 s doubling to 30 s, reset after a minute connected) until the job finishes, its state
//!   in [`Composite::rtmp_states`].
//! - [`tap_feed`]: one room's tap records into a job ([`TapFeed`]): a Start adds an input
//!   (VP8, H.264 or Opus), RTP becomes frames through the recorder's own track code
//!   (`recorder::recorder::track`, not a copy), a frame's PTS is its RTP time placed by its
//!   track's sender report (else its arrival) relative to the job's first frame, a Stop pushes
//!   what is held and removes the input; a repeated Start whose metadata changed (a mute, a
//!   new name) describes the input again. Sans-IO: time is an argument.
//! - [`runner`]: the compositor process's core ([`runner::Runner`]): job files in a directory
//!   start and stop jobs (a [`Composite`] and a live [`TapFeed`] each), tap records are routed
//!   by tap number, cue files become timed metadata, and what happens is drained as
//!   `schema::compositor::CompositorEvent`s. `main.rs` is its shell: the tap rings, the clock,
//!   stdout.
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
//! pictures), `tests/active-speaker-screenshare-and-names-on-tiles.rs` (the louder of two
//! peers takes the large tile by its sound alone, a screenshare takes it from them, a muted
//! camera leaves the layout, names are written on the tiles; on decoded pictures), `tests/tapped-tracks-become-a-composite-mp4.rs` (ffmpeg's VP8 in two simulcast
//! layers and Opus, packetized into tap records with sender reports, a sequence wrap and
//! reordering, fed through [`TapFeed`] in real time; the top layer followed, every frame pushed
//! once, every input removed by its Stop, the MP4 read by ffprobe). `tests/cost-of-a-720p-four-camera-job.rs` measures CPU
//! (ignored; run by name). `tests/last-camera-leaves-mid-job.rs`: the job's only camera
//! leaves and the file still closes (the compositor keeps a black live background input, so
//! it never runs without a sink pad). `tests/mp4-restart-continues-part-numbering.rs`.
//! HLS: `tests/hls-ladder-plays-from-master.rs` (1280×720, 640×360, 320×180: master.m3u8
//! names three variants that ffprobe opens, each segment decodes at its size as h264 + aac,
//! the live window stays bounded and old segments are deleted),
//! `tests/hls-event-playlist-keeps-every-segment.rs`,
//! `tests/hls-vod-playlist-written-at-finish.rs` (ffmpeg plays vod.m3u8 through; a restarted
//! job appends after a discontinuity), `tests/hls-timed-metadata-becomes-a-daterange.rs`.
//! RTMP, against ffmpeg listening as the server: `tests/rtmp-stream-reaches-a-server.rs`,
//! `tests/rtmp-failing-url-never-stalls-the-job.rs` (a dead URL beside a working one and an
//! MP4; the dead one connected when a server appears, reconnected after it is killed and
//! restarted). `tests/bad-output-configs-are-refused.rs`,
//! `tests/an-input-removed-right-after-a-push-never-fails-the-job.rs`.
//! The runner, driven as the process drives it (job files, tap records in real time, events
//! drained): `tests/runner-job-file-becomes-a-composite-mp4.rs`,
//! `tests/runner-bad-jobs-and-stray-records-harm-nothing.rs` (records of no job, a job file
//! that is not JSON, a directory that cannot be made, a tap taken twice),
//! `tests/runner-restart-reports-the-killed-part-and-goes-on.rs`,
//! `tests/runner-asks-for-a-keyframe-while-a-camera-waits.rs`,
//! `tests/runner-hls-job-becomes-ready-takes-cues-and-keeps-a-vod.rs`.
//! Not yet: re-anchoring on later sender reports (drift over a long
//! job); H.264 through the tap tested end to end (the Annex B conversion is unit-tested);
//! a tile for a peer without a camera (or with it muted): such a peer has no tile, only its
//! voice. HLS: no LL-HLS (partial
//! segments), no fMP4/CMAF segments (1.22 has no cmafmux), no ID3 timed metadata in the
//! segments (1.22's mpegtsmux cannot carry it; date ranges in the playlists instead); date
//! ranges are not carried over a restart; a VOD playlist left by a crash lacks its
//! `#EXT-X-ENDLIST` until the job runs again and finishes. RTMP: a reconnected destination
//! starts at the encoder's next keyframe (up to a GOP later) rather than asking for one.
//!
//! # Example
//!
//! ```no_run
//! use compositor::{Composite, Config, HlsOutput, InputId, InputKind, Rendition};
//! use std::time::Duration;
//! # fn main() -> Result<(), compositor::Error> {
//! let mut config = Config::new("/tmp/composite", "room"); // MP4 parts, 1280×720
//! config.hls = Some(HlsOutput::new("/tmp/composite/hls", vec![
//!     Rendition { width: 1280, height: 720, video_kbps: config.video_bitrate_kbps },
//!     Rendition { width: 640, height: 360, video_kbps: 800 },
//! ]));
//! config.rtmp = vec!["rtmp://live.example.com/app/stream-key".into()];
//! let mut job = Composite::start(config)?;
//! job.add_input(InputId(1), InputKind::Vp8)?;
//! # let (vp8_keyframe, opus_packet) = (Vec::new(), Vec::new());
//! job.push_video(InputId(1), vp8_keyframe, Duration::ZERO, true)?;
//! job.add_input(InputId(2), InputKind::Opus)?;
//! job.push_audio(InputId(2), opus_packet, Duration::ZERO)?;
//! for state in job.rtmp_states() {
//!     println!("{}: connected {}, {} attempts", state.url, state.connected, state.attempts);
//! }
//! job.finish(Duration::from_secs(5))?; // room.1.mp4 closed, the playlists ended
//! # Ok(()) }
//! ```

pub mod config;
pub mod director;
pub mod layers;
pub mod layout;
mod outputs;
pub mod pipeline;
pub mod runner;
pub mod tap_feed;

pub use config::{Config, HlsOutput, HlsPlaylist, MAX_RENDITIONS, MAX_RTMP_URLS, Mp4Output, Rendition, RtmpRetry};
pub use director::{Arrangement, InputFacts, Tile};
pub use layout::{LayoutKind, Rect};
pub use outputs::rtmp::RtmpState;
pub use pipeline::{Composite, Error, InputId, InputKind};
pub use tap_feed::{FeedStats, TapFeed};

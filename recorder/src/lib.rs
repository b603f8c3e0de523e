//! The recorder: reads the router's media tap and writes one file per recorded track, without
//! transcoding: Opus in Ogg, VP8 in WebM, H.264 in fragmented MP4. Other codecs (VP9) are
//! tapped but not written.
//!
//! # Data flow
//!
//! ```text
//! router shard ──TapRecord (shm ring per shard)──► Recorder::handle_record
//!     Start  → a track (its metadata: recording, room, peer, track ids)
//!     Rtp    → ReorderBuffer → Opus packets                     → OggOpusWriter → .ogg part
//!                            → Vp8Depacketizer  → frames         → WebmWriter    → .webm part
//!                            → H264Depacketizer → access units   → Mp4Writer     → .mp4 part
//!     SenderReport → wall-clock of the first sample (manifest), so tracks can be aligned
//!     Stop   → the track's last part is closed
//! Recorder::poll_event → RecorderEvent (JSON lines on stdout) → control (assets, job state,
//!     and keyframe_wanted → signaling → the router sends the publisher a PLI)
//! ```
//!
//! - [`ogg`], [`webm`], [`mp4`]: the containers, sans-IO (bytes out), each written so that a
//!   file cut short anywhere still plays up to the cut (WebM and MP4: up to the last whole
//!   cluster or fragment, at most a second back).
//! - [`depack`]: reorder buffer, VP8 frame and H.264 access unit assembly (start on a keyframe,
//!   an H.264 IDR with its SPS and PPS; drop broken frames). H.264 parameter sets go into the
//!   MP4 header, and new ones (a resolution change) start a new part.
//! - [`recorder`]: the state machine over tracks, parts, rotation and the manifest. Time is
//!   an argument; it does the file writes itself (thin, and where failures are turned into a
//!   failed recording with a reason). Inside it: `track` (layer pipelines, the simulcast layer
//!   pick, RTP and wall-clock time), `part` (a part's file: open, write, and one close for both
//!   rollover and the track's end), `manifest` (`manifest.json`), `recovery` (parts a killed
//!   recorder left open).
//!
//! The process (`main.rs`) attaches to every ring of the segment control passes it
//! (`--tap-fd`), feeds the records to a [`recorder::Recorder`], and prints its events.
//!
//! # Example
//!
//! ```
//! use recorder::ogg::OggOpusWriter;
//! let mut w = OggOpusWriter::new(1);
//! let mut file = w.headers(2, 48_000);
//! w.packet(&[0xfc, 0xff, 0xfe], 960, &mut file); // one 20 ms CELT packet
//! w.finish(&mut file);
//! assert_eq!(&file[..4], b"OggS");
//! ```

pub mod depack;
pub mod mp4;
pub mod ogg;
pub mod recorder;
pub mod webm;

pub use recorder::{Config, Recorder};

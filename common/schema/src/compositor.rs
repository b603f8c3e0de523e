//! Control ↔ compositor: the jobs control asks for ([`CompositorJob`], one JSON file each in
//! the compositor's jobs directory) and what the compositor reports ([`CompositorEvent`], one
//! JSON line each on its stdout, which control reads).
//!
//! A job is a file rather than a message so a restarted compositor finds every job it must
//! run without being told again: control writes `<jobs>/<job_id>.json` (write, then rename) to
//! start or change a job and deletes it to stop the job; the compositor looks at the directory
//! a few times a second.
//!
//! ```
//! use schema::compositor::{CompositorEvent, CompositorJob};
//! let job: CompositorJob = serde_json::from_str(
//!     r#"{"job_id":"j1","tap":4,"room_id":"r","mp4":{"dir":"/data/recordings/j1"}}"#,
//! ).unwrap();
//! assert_eq!((job.width, job.height, job.tap), (1280, 720, 4));
//! let line = r#"{"event":"failed","job_id":"j1","reason":"no space left"}"#;
//! let ev: CompositorEvent = serde_json::from_str(line).unwrap();
//! assert_eq!(ev, CompositorEvent::Failed { job_id: "j1".into(), reason: "no space left".into() });
//! ```

use serde::{Deserialize, Serialize};

use crate::recording::TapMeta;

fn default_width() -> u32 {
    1280
}

fn default_height() -> u32 {
    720
}

/// One compositing job: which tap it reads and what it produces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompositorJob {
    pub job_id: String,
    /// The tap number signaling tapped the room's tracks with for this job.
    pub tap: u32,
    pub room_id: String,
    #[serde(default = "default_width")]
    pub width: u32,
    #[serde(default = "default_height")]
    pub height: u32,
    /// A composite recording: MP4 parts `<dir>/composite.<n>.mp4`.
    #[serde(default)]
    pub mp4: Option<Mp4Spec>,
    /// HLS: `<dir>/master.m3u8` and a media playlist per rendition.
    #[serde(default)]
    pub hls: Option<HlsSpec>,
    /// RTMP destinations (`rtmp://` or `rtmps://`, at most 5), each retried on its own.
    #[serde(default)]
    pub rtmp: Vec<String>,
}

/// A job's HLS output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HlsSpec {
    pub dir: String,
    /// Largest first; the first is the job's own size. At most 3.
    pub renditions: Vec<RenditionSpec>,
    #[serde(default = "default_segment_seconds")]
    pub segment_seconds: u32,
    /// `live` (a window of `playlist_segments`) or `event` (every segment: DVR).
    #[serde(default)]
    pub playlist_type: PlaylistType,
    #[serde(default = "default_playlist_segments")]
    pub playlist_segments: u32,
    /// Keep every segment and write `vod.m3u8` per rendition (the `room-vod` asset).
    #[serde(default)]
    pub vod: bool,
}

fn default_segment_seconds() -> u32 {
    2
}

fn default_playlist_segments() -> u32 {
    6
}

/// One rung of an HLS ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenditionSpec {
    pub width: u32,
    pub height: u32,
    pub video_kbps: u32,
}

/// The kind of live HLS playlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlaylistType {
    #[default]
    Live,
    Event,
}

/// A timed metadata cue for a job's HLS output: control writes it as
/// `<jobs>/<job_id>.cue.<n>.json`, the compositor applies and deletes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cue {
    pub payload: String,
    pub duration_seconds: u32,
}

/// Where and how a job's MP4 parts are written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mp4Spec {
    pub dir: String,
    /// A part is closed and the next begun past this many seconds (at a keyframe).
    #[serde(default = "default_part_seconds")]
    pub part_seconds: u64,
}

fn default_part_seconds() -> u64 {
    3600
}

/// One closed output file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputFile {
    /// Absolute path.
    pub path: String,
    pub size: u64,
    pub duration_ms: u64,
    pub width: u32,
    pub height: u32,
}

/// What the compositor reports to control.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum CompositorEvent {
    /// The job's pipeline runs (its outputs are being written).
    Started { job_id: String },
    /// The job's HLS stream has its first segment: players can open it.
    HlsReady { job_id: String },
    /// An RTMP destination connected, or failed and is being retried.
    Rtmp { job_id: String, url: String, connected: bool, error: Option<String> },
    /// An MP4 part was closed (the job stopped, or the part rotated).
    FileClosed { job_id: String, file: OutputFile },
    /// The job cannot go on (a bad spec, an unwritable directory, a pipeline error).
    Failed { job_id: String, reason: String },
    /// The job's file was removed and its outputs are closed.
    Finished { job_id: String },
    /// A tapped video track waits for a keyframe: control has signaling ask the router.
    KeyframeWanted { meta: TapMeta },
}

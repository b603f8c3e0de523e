//! Recording: what a tap's `Start` record says about its track ([`TapMeta`], JSON in the
//! record's `meta`), and what the recorder tells control ([`RecorderEvent`], one JSON line
//! each on the recorder's stdout, which control reads).
//!
//! ```
//! use schema::recording::RecorderEvent;
//! let line = r#"{"event":"failed","recording_id":"r1","reason":"disk full"}"#;
//! let ev: RecorderEvent = serde_json::from_str(line).unwrap();
//! assert_eq!(ev, RecorderEvent::Failed { recording_id: "r1".into(), reason: "disk full".into() });
//! ```

use serde::{Deserialize, Serialize};

/// Who a tapped track belongs to; signaling fills it in when it starts the tap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TapMeta {
    pub recording_id: String,
    pub room_id: String,
    #[serde(default)]
    pub session_id: String,
    pub peer_id: String,
    #[serde(default)]
    pub user_id: String,
    pub track_id: String,
    #[serde(default)]
    pub stream_id: String,
    /// `audio` or `video`.
    pub track_type: String,
    /// The track's source as the SDK names it: `regular` (camera, microphone), `screen`, ...;
    /// empty from a signaling that predates it (taken as `regular`). The compositor gives a
    /// screenshare the large tile.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// The peer's display name, written on its tiles by the compositor.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub peer_name: String,
    /// The publisher muted the track. Signaling re-sends the tap's metadata to the compositor
    /// when this or the name changes; a muted camera leaves the composite's layout.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub muted: bool,
}

impl TapMeta {
    /// A screenshare rather than a camera or microphone.
    pub fn is_screen(&self) -> bool {
        self.source == "screen"
    }
}

/// One file (part) of a track's recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartInfo {
    /// 1 for the first file of the track, then 2, 3, ... (rotation, recorder restarts).
    pub part: u32,
    /// Path relative to the recordings directory.
    pub path: String,
    pub size: u64,
    pub duration_ms: u64,
    /// Video frames (audio packets for audio) written.
    pub frames: u64,
    /// Wall-clock time (Unix ms) of the first sample: from the publisher's RTCP sender
    /// reports when one had arrived (so tracks align), else the recorder's clock.
    pub started_at_ms: u64,
    /// Whether `started_at_ms` comes from a sender report.
    pub synced: bool,
    /// `false` while the file is being written.
    pub complete: bool,
}

/// What the recorder reports to control.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RecorderEvent {
    /// The first file of a track was opened: the recording is running.
    TrackStarted { meta: TapMeta, codec: String },
    /// A file was closed (rotation, stop, or the end of the tap).
    PartClosed { meta: TapMeta, part: PartInfo },
    /// A recording cannot be written (directory not writable, disk full): it stops, with
    /// this reason; the call is not affected.
    Failed { recording_id: String, reason: String },
    /// A video track waits for a keyframe (its start, a loss that broke the stream, a part
    /// due to rotate): control has signaling ask the router for one (the tap is one-way).
    /// Repeated at most every second while the track waits.
    KeyframeWanted { meta: TapMeta },
}

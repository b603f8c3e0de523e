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
    /// The MP4 recording is paused (the time paused is left out of it); a running job follows
    /// its file's changes of this flag.
    #[serde(default)]
    pub paused: bool,
    /// How the tiles are arranged (a screenshare is large in either).
    #[serde(default)]
    pub layout: JobLayout,
}

/// A job's layout mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobLayout {
    /// Equal tiles in join order; nothing moves while people talk.
    #[default]
    Grid,
    /// The active speaker's camera large, the others in a strip below.
    ActiveSpeaker,
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

/// A timed metadata cue for a job's HLS output: control (a REST call) or signaling (a peer's
/// `hls-timed-metadata`) writes it as `<jobs>/<job_id>.cue.<n>.json` ([`write_cue`]), the
/// compositor applies and deletes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cue {
    pub payload: String,
    pub duration_seconds: u32,
}

/// 100ms's limit on a timed metadata payload, in characters.
pub const MAX_CUE_PAYLOAD: usize = 100;

/// The longest a cue may last, in seconds.
pub const MAX_CUE_SECONDS: u32 = 3600;

/// Hands a running HLS job a cue: written to a temporary name, then renamed, so the compositor
/// never reads half a file. `<n>` is the time in unix ms, bumped past any cue file already
/// there: the compositor applies cues in `<n>` order, and two writers (control and signaling),
/// or several cues of one request, can land in the same millisecond.
pub fn write_cue(jobs_dir: &std::path::Path, job_id: &str, cue: &Cue) -> std::io::Result<std::path::PathBuf> {
    let text = serde_json::to_vec(cue).map_err(std::io::Error::other)?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    for n in now..now + 1000 {
        let path = jobs_dir.join(format!("{job_id}.cue.{n}.json"));
        let tmp = path.with_extension("tmp");
        // Claim the temporary name first: of two writers picking the same `n`, one fails here.
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(mut f) => {
                if path.exists() {
                    drop(f);
                    let _ = std::fs::remove_file(&tmp);
                    continue;
                }
                std::io::Write::write_all(&mut f, &text)?;
                drop(f);
                std::fs::rename(&tmp, &path)?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free cue file name"))
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

/// The default HLS ladder: 720p and 360p (a third rung costs about 0.15 of a core more; a
/// template's `hlsDestinations` layers ask for it).
pub fn default_ladder() -> Vec<RenditionSpec> {
    vec![
        RenditionSpec { width: 1280, height: 720, video_kbps: 2500 },
        RenditionSpec { width: 640, height: 360, video_kbps: 800 },
    ]
}

/// Picture size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    pub width: u32,
    pub height: u32,
}

/// Composite output sizes accepted (100ms's are up to 1920×1080).
pub const MIN_SIDE: u32 = 160;
pub const MAX_WIDTH: u32 = 1920;
pub const MAX_HEIGHT: u32 = 1920;

impl Resolution {
    /// Whether the compositor can make a picture of this size: within the bounds, and even
    /// (the encoder's 4:2:0 chroma halves each side).
    pub fn is_valid(&self) -> bool {
        (MIN_SIDE..=MAX_WIDTH).contains(&self.width)
            && (MIN_SIDE..=MAX_HEIGHT).contains(&self.height)
            && self.width.is_multiple_of(2)
            && self.height.is_multiple_of(2)
    }
}

/// What a compositor job's start asked for, kept in the store with the job (its `spec`):
/// control turns it into the compositor's job file, and signaling writes it for a job a peer
/// starts. 100ms's names where it has them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobSettings {
    pub meeting_url: String,
    /// The composite's size (composite and RTMP jobs; HLS takes its first rendition's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
    /// RTMP jobs: where to stream.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rtmp_urls: Vec<String>,
    /// RTMP jobs: also record an MP4.
    pub recording: bool,
    /// HLS jobs: the ladder, largest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<RenditionSpec>,
    pub playlist_type: PlaylistType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_playlist_segments: Option<u32>,
    /// HLS jobs: keep the stream as a VOD (`room-vod` asset).
    pub hls_vod: bool,
    /// HLS jobs: where players open the stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub playback_url: Option<String>,
    /// A composite recording is paused.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// The layout mode (`grid` unless the start asked for `active-speaker`).
    #[serde(default)]
    pub layout: JobLayout,
    /// Why the job was stopped (100ms's reasons: `client request`, `max duration reached`,
    /// `room ended`), once it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
}

impl JobSettings {
    /// The size of the job's picture.
    pub fn size(&self) -> Resolution {
        match (self.layers.first(), self.resolution) {
            (Some(top), _) => Resolution { width: top.width, height: top.height },
            (None, Some(r)) => r,
            (None, None) => Resolution { width: 1280, height: 720 },
        }
    }
}

/// Whether a URL is one the compositor can stream to: `rtmp://` or `rtmps://` with a host.
pub fn rtmp_url_ok(u: &str) -> bool {
    let rest = u.strip_prefix("rtmp://").or_else(|| u.strip_prefix("rtmps://"));
    rest.is_some_and(|r| {
        let host = r.split(['/', ':']).next().unwrap_or("");
        !host.is_empty() && !r.contains(char::is_whitespace) && u.len() <= 2048
    })
}

/// At most this many RTMP URLs per job (100ms's start page says 5).
pub const MAX_RTMP_URLS: usize = 5;

#[cfg(test)]
mod tests {
    use super::rtmp_url_ok;

    #[test]
    fn cues_of_the_same_millisecond_get_names_in_order() {
        let dir = std::env::temp_dir().join(format!("cues-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cue = |p: &str| super::Cue { payload: p.into(), duration_seconds: 5 };
        let a = super::write_cue(&dir, "job", &cue("a")).unwrap();
        let b = super::write_cue(&dir, "job", &cue("b")).unwrap();
        let n = |p: &std::path::Path| {
            let stem = p.file_stem().unwrap().to_str().unwrap().to_owned();
            stem.split_once(".cue.").unwrap().1.parse::<u64>().unwrap()
        };
        assert!(n(&a) < n(&b), "{a:?} {b:?}");
        let read: super::Cue = serde_json::from_slice(&std::fs::read(&b).unwrap()).unwrap();
        assert_eq!(read, cue("b"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_rtmp_and_rtmps_urls_with_a_host_are_taken() {
        assert!(rtmp_url_ok("rtmp://a.rtmp.youtube.com/live2/key"));
        assert!(rtmp_url_ok("rtmps://live.twitch.tv:443/app/key"));
        assert!(rtmp_url_ok("rtmp://127.0.0.1:1935/live/x"));
        assert!(!rtmp_url_ok("http://example.com/live"));
        assert!(!rtmp_url_ok("rtmp:///live"));
        assert!(!rtmp_url_ok("rtmp://host/live key"));
        assert!(!rtmp_url_ok(""));
    }
}

//! What a job produces: the picture, the one main encode, and its outputs (MP4, HLS, RTMP),
//! checked as a whole before anything starts.

use std::path::PathBuf;
use std::time::Duration;

use crate::layout::LayoutKind;
use crate::pipeline::Error;

/// At most this many RTMP destinations per job: each is a mux and a TCP connection, and a
/// platform that wants more fans out behind one.
pub const MAX_RTMP_URLS: usize = 5;
/// At most this many HLS renditions: every rendition after the first is another encode.
pub const MAX_RENDITIONS: usize = 3;

/// What a job produces.
#[derive(Debug, Clone)]
pub struct Config {
    /// Output picture size; both even.
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub layout: LayoutKind,
    /// Time between keyframes. splitmuxsink holds a whole GOP before it hands it to the muxer,
    /// so a killed process loses up to a GOP plus a fragment of MP4. With HLS the segment
    /// duration is used instead, so that every segment starts on a keyframe of every rendition.
    pub keyframe_interval: Duration,
    /// The main encode's bitrate: the MP4, RTMP and the first HLS rendition.
    pub video_bitrate_kbps: u32,
    pub audio_bitrate_bps: u32,
    /// How late (after its PTS) an input frame may arrive and still be composited.
    pub latency: Duration,
    /// Crash-safe fragmented MP4 parts.
    pub mp4: Option<Mp4Output>,
    /// An HLS ladder with its multivariant playlist.
    pub hls: Option<HlsOutput>,
    /// `rtmp://` or `rtmps://` destinations (`.../app/stream`), at most [`MAX_RTMP_URLS`].
    pub rtmp: Vec<String>,
    /// How a failed RTMP destination is retried.
    pub rtmp_retry: RtmpRetry,
}

/// Fragmented MP4 parts: `<dir>/<prefix>.<n>.mp4`, `n` from `start_index`.
#[derive(Debug, Clone)]
pub struct Mp4Output {
    pub dir: PathBuf,
    pub prefix: String,
    /// A part is closed and the next begun (at a keyframe) after this long.
    pub part_duration: Duration,
    /// The MP4 fragment length.
    pub fragment_duration: Duration,
    /// The number of the first part, so that a restarted job goes on after its last part
    /// instead of overwriting it.
    pub start_index: u32,
}

impl Mp4Output {
    /// 1 h parts of 1 s fragments, numbered from 1.
    pub fn new(dir: impl Into<PathBuf>, prefix: impl Into<String>) -> Mp4Output {
        Mp4Output {
            dir: dir.into(),
            prefix: prefix.into(),
            part_duration: Duration::from_secs(3600),
            fragment_duration: Duration::from_secs(1),
            start_index: 1,
        }
    }
}

/// HLS: MPEG-TS segments and a media playlist per rendition in `<dir>/<i>/index.m3u8`, and
/// `<dir>/master.m3u8` naming them all.
#[derive(Debug, Clone)]
pub struct HlsOutput {
    pub dir: PathBuf,
    /// Largest first: the first is the job's own output size and main encode, the others
    /// scale the composited picture down and encode it again.
    pub renditions: Vec<Rendition>,
    /// Whole seconds; every rendition cuts its segments at the same times.
    pub segment_duration: Duration,
    pub playlist: HlsPlaylist,
    /// Keep every segment (none is deleted, whatever `playlist`) and write
    /// `<dir>/<i>/vod.m3u8`, a VOD playlist of them all that ends (`#EXT-X-ENDLIST`) when the
    /// job finishes. A restarted job appends to it after an `#EXT-X-DISCONTINUITY`.
    pub vod: bool,
}

impl HlsOutput {
    /// 2 s segments, a live playlist of 6, no VOD.
    pub fn new(dir: impl Into<PathBuf>, renditions: Vec<Rendition>) -> HlsOutput {
        HlsOutput {
            dir: dir.into(),
            renditions,
            segment_duration: Duration::from_secs(2),
            playlist: HlsPlaylist::default(),
            vod: false,
        }
    }
}

/// One rung of the HLS ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rendition {
    pub width: u32,
    pub height: u32,
    pub video_kbps: u32,
}

/// What the live media playlists hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HlsPlaylist {
    /// The last `segments` segments; older ones leave the playlist and, a playlist's length
    /// later (RFC 8216 §6.2.2), the disk.
    Live { segments: u32 },
    /// Every segment since the start (`#EXT-X-PLAYLIST-TYPE:EVENT`): a player can seek back
    /// to the beginning while the job runs.
    Event,
}

impl Default for HlsPlaylist {
    fn default() -> HlsPlaylist {
        HlsPlaylist::Live { segments: 6 }
    }
}

/// Retrying a failed RTMP destination: the wait starts at `first`, doubles after each
/// failure up to `max`, and starts again at `first` after a connection that lasted `stable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtmpRetry {
    pub first: Duration,
    pub max: Duration,
    pub stable: Duration,
}

impl Default for RtmpRetry {
    /// 1 s doubling to 30 s, reset after a minute connected.
    fn default() -> RtmpRetry {
        RtmpRetry { first: Duration::from_secs(1), max: Duration::from_secs(30), stable: Duration::from_secs(60) }
    }
}

impl Default for Config {
    /// 1280×720 at 30 fps, grid, a keyframe every 2 s, 2.5 Mbit/s video, 128 kbit/s audio,
    /// 200 ms of latency for the inputs, and no output yet.
    fn default() -> Config {
        Config {
            width: 1280,
            height: 720,
            fps: 30,
            layout: LayoutKind::Grid,
            keyframe_interval: Duration::from_secs(2),
            video_bitrate_kbps: 2500,
            audio_bitrate_bps: 128_000,
            latency: Duration::from_millis(200),
            mp4: None,
            hls: None,
            rtmp: Vec::new(),
            rtmp_retry: RtmpRetry::default(),
        }
    }
}

impl Config {
    /// The defaults with one output: MP4 parts `<dir>/<prefix>.<n>.mp4` ([`Mp4Output::new`]).
    pub fn new(dir: impl Into<PathBuf>, prefix: impl Into<String>) -> Config {
        Config { mp4: Some(Mp4Output::new(dir, prefix)), ..Config::default() }
    }

    /// The GOP the main encoder (and every rendition's) is told to keep.
    pub(crate) fn gop(&self) -> Duration {
        self.hls.as_ref().map_or(self.keyframe_interval, |h| h.segment_duration)
    }

    pub(crate) fn check(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::Config(m));
        check_size("output", self.width, self.height)?;
        if self.fps == 0 || self.fps > 120 {
            return bad(format!("fps {} not in 1..=120", self.fps));
        }
        if self.gop().as_millis() * u128::from(self.fps) < 1000 {
            return bad("keyframe interval under one frame".into());
        }
        if self.mp4.is_none() && self.hls.is_none() && self.rtmp.is_empty() {
            return bad("a job needs at least one output (MP4, HLS or RTMP)".into());
        }
        if let Some(mp4) = &self.mp4 {
            if mp4.fragment_duration < Duration::from_millis(100) {
                return bad("MP4 fragment duration under 100 ms".into());
            }
            if mp4.part_duration < mp4.fragment_duration {
                return bad("MP4 part duration shorter than a fragment".into());
            }
            if i32::try_from(mp4.start_index).is_err() {
                return bad(format!("MP4 start index {} too large", mp4.start_index));
            }
        }
        if let Some(hls) = &self.hls {
            self.check_hls(hls)?;
        }
        if self.rtmp.len() > MAX_RTMP_URLS {
            return bad(format!("{} RTMP URLs: at most {MAX_RTMP_URLS}", self.rtmp.len()));
        }
        for (i, url) in self.rtmp.iter().enumerate() {
            check_rtmp_url(url)?;
            if self.rtmp[..i].contains(url) {
                return bad(format!("RTMP URL {url} is listed twice"));
            }
        }
        let r = &self.rtmp_retry;
        if r.first.is_zero() || r.max < r.first {
            return bad("RTMP retry: the first wait must be above zero and at most the longest".into());
        }
        Ok(())
    }

    fn check_hls(&self, hls: &HlsOutput) -> Result<(), Error> {
        let bad = |m: String| Err(Error::Config(m));
        let n = hls.renditions.len();
        if n == 0 || n > MAX_RENDITIONS {
            return bad(format!("{n} HLS renditions: 1 to {MAX_RENDITIONS}"));
        }
        for (i, r) in hls.renditions.iter().enumerate() {
            check_size(&format!("HLS rendition {i}"), r.width, r.height)?;
            if r.width > self.width || r.height > self.height {
                return bad(format!(
                    "HLS rendition {i} ({}×{}) is larger than the output ({}×{})",
                    r.width, r.height, self.width, self.height
                ));
            }
            if r.video_kbps == 0 {
                return bad(format!("HLS rendition {i} has no bitrate"));
            }
        }
        let first = hls.renditions[0];
        if (first.width, first.height) != (self.width, self.height) {
            return bad(format!(
                "HLS rendition 0 is the main encode: its size must be the output's ({}×{}), not {}×{}",
                self.width, self.height, first.width, first.height
            ));
        }
        if first.video_kbps != self.video_bitrate_kbps {
            return bad(format!(
                "HLS rendition 0 is the main encode: its bitrate must be video_bitrate_kbps ({}), not {}",
                self.video_bitrate_kbps, first.video_kbps
            ));
        }
        let seg = hls.segment_duration;
        // hlssink2 takes its target duration in whole seconds.
        if seg.subsec_nanos() != 0 || seg.as_secs() == 0 || seg.as_secs() > 30 {
            return bad(format!("HLS segment duration {seg:?}: whole seconds, 1 to 30"));
        }
        if let HlsPlaylist::Live { segments } = hls.playlist
            && segments < 3
        {
            // RFC 8216 §6.3.3: a client starts three target durations from the end.
            return bad(format!("a live HLS playlist of {segments} segments: at least 3"));
        }
        Ok(())
    }
}

fn check_size(what: &str, width: u32, height: u32) -> Result<(), Error> {
    if width < 16 || height < 16 || !width.is_multiple_of(2) || !height.is_multiple_of(2) {
        return Err(Error::Config(format!("{what} size {width}×{height} must be even and at least 16×16")));
    }
    Ok(())
}

/// `rtmp[s]://host[:port]/app/stream`, the form rtmp2sink parses.
fn check_rtmp_url(url: &str) -> Result<(), Error> {
    let bad = |why: &str| Err(Error::Config(format!("RTMP URL {url:?}: {why}")));
    let Some(rest) = url.strip_prefix("rtmp://").or_else(|| url.strip_prefix("rtmps://")) else {
        return bad("must start with rtmp:// or rtmps://");
    };
    let Some((host, path)) = rest.split_once('/') else { return bad("needs /app/stream after the host") };
    if host.is_empty() || host.starts_with(':') {
        return bad("has no host");
    }
    if let Some((_, port)) = host.rsplit_once(':')
        && port.parse::<u16>().map_or(true, |p| p == 0)
    {
        return bad("has a bad port");
    }
    match path.split_once('/') {
        Some((app, stream)) if !app.is_empty() && !stream.is_empty() => {}
        _ => return bad("needs /app/stream after the host"),
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("contains a space or control character");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hls() -> HlsOutput {
        HlsOutput::new(
            "/tmp/h",
            vec![
                Rendition { width: 1280, height: 720, video_kbps: 2500 },
                Rendition { width: 640, height: 360, video_kbps: 800 },
            ],
        )
    }

    #[test]
    fn config_checks() {
        let mut c = Config::new("/tmp", "x");
        assert!(c.check().is_ok());
        c.width = 641;
        assert!(matches!(c.check(), Err(Error::Config(_))));
        c.width = 640;
        c.fps = 0;
        assert!(matches!(c.check(), Err(Error::Config(_))));
    }

    #[test]
    fn outputs_are_checked() {
        let ok = Config { hls: Some(hls()), ..Config::default() };
        assert!(ok.check().is_ok());
        let refused = |c: Config| matches!(c.check(), Err(Error::Config(_)));
        assert!(refused(Config::default()), "no output");
        let mut c = ok.clone();
        c.hls.as_mut().unwrap().renditions[1].width = 641;
        assert!(refused(c));
        let mut c = ok.clone();
        c.hls.as_mut().unwrap().segment_duration = Duration::from_millis(1500);
        assert!(refused(c));
        let mut c = ok.clone();
        c.hls.as_mut().unwrap().playlist = HlsPlaylist::Live { segments: 2 };
        assert!(refused(c));
        let mut c = ok.clone();
        c.video_bitrate_kbps = 3000;
        assert!(refused(c), "rendition 0's bitrate is the main encode's");
    }

    #[test]
    fn rtmp_urls_are_checked() {
        for good in ["rtmp://a/live/key", "rtmps://a.b:443/app/k/x", "rtmp://127.0.0.1:1935/live/s?t=1"] {
            assert!(check_rtmp_url(good).is_ok(), "{good}");
        }
        for bad in [
            "http://a/live/key",
            "rtmp://a/live",
            "rtmp:///live/k",
            "rtmp://a:x/live/k",
            "rtmp://a/live/",
            "rtmp://a/l/k y",
        ] {
            assert!(check_rtmp_url(bad).is_err(), "{bad}");
        }
    }
}

//! HLS playlists as text (RFC 8216): a rendition's media playlist (a live window, an event, a
//! VOD), the multivariant playlist, and reading our own media playlists back when a job
//! restarts. Pure: no files and no clock; dates are Unix milliseconds given by the caller.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::Duration;

/// One media segment as a playlist lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Its media sequence number; also its file name (`segment_uri`).
    pub seq: u64,
    pub uri: String,
    pub duration: Duration,
    /// The wall-clock time of its first frame (`#EXT-X-PROGRAM-DATE-TIME`), Unix ms.
    pub date_ms: Option<u64>,
    /// It does not continue the one before (a restarted job): `#EXT-X-DISCONTINUITY`.
    pub discontinuity: bool,
}

/// The file name of segment `seq`, as hlssink2 is told to write it (`seg%05d.ts`).
pub(crate) fn segment_uri(seq: u64) -> String {
    format!("seg{seq:05}.ts")
}

/// Timed metadata: an `#EXT-X-DATERANGE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DateRange {
    pub id: String,
    pub start_ms: u64,
    pub duration: Duration,
    pub payload: Vec<u8>,
}

/// What a media playlist keeps and declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The last `n` segments.
    Live(usize),
    /// Every segment, `#EXT-X-PLAYLIST-TYPE:EVENT`.
    Event,
    /// Every segment, `#EXT-X-PLAYLIST-TYPE:VOD`.
    Vod,
}

/// One rendition's media playlist.
#[derive(Debug, Clone)]
pub(crate) struct MediaPlaylist {
    kind: Kind,
    /// The configured segment duration in seconds; raised if a segment runs longer.
    target_secs: u64,
    segments: VecDeque<Segment>,
    /// Discontinuities that have left a live window (`#EXT-X-DISCONTINUITY-SEQUENCE`).
    discontinuity_sequence: u64,
    /// `#EXT-X-ENDLIST`: no segment will be added.
    pub ended: bool,
}

impl MediaPlaylist {
    pub fn new(kind: Kind, target_secs: u64) -> MediaPlaylist {
        MediaPlaylist { kind, target_secs, segments: VecDeque::new(), discontinuity_sequence: 0, ended: false }
    }

    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Adds a segment; returns those that left a live window.
    pub fn push(&mut self, segment: Segment) -> Vec<Segment> {
        self.segments.push_back(segment);
        let mut left = Vec::new();
        if let Kind::Live(n) = self.kind {
            while self.segments.len() > n.max(1) {
                if let Some(s) = self.segments.pop_front() {
                    self.discontinuity_sequence += u64::from(s.discontinuity);
                    left.push(s);
                }
            }
        }
        left
    }

    /// The playlist's text. `dateranges` that ended before the first segment listed are
    /// left out (a live window has moved past them).
    pub fn render(&self, dateranges: &[DateRange]) -> String {
        let mut out = self.header();
        let first_date = self.segments.front().and_then(|s| s.date_ms);
        for d in dateranges {
            let end = d.start_ms.saturating_add(u64::try_from(d.duration.as_millis()).unwrap_or(u64::MAX));
            if first_date.is_none_or(|first| end >= first) {
                out.push_str(&render_daterange(d));
            }
        }
        for s in &self.segments {
            out.push_str(&render_segment(s));
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        }
        out
    }

    /// The tags before the segments (also what an appended-to file starts with).
    pub fn header(&self) -> String {
        // RFC 8216 §4.3.3.1: every EXTINF, rounded to the nearest second, fits the target.
        let longest = self.segments.iter().map(|s| (s.duration.as_millis() + 500) / 1000).max().unwrap_or(0);
        let target = self.target_secs.max(u64::try_from(longest).unwrap_or(u64::MAX));
        let sequence = self.segments.front().map_or(0, |s| s.seq);
        let mut out = format!("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{target}\n");
        let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{sequence}");
        if self.discontinuity_sequence > 0 {
            let _ = writeln!(out, "#EXT-X-DISCONTINUITY-SEQUENCE:{}", self.discontinuity_sequence);
        }
        match self.kind {
            Kind::Live(_) => {}
            Kind::Event => out.push_str("#EXT-X-PLAYLIST-TYPE:EVENT\n"),
            Kind::Vod => out.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n"),
        }
        out
    }
}

/// A segment's lines.
pub(crate) fn render_segment(s: &Segment) -> String {
    let mut out = String::new();
    if s.discontinuity {
        out.push_str("#EXT-X-DISCONTINUITY\n");
    }
    if let Some(date) = s.date_ms {
        let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", iso8601(date));
    }
    let _ = write!(out, "#EXTINF:{:.3},\n{}\n", s.duration.as_secs_f64(), s.uri);
    out
}

/// The cue as 100ms's HLS player reads it: hls.js makes a metadata cue of each client
/// attribute (`X-…`), and `@100mslive/hls-player` base64-decodes the cue's data into JSON
/// `{payload, start_date, end_date}` and fires the payload at `start_date`. Base64 in a
/// quoted-string also carries any payload (a quoted-string cannot hold `"` or a line break,
/// and JSON payloads have quotes).
fn render_daterange(d: &DateRange) -> String {
    use base64::Engine as _;
    let end_ms = d.start_ms + u64::try_from(d.duration.as_millis()).unwrap_or(0);
    let cue = serde_json::json!({
        "payload": String::from_utf8_lossy(&d.payload),
        "start_date": iso8601(d.start_ms),
        "end_date": iso8601(end_ms),
    });
    let data = base64::engine::general_purpose::STANDARD.encode(cue.to_string());
    format!(
        "#EXT-X-DATERANGE:ID=\"{}\",START-DATE=\"{}\",DURATION={:.3},{CUE_ATTRIBUTE}=\"{data}\"\n",
        d.id,
        iso8601(d.start_ms),
        d.duration.as_secs_f64()
    )
}

/// The `#EXT-X-DATERANGE` attribute a cue travels in (100ms's name for it).
pub const CUE_ATTRIBUTE: &str = "X-100MSLIVE-PAYLOAD";

/// The segments of a media playlist this module wrote (`render`), for a restarted job to go
/// on from. Tags it does not write are skipped.
pub(crate) fn parse_media(text: &str) -> Vec<Segment> {
    let mut segments = Vec::new();
    let mut seq = 0u64;
    let mut duration = None;
    let mut date_ms = None;
    let mut discontinuity = false;
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            seq = v.parse().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            duration = v
                .split(',')
                .next()
                .and_then(|d| d.parse::<f64>().ok())
                .and_then(|d| Duration::try_from_secs_f64(d).ok());
        } else if let Some(v) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            date_ms = parse_iso8601(v);
        } else if line == "#EXT-X-DISCONTINUITY" {
            discontinuity = true;
        } else if !line.is_empty() && !line.starts_with('#') {
            if let Some(duration) = duration.take() {
                segments.push(Segment { seq, uri: line.to_string(), duration, date_ms: date_ms.take(), discontinuity });
            }
            seq += 1;
            discontinuity = false;
        }
    }
    segments
}

/// One variant of the multivariant playlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Variant {
    /// Peak bits per second.
    pub bandwidth: u64,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// RFC 6381 codecs, e.g. `avc1.64001f,mp4a.40.2`.
    pub codecs: String,
    pub uri: String,
}

pub(crate) fn render_multivariant(variants: &[Variant]) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for v in variants {
        let _ = write!(
            out,
            "#EXT-X-STREAM-INF:BANDWIDTH={},RESOLUTION={}x{},FRAME-RATE={}.000,CODECS=\"{}\"\n{}\n",
            v.bandwidth, v.width, v.height, v.fps, v.codecs, v.uri
        );
    }
    out
}

/// The RFC 6381 name of an H.264 stream (`avc1.PPCCLL`) from the profile and level strings
/// h264parse puts in its caps. The constraint byte is the usual one for the profile; players
/// use the string to decide whether they can decode, which profile and level settle.
pub(crate) fn avc1_codec(profile: &str, level: &str) -> Option<String> {
    let (idc, constraints) = match profile {
        "constrained-baseline" => (0x42, 0xc0),
        "baseline" => (0x42, 0x00),
        "main" => (0x4d, 0x40),
        "high" | "constrained-high" | "progressive-high" => (0x64, 0x00),
        "high-10" => (0x6e, 0x00),
        "high-4:2:2" => (0x7a, 0x00),
        "high-4:4:4" => (0xf4, 0x00),
        _ => return None,
    };
    let level_idc: u32 = if level == "1b" {
        11
    } else {
        let (major, minor) = level.split_once('.').unwrap_or((level, "0"));
        major.parse::<u32>().ok()? * 10 + minor.parse::<u32>().ok()?
    };
    Some(format!("avc1.{idc:02x}{constraints:02x}{level_idc:02x}"))
}

/// `2026-12-07T02:25:31.123Z`.
pub(crate) fn iso8601(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem / 60 % 60, rem % 60, unix_ms % 1000)
}

/// The inverse of [`iso8601`] (UTC with `Z`, milliseconds optional).
pub(crate) fn parse_iso8601(s: &str) -> Option<u64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, ms) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<u64>().ok());
    let (h, min, sec) = (t.next()??, t.next()??, t.next()??);
    let ms: u64 = format!("{ms:0<3}").get(..3)?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h > 23 || min > 59 || sec > 60 {
        return None;
    }
    let days = u64::try_from(days_from_civil(y, m, day)).ok()?;
    Some(((days * 86_400) + h * 3600 + min * 60 + sec) * 1000 + ms)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(seq: u64, discontinuity: bool) -> Segment {
        Segment {
            seq,
            uri: segment_uri(seq),
            duration: Duration::from_millis(2000),
            date_ms: Some(1_765_000_000_000 + seq * 2000),
            discontinuity,
        }
    }

    #[test]
    fn dates_round_trip() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(iso8601(1_798_761_599_999), "2026-12-31T23:59:59.999Z");
        for ms in [0, 951_782_400_123, 1_798_761_599_999, 4_102_444_800_000] {
            assert_eq!(parse_iso8601(&iso8601(ms)), Some(ms));
        }
        assert_eq!(parse_iso8601("2026-12-07T02:25:31Z"), Some(1_796_610_331_000));
        assert_eq!(parse_iso8601("2026-13-07T02:25:31Z"), None);
        assert_eq!(parse_iso8601("garbage"), None);
    }

    #[test]
    fn a_live_window_moves_and_counts_discontinuities() {
        let mut p = MediaPlaylist::new(Kind::Live(3), 2);
        assert!(p.push(seg(7, false)).is_empty());
        p.push(seg(8, true));
        p.push(seg(9, false));
        assert_eq!(p.push(seg(10, false)), vec![seg(7, false)]);
        assert_eq!(p.push(seg(11, false)), vec![seg(8, true)]);
        let text = p.render(&[]);
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:9\n"), "{text}");
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{text}");
        assert!(!text.contains("PLAYLIST-TYPE"), "{text}");
        assert_eq!(text.matches("#EXTINF:2.000,").count(), 3);
        assert_eq!(text.matches("#EXT-X-PROGRAM-DATE-TIME:").count(), 3);
        assert!(!text.contains("ENDLIST"));
    }

    #[test]
    fn event_and_vod_keep_everything_and_read_back() {
        let mut p = MediaPlaylist::new(Kind::Vod, 2);
        for i in 0..10 {
            assert!(p.push(seg(i, i == 5)).is_empty());
        }
        p.push(Segment { duration: Duration::from_millis(2600), ..seg(10, false) });
        p.ended = true;
        let text = p.render(&[]);
        assert!(text.starts_with("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:3\n#EXT-X-MEDIA-SEQUENCE:0\n"));
        assert!(text.contains("#EXT-X-PLAYLIST-TYPE:VOD\n") && text.ends_with("#EXT-X-ENDLIST\n"), "{text}");
        let back = parse_media(&text);
        assert_eq!(back.len(), 11);
        assert_eq!(back[5], seg(5, true));
        assert_eq!(back[10].duration, Duration::from_millis(2600));
        let event = MediaPlaylist::new(Kind::Event, 2);
        assert!(event.header().contains("#EXT-X-PLAYLIST-TYPE:EVENT\n"));
    }

    #[test]
    fn dateranges_leave_with_the_window() {
        let mut p = MediaPlaylist::new(Kind::Live(2), 2);
        for i in 0..4 {
            p.push(seg(i, false));
        }
        let first = seg(2, false).date_ms.unwrap();
        let old = DateRange {
            id: "a".into(),
            start_ms: first - 5000,
            duration: Duration::from_secs(1),
            payload: b"x".to_vec(),
        };
        let live = DateRange {
            id: "b".into(),
            start_ms: first + 100,
            duration: Duration::ZERO,
            payload: b"{\"k\":1}".to_vec(),
        };
        let text = p.render(&[old, live]);
        assert!(!text.contains("ID=\"a\""), "{text}");
        let start = iso8601(first + 100);
        let head = format!("#EXT-X-DATERANGE:ID=\"b\",START-DATE=\"{start}\",DURATION=0.000,X-100MSLIVE-PAYLOAD=\"");
        let line = text.lines().find(|l| l.starts_with(&head)).unwrap_or_else(|| panic!("{text}"));
        use base64::Engine as _;
        let data =
            base64::engine::general_purpose::STANDARD.decode(line[head.len()..].strip_suffix('"').unwrap()).unwrap();
        let cue: serde_json::Value = serde_json::from_slice(&data).unwrap();
        assert_eq!(cue, serde_json::json!({ "payload": "{\"k\":1}", "start_date": start, "end_date": start }));
    }

    #[test]
    fn codecs_and_multivariant() {
        assert_eq!(avc1_codec("high", "3.1").as_deref(), Some("avc1.64001f"));
        assert_eq!(avc1_codec("constrained-baseline", "3").as_deref(), Some("avc1.42c01e"));
        assert_eq!(avc1_codec("main", "4").as_deref(), Some("avc1.4d4028"));
        assert_eq!(avc1_codec("high", "1b").as_deref(), Some("avc1.64000b"));
        assert_eq!(avc1_codec("weird", "3"), None);
        let text = render_multivariant(&[Variant {
            bandwidth: 3_000_000,
            width: 1280,
            height: 720,
            fps: 30,
            codecs: "avc1.64001f,mp4a.40.2".into(),
            uri: "0/index.m3u8".into(),
        }]);
        assert!(text.contains(
            "#EXT-X-STREAM-INF:BANDWIDTH=3000000,RESOLUTION=1280x720,FRAME-RATE=30.000,CODECS=\"avc1.64001f,mp4a.40.2\"\n0/index.m3u8\n"
        ));
    }
}

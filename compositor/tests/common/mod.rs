//! Helpers shared by the compositor's integration tests: real media made by ffmpeg and parsed
//! into frames, and ffprobe/ffmpeg reading the output back.
#![allow(clippy::unwrap_used, dead_code)] // a test helper: a failed unwrap is a failed test; not every test uses all

pub mod outputs;
pub mod runner;

use std::path::{Path, PathBuf};
use std::process::Command;

/// A 640×360 grid job writing its MP4 into `out` (the tap feed tests' job).
pub fn small_grid_job(out: &Path) -> compositor::Composite {
    let mut config = compositor::Config::new(out, "room");
    config.width = 640;
    config.height = 360;
    config.layout = compositor::LayoutKind::Grid;
    compositor::Composite::start(config).unwrap()
}

pub fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("compositor-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg").args(["-hide_banner", "-loglevel", "error", "-y"]).args(args).output().unwrap();
    assert!(out.status.success(), "ffmpeg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// VP8 frames of an IVF file: a 32-byte file header, then per frame a 12-byte header (size u32
/// LE, pts u64 LE) and the frame. A VP8 frame is a keyframe when bit 0 of its first byte is 0.
pub fn ivf_frames(path: &Path) -> Vec<(Vec<u8>, bool)> {
    let data = std::fs::read(path).unwrap();
    assert_eq!(&data[..4], b"DKIF");
    let header_len = usize::from(u16::from_le_bytes([data[6], data[7]]));
    let mut at = header_len;
    let mut frames = Vec::new();
    while at + 12 <= data.len() {
        let size = u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        let frame = data[at + 12..at + 12 + size].to_vec();
        let key = frame[0] & 1 == 0;
        frames.push((frame, key));
        at += 12 + size;
    }
    frames
}

/// The packets of an Ogg Opus file, headers (OpusHead, OpusTags) left out. Pages: "OggS", 27
/// bytes of header whose last is the segment count, the segment table, then the segments; a
/// packet ends at a segment shorter than 255.
pub fn ogg_opus_packets(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap();
    let mut packets = Vec::new();
    let mut current = Vec::new();
    let mut at = 0;
    while at + 27 <= data.len() {
        assert_eq!(&data[at..at + 4], b"OggS");
        let segments = usize::from(data[at + 26]);
        let table = &data[at + 27..at + 27 + segments];
        let mut body = at + 27 + segments;
        for &len in table {
            current.extend_from_slice(&data[body..body + usize::from(len)]);
            body += usize::from(len);
            if len < 255 {
                packets.push(std::mem::take(&mut current));
            }
        }
        at = body;
    }
    assert!(packets[0].starts_with(b"OpusHead") && packets[1].starts_with(b"OpusTags"));
    packets.split_off(2)
}

pub struct Media {
    pub cam1: Vec<(Vec<u8>, bool)>,
    pub cam2: Vec<(Vec<u8>, bool)>,
    pub opus: Vec<Vec<u8>>,
}

/// `seconds` of two different 30 fps VP8 videos (320×240 and 640×480, keyframe every second)
/// and of a 440 Hz tone in 20 ms Opus packets.
pub fn make_media(dir: &Path, seconds: u32) -> Media {
    Media {
        cam1: vp8_of(dir, "cam1", "testsrc=size=320x240:rate=30", seconds, 600),
        cam2: vp8_of(dir, "cam2", "smptebars=size=640x480:rate=30", seconds, 600),
        opus: opus_of(dir, "tone", "sine=frequency=440:sample_rate=48000", seconds),
    }
}

/// `seconds` of 30 fps VP8 (realtime, a keyframe every second, `kbps`) made by ffmpeg from a
/// lavfi video `source`, as frames: `(bytes, keyframe)`.
pub fn vp8_of(dir: &Path, name: &str, source: &str, seconds: u32, kbps: u32) -> Vec<(Vec<u8>, bool)> {
    let path = dir.join(format!("{name}.ivf"));
    let (t, rate) = (seconds.to_string(), format!("{kbps}k"));
    ffmpeg(
        &["-f", "lavfi", "-i", source, "-t", &t, "-c:v", "libvpx", "-deadline", "realtime", "-g", "30"]
            .into_iter()
            .chain(["-b:v", &rate, "-f", "ivf", path.to_str().unwrap()])
            .collect::<Vec<_>>(),
    );
    ivf_frames(&path)
}

/// `seconds` of Opus in 20 ms packets made by ffmpeg from a lavfi audio `source`.
pub fn opus_of(dir: &Path, name: &str, source: &str, seconds: u32) -> Vec<Vec<u8>> {
    let path = dir.join(format!("{name}.ogg"));
    let t = seconds.to_string();
    ffmpeg(
        &["-f", "lavfi", "-i", source, "-t", &t, "-c:a", "libopus", "-b:a", "48k", "-frame_duration", "20"]
            .into_iter()
            .chain(["-f", "ogg", path.to_str().unwrap()])
            .collect::<Vec<_>>(),
    );
    ogg_opus_packets(&path)
}

#[derive(Debug)]
pub struct Probe {
    pub duration: Option<f64>,
    pub video: Option<(String, u64, u64, u64)>,
    pub audio: Option<String>,
    pub errors: String,
}

/// ffprobe's view of a file: format duration, the video stream's codec, size and decoded frame
/// count, the audio stream's codec, and anything it complained about.
pub fn probe(path: &Path) -> Probe {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "format=duration:stream=codec_type,codec_name,width,height,nb_read_frames",
        ])
        .args(["-of", "json"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "ffprobe {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut p = Probe {
        duration: json["format"]["duration"].as_str().and_then(|d| d.parse().ok()),
        video: None,
        audio: None,
        errors: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    for s in json["streams"].as_array().unwrap() {
        let codec = s["codec_name"].as_str().unwrap_or_default().to_string();
        match s["codec_type"].as_str() {
            Some("video") => {
                let frames = s["nb_read_frames"].as_str().and_then(|n| n.parse().ok()).unwrap_or(0);
                p.video = Some((codec, s["width"].as_u64().unwrap_or(0), s["height"].as_u64().unwrap_or(0), frames));
            }
            Some("audio") => p.audio = Some(codec),
            _ => {}
        }
    }
    p
}

/// `seconds` of 30 fps H.264 (constrained baseline, no B-frames, an IDR every second, an access
/// unit delimiter before each picture, as WebRTC senders make) from `source` (a lavfi graph), split
/// into Annex B access units: `(bytes, is IDR)`.
pub fn h264_access_units(dir: &Path, source: &str, seconds: u32) -> Vec<(Vec<u8>, bool)> {
    let path = dir.join("cam.h264");
    let t = seconds.to_string();
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        source,
        "-t",
        &t,
        "-c:v",
        "libx264",
        "-profile:v",
        "baseline",
        "-bf",
        "0",
        "-g",
        "30",
        "-x264-params",
        "aud=1",
        "-pix_fmt",
        "yuv420p",
        "-f",
        "h264",
        path.to_str().unwrap(),
    ]);
    let data = std::fs::read(&path).unwrap();
    // NAL unit starts (the byte after a 00 00 01 start code) and their types.
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut units: Vec<(Vec<u8>, bool)> = Vec::new();
    for (n, &s) in starts.iter().enumerate() {
        // Back up over the start code (3 or 4 bytes) so each unit keeps its own.
        let begin = if s >= 4 && data[s - 4] == 0 { s - 4 } else { s - 3 };
        let end = starts.get(n + 1).map(|&next| if data[next - 4] == 0 { next - 4 } else { next - 3 });
        let nal = &data[begin..end.unwrap_or(data.len())];
        let kind = data[s] & 0x1f;
        if kind == 9 || units.is_empty() {
            units.push((Vec::new(), false));
        }
        let unit = units.last_mut().unwrap();
        unit.0.extend_from_slice(nal);
        unit.1 |= kind == 5;
    }
    units
}

/// The decoded picture nearest `at_seconds` of a video file, as RGB24 rows of `width` pixels.
pub fn frame_rgb(path: &Path, at_seconds: f64, width: u32, height: u32) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-ss", &format!("{at_seconds}"), "-i"])
        .arg(path)
        .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "ffmpeg frame at {at_seconds}: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout.len(), (width * height * 3) as usize, "one {width}x{height} RGB frame");
    out.stdout
}

/// The mean of R, G and B over a rectangle of an RGB24 frame: near 0 where the black background
/// shows, well above it where a test pattern is.
pub fn mean_level(rgb: &[u8], width: u32, (x, y, w, h): (u32, u32, u32, u32)) -> f64 {
    let mut sum = 0u64;
    for row in y..y + h {
        let start = ((row * width + x) * 3) as usize;
        sum += rgb[start..start + (w * 3) as usize].iter().map(|&v| u64::from(v)).sum::<u64>();
    }
    sum as f64 / f64::from(w * h * 3)
}

/// Checks a file's length and frame count against what was pushed: the output runs on the
/// clock, so it lasts from 0 to the end of the last frame pushed (`expected` seconds), or to
/// where the job's clock was when `finish` was called (`finished_at`) if the pushing fell
/// behind real time (a loaded machine). Within that, one frame per 1/30 s: none dropped.
pub fn check_timing(p: &Probe, expected: f64, finished_at: std::time::Duration) {
    let duration = p.duration.expect("a duration");
    let latest = expected.max(finished_at.as_secs_f64()) + 0.3;
    assert!(duration >= expected - 0.3 && duration <= latest, "duration {duration}, expected {expected}..{latest}");
    let frames = p.video.as_ref().expect("a video stream").3 as f64;
    assert!((frames - duration * 30.0).abs() <= 10.0, "{frames} frames in {duration} s");
}

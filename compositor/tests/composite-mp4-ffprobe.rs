//! Real media through the whole pipeline: VP8 and Opus made by ffmpeg, pushed in real time as
//! the tap reader will push them, composited into one MP4 that ffprobe reads back.
//!
//! Needs ffmpeg/ffprobe (libvpx, libopus) and the GStreamer plugins (scripts/test.sh installs
//! both).
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use compositor::{Composite, Config, InputId, InputKind, LayoutKind};

const WIDTH: u32 = 640;
const HEIGHT: u32 = 360;

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("compositor-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg").args(["-hide_banner", "-loglevel", "error", "-y"]).args(args).output().unwrap();
    assert!(out.status.success(), "ffmpeg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// VP8 frames of an IVF file: a 32-byte file header, then per frame a 12-byte header (size u32
/// LE, pts u64 LE) and the frame. A VP8 frame is a keyframe when bit 0 of its first byte is 0.
fn ivf_frames(path: &Path) -> Vec<(Vec<u8>, bool)> {
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
fn ogg_opus_packets(path: &Path) -> Vec<Vec<u8>> {
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

struct Media {
    cam1: Vec<(Vec<u8>, bool)>,
    cam2: Vec<(Vec<u8>, bool)>,
    opus: Vec<Vec<u8>>,
}

/// Three seconds of two different 30 fps VP8 videos (320×240 and 640×480, keyframe every
/// second) and of a 440 Hz tone in 20 ms Opus packets.
fn make_media(dir: &Path, seconds: u32) -> Media {
    let t = seconds.to_string();
    let cam1 = dir.join("cam1.ivf");
    let cam2 = dir.join("cam2.ivf");
    let opus = dir.join("tone.ogg");
    let vp8 = ["-c:v", "libvpx", "-deadline", "realtime", "-g", "30", "-b:v", "600k", "-f", "ivf"];
    let mut a = vec!["-f", "lavfi", "-i", "testsrc=size=320x240:rate=30", "-t", &t];
    a.extend(vp8);
    a.push(cam1.to_str().unwrap());
    ffmpeg(&a);
    let mut a = vec!["-f", "lavfi", "-i", "smptebars=size=640x480:rate=30", "-t", &t];
    a.extend(vp8);
    a.push(cam2.to_str().unwrap());
    ffmpeg(&a);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        &t,
        "-c:a",
        "libopus",
        "-b:a",
        "48k",
        "-frame_duration",
        "20",
        "-f",
        "ogg",
        opus.to_str().unwrap(),
    ]);
    Media { cam1: ivf_frames(&cam1), cam2: ivf_frames(&cam2), opus: ogg_opus_packets(&opus) }
}

enum Push {
    Video(InputId, Vec<u8>, bool),
    Audio(InputId, Vec<u8>),
}

/// Pushes every frame when the job's clock reaches its PTS (video every 33⅓ ms, audio every
/// 20 ms), as a live tap reader would, until `until` (or the media's end).
fn push_live(job: &mut Composite, media: &Media, until: Duration) {
    let mut events: Vec<(Duration, Push)> = Vec::new();
    let frame = |i: usize| Duration::from_nanos(i as u64 * 1_000_000_000 / 30);
    for (i, (f, key)) in media.cam1.iter().enumerate() {
        events.push((frame(i), Push::Video(InputId(1), f.clone(), *key)));
    }
    for (i, (f, key)) in media.cam2.iter().enumerate() {
        events.push((frame(i), Push::Video(InputId(2), f.clone(), *key)));
    }
    for (i, p) in media.opus.iter().enumerate() {
        events.push((Duration::from_millis(i as u64 * 20), Push::Audio(InputId(3), p.clone())));
    }
    events.sort_by_key(|(pts, _)| *pts);
    let start = Instant::now();
    for (pts, push) in events {
        if pts > until {
            break;
        }
        if let Some(wait) = pts.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        match push {
            Push::Video(id, f, key) => job.push_video(id, f, pts, key).unwrap(),
            Push::Audio(id, p) => job.push_audio(id, p, pts).unwrap(),
        }
    }
    if let Some(e) = job.poll_error() {
        panic!("pipeline error: {e}");
    }
}

fn start_job(dir: &Path) -> Composite {
    let mut config = Config::new(dir, "room");
    config.width = WIDTH;
    config.height = HEIGHT;
    config.layout = LayoutKind::Grid;
    config.video_bitrate_kbps = 800;
    let mut job = Composite::start(config).unwrap();
    job.add_input(InputId(1), InputKind::Vp8).unwrap();
    job.add_input(InputId(2), InputKind::Vp8).unwrap();
    job.add_input(InputId(3), InputKind::Opus).unwrap();
    job
}

#[derive(Debug)]
struct Probe {
    duration: Option<f64>,
    video: Option<(String, u64, u64, u64)>,
    audio: Option<String>,
    errors: String,
}

/// ffprobe's view of a file: format duration, the video stream's codec, size and decoded frame
/// count, the audio stream's codec, and anything it complained about.
fn probe(path: &Path) -> Probe {
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

#[test]
fn two_cameras_and_a_tone_make_one_h264_aac_mp4() {
    let dir = tempdir("full");
    let media = make_media(&dir, 3);
    assert_eq!(media.cam1.len(), 90);
    assert!(media.opus.len() >= 149, "{} opus packets", media.opus.len());

    let out = dir.join("out");
    let mut job = start_job(&out);
    let began = Instant::now();
    push_live(&mut job, &media, Duration::from_secs(10));
    job.finish(Duration::from_secs(10)).unwrap();
    eprintln!("pushed and finished in {:?}", began.elapsed());

    let file = out.join("room.1.mp4");
    let p = probe(&file);
    eprintln!("{p:?}");
    let duration = p.duration.expect("a duration");
    assert!((duration - 3.0).abs() <= 0.5, "duration {duration}");
    let (codec, w, h, frames) = p.video.expect("a video stream");
    assert_eq!((codec.as_str(), w, h), ("h264", u64::from(WIDTH), u64::from(HEIGHT)));
    assert!((80..=100).contains(&frames), "{frames} video frames");
    assert_eq!(p.audio.as_deref(), Some("aac"));
    assert!(!out.join("room.2.mp4").exists(), "one part only");
    assert!(p.errors.is_empty(), "ffprobe: {}", p.errors);
}

/// Set in the child process of the abort test: the directory it writes into.
const CHILD_ENV: &str = "COMPOSITOR_TEST_ABORT_DIR";

#[test]
fn an_aborted_job_leaves_a_playable_file() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        // The child: 2.5 s of a live job, then die without closing anything.
        let dir = PathBuf::from(dir);
        let media = make_media(&dir, 3);
        let mut job = start_job(&dir.join("out"));
        push_live(&mut job, &media, Duration::from_millis(2500));
        std::process::abort();
    }
    let dir = tempdir("abort");
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "an_aborted_job_leaves_a_playable_file", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &dir)
        .status()
        .unwrap();
    assert!(!status.success(), "the child was meant to abort");

    let file = dir.join("out").join("room.1.mp4");
    let p = probe(&file);
    eprintln!("{p:?}");
    let (codec, w, h, frames) = p.video.expect("a video stream in the cut file");
    assert_eq!((codec.as_str(), w, h), ("h264", u64::from(WIDTH), u64::from(HEIGHT)));
    // splitmuxsink holds a GOP (2 s here) before the muxer sees it, and the muxer writes a
    // fragment (1 s) once the next one begins: of the 2.5 s pushed, the first fragment (30
    // frames when measured) is on disk, and an unbuffered filesink left no partial one.
    assert!((25..=75).contains(&frames), "{frames} video frames");
    assert_eq!(p.audio.as_deref(), Some("aac"));
    assert!(p.errors.is_empty(), "ffprobe: {}", p.errors);
    // And every packet decodes.
    let out = Command::new("ffmpeg").args(["-v", "error", "-i"]).arg(&file).args(["-f", "null", "-"]).output().unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
}

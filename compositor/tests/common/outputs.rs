//! Helpers for the tests of the job's outputs: a live push loop over looped media, an RTMP
//! server (ffmpeg listening), and HLS playlists read back.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use compositor::{Composite, InputId, InputKind};

use super::Media;

pub const CAM: InputId = InputId(1);
pub const MIC: InputId = InputId(2);

/// Adds a VP8 camera and an Opus microphone, then pushes `media` (looped: its clips start on
/// a keyframe and last whole seconds) at the job's clock, as a live tap reader would, until
/// `until`. `tick` runs after every push with the PTS just pushed; it must not block for long
/// (frames pushed later than the job's latency are dropped by the compositor).
pub fn push_live(job: &mut Composite, media: &Media, until: Duration, mut tick: impl FnMut(&mut Composite, Duration)) {
    job.add_input(CAM, InputKind::Vp8).unwrap();
    job.add_input(MIC, InputKind::Opus).unwrap();
    let start = Instant::now();
    let (mut v, mut a) = (0usize, 0usize);
    loop {
        let video_pts = Duration::from_nanos(v as u64 * 1_000_000_000 / 30);
        let audio_pts = Duration::from_millis(a as u64 * 20);
        let pts = video_pts.min(audio_pts);
        if pts >= until {
            break;
        }
        if let Some(wait) = pts.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        if video_pts <= audio_pts {
            let (frame, key) = &media.cam1[v % media.cam1.len()];
            job.push_video(CAM, frame.clone(), pts, *key).unwrap();
            v += 1;
        } else {
            job.push_audio(MIC, media.opus[a % media.opus.len()].clone(), pts).unwrap();
            a += 1;
        }
        tick(job, pts);
    }
    if let Some(e) = job.poll() {
        panic!("pipeline error: {e}");
    }
}

/// A port nothing listens on (the OS's pick, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// True once a socket listens on 127.0.0.1:`port` (read from /proc/net/tcp: connecting to
/// find out would be taken by ffmpeg as its one publisher).
pub fn listening(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).any(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        cols.get(1) == Some(&local.as_str()) && cols.get(3) == Some(&"0A")
    })
}

/// An RTMP server for one publisher: ffmpeg listening on 127.0.0.1:`port`, copying what it
/// receives into an FLV file; it exits when the publisher closes the stream.
#[derive(Debug)]
pub struct RtmpServer {
    child: Child,
    pub flv: PathBuf,
}

pub fn rtmp_url(port: u16) -> String {
    format!("rtmp://127.0.0.1:{port}/live/key")
}

impl RtmpServer {
    pub fn start(port: u16, flv: &Path) -> RtmpServer {
        let child = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-listen", "1", "-i", &rtmp_url(port)])
            .args(["-c", "copy", "-f", "flv"])
            .arg(flv)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let server = RtmpServer { child, flv: flv.to_path_buf() };
        let began = Instant::now();
        while !listening(port) {
            assert!(began.elapsed() < Duration::from_secs(10), "ffmpeg does not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// Waits for ffmpeg to finish its file (the publisher closed the stream).
    pub fn wait(&mut self, timeout: Duration) -> bool {
        let began = Instant::now();
        while began.elapsed() < timeout {
            if self.child.try_wait().unwrap().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// SIGKILL: the connection drops mid-stream.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RtmpServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The URIs a playlist lists (its lines that are not tags).
pub fn uris(playlist: &str) -> Vec<String> {
    playlist.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect()
}

/// The EXTINF durations of a media playlist.
pub fn durations(playlist: &str) -> Vec<f64> {
    playlist.lines().filter_map(|l| l.strip_prefix("#EXTINF:")?.split(',').next()?.parse().ok()).collect()
}

/// The value of a `#TAG:value` line, if the playlist has one.
pub fn tag<'a>(playlist: &'a str, name: &str) -> Option<&'a str> {
    playlist.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `.ts` files in a directory, sorted.
pub fn segment_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".ts"))
        .collect();
    names.sort();
    names
}

/// ffmpeg decodes a whole file or playlist without a message; returns the video frames decoded.
pub fn decode_all(path: &Path) -> u64 {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-map", "0:v:0", "-f", "null", "-progress", "pipe:1", "-"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "ffmpeg decoding {}: {stderr}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("frame=")?.trim().parse().ok())
        .unwrap_or(0)
}

//! Real encoded media for tests that end in a real decoder: VP8 and Opus made by Debian's
//! ffmpeg (libvpx, libopus) from its test sources, read back into frames and packets, and a
//! VP8 RTP packetizer (RFC 7741) to send them.
//!
//! The synthetic streams of [`crate::media`] are enough for the router, which never decodes;
//! a recorder's files must play, so its tests send these.

use std::path::Path;
use std::process::Command;

/// One VP8 frame from the encoder.
#[derive(Debug, Clone)]
pub struct Vp8Frame {
    pub keyframe: bool,
    pub data: Vec<u8>,
}

fn run_ffmpeg(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .output()
        .map_err(|e| format!("ffmpeg not runnable ({e}); scripts/test.sh installs it (apt-get install ffmpeg)"))?;
    if !out.status.success() {
        return Err(format!("ffmpeg failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(())
}

/// `seconds` of 30 fps VP8 test pattern at `width`x`height`, a keyframe every 2 s.
pub fn vp8_frames(dir: &Path, seconds: u32, width: u16, height: u16) -> Result<Vec<Vp8Frame>, String> {
    let path = dir.join("source.ivf");
    let src = format!("testsrc=size={width}x{height}:rate=30");
    let t = seconds.to_string();
    let p = path.to_string_lossy().into_owned();
    run_ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &src,
        "-t",
        &t,
        "-c:v",
        "libvpx",
        "-g",
        "60",
        "-b:v",
        "400k",
        "-deadline",
        "realtime",
        "-lag-in-frames",
        "0",
        "-auto-alt-ref",
        "0",
        "-f",
        "ivf",
        &p,
    ])?;
    let ivf = std::fs::read(&path).map_err(|e| e.to_string())?;
    // IVF: 32-byte file header, then per frame a 12-byte header (size u32 LE, pts u64 LE).
    let mut frames = Vec::new();
    let mut at = usize::from(u16::from_le_bytes([ivf[6], ivf[7]]));
    while at + 12 <= ivf.len() {
        let size = u32::from_le_bytes([ivf[at], ivf[at + 1], ivf[at + 2], ivf[at + 3]]) as usize;
        let data = ivf.get(at + 12..at + 12 + size).ok_or("truncated ivf")?.to_vec();
        frames.push(Vp8Frame { keyframe: data.first().is_some_and(|b| b & 1 == 0), data });
        at += 12 + size;
    }
    Ok(frames)
}

/// `seconds` of a 440 Hz tone as 20 ms Opus packets.
pub fn opus_packets(dir: &Path, seconds: u32) -> Result<Vec<Vec<u8>>, String> {
    let path = dir.join("source.ogg");
    let t = seconds.to_string();
    let p = path.to_string_lossy().into_owned();
    run_ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        &t,
        "-c:a",
        "libopus",
        "-b:a",
        "32k",
        "-frame_duration",
        "20",
        "-ac",
        "2",
        "-f",
        "ogg",
        &p,
    ])?;
    let ogg = std::fs::read(&path).map_err(|e| e.to_string())?;
    let mut packets = Vec::new();
    let mut current = Vec::new();
    let mut at = 0;
    while at + 27 <= ogg.len() && &ogg[at..at + 4] == b"OggS" {
        let segs = usize::from(ogg[at + 26]);
        let lacing = &ogg[at + 27..at + 27 + segs];
        let mut data = at + 27 + segs;
        for &l in lacing {
            current.extend_from_slice(&ogg[data..data + usize::from(l)]);
            data += usize::from(l);
            if l < 255 {
                packets.push(std::mem::take(&mut current));
            }
        }
        at = data;
    }
    // The first two are OpusHead and OpusTags.
    Ok(packets.into_iter().skip(2).collect())
}

/// RFC 7741 payloads for one frame: a one-byte descriptor (S=1 on the first), at most `mtu`
/// bytes of frame each.
pub fn vp8_packetize(frame: &[u8], mtu: usize) -> Vec<Vec<u8>> {
    frame
        .chunks(mtu.max(1))
        .enumerate()
        .map(|(i, chunk)| {
            let mut p = Vec::with_capacity(chunk.len() + 1);
            p.push(if i == 0 { 0x10 } else { 0x00 });
            p.extend_from_slice(chunk);
            p
        })
        .collect()
}

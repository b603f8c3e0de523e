//! Real encoded media for tests that end in a real decoder: VP8, H.264 and Opus made by
//! Debian's ffmpeg (libvpx, libx264, libopus) from its test sources, read back into frames,
//! access units and packets, and RTP packetizers for VP8 (RFC 7741) and H.264 (RFC 6184) to
//! send them.
//!
//! The synthetic streams of this crate's root are enough for the router, which never decodes;
//! a recorder's files and a composite must play, so their tests send these.

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

/// `seconds` of ffmpeg's 30 fps test pattern at `width`x`height`, a keyframe every 2 s at
/// 400 kbit/s, encoded with `codec` (the encoder and its options) into `path` as `format`; the
/// file's bytes.
fn encode_test_pattern(
    path: &Path,
    (seconds, width, height): (u32, u16, u16),
    codec: &[&str],
    format: &str,
) -> Result<Vec<u8>, String> {
    let src = format!("testsrc=size={width}x{height}:rate=30");
    let t = seconds.to_string();
    let p = path.to_string_lossy().into_owned();
    let mut args = vec!["-f", "lavfi", "-i", &src, "-t", &t, "-g", "60", "-b:v", "400k"];
    args.extend_from_slice(codec);
    args.extend_from_slice(&["-f", format, &p]);
    run_ffmpeg(&args)?;
    std::fs::read(path).map_err(|e| e.to_string())
}

/// `seconds` of 30 fps VP8 test pattern at `width`x`height`, a keyframe every 2 s.
pub fn vp8_frames(dir: &Path, seconds: u32, width: u16, height: u16) -> Result<Vec<Vp8Frame>, String> {
    let ivf = encode_test_pattern(
        &dir.join("source.ivf"),
        (seconds, width, height),
        &["-c:v", "libvpx", "-deadline", "realtime", "-lag-in-frames", "0", "-auto-alt-ref", "0"],
        "ivf",
    )?;
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

/// One H.264 access unit from the encoder: its NAL units (header byte first, no start codes).
#[derive(Debug, Clone)]
pub struct H264AccessUnit {
    pub keyframe: bool,
    pub nals: Vec<Vec<u8>>,
}

/// `seconds` of 30 fps H.264 (libx264, constrained baseline as browsers send, no B-frames) at
/// `width`x`height`, an IDR with its SPS and PPS every 2 s; read from the Annex B stream.
pub fn h264_access_units(dir: &Path, seconds: u32, width: u16, height: u16) -> Result<Vec<H264AccessUnit>, String> {
    let annexb = encode_test_pattern(
        &dir.join("source.h264"),
        (seconds, width, height),
        &[
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libx264",
            "-profile:v",
            "baseline",
            "-tune",
            "zerolatency",
            "-bsf:v",
            "h264_mp4toannexb",
        ],
        "h264",
    )?;
    // NAL units lie between start codes (00 00 01, or 00 00 00 01: the extra zero is dropped
    // as trailing_zero_8bits).
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= annexb.len() {
        if annexb[i..i + 3] == [0, 0, 1] {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut units: Vec<H264AccessUnit> = Vec::new();
    let mut pending: Vec<Vec<u8>> = Vec::new();
    for (k, &s) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map_or(annexb.len(), |&n| n - 3);
        while end > s && annexb[end - 1] == 0 {
            end -= 1;
        }
        let nal = annexb[s..end].to_vec();
        let kind = nal.first().ok_or("empty NAL unit")? & 0x1f;
        if matches!(kind, 1 | 5) {
            // first_mb_in_slice 0 (a top bit of 1) starts a picture; the others continue one.
            let first_slice = nal.get(1).is_some_and(|b| b & 0x80 != 0);
            if first_slice || units.is_empty() {
                pending.push(nal);
                units.push(H264AccessUnit { keyframe: kind == 5, nals: std::mem::take(&mut pending) });
            } else if let Some(last) = units.last_mut() {
                last.nals.push(nal);
            }
        } else {
            pending.push(nal);
        }
    }
    Ok(units)
}

/// RFC 6184 payloads (packetization mode 1) for one access unit: the NAL units before the first
/// slice (SPS, PPS, SEI) in one STAP-A, a NAL unit longer than `mtu` in FU-A fragments, any
/// other as a single NAL unit packet.
pub fn h264_packetize(au: &H264AccessUnit, mtu: usize) -> Vec<Vec<u8>> {
    let mtu = mtu.max(16);
    let mut out = Vec::new();
    let first_slice = au.nals.iter().position(|n| matches!(n[0] & 0x1f, 1 | 5)).unwrap_or(au.nals.len());
    let (params, slices) = au.nals.split_at(first_slice);
    match params {
        [] => {}
        [one] => out.push(one.clone()),
        several => out.push(crate::h264_stap_a(&several.iter().map(Vec::as_slice).collect::<Vec<_>>())),
    }
    for nal in slices {
        if nal.len() <= mtu {
            out.push(nal.clone());
            continue;
        }
        out.extend(crate::h264_fu_a(nal, mtu - 2));
    }
    out
}

//! A/V sync over a long job: a peer whose camera flashes white and whose microphone beeps at
//! the same instants (every 2 s), sent as the router's tap records in real time with sender
//! reports, through a job run as the compositor process runs it; the MP4 is then read by
//! ffmpeg: each flash's first frame (`signalstats`) against the beep's start
//! (`silencedetect`). Prints the offset (audio minus video) at the start, at the end and at its
//! worst, so drift shows as the difference. A measurement, not a check:
//! `scripts/bench.sh av-sync` (10 minutes; `AV_SYNC_SECONDS` for another length).
#![allow(clippy::unwrap_used)] // a measurement: a failed unwrap is a failed run

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::runner::{PeerMedia, drive, mp4_job, peer_records, remove_job, wait_for, write_job};
use common::{opus_of, tempdir, vp8_of};
use compositor::runner::Runner;
use schema::compositor::CompositorEvent;
use synth_media::encoded::Vp8Frame;

const TAP: u32 = 9;
/// The media made by ffmpeg, looped: a whole number of flash periods and of keyframe intervals.
const CLIP_SECONDS: u32 = 10;
const PERIOD_SECONDS: u32 = 2;

#[test]
#[ignore = "a measurement of 10 minutes: run it by name with --ignored (scripts/bench.sh av-sync)"]
fn av_sync_over_a_long_job() {
    let seconds: u32 = std::env::var("AV_SYNC_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    let dir = tempdir("av-sync");
    let flash = format!(
        "color=black:size=320x240:rate=30,drawbox=w=iw:h=ih:color=white:t=fill:enable='lt(mod(t\\,{PERIOD_SECONDS})\\,0.1)'"
    );
    // Evaluated per sample (a `volume` filter's `enable` is evaluated per 1024-sample frame,
    // which moved the beeps by up to 21 ms).
    let beep = format!("aevalsrc='if(lt(mod(t\\,{PERIOD_SECONDS})\\,0.1)\\,0.5*sin(2*PI*1000*t)\\,0)':s=48000");
    let video = vp8_of(&dir, "flashes", &flash, CLIP_SECONDS, 300);
    let audio = opus_of(&dir, "beeps", &beep, CLIP_SECONDS);
    let loops = seconds.div_ceil(CLIP_SECONDS) as usize;
    let media = PeerMedia {
        video: (0..loops)
            .flat_map(|_| video.iter().map(|(data, keyframe)| Vp8Frame { data: data.clone(), keyframe: *keyframe }))
            .collect(),
        // Exactly the clip's length: ffmpeg's Ogg holds one packet more (the encoder's
        // pre-skip), which looped would make the audio run 0.2 % long, as a drifting sender.
        audio: (0..loops).flat_map(|_| audio.iter().take(CLIP_SECONDS as usize * 50).cloned()).collect(),
    };

    let jobs = dir.join("jobs");
    std::fs::create_dir_all(&jobs).unwrap();
    let out = dir.join("out");
    let mut runner = Runner::new(&jobs);
    write_job(&jobs, &mp4_job("sync", TAP, &out));
    wait_for(&mut runner, Duration::from_secs(10), |e| matches!(e, CompositorEvent::Started { .. }));
    let wall = util::unix_ms();
    let records = peer_records(TAP, &media, 0, wall);
    let began = Instant::now();
    drive(&mut runner, &records, wall, began, Duration::from_secs(u64::from(seconds)));
    remove_job(&jobs, "sync");
    wait_for(&mut runner, Duration::from_secs(30), |e| matches!(e, CompositorEvent::Finished { .. }));

    let file = out.join("composite.1.mp4");
    let flashes = flash_starts(&file);
    let beeps = beep_starts(&file);
    let offsets: Vec<(f64, f64)> = flashes
        .iter()
        .filter_map(|&v| {
            let a = beeps.iter().copied().min_by(|x, y| (x - v).abs().total_cmp(&(y - v).abs()))?;
            ((a - v).abs() < f64::from(PERIOD_SECONDS) / 2.0).then_some((v, a - v))
        })
        .collect();
    assert!(offsets.len() > 5, "flashes {flashes:?}, beeps {beeps:?}");
    let each: Vec<String> = offsets.iter().map(|(t, o)| format!("{t:.0}s:{:+.0}", o * 1000.0)).collect();
    println!("offsets (ms) by time: {}", each.join(" "));
    let mean = |part: &[(f64, f64)]| part.iter().map(|(_, o)| o).sum::<f64>() / part.len() as f64 * 1000.0;
    let tenth = (offsets.len() / 10).max(1);
    let worst = offsets.iter().map(|(_, o)| o * 1000.0).max_by(|a, b| a.abs().total_cmp(&b.abs())).unwrap();
    println!(
        "A/V offset (audio − video) over {seconds} s, {} flashes: first tenth {:+.0} ms, last tenth {:+.0} ms, worst {worst:+.0} ms (target within ±60 ms)",
        offsets.len(),
        mean(&offsets[..tenth]),
        mean(&offsets[offsets.len() - tenth..]),
    );
}

/// The times (s) of the first frame of each flash: the mean luma jumps from black to white.
fn flash_starts(file: &std::path::Path) -> Vec<f64> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-vf", "signalstats,metadata=print:key=lavfi.signalstats.YAVG:file=-", "-an", "-f", "null", "-"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut starts = Vec::new();
    let (mut pts, mut lit) = (0.0, false);
    for line in text.lines() {
        if let Some(t) = line.split("pts_time:").nth(1) {
            pts = t.trim().parse().unwrap_or(pts);
        } else if let Some(y) = line.strip_prefix("lavfi.signalstats.YAVG=") {
            let now = y.trim().parse::<f64>().unwrap_or(0.0) > 128.0;
            if now && !lit {
                starts.push(pts);
            }
            lit = now;
        }
    }
    starts
}

/// The times (s) each beep starts, to the sample: the decoded audio (mono, 48 kHz) rises
/// above a tenth of full scale after at least half a second below it.
fn beep_starts(file: &std::path::Path) -> Vec<f64> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-vn", "-ac", "1", "-ar", "48000", "-f", "s16le", "-"])
        .output()
        .unwrap();
    let mut starts = Vec::new();
    let mut quiet = 0usize;
    for (i, pair) in out.stdout.chunks_exact(2).enumerate() {
        let loud = i16::from_le_bytes([pair[0], pair[1]]).unsigned_abs() > i16::MAX as u16 / 10;
        if loud && quiet >= 24_000 {
            starts.push(i as f64 / 48_000.0);
        }
        quiet = if loud { 0 } else { quiet + 1 };
    }
    starts
}

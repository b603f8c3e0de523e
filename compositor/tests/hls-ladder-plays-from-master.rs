//! An HLS ladder of three renditions (1280×720 from the main encode, 640×360 and 320×180
//! scaled and encoded again) in a live playlist of three 1 s segments: the multivariant
//! playlist names all three, each segment decodes at its rendition's size with H.264 and AAC,
//! the renditions cut their segments at the same times, the live window stays three segments
//! long and old segments leave the disk, and ffprobe opens master.m3u8 as a player would.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::process::Command;
use std::time::Duration;

use common::outputs::{durations, push_live, read, segment_files, tag, uris};
use common::{make_media, probe, tempdir};
use compositor::{Composite, Config, HlsOutput, HlsPlaylist, Rendition};

const LADDER: [(u32, u32, u32); 3] = [(1280, 720, 1500), (640, 360, 500), (320, 180, 200)];
const WINDOW: usize = 3;

#[test]
fn three_renditions_play_from_the_master_playlist() {
    let dir = tempdir("hls-ladder");
    let media = make_media(&dir, 2);
    let out = dir.join("hls");
    let mut hls = HlsOutput::new(
        &out,
        LADDER.iter().map(|&(width, height, video_kbps)| Rendition { width, height, video_kbps }).collect(),
    );
    hls.segment_duration = Duration::from_secs(1);
    hls.playlist = HlsPlaylist::Live { segments: WINDOW as u32 };
    let config = Config { video_bitrate_kbps: 1500, hls: Some(hls), ..Config::default() };
    let mut job = Composite::start(config).unwrap();

    let mut master_seen_at = None;
    push_live(&mut job, &media, Duration::from_secs(12), |_, pts| {
        if master_seen_at.is_none() && out.join("master.m3u8").exists() {
            master_seen_at = Some(pts);
        }
    });
    // Every rendition has its first segment after one segment's time; the master follows.
    let master_seen_at = master_seen_at.expect("master.m3u8 written while the job runs");
    assert!(master_seen_at < Duration::from_secs(4), "master.m3u8 only at {master_seen_at:?}");

    // While the job runs (before finish): the live windows.
    let mut windows = Vec::new();
    for i in 0..LADDER.len() {
        let rendition = out.join(i.to_string());
        let playlist = read(&rendition.join("index.m3u8"));
        let listed = uris(&playlist);
        assert_eq!(listed.len(), WINDOW, "rendition {i}: {playlist}");
        assert!(tag(&playlist, "#EXT-X-PLAYLIST-TYPE").is_none(), "a live playlist has no type");
        let sequence: u64 = tag(&playlist, "#EXT-X-MEDIA-SEQUENCE").unwrap().parse().unwrap();
        assert!(sequence >= 7, "12 s of 1 s segments: the window has moved ({sequence})");
        assert_eq!(playlist.matches("#EXT-X-PROGRAM-DATE-TIME:").count(), WINDOW, "{playlist}");
        for d in durations(&playlist) {
            assert!((d - 1.0).abs() < 0.05, "rendition {i}: segment of {d} s");
        }
        // Kept: the window, the segments that left it a window ago (RFC 8216 §6.2.2), and
        // the one being written.
        let files = segment_files(&rendition);
        assert!(files.len() <= 2 * WINDOW + 2, "rendition {i}: {files:?}");
        assert!(!rendition.join("seg00000.ts").exists(), "the first segment was deleted");
        for uri in &listed {
            assert!(files.contains(uri), "{uri} listed but not on disk");
        }
        windows.push((sequence, listed));
    }
    // The renditions cut at the same times (the lower ones may lag the top by a segment): a
    // segment number has one program date in every rendition.
    let sequences: Vec<u64> = windows.iter().map(|w| w.0).collect();
    assert!(sequences.iter().max().unwrap() - sequences.iter().min().unwrap() <= 1, "{sequences:?}");
    let dated = |i: usize| -> Vec<(String, String)> {
        let playlist = read(&out.join(i.to_string()).join("index.m3u8"));
        let dates = playlist.lines().filter_map(|l| l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:").map(str::to_string));
        uris(&playlist).into_iter().zip(dates).collect()
    };
    let top = dated(0);
    for i in 1..LADDER.len() {
        let common: Vec<_> = dated(i).into_iter().filter(|d| top.iter().any(|t| t.0 == d.0)).collect();
        assert!(common.len() >= WINDOW - 1, "rendition {i} shares segments with the top");
        for d in common {
            assert!(top.contains(&d), "rendition {i}'s {} starts at {}, not with the top's", d.0, d.1);
        }
    }

    let master = read(&out.join("master.m3u8"));
    eprintln!("{master}");
    let variants: Vec<&str> = master.lines().filter(|l| l.starts_with("#EXT-X-STREAM-INF:")).collect();
    assert_eq!(variants.len(), 3, "{master}");
    for (i, (v, &(w, h, _))) in variants.iter().zip(&LADDER).enumerate() {
        assert!(v.contains(&format!("RESOLUTION={w}x{h}")), "{v}");
        assert!(v.contains("BANDWIDTH="), "{v}");
        let codecs = v.split("CODECS=\"").nth(1).and_then(|c| c.split('"').next()).unwrap();
        let (video, audio) = codecs.split_once(',').unwrap();
        assert!(video.starts_with("avc1.") && video.len() == 11, "{codecs}");
        assert_eq!(audio, "mp4a.40.2");
        assert_eq!(uris(&master)[i], format!("{i}/index.m3u8"));
    }

    // Each rendition's newest segment: its size, H.264 and AAC, every frame decodable.
    for (i, &(w, h, _)) in LADDER.iter().enumerate() {
        let segment = out.join(i.to_string()).join(windows[i].1.last().unwrap());
        let p = probe(&segment);
        let (codec, width, height, frames) = p.video.expect("a video stream");
        assert_eq!((codec.as_str(), width, height), ("h264", u64::from(w), u64::from(h)), "rendition {i}");
        assert!((25..=35).contains(&frames), "rendition {i}: {frames} frames in a 1 s segment");
        assert_eq!(p.audio.as_deref(), Some("aac"));
        assert!(p.errors.is_empty(), "ffprobe: {}", p.errors);
    }

    // A player's view: ffprobe opens master.m3u8 and finds the three variants.
    let probe_master = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_name,width,height", "-of", "csv=p=0"])
        .arg(out.join("master.m3u8"))
        .output()
        .unwrap();
    let streams = String::from_utf8_lossy(&probe_master.stdout);
    assert!(probe_master.status.success(), "ffprobe master: {}", String::from_utf8_lossy(&probe_master.stderr));
    for (w, h, _) in LADDER {
        assert!(streams.contains(&format!("h264,{w},{h}")), "{streams}");
    }
    assert!(streams.contains("aac"), "{streams}");

    job.finish(Duration::from_secs(10)).unwrap();
    for i in 0..LADDER.len() {
        let playlist = read(&out.join(i.to_string()).join("index.m3u8"));
        assert!(playlist.ends_with("#EXT-X-ENDLIST\n"), "finished: {playlist}");
    }
}

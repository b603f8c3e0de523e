//! Helpers for the tests of the compositor process's core (`Runner`): job files written as
//! control writes them, one peer's camera and microphone as the router's tap records, and a
//! loop that drives a `Runner` as the process's main loop does (a scan and a check every
//! 250 ms, the records at their send times, the events drained).

use std::path::Path;
use std::time::{Duration, Instant};

use compositor::runner::Runner;
use schema::codec::Codec;
use schema::compositor::{CompositorEvent, CompositorJob, Mp4Spec};
use schema::recording::TapMeta;
use schema::tap::TapRecord;
use synth_media::encoded::{Vp8Frame, opus_packets, vp8_frames, vp8_packetize};

/// How often the process reads the jobs directory (its `SCAN_EVERY`).
pub const SCAN_EVERY: Duration = Duration::from_millis(250);

/// Ends the test process if the test has not ended by then: a hang is a failure, not a stuck
/// run. Each test file is its own process, so this takes nothing else down.
pub fn watchdog(limit: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("the test did not end within {limit:?}");
        std::process::abort();
    });
}

/// An MP4 job of `tap` writing into `dir`, 320×240 (small: cheap to encode on a test machine).
pub fn mp4_job(job_id: &str, tap: u32, dir: &Path) -> CompositorJob {
    CompositorJob {
        job_id: job_id.into(),
        tap,
        room_id: "room1".into(),
        width: 320,
        height: 240,
        mp4: Some(Mp4Spec { dir: dir.to_string_lossy().into_owned(), part_seconds: 3600 }),
        hls: None,
        rtmp: Vec::new(),
        paused: false,
        layout: Default::default(),
    }
}

/// Writes a job file as control does: the whole file under a temporary name, then renamed, so
/// a scan never reads half of one.
pub fn write_job(jobs: &Path, job: &CompositorJob) {
    write_atomically(jobs, &format!("{}.json", job.job_id), &serde_json::to_string(job).unwrap());
}

pub fn write_atomically(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

pub fn remove_job(jobs: &Path, job_id: &str) {
    std::fs::remove_file(jobs.join(format!("{job_id}.json"))).unwrap();
}

/// One peer's camera (VP8, 320×240, a keyframe every 2 s) and microphone (Opus), `seconds`
/// long, made by ffmpeg.
pub struct PeerMedia {
    pub video: Vec<Vp8Frame>,
    pub audio: Vec<Vec<u8>>,
}

pub fn peer_media(dir: &Path, seconds: u32) -> PeerMedia {
    let d = dir.join("media");
    std::fs::create_dir_all(&d).unwrap();
    PeerMedia { video: vp8_frames(&d, seconds, 320, 240).unwrap(), audio: opus_packets(&d, seconds).unwrap() }
}

pub const CAMERA: u32 = 1;
pub const MICROPHONE: u32 = 2;

pub fn meta(track: &str, kind: &str) -> TapMeta {
    TapMeta {
        recording_id: "composite1".into(),
        room_id: "room1".into(),
        session_id: "s1".into(),
        peer_id: "peer-a".into(),
        user_id: "u".into(),
        track_id: track.into(),
        stream_id: "stream-a".into(),
        track_type: kind.into(),
        ..Default::default()
    }
}

/// Unix ms as NTP (32.32 fixed point since 1900).
pub fn ntp(unix_ms: u64) -> u64 {
    let secs = unix_ms / 1000 + 2_208_988_800;
    (secs << 32) | (((unix_ms % 1000) << 32) / 1000)
}

pub fn rtp(seq: u16, ts: u32, marker: bool, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 96 | if marker { 0x80 } else { 0 }];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

pub fn encode(rec: &TapRecord<'_>) -> Vec<u8> {
    let mut buf = Vec::new();
    rec.encode(&mut buf);
    buf
}

/// The tap records of `media` on `tap` (the camera from its frame `first_frame` on), each at
/// its send time in ms after the first: the Starts, a sender report per track mapping its
/// first RTP time to `wall` (the sender's clock when it sent the first), then the packets.
/// The router sends no Stop here: a job that ends while its peer still publishes sees none.
pub fn peer_records(tap: u32, media: &PeerMedia, first_frame: usize, wall: u64) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let video_meta = serde_json::to_string(&meta("cam", "video")).unwrap();
    let audio_meta = serde_json::to_string(&meta("mic", "audio")).unwrap();
    out.push((
        0,
        encode(&TapRecord::Start { tap, producer: CAMERA, codec: Codec::Vp8, clock_rate: 90_000, meta: &video_meta }),
    ));
    out.push((
        0,
        encode(&TapRecord::Start {
            tap,
            producer: MICROPHONE,
            codec: Codec::Opus,
            clock_rate: 48_000,
            meta: &audio_meta,
        }),
    ));
    let video_ts = 7_000u32;
    out.push((
        0,
        encode(&TapRecord::SenderReport { tap, producer: CAMERA, layer: 0, ntp: ntp(wall), rtp_time: video_ts }),
    ));
    let mut seq = 1000u16;
    for (i, f) in media.video.iter().skip(first_frame).enumerate() {
        let at = i as u64 * 1000 / 30;
        let ts = video_ts + i as u32 * 3000;
        let payloads = vp8_packetize(&f.data, 1100);
        for (n, p) in payloads.iter().enumerate() {
            seq = seq.wrapping_add(1);
            let packet = rtp(seq, ts, n + 1 == payloads.len(), 10, p);
            out.push((at, encode(&TapRecord::Rtp { tap, producer: CAMERA, layer: 0, packet: &packet })));
        }
    }
    let audio_ts = 123_456u32;
    out.push((
        0,
        encode(&TapRecord::SenderReport { tap, producer: MICROPHONE, layer: 0, ntp: ntp(wall), rtp_time: audio_ts }),
    ));
    for (i, packet) in media.audio.iter().enumerate() {
        let p = rtp(40_000u16.wrapping_add(i as u16), audio_ts + i as u32 * 960, false, 20, packet);
        out.push((i as u64 * 20, encode(&TapRecord::Rtp { tap, producer: MICROPHONE, layer: 0, packet: &p })));
    }
    // Stable: a frame's packets keep their order.
    out.sort_by_key(|(at, _)| *at);
    out
}

/// A runner's events, each with when it came (ms after the drive began).
pub type Events = Vec<(u64, CompositorEvent)>;

/// Drives `runner` as the process does: `records` handed over at their send times (ms after
/// `began`, received at `wall` + that), a scan and a check every 250 ms, the events drained
/// into `events`, until `until` after `began`. Returns the events of this call.
pub fn drive(runner: &mut Runner, records: &[(u64, Vec<u8>)], wall: u64, began: Instant, until: Duration) -> Events {
    let mut events = Vec::new();
    let mut next = 0;
    let mut last_scan: Option<Instant> = None;
    loop {
        let elapsed = began.elapsed();
        if last_scan.is_none_or(|t| t.elapsed() >= SCAN_EVERY) {
            last_scan = Some(Instant::now());
            runner.scan();
            runner.check();
        }
        while let Some((at, rec)) = records.get(next)
            && Duration::from_millis(*at) <= elapsed
        {
            runner.handle_record(wall + at, rec);
            next += 1;
        }
        let now = u64::try_from(elapsed.as_millis()).unwrap();
        while let Some(ev) = runner.poll_event() {
            events.push((now, ev));
        }
        if elapsed >= until {
            return events;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Scans and checks every 250 ms until an event `want` accepts has come (all the events up to
/// and with it are returned), or panics after `limit`.
pub fn wait_for(runner: &mut Runner, limit: Duration, want: impl Fn(&CompositorEvent) -> bool) -> Vec<CompositorEvent> {
    let began = Instant::now();
    let mut events = Vec::new();
    loop {
        runner.scan();
        runner.check();
        while let Some(ev) = runner.poll_event() {
            let done = want(&ev);
            events.push(ev);
            if done {
                return events;
            }
        }
        assert!(began.elapsed() < limit, "not within {limit:?}; the events: {events:?}");
        std::thread::sleep(SCAN_EVERY);
    }
}

/// The events of `events` without their times.
pub fn plain(events: &Events) -> Vec<CompositorEvent> {
    events.iter().map(|(_, e)| e.clone()).collect()
}

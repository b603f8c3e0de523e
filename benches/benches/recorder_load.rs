//! Recorder load: N tracks (half Opus at 50 packets/s, half VP8 at 30 fps, ~1 Mbit/s) written
//! in real time into a shared-memory tap ring, as a router shard does, and recorded to files by
//! a [`recorder::Recorder`] on its own thread, read exactly as the `recorder` process reads.
//!
//! Reports the recorder thread's CPU time per recorded track (as a share of one core), the
//! tracks one core could record at that cost, the tap side's CPU per track, and the records the
//! ring refused (dropped: the router never waits). Run:
//!
//! ```text
//! cargo bench -p benches --bench recorder_load              # 50 tracks, 10 s
//! RECORDER_LOAD_TRACKS=200 RECORDER_LOAD_SECONDS=10 cargo bench -p benches --bench recorder_load
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a failed unwrap is a failed run

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use integration_tests::media::{OpusStream, Vp8Stream};
use recorder::{Config, Recorder};
use schema::codec::Codec;
use schema::recording::TapMeta;
use schema::tap::TapRecord;
use shm_queue::{Consumer, Producer, Segment};

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn rtp(seq: u16, ts: u32, ssrc: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + payload.len());
    p.push(0x80);
    p.push(if marker { 0x80 | 96 } else { 96 });
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let tracks = env("RECORDER_LOAD_TRACKS", 50) as u32;
    let seconds = env("RECORDER_LOAD_SECONDS", 10);
    let dir = std::env::temp_dir().join(format!("recorder-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);

    // The ring control gives each shard: 16 MiB (control's TAP_RING_BYTES).
    let segment =
        Segment::create_memfd("bench-tap", shm_queue::Config { rings: 1, capacity: 16 << 20, max_record: None })
            .unwrap();
    let mut ring = Producer::attach(&segment, 0).unwrap();
    let mut reader = Consumer::attach(&segment, 0).unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let out_dir = dir.clone();
    let stop = done.clone();
    let recorder = std::thread::spawn(move || {
        let mut rec = Recorder::new(Config { dir: out_dir, max_part_bytes: u64::MAX, max_part_ms: u64::MAX });
        let cpu0 = thread_cpu();
        let mut records = 0u64;
        loop {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
            match reader.recv_timeout_with(Duration::from_millis(50), |r| rec.handle_record(now, r)) {
                Ok(()) => records += 1,
                Err(_) if stop.load(Ordering::Relaxed) => break,
                Err(_) => {}
            }
            while rec.poll_event().is_some() {}
        }
        rec.close_all();
        (thread_cpu() - cpu0, records, rec.stats())
    });

    let meta = |i: u32, kind: &str| {
        serde_json::to_string(&TapMeta {
            recording_id: "load".into(),
            room_id: "r".into(),
            peer_id: format!("peer{i}"),
            track_id: format!("track{i}"),
            track_type: kind.into(),
            ..Default::default()
        })
        .unwrap()
    };
    let mut buf: Vec<u8>;
    let mut offered = 0u64;
    let mut dropped = 0u64;
    let mut send = |rec: TapRecord<'_>, ring: &mut Producer| {
        offered += 1;
        let len = rec.encoded_len();
        if ring.send_with(len, |b| rec.encode_into(b)).is_err() {
            dropped += 1;
        }
    };
    let audio = tracks / 2;
    let video = tracks - audio;
    for i in 0..tracks {
        let (codec, rate, kind) =
            if i < audio { (Codec::Opus, 48_000, "audio") } else { (Codec::Vp8, 90_000, "video") };
        let m = meta(i, kind);
        send(TapRecord::Start { tap: 1, producer: i, codec, clock_rate: rate, meta: &m }, &mut ring);
    }
    let mut opus: Vec<OpusStream> = (0..audio).map(|i| OpusStream::new(u64::from(i) * 7, i * 1000)).collect();
    let mut vp8: Vec<Vp8Stream> = (0..video)
        .map(|i| {
            let mut s = Vp8Stream::new(u64::from(i) * 11, i * 3000);
            // ~1 Mbit/s: 4 packets of 1100 bytes per frame at 30 fps, a keyframe every 2 s.
            s.packets_per_frame = 4;
            s.payload_size = 1100;
            s
        })
        .collect();

    let start = Instant::now();
    let tap_cpu0 = thread_cpu();
    let mut tick = 0u64;
    // 10 ms ticks: every other tick an Opus packet per audio track (20 ms), a VP8 frame per video
    // track every 33.3 ms.
    while start.elapsed() < Duration::from_secs(seconds) {
        let due = start + Duration::from_millis(tick * 10);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if tick.is_multiple_of(2) {
            for (i, s) in opus.iter_mut().enumerate() {
                let p = s.next_packet();
                buf = rtp(p.seq as u16, p.ts, 1000 + i as u32, p.marker, &p.payload);
                send(TapRecord::Rtp { tap: 1, producer: i as u32, layer: 0, packet: &buf }, &mut ring);
            }
        }
        let frames_due = (tick * 10 * 30) / 1000 + 1;
        for (i, s) in vp8.iter_mut().enumerate() {
            while u64::from(s.frame) < frames_due {
                for p in s.next_frame() {
                    buf = rtp(p.seq as u16, p.ts, 5000 + i as u32, p.marker, &p.payload);
                    send(TapRecord::Rtp { tap: 1, producer: audio + i as u32, layer: 0, packet: &buf }, &mut ring);
                }
            }
        }
        tick += 1;
    }
    let tap_cpu = thread_cpu() - tap_cpu0;
    let wall = start.elapsed();
    for i in 0..tracks {
        send(TapRecord::Stop { tap: 1, producer: i }, &mut ring);
    }
    std::thread::sleep(Duration::from_millis(300));
    done.store(true, Ordering::Relaxed);
    let (rec_cpu, records, stats) = recorder.join().unwrap();

    let share = |cpu: Duration| cpu.as_secs_f64() / wall.as_secs_f64() / f64::from(tracks);
    let per_track = share(rec_cpu);
    let bytes: u64 = walk(&dir);
    println!("recorder_load: {tracks} tracks ({audio} Opus, {video} VP8 ~1 Mbit/s) for {:.1} s", wall.as_secs_f64());
    println!("  records offered {offered}, dropped (ring full) {dropped}, read by the recorder {records}");
    println!(
        "  recorder CPU {:.3} s: {:.3} % of a core per track -> {:.0} tracks per core",
        rec_cpu.as_secs_f64(),
        per_track * 100.0,
        1.0 / per_track
    );
    println!("  tap side (ring writes) CPU {:.3} % of a core per track", share(tap_cpu) * 100.0);
    println!("  written {:.1} MB; recorder stats {stats:?}", bytes as f64 / 1e6);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(stats.bad_records, 0);
}

fn walk(dir: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    rd.flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() { walk(&p) } else { e.metadata().map(|m| m.len()).unwrap_or(0) }
        })
        .sum()
}

//! Two processes over a memfd segment: the test binary re-executes itself as the writer
//! (`SHMQ_CHILD` selects the role, `SHMQ_FD` names the inherited fd). The parent checks order
//! and content of 200k records, and in a second test kills the writer mid-stream and checks the
//! reader reports it gone instead of hanging.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use shm_queue::{Config, Consumer, PeerState, Producer, RecvError, Segment, SendError};
use std::os::fd::AsRawFd;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const RECORDS: u64 = 200_000;

/// `[seq: u64][payload derived from seq][crc32: u32]`, 12 to 1512 bytes.
fn record(seq: u64, out: &mut Vec<u8>) {
    let payload = (seq.wrapping_mul(2_654_435_761) % 1501) as usize;
    out.clear();
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend((0..payload).map(|i| (seq as usize ^ i.wrapping_mul(13)) as u8));
    let crc = crc32fast::hash(out);
    out.extend_from_slice(&crc.to_le_bytes());
}

fn check(seq: u64, buf: &[u8]) {
    assert!(buf.len() >= 12, "record {seq} too short");
    let (body, crc) = buf.split_at(buf.len() - 4);
    assert_eq!(u64::from_le_bytes(body[..8].try_into().unwrap()), seq, "out of order");
    assert_eq!(crc32fast::hash(body).to_le_bytes(), crc, "record {seq} corrupted");
}

/// The child's entry point: a no-op unless this process was started as a child.
#[test]
fn child_writer_entry() {
    let Ok(role) = std::env::var("SHMQ_CHILD") else { return };
    let fd: i32 = std::env::var("SHMQ_FD").unwrap().parse().unwrap();
    // SAFETY: the parent left this fd open for us (no close-on-exec) and nothing else here
    // uses it.
    let seg = unsafe { Segment::open_raw_fd(fd) }.unwrap();
    let mut producer = Producer::attach(&seg, 0).unwrap();
    let mut buf = Vec::new();
    let limit = if role == "forever" { u64::MAX } else { RECORDS };
    for seq in 0..limit {
        record(seq, &mut buf);
        loop {
            match producer.send(&buf) {
                Ok(()) => break,
                Err(SendError::Full) => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
    }
}

fn spawn_writer(seg: &Segment, role: &str) -> Child {
    let fd = seg.inheritable_fd().unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["child_writer_entry", "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env("SHMQ_CHILD", role)
        .env("SHMQ_FD", fd.as_raw_fd().to_string())
        .spawn()
        .unwrap();
    drop(fd); // The child has its copy.
    child
}

#[test]
fn records_from_another_process_arrive_whole_and_in_order() {
    let seg = Segment::create_memfd("two-process", Config::one_way(1 << 16)).unwrap();
    let mut consumer = Consumer::attach(&seg, 0).unwrap();
    let mut child = spawn_writer(&seg, "200k");
    let mut buf = Vec::new();
    for seq in 0..RECORDS {
        consumer.recv_timeout(&mut buf, Duration::from_secs(20)).unwrap_or_else(|e| panic!("record {seq}: {e}"));
        check(seq, &buf);
    }
    // The writer exits (closing its end): the reader hears so instead of waiting.
    assert_eq!(consumer.recv_timeout(&mut buf, Duration::from_secs(20)), Err(RecvError::Disconnected));
    assert!(child.wait().unwrap().success());
}

#[test]
fn reader_sees_a_killed_writer_as_gone() {
    let seg = Segment::create_memfd("two-process-kill", Config::one_way(1 << 16)).unwrap();
    let mut consumer = Consumer::attach(&seg, 0).unwrap();
    let mut child = spawn_writer(&seg, "forever");
    let mut buf = Vec::new();
    let mut seq = 0;
    while seq < 10_000 {
        consumer.recv_timeout(&mut buf, Duration::from_secs(20)).unwrap_or_else(|e| panic!("record {seq}: {e}"));
        check(seq, &buf);
        seq += 1;
    }
    assert_eq!(consumer.peer_state(), PeerState::Alive);
    child.kill().unwrap(); // SIGKILL: no clean close, and not reaped yet (a zombie).
    let killed = Instant::now();
    let end = loop {
        match consumer.recv_timeout(&mut buf, Duration::from_secs(10)) {
            Ok(()) => {
                // Whatever was queued before the kill still arrives intact and in order.
                check(seq, &buf);
                seq += 1;
            }
            Err(e) => break e,
        }
    };
    assert_eq!(end, RecvError::Disconnected);
    assert!(killed.elapsed() < Duration::from_secs(2), "noticed after {:?}", killed.elapsed());
    assert_eq!(consumer.peer_state(), PeerState::Dead);
    child.wait().unwrap();
    // Reaped now: still dead.
    assert_eq!(consumer.peer_state(), PeerState::Dead);
}

//! Unit tests of the segment, the framing and the endpoints (the loom model is in ring.rs, the
//! stress tests under tests/).

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use crate::*;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

fn pattern(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i.wrapping_mul(131) ^ j.wrapping_mul(7)) as u8).collect()
}

fn one_way(capacity: usize) -> (Segment, Producer, Consumer) {
    let seg = Segment::create_memfd("test", Config::one_way(capacity)).unwrap();
    let p = Producer::attach(&seg, 0).unwrap();
    let c = Consumer::attach(&seg, 0).unwrap();
    (seg, p, c)
}

/// A second handle on the segment's file, to scribble on it as a corrupt peer would.
fn raw_file(seg: &Segment) -> File {
    File::from(seg.inheritable_fd().unwrap())
}

const DATA0: u64 = 64 + 192; // header, ring 0's control block

#[test]
fn records_of_every_size_survive_many_wrap_arounds() {
    let (_seg, mut p, mut c) = one_way(256);
    let max = p.max_record();
    assert_eq!(max, 124);
    let mut buf = Vec::new();
    let (mut sent, mut got) = (0usize, 0usize);
    // Uneven batches so the write position lands everywhere relative to the end.
    for round in 0..4000 {
        let batch = 1 + round % 5;
        for _ in 0..batch {
            let len = (sent * 37) % (max + 1);
            match p.send(&pattern(sent, len)) {
                Ok(()) => sent += 1,
                Err(SendError::Full) => break,
                Err(e) => panic!("{e}"),
            }
        }
        for _ in 0..(1 + round % 3) {
            if !c.try_recv(&mut buf).unwrap() {
                break;
            }
            assert_eq!(buf, pattern(got, (got * 37) % (max + 1)), "record {got}");
            got += 1;
        }
    }
    while c.try_recv(&mut buf).unwrap() {
        assert_eq!(buf, pattern(got, (got * 37) % (max + 1)));
        got += 1;
    }
    assert_eq!(got, sent);
    assert!(sent > 5000, "only {sent} records went through");
}

#[test]
fn full_ring_refuses_without_overwriting() {
    let (_seg, mut p, mut c) = one_way(256);
    let mut n = 0;
    while p.send(&pattern(n, 16)).is_ok() {
        n += 1;
    }
    // 16-byte records take 24-byte frames: 10 fit in 256 bytes.
    assert_eq!(n, 10);
    assert_eq!(p.send(&[1; 13]), Err(SendError::Full));
    assert_eq!(p.queued_bytes(), 240);
    let mut buf = Vec::new();
    assert!(c.try_recv(&mut buf).unwrap());
    assert_eq!(buf, pattern(0, 16));
    p.send(&pattern(n, 16)).unwrap();
    for i in 1..=n {
        assert!(c.try_recv(&mut buf).unwrap());
        assert_eq!(buf, pattern(i, 16), "record {i}");
    }
    assert!(!c.try_recv(&mut buf).unwrap());
}

#[test]
fn max_record_is_enforced_and_always_fits_an_empty_ring() {
    let (_seg, mut p, mut c) = one_way(256);
    assert_eq!(p.send(&[0; 125]), Err(SendError::TooLarge { len: 125, max: 124 }));
    assert_eq!(
        SendError::TooLarge { len: 125, max: 124 }.to_string(),
        "record of 125 bytes exceeds the ring's maximum of 124"
    );
    let mut buf = Vec::new();
    // Walk the write position through every 8-byte slot: a maximal record fits each time.
    for i in 0..64 {
        p.send(&pattern(i, i % 9)).unwrap();
        assert!(c.try_recv(&mut buf).unwrap());
        p.send(&pattern(i, 124)).unwrap();
        assert!(c.try_recv(&mut buf).unwrap());
        assert_eq!(buf, pattern(i, 124));
    }
    p.send(&[]).unwrap();
    assert!(c.try_recv(&mut buf).unwrap());
    assert!(buf.is_empty());

    let seg = Segment::create_memfd("small", Config::one_way(256).with_max_record(100)).unwrap();
    let mut p = Producer::attach(&seg, 0).unwrap();
    assert_eq!(p.send(&[0; 101]), Err(SendError::TooLarge { len: 101, max: 100 }));
    p.send(&[0; 100]).unwrap();
}

#[test]
fn bad_configs_are_refused() {
    for config in [
        Config::one_way(100),
        Config::one_way(32),
        Config { rings: 0, capacity: 256, max_record: None },
        Config { rings: 17, capacity: 256, max_record: None },
        Config::one_way(256).with_max_record(125),
        Config::one_way(256).with_max_record(0),
    ] {
        let err = Segment::create_memfd("bad", config).unwrap_err();
        assert!(matches!(err, Error::BadConfig { .. }), "{config:?}: {err}");
    }
    assert!(matches!(Segment::create_named("a.b", "x", Config::one_way(256)), Err(Error::BadName(_))));
}

#[test]
fn wrong_magic_is_a_typed_error() {
    let seg = Segment::create_memfd("magic", Config::one_way(256)).unwrap();
    let f = raw_file(&seg);
    f.write_at(b"NOTMAGIC", 0).unwrap();
    let err = Segment::open_fd(f.into()).unwrap_err();
    assert!(matches!(err, Error::BadMagic { expected: MAGIC, .. }), "{err}");
    assert!(err.to_string().starts_with("not a shm-queue segment"), "{err}");
}

#[test]
fn wrong_version_is_a_typed_error() {
    let seg = Segment::create_memfd("version", Config::one_way(256)).unwrap();
    let f = raw_file(&seg);
    f.write_at(&99u32.to_ne_bytes(), 8).unwrap();
    let err = Segment::open_fd(f.into()).unwrap_err();
    assert!(matches!(err, Error::BadVersion { found: 99, supported: LAYOUT_VERSION }), "{err}");
    assert!(err.to_string().contains("version 99 is not supported"), "{err}");
}

#[test]
fn truncated_or_inconsistent_headers_are_refused() {
    let seg = Segment::create_memfd("layout", Config::one_way(256)).unwrap();
    let f = raw_file(&seg);
    f.write_at(&1000u64.to_ne_bytes(), 16).unwrap(); // capacity not a power of two
    assert!(matches!(Segment::open_fd(f.into()), Err(Error::BadLayout(_))));

    let seg = Segment::create_memfd("layout", Config::one_way(256)).unwrap();
    let f = raw_file(&seg);
    f.write_at(&2u32.to_ne_bytes(), 12).unwrap(); // claims two rings, file holds one
    assert!(matches!(Segment::open_fd(f.into()), Err(Error::BadLayout(_))));

    let empty = tempfile_in_shm("short");
    empty.set_len(10).unwrap();
    assert!(matches!(Segment::open_fd(empty.into()), Err(Error::TooSmall { len: 10, need: 64 })));
}

fn tempfile_in_shm(tag: &str) -> File {
    let path = format!("{SHM_DIR}/shmq-unit.{}.{tag}", std::process::id());
    let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    f
}

#[test]
fn corrupt_lengths_are_errors_not_panics() {
    let (seg, mut p, mut c) = one_way(256);
    p.send(b"hello").unwrap();
    let f = raw_file(&seg);
    f.write_at(&5000u32.to_ne_bytes(), DATA0).unwrap();
    let mut buf = Vec::new();
    assert_eq!(c.try_recv(&mut buf), Err(RecvError::Corrupt("record longer than the ring's maximum")));
    // A head index beyond anything written.
    f.write_at(&(1u64 << 40).to_ne_bytes(), 64).unwrap();
    assert!(matches!(c.try_recv(&mut buf), Err(RecvError::Corrupt(_))));
}

#[test]
fn a_second_producer_is_refused_while_the_first_lives() {
    let (seg, p, _c) = one_way(256);
    let err = Producer::attach(&seg, 0).unwrap_err();
    assert!(matches!(err, Error::AlreadyAttached { ring: 0, role: "producer", .. }), "{err}");
    drop(p);
    // A closed side can be taken over.
    Producer::attach(&seg, 0).unwrap();
    assert!(matches!(Producer::attach(&seg, 3), Err(Error::NoSuchRing { ring: 3, rings: 1 })));
}

#[test]
fn consumer_sees_clean_close_after_draining() {
    let (_seg, mut p, mut c) = one_way(256);
    assert_eq!(c.peer_state(), PeerState::Alive);
    p.send(b"last words").unwrap();
    drop(p);
    assert_eq!(c.peer_state(), PeerState::Closed);
    let mut buf = Vec::new();
    c.recv_timeout(&mut buf, Duration::from_secs(1)).unwrap();
    assert_eq!(buf, b"last words");
    assert_eq!(c.recv_timeout(&mut buf, Duration::from_secs(5)), Err(RecvError::Disconnected));
    assert_eq!(c.try_recv(&mut buf), Err(RecvError::Disconnected));
}

#[test]
fn consumer_sees_a_dead_producer_process() {
    let (seg, _p, mut c) = one_way(256);
    // Pretend the producer was a process that has exited: a reaped child's pid.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    raw_file(&seg).write_at(&dead_pid.to_ne_bytes(), 64 + 8).unwrap();
    assert_eq!(c.peer_state(), PeerState::Dead);
    let start = Instant::now();
    let mut buf = Vec::new();
    assert_eq!(c.recv_timeout(&mut buf, Duration::from_secs(10)), Err(RecvError::Disconnected));
    assert!(start.elapsed() < Duration::from_secs(1), "took {:?}", start.elapsed());
}

#[test]
fn a_recycled_pid_is_not_mistaken_for_the_peer() {
    let (seg, p, c) = one_way(256);
    // Our own pid, but a start time that is not ours: the peer died and the pid was reused.
    raw_file(&seg).write_at(&1u64.to_ne_bytes(), 64 + 16).unwrap();
    assert_eq!(c.peer_state(), PeerState::Dead);
    assert_eq!(p.peer_state(), PeerState::Alive);
}

#[test]
fn consumer_without_producer_times_out() {
    let seg = Segment::create_memfd("lonely", Config::one_way(256)).unwrap();
    let mut c = Consumer::attach(&seg, 0).unwrap();
    assert_eq!(c.peer_state(), PeerState::NotAttached);
    let start = Instant::now();
    let mut buf = Vec::new();
    assert_eq!(c.recv_timeout(&mut buf, Duration::from_millis(50)), Err(RecvError::Timeout));
    assert!(start.elapsed() >= Duration::from_millis(50));
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn sleeping_consumer_is_woken_by_a_send() {
    let (_seg, mut p, mut c) = one_way(4096);
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let start = Instant::now();
        c.recv_timeout(&mut buf, Duration::from_secs(10)).map(|()| (buf, start.elapsed()))
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while !p.consumer_sleeping() {
        assert!(Instant::now() < deadline, "consumer never slept");
        std::thread::yield_now();
    }
    p.send(b"wake up").unwrap();
    let (buf, waited) = reader.join().unwrap().unwrap();
    assert_eq!(buf, b"wake up");
    assert!(waited < Duration::from_secs(5), "woken only by a timeout: {waited:?}");
    assert!(!p.consumer_sleeping());
}

#[test]
fn channel_carries_both_ways() {
    let seg = Segment::create_memfd("chan", Config::channel(1024)).unwrap();
    let mut a = Channel::attach(&seg, End::A).unwrap();
    let mut b = Channel::attach(&seg, End::B).unwrap();
    let mut buf = Vec::new();
    for i in 0..100 {
        a.send(&pattern(i, i)).unwrap();
        b.recv_timeout(&mut buf, Duration::from_secs(1)).unwrap();
        assert_eq!(buf, pattern(i, i));
        b.send(&pattern(i + 1000, 3)).unwrap();
        a.recv_timeout(&mut buf, Duration::from_secs(1)).unwrap();
        assert_eq!(buf, pattern(i + 1000, 3));
    }
    let one = Segment::create_memfd("one", Config::one_way(1024)).unwrap();
    assert!(matches!(Channel::attach(&one, End::A), Err(Error::NoSuchRing { .. })));
}

#[test]
fn named_segment_opens_by_name_and_is_unlinked_by_its_creator() {
    let seg = Segment::create_named("shmq-unit", "named", Config::channel(1024)).unwrap();
    let name = seg.name().unwrap().to_owned();
    assert_eq!(name, format!("shmq-unit.{}.named", std::process::id()));
    let path = std::path::Path::new(SHM_DIR).join(&name);
    let opened = Segment::open_named(&name).unwrap();
    assert_eq!(opened.capacity(), 1024);
    assert_eq!(opened.rings(), 2);
    assert_eq!(opened.name(), None);
    let mut a = Channel::attach(&seg, End::A).unwrap();
    let mut b = Channel::attach(&opened, End::B).unwrap();
    a.send(b"over /dev/shm").unwrap();
    let mut buf = Vec::new();
    b.recv_timeout(&mut buf, Duration::from_secs(1)).unwrap();
    assert_eq!(buf, b"over /dev/shm");
    drop(a);
    drop(seg);
    assert!(!path.exists(), "creator's drop must unlink {path:?}");
    // The opener's mapping outlives the name.
    b.send(b"still mapped").unwrap();
    assert!(matches!(Segment::open_named(&name), Err(Error::Io { .. })));
}

#[test]
fn stale_segments_of_dead_creators_are_cleaned() {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    let stale = std::path::PathBuf::from(format!("{SHM_DIR}/shmq-clean.{dead_pid}.x"));
    std::fs::write(&stale, b"left behind").unwrap();
    let live = Segment::create_named("shmq-clean", "live", Config::one_way(256)).unwrap();
    let removed = clean_stale("shmq-clean").unwrap();
    assert_eq!(removed, vec![stale.clone()]);
    assert!(!stale.exists());
    assert!(std::path::Path::new(SHM_DIR).join(live.name().unwrap()).exists());
}

#[test]
fn segment_fd_passes_over_a_unix_socket() {
    let (left, right) = std::os::unix::net::UnixStream::pair().unwrap();
    let seg = Segment::create_memfd("passed", Config::channel(1024)).unwrap();
    send_fd(&left, std::os::fd::AsFd::as_fd(&seg)).unwrap();
    let received = Segment::open_fd(recv_fd(&right).unwrap()).unwrap();
    let mut a = Channel::attach(&seg, End::A).unwrap();
    let mut b = Channel::attach(&received, End::B).unwrap();
    b.send(b"via SCM_RIGHTS").unwrap();
    let mut buf = Vec::new();
    a.recv_timeout(&mut buf, Duration::from_secs(1)).unwrap();
    assert_eq!(buf, b"via SCM_RIGHTS");
}

#[test]
fn send_with_encodes_in_place() {
    let (_seg, mut p, mut c) = one_way(256);
    p.send_with(6, |buf| buf.copy_from_slice(b"inside")).unwrap();
    let got = c.try_recv_with(|rec| rec.len()).unwrap();
    assert_eq!(got, Some(6));
}

#[test]
fn read_loop_reports_records_and_a_peer_that_leaves_and_comes_back() {
    let seg = Segment::create_memfd("test", Config::one_way(1 << 12)).unwrap();
    let mut c = Consumer::attach(&seg, 0).unwrap();
    let mut p = Some(Producer::attach(&seg, 0).unwrap());
    for rec in [b"a", b"b"] {
        p.as_mut().unwrap().send(rec).unwrap();
    }
    // The producer leaves once its records are queued; delivered first, then its absence.
    drop(p.take());
    let mut seen = Vec::new();
    let last = c.read_loop(|event| {
        seen.push(match event {
            LinkEvent::Record(r) => String::from_utf8_lossy(r).into_owned(),
            other => format!("{other:?}"),
        });
        match event {
            // A restarted peer attaches to the same ring and is heard again.
            LinkEvent::PeerGone { .. } => {
                let mut again = Producer::attach(&seg, 0).unwrap();
                again.send(b"c").unwrap();
                p = Some(again);
                std::ops::ControlFlow::Continue(())
            }
            LinkEvent::Record(b"c") => std::ops::ControlFlow::Break("stopped"),
            _ => std::ops::ControlFlow::Continue(()),
        }
    });
    assert_eq!(last, "stopped");
    assert_eq!(seen, ["PeerUp", "a", "b", "PeerGone { was_up: true }", "PeerUp", "c"]);
}

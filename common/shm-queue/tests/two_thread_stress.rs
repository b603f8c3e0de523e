//! A million records of random sizes through one ring between two threads: each arrives once,
//! whole, in order (sequence number and CRC-32 checked).

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use rand::{Rng, SeedableRng, rngs::SmallRng};
use shm_queue::{Config, Consumer, Producer, Segment, SendError};
use std::time::Duration;

const RECORDS: u64 = 1_000_000;

/// `[seq: u64][payload][crc32 of seq and payload: u32]`
fn encode(seq: u64, payload_len: usize, rng: &mut SmallRng, out: &mut [u8]) {
    out[..8].copy_from_slice(&seq.to_le_bytes());
    rng.fill(&mut out[8..8 + payload_len]);
    let crc = crc32fast::hash(&out[..8 + payload_len]);
    out[8 + payload_len..].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn a_million_random_records_arrive_whole_and_in_order() {
    let seg = Segment::create_memfd("stress", Config::one_way(1 << 16)).unwrap();
    let mut producer = Producer::attach(&seg, 0).unwrap();
    let mut consumer = Consumer::attach(&seg, 0).unwrap();
    let writer = std::thread::spawn(move || {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut full = 0u64;
        for seq in 0..RECORDS {
            // Mostly small, sometimes up to the ring's maximum.
            let payload =
                if rng.random_ratio(1, 100) { rng.random_range(0..=8_000) } else { rng.random_range(0..=300) };
            let len = 8 + payload + 4;
            loop {
                match producer.send_with(len, |buf| encode(seq, payload, &mut rng, buf)) {
                    Ok(()) => break,
                    Err(SendError::Full) => {
                        full += 1;
                        std::thread::yield_now();
                    }
                    Err(e) => panic!("record {seq}: {e}"),
                }
            }
        }
        full
    });
    let mut buf = Vec::new();
    for seq in 0..RECORDS {
        consumer.recv_timeout(&mut buf, Duration::from_secs(10)).unwrap_or_else(|e| panic!("record {seq}: {e}"));
        assert!(buf.len() >= 12, "record {seq} too short: {}", buf.len());
        let (body, crc) = buf.split_at(buf.len() - 4);
        assert_eq!(u64::from_le_bytes(body[..8].try_into().unwrap()), seq, "out of order");
        assert_eq!(crc32fast::hash(body).to_le_bytes(), crc, "record {seq} corrupted");
    }
    let full = writer.join().unwrap();
    // The writer must have outrun the reader at some point, or the Full path went untested.
    assert!(full > 0);
    assert_eq!(consumer.recv_timeout(&mut buf, Duration::from_secs(5)), Err(shm_queue::RecvError::Disconnected));
}

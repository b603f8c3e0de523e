//! Throughput of one ring between two threads (64- and 1200-byte records) and the wake-up
//! latency of a sleeping reader. Run: `cargo bench -p shm-queue --bench throughput`.

#![allow(clippy::unwrap_used)] // A bench: any failure should abort it loudly.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shm_queue::{Channel, Config, Consumer, End, Producer, Segment};
use std::hint::spin_loop;
use std::time::{Duration, Instant};

fn throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("shm_queue");
    group.throughput(Throughput::Elements(1));
    for size in [64usize, 1200] {
        group.bench_function(format!("two_threads_{size}B"), |b| {
            b.iter_custom(|iters| {
                let seg = Segment::create_memfd("bench", Config::one_way(1 << 20)).unwrap();
                let mut producer = Producer::attach(&seg, 0).unwrap();
                let mut consumer = Consumer::attach(&seg, 0).unwrap();
                let reader = std::thread::spawn(move || {
                    let mut sum = 0u64;
                    for _ in 0..iters {
                        // Blocking receive: spins, then sleeps when the writer falls behind.
                        sum += u64::from(consumer.recv_timeout_with(Duration::from_secs(10), |r| r[0]).unwrap());
                    }
                    sum
                });
                let record = vec![1u8; size];
                let start = Instant::now();
                for _ in 0..iters {
                    // Full: let the reader run (this box may have fewer free cores than threads).
                    while producer.send(&record).is_err() {
                        std::thread::yield_now();
                    }
                }
                assert_eq!(reader.join().unwrap(), iters);
                start.elapsed()
            })
        });
    }
    // The protocol's own cost, free of scheduling: send then receive on one thread.
    for size in [64usize, 1200] {
        group.bench_function(format!("one_thread_send_recv_{size}B"), |b| {
            let seg = Segment::create_memfd("bench-1t", Config::one_way(1 << 20)).unwrap();
            let mut producer = Producer::attach(&seg, 0).unwrap();
            let mut consumer = Consumer::attach(&seg, 0).unwrap();
            let record = vec![1u8; size];
            let mut out = Vec::with_capacity(size);
            b.iter(|| {
                producer.send(&record).unwrap();
                consumer.try_recv(&mut out).unwrap()
            })
        });
    }
    group.finish();
}

/// From just before a send to the reader holding the record, with the reader asleep in the
/// futex (it announced sleep, then we wait 100 µs more so it is really in the kernel).
fn wake_latency(c: &mut Criterion) {
    c.bench_function("shm_queue/wake_sleeping_reader", |b| {
        b.iter_custom(|iters| {
            let seg = Segment::create_memfd("bench-wake", Config::channel(1 << 12)).unwrap();
            let mut ping = Channel::attach(&seg, End::A).unwrap();
            let mut echo = Channel::attach(&seg, End::B).unwrap();
            let base = Instant::now();
            let echoer = std::thread::spawn(move || {
                let mut buf = Vec::new();
                for _ in 0..iters {
                    echo.recv_timeout(&mut buf, Duration::from_secs(10)).unwrap();
                    let woke = base.elapsed().as_nanos() as u64;
                    let sent = u64::from_le_bytes(buf[..8].try_into().unwrap());
                    echo.send(&(woke - sent).to_le_bytes()).unwrap();
                }
            });
            let mut total = Duration::ZERO;
            let mut buf = Vec::new();
            for _ in 0..iters {
                while !ping.tx.consumer_sleeping() {
                    spin_loop();
                }
                std::thread::sleep(Duration::from_micros(100));
                let sent = base.elapsed().as_nanos() as u64;
                ping.send(&sent.to_le_bytes()).unwrap();
                ping.recv_timeout(&mut buf, Duration::from_secs(10)).unwrap();
                total += Duration::from_nanos(u64::from_le_bytes(buf[..8].try_into().unwrap()));
            }
            echoer.join().unwrap();
            total
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = throughput, wake_latency
}
criterion_main!(benches);

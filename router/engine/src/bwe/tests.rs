//! The estimator against feedback built by hand and by the TWCC receiver.

use super::*;
use crate::rtcp::{self, RtcpPacket};
use crate::twcc::TwccReceiver;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// splitmix64: tiny, seeded, plenty for loss decisions and fuzz bytes.
struct Prng(u64);

impl Prng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64) / ((1u64 << 53) as f64) < p
    }
}

/// A bottleneck: random loss, then a FIFO drained at `rate_bps` that drops a packet which
/// would wait longer than `queue_limit` (drop-tail), then `delay` of propagation.
struct Link {
    rate_bps: u64,
    queue_limit: Duration,
    delay: Duration,
    loss: f64,
    free_at: Instant,
    in_flight: VecDeque<(Instant, u16)>,
    tail_drops: u64,
    random_drops: u64,
}

impl Link {
    fn send(&mut self, now: Instant, seq: u16, size: usize, rng: &mut Prng) {
        if self.loss > 0.0 && rng.chance(self.loss) {
            self.random_drops += 1;
            return;
        }
        let start = self.free_at.max(now);
        if start - now > self.queue_limit {
            self.tail_drops += 1;
            return;
        }
        self.free_at = start + Duration::from_nanos(size as u64 * 8 * 1_000_000_000 / self.rate_bps);
        self.in_flight.push_back((self.free_at + self.delay, seq));
    }
}

const MEDIA_PACKET: usize = 1200;
/// Smallest padding packet the sender bothers with (an RTP header and a bit).
const MIN_PADDING: usize = 50;

/// A sender (media at min(estimate, application rate) in 1200-byte packets, plus the probe
/// padding polled every 10 ms), the link, and a receiver answering with real transport-cc
/// feedback every 50 ms over a 20 ms return path. Virtual time in 1 ms steps.
struct Sim {
    t0: Instant,
    now: Instant,
    bwe: BandwidthEstimator,
    link: Link,
    rx: TwccReceiver,
    rng: Prng,
    back: VecDeque<(Instant, Vec<u8>)>,
    seq: u16,
    credit: f64,
    app_bps: u64,
    /// Largest padding packet: 1200 for RTX-style probes, ~270 for padding-only RTP.
    padding_packet: usize,
    /// Estimate every 10 ms, by time since start.
    trace: Vec<(Duration, u64)>,
}

impl Sim {
    fn new(seed: u64, config: BweConfig, link_bps: u64, loss: f64, app_bps: u64) -> Self {
        let t0 = Instant::now();
        Sim {
            t0,
            now: t0,
            bwe: BandwidthEstimator::new(t0, config),
            link: Link {
                rate_bps: link_bps,
                queue_limit: ms(150),
                delay: ms(20),
                loss,
                free_at: t0,
                in_flight: VecDeque::new(),
                tail_drops: 0,
                random_drops: 0,
            },
            rx: TwccReceiver::new(),
            rng: Prng(seed),
            back: VecDeque::new(),
            // Wraps within the first second, and again every minute or so.
            seq: 65_000,
            credit: 0.0,
            app_bps,
            padding_packet: MEDIA_PACKET,
            trace: Vec::new(),
        }
    }

    fn send(&mut self, size: usize, probe: bool) {
        self.bwe.on_packet_sent(self.now, self.seq, size, probe);
        self.link.send(self.now, self.seq, size, &mut self.rng);
        self.seq = self.seq.wrapping_add(1);
    }

    fn step(&mut self) {
        self.now += ms(1);
        let now = self.now;
        while let Some(&(at, seq)) = self.link.in_flight.front()
            && at <= now
        {
            self.link.in_flight.pop_front();
            self.rx.record(seq, at);
        }
        let mut buf = [0u8; 1200];
        while let Some(n) = self.rx.poll_feedback(now, 1, 2, &mut buf) {
            self.back.push_back((now + self.link.delay, buf[..n].to_vec()));
        }
        while let Some((at, _)) = self.back.front()
            && *at <= now
        {
            let (_, bytes) = self.back.pop_front().unwrap();
            for p in rtcp::packets(&bytes) {
                match p {
                    Ok(RtcpPacket::TransportCc(fb)) => self.bwe.handle_twcc_feedback(now, &fb),
                    other => panic!("not transport-cc feedback: {other:?}"),
                }
            }
        }
        if (now - self.t0).as_millis().is_multiple_of(10) {
            self.bwe.set_desired_bps(now, self.app_bps);
            let mut pad = self.bwe.poll_probe_bytes(now);
            while pad >= MIN_PADDING {
                let size = pad.min(self.padding_packet);
                self.send(size, true);
                pad -= size;
            }
            self.trace.push((now - self.t0, self.bwe.estimate_bps()));
        }
        let rate = self.bwe.estimate_bps().min(self.app_bps) as f64;
        self.credit += rate / 8.0 / 1000.0;
        while self.credit >= MEDIA_PACKET as f64 {
            self.send(MEDIA_PACKET, false);
            self.credit -= MEDIA_PACKET as f64;
        }
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step();
        }
    }

    /// Trace samples from `from` on (time since start).
    fn since(&self, from: Duration) -> impl Iterator<Item = (Duration, u64)> + '_ {
        self.trace.iter().copied().filter(move |&(t, _)| t >= from)
    }

    /// First time from `from` on after which every sample satisfies `ok`.
    fn settled_at(&self, from: Duration, ok: impl Fn(u64) -> bool) -> Option<Duration> {
        let samples: Vec<_> = self.since(from).collect();
        let last_bad = samples.iter().rposition(|&(_, e)| !ok(e));
        match last_bad {
            None => samples.first().map(|s| s.0),
            Some(i) => samples.get(i + 1).map(|s| s.0),
        }
    }

    fn summary(&self, name: &str) {
        let s = self.bwe.stats();
        eprintln!(
            "{name}: t={:.1}s estimate={} delay={} loss={} acked={:?} loss_frac={:.3} rtt={:?} \
             feedbacks={} unknown={} probes={}/{} overuses={} tail_drops={} random_drops={}",
            secs(self.now - self.t0),
            s.estimate_bps,
            s.delay_based_bps,
            s.loss_based_bps,
            s.acked_bps,
            s.loss_fraction,
            s.rtt,
            s.feedbacks,
            s.unknown_seqs,
            s.probes_succeeded,
            s.probes_started,
            s.overuse_events,
            self.link.tail_drops,
            self.link.random_drops,
        );
    }
}

/// 20 s behind a 400 kbit/s bottleneck, wanting 3 Mbit/s, starting at 1 Mbit/s.
fn behind_400k_bottleneck() -> Sim {
    let mut sim = Sim::new(1, BweConfig::default(), 400_000, 0.0, 3_000_000);
    sim.run_for(Duration::from_secs(20));
    sim
}

#[test]
fn settles_under_a_400k_bottleneck() {
    let sim = behind_400k_bottleneck();
    sim.summary("400k");
    let settled = sim.settled_at(Duration::ZERO, |e| (200_000..=400_000).contains(&e)).unwrap();
    eprintln!("400k: within [200k, 400k] from {:.2}s on", secs(settled));
    assert!(settled <= Duration::from_secs(5), "settled only at {settled:?}");
    // Not by giving up: the estimate uses most of the link once settled.
    let late: Vec<u64> = sim.since(Duration::from_secs(10)).map(|(_, e)| e).collect();
    let mean = late.iter().sum::<u64>() / late.len() as u64;
    eprintln!("400k: mean estimate over 10-20 s {mean}");
    assert!(mean >= 300_000, "mean {mean}");
    let s = sim.bwe.stats();
    assert!(s.overuse_events >= 1, "the delay detector saw the queue");
    assert!(s.probes_started >= 3, "probing went on (what makes the climb fast): {s:?}");
    assert_eq!(s.unknown_seqs, 0, "every seq matched across the u16 wrap");
}

#[test]
fn climbs_quickly_when_the_bottleneck_lifts() {
    // Failed probes back off up to 4 s, so where the lift falls in that cycle matters:
    // try every half second of it, with RTX-sized and padding-only-sized probe packets.
    let mut worst = Duration::ZERO;
    for padding_packet in [MEDIA_PACKET, 270] {
        for lift_ms in (20_000..=24_000).step_by(500) {
            let mut sim = Sim::new(1, BweConfig::default(), 400_000, 0.0, 3_000_000);
            sim.padding_packet = padding_packet;
            sim.run_for(ms(lift_ms));
            let lifted = sim.now - sim.t0;
            let before = sim.bwe.estimate_bps();
            sim.link.rate_bps = 5_000_000;
            sim.run_for(Duration::from_secs(15));
            let reached = sim.since(lifted).find(|&(_, e)| e >= 2_500_000).map(|(t, _)| t - lifted);
            let Some(reached) = reached else { panic!("padding {padding_packet}, lift at {lift_ms} ms: never") };
            eprintln!("lift at {lift_ms} ms, padding {padding_packet}: {before} -> 2.5M in {reached:?}");
            assert!(reached <= Duration::from_secs(10), "took {reached:?}");
            worst = worst.max(reached);
            // ... and stays near what is wanted without claiming more than the link.
            let after: Vec<u64> = sim.since(lifted + reached).map(|(_, e)| e).collect();
            assert!(after.iter().all(|&e| (2_000_000..=5_000_000).contains(&e)), "{:?}", after.iter().min());
            assert_eq!(sim.bwe.stats().unknown_seqs, 0);
        }
    }
    eprintln!("lifted: worst climb {worst:?}");
}

#[test]
fn settles_under_other_bottlenecks_and_rtts() {
    for (link_bps, one_way_ms) in
        [(300_000, 20), (600_000, 20), (1_200_000, 20), (2_000_000, 50), (400_000, 5), (400_000, 80)]
    {
        let mut sim = Sim::new(3, BweConfig::default(), link_bps, 0.0, 5_000_000);
        sim.link.delay = ms(one_way_ms);
        sim.run_for(Duration::from_secs(30));
        let late: Vec<u64> = sim.since(Duration::from_secs(5)).map(|(_, e)| e).collect();
        let (min, max) = (*late.iter().min().unwrap(), *late.iter().max().unwrap());
        let mean = late.iter().sum::<u64>() / late.len() as u64;
        eprintln!("{link_bps} bit/s, {one_way_ms} ms: after 5 s min {min} mean {mean} max {max}");
        assert!(max <= link_bps, "{link_bps}: max {max}");
        assert!(min >= link_bps / 2, "{link_bps}: min {min}");
        assert!(mean >= link_bps * 7 / 10, "{link_bps}: mean {mean}");
    }
}

#[test]
fn random_loss_does_not_make_it_flap() {
    for seed in [7, 8, 9, 10] {
        let mut sim = Sim::new(seed, BweConfig::default(), 5_000_000, 0.03, 2_000_000);
        sim.run_for(Duration::from_secs(30));
        sim.summary("3% loss");
        let min = sim.since(Duration::from_secs(5)).map(|(_, e)| e).min().unwrap();
        let reached = sim.trace.iter().find(|&&(_, e)| e >= 2_000_000).map(|&(t, _)| t);
        eprintln!("3% loss, seed {seed}: min after 5 s {min}, reached 2 Mbit/s at {reached:?}");
        assert!(min >= 1_500_000, "seed {seed}: dropped to {min}");
        // No flapping: once up, the estimate never steps down (a loss reaction would).
        let late: Vec<u64> = sim.since(Duration::from_secs(5)).map(|(_, e)| e).collect();
        let drops = late.windows(2).filter(|w| w[1] < w[0] * 9 / 10).count();
        assert_eq!(drops, 0, "seed {seed}: stepped down {drops} times");
        let s = sim.bwe.stats();
        let seen = s.packets_lost as f64 / s.packets_reported as f64;
        assert!((0.025..=0.035).contains(&seen), "the loss was seen: {seen}");
        assert_eq!(s.overuse_events, 0, "random loss is not queueing");
    }
}

/// A transport-cc feedback body (after the RTCP header): `arrivals[i]` is the receive delta
/// of `base + i` in 250 µs ticks, `None` if lost.
fn feedback_body(base: u16, reference: u32, arrivals: &[Option<u8>]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&1u32.to_be_bytes());
    b.extend_from_slice(&2u32.to_be_bytes());
    b.extend_from_slice(&base.to_be_bytes());
    b.extend_from_slice(&(arrivals.len() as u16).to_be_bytes());
    b.extend_from_slice(&((reference & 0x00ff_ffff) << 8).to_be_bytes());
    for chunk in arrivals.chunks(7) {
        // Two-bit status vector: 1 = received with a small delta.
        let mut c = 0xc000u16;
        for (i, a) in chunk.iter().enumerate() {
            if a.is_some() {
                c |= 1 << (12 - 2 * i);
            }
        }
        b.extend_from_slice(&c.to_be_bytes());
    }
    b.extend(arrivals.iter().flatten());
    b
}

#[test]
fn feedback_body_helper_is_valid_transport_cc() {
    let body = feedback_body(65_534, 7, &[Some(4), None, Some(8)]);
    let fb = TwccFeedback::parse(&body).unwrap();
    assert_eq!(fb.reference_time, 7);
    assert_eq!(fb.packets().collect::<Vec<_>>(), vec![(65_534, Some(1000)), (65_535, None), (0, Some(2000))]);
}

#[test]
fn unknown_duplicate_and_forgotten_seqs_are_counted() {
    let t0 = Instant::now();
    let mut bwe = BandwidthEstimator::new(t0, BweConfig::default());
    // Nothing sent yet: everything is unknown.
    let body = feedback_body(100, 0, &[Some(4); 10]);
    bwe.handle_twcc_feedback(t0, &TwccFeedback::parse(&body).unwrap());
    assert_eq!((bwe.stats().feedbacks, bwe.stats().unknown_seqs), (1, 10));

    // Sent 100..110; feedback for 90..120: 10 unknown below, 10 unknown above.
    for (i, seq) in (100u16..110).enumerate() {
        bwe.on_packet_sent(t0 + ms(5 * i as u64), seq, 1200, false);
    }
    let body = feedback_body(90, 1, &[Some(20); 30]);
    let now = t0 + ms(100);
    bwe.handle_twcc_feedback(now, &TwccFeedback::parse(&body).unwrap());
    let s = bwe.stats();
    assert_eq!((s.unknown_seqs, s.duplicate_seqs), (30, 0));
    // The same feedback again: the known ones are duplicates, not counted twice.
    bwe.handle_twcc_feedback(now, &TwccFeedback::parse(&body).unwrap());
    let s = bwe.stats();
    assert_eq!((s.unknown_seqs, s.duplicate_seqs), (50, 10));

    // Packets older than the history are forgotten: feedback for them is unknown.
    let mut seq = 110u16;
    for i in 0..300u64 {
        bwe.on_packet_sent(now + ms(10 * i), seq, 1200, false);
        seq = seq.wrapping_add(1);
    }
    let late = now + ms(3000);
    let body = feedback_body(110, 40, &[Some(1); 3]);
    bwe.handle_twcc_feedback(late, &TwccFeedback::parse(&body).unwrap());
    assert_eq!(bwe.stats().unknown_seqs, 53);
    // A seq far ahead of anything sent.
    let body = feedback_body(seq.wrapping_add(1000), 41, &[Some(1)]);
    bwe.handle_twcc_feedback(late, &TwccFeedback::parse(&body).unwrap());
    assert_eq!(bwe.stats().unknown_seqs, 54);
    assert_eq!(bwe.stats().feedbacks, 5);
}

#[test]
fn random_feedback_never_panics_and_keeps_the_estimate_in_bounds() {
    let config = BweConfig { initial_bps: 500_000, min_bps: 150_000, max_bps: 3_000_000 };
    let t0 = Instant::now();
    let mut bwe = BandwidthEstimator::new(t0, config);
    let mut rng = Prng(11);
    let mut buf = [0u8; 96];
    let mut parsed = 0;
    let mut seq = 0u16;
    for i in 0..50_000u64 {
        let now = t0 + ms(i);
        // Real sends, so some random seqs hit the history.
        bwe.on_packet_sent(now, seq, 1200, false);
        seq = seq.wrapping_add(1);
        bwe.set_desired_bps(now, 2_000_000);
        let pad = bwe.poll_probe_bytes(now);
        if pad > 0 {
            bwe.on_packet_sent(now, seq, pad, true);
            seq = seq.wrapping_add(1);
        }
        let len = (rng.next_u64() % buf.len() as u64) as usize;
        for b in buf[..len].iter_mut() {
            *b = rng.next_u64() as u8;
        }
        if len > 11 {
            // Plausible status counts, and base seqs near what was sent half the time.
            buf[10] = 0;
            buf[11] &= 0x3f;
            if i % 2 == 0 {
                let base = seq.wrapping_sub(u16::from(buf[9]) % 64);
                buf[8..10].copy_from_slice(&base.to_be_bytes());
            }
        }
        if let Ok(fb) = TwccFeedback::parse(&buf[..len]) {
            bwe.handle_twcc_feedback(now, &fb);
            parsed += 1;
        }
        if i % 997 == 0 {
            bwe.handle_remb(now, rng.next_u64() >> (rng.next_u64() % 64));
        }
        let e = bwe.estimate_bps();
        assert!((config.min_bps..=config.max_bps).contains(&e), "{e} at {i}");
    }
    let s = bwe.stats();
    assert!(parsed > 5_000, "only {parsed} parsed: the input is not reaching the estimator");
    assert_eq!(s.feedbacks, parsed);
    assert!(s.unknown_seqs > 0 && s.duplicate_seqs > 0, "{s:?}");
}

#[test]
fn reference_time_and_seq_wrap_together() {
    let t0 = Instant::now();
    let mut bwe = BandwidthEstimator::new(t0, BweConfig::default());
    // 40 packets 4 ms apart across the seq wrap; they arrive 4 ms apart too, the first
    // feedback at the last reference time before the 24-bit wrap, the second after it.
    let first = 65_516u16;
    for i in 0..40u16 {
        bwe.on_packet_sent(t0 + ms(4 * u64::from(i)), first.wrapping_add(i), 1000, false);
    }
    // 20 packets × 4 ms = 80 ms: the second batch starts at reference + 1 (64 ms) + 16 ms.
    let mut a = vec![Some(16u8); 20];
    a[0] = Some(0);
    bwe.handle_twcc_feedback(t0 + ms(150), &TwccFeedback::parse(&feedback_body(first, 0xff_ffff, &a)).unwrap());
    let mut b = vec![Some(16u8); 20];
    b[0] = Some(64); // 16 ms after the reference of 64 ms later
    let second = first.wrapping_add(20);
    bwe.handle_twcc_feedback(t0 + ms(230), &TwccFeedback::parse(&feedback_body(second, 0, &b)).unwrap());
    assert_eq!(bwe.last_reference, Some(0x100_0000), "unwrapped forward, not back by 2^24");
    let s = bwe.stats();
    assert_eq!(s.unknown_seqs, 0);
    // 39 packets of 1000 bytes over 156 ms: an arrival span broken by the wrap would not
    // give this.
    let acked = s.acked_bps.unwrap();
    assert!((1_900_000..=2_100_000).contains(&acked), "acked {acked}");
    assert_eq!(s.overuse_events, 0);
    // And back again: an older reference (reordered feedback) unwraps backwards.
    bwe.handle_twcc_feedback(t0 + ms(240), &TwccFeedback::parse(&feedback_body(first, 0xff_fffe, &[])).unwrap());
    assert_eq!(bwe.last_reference, Some(0xff_fffe));
}

#[test]
fn remb_drives_the_estimate_without_transport_cc() {
    let t0 = Instant::now();
    let mut bwe = BandwidthEstimator::new(t0, BweConfig::default());
    bwe.set_desired_bps(t0, 5_000_000);
    let mut buf = [0u8; 64];
    for (i, (remb, want)) in [
        (700_000, 700_000),
        (2_000_000, 2_000_000),
        (450_000, 450_000),
        (50_000, 100_000),        // clamped to min_bps
        (40_000_000, 10_000_000), // clamped to max_bps
        (1_234_000, 1_234_000),
    ]
    .into_iter()
    .enumerate()
    {
        let now = t0 + ms(500 * i as u64);
        // Through the wire format: REMB keeps 18 bits of mantissa.
        let n = rtcp::write_remb(&mut buf, 1, remb, &[2]).unwrap();
        let Some(Ok(RtcpPacket::Remb { bitrate_bps, .. })) = rtcp::packets(&buf[..n]).next() else { panic!() };
        bwe.handle_remb(now, bitrate_bps);
        let got = bwe.estimate_bps();
        assert!(got.abs_diff(want) <= want / 1000, "REMB {remb}: estimate {got}, want {want}");
        assert!(bwe.stats().remb_fallback);
        // No probing without feedback to measure it by.
        assert_eq!(bwe.poll_probe_bytes(now), 0);
    }
    assert_eq!(bwe.stats().probes_started, 0);

    // Once transport-cc feedback flows, REMB is ignored ...
    let now = t0 + ms(3000);
    bwe.on_packet_sent(now, 0, 1200, false);
    bwe.handle_twcc_feedback(now + ms(50), &TwccFeedback::parse(&feedback_body(0, 0, &[Some(1)])).unwrap());
    assert!(!bwe.stats().remb_fallback);
    let before = bwe.estimate_bps();
    bwe.handle_remb(now + ms(100), 300_000);
    assert_eq!(bwe.estimate_bps(), before);
    // ... until it has been silent for 2 s.
    bwe.handle_remb(now + ms(2100), 300_000);
    assert_eq!(bwe.estimate_bps(), 300_000);
    assert_eq!(bwe.stats().rembs, 8);
}

#[test]
fn probes_only_when_more_is_wanted_and_pad_at_the_probe_rate() {
    let t0 = Instant::now();
    let mut bwe = BandwidthEstimator::new(t0, BweConfig::default());
    let mut seq = 0u16;
    let mut send = |bwe: &mut BandwidthEstimator, now, size, probe| {
        bwe.on_packet_sent(now, seq, size, probe);
        seq = seq.wrapping_add(1);
    };
    // Wanting no more than the estimate: never any padding.
    bwe.set_desired_bps(t0, 900_000);
    for i in 0..300u64 {
        assert_eq!(bwe.poll_probe_bytes(t0 + ms(10 * i)), 0);
    }
    // Wanting 1.5 Mbit/s: a cluster at min(2 × 1M, 1.2 × 1.5M) = 1.8 Mbit/s, media included.
    let start = t0 + ms(3000);
    bwe.set_desired_bps(start, 1_500_000);
    let (mut padding, mut media) = (0usize, 0usize);
    for i in 0..40u64 {
        let now = start + ms(10 * i);
        send(&mut bwe, now, 1200, false); // 960 kbit/s of media
        media += 1200;
        let pad = bwe.poll_probe_bytes(now);
        padding += pad;
        if pad > 0 {
            send(&mut bwe, now, pad, true);
        }
    }
    let s = bwe.stats();
    assert_eq!(s.probes_started, 1);
    let cluster_bytes = 1_800_000.0 * 0.160 / 8.0; // 150 ms + one tick ahead
    let total_in_cluster = padding + 16 * 1200;
    assert!(
        (total_in_cluster as f64 - cluster_bytes).abs() < 2400.0,
        "padding {padding} + cluster media vs {cluster_bytes}"
    );
    assert!(padding > 0 && padding < media);
    assert_eq!(s.probe_bytes_sent, padding as u64);
    // The cluster ended; without feedback it times out (a failure), so the next one waits
    // twice the interval from the first one's start, and the one after that twice again.
    for i in 40..200u64 {
        assert_eq!(bwe.poll_probe_bytes(start + ms(10 * i)), 0, "at {i}");
    }
    assert!(bwe.poll_probe_bytes(start + ms(2000)) > 0);
    for i in 201..600u64 {
        bwe.poll_probe_bytes(start + ms(10 * i));
    }
    assert_eq!(bwe.stats().probes_started, 2);
    assert!(bwe.poll_probe_bytes(start + ms(6000)) > 0);
    assert_eq!(bwe.stats().probes_started, 3);
}

#[test]
fn probe_result_needs_ninety_percent_of_the_sent_rate() {
    // 20 packets of 1000 bytes sent over 100 ms (1.52 Mbit/s without the last one);
    // arrivals spread over `recv_span_ms`, `received` of them.
    let cluster = |received: u32, recv_span_ms: i64| {
        let mut c = Cluster::new(1, Instant::now(), PROBE_DURATION, 1.5e6);
        for i in 0..20 {
            c.on_sent(i * 100_000 / 19, i, 1000);
        }
        for i in 0..i64::from(received) {
            c.on_received(50_000 + i * recv_span_ms * 1000 / (i64::from(received) - 1).max(1), 1000);
        }
        c.result_bps()
    };
    let sent = 19.0 * 8000.0 / 0.1;
    for (name, received, span_ms, want) in [
        ("carried at the sent rate", 20, 100, Some(0.95 * sent)),
        ("arrived 5 % slower", 20, 105, Some(0.95 * sent / 1.05)),
        ("arrived 15 % slower: queueing", 20, 115, None),
        ("half the rate: a bottleneck", 20, 200, None),
        ("a quarter lost, the rest on time", 15, 75, None),
        ("too few received", 4, 20, None),
        ("arrived compressed: not above the sent rate", 20, 50, Some(0.95 * sent)),
    ] {
        let got = cluster(received, span_ms);
        match (got, want) {
            (Some(g), Some(w)) => assert!((g - w).abs() < 1.0, "{name}: {g} vs {w}"),
            (g, w) => assert_eq!(g, w, "{name}"),
        }
    }
}

#[test]
fn history_is_bounded() {
    let t0 = Instant::now();
    let mut bwe = BandwidthEstimator::new(t0, BweConfig::default());
    // 40k packets in 1 s (a flood): capped by count.
    for i in 0..40_000u32 {
        bwe.on_packet_sent(t0 + Duration::from_micros(u64::from(i) * 25), i as u16, 200, false);
    }
    assert_eq!(bwe.history.packets.len(), HISTORY_MAX_PACKETS);
    // 100 packets/s for 10 s: capped by age.
    for i in 0..1000u32 {
        bwe.on_packet_sent(t0 + Duration::from_secs(2) + ms(u64::from(i) * 10), (40_000 + i) as u16, 1200, false);
    }
    assert!(bwe.history.packets.len() <= 201, "{}", bwe.history.packets.len());
    // A jump far ahead restarts the history instead of filling a huge gap.
    bwe.on_packet_sent(t0 + Duration::from_secs(13), (40_999u32 + 20_000) as u16, 1200, false);
    assert_eq!(bwe.history.packets.len(), 1);
}

#[test]
fn trendline_flags_a_growing_queue_not_a_steady_or_jittery_one() {
    type Case = (&'static str, fn(u32) -> f64, bool);
    let cases: [Case; 3] = [
        ("steady", |_| 10.0, false),
        ("jitter ±2 ms", |i| if i % 2 == 0 { 12.0 } else { 8.0 }, false),
        ("queue grows 10 %", |_| 11.0, true),
    ];
    for (name, arrival_delta, overuse) in cases {
        let mut t = Trendline::new();
        let mut at = 0.0;
        let mut detected = false;
        for i in 0..200 {
            let d = arrival_delta(i);
            at += d;
            detected |= t.update(10.0, d, at);
        }
        assert_eq!(detected, overuse, "{name}: threshold {}", t.threshold_ms);
    }
}

#[test]
fn misconfigured_bounds_do_not_panic() {
    let t0 = Instant::now();
    let mut bwe = BandwidthEstimator::new(t0, BweConfig { initial_bps: 0, min_bps: 500_000, max_bps: 100 });
    assert_eq!(bwe.estimate_bps(), 500_000);
    bwe.handle_remb(t0, 0);
    assert_eq!(bwe.estimate_bps(), 500_000);
}

//! A seeded, deterministic simulated network: the router's engine and str0m clients exchange
//! datagrams through links with latency, jitter and loss, on virtual time. Thirty simulated
//! seconds run in well under a second, and the same seed gives the same run.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use router_engine::{Engine, EngineConfig, VecTransmit};
use schema::api::{Event, TransportInfo};

use crate::client::Client;

/// One direction of a client's link.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    pub latency: Duration,
    pub jitter: Duration,
    /// Probability in 0..1 that a datagram is lost.
    pub loss: f64,
    /// When set, everything is dropped (a client that went away).
    pub down: bool,
    /// A bottleneck: datagrams are serialized at this many bits per second, queue behind each
    /// other, and are dropped (tail drop) when they would wait longer than `max_queue`.
    pub rate_bps: Option<u64>,
    pub max_queue: Duration,
}

impl Default for Link {
    fn default() -> Self {
        Link {
            latency: Duration::from_millis(20),
            jitter: Duration::ZERO,
            loss: 0.0,
            down: false,
            rate_bps: None,
            max_queue: Duration::from_millis(200),
        }
    }
}

/// The state of a link's bottleneck: when it is free again, and what it dropped.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bottleneck {
    pub busy_until: Option<Instant>,
    pub dropped: u64,
}

struct InFlight {
    at: Instant,
    order: u64,
    src: SocketAddr,
    dst: SocketAddr,
    data: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.order) == (o.at, o.order)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for InFlight {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(o.at, o.order))
    }
}

/// A client on the simulated network, with its uplink (to the router) and downlink.
#[allow(missing_debug_implementations)] // str0m's Rtc has no Debug
pub struct SimClient {
    pub client: Client,
    pub up: Link,
    pub down: Link,
    /// Datagrams this client sent and received (before loss).
    pub sent: u64,
    pub up_queue: Bottleneck,
    pub down_queue: Bottleneck,
}

impl SimClient {
    pub fn new(client: Client, up: Link, down: Link) -> SimClient {
        SimClient { client, up, down, sent: 0, up_queue: Bottleneck::default(), down_queue: Bottleneck::default() }
    }
}

/// The simulated network with the engine at its centre.
pub struct Sim {
    pub now: Instant,
    pub start: Instant,
    pub engine: Engine,
    pub router_addr: SocketAddr,
    pub clients: Vec<SimClient>,
    pub events: Vec<(Instant, Event)>,
    rng: StdRng,
    queue: BinaryHeap<Reverse<InFlight>>,
    order: u64,
    out: VecTransmit,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim").field("elapsed", &(self.now - self.start)).finish()
    }
}

impl Sim {
    pub fn new(seed: u64) -> Sim {
        Sim::with_config(seed, EngineConfig::default())
    }

    pub fn with_config(seed: u64, mut cfg: EngineConfig) -> Sim {
        let now = Instant::now();
        let router_addr: SocketAddr = "10.0.0.1:40000".parse().expect("valid address");
        cfg.candidates = vec![schema::api::IceCandidate::udp(router_addr)];
        let engine = Engine::new(cfg, now).expect("engine starts");
        Sim {
            now,
            start: now,
            engine,
            router_addr,
            clients: Vec::new(),
            events: Vec::new(),
            rng: StdRng::seed_from_u64(seed),
            queue: BinaryHeap::new(),
            order: 0,
            out: VecTransmit::default(),
        }
    }

    /// Adds a client with its own transport, connects ICE and DTLS, and waits until the router
    /// reports the transport connected. Returns the client's index and transport.
    pub fn add_client(&mut self, up: Link, down: Link) -> (usize, TransportInfo) {
        let index = self.clients.len();
        let addr: SocketAddr = format!("10.0.1.{}:5000", index + 1).parse().expect("valid address");
        let mut client = Client::new(addr, self.now);
        let info = self.engine.create_transport(self.now).expect("transport");
        let params = client.connect_to(&info);
        self.engine.connect_transport(info.id, &params).expect("connect");
        self.clients.push(SimClient::new(client, up, down));
        let deadline = self.now + Duration::from_secs(10);
        while self.now < deadline {
            self.step();
            let connected = self
                .events
                .iter()
                .any(|(_, e)| matches!(e, Event::TransportConnected { transport, .. } if *transport == info.id));
            if connected && self.clients[index].client.connected {
                return (index, info);
            }
        }
        panic!("client {index} did not connect within 10 simulated seconds");
    }

    pub fn client(&mut self, i: usize) -> &mut Client {
        &mut self.clients[i].client
    }

    /// Runs until `until` (virtual time).
    pub fn run_until(&mut self, until: Instant) {
        while self.now < until {
            self.step_until(until);
        }
    }

    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Processes the earliest pending thing (a delivery or a timer).
    pub fn step(&mut self) {
        self.step_until(self.now + Duration::from_secs(3600));
    }

    fn step_until(&mut self, limit: Instant) {
        let mut next = self.engine.poll_timeout().min(limit);
        for c in &self.clients {
            next = next.min(c.client.timeout());
        }
        if let Some(Reverse(f)) = self.queue.peek() {
            next = next.min(f.at);
        }
        self.now = next.max(self.now);
        let now = self.now;
        // Deliveries due now.
        while self.queue.peek().is_some_and(|Reverse(f)| f.at <= now) {
            let Some(Reverse(f)) = self.queue.pop() else { break };
            if f.dst == self.router_addr {
                let mut data = f.data;
                self.engine.handle_datagram(now, f.src, &mut data, &mut self.out);
            } else if let Some(c) = self.clients.iter_mut().find(|c| c.client.local == f.dst) {
                c.client.handle(now, f.src, &f.data);
            }
        }
        self.engine.handle_timeout(now, &mut self.out);
        while let Some(e) = self.engine.poll_event() {
            self.events.push((now, e));
        }
        // Router output onto the downlinks.
        let sent = std::mem::take(&mut self.out.sent);
        for (dst, data) in sent {
            let Some(i) = self.clients.iter().position(|c| c.client.local == dst) else { continue };
            let (link, mut queue) = (self.clients[i].down, self.clients[i].down_queue);
            self.send_through(link, &mut queue, self.router_addr, dst, data);
            self.clients[i].down_queue = queue;
        }
        // Client output onto the uplinks.
        for i in 0..self.clients.len() {
            let out = self.clients[i].client.poll(now);
            let link = self.clients[i].up;
            let src = self.clients[i].client.local;
            self.clients[i].sent += out.len() as u64;
            let mut queue = self.clients[i].up_queue;
            for (dst, data) in out {
                self.send_through(link, &mut queue, src, dst, data);
            }
            self.clients[i].up_queue = queue;
        }
    }

    /// Puts a datagram on a link (with no bottleneck), or loses it.
    pub fn send(&mut self, link: Link, src: SocketAddr, dst: SocketAddr, data: Vec<u8>) {
        let mut queue = Bottleneck::default();
        self.send_through(link, &mut queue, src, dst, data);
    }

    /// Puts a datagram on a link through its bottleneck queue, or loses it.
    pub fn send_through(
        &mut self,
        link: Link,
        queue: &mut Bottleneck,
        src: SocketAddr,
        dst: SocketAddr,
        data: Vec<u8>,
    ) {
        if link.down || (link.loss > 0.0 && self.rng.random::<f64>() < link.loss) {
            return;
        }
        let mut depart = self.now;
        if let Some(rate) = link.rate_bps {
            let start = queue.busy_until.map_or(self.now, |b| b.max(self.now));
            if start.saturating_duration_since(self.now) > link.max_queue {
                queue.dropped += 1;
                return;
            }
            // The IP and UDP headers count against the link too.
            let bits = (data.len() as u64 + 28) * 8;
            depart = start + Duration::from_nanos(bits * 1_000_000_000 / rate.max(1));
            queue.busy_until = Some(depart);
        }
        let jitter = if link.jitter.is_zero() {
            Duration::ZERO
        } else {
            Duration::from_micros(self.rng.random_range(0..link.jitter.as_micros() as u64))
        };
        self.order += 1;
        self.queue.push(Reverse(InFlight { at: depart + link.latency + jitter, order: self.order, src, dst, data }));
    }

    /// Injects raw bytes to the router as if `src` had sent them, now.
    pub fn inject(&mut self, src: SocketAddr, mut data: Vec<u8>) {
        let now = self.now;
        self.engine.handle_datagram(now, src, &mut data, &mut self.out);
    }

    /// Captures the next datagrams a client sends to the router (for replay and tamper tests).
    pub fn take_router_output(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        std::mem::take(&mut self.out.sent)
    }
}

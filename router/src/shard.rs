//! One shard: a pinned thread that owns a UDP socket, an [`Engine`] and nothing shared.
//!
//! The loop: apply pending commands, run due timers, wait for datagrams (or a command's wake,
//! or the engine's next timeout), feed each datagram to the engine, which writes its replies
//! and forwards straight into the socket's send batch, then submit that batch once.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

use tracing::{error, info, warn};

use router_engine::{Engine, EngineConfig};
use schema::api::{ApiError, Event, IceCandidate};
use schema::{RouterCommand, RouterResponse, RouterResult};

use crate::ice_tcp::IceTcp;
use crate::io::{BackendChoice, IoOptions, UdpIo, Waker};
use crate::stream_peers::{InboxSender, ShardInbox, ShardTransmit};

enum Message {
    Run(RouterCommand, mpsc::Sender<RouterResult>),
    Shutdown,
}

/// The control side's handle on a running shard.
#[derive(Debug)]
pub struct ShardHandle {
    pub index: u8,
    pub addr: SocketAddr,
    /// What the shard announces in its transports' infos.
    pub candidates: Vec<IceCandidate>,
    pub backend: crate::io::BackendKind,
    /// Where TURN connections hand this shard what their clients relay.
    pub inbox: InboxSender,
    tx: mpsc::Sender<Message>,
    waker: Waker,
    join: Option<JoinHandle<()>>,
}

impl ShardHandle {
    /// Sends a command and waits for its reply.
    pub fn call(&self, cmd: RouterCommand) -> RouterResult {
        let (tx, rx) = mpsc::channel();
        self.tx.send(Message::Run(cmd, tx)).map_err(|_| ApiError::InvalidParams("shard has stopped".into()))?;
        self.waker.wake();
        rx.recv().map_err(|_| ApiError::InvalidParams("shard has stopped".into()))?
    }

    pub fn shutdown(&mut self) {
        let _ = self.tx.send(Message::Shutdown);
        self.waker.wake();
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

impl Drop for ShardHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Everything a shard needs to start.
#[derive(Debug, Clone)]
pub struct ShardSpec {
    pub index: u8,
    pub bind: SocketAddr,
    /// Addresses to announce instead of the bound one ([`crate::candidates`]).
    pub announce_ips: Vec<std::net::IpAddr>,
    /// ICE-TCP on, with this many connections at most.
    pub ice_tcp: Option<usize>,
    pub pin_core: Option<usize>,
    pub backend: BackendChoice,
    pub io: IoOptions,
    pub engine: EngineConfig,
    /// The media tap segments, one per reader (one ring per shard each, ring `index` is ours).
    pub taps: Vec<(schema::tap::TapReader, shm_queue::Segment)>,
}

/// Starts a shard thread; returns once its socket is bound (or binding failed).
pub fn spawn(spec: ShardSpec, events: mpsc::Sender<(u8, Event)>) -> std::io::Result<ShardHandle> {
    let (tx, rx) = mpsc::channel::<Message>();
    let (ready_tx, ready_rx) = mpsc::channel();
    let index = spec.index;
    let join = std::thread::Builder::new().name(format!("shard-{index}")).spawn(move || {
        if let Some(core) = spec.pin_core
            && let Err(e) = crate::io::pin_current_thread(core)
        {
            warn!(shard = index, core, error = %e, "could not pin shard thread");
        }
        let io = match UdpIo::bind(spec.bind, spec.backend, &spec.io) {
            Ok(io) => io,
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return;
            }
        };
        let mut cfg = spec.engine.clone();
        let local = io.local_addr();
        let inbox = ShardInbox::new(io.waker());
        let tcp = match spec.ice_tcp {
            None => None,
            Some(max) => {
                // The same port number as UDP, so one firewall rule per port serves both; any
                // free one when the UDP port was itself picked by the kernel.
                let port = if spec.bind.port() == 0 { 0 } else { local.port() };
                match IceTcp::start(SocketAddr::new(local.ip(), port), max, cfg.consent_timeout, inbox.sender()) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        let e = std::io::Error::new(e.kind(), format!("ICE-TCP listener on {}:{port}: {e}", local.ip()));
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                }
            }
        };
        let ips = crate::candidates::announced_ips(local.ip(), &spec.announce_ips);
        cfg.candidates = crate::candidates::shard_candidates(&ips, local.port(), tcp.as_ref().map(|t| t.local_addr().port()));
        let candidates = cfg.candidates.clone();
        let mut engine = match Engine::new(cfg, Instant::now()) {
            Ok(e) => e,
            Err(e) => {
                let _ = ready_tx.send(Err(std::io::Error::other(e.to_string())));
                return;
            }
        };
        for (reader, segment) in &spec.taps {
            match crate::tap::ShmTapSink::attach(segment, usize::from(index)) {
                Ok(sink) => engine.set_tap_sink(*reader, Box::new(sink)),
                Err(e) => {
                    warn!(shard = index, ?reader, error = %e, "no media tap ring for this shard; its taps refused")
                }
            }
        }
        let _ = ready_tx.send(Ok((local, candidates, io.kind(), io.waker(), inbox.sender())));
        info!(shard = index, addr = %local, tcp = ?tcp.as_ref().map(IceTcp::local_addr), backend = ?io.kind(), "shard running");
        run(index, io, inbox, tcp, engine, rx, events);
    })?;
    let (addr, candidates, backend, waker, inbox) =
        ready_rx.recv().map_err(|_| std::io::Error::other("shard thread died during start"))??;
    Ok(ShardHandle { index, addr, candidates, backend, inbox, tx, waker, join: Some(join) })
}

fn run(
    index: u8,
    mut io: UdpIo,
    mut inbox: ShardInbox,
    tcp: Option<IceTcp>,
    mut engine: Engine,
    rx: mpsc::Receiver<Message>,
    events: mpsc::Sender<(u8, Event)>,
) {
    let mut shell = ShellState::default();
    loop {
        loop {
            match rx.try_recv() {
                Ok(Message::Run(cmd, reply)) => {
                    let mut r = apply(&mut engine, cmd);
                    if let Ok(RouterResponse::Counters(v)) = &mut r {
                        shell.add_to(v, &io, tcp.as_ref());
                    }
                    let _ = reply.send(r);
                }
                Ok(Message::Shutdown) | Err(mpsc::TryRecvError::Disconnected) => {
                    info!(shard = index, "shard stopping");
                    return;
                }
                Err(mpsc::TryRecvError::Empty) => break,
            }
        }
        let now = Instant::now();
        {
            let mut udp = io.sender();
            engine.handle_timeout(now, &mut ShardTransmit { udp: &mut udp, streams: inbox.peers() });
        }
        // Timer output (DTLS retransmits, RTCP, NACKs) goes out now, not after the wait below.
        if let Err(e) = io.flush() {
            warn!(shard = index, error = %e, "send batch failed");
        }
        inbox.peers().flush();
        let timeout = engine.poll_timeout().saturating_duration_since(Instant::now());
        // When the batch was taken from the kernel: the first datagram's delivery.
        let mut batch_start = None;
        let streams = inbox.peers();
        let received = io.recv(Some(timeout), |src, buf, udp| {
            let now = Instant::now();
            batch_start.get_or_insert(now);
            engine.handle_datagram(now, src, buf, &mut ShardTransmit { udp, streams });
        });
        match received {
            Ok(n) => shell.received(n),
            Err(e) => error!(shard = index, error = %e, "receive failed"),
        }
        // What ICE-TCP and TURN clients sent meanwhile (their threads woke the wait above).
        {
            let mut udp = io.sender();
            inbox.drain(|src, buf, streams| {
                let now = Instant::now();
                batch_start.get_or_insert(now);
                engine.handle_datagram(now, src, buf, &mut ShardTransmit { udp: &mut udp, streams });
            });
        }
        while let Some(ev) = engine.poll_event() {
            let _ = events.send((index, ev));
        }
        inbox.peers().flush();
        match io.flush() {
            Ok(fs) if fs.datagrams > 0 => {
                if let Some(start) = batch_start {
                    shell.latency.record(start.elapsed());
                }
            }
            Ok(_) => {}
            Err(e) => warn!(shard = index, error = %e, "send batch failed"),
        }
    }
}

/// What the shell measures for the `metrics` reply (see [`crate::metrics`]).
#[derive(Default)]
struct ShellState {
    latency: crate::metrics::Histogram,
    rx_batches: u64,
    /// Largest receive batch since the last counters read: how deep the kernel queue got.
    rx_batch_peak: u64,
}

impl ShellState {
    fn received(&mut self, n: usize) {
        if n > 0 {
            self.rx_batches += 1;
            self.rx_batch_peak = self.rx_batch_peak.max(n as u64);
        }
    }

    /// Adds the shell's figures to a `counters` reply, under `shell`.
    fn add_to(&mut self, counters: &mut serde_json::Map<String, serde_json::Value>, io: &UdpIo, tcp: Option<&IceTcp>) {
        let m = crate::metrics::ShellMetrics {
            io: io.stats(),
            latency: self.latency.clone(),
            latency_bounds_us: &crate::metrics::LATENCY_BOUNDS_US,
            cpu_ns: crate::metrics::thread_cpu_time().as_nanos() as u64,
            rx_batches: self.rx_batches,
            rx_batch_peak: std::mem::take(&mut self.rx_batch_peak),
        };
        if let Ok(v) = serde_json::to_value(m) {
            counters.insert("shell".into(), v);
        }
        if let Some(v) = tcp.and_then(|t| serde_json::to_value(t.stats()).ok()) {
            counters.insert("ice_tcp".into(), v);
        }
    }
}

/// Runs one command on the engine. Each arm hands the engine's typed result to its
/// [`RouterResponse`] variant (`.into()`); commands without a result answer `Done`.
fn apply(engine: &mut Engine, cmd: RouterCommand) -> RouterResult {
    let done = |r: Result<(), ApiError>| r.map(|()| RouterResponse::Done);
    match cmd {
        RouterCommand::CreateTransport { .. } => Ok(engine.create_transport(Instant::now())?.into()),
        RouterCommand::ConnectTransport { transport, params } => done(engine.connect_transport(transport, &params)),
        RouterCommand::Produce { transport, params } => Ok(engine.produce(transport, params)?.into()),
        RouterCommand::Consume { transport, params } => Ok(engine.consume(transport, params)?.into()),
        RouterCommand::PauseProducer { producer, paused } => done(engine.pause_producer(producer, paused)),
        RouterCommand::PauseConsumer { consumer, paused } => done(engine.pause_consumer(consumer, paused)),
        RouterCommand::CloseTransport { transport } => done(engine.close_transport(transport)),
        RouterCommand::CloseProducer { producer } => done(engine.close_producer(producer)),
        RouterCommand::CloseConsumer { consumer } => done(engine.close_consumer(consumer)),
        RouterCommand::ProducerStats { producer } => {
            Ok(engine.producer_stats(producer).ok_or(ApiError::UnknownProducer(producer))?.into())
        }
        RouterCommand::ConsumerStats { consumer } => {
            Ok(engine.consumer_stats(consumer).ok_or(ApiError::UnknownConsumer(consumer))?.into())
        }
        RouterCommand::OpenDataChannel { transport, label } => {
            done(engine.open_data_channel(Instant::now(), transport, &label))
        }
        RouterCommand::SendData { transport, label, text } => {
            done(engine.send_data(Instant::now(), transport, &label, &text))
        }
        RouterCommand::SetPreferredLayer { consumer, layer } => done(engine.set_preferred_layer(consumer, layer)),
        RouterCommand::SetProducerPriority { producer, priority } => {
            done(engine.set_producer_priority(producer, priority))
        }
        RouterCommand::SetTransportMaxBitrate { transport, max_bitrate_bps } => {
            done(engine.set_transport_max_bitrate(transport, max_bitrate_bps))
        }
        RouterCommand::ConsumerLayers { consumer } => Ok(engine.consumer_layers(consumer)?.into()),
        RouterCommand::TransportLinkStats { transport } => Ok(engine.transport_link_stats(transport)?.into()),
        RouterCommand::StartTap { producer, tap, meta, reader } => {
            done(engine.start_tap(Instant::now(), producer, tap, meta, reader))
        }
        RouterCommand::StopTap { producer, tap } => done(engine.stop_tap(producer, tap)),
        RouterCommand::Counters { .. } => counters(engine).map(RouterResponse::Counters),
    }
}

/// The `counters` reply: the engine's counters as a JSON object (their fields are the engine's
/// and grow with it), plus what the shard adds.
fn counters(engine: &Engine) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    let json = |e: serde_json::Error| ApiError::InvalidParams(e.to_string());
    let serde_json::Value::Object(mut counters) = serde_json::to_value(engine.counters()).map_err(json)? else {
        return Err(ApiError::InvalidParams("the engine's counters are not a JSON object".into()));
    };
    // How many transports the shard holds: lets tests and operators see that a peer's
    // transports were freed when it left.
    counters.insert("transports".into(), engine.transport_count().into());
    // A gauge, not a counter: simulcast tracks by their number of live layers.
    counters.insert(
        "simulcast_tracks_by_live_layers".into(),
        serde_json::to_value(engine.simulcast_tracks_by_live_layers()).map_err(json)?,
    );
    Ok(counters)
}

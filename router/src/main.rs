//! `router`: runs the shards and serves the direct API on a local control socket.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use schema::tap::TapReader;
use tracing::{error, info};

use router::Router;
use router::config::{Backend, Config};
use router::control_socket::{SocketGuard, serve};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The media router: forwards WebRTC audio and video (ICE-lite, DTLS, SRTP) between transports
/// created through its control socket.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// TOML config file (see docs/router.md); flags override it.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Number of shards; 0 = one per core.
    #[arg(long)]
    shards: Option<usize>,
    /// IP address the shards bind.
    #[arg(long)]
    listen_ip: Option<std::net::IpAddr>,
    /// First shard port (shard i uses base + i); 0 = any free port.
    #[arg(long)]
    base_port: Option<u16>,
    /// Address announced in candidates when clients reach the router through another one (a
    /// public address behind 1:1 NAT); repeat for several (IPv4 and IPv6). Replaces the
    /// config's list.
    #[arg(long = "announce-ip", value_name = "IP")]
    announce_ips: Vec<std::net::IpAddr>,
    /// Do not accept ICE over TCP (by default each shard also listens on TCP at its port).
    #[arg(long)]
    no_ice_tcp: bool,
    /// TURN over UDP at this address (e.g. 0.0.0.0:3478), relaying into the shards.
    #[arg(long, value_name = "IP:PORT")]
    turn_udp_listen: Option<std::net::SocketAddr>,
    /// TURN over TCP at this address (e.g. 0.0.0.0:3478), relaying into the shards.
    #[arg(long, value_name = "IP:PORT")]
    turn_listen: Option<std::net::SocketAddr>,
    /// TURN over TLS at this address (e.g. 0.0.0.0:443), with --turn-cert and --turn-key.
    #[arg(long, value_name = "IP:PORT")]
    turn_tls_listen: Option<std::net::SocketAddr>,
    /// TURN over TLS's certificate chain (PEM); read again when it changes.
    #[arg(long)]
    turn_cert: Option<PathBuf>,
    /// TURN over TLS's private key (PEM).
    #[arg(long)]
    turn_key: Option<PathBuf>,
    /// The file holding the "REST API for TURN" shared secret.
    #[arg(long)]
    turn_secret_file: Option<PathBuf>,
    /// The realm TURN clients hash their credentials with (the public host name).
    #[arg(long)]
    turn_realm: Option<String>,
    /// UDP I/O backend (default mmsg; docs/router.md compares them).
    #[arg(long, value_enum)]
    backend: Option<Backend>,
    /// Unix socket of the control channel.
    #[arg(long)]
    control_socket: Option<PathBuf>,
    /// Do not pin shard threads to cores.
    #[arg(long)]
    no_pin: bool,
    /// Disable UDP GSO.
    #[arg(long)]
    no_gso: bool,
    /// Inherited fd of the shared-memory link to signaling (a two-ring segment made by
    /// control; the router takes end B).
    #[arg(long)]
    link_fd: Option<i32>,
    /// Inherited fd of the media tap segment to the recorder (made by control; one ring per
    /// shard). Without it, track recording is refused.
    #[arg(long)]
    tap_fd: Option<i32>,
    /// Inherited fd of the media tap segment to the compositor (made by control; one ring per
    /// shard). Without it, composite recording and streaming are refused.
    #[arg(long)]
    compositor_tap_fd: Option<i32>,
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| "info".into()))
        // Logs go to stderr: the default (stdout) hid startup errors (a bad config, a socket in
        // use) from anyone watching stderr, and mixed logs into stdout.
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut cfg = match &args.config {
        Some(path) => match Config::from_file(path) {
            Ok(c) => c,
            Err(e) => {
                error!("{e}");
                std::process::exit(2);
            }
        },
        None => Config::default(),
    };
    if let Some(v) = args.shards {
        cfg.shards = v;
    }
    if let Some(v) = args.listen_ip {
        cfg.listen_ip = v;
    }
    if let Some(v) = args.base_port {
        cfg.base_port = v;
    }
    if !args.announce_ips.is_empty() {
        cfg.announce_ips = args.announce_ips;
    }
    cfg.ice_tcp &= !args.no_ice_tcp;
    cfg.turn_udp_listen = args.turn_udp_listen.or(cfg.turn_udp_listen);
    cfg.turn_listen = args.turn_listen.or(cfg.turn_listen);
    cfg.turn_tls_listen = args.turn_tls_listen.or(cfg.turn_tls_listen);
    cfg.turn_cert = args.turn_cert.or(cfg.turn_cert);
    cfg.turn_key = args.turn_key.or(cfg.turn_key);
    cfg.turn_secret_file = args.turn_secret_file.or(cfg.turn_secret_file);
    if let Some(v) = args.turn_realm {
        cfg.turn_realm = v;
    }
    if let Some(v) = args.backend {
        cfg.backend = v;
    }
    if let Some(v) = args.control_socket {
        cfg.control_socket = v;
    }
    cfg.pin &= !args.no_pin;
    cfg.gso &= !args.no_gso;

    let mut taps = Vec::new();
    for (reader, fd) in [(TapReader::Recorder, args.tap_fd), (TapReader::Compositor, args.compositor_tap_fd)] {
        let Some(fd) = fd else { continue };
        // SAFETY: control passes an fd it opened for us and nothing else in this process uses it.
        match unsafe { shm_queue::Segment::open_raw_fd(fd) } {
            Ok(s) => taps.push((reader, s)),
            Err(e) => {
                error!("cannot open the {reader:?}'s media tap segment (fd {fd}): {e}");
                std::process::exit(1);
            }
        }
    }
    let router = match Router::start_with_taps(&cfg, taps) {
        Ok(r) => Arc::new(r),
        Err(e) => {
            error!("cannot start shards: {e}");
            std::process::exit(1);
        }
    };
    if let Some(turn) = router.turn() {
        info!(udp = ?turn.udp, tcp = ?turn.tcp, tls = ?turn.tls, "TURN ready");
    }
    for (i, (addr, backend)) in router.shard_addrs().iter().zip(router.shard_backends()).enumerate() {
        info!(shard = i, %addr, ?backend, candidates = ?router.shard_candidates(i), "shard ready");
    }
    if let Some(fd) = args.link_fd {
        // SAFETY: control passes an fd it opened for us and nothing else in this process uses it.
        let linked = unsafe { shm_queue::Segment::open_raw_fd(fd) }
            .and_then(|segment| router::link::serve_link(router.clone(), segment));
        if let Err(e) = linked {
            error!("cannot attach the link to signaling (fd {fd}): {e}");
            std::process::exit(1);
        }
    }
    let _guard = SocketGuard(cfg.control_socket.clone());
    // The socket file is removed on SIGINT/SIGTERM too: the default handlers would skip Drop.
    install_signal_cleanup(cfg.control_socket.clone());
    if let Err(e) = serve(router, &cfg.control_socket) {
        error!("control channel failed: {e}");
        std::process::exit(1);
    }
}

fn install_signal_cleanup(path: PathBuf) {
    static PATH: std::sync::OnceLock<std::ffi::CString> = std::sync::OnceLock::new();
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else { return };
    let _ = PATH.set(c);
    extern "C" fn on_signal(sig: libc::c_int) {
        if let Some(p) = PATH.get() {
            // SAFETY: unlink and _exit are async-signal-safe; the CString lives forever.
            unsafe {
                libc::unlink(p.as_ptr());
            }
        }
        // SAFETY: _exit is async-signal-safe and never returns.
        unsafe { libc::_exit(128 + sig) }
    }
    // SAFETY: installing a handler that only calls async-signal-safe functions.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

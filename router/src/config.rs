//! The router's configuration: a TOML file, overridden by command-line flags.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which UDP I/O backend the shards use ([`crate::io`]). Both batch and use UDP GSO; they
/// differ in how a pass reaches the kernel. The default is `mmsg`: at high fan-out its one
/// `sendmmsg` per flush cost less CPU per forwarded packet than io_uring's SENDMSG submission
/// and completion per datagram (`scripts/bench.sh`; docs/decisions.md has the runs and
/// figures, and says to re-measure before changing the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// io_uring when the kernel allows it (the probe sets up a ring, a provided-buffer ring and
    /// a multishot receive), otherwise mmsg; each shard logs which and why.
    Auto,
    /// io_uring: a multishot receive into a provided-buffer ring, one SENDMSG per datagram or
    /// GSO run, a flush submitted at once. The router does not start where it is forbidden.
    Uring,
    /// recvmmsg/sendmmsg on a non-blocking socket, ppoll to wait: works on any kernel and in
    /// containers that forbid io_uring.
    #[default]
    Mmsg,
}

impl From<Backend> for crate::io::BackendChoice {
    fn from(b: Backend) -> Self {
        match b {
            Backend::Auto => crate::io::BackendChoice::Auto,
            Backend::Uring => crate::io::BackendChoice::Uring,
            Backend::Mmsg => crate::io::BackendChoice::Mmsg,
        }
    }
}

/// Everything the router reads at start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Number of shards (threads, one UDP port each). 0 = one per core.
    pub shards: usize,
    /// Pin shard `i` to core `i mod cores`.
    pub pin: bool,
    /// Address the shards bind to (UDP, and TCP for ICE-TCP). `0.0.0.0` or `::` binds every
    /// interface.
    pub listen_ip: IpAddr,
    /// Shard `i` binds `base_port + i`. 0 = any free port per shard.
    pub base_port: u16,
    /// The addresses put in candidates, when clients reach the router through other addresses
    /// than the bound one (a cloud VM's public address behind 1:1 NAT; an IPv4 and an IPv6 one).
    /// Empty: `listen_ip`, or, when that is a wildcard, the interfaces' addresses of its family.
    pub announce_ips: Vec<IpAddr>,
    /// Also accept ICE over TCP (RFC 6544 passive candidates, RFC 4571 framing) on each shard's
    /// port number, for clients whose network blocks UDP.
    pub ice_tcp: bool,
    /// Most ICE-TCP connections one shard keeps open; a connection past it is closed at once.
    pub ice_tcp_max_connections: usize,
    /// TURN over UDP at this address (`turn:HOST:PORT?transport=udp`), relaying into the
    /// shards ([`crate::turn`]). Needs `turn_secret_file`.
    pub turn_udp_listen: Option<std::net::SocketAddr>,
    /// TURN over plain TCP at this address (`turn:HOST:PORT?transport=tcp`).
    pub turn_listen: Option<std::net::SocketAddr>,
    /// TURN over TLS at this address (`turns:`), with `turn_cert` and `turn_key`.
    pub turn_tls_listen: Option<std::net::SocketAddr>,
    /// The PEM certificate chain and key of TURN over TLS; read again when they change.
    pub turn_cert: Option<PathBuf>,
    pub turn_key: Option<PathBuf>,
    /// The file holding the "REST API for TURN" shared secret the credentials are checked with.
    pub turn_secret_file: Option<PathBuf>,
    /// The realm TURN clients hash their credentials with.
    pub turn_realm: String,
    /// Most TURN connections kept open; a connection past it is closed at once.
    pub turn_max_connections: usize,
    pub backend: Backend,
    /// Use UDP GSO for runs of sends to one destination.
    pub gso: bool,
    /// The control channel: a Unix socket speaking JSON lines (docs/router.md).
    pub control_socket: PathBuf,
    /// Sends a receive pass may queue before the shard flushes them and reads on: lower bounds
    /// the in-router latency (the first packet of a pass waits for the whole pass), higher
    /// saves submissions (docs/performance.md has the trade measured).
    pub send_budget: usize,
    /// Socket buffer sizes, bytes.
    pub recv_buffer: usize,
    pub send_buffer: usize,
    /// Milliseconds of ICE silence before a transport is closed.
    pub consent_timeout_ms: u64,
    /// Minimum milliseconds between two keyframe requests to one producer.
    pub pli_throttle_ms: u64,
    /// Milliseconds between stats events; 0 disables them.
    pub stats_interval_ms: u64,
    /// Milliseconds a simulcast layer may go unneeded by every subscriber before the publisher
    /// is asked (by a REMB cap) to stop encoding it; 0 never stops one (docs/simulcast.md).
    pub stop_unneeded_layers_after_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            shards: 0,
            pin: true,
            listen_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            base_port: 40000,
            announce_ips: Vec::new(),
            ice_tcp: true,
            ice_tcp_max_connections: 4096,
            turn_udp_listen: None,
            turn_listen: None,
            turn_tls_listen: None,
            turn_cert: None,
            turn_key: None,
            turn_secret_file: None,
            turn_realm: "rtc".into(),
            turn_max_connections: 4096,
            backend: Backend::default(),
            gso: true,
            send_budget: crate::io::IoOptions::default().send_budget,
            control_socket: PathBuf::from("/tmp/router.sock"),
            recv_buffer: 4 << 20,
            send_buffer: 4 << 20,
            consent_timeout_ms: 30_000,
            pli_throttle_ms: 500,
            stats_interval_ms: 5_000,
            stop_unneeded_layers_after_ms: 30_000,
        }
    }
}

impl Config {
    /// Reads a TOML file; unknown keys are an error, so a typo never silently does nothing.
    pub fn from_file(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("invalid config {}: {e}", path.display()))
    }

    /// TURN's options, when a TURN listener is asked for; an error names what is missing.
    pub(crate) fn turn_options(&self, relay_ip: std::net::IpAddr) -> Result<Option<crate::turn::TurnOptions>, String> {
        if self.turn_udp_listen.is_none() && self.turn_listen.is_none() && self.turn_tls_listen.is_none() {
            return Ok(None);
        }
        let Some(secret_file) = &self.turn_secret_file else {
            return Err("TURN needs turn_secret_file (--turn-secret-file)".into());
        };
        let secret = std::fs::read(secret_file).map_err(|e| format!("cannot read {}: {e}", secret_file.display()))?;
        let secret = secret.trim_ascii().to_vec();
        if secret.is_empty() {
            return Err(format!("{} is empty", secret_file.display()));
        }
        let tls = match (self.turn_tls_listen, &self.turn_cert, &self.turn_key) {
            (None, _, _) => None,
            (Some(addr), Some(cert), Some(key)) => Some((addr, cert.clone(), key.clone())),
            (Some(_), _, _) => {
                return Err("TURN over TLS needs turn_cert and turn_key (--turn-cert, --turn-key)".into());
            }
        };
        Ok(Some(crate::turn::TurnOptions {
            udp: self.turn_udp_listen,
            tcp: self.turn_listen,
            tls,
            secret,
            realm: self.turn_realm.clone(),
            relay_ip,
            max_connections: self.turn_max_connections,
            idle: Duration::from_millis(self.consent_timeout_ms),
        }))
    }

    /// The number of shards to run.
    pub fn shard_count(&self) -> usize {
        if self.shards > 0 { self.shards } else { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) }
    }

    pub(crate) fn engine_config(&self, shard: u8) -> router_engine::EngineConfig {
        router_engine::EngineConfig {
            shard,
            consent_timeout: Duration::from_millis(self.consent_timeout_ms),
            pli_throttle: Duration::from_millis(self.pli_throttle_ms),
            stats_interval: Duration::from_millis(self.stats_interval_ms),
            stop_unneeded_layers_after: Duration::from_millis(self.stop_unneeded_layers_after_ms),
            ..Default::default()
        }
    }
}

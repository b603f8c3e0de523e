//! The command line: `control [flags]` runs the daemon; `control token ...` prints an auth token.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
#[cfg(test)]
use std::path::Path;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The control daemon: starts and supervises router and signaling, serves the demo app and the
/// API over HTTPS.
#[derive(Debug, Parser)]
#[command(name = "control", version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(flatten)]
    pub run: RunArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print an auth token for a room (created if new).
    Token(TokenArgs),
    /// Print a management token (the REST API's bearer token) for a workspace.
    ManagementToken(ManagementTokenArgs),
    /// Create and list workspaces, and add key pairs to them.
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
}

#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// Create a workspace (with the default template) and print its first key pair as JSON.
    Create(WorkspaceArgs),
    /// List the workspaces and their first access key.
    List(DataDirArg),
    /// Add a key pair to a workspace and print it as JSON (rotation: add, move the apps to the
    /// new key, revoke the old one).
    AddKey(WorkspaceArgs),
    /// List a workspace's access keys (never their secrets), oldest first.
    ListKeys(WorkspaceArgs),
    /// Revoke a key pair: tokens it signed are refused at once. The last key stays.
    RevokeKey(RevokeKeyArgs),
}

#[derive(Debug, Clone, Args)]
pub struct RevokeKeyArgs {
    #[command(flatten)]
    pub workspace: WorkspaceArgs,
    /// The access key to revoke.
    #[arg(long)]
    pub access_key: String,
}

#[derive(Debug, Clone, Args)]
pub struct DataDirArg {
    /// Data directory of the daemon.
    #[arg(long, default_value = "./data")]
    pub data_dir: PathBuf,
    /// PostgreSQL database (`postgres://user[:password]@host[:port]/dbname`, no TLS) instead of
    /// the SQLite file <data-dir>/platform.db.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct WorkspaceArgs {
    /// Workspace name (e.g. production, development).
    #[arg(long)]
    pub name: String,
    /// Data directory of the daemon.
    #[arg(long, default_value = "./data")]
    pub data_dir: PathBuf,
    /// PostgreSQL database (`postgres://user[:password]@host[:port]/dbname`, no TLS) instead of
    /// the SQLite file <data-dir>/platform.db.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ManagementTokenArgs {
    /// Workspace name.
    #[arg(long, default_value = store::DEFAULT_WORKSPACE)]
    pub workspace: String,
    /// Lifetime in seconds; at most 86400 (a day), the longest the REST API accepts.
    #[arg(long, default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub ttl_secs: u64,
    /// Data directory of the daemon.
    #[arg(long, default_value = "./data")]
    pub data_dir: PathBuf,
    /// PostgreSQL database (`postgres://user[:password]@host[:port]/dbname`, no TLS) instead of
    /// the SQLite file <data-dir>/platform.db.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

/// The router's `--backend` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RouterBackend {
    Auto,
    Uring,
    Mmsg,
}

impl RunArgs {
    /// The HTTPS limits of control's and signaling's listeners.
    pub fn https_limits(&self) -> https_server::Limits {
        https_server::Limits {
            max_per_ip: self.max_connections_per_ip,
            request: std::time::Duration::from_secs(self.request_timeout_secs),
            ..https_server::Limits::default()
        }
    }
}

impl RouterBackend {
    /// The value the router's `--backend` flag takes.
    pub fn flag(self) -> &'static str {
        match self {
            RouterBackend::Auto => "auto",
            RouterBackend::Uring => "uring",
            RouterBackend::Mmsg => "mmsg",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// A TOML file of these flags (`key = value`, each key a flag's name without the dashes;
    /// deploy/control.toml lists them all). Flags on the command line override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory of the database, credentials, TLS certificate and sockets.
    #[arg(long, default_value = "./data")]
    pub data_dir: PathBuf,
    /// PostgreSQL database (`postgres://user[:password]@host[:port]/dbname`, no TLS) instead of
    /// the SQLite file <data-dir>/platform.db.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Address of the HTTPS demo page and API.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Address signaling listens on (its init endpoint and WebSocket).
    #[arg(long, default_value = "127.0.0.1:8444")]
    pub signaling_listen: SocketAddr,
    /// Host name put in the URLs given to browsers (and added to the self-signed certificate).
    #[arg(long, default_value = "localhost")]
    pub public_host: String,
    /// First port of the router (shard i uses port + i, for UDP and for ICE-TCP).
    #[arg(long, default_value_t = 40000)]
    pub router_port: u16,
    /// Number of router shards.
    #[arg(long, default_value_t = 1)]
    pub router_shards: usize,
    /// The router's UDP I/O backend: `mmsg` (recvmmsg/sendmmsg), `uring`, or `auto` (io_uring
    /// when the kernel allows it, else mmsg). docs/decisions.md has the measurement behind the
    /// default.
    #[arg(long, value_enum, default_value = "mmsg")]
    pub router_backend: RouterBackend,
    /// IP address the router's UDP sockets (and ICE-TCP listeners) bind; `0.0.0.0` or `::` for
    /// every interface.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub router_ip: IpAddr,
    /// Address the router announces to clients in its candidates when they reach it through
    /// another one than it binds (a cloud VM's public address behind 1:1 NAT). Repeat for
    /// several (an IPv4 and an IPv6 one). Default: the bound address, or for a wildcard bind
    /// the interfaces' addresses.
    #[arg(long = "announce-ip", value_name = "IP")]
    pub announce_ips: Vec<IpAddr>,
    /// Do not offer ICE over TCP. By default each router shard also accepts ICE/DTLS/SRTP over
    /// TCP (RFC 6544) on its port number, for clients whose network blocks UDP.
    #[arg(long)]
    pub no_ice_tcp: bool,
    /// Let the demo's convenience endpoints (`/api/token`, `/api/room-codes`) mint tokens and
    /// room codes for any caller although control listens beyond loopback. Anyone who can reach
    /// the port can then join any room as any role: for a trusted network only. Without it they
    /// answer 403 there, and the demo joins with room code links.
    #[arg(long)]
    pub open_demo_tokens: bool,
    /// Room-code exchanges (`POST /v2/token`) and demo `/api/token`, `/api/room-codes` requests a
    /// minute per client address, taken at once or earned back evenly; past it, 429 with
    /// Retry-After. 0: no limit.
    #[arg(long, default_value_t = crate::http::limits::RateLimitConfig::default().room_code_per_minute)]
    pub rate_limit_room_code: u32,
    /// Failed REST authentications a minute per client address; once spent, every `/v2` request
    /// from it gets 429 until one is earned back. 0: no limit.
    #[arg(long, default_value_t = crate::http::limits::RateLimitConfig::default().auth_failures_per_minute)]
    pub rate_limit_auth_failures: u32,
    /// Signaling's `GET /init` requests a minute per client address; past it, 429. 0: no limit.
    #[arg(long, default_value_t = 600)]
    pub rate_limit_init: u32,
    /// Signaling's WebSocket upgrades a minute per client address; past it, 429. 0: no limit.
    #[arg(long, default_value_t = 600)]
    pub rate_limit_websocket: u32,
    /// Open connections per client address on control's and on signaling's HTTPS listener;
    /// past it a new connection is closed at once. A browser holds a few; behind a NAT many
    /// users share one address. 0: no cap.
    #[arg(long, default_value_t = https_server::Limits::default().max_per_ip)]
    pub max_connections_per_ip: usize,
    /// Seconds a request may take to arrive whole and be answered (a slow body gets 408), on
    /// control's and signaling's HTTPS. The TLS handshake and a request's headers get 10 s.
    #[arg(long, default_value_t = https_server::Limits::default().request.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_secs: u64,
    /// Do not run TURN. By default the router relays TURN (UDP, TCP, TLS) into its shards, and
    /// signaling hands clients time-limited credentials for it at `/init`.
    #[arg(long)]
    pub no_turn: bool,
    /// TURN's UDP and TCP port.
    #[arg(long, default_value_t = 3478)]
    pub turn_port: u16,
    /// TURN's TLS port (`turns:`), with control's certificate. 443 in production reaches
    /// clients whose network allows only HTTPS.
    #[arg(long, default_value_t = 5349)]
    pub turn_tls_port: u16,
    /// Built demo app served at `/` (`npm ci && npm run build` in client/).
    #[arg(long, default_value = "client/dist")]
    pub demo_dir: PathBuf,
    /// Built 100ms Prebuilt served at `/meeting/<room code>` (`npm ci && npm run build` in
    /// prebuilt/).
    #[arg(long, default_value = "prebuilt/dist")]
    pub prebuilt_dir: PathBuf,
    /// Certificate chain (PEM) for HTTPS; without it a self-signed one is made in <data-dir>/tls.
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// Private key (PEM) matching --cert.
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// How often (seconds) the certificate and key files are looked at: a changed pair (a
    /// renewal) is served from the next connection on, as after SIGHUP. 0: on SIGHUP only.
    #[arg(long, default_value_t = 5)]
    pub cert_poll_secs: u64,
    /// Directory holding the `router`, `signaling` and `recorder` binaries (default: the one
    /// `control` runs from).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Where track recordings are written (default: <data-dir>/recordings).
    #[arg(long)]
    pub recordings_dir: Option<PathBuf>,
    /// A recording's file is closed and the next part begun past this size (MiB) ...
    #[arg(long, default_value_t = 1024)]
    pub recording_max_part_mib: u64,
    /// ... or past this duration (seconds). Video parts change at the next keyframe.
    #[arg(long, default_value_t = 3600)]
    pub recording_max_part_seconds: u64,
    /// The compositor's CPU priority (nice, 0-19): above 0 the router's forwarding wins a busy
    /// core and a composite job waits (it buffers 200 ms of input); at 0 three jobs beside a
    /// loaded router put its p99 latency from 0.6 ms to 12 ms, with drops (docs/performance.md).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub compositor_nice: i32,
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// Room name (created if it does not exist).
    #[arg(long)]
    pub room: String,
    /// Role, from the default template (host, guest, audio-only).
    #[arg(long)]
    pub role: String,
    /// User id put in the token.
    #[arg(long)]
    pub user: String,
    /// Workspace name.
    #[arg(long, default_value = store::DEFAULT_WORKSPACE)]
    pub workspace: String,
    /// Data directory of the daemon.
    #[arg(long, default_value = "./data")]
    pub data_dir: PathBuf,
    /// PostgreSQL database (`postgres://user[:password]@host[:port]/dbname`, no TLS) instead of
    /// the SQLite file <data-dir>/platform.db.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_manual() {
        let cli = Cli::try_parse_from(["control"]).unwrap();
        assert!(cli.command.is_none());
        let r = cli.run;
        assert_eq!(r.listen.to_string(), "127.0.0.1:8443");
        assert_eq!(r.signaling_listen.to_string(), "127.0.0.1:8444");
        assert_eq!((r.router_port, r.router_shards), (40000, 1));
        assert_eq!(r.router_backend, RouterBackend::Mmsg);
        assert_eq!(r.public_host, "localhost");
        assert_eq!(r.demo_dir, PathBuf::from("client/dist"));
        assert_eq!(r.prebuilt_dir, PathBuf::from("prebuilt/dist"));
    }

    #[test]
    fn token_subcommand_and_cert_key_pairing() {
        let cli = Cli::try_parse_from(["control", "token", "--room", "r", "--role", "host", "--user", "u"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Token(t)) if t.room == "r" && t.data_dir == Path::new("./data")));
        assert!(Cli::try_parse_from(["control", "--cert", "c.pem"]).is_err(), "--cert needs --key");
        assert!(Cli::try_parse_from(["control", "--listen", "nonsense"]).is_err());
    }

    #[test]
    fn database_url_is_optional_everywhere() {
        assert!(Cli::try_parse_from(["control"]).unwrap().run.database_url.is_none());
        let url = "postgres://u@127.0.0.1/platform";
        let cli = Cli::try_parse_from(["control", "--database-url", url]).unwrap();
        assert_eq!(cli.run.database_url.as_deref(), Some(url));
        let cli = Cli::try_parse_from([
            "control",
            "token",
            "--room",
            "r",
            "--role",
            "host",
            "--user",
            "u",
            "--database-url",
            url,
        ])
        .unwrap();
        assert!(matches!(cli.command, Some(Command::Token(t)) if t.database_url.as_deref() == Some(url)));
    }
}

//! `signaling`: the 100ms-compatible client edge (HTTPS `/init`, WSS JSON-RPC), linked to the
//! router over shared memory. Started and supervised by `control` (docs/signaling.md).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use tracing::{error, info};

use signaling::hub::{Hub, HubOptions};
use signaling::router_link::RouterLink;
use signaling::server::{App, AppOptions, RateLimitConfig, TurnServers, router};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Signaling for WebRTC clients: speaks the 100ms client protocol and drives the router.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The platform database shared with control: a SQLite file path, or a
    /// `postgres://user[:password]@host[:port]/dbname` URL.
    #[arg(long)]
    db: String,
    /// Directory of the room snapshots a restarted signaling resumes from (default:
    /// `signaling-state` beside the SQLite file, or in the working directory for PostgreSQL).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Address to serve HTTPS and WSS on.
    #[arg(long, default_value = "127.0.0.1:8444")]
    listen: SocketAddr,
    /// The public base URL of this service (`https://host:port`): `/init` returns
    /// `wss://host:port/ws` from it.
    #[arg(long)]
    public_url: String,
    /// TLS certificate chain (PEM).
    #[arg(long)]
    cert: PathBuf,
    /// TLS private key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// Inherited fd of the shared-memory link to the router (end A), from control.
    #[arg(long)]
    router_link_fd: i32,
    /// The longest a session may last, from its first join; then the room is ended.
    #[arg(long, default_value_t = 43_200)]
    max_session_secs: u64,
    /// `GET /init` requests a minute per client address (taken at once or earned back evenly);
    /// past it, 429 with Retry-After. 0: no limit.
    #[arg(long, default_value_t = RateLimitConfig::default().init_per_minute)]
    rate_limit_init: u32,
    /// WebSocket upgrades a minute per client address; past it, 429. 0: no limit.
    #[arg(long, default_value_t = RateLimitConfig::default().websocket_per_minute)]
    rate_limit_websocket: u32,
    /// Open connections per client address; past it a new one is closed at once. 0: no cap.
    #[arg(long, default_value_t = https_server::Limits::default().max_per_ip)]
    max_connections_per_ip: usize,
    /// Seconds a request may take to arrive whole and be answered (408 past it). WebSockets,
    /// once upgraded, are not timed.
    #[arg(long, default_value_t = https_server::Limits::default().request.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    request_timeout_secs: u64,
    /// A TURN server's URL handed to clients in `/init` (`turn:host:3478?transport=udp`,
    /// `turns:host:5349?transport=tcp`, ...); repeat for several. Needs --turn-secret-file.
    #[arg(long = "turn-url", value_name = "URL", requires = "turn_secret_file")]
    turn_urls: Vec<String>,
    /// File holding the TURN server's shared secret (`static-auth-secret`), which signs each
    /// client's time-limited credential.
    #[arg(long, requires = "turn_urls")]
    turn_secret_file: Option<PathBuf>,
    /// Unix socket for the control daemon's operations on live rooms (JSON lines; see
    /// docs/signaling.md). None when absent.
    #[arg(long)]
    admin_socket: Option<PathBuf>,
    /// The compositor's jobs directory: a peer's HLS timed metadata is written there as cue
    /// files. Without it, `hls-timed-metadata` is refused.
    #[arg(long)]
    compositor_jobs_dir: Option<PathBuf>,
}

fn ws_endpoint(public_url: &str) -> Result<String, String> {
    let rest = public_url
        .strip_prefix("https://")
        .map(|r| format!("wss://{r}"))
        .or_else(|| public_url.strip_prefix("http://").map(|r| format!("ws://{r}")))
        .ok_or_else(|| format!("--public-url must start with https:// (got {public_url})"))?;
    Ok(format!("{}/ws", rest.trim_end_matches('/')))
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if let Err(e) = run(args).await {
        error!("{e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), String> {
    let endpoint = ws_endpoint(&args.public_url)?;
    // Never print a password: the URL in messages is redacted.
    let db_name = store::redact_url(&args.db);
    let open = || store::Store::connect(&args.db).map_err(|e| format!("cannot open {db_name}: {e}"));
    let store = open()?;
    // SAFETY: control passes an fd it opened for us; nothing else in this process uses it.
    let segment = unsafe { shm_queue::Segment::open_raw_fd(args.router_link_fd) }
        .map_err(|e| format!("router link fd {}: {e}", args.router_link_fd))?;
    let (link, events) = RouterLink::attach(segment).map_err(|e| format!("router link: {e}"))?;
    // Room snapshots live beside the database (or where --state-dir says), so a restarted
    // signaling finds them.
    let state_dir = match &args.state_dir {
        Some(d) => d.clone(),
        None if store::is_postgres_url(&args.db) => "signaling-state".into(),
        None => std::path::Path::new(&args.db)
            .parent()
            .map(|d| d.join("signaling-state"))
            .unwrap_or_else(|| "signaling-state".into()),
    };
    std::fs::create_dir_all(&state_dir).map_err(|e| format!("cannot create {}: {e}", state_dir.display()))?;
    // A second connection for the room locks (`end-room {lock: true}`); App keeps its own.
    let lock_store = open()?;
    // Sessions and webhook events go to the database through their own connection.
    let sink =
        signaling::store_sink::StoreSink::connect(&args.db).map_err(|e| format!("cannot open {db_name}: {e}"))?;
    let options = HubOptions {
        events: std::sync::Arc::new(sink),
        max_session: std::time::Duration::from_secs(args.max_session_secs.max(1)),
        store: Some(lock_store),
        compositor_jobs_dir: args.compositor_jobs_dir.clone(),
    };
    let hub = Hub::with_options(link, Some(state_dir), options);
    tokio::spawn(hub.clone().route_events(events));
    if let Some(path) = &args.admin_socket {
        let listener = signaling::admin::bind(path).map_err(|e| format!("admin socket {}: {e}", path.display()))?;
        info!(path = %path.display(), "admin socket listening");
        tokio::spawn(signaling::admin::run(hub.clone(), listener));
    }
    hub.restore_rooms(&store);
    let limits =
        RateLimitConfig { init_per_minute: args.rate_limit_init, websocket_per_minute: args.rate_limit_websocket };
    let turn = match &args.turn_secret_file {
        None => None,
        Some(path) => {
            let secret = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the TURN secret {}: {e}", path.display()))?
                .trim()
                .to_string();
            if secret.is_empty() {
                return Err(format!("the TURN secret file {} is empty", path.display()));
            }
            info!(urls = ?args.turn_urls, "TURN servers handed out at /init");
            // A credential outlives the longest session, so a relayed call can always
            // re-allocate (an ICE restart) until the session cap ends it.
            let ttl = std::time::Duration::from_secs(args.max_session_secs.max(1) + 3600);
            Some(TurnServers { urls: args.turn_urls.clone(), secret, ttl })
        }
    };
    let app = App::with_options(hub, store, endpoint.clone(), AppOptions { limits, turn });
    let cert = std::sync::Arc::new(
        https_server::ReloadableCert::load(args.cert.clone(), args.key.clone())
            .map_err(|e| format!("TLS certificate: {e}"))?,
    );
    reload_on_hangup(cert.clone());
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.map_err(|e| format!("binding {}: {e}", args.listen))?;
    let limits = https_server::Limits {
        max_per_ip: args.max_connections_per_ip,
        request: std::time::Duration::from_secs(args.request_timeout_secs),
        ..https_server::Limits::default()
    };
    info!(listen = %args.listen, %endpoint, "signaling serving /init and the WebSocket");
    https_server::serve(listener, cert.server_config(), router(app), limits, std::future::pending()).await;
    Ok(())
}

/// Reads the certificate and key again on SIGHUP (control sends it when its own certificate
/// changed): new connections get the new one, open sockets go on. A failed reload keeps the
/// old certificate.
fn reload_on_hangup(cert: std::sync::Arc<https_server::ReloadableCert>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot install the SIGHUP handler ({e}); a new certificate needs a restart");
            return;
        }
    };
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            match cert.reload() {
                Ok(sha256) => info!(cert = %cert.cert_path.display(), %sha256, "TLS certificate reloaded"),
                Err(e) => tracing::warn!(error = %e, "the TLS certificate was not reloaded; the old one stays"),
            }
        }
    });
}

//! The control daemon: one command that gives a working platform.
//!
//! On start it opens the platform database (`<data-dir>/platform.db`, crate `store`) and makes
//! sure the default workspace exists, loads or creates its TLS certificate ([`tls`]), creates
//! the shared-memory link between router and signaling, starts both and keeps them running
//! ([`supervisor`]), and serves the demo app and a small JSON API over HTTPS ([`http`]), and the
//! platform's Prometheus metrics at `GET /metrics` ([`http::metrics`]).
//!
//! ```text
//!            ┌──────────── control ─────────────┐
//! browser ──►│ https: /  (demo)   /api/token ... │── spawns, restarts ──► router    (--link-fd: end B)
//!            │ platform.db (writer)             │── spawns, restarts ──► signaling (--router-link-fd: end A)
//!            └──────────────────────────────────┘        signaling reads platform.db to verify tokens
//! ```
//!
//! `main.rs` only parses the command line ([`cli`]) and calls [`run`] or [`print_token`].
//! docs/control.md is the operator's manual.

pub mod cli;
pub mod composite;
pub mod config_file;
pub mod http;
pub mod recording;
pub mod reload;
pub mod signaling_admin;
pub mod supervisor;
pub mod tls;
pub mod turn;
pub mod webhooks;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use store::{Store, StoreError, Workspace};
use tracing::{info, warn};
use util::LockExt;

use crate::cli::{ManagementTokenArgs, RunArgs, TokenArgs, WorkspaceCommand};

/// Lifetime of the auth tokens the demo API and `control token` mint.
pub const AUTH_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// Bytes of each router shard's media tap ring: ~1 s of 200 recorded tracks at 1 Mbit/s,
/// room for a disk that stalls the recorder's writes for a moment (benches/recorder_load).
pub const TAP_RING_BYTES: usize = 16 << 20;

/// Longest user id accepted by the demo API.
pub const MAX_USER_ID: usize = 128;

/// Failures that stop the daemon (or the `token` subcommand) at start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("shared-memory link: {0}")]
    Link(#[from] shm_queue::Error),
    #[error("{0}")]
    Usage(String),
}

impl Error {
    pub(crate) fn io(what: &'static str, path: &Path, source: std::io::Error) -> Error {
        Error::Io { what, path: path.to_owned(), source }
    }
}

/// Paths inside the data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    pub root: PathBuf,
    /// `--database-url`: a PostgreSQL database instead of [`DataDir::db`].
    pub database_url: Option<String>,
    /// `--recordings-dir`: where recordings go instead of `<root>/recordings`.
    pub recordings_dir: Option<PathBuf>,
}

impl DataDir {
    /// Creates the directory (mode 0700: it holds the secret) if needed.
    pub fn create(root: &Path) -> Result<DataDir, Error> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|e| Error::io("creating data directory", root, e))?;
        Ok(DataDir { root: root.to_owned(), database_url: None, recordings_dir: None })
    }
    /// Keeps the platform database in PostgreSQL at `url` (when `Some`) instead of SQLite.
    pub fn with_database_url(mut self, url: Option<String>) -> DataDir {
        self.database_url = url;
        self
    }
    /// What [`Store::connect`] opens: the PostgreSQL URL if one was given, else the SQLite file.
    pub fn db_location(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| self.db().to_string_lossy().into_owned())
    }
    /// Where signaling keeps its room snapshots (beside the SQLite file by default; given
    /// explicitly, since with PostgreSQL there is no file to be beside).
    pub fn signaling_state(&self) -> PathBuf {
        self.root.join("signaling-state")
    }
    pub fn db(&self) -> PathBuf {
        self.root.join("platform.db")
    }
    pub fn credentials(&self) -> PathBuf {
        self.root.join("credentials.json")
    }
    pub fn tls_dir(&self) -> PathBuf {
        self.root.join("tls")
    }
    pub fn router_socket(&self) -> PathBuf {
        self.root.join("router.sock")
    }
    pub fn signaling_admin_socket(&self) -> PathBuf {
        self.root.join("signaling-admin.sock")
    }
    /// Where the recorder writes (`--recordings-dir` overrides it).
    pub fn recordings(&self) -> PathBuf {
        self.recordings_dir.clone().unwrap_or_else(|| self.root.join("recordings"))
    }
    /// TURN's secret and generated config (`control/src/turn.rs`).
    pub fn turn(&self) -> PathBuf {
        self.root.join("turn")
    }
    /// The compositor's jobs, one file each (`control/src/composite.rs`).
    pub fn compositor_jobs(&self) -> PathBuf {
        self.root.join("compositor").join("jobs")
    }
}

/// Opens the database, ensures the default workspace, and writes `credentials.json` (0600) if
/// it is not there yet.
pub fn open_store(dir: &DataDir) -> Result<(Store, Workspace), Error> {
    let store = Store::connect(&dir.db_location())?;
    info!(database = %store::redact_url(&dir.db_location()), "platform database");
    let ws = store.ensure_default_workspace()?;
    let path = dir.credentials();
    if !path.exists() {
        let body = serde_json::json!({
            "workspace_id": ws.id,
            "workspace": ws.name,
            "access_key": ws.access_key,
            "secret": ws.secret,
        });
        write_private(&path, format!("{body:#}\n").as_bytes())?;
        info!(path = %path.display(), "wrote the default workspace's access key and secret");
    } else {
        info!(path = %path.display(), "workspace credentials");
    }
    Ok((store, ws))
}

/// Writes a file readable by its owner only (created with mode 0600, so never briefly wider).
pub(crate) fn write_private(path: &Path, data: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Error::io("creating", &tmp, e))?;
    f.write_all(data).and_then(|_| f.sync_all()).map_err(|e| Error::io("writing", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io("renaming into place", path, e))
}

/// Checks a demo token request's fields and mints the token: the room is created if new, the
/// role must exist in its template. Shared by `POST /api/token` and `control token`.
pub fn issue_token(
    store: &Store,
    ws: &Workspace,
    room: &str,
    user: &str,
    role: &str,
) -> Result<(String, String), Error> {
    if user.is_empty() || user.len() > MAX_USER_ID {
        return Err(Error::Usage(format!("user must be 1 to {MAX_USER_ID} bytes")));
    }
    store::check_room_name(room)?;
    let template = store.default_template(&ws.id)?;
    // Check the role before creating the room, so a typo does not leave a room behind.
    if !template.roles.contains_key(role) {
        let known: Vec<&str> = template.roles.keys().map(String::as_str).collect();
        return Err(Error::Usage(format!("unknown role {role:?}; known: {}", known.join(", "))));
    }
    let room = store.upsert_room(&ws.id, room, None)?;
    let template = if room.template_id == template.id {
        template
    } else {
        store.template(&room.template_id)?.ok_or_else(|| StoreError::NoTemplate(room.template_id.clone()))?
    };
    if !template.roles.contains_key(role) {
        return Err(Error::Usage(format!("unknown role {role:?} in the room's template")));
    }
    let token = store::token::mint_auth_token(ws, &room.id, user, role, AUTH_TOKEN_TTL, SystemTime::now());
    Ok((token, room.id))
}

/// `control token`: prints an auth token on stdout.
pub fn print_token(args: &TokenArgs) -> Result<(), Error> {
    let dir = DataDir::create(&args.data_dir)?.with_database_url(args.database_url.clone());
    let (store, _) = open_store(&dir)?;
    let ws = named_workspace(&store, &args.workspace)?;
    let (token, _room_id) = issue_token(&store, &ws, &args.room, &args.user, &args.role)?;
    println!("{token}");
    Ok(())
}

fn named_workspace(store: &Store, name: &str) -> Result<Workspace, Error> {
    store.workspace_named(name)?.ok_or_else(|| {
        let known: Vec<String> = store.workspaces().unwrap_or_default().into_iter().map(|w| w.name).collect();
        Error::Usage(format!("no workspace {name:?}; known: {}", known.join(", ")))
    })
}

fn key_pair_json(ws: &Workspace) -> serde_json::Value {
    serde_json::json!({
        "workspace_id": ws.id,
        "workspace": ws.name,
        "access_key": ws.access_key,
        "secret": ws.secret,
    })
}

/// `control management-token`: prints a management token on stdout.
pub fn print_management_token(args: &ManagementTokenArgs) -> Result<(), Error> {
    let dir = DataDir::create(&args.data_dir)?.with_database_url(args.database_url.clone());
    let (store, _) = open_store(&dir)?;
    let ws = named_workspace(&store, &args.workspace)?;
    println!("{}", store::token::mint_management_token(&ws, Duration::from_secs(args.ttl_secs), SystemTime::now()));
    Ok(())
}

/// `control workspace ...`.
pub fn workspace_command(cmd: &WorkspaceCommand) -> Result<(), Error> {
    match cmd {
        WorkspaceCommand::Create(a) => {
            let dir = DataDir::create(&a.data_dir)?.with_database_url(a.database_url.clone());
            let (store, _) = open_store(&dir)?;
            let name = a.name.trim();
            if name.is_empty()
                || name.len() > 64
                || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(Error::Usage(
                    "a workspace name is 1 to 64 characters of a-z, A-Z, 0-9, '-', '_', '.'".into(),
                ));
            }
            let ws = store.create_workspace(name)?;
            println!("{:#}", key_pair_json(&ws));
        }
        WorkspaceCommand::List(a) => {
            let dir = DataDir::create(&a.data_dir)?.with_database_url(a.database_url.clone());
            let (store, _) = open_store(&dir)?;
            for ws in store.workspaces()? {
                println!(
                    "{}",
                    serde_json::json!({"workspace_id": ws.id, "workspace": ws.name, "access_key": ws.access_key})
                );
            }
        }
        WorkspaceCommand::AddKey(a) => {
            let dir = DataDir::create(&a.data_dir)?.with_database_url(a.database_url.clone());
            let (store, _) = open_store(&dir)?;
            let ws = named_workspace(&store, &a.name)?;
            println!("{:#}", key_pair_json(&store.add_credential(&ws.id)?));
        }
        WorkspaceCommand::ListKeys(a) => {
            let dir = DataDir::create(&a.data_dir)?.with_database_url(a.database_url.clone());
            let (store, _) = open_store(&dir)?;
            let ws = named_workspace(&store, &a.name)?;
            for c in store.credentials(&ws.id)? {
                println!(
                    "{}",
                    serde_json::json!({"access_key": c.access_key, "created_at": store::time::format_secs(c.created_at)})
                );
            }
        }
        WorkspaceCommand::RevokeKey(a) => {
            let w = &a.workspace;
            let dir = DataDir::create(&w.data_dir)?.with_database_url(w.database_url.clone());
            let (store, _) = open_store(&dir)?;
            let ws = named_workspace(&store, &w.name)?;
            store.revoke_credential(&ws.id, &a.access_key)?;
            println!("{}", serde_json::json!({"revoked": a.access_key}));
        }
    }
    Ok(())
}

/// Runs the daemon until SIGINT or SIGTERM.
pub async fn run(args: RunArgs) -> Result<(), Error> {
    let mut dir = DataDir::create(&args.data_dir)?.with_database_url(args.database_url.clone());
    dir.recordings_dir = args.recordings_dir.clone();
    let (store, ws) = open_store(&dir)?;
    let template = store.default_template(&ws.id)?;
    let tls = tls::load_or_create(&dir, &args)?;
    info!(cert = %tls.cert_path.display(), sha256 = %tls.fingerprint, "TLS certificate");

    let bin_dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_owned)).ok_or_else(|| {
            Error::Usage("cannot find the directory of the running executable; pass --bin-dir".into())
        })?,
    };
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let link = shm_queue::Segment::create_memfd("router-signaling", shm_queue::Config::channel(1 << 20))?;
    let link_fd = link.inheritable_fd()?;
    // The media tap: one ring per router shard, router → recorder.
    let shards = if args.router_shards > 0 {
        args.router_shards
    } else {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    };
    let tap = shm_queue::Segment::create_memfd(
        "media-tap",
        shm_queue::Config { rings: shards.clamp(1, 16), capacity: TAP_RING_BYTES, max_record: None },
    )?;
    let tap_fd = tap.inheritable_fd()?;
    // The compositor's tap: the same shape, router → compositor.
    let compositor_tap = shm_queue::Segment::create_memfd(
        "compositor-tap",
        shm_queue::Config { rings: shards.clamp(1, 16), capacity: TAP_RING_BYTES, max_record: None },
    )?;
    let compositor_tap_fd = compositor_tap.inheritable_fd()?;
    let (recorder_tx, mut recorder_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let (compositor_tx, mut compositor_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let turn = turn::prepare(&args, &dir, &tls)?;
    let specs = supervisor::child_specs(
        &args,
        &dir,
        &bin_dir,
        &tls,
        &link_fd,
        supervisor::TapSpec {
            fd: &tap_fd,
            recorder_lines: recorder_tx,
            compositor_fd: &compositor_tap_fd,
            compositor_lines: compositor_tx,
        },
        turn,
    );
    let status = supervisor::Status::new(&specs);
    let mut children = Vec::new();
    for spec in specs {
        children.push(tokio::spawn(supervisor::supervise(spec, status.clone(), shutdown_rx.clone())));
    }

    let store = Arc::new(Mutex::new(store));
    let admin = Arc::new(signaling_admin::AdminClient::new(dir.signaling_admin_socket()));
    // Bound before the jobs start: HLS playback URLs carry the port.
    let listener = tokio::net::TcpListener::bind(args.listen).await.map_err(|e| Error::Io {
        what: "binding",
        path: PathBuf::from(args.listen.to_string()),
        source: e,
    })?;
    let local = listener.local_addr().unwrap_or(args.listen);
    let port = local.port();
    let recorder = recording::Recorder {
        store: store.clone(),
        admin: admin.clone(),
        dir: dir.recordings(),
        jobs_dir: dir.compositor_jobs(),
        playback_base: format!("https://{}:{port}", args.public_host),
        handled: Arc::default(),
    };
    {
        let recorder = recorder.clone();
        tokio::spawn(async move {
            while let Some(line) = recorder_rx.recv().await {
                recorder.handle_line(&line).await;
            }
        });
    }
    {
        let recorder = recorder.clone();
        tokio::spawn(async move {
            while let Some(line) = compositor_rx.recv().await {
                recorder.handle_compositor_line(&line).await;
            }
        });
    }
    tokio::spawn(recorder.clone().run(shutdown_rx.clone()));
    let state = http::AppState {
        store,
        workspace: ws,
        template_id: template.id.clone(),
        roles: http::roles_by_priority(&template),
        init_endpoint: format!("https://{}:{}", args.public_host, args.signaling_listen.port()),
        demo_dir: args.demo_dir.clone(),
        prebuilt_dir: args.prebuilt_dir.clone(),
        status,
        admin,
        recorder,
        router_socket: dir.router_socket(),
        metrics: Arc::default(),
        demo_tokens_open: args.listen.ip().is_loopback() || args.open_demo_tokens,
        limits: Arc::new(http::limits::RateLimits::new(http::limits::RateLimitConfig {
            room_code_per_minute: args.rate_limit_room_code,
            auth_failures_per_minute: args.rate_limit_auth_failures,
        })),
    };
    if args.open_demo_tokens && !args.listen.ip().is_loopback() {
        warn!(
            listen = %args.listen,
            "--open-demo-tokens: ANYONE WHO CAN REACH {} CAN JOIN ANY ROOM AS ANY ROLE through /api/token and \
             /api/room-codes; use it on a trusted network only",
            args.listen
        );
    }
    // Signaling writes events from its own process, so the dispatcher finds them by polling
    // (at most 1 s); the wake-up is for writers inside this process.
    let _webhook_wake = webhooks::spawn(state.store.clone(), shutdown_rx.clone());
    tokio::spawn(sweep_sessions(state.store.clone(), shutdown_rx.clone()));
    let poll = (args.cert_poll_secs > 0).then(|| Duration::from_secs(args.cert_poll_secs));
    tokio::spawn(reload::watch(tls.clone(), state.status.clone(), poll, shutdown_rx.clone()));
    let server = tokio::spawn(http::serve(
        listener,
        tls.server_config.clone(),
        http::router(state),
        args.https_limits(),
        shutdown_rx.clone(),
    ));
    info!(listen = %local, "serving HTTPS");
    println!("demo: https://{}:{port}/", args.public_host);
    // Scripts wait for this line; stdout may be a pipe, so flush now.
    let _ = std::io::stdout().flush();

    wait_for_signal().await;
    info!("shutting down");
    let _ = shutdown_tx.send(true);
    for child in children {
        let _ = child.await;
    }
    let _ = server.await;
    // The link's fds stay open until the children are gone, so a restart could always attach.
    drop(link_fd);
    drop(link);
    drop(tap_fd);
    drop(tap);
    drop(compositor_tap_fd);
    drop(compositor_tap);
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => {
            tracing::error!("cannot install signal handlers; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// How often [`sweep_sessions`] looks for sessions past their cap.
const SESSION_SWEEP: Duration = Duration::from_secs(60);

/// Closes sessions that outlived their room's cap without signaling closing them (signaling
/// ends live rooms at the cap itself; this catches sessions left open by a signaling that died
/// with its state, so the API and the webhooks still say they ended).
async fn sweep_sessions(store: Arc<Mutex<Store>>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SESSION_SWEEP) => {}
            _ = shutting_down(&mut shutdown) => return,
        }
        let store = store.clone();
        let closed =
            tokio::task::spawn_blocking(move || store.lock_unpoisoned().expire_sessions(SystemTime::now())).await;
        match closed {
            Ok(Ok(closed)) => {
                for (room, session) in closed {
                    info!(%room, %session, "closed a session that reached its maximum duration");
                }
            }
            Ok(Err(e)) => tracing::warn!("session sweep: {e}"),
            Err(e) => tracing::warn!("session sweep task: {e}"),
        }
    }
}

/// Resolves once `shutdown` turns true (or its sender is gone). Holds no borrow of the channel
/// across the await, so the futures that select on it stay `Send`.
pub(crate) async fn shutting_down(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

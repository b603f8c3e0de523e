//! The platform the end-to-end signaling tests run against: a real router (one shard, in this
//! process) linked to signaling through the shared-memory queue, a real SQLite store, and
//! signaling's HTTPS/WSS server on a self-signed certificate. Each test file builds its hub
//! (what it varies) and gets the rest from [`start`].

#![allow(clippy::unwrap_used)] // a test harness: a failed unwrap is a failed test
#![allow(dead_code)] // each test file uses its part

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use signaling::hub::Hub;
use signaling::router_link::RouterLink;
use signaling::server::App;

/// A running platform; the directory and the router go when it drops.
pub struct Harness {
    pub addr: SocketAddr,
    /// A client TLS config that trusts the server's certificate.
    pub tls: Arc<rustls::ClientConfig>,
    pub store: store::Store,
    pub workspace: store::Workspace,
    /// The test's directory (the database, the router's and the admin socket live there).
    pub dir: PathBuf,
    pub hub: Arc<Hub>,
    pub guard: Guard,
}

/// Keeps the router running and removes the test's directory when dropped.
pub struct Guard {
    dir: PathBuf,
    _router: Arc<router::Router>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts the router, the store (after `prepare` has seen its file, its store and its default
/// workspace), the hub `hub` builds from the router link, the directory and the database path,
/// and the HTTPS/WSS server.
pub async fn start(
    prefix: &str,
    prepare: impl FnOnce(&Path, &store::Store, &store::Workspace),
    hub: impl FnOnce(Arc<RouterLink>, &Path, &Path) -> Arc<Hub>,
) -> Harness {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = std::env::temp_dir().join(format!("{prefix}-{}-{}", std::process::id(), store::new_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("platform.db");
    let store = store::Store::open(&db).unwrap();
    let workspace = store.ensure_default_workspace().unwrap();
    prepare(&db, &store, &workspace);

    let cfg = router::config::Config {
        shards: 1,
        pin: false,
        base_port: 0,
        control_socket: dir.join("router.sock"),
        ..router::config::Config::default()
    };
    let router = Arc::new(router::Router::start(&cfg).unwrap());
    let segment = shm_queue::Segment::create_memfd("test-link", shm_queue::Config::channel(1 << 20)).unwrap();
    let other = shm_queue::Segment::open_fd(segment.inheritable_fd().unwrap()).unwrap();
    router::link::serve_link(router.clone(), segment).unwrap();
    let (link, events) = RouterLink::attach(other).unwrap();
    let hub = hub(link, &dir, &db);
    tokio::spawn(hub.clone().route_events(events));

    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let served = Arc::new(https_server::ReloadableCert::load(dir.join("cert.pem"), dir.join("key.pem")).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = App::new(hub.clone(), store::Store::open(&db).unwrap(), format!("wss://localhost:{}/ws", addr.port()));
    tokio::spawn(https_server::serve(
        listener,
        served.server_config(),
        signaling::server::router(app),
        https_server::Limits::default(),
        std::future::pending(),
    ));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let tls = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let guard = Guard { dir: dir.clone(), _router: router };
    Harness { addr, tls: Arc::new(tls), store, workspace, dir, hub, guard }
}

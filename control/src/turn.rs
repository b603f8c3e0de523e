//! TURN: the router's own (`router/src/turn`), over UDP and TCP on `--turn-port` and TLS on
//! `--turn-tls-port` (control's certificate, which the router reads again when it changes). It
//! relays only into the router's shards, so it is no open relay into the host's network, and
//! a relayed datagram costs about what a direct one does (docs/performance.md).
//!
//! Clients get time-limited credentials at signaling's `/init` ("REST API for TURN": the
//! username `<expiry>:<peer>`, the password an HMAC of it under the secret in
//! `<data-dir>/turn/secret`, made once, mode 0600), so the official SDK relays with no app
//! change. docs/decisions.md says why the router relays and not coturn.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::cli::RunArgs;
use crate::tls::Tls;
use crate::{DataDir, Error};

/// The router's TURN flags and what signaling hands out.
#[derive(Debug)]
pub struct Turn {
    /// The router's flags for its TURN listeners.
    pub router_args: Vec<OsString>,
    /// The URLs given to clients, in the order they should try them.
    pub urls: Vec<String>,
    pub secret_file: PathBuf,
}

/// Writes the secret (once) and returns the router's flags and the clients' URLs; `None` when
/// TURN is off (`--no-turn`).
pub fn prepare(args: &RunArgs, dir: &DataDir, tls: &Tls) -> Result<Option<Turn>, Error> {
    if args.no_turn {
        return Ok(None);
    }
    let turn_dir = dir.turn();
    create_private_dir(&turn_dir)?;
    let secret_file = turn_dir.join("secret");
    if !secret_file.exists() {
        write_private(&secret_file, &store::random_secret())?;
    }
    let host = &args.public_host;
    // UDP first: the cheapest path for a client whose network lets UDP out to TURN's port only.
    let urls = vec![
        format!("turn:{host}:{}?transport=udp", args.turn_port),
        format!("turn:{host}:{}?transport=tcp", args.turn_port),
        format!("turns:{host}:{}?transport=tcp", args.turn_tls_port),
    ];
    let at = |port| OsString::from(SocketAddr::new(args.router_ip, port).to_string());
    let router_args = vec![
        "--turn-udp-listen".into(),
        at(args.turn_port),
        "--turn-listen".into(),
        at(args.turn_port),
        "--turn-tls-listen".into(),
        at(args.turn_tls_port),
        "--turn-cert".into(),
        tls.cert_path.clone().into_os_string(),
        "--turn-key".into(),
        tls.key_path.clone().into_os_string(),
        "--turn-secret-file".into(),
        secret_file.clone().into_os_string(),
        "--turn-realm".into(),
        host.into(),
    ];
    Ok(Some(Turn { router_args, urls, secret_file }))
}

fn create_private_dir(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path).map_err(|e| Error::io("creating", path, e))
}

fn write_private(path: &Path, text: &str) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io("writing", path, e))?;
    f.write_all(text.as_bytes()).map_err(|e| Error::io("writing", path, e))
}

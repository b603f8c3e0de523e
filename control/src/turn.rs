//! TURN, in two parts sharing one secret:
//!
//! - over TCP (`--turn-port`) and TLS (`--turn-tls-port`, control's certificate): the router's
//!   own TURN (`router/src/turn`), which relays into its shards without a second socket;
//! - over UDP (`--turn-port`): coturn (Debian's `turnserver`), when installed, started and
//!   supervised by control like the other children, with a config generated at every start in
//!   `<data-dir>/turn/`, relaying only to the router's addresses.
//!
//! Clients get time-limited credentials at signaling's `/init` ("REST API for TURN": coturn's
//! `use-auth-secret`, the secret in `<data-dir>/turn/secret`, made once, mode 0600), so the
//! official SDK relays through either with no app change. Neither is an open relay into the
//! host's network. docs/decisions.md says why this split.

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use tracing::warn;

use crate::cli::RunArgs;
use crate::supervisor::ChildSpec;
use crate::tls::Tls;
use crate::{DataDir, Error};

/// What control runs for TURN and what signaling hands out.
#[derive(Debug)]
pub struct Turn {
    /// coturn, for TURN over UDP; `None` when it is not installed.
    pub child: Option<ChildSpec>,
    /// The router's flags for its TURN over TCP and TLS.
    pub router_args: Vec<OsString>,
    /// The URLs given to clients, in the order they should try them.
    pub urls: Vec<String>,
    pub secret_file: PathBuf,
}

/// Where `turnserver` is: `--turnserver-bin`, else on the PATH or in /usr/bin.
fn find_turnserver(args: &RunArgs) -> Option<PathBuf> {
    if let Some(p) = &args.turnserver_bin {
        return Some(p.clone());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain([PathBuf::from("/usr/bin")]).map(|d| d.join("turnserver")).find(|p| p.is_file())
}

/// Writes the secret (once) and coturn's config, and returns what to run; `None` when TURN is
/// off (`--no-turn`). Without coturn installed, TURN over UDP is left out (logged).
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
    let secret = std::fs::read_to_string(&secret_file).map_err(|e| Error::io("reading", &secret_file, e))?;
    let host = &args.public_host;
    let mut urls = vec![
        format!("turn:{host}:{}?transport=tcp", args.turn_port),
        format!("turns:{host}:{}?transport=tcp", args.turn_tls_port),
    ];
    let router_args: Vec<OsString> = [
        "--turn-listen".into(),
        SocketAddr::new(args.router_ip, args.turn_port).to_string().into(),
        "--turn-tls-listen".into(),
        SocketAddr::new(args.router_ip, args.turn_tls_port).to_string().into(),
        "--turn-cert".into(),
        tls.cert_path.clone().into_os_string(),
        "--turn-key".into(),
        tls.key_path.clone().into_os_string(),
        "--turn-secret-file".into(),
        secret_file.clone().into_os_string(),
    ]
    .into();
    let child = match find_turnserver(args) {
        None => {
            warn!(
                "no TURN over UDP: `turnserver` not found (apt-get install coturn, or --turnserver-bin); TURN over \
                 TCP and TLS (the router's) and ICE-TCP still reach clients whose network blocks UDP"
            );
            None
        }
        Some(program) => {
            let config = turn_dir.join("turnserver.conf");
            write_private(&config, &config_text(args, &turn_dir, secret.trim()))?;
            // UDP first: the cheapest path a client behind a UDP-friendly firewall can take.
            urls.insert(0, format!("turn:{host}:{}?transport=udp", args.turn_port));
            Some(ChildSpec {
                name: "turn",
                program,
                args: vec![OsString::from("-c"), config.into_os_string()],
                stdout_lines: None,
                nice: 0,
            })
        }
    };
    Ok(Some(Turn { child, router_args, urls, secret_file }))
}

/// The addresses TURN may relay to: the router's. A wildcard router bind with nothing
/// announced leaves them unknown, and then TURN may relay anywhere but loopback (logged).
fn router_addresses(args: &RunArgs) -> Vec<IpAddr> {
    let mut ips = args.announce_ips.clone();
    if !args.router_ip.is_unspecified() && !ips.contains(&args.router_ip) {
        ips.push(args.router_ip);
    }
    ips
}

/// coturn's configuration (`turnserver.conf` syntax: one `key=value` or flag a line): UDP
/// only, TCP and TLS being the router's.
fn config_text(args: &RunArgs, turn_dir: &Path, secret: &str) -> String {
    let mut lines = vec![
        "# Written by control at every start from its flags; edits here are overwritten.".to_string(),
        format!("listening-port={}", args.turn_port),
        "no-tcp".into(),
        "no-tls".into(),
        "no-dtls".into(),
    ];
    if !args.router_ip.is_unspecified() {
        // Beside the router: the relay's traffic to it stays on this host.
        lines.push(format!("listening-ip={}", args.router_ip));
        lines.push(format!("relay-ip={}", args.router_ip));
    }
    for ip in &args.announce_ips {
        if args.router_ip.is_unspecified() || ip.is_ipv4() != args.router_ip.is_ipv4() {
            lines.push(format!("external-ip={ip}"));
        } else {
            // The public address clients see, and the private one it maps to.
            lines.push(format!("external-ip={ip}/{}", args.router_ip));
        }
    }
    let (min, max) = args.turn_relay_ports;
    lines.extend([
        format!("min-port={min}"),
        format!("max-port={max}"),
        "use-auth-secret".into(),
        format!("static-auth-secret={secret}"),
        format!("realm={}", args.public_host),
        "fingerprint".into(),
        "no-cli".into(),
        "no-multicast-peers".into(),
        format!("userdb={}", turn_dir.join("turndb").display()),
        format!("pidfile={}", turn_dir.join("turnserver.pid").display()),
        "log-file=stdout".into(),
        "simple-log".into(),
    ]);
    let peers = router_addresses(args);
    if peers.is_empty() {
        warn!("TURN may relay to any address but loopback: bind the router to an address or give --announce-ip");
    } else {
        lines.push("denied-peer-ip=0.0.0.0-255.255.255.255".into());
        lines.push("denied-peer-ip=::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".into());
        for ip in &peers {
            lines.push(format!("allowed-peer-ip={ip}"));
        }
        if peers.iter().any(IpAddr::is_loopback) {
            lines.push("allow-loopback-peers".into());
        }
    }
    lines.join("\n") + "\n"
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

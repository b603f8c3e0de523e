//! The HTTPS certificate: the operator's (`--cert`/`--key`), or a self-signed one made on first
//! start in `<data-dir>/tls/` and reused after, so a browser exception, once accepted, holds.
//!
//! The self-signed certificate names `localhost`, `127.0.0.1`, `::1` and `--public-host`. Its
//! SHA-256 fingerprint is logged at every start so it can be checked when accepting it. Delete
//! `<data-dir>/tls/` to get a new one (for instance after changing `--public-host`).
//!
//! The certificate is served through an [`https_server::ReloadableCert`]: [`Tls::reload`]
//! reads the files again and new handshakes get the new certificate, while open connections go
//! on (`reload.rs` calls it on SIGHUP and when the files change).

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::Arc;

use https_server::ReloadableCert;
use tracing::info;

use crate::cli::RunArgs;
use crate::{DataDir, Error, write_private};

/// The certificate in use, and a rustls server configuration that serves it.
#[derive(Debug, Clone)]
pub struct Tls {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// SHA-256 of the leaf certificate when it was loaded, as colon-separated uppercase hex
    /// (what browsers show).
    pub fingerprint: String,
    pub server_config: Arc<rustls::ServerConfig>,
    cert: Arc<ReloadableCert>,
}

impl Tls {
    /// Reads the certificate and key files again and serves them from the next handshake on;
    /// returns the new certificate's fingerprint. On an error (a half-written file, a key that
    /// does not match) the old certificate stays.
    pub fn reload(&self) -> Result<String, Error> {
        self.cert.reload().map_err(|e| Error::Tls(e.0))
    }
}

/// Uses `--cert`/`--key` if given; else loads `<data-dir>/tls/{cert,key}.pem`, creating them on
/// first start.
pub fn load_or_create(dir: &DataDir, args: &RunArgs) -> Result<Tls, Error> {
    let (cert_path, key_path) = match (&args.cert, &args.key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => {
            let tls_dir = dir.tls_dir();
            let cert = tls_dir.join("cert.pem");
            let key = tls_dir.join("key.pem");
            if !(cert.exists() && key.exists()) {
                create_self_signed(&tls_dir, &args.public_host)?;
                info!(dir = %tls_dir.display(), "created a self-signed certificate");
            }
            (cert, key)
        }
    };
    load(cert_path, key_path)
}

fn create_self_signed(tls_dir: &std::path::Path, public_host: &str) -> Result<(), Error> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(tls_dir).map_err(|e| Error::io("creating", tls_dir, e))?;
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    if !names.iter().any(|n| n == public_host) {
        names.push(public_host.to_owned());
    }
    // rcgen makes IP-address SANs of the names that parse as addresses, DNS names of the rest.
    let certified = rcgen::generate_simple_self_signed(names).map_err(|e| Error::Tls(e.to_string()))?;
    write_private(&tls_dir.join("key.pem"), certified.signing_key.serialize_pem().as_bytes())?;
    write_private(&tls_dir.join("cert.pem"), certified.cert.pem().as_bytes())?;
    Ok(())
}

fn load(cert_path: PathBuf, key_path: PathBuf) -> Result<Tls, Error> {
    let cert = Arc::new(ReloadableCert::load(cert_path.clone(), key_path.clone()).map_err(|e| Error::Tls(e.0))?);
    Ok(Tls { cert_path, key_path, fingerprint: cert.fingerprint(), server_config: cert.server_config(), cert })
}

/// SHA-256 of a DER certificate, `AB:CD:...`.
pub fn fingerprint(der: &[u8]) -> String {
    https_server::fingerprint(der)
}

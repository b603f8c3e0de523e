//! The server certificate, reloadable: every handshake asks [`ReloadableCert`] for the current
//! one, and [`ReloadableCert::reload`] swaps it whole.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// A certificate that cannot be used.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("{0}")]
pub struct TlsError(pub String);

/// The certificate and key files, and the pair every new handshake gets.
#[derive(Debug)]
pub struct ReloadableCert {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    current: RwLock<(Arc<CertifiedKey>, String)>,
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(PoisonError::into_inner).0.clone())
    }
}

impl ReloadableCert {
    /// Reads the chain and key (PEM), checked to belong together.
    pub fn load(cert_path: PathBuf, key_path: PathBuf) -> Result<ReloadableCert, TlsError> {
        let (key, fingerprint) = certified_key(&cert_path, &key_path)?;
        Ok(ReloadableCert { cert_path, key_path, current: RwLock::new((Arc::new(key), fingerprint)) })
    }

    /// Reads the files again and serves them from the next handshake on; returns the new
    /// fingerprint. On an error (a half-written file, a key that does not match) the old
    /// certificate stays.
    pub fn reload(&self) -> Result<String, TlsError> {
        let (key, fingerprint) = certified_key(&self.cert_path, &self.key_path)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = (Arc::new(key), fingerprint.clone());
        Ok(fingerprint)
    }

    /// SHA-256 of the leaf certificate served now, `AB:CD:...` (what browsers show).
    pub fn fingerprint(&self) -> String {
        self.current.read().unwrap_or_else(PoisonError::into_inner).1.clone()
    }

    /// A rustls server configuration serving this certificate, TLS 1.2 and 1.3, ALPN
    /// `http/1.1` (the server speaks HTTP/1.1 only).
    pub fn server_config(self: &Arc<Self>) -> Arc<rustls::ServerConfig> {
        self.server_config_with_alpn(vec![b"http/1.1".to_vec()])
    }

    /// As [`ReloadableCert::server_config`], offering the ALPN protocols `alpn` (none: the
    /// client's offer is ignored).
    pub fn server_config_with_alpn(self: &Arc<Self>, alpn: Vec<Vec<u8>>) -> Arc<rustls::ServerConfig> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            // The provider is aws-lc-rs's default, which has both versions.
            .unwrap_or_else(|e| unreachable!("aws-lc-rs supports TLS 1.2 and 1.3: {e}"))
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = alpn;
        Arc::new(config)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The chain and key from their PEM files, checked to match, and the leaf's fingerprint.
fn certified_key(cert_path: &Path, key_path: &Path) -> Result<(CertifiedKey, String), TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| TlsError(format!("reading {}: {e}", cert_path.display())))?;
    let Some(leaf) = certs.first() else {
        return Err(TlsError(format!("no certificate in {}", cert_path.display())));
    };
    let fingerprint = fingerprint(leaf);
    let key =
        PrivateKeyDer::from_pem_file(key_path).map_err(|e| TlsError(format!("reading {}: {e}", key_path.display())))?;
    let key = CertifiedKey::from_der(certs, key, &provider())
        .map_err(|e| TlsError(format!("{} and {}: {e}", cert_path.display(), key_path.display())))?;
    Ok((key, fingerprint))
}

/// SHA-256 of a DER certificate, `AB:CD:...`.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    digest.as_ref().iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

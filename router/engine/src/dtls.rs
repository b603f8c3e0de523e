//! DTLS for one transport: dimpl's sans-IO server, plus the checks WebRTC adds on top of it.
//!
//! dimpl runs the handshake and hands out the peer's leaf certificate and the exported SRTP
//! keying material; this module verifies that certificate against the fingerprint the client
//! signaled (RFC 8842) and turns the keying material into our SRTP sessions. The router is
//! always the DTLS server (`a=setup:passive`), so the handshake is driven by the client's
//! packets and dimpl's retransmission timer, never by a blocking call.
//!
//! The client may start the handshake before signaling has delivered its fingerprint (the
//! ICE check and ClientHello can overtake the SDP answer); the certificate then waits and is
//! verified in [`DtlsState::set_remote_fingerprint`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use aws_lc_rs::digest;

use crate::srtp::{SrtpProfile, SrtpSession, sessions_from_dtls_keying_material};

/// A SHA-256 certificate fingerprint, as in SDP `a=fingerprint:sha-256 AB:CD:...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of_der(der: &[u8]) -> Fingerprint {
        let d = digest::digest(&digest::SHA256, der);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Fingerprint(out)
    }

    /// Parses `sha-256 AB:CD:...` (the algorithm name is optional and case-insensitive).
    pub fn parse(text: &str) -> Result<Fingerprint, String> {
        let text = text.trim();
        let hex = match text.split_once(' ') {
            Some((alg, rest)) if alg.eq_ignore_ascii_case("sha-256") => rest.trim(),
            Some((alg, _)) => return Err(format!("unsupported fingerprint algorithm {alg:?}; use sha-256")),
            None => text,
        };
        let mut out = [0u8; 32];
        let mut parts = hex.split(':');
        for byte in out.iter_mut() {
            let part = parts.next().ok_or("fingerprint has fewer than 32 bytes")?;
            *byte = u8::from_str_radix(part, 16).map_err(|_| format!("bad hex byte {part:?}"))?;
        }
        if parts.next().is_some() {
            return Err("fingerprint has more than 32 bytes".into());
        }
        Ok(Fingerprint(out))
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("sha-256 ")?;
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

/// The shard's certificate: one per engine, as mediasoup has one per worker.
#[derive(Debug, Clone)]
pub struct Certificate {
    pub(crate) inner: dimpl::DtlsCertificate,
    pub fingerprint: Fingerprint,
}

impl Certificate {
    /// A fresh self-signed ECDSA P-256 certificate.
    pub fn generate() -> Result<Certificate, String> {
        let inner = dimpl::certificate::generate_self_signed_certificate().map_err(|e| format!("{e:?}"))?;
        let fingerprint = Fingerprint::of_der(&inner.certificate);
        Ok(Certificate { inner, fingerprint })
    }
}

/// The dimpl configuration shared by all transports of a shard.
pub fn server_config() -> Result<Arc<dimpl::Config>, String> {
    dimpl::Config::builder()
        // WebRTC authenticates both ends by certificate fingerprint.
        .require_client_certificate(true)
        .mtu(1200)
        .build()
        .map(Arc::new)
        .map_err(|e| format!("{e:?}"))
}

/// Something the DTLS state produced for its transport.
#[derive(Debug)]
pub enum DtlsOutput {
    /// Handshake complete, certificate verified, SRTP keys ready.
    Ready { profile: SrtpProfile, outbound: Box<SrtpSession>, inbound: Box<SrtpSession> },
    /// The transport cannot continue.
    Failed(DtlsFailure),
}

/// Why the DTLS side of a transport failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DtlsFailure {
    FingerprintMismatch,
    Protocol(String),
    Closed,
}

/// The DTLS side of one transport.
pub struct DtlsState {
    dtls: dimpl::Dtls,
    remote_fingerprint: Option<Fingerprint>,
    peer_cert: Option<Fingerprint>,
    keying: Option<(SrtpProfile, Vec<u8>)>,
    ready: bool,
    failed: bool,
    next_timeout: Option<Instant>,
    /// Received application data (SCTP packets), until the engine takes it.
    app_in: VecDeque<Vec<u8>>,
}

/// Received application data records held for the engine, at most: it takes them after every
/// datagram, so more would be a peer flooding one datagram with records.
const MAX_APP_IN: usize = 64;

impl std::fmt::Debug for DtlsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsState")
            .field("ready", &self.ready)
            .field("failed", &self.failed)
            .field("remote_fingerprint", &self.remote_fingerprint.is_some())
            .finish()
    }
}

impl DtlsState {
    pub fn new(config: Arc<dimpl::Config>, cert: &Certificate, now: Instant) -> DtlsState {
        // Auto-sense: DTLS 1.2 for today's browsers, 1.3 for clients that offer it.
        let dtls = dimpl::Dtls::new_auto(config, cert.inner.clone(), now);
        DtlsState {
            dtls,
            remote_fingerprint: None,
            peer_cert: None,
            keying: None,
            ready: false,
            failed: false,
            next_timeout: None,
            app_in: VecDeque::new(),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        if self.ready || self.failed { None } else { self.next_timeout }
    }

    /// Sets the fingerprint from signaling; verifies a certificate that arrived before it.
    pub fn set_remote_fingerprint(&mut self, fp: Fingerprint) -> Option<DtlsOutput> {
        self.remote_fingerprint = Some(fp);
        self.try_ready()
    }

    /// Feeds one DTLS datagram; `send` receives every record to transmit.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        packet: &[u8],
        scratch: &mut Vec<u8>,
        send: &mut dyn FnMut(&[u8]),
    ) -> Option<DtlsOutput> {
        if self.failed {
            return None;
        }
        if let Err(e) = self.dtls.handle_timeout(now).and_then(|_| self.dtls.handle_packet(packet)) {
            self.failed = true;
            return Some(DtlsOutput::Failed(DtlsFailure::Protocol(format!("{e:?}"))));
        }
        self.drain(scratch, send)
    }

    /// The next application data record the peer sent (one SCTP packet in WebRTC).
    pub fn poll_application_data(&mut self) -> Option<Vec<u8>> {
        self.app_in.pop_front()
    }

    /// Encrypts `data` as application data; `send` receives the records to transmit.
    pub fn send_application_data(
        &mut self,
        data: &[u8],
        scratch: &mut Vec<u8>,
        send: &mut dyn FnMut(&[u8]),
    ) -> Result<(), DtlsFailure> {
        if self.failed || !self.ready {
            return Err(DtlsFailure::Closed);
        }
        match self.dtls.send_application_data(data) {
            Ok(n) if n == data.len() => {}
            Ok(_) => return Err(DtlsFailure::Protocol("application data not accepted".into())),
            Err(e) => return Err(DtlsFailure::Protocol(format!("{e:?}"))),
        }
        match self.drain(scratch, send) {
            Some(DtlsOutput::Failed(f)) => Err(f),
            _ => Ok(()),
        }
    }

    /// Drives retransmissions of handshake flights.
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        scratch: &mut Vec<u8>,
        send: &mut dyn FnMut(&[u8]),
    ) -> Option<DtlsOutput> {
        if self.failed || self.ready {
            return None;
        }
        if self.next_timeout.is_some_and(|t| t > now) {
            return None;
        }
        if let Err(e) = self.dtls.handle_timeout(now) {
            self.failed = true;
            return Some(DtlsOutput::Failed(DtlsFailure::Protocol(format!("{e:?}"))));
        }
        self.drain(scratch, send)
    }

    fn drain(&mut self, scratch: &mut Vec<u8>, send: &mut dyn FnMut(&[u8])) -> Option<DtlsOutput> {
        let mut result = None;
        if scratch.len() < 2048 {
            scratch.resize(2048, 0);
        }
        loop {
            match self.dtls.poll_output(scratch) {
                dimpl::Output::Packet(p) => send(p),
                dimpl::Output::BufferTooSmall { needed } => {
                    let needed = needed.max(scratch.len() + 1);
                    scratch.resize(needed, 0);
                }
                dimpl::Output::Timeout(t) => {
                    self.next_timeout = Some(t);
                    break;
                }
                dimpl::Output::PeerCert(der) => self.peer_cert = Some(Fingerprint::of_der(der)),
                dimpl::Output::KeyingMaterial(km, profile) => {
                    let profile = match profile {
                        dimpl::SrtpProfile::AEAD_AES_128_GCM => SrtpProfile::AeadAes128Gcm,
                        dimpl::SrtpProfile::AEAD_AES_256_GCM => SrtpProfile::AeadAes256Gcm,
                        dimpl::SrtpProfile::AES128_CM_SHA1_80 => SrtpProfile::Aes128CmHmacSha1_80,
                        other => {
                            self.failed = true;
                            return Some(DtlsOutput::Failed(DtlsFailure::Protocol(format!(
                                "unsupported SRTP profile {other:?}"
                            ))));
                        }
                    };
                    self.keying = Some((profile, km.to_vec()));
                }
                dimpl::Output::CloseNotify => {
                    self.failed = true;
                    return Some(DtlsOutput::Failed(DtlsFailure::Closed));
                }
                dimpl::Output::ApplicationData(data) if self.app_in.len() < MAX_APP_IN => {
                    self.app_in.push_back(data.to_vec());
                }
                // Connected: readiness is ours to decide (fingerprint check, `try_ready`);
                // application data over MAX_APP_IN is dropped (SCTP retransmits what mattered).
                _ => {}
            }
        }
        if result.is_none() {
            result = self.try_ready();
        }
        result
    }

    fn try_ready(&mut self) -> Option<DtlsOutput> {
        if self.ready || self.failed {
            return None;
        }
        let (Some(expected), Some(actual)) = (self.remote_fingerprint, self.peer_cert) else {
            return None;
        };
        if expected != actual {
            self.failed = true;
            return Some(DtlsOutput::Failed(DtlsFailure::FingerprintMismatch));
        }
        let (profile, material) = self.keying.take()?;
        match sessions_from_dtls_keying_material(profile, &material, true) {
            Ok((outbound, inbound)) => {
                self.ready = true;
                Some(DtlsOutput::Ready { profile, outbound: Box::new(outbound), inbound: Box::new(inbound) })
            }
            Err(e) => {
                self.failed = true;
                Some(DtlsOutput::Failed(DtlsFailure::Protocol(format!("SRTP key setup: {e}"))))
            }
        }
    }
}

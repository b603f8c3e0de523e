//! A minimal TURN client (RFC 8656) over UDP, TCP or TLS, enough to relay a str0m peer through
//! a real TURN server: an authenticated Allocate (long-term credentials, the "REST API for
//! TURN" kind coturn and the router check), one ChannelBind towards the router, then
//! ChannelData both ways. No refreshes: an allocation lives 10 minutes, longer than any test or
//! bench.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MAGIC: u32 = 0x2112_A442;
const ALLOCATE: u16 = 0x0003;
const CHANNEL_BIND: u16 = 0x0009;
const SUCCESS: u16 = 0x0100;
const ERROR: u16 = 0x0110;
const USERNAME: u16 = 0x0006;
const MESSAGE_INTEGRITY: u16 = 0x0008;
const ERROR_CODE: u16 = 0x0009;
const CHANNEL_NUMBER: u16 = 0x000C;
const XOR_PEER_ADDRESS: u16 = 0x0012;
const REALM: u16 = 0x0014;
const NONCE: u16 = 0x0015;
const XOR_RELAYED_ADDRESS: u16 = 0x0016;
const REQUESTED_TRANSPORT: u16 = 0x0019;

/// The channel this client binds to its one peer.
pub const CHANNEL: u16 = 0x4000;

/// A relay allocated on a TURN server, its channel bound to `peer`.
#[derive(Debug, Clone)]
pub struct Allocation {
    pub server: SocketAddr,
    /// The address the peer sees this client at.
    pub relayed: SocketAddr,
    pub peer: SocketAddr,
}

/// Allocates a UDP relay on `server` with a long-term credential and binds [`CHANNEL`] to
/// `peer`. `socket` is the client's (blocking calls with a timeout are made on it; the caller
/// may make it non-blocking after).
pub fn allocate(
    socket: &UdpSocket,
    server: SocketAddr,
    username: &str,
    password: &str,
    peer: SocketAddr,
) -> Result<Allocation, String> {
    socket.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
    let relayed = allocate_with(&mut |request| transact(socket, server, request), username, password, peer)?;
    Ok(Allocation { server, relayed, peer })
}

/// As [`allocate`], over a TCP or TLS connection to the server.
pub fn allocate_on_stream(
    stream: &mut TurnStream,
    username: &str,
    password: &str,
    peer: SocketAddr,
) -> Result<Allocation, String> {
    let server = stream.socket.peer_addr().map_err(|e| e.to_string())?;
    let relayed = allocate_with(&mut |request| stream.transact(request), username, password, peer)?;
    Ok(Allocation { server, relayed, peer })
}

/// Sends a request and returns its answer.
type Transact<'a> = dyn FnMut(&[u8]) -> Result<Vec<u8>, String> + 'a;

/// The exchange itself.
fn allocate_with(
    transact: &mut Transact<'_>,
    username: &str,
    password: &str,
    peer: SocketAddr,
) -> Result<SocketAddr, String> {
    // The first Allocate is refused with 401, a realm and a nonce.
    let first = transact(&message(ALLOCATE, &[(REQUESTED_TRANSPORT, vec![17, 0, 0, 0])], None))?;
    let (realm, nonce) = match (attr(&first, REALM), attr(&first, NONCE)) {
        (Some(r), Some(n)) => (r.to_vec(), n.to_vec()),
        _ => return Err(format!("the first Allocate was not answered with a realm and nonce: {}", error_of(&first))),
    };
    let key = long_term_key(username, &String::from_utf8_lossy(&realm), password);
    let auth = |mut attrs: Vec<(u16, Vec<u8>)>| {
        attrs.push((USERNAME, username.as_bytes().to_vec()));
        attrs.push((REALM, realm.clone()));
        attrs.push((NONCE, nonce.clone()));
        attrs
    };
    let reply = transact(&message(ALLOCATE, &auth(vec![(REQUESTED_TRANSPORT, vec![17, 0, 0, 0])]), Some(&key)))?;
    if msg_type(&reply) != ALLOCATE | SUCCESS {
        return Err(format!("Allocate refused: {}", error_of(&reply)));
    }
    let relayed =
        attr(&reply, XOR_RELAYED_ADDRESS).and_then(xor_address).ok_or("Allocate answered without a relayed address")?;
    let peer_attr = xor_encode(peer).ok_or("this client relays to IPv4 peers only")?;
    let bind = auth(vec![(CHANNEL_NUMBER, vec![0x40, 0x00, 0, 0]), (XOR_PEER_ADDRESS, peer_attr)]);
    let reply = transact(&message(CHANNEL_BIND, &bind, Some(&key)))?;
    if msg_type(&reply) != CHANNEL_BIND | SUCCESS {
        return Err(format!("ChannelBind refused: {}", error_of(&reply)));
    }
    Ok(relayed)
}

/// A connection to a TURN server over TCP, or TLS (any certificate accepted: the tests' are
/// self-signed). Non-blocking once set up.
#[derive(Debug)]
pub struct TurnStream {
    socket: TcpStream,
    tls: Option<rustls::ClientConnection>,
    /// Plaintext read but not yet a whole message.
    pending: Vec<u8>,
}

impl TurnStream {
    pub fn connect(server: SocketAddr, tls: bool) -> Result<TurnStream, String> {
        let socket = TcpStream::connect(server).map_err(|e| format!("connect to {server}: {e}"))?;
        socket.set_nonblocking(true).map_err(|e| e.to_string())?;
        socket.set_nodelay(true).map_err(|e| e.to_string())?;
        let tls = if tls {
            let config =
                rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                    .with_safe_default_protocol_versions()
                    .map_err(|e| e.to_string())?
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AnyCertificate))
                    .with_no_client_auth();
            let name = rustls::pki_types::ServerName::IpAddress(server.ip().into());
            Some(rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?)
        } else {
            None
        };
        Ok(TurnStream { socket, tls, pending: Vec::new() })
    }

    /// Sends one message (STUN, or ChannelData padded to four bytes).
    pub fn send(&mut self, msg: &[u8]) {
        match self.tls.as_mut() {
            None => crate::wire::write_all_nonblocking(&mut self.socket, msg, "TURN"),
            Some(tls) => {
                let _ = tls.writer().write_all(msg);
                let mut sealed = Vec::new();
                while tls.wants_write() {
                    let _ = tls.write_tls(&mut sealed);
                }
                crate::wire::write_all_nonblocking(&mut self.socket, &sealed, "TURN");
            }
        }
    }

    /// `data` on [`CHANNEL`], padded as a stream needs.
    pub fn send_channel_data(&mut self, data: &[u8]) {
        let mut msg = channel_data(data);
        msg.resize(msg.len().div_ceil(4) * 4, 0);
        self.send(&msg);
    }

    /// The whole messages that arrived, without waiting.
    pub fn receive(&mut self) -> Vec<Vec<u8>> {
        let mut buf = [0u8; 65536];
        loop {
            match self.socket.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => match self.tls.as_mut() {
                    None => self.pending.extend_from_slice(&buf[..n]),
                    Some(tls) => {
                        let mut rest = &buf[..n];
                        while !rest.is_empty() {
                            tls.read_tls(&mut rest).expect("TLS records");
                            tls.process_new_packets().expect("TLS from the TURN server");
                            let _ = tls.reader().read_to_end(&mut self.pending);
                        }
                        // Handshake messages the session answers with.
                        let mut sealed = Vec::new();
                        while tls.wants_write() {
                            let _ = tls.write_tls(&mut sealed);
                        }
                        crate::wire::write_all_nonblocking(&mut self.socket, &sealed, "TURN");
                    }
                },
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("TURN connection read: {e}"),
            }
        }
        let mut out = Vec::new();
        loop {
            if self.pending.len() < 4 {
                break;
            }
            let len = usize::from(u16::from_be_bytes([self.pending[2], self.pending[3]]));
            let total = if self.pending[0] >> 6 == 0 { 20 + len } else { 4 + len.div_ceil(4) * 4 };
            if self.pending.len() < total {
                break;
            }
            let mut msg: Vec<u8> = self.pending.drain(..total).collect();
            if msg[0] >> 6 == 1 {
                msg.truncate(4 + len);
            }
            out.push(msg);
        }
        out
    }

    fn transact(&mut self, request: &[u8]) -> Result<Vec<u8>, String> {
        // A TLS client speaks first: the handshake goes out with the first request.
        self.send(request);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(m) = self.receive().into_iter().find(|m| m.len() >= 20 && m[8..20] == request[8..20]) {
                return Ok(m);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Err("no answer from the TURN server".into())
    }
}

/// Accepts any server certificate: the tests' TURN servers use self-signed ones.
#[derive(Debug)]
struct AnyCertificate;

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms.supported_schemes()
    }
}

/// The files a router's TURN needs, written into `dir`: a self-signed certificate and key for
/// TLS, and the shared secret.
#[derive(Debug)]
pub struct TurnFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub secret: std::path::PathBuf,
}

impl TurnFiles {
    pub fn write(dir: &std::path::Path, secret: &str) -> std::io::Result<TurnFiles> {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).map_err(std::io::Error::other)?;
        std::fs::create_dir_all(dir)?;
        let files = TurnFiles { cert: dir.join("cert.pem"), key: dir.join("key.pem"), secret: dir.join("secret") };
        std::fs::write(&files.cert, made.cert.pem())?;
        std::fs::write(&files.key, made.signing_key.serialize_pem())?;
        std::fs::write(&files.secret, secret)?;
        Ok(files)
    }
}

/// A credential of the "REST API for TURN" (coturn's `use-auth-secret`): the username
/// `<expiry>:<user>` and its password base64(HMAC-SHA1(secret, username)).
pub fn rest_credential(secret: &str, user: &str, ttl: Duration) -> (String, String) {
    use base64::Engine as _;
    let expiry = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default() + ttl;
    let username = format!("{}:{user}", expiry.as_secs());
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(aws_lc_rs::hmac::sign(&key, username.as_bytes()));
    (username, password)
}

/// `data` as ChannelData on [`CHANNEL`].
pub fn channel_data(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + data.len());
    out.extend_from_slice(&CHANNEL.to_be_bytes());
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// The payload of a ChannelData message on [`CHANNEL`]; `None` for anything else.
pub fn from_channel(msg: &[u8]) -> Option<&[u8]> {
    if msg.len() < 4 || u16::from_be_bytes([msg[0], msg[1]]) != CHANNEL {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([msg[2], msg[3]]));
    msg.get(4..4 + len)
}

/// The payload of a Data indication (what a server sends before the channel is bound).
pub fn from_data_indication(msg: &[u8]) -> Option<Vec<u8>> {
    const DATA_INDICATION: u16 = 0x0017;
    const DATA: u16 = 0x0013;
    if msg.len() < 20 || msg_type(msg) != DATA_INDICATION {
        return None;
    }
    attr(msg, DATA).map(<[u8]>::to_vec)
}

fn transact(socket: &UdpSocket, server: SocketAddr, request: &[u8]) -> Result<Vec<u8>, String> {
    let mut buf = [0u8; 1500];
    for _ in 0..3 {
        socket.send_to(request, server).map_err(|e| e.to_string())?;
        while let Ok((n, src)) = socket.recv_from(&mut buf) {
            // The answer to this request: same transaction id.
            if src == server && n >= 20 && buf[8..20] == request[8..20] {
                return Ok(buf[..n].to_vec());
            }
        }
    }
    Err(format!("no answer from the TURN server {server}"))
}

fn msg_type(msg: &[u8]) -> u16 {
    u16::from_be_bytes([msg[0], msg[1]])
}

fn error_of(msg: &[u8]) -> String {
    if msg_type(msg) & ERROR != ERROR {
        return format!("message type {:#06x}", msg_type(msg));
    }
    match attr(msg, ERROR_CODE) {
        Some(v) if v.len() >= 4 => {
            format!("{} {}", u16::from(v[2]) * 100 + u16::from(v[3]), String::from_utf8_lossy(&v[4..]))
        }
        _ => "an error without a code".into(),
    }
}

/// The first attribute of `kind` in a STUN message.
fn attr(msg: &[u8], kind: u16) -> Option<&[u8]> {
    let mut at = 20;
    while at + 4 <= msg.len() {
        let t = u16::from_be_bytes([msg[at], msg[at + 1]]);
        let len = usize::from(u16::from_be_bytes([msg[at + 2], msg[at + 3]]));
        let value = msg.get(at + 4..at + 4 + len)?;
        if t == kind {
            return Some(value);
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

/// A request with `attrs`, and MESSAGE-INTEGRITY under `key` when given.
fn message(kind: u16, attrs: &[(u16, Vec<u8>)], key: Option<&[u8]>) -> Vec<u8> {
    let mut m = Vec::with_capacity(256);
    m.extend_from_slice(&kind.to_be_bytes());
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&MAGIC.to_be_bytes());
    m.extend_from_slice(&rand::random::<[u8; 12]>());
    for (t, v) in attrs {
        m.extend_from_slice(&t.to_be_bytes());
        m.extend_from_slice(&(v.len() as u16).to_be_bytes());
        m.extend_from_slice(v);
        m.resize(m.len().div_ceil(4) * 4, 0);
    }
    if let Some(key) = key {
        // The length covers the integrity attribute (24 bytes) while it is computed.
        let len = (m.len() - 20 + 24) as u16;
        m[2..4].copy_from_slice(&len.to_be_bytes());
        let hmac =
            aws_lc_rs::hmac::sign(&aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key), &m);
        m.extend_from_slice(&MESSAGE_INTEGRITY.to_be_bytes());
        m.extend_from_slice(&20u16.to_be_bytes());
        m.extend_from_slice(hmac.as_ref());
    } else {
        let len = (m.len() - 20) as u16;
        m[2..4].copy_from_slice(&len.to_be_bytes());
    }
    m
}

/// MD5(username:realm:password), the long-term credential's key.
fn long_term_key(username: &str, realm: &str, password: &str) -> Vec<u8> {
    use md5::Digest;
    md5::Md5::digest(format!("{username}:{realm}:{password}").as_bytes()).to_vec()
}

/// XOR-PEER-ADDRESS of an IPv4 peer (the tests relay on 127.0.0.1; an IPv6 one would need the
/// transaction id, and is refused by [`allocate`]).
fn xor_encode(addr: SocketAddr) -> Option<Vec<u8>> {
    let IpAddr::V4(ip) = addr.ip() else { return None };
    let port = addr.port() ^ (MAGIC >> 16) as u16;
    let mut v = vec![0, 1];
    v.extend_from_slice(&port.to_be_bytes());
    v.extend_from_slice(&(u32::from(ip) ^ MAGIC).to_be_bytes());
    Some(v)
}

fn xor_address(v: &[u8]) -> Option<SocketAddr> {
    if v.len() < 8 || v[1] != 1 {
        return None;
    }
    let port = u16::from_be_bytes([v[2], v[3]]) ^ (MAGIC >> 16) as u16;
    let ip = u32::from_be_bytes([v[4], v[5], v[6], v[7]]) ^ MAGIC;
    Some(SocketAddr::from((std::net::Ipv4Addr::from(ip), port)))
}

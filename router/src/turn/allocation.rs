//! One TURN client's allocation, sans-IO: the requests of RFC 8656 a client sends over its
//! connection, answered with time as an argument.
//!
//! The credentials are the "REST API for TURN" ones signaling hands out at `/init`: the
//! username is `<expiry, Unix seconds>:<user>`, the password base64(HMAC-SHA1(secret,
//! username)), and the long-term key MD5(username:realm:password) (RFC 8489 section 9.2).
//!
//! The only peers are the router's own shard addresses ([`Peers`]): a permission or channel to
//! anything else is refused with 403, so the relay is no way into the host's network. The
//! relayed address is one the I/O shell reserves when an Allocate succeeds (a bound UDP port
//! nobody else can take); no datagram ever goes to it, because the peers are in this process:
//! the shell hands what the client relays straight to the peer's shard as if it came from the
//! relayed address. Nothing is reserved for a client that has not authenticated, and the nonce
//! is derived from the client's address ([`Credentials::nonce`]), so a UDP client is not kept
//! in memory before it authenticates either.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use base64::Engine as _;
use md5::Digest;
use router_engine::stun::{self, Class, MessageWriter, StunError, StunMessage};

use super::wire::{self, Frame, attr};

/// Lifetimes (RFC 8656): an allocation's default and cap, a permission's, a channel's.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(600);
const MAX_LIFETIME: Duration = Duration::from_secs(3600);
const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);
/// REQUESTED-TRANSPORT's value for UDP, the only relay transport.
const UDP: u8 = 17;
const SOFTWARE: &[u8] = b"rtc-router";

/// The router's addresses a client may relay to, and which shard each is.
#[derive(Debug, Clone, Default)]
pub struct Peers {
    shards: HashMap<SocketAddr, usize>,
}

impl Peers {
    pub fn new(shards: impl IntoIterator<Item = (SocketAddr, usize)>) -> Peers {
        Peers { shards: shards.into_iter().collect() }
    }

    /// The shard at `peer`, if it is one of ours.
    pub fn shard(&self, peer: SocketAddr) -> Option<usize> {
        self.shards.get(&peer).copied()
    }

    /// A permission is per IP (RFC 8656 section 9): one of the shards'.
    fn has_ip(&self, ip: IpAddr) -> bool {
        self.shards.keys().any(|a| a.ip() == ip)
    }
}

/// The secret and realm every allocation checks its client's credentials against.
#[derive(Debug)]
pub struct Credentials {
    secret: hmac::Key,
    realm: String,
    /// Makes nonces: random per process, so they cannot be guessed.
    nonces: hmac::Key,
}

impl Credentials {
    pub fn new(secret: &[u8], realm: &str) -> Credentials {
        let mut nonce_key = [0u8; 32];
        // Without randomness the nonce key is all zeros: nonces then only stop replays across
        // client addresses, and the credentials still decide.
        let _ = aws_lc_rs::rand::fill(&mut nonce_key);
        Credentials {
            secret: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret),
            realm: realm.to_owned(),
            nonces: hmac::Key::new(hmac::HMAC_SHA256, &nonce_key),
        }
    }

    /// The nonce of the client at `client`: the same every time, so nothing has to be kept
    /// for a client between its challenge and its authenticated retry.
    pub fn nonce(&self, client: SocketAddr) -> String {
        let tag = hmac::sign(&self.nonces, client.to_string().as_bytes());
        tag.as_ref()[..12].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The long-term key of `username`, if it has not expired at `unix_now`.
    fn key(&self, username: &[u8], unix_now: u64) -> Option<Vec<u8>> {
        let name = std::str::from_utf8(username).ok()?;
        let expiry: u64 = name.split(':').next()?.parse().ok()?;
        if expiry < unix_now {
            return None;
        }
        let password = base64::engine::general_purpose::STANDARD.encode(hmac::sign(&self.secret, username).as_ref());
        Some(md5::Md5::digest(format!("{name}:{}:{password}", self.realm).as_bytes()).to_vec())
    }
}

/// What the shell does after a client's message.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome<'m> {
    /// Write this answer to the client.
    Reply(Vec<u8>),
    /// Hand `data` to the shard at `peer`, from the relayed address.
    Relay { peer: SocketAddr, data: &'m [u8] },
    /// Answer, and from now on wrap what `peer` sends as ChannelData on `channel`.
    Bound { reply: Vec<u8>, peer: SocketAddr, channel: u16 },
    /// Answer, then close the connection (the allocation was deleted).
    ReplyAndClose(Vec<u8>),
    /// Nothing to do (a stray response, data without a permission).
    Nothing,
}

/// What [`Allocation::handle`] needs besides the message.
pub struct Context<'a> {
    pub unix_now: u64,
    pub creds: &'a Credentials,
    pub peers: &'a Peers,
    /// Reserves a relayed address, when an Allocate succeeds.
    pub reserve: &'a mut dyn FnMut() -> Option<SocketAddr>,
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("unix_now", &self.unix_now).finish_non_exhaustive()
    }
}

/// The state of one client (a TCP connection, or a UDP client address).
#[derive(Debug)]
pub struct Allocation {
    client: SocketAddr,
    relayed: Option<SocketAddr>,
    nonce: String,
    granted: Option<Granted>,
}

#[derive(Debug)]
struct Granted {
    username: Vec<u8>,
    expires: Instant,
    permissions: HashMap<IpAddr, Instant>,
    channels: HashMap<u16, (SocketAddr, Instant)>,
}

/// Why a request is refused: its ERROR-CODE.
struct Refusal(u16, &'static str);

impl Allocation {
    pub fn new(client: SocketAddr, creds: &Credentials) -> Allocation {
        Allocation { client, relayed: None, nonce: creds.nonce(client), granted: None }
    }

    /// The relayed address, once an Allocate succeeded.
    pub fn relayed(&self) -> Option<SocketAddr> {
        self.relayed
    }

    pub fn is_granted(&self) -> bool {
        self.granted.is_some()
    }

    /// Whether the allocation was granted and has expired since.
    pub fn expired(&self, now: Instant) -> bool {
        self.granted.as_ref().is_some_and(|g| g.expires <= now)
    }

    /// Handles one message from the client. `reserve` is asked for a relayed address when an
    /// Allocate succeeds (`None`: none left, answered 508).
    pub fn handle<'m>(&mut self, frame: Frame<'m>, now: Instant, ctx: &mut Context<'_>) -> Outcome<'m> {
        let Context { unix_now, creds, peers, reserve } = ctx;
        let (unix_now, creds, peers) = (*unix_now, &**creds, &**peers);
        match frame {
            Frame::ChannelData { channel, data } => {
                match self.granted.as_ref().and_then(|g| g.channels.get(&channel)) {
                    Some(&(peer, until)) if until > now => Outcome::Relay { peer, data },
                    _ => Outcome::Nothing,
                }
            }
            Frame::Stun(bytes) => {
                let Ok(msg) = stun::parse(bytes) else { return Outcome::Nothing };
                match msg.class() {
                    Class::Indication if msg.method() == wire::METHOD_SEND => self.send_indication(&msg, now, peers),
                    Class::Request => self.request(&msg, now, unix_now, creds, peers, reserve),
                    _ => Outcome::Nothing,
                }
            }
        }
    }

    fn send_indication<'m>(&self, msg: &StunMessage<'m>, now: Instant, peers: &Peers) -> Outcome<'m> {
        let (Some(g), Some(peer), Some(data)) =
            (self.granted.as_ref(), msg.xor_address(attr::XOR_PEER_ADDRESS), msg.attribute(attr::DATA))
        else {
            return Outcome::Nothing;
        };
        let permitted = g.permissions.get(&peer.ip()).is_some_and(|&until| until > now);
        if permitted && peers.shard(peer).is_some() { Outcome::Relay { peer, data } } else { Outcome::Nothing }
    }

    fn request<'m>(
        &mut self,
        msg: &StunMessage<'m>,
        now: Instant,
        unix_now: u64,
        creds: &Credentials,
        peers: &Peers,
        reserve: &mut dyn FnMut() -> Option<SocketAddr>,
    ) -> Outcome<'m> {
        let key = match self.authenticate(msg, unix_now, creds) {
            Ok(key) => key,
            Err(Refusal(code, reason)) => return Outcome::Reply(self.challenge(msg, code, reason, creds)),
        };
        let answer = match msg.method() {
            wire::METHOD_ALLOCATE => self.allocate(msg, now, key.0, reserve),
            wire::METHOD_REFRESH => self.refresh(msg, now),
            wire::METHOD_CREATE_PERMISSION => self.create_permission(msg, now, peers),
            wire::METHOD_CHANNEL_BIND => self.channel_bind(msg, now, peers),
            _ => Err(Refusal(400, "Bad Request: unknown method")),
        };
        let key = &key.1;
        match answer {
            Ok(Answer::Allocated { lifetime, relayed }) => Outcome::Reply(self.success(msg, key, |w| {
                w.xor_address(attr::XOR_RELAYED_ADDRESS, relayed)?
                    .attribute(attr::LIFETIME, &lifetime.to_be_bytes())?
                    .xor_mapped_address(self.client)?;
                Ok(())
            })),
            Ok(Answer::Refreshed { lifetime: 0 }) => Outcome::ReplyAndClose(self.success(msg, key, |w| {
                w.attribute(attr::LIFETIME, &0u32.to_be_bytes())?;
                Ok(())
            })),
            Ok(Answer::Refreshed { lifetime }) => Outcome::Reply(self.success(msg, key, |w| {
                w.attribute(attr::LIFETIME, &lifetime.to_be_bytes())?;
                Ok(())
            })),
            Ok(Answer::Permitted) => Outcome::Reply(self.success(msg, key, |_| Ok(()))),
            Ok(Answer::Bound { peer, channel }) => {
                Outcome::Bound { reply: self.success(msg, key, |_| Ok(())), peer, channel }
            }
            Err(Refusal(code, reason)) => Outcome::Reply(self.error(msg, code, reason, Some(key))),
        }
    }

    /// The long-term key of a request's credentials (and its username), or why not: 401 when
    /// they are missing, expired or wrong, 438 for another nonce, 441 for another user than
    /// the allocation's.
    fn authenticate(
        &self,
        msg: &StunMessage<'_>,
        unix_now: u64,
        creds: &Credentials,
    ) -> Result<(Vec<u8>, hmac::Key), Refusal> {
        let (Some(username), Some(realm), Some(nonce)) =
            (msg.username(), msg.attribute(stun::attr::REALM), msg.attribute(stun::attr::NONCE))
        else {
            return Err(Refusal(401, "Unauthorized"));
        };
        if !msg.has_integrity() {
            return Err(Refusal(401, "Unauthorized"));
        }
        if nonce != self.nonce.as_bytes() {
            return Err(Refusal(438, "Stale Nonce"));
        }
        if realm != creds.realm.as_bytes() {
            return Err(Refusal(401, "Unauthorized: wrong realm"));
        }
        let Some(long_term) = creds.key(username, unix_now) else {
            return Err(Refusal(401, "Unauthorized: expired or malformed username"));
        };
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &long_term);
        if !msg.verify_integrity_with(&key) {
            return Err(Refusal(401, "Unauthorized"));
        }
        if let Some(g) = &self.granted
            && g.username != username
        {
            return Err(Refusal(441, "Wrong Credentials"));
        }
        Ok((username.to_vec(), key))
    }

    fn allocate(
        &mut self,
        msg: &StunMessage<'_>,
        now: Instant,
        username: Vec<u8>,
        reserve: &mut dyn FnMut() -> Option<SocketAddr>,
    ) -> Result<Answer, Refusal> {
        if self.granted.is_some() {
            return Err(Refusal(437, "Allocation Mismatch"));
        }
        match msg.attribute(attr::REQUESTED_TRANSPORT) {
            None => return Err(Refusal(400, "Bad Request: no REQUESTED-TRANSPORT")),
            Some(v) if v.first() != Some(&UDP) => return Err(Refusal(442, "Unsupported Transport Protocol")),
            Some(_) => {}
        }
        if msg.attribute(attr::EVEN_PORT).is_some() || msg.attribute(attr::RESERVATION_TOKEN).is_some() {
            return Err(Refusal(508, "Insufficient Capacity: no port reservations"));
        }
        let relayed = reserve().ok_or(Refusal(508, "Insufficient Capacity"))?;
        if let Some(family) = msg.attribute(attr::REQUESTED_ADDRESS_FAMILY) {
            let wanted_v6 = family.first() == Some(&2);
            if wanted_v6 != relayed.is_ipv6() {
                return Err(Refusal(440, "Address Family not Supported"));
            }
        }
        self.relayed = Some(relayed);
        let lifetime = requested_lifetime(msg).unwrap_or(DEFAULT_LIFETIME).clamp(DEFAULT_LIFETIME, MAX_LIFETIME);
        self.granted =
            Some(Granted { username, expires: now + lifetime, permissions: HashMap::new(), channels: HashMap::new() });
        Ok(Answer::Allocated { lifetime: lifetime.as_secs() as u32, relayed })
    }

    fn refresh(&mut self, msg: &StunMessage<'_>, now: Instant) -> Result<Answer, Refusal> {
        let g = self.granted.as_mut().ok_or(Refusal(437, "Allocation Mismatch"))?;
        let lifetime = requested_lifetime(msg).unwrap_or(DEFAULT_LIFETIME);
        if lifetime.is_zero() {
            g.expires = now;
            return Ok(Answer::Refreshed { lifetime: 0 });
        }
        let lifetime = lifetime.min(MAX_LIFETIME);
        g.expires = now + lifetime;
        Ok(Answer::Refreshed { lifetime: lifetime.as_secs() as u32 })
    }

    fn create_permission(&mut self, msg: &StunMessage<'_>, now: Instant, peers: &Peers) -> Result<Answer, Refusal> {
        let g = self.granted.as_mut().ok_or(Refusal(437, "Allocation Mismatch"))?;
        // The attribute may repeat; each must be allowed.
        let ips: Vec<IpAddr> = xor_peer_addresses(msg).map(|a| a.ip()).collect();
        if ips.is_empty() {
            return Err(Refusal(400, "Bad Request: no XOR-PEER-ADDRESS"));
        }
        if !ips.iter().all(|ip| peers.has_ip(*ip)) {
            return Err(Refusal(403, "Forbidden: this server relays to its router only"));
        }
        for ip in ips {
            g.permissions.insert(ip, now + PERMISSION_LIFETIME);
        }
        Ok(Answer::Permitted)
    }

    fn channel_bind(&mut self, msg: &StunMessage<'_>, now: Instant, peers: &Peers) -> Result<Answer, Refusal> {
        let g = self.granted.as_mut().ok_or(Refusal(437, "Allocation Mismatch"))?;
        let channel =
            msg.attribute(attr::CHANNEL_NUMBER).and_then(|v| v.get(..2)).map(|b| u16::from_be_bytes([b[0], b[1]]));
        let (Some(channel), Some(peer)) = (channel, msg.xor_address(attr::XOR_PEER_ADDRESS)) else {
            return Err(Refusal(400, "Bad Request: CHANNEL-NUMBER and XOR-PEER-ADDRESS needed"));
        };
        if !wire::CHANNELS.contains(&channel) {
            return Err(Refusal(400, "Bad Request: channel number out of range"));
        }
        if peers.shard(peer).is_none() {
            return Err(Refusal(403, "Forbidden: this server relays to its router only"));
        }
        // A channel stays bound to one peer, and a peer to one channel (RFC 8656 section 12).
        let taken = g.channels.iter().any(|(&c, &(p, _))| (c == channel) != (p == peer));
        if taken {
            return Err(Refusal(400, "Bad Request: channel or peer bound otherwise"));
        }
        g.channels.insert(channel, (peer, now + CHANNEL_LIFETIME));
        g.permissions.insert(peer.ip(), now + PERMISSION_LIFETIME);
        Ok(Answer::Bound { peer, channel })
    }

    /// A success response signed with `key`.
    fn success(
        &self,
        msg: &StunMessage<'_>,
        key: &hmac::Key,
        attrs: impl FnOnce(&mut MessageWriter<'_>) -> Result<(), StunError>,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        wire::append_message(&mut out, 256, |buf| {
            let mut w = MessageWriter::new(buf, Class::SuccessResponse, msg.method(), msg.transaction_id())?;
            attrs(&mut w)?;
            w.attribute(stun::attr::SOFTWARE, SOFTWARE)?.message_integrity(key)?.fingerprint()?;
            Ok(w.finish())
        });
        out
    }

    /// An error response; signed when the request's credentials were good.
    fn error(&self, msg: &StunMessage<'_>, code: u16, reason: &str, key: Option<&hmac::Key>) -> Vec<u8> {
        let mut out = Vec::new();
        wire::append_message(&mut out, 1024, |buf| {
            let mut w = MessageWriter::new(buf, Class::ErrorResponse, msg.method(), msg.transaction_id())?;
            w.error_code(code, reason)?.attribute(stun::attr::SOFTWARE, SOFTWARE)?;
            if let Some(key) = key {
                w.message_integrity(key)?;
            }
            w.fingerprint()?;
            Ok(w.finish())
        });
        out
    }

    /// The answer to a request whose credentials did not do: with the realm and nonce to
    /// retry with (RFC 8489 section 9.2.4).
    fn challenge(&self, msg: &StunMessage<'_>, code: u16, reason: &str, creds: &Credentials) -> Vec<u8> {
        let mut out = Vec::new();
        wire::append_message(&mut out, 1024, |buf| {
            let mut w = MessageWriter::new(buf, Class::ErrorResponse, msg.method(), msg.transaction_id())?;
            w.error_code(code, reason)?
                .attribute(stun::attr::REALM, creds.realm.as_bytes())?
                .attribute(stun::attr::NONCE, self.nonce.as_bytes())?
                .attribute(stun::attr::SOFTWARE, SOFTWARE)?
                .fingerprint()?;
            Ok(w.finish())
        });
        out
    }
}

enum Answer {
    Allocated { lifetime: u32, relayed: SocketAddr },
    Refreshed { lifetime: u32 },
    Permitted,
    Bound { peer: SocketAddr, channel: u16 },
}

fn requested_lifetime(msg: &StunMessage<'_>) -> Option<Duration> {
    let v: [u8; 4] = msg.attribute(attr::LIFETIME)?.try_into().ok()?;
    Some(Duration::from_secs(u64::from(u32::from_be_bytes(v))))
}

/// Every XOR-PEER-ADDRESS of a message (CreatePermission may carry several).
fn xor_peer_addresses<'a>(msg: &'a StunMessage<'_>) -> impl Iterator<Item = SocketAddr> + 'a {
    let bytes = msg.as_bytes();
    let mut pos = stun::HEADER_LEN;
    std::iter::from_fn(move || {
        while pos + 4 <= bytes.len() {
            let typ = u16::from_be_bytes([bytes[pos], bytes[pos + 1]]);
            let len = usize::from(u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]));
            let at = pos;
            pos += 4 + ((len + 3) & !3);
            if typ == stun::attr::MESSAGE_INTEGRITY {
                pos = bytes.len();
                return None;
            }
            if typ == attr::XOR_PEER_ADDRESS {
                return stun::decode_xor_address(
                    &bytes[at + 4..(at + 4 + len).min(bytes.len())],
                    &msg.transaction_id(),
                );
            }
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use router_engine::stun::{MessageWriter, parse};

    const SECRET: &[u8] = b"shared-secret";
    const NOW_UNIX: u64 = 1_800_000_000;

    fn shard() -> SocketAddr {
        "192.0.2.10:40000".parse().unwrap()
    }

    fn client() -> SocketAddr {
        "198.51.100.7:50000".parse().unwrap()
    }

    /// A REST-API-for-TURN credential expiring at `expiry`.
    fn credential(expiry: u64) -> (String, String) {
        let username = format!("{expiry}:alice");
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, SECRET);
        let password = base64::engine::general_purpose::STANDARD.encode(hmac::sign(&key, username.as_bytes()));
        (username, password)
    }

    struct Harness {
        creds: Credentials,
        peers: Peers,
        allocation: Allocation,
        reserved: u32,
        now: Instant,
    }

    /// A request with `attrs`, signed with the long-term key of `(username, password)` and the
    /// realm and nonce when given.
    fn request(method: u16, attrs: &[(u16, Vec<u8>)], auth: Option<(&str, &str, &str)>, realm: &str) -> Vec<u8> {
        let mut out = Vec::new();
        wire::append_message(&mut out, 1024, |buf| {
            let mut w = MessageWriter::new(buf, Class::Request, method, [7; 12])?;
            for (t, v) in attrs {
                w.attribute(*t, v)?;
            }
            if let Some((username, password, nonce)) = auth {
                w.username(username.as_bytes())?
                    .attribute(stun::attr::REALM, realm.as_bytes())?
                    .attribute(stun::attr::NONCE, nonce.as_bytes())?;
                let key = md5::Md5::digest(format!("{username}:{realm}:{password}").as_bytes());
                w.message_integrity(&hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &key))?;
            }
            Ok(w.finish())
        });
        out
    }

    fn peer_attr(addr: SocketAddr) -> Vec<u8> {
        let mut out = Vec::new();
        wire::append_message(&mut out, 64, |buf| {
            let mut w = MessageWriter::new(buf, Class::Request, 1, [7; 12])?;
            w.xor_address(attr::XOR_PEER_ADDRESS, addr)?;
            Ok(w.finish())
        });
        out[24..].to_vec()
    }

    impl Harness {
        fn new() -> Harness {
            let creds = Credentials::new(SECRET, "rtc");
            let allocation = Allocation::new(client(), &creds);
            Harness { creds, peers: Peers::new([(shard(), 0)]), allocation, reserved: 0, now: Instant::now() }
        }

        fn send(&mut self, msg: &[u8]) -> Outcome<'static> {
            let msg: &'static [u8] = Box::leak(msg.to_vec().into_boxed_slice());
            let reserved = &mut self.reserved;
            let mut reserve = || {
                *reserved += 1;
                Some("192.0.2.10:61000".parse().unwrap())
            };
            let mut ctx = Context { unix_now: NOW_UNIX, creds: &self.creds, peers: &self.peers, reserve: &mut reserve };
            let frame = match wire::datagram_frame(msg) {
                Ok(f) => f,
                Err(_) => return Outcome::Nothing,
            };
            self.allocation.handle(frame, self.now, &mut ctx)
        }

        /// The error code of an error reply.
        fn refused(&mut self, msg: &[u8]) -> u16 {
            let Outcome::Reply(reply) = self.send(msg) else { panic!("no reply") };
            let parsed = parse(&reply).unwrap();
            assert_eq!(parsed.class(), Class::ErrorResponse);
            parsed.error_code().unwrap().code
        }

        /// Allocates with a good credential; returns (username, password, nonce).
        fn allocate(&mut self) -> (String, String, String) {
            let transport = (attr::REQUESTED_TRANSPORT, vec![17, 0, 0, 0]);
            let Outcome::Reply(challenge) =
                self.send(&request(wire::METHOD_ALLOCATE, std::slice::from_ref(&transport), None, ""))
            else {
                panic!("no challenge")
            };
            let challenge = parse(&challenge).unwrap();
            assert_eq!(challenge.error_code().unwrap().code, 401);
            let nonce = String::from_utf8(challenge.attribute(stun::attr::NONCE).unwrap().to_vec()).unwrap();
            assert_eq!(challenge.attribute(stun::attr::REALM), Some(&b"rtc"[..]));
            let (username, password) = credential(NOW_UNIX + 600);
            let msg = request(wire::METHOD_ALLOCATE, &[transport], Some((&username, &password, &nonce)), "rtc");
            let Outcome::Reply(reply) = self.send(&msg) else { panic!("no answer") };
            let parsed = parse(&reply).unwrap();
            assert_eq!(parsed.class(), Class::SuccessResponse, "{:?}", parsed.error_code());
            let key = md5::Md5::digest(format!("{username}:rtc:{password}").as_bytes());
            assert!(parsed.verify_integrity(&key), "the answer is signed with the long-term key");
            assert_eq!(parsed.xor_address(attr::XOR_RELAYED_ADDRESS), Some("192.0.2.10:61000".parse().unwrap()));
            assert_eq!(parsed.xor_mapped_address(), Some(client()));
            assert_eq!(parsed.attribute(attr::LIFETIME), Some(&600u32.to_be_bytes()[..]));
            (username, password, nonce)
        }
    }

    #[test]
    fn an_allocate_is_challenged_then_granted_with_a_reserved_port() {
        let mut h = Harness::new();
        h.allocate();
        assert_eq!(h.reserved, 1);
        assert!(h.allocation.is_granted());
        // A second Allocate on the same client is a mismatch, and reserves nothing.
        let (username, password, nonce) = credential_and_nonce(&h);
        let again = request(
            wire::METHOD_ALLOCATE,
            &[(attr::REQUESTED_TRANSPORT, vec![17, 0, 0, 0])],
            Some((&username, &password, &nonce)),
            "rtc",
        );
        assert_eq!(h.refused(&again), 437);
        assert_eq!(h.reserved, 1);
    }

    fn credential_and_nonce(h: &Harness) -> (String, String, String) {
        let (username, password) = credential(NOW_UNIX + 600);
        (username, password, h.creds.nonce(client()))
    }

    #[test]
    fn bad_credentials_are_refused_and_nothing_is_reserved() {
        let mut h = Harness::new();
        let transport = [(attr::REQUESTED_TRANSPORT, vec![17, 0, 0, 0])];
        let nonce = h.creds.nonce(client());
        let (expired_user, expired_password) = credential(NOW_UNIX - 1);
        let (username, password) = credential(NOW_UNIX + 600);
        let cases = [
            (request(wire::METHOD_ALLOCATE, &transport, Some((&expired_user, &expired_password, &nonce)), "rtc"), 401),
            (request(wire::METHOD_ALLOCATE, &transport, Some((&username, "wrong", &nonce)), "rtc"), 401),
            (request(wire::METHOD_ALLOCATE, &transport, Some((&username, &password, "stale")), "rtc"), 438),
            (request(wire::METHOD_ALLOCATE, &transport, Some((&username, &password, &nonce)), "other"), 401),
            (request(wire::METHOD_ALLOCATE, &transport, Some(("not-a-timestamp:x", &password, &nonce)), "rtc"), 401),
            (
                request(
                    wire::METHOD_ALLOCATE,
                    &[(attr::REQUESTED_TRANSPORT, vec![6, 0, 0, 0])],
                    Some((&username, &password, &nonce)),
                    "rtc",
                ),
                442,
            ),
            (request(wire::METHOD_ALLOCATE, &[], Some((&username, &password, &nonce)), "rtc"), 400),
            (request(wire::METHOD_CREATE_PERMISSION, &[], Some((&username, &password, &nonce)), "rtc"), 437),
        ];
        for (msg, code) in cases {
            assert_eq!(h.refused(&msg), code);
        }
        assert_eq!(h.reserved, 0);
        assert!(!h.allocation.is_granted());
        // The nonce depends on the client's address only: no state kept between the two.
        assert_eq!(h.creds.nonce(client()), nonce);
        assert_ne!(h.creds.nonce(shard()), nonce);
    }

    #[test]
    fn only_the_routers_addresses_are_peers_and_a_bound_channel_relays() {
        let mut h = Harness::new();
        let (username, password, nonce) = h.allocate();
        let auth = Some((username.as_str(), password.as_str(), nonce.as_str()));
        let elsewhere: SocketAddr = "203.0.113.5:22".parse().unwrap();
        let other_port: SocketAddr = "192.0.2.10:22".parse().unwrap();
        let permission =
            |peer| request(wire::METHOD_CREATE_PERMISSION, &[(attr::XOR_PEER_ADDRESS, peer_attr(peer))], auth, "rtc");
        assert_eq!(h.refused(&permission(elsewhere)), 403);
        let bind = |channel: u16, peer| {
            request(
                wire::METHOD_CHANNEL_BIND,
                &[
                    (attr::CHANNEL_NUMBER, [channel.to_be_bytes(), [0, 0]].concat()),
                    (attr::XOR_PEER_ADDRESS, peer_attr(peer)),
                ],
                auth,
                "rtc",
            )
        };
        assert_eq!(h.refused(&bind(0x4000, other_port)), 403, "the router's IP, but no shard's port");
        assert_eq!(h.refused(&bind(0x3FFF, shard())), 400, "a channel number out of range");
        // A Send indication before any permission is dropped.
        let mut send = Vec::new();
        wire::append_message(&mut send, 128, |buf| {
            let mut w = MessageWriter::new(buf, Class::Indication, wire::METHOD_SEND, [1; 12])?;
            w.xor_address(attr::XOR_PEER_ADDRESS, shard())?.attribute(attr::DATA, b"stun check")?;
            Ok(w.finish())
        });
        assert_eq!(h.send(&send), Outcome::Nothing);
        let Outcome::Reply(ok) = h.send(&permission(shard())) else { panic!("no answer") };
        assert_eq!(parse(&ok).unwrap().class(), Class::SuccessResponse);
        assert_eq!(h.send(&send), Outcome::Relay { peer: shard(), data: b"stun check" });
        // A channel: bound, then its data relayed; another peer on it is refused.
        let Outcome::Bound { peer, channel, .. } = h.send(&bind(0x4001, shard())) else { panic!("not bound") };
        assert_eq!((peer, channel), (shard(), 0x4001));
        let mut data = Vec::new();
        wire::channel_data(&mut data, 0x4001, b"media", false);
        assert_eq!(h.send(&data), Outcome::Relay { peer: shard(), data: b"media" });
        let mut unbound = Vec::new();
        wire::channel_data(&mut unbound, 0x4002, b"media", false);
        assert_eq!(h.send(&unbound), Outcome::Nothing);
        h.peers = Peers::new([(shard(), 0), ("192.0.2.10:40001".parse().unwrap(), 1)]);
        assert_eq!(h.refused(&bind(0x4001, "192.0.2.10:40001".parse().unwrap())), 400);
    }

    #[test]
    fn a_refresh_to_zero_deletes_and_an_unrefreshed_allocation_expires() {
        let mut h = Harness::new();
        let (username, password, nonce) = h.allocate();
        let auth = Some((username.as_str(), password.as_str(), nonce.as_str()));
        let refresh =
            |secs: u32| request(wire::METHOD_REFRESH, &[(attr::LIFETIME, secs.to_be_bytes().to_vec())], auth, "rtc");
        let Outcome::Reply(ok) = h.send(&refresh(1200)) else { panic!("no answer") };
        assert_eq!(parse(&ok).unwrap().attribute(attr::LIFETIME), Some(&1200u32.to_be_bytes()[..]));
        assert!(!h.allocation.expired(h.now + Duration::from_secs(1199)));
        assert!(h.allocation.expired(h.now + Duration::from_secs(1200)));
        assert!(matches!(h.send(&refresh(0)), Outcome::ReplyAndClose(_)));
        assert!(h.allocation.expired(h.now));
    }
}

//! ICE-lite agent (RFC 8445 section 2.5) with consent freshness (RFC 7675), one per transport.
//!
//! The router never sends connectivity checks: it is always the *controlled* agent and only
//! answers the Binding requests of the remote full agent (a browser, str0m), which nominates a
//! pair with USE-CANDIDATE. The agent is a sans-IO state machine in the usual shape:
//!
//! - `handle_stun(now, from, msg, out)`: an incoming, already [`stun::parse`]d request. It checks
//!   USERNAME and MESSAGE-INTEGRITY, writes the answer into `out`, marks `from` as a validated
//!   remote address (peer-reflexive: the router learns remote addresses from checks, not SDP)
//!   and nominates it on USE-CANDIDATE.
//! - `poll_event()`: [`IceEvent::Connected`] on the first nomination, then
//!   [`IceEvent::NominatedChanged`], and [`IceEvent::ConsentExpired`] once.
//! - `poll_timeout()` / `handle_timeout(now)`: the consent deadline. Every authenticated check
//!   from the nominated address refreshes consent; after [`CONSENT_TIMEOUT`] without one (or
//!   [`SETUP_TIMEOUT`] without any check at all before nomination) the agent is closed.
//!
//! Rejected requests still produce bytes to send when the RFC calls for an error response
//! (400, 401, 420, 487): the [`IceError`] carries their length, see [`IceError::reply_len`].
//!
//! ```
//! use std::time::Instant;
//! use router_engine::{ice::{IceCredentials, IceLite, IceEvent}, stun};
//! let now = Instant::now();
//! let local = IceCredentials::random().unwrap();
//! let mut agent = IceLite::new(local.clone(), now);
//!
//! // What a browser sends: USERNAME "<router ufrag>:<browser ufrag>", keyed with the router's pwd.
//! let mut req = [0u8; 200];
//! let user = format!("{}:browser", local.ufrag);
//! let n = stun::write_binding_request([1; 12], user.as_bytes(), local.pwd.as_bytes(), 1, Some(42), true, &mut req).unwrap();
//! let from = "198.51.100.7:50000".parse().unwrap();
//!
//! let mut out = [0u8; 200];
//! let reply = agent.handle_stun(now, from, &stun::parse(&req[..n]).unwrap(), &mut out).unwrap();
//! assert!(reply.nominated_changed && reply.len > 0); // send out[..reply.len] to `from`
//! assert_eq!(agent.poll_event(), Some(IceEvent::Connected(from)));
//! assert!(agent.is_valid_remote(from));
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;

use crate::stun::{self, Class, StunError, StunMessage};

/// RFC 7675: consent is lost after 30 s without a successful check.
pub const CONSENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a new agent waits for its first check before giving up.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Validated remote addresses kept per agent; a browser checks from a handful of candidates.
/// Bounded so a peer with valid credentials cannot grow the agent without limit.
pub const MAX_VALID_REMOTES: usize = 8;

/// RFC 8445 section 5.3: ice-char = ALPHA / DIGIT / "+" / "/". 64 symbols, so `byte & 63`
/// picks one uniformly.
const ICE_CHARS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const UFRAG_LEN: usize = 8;
const PWD_LEN: usize = 24;

/// Local (or remote) ICE credentials as they appear in SDP (`a=ice-ufrag`, `a=ice-pwd`).
#[derive(Clone, PartialEq, Eq)]
pub struct IceCredentials {
    pub ufrag: String,
    pub pwd: String,
}

impl std::fmt::Debug for IceCredentials {
    // The password is the MESSAGE-INTEGRITY key: keep it out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceCredentials").field("ufrag", &self.ufrag).field("pwd", &"<redacted>").finish()
    }
}

impl IceCredentials {
    /// Fresh credentials from the system CSPRNG: an 8-char ufrag (48 bits) and a 24-char
    /// password (144 bits, above RFC 8445's 128-bit minimum).
    pub fn random() -> Result<Self, IceError> {
        let mut raw = [0u8; UFRAG_LEN + PWD_LEN];
        aws_lc_rs::rand::fill(&mut raw).map_err(|_| IceError::Rng)?;
        let pick = |b: &u8| char::from(ICE_CHARS[usize::from(b & 63)]);
        Ok(Self {
            ufrag: raw[..UFRAG_LEN].iter().map(pick).collect(),
            pwd: raw[UFRAG_LEN..].iter().map(pick).collect(),
        })
    }
}

/// Errors of the ICE agent. Variants with `reply_len > 0` wrote an error response into `out`
/// that should be sent back to the source address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IceError {
    #[error("not a Binding request (class or method); ignored")]
    NotBindingRequest { reply_len: usize },
    #[error("request lacks USERNAME or MESSAGE-INTEGRITY (400)")]
    MissingCredentials { reply_len: usize },
    #[error("USERNAME does not name this agent's ufrag, or the expected remote ufrag (401)")]
    UsernameMismatch { reply_len: usize },
    #[error("MESSAGE-INTEGRITY does not verify with the local password (401)")]
    BadIntegrity { reply_len: usize },
    #[error("request carries comprehension-required attribute {typ:#06x} (420)")]
    UnknownAttribute { typ: u16, reply_len: usize },
    #[error("remote claims the controlled role too; ICE-lite never controls (487)")]
    RoleConflict { reply_len: usize },
    #[error("consent expired; the agent is closed")]
    Closed,
    #[error("STUN: {0}")]
    Stun(#[from] StunError),
    #[error("system random generator failed")]
    Rng,
}

impl IceError {
    /// Bytes written into `out` that should be sent back to the request's source (0: none).
    pub fn reply_len(&self) -> usize {
        match *self {
            IceError::NotBindingRequest { reply_len }
            | IceError::MissingCredentials { reply_len }
            | IceError::UsernameMismatch { reply_len }
            | IceError::BadIntegrity { reply_len }
            | IceError::UnknownAttribute { reply_len, .. }
            | IceError::RoleConflict { reply_len } => reply_len,
            IceError::Closed | IceError::Stun(_) | IceError::Rng => 0,
        }
    }
}

/// An accepted check: `out[..len]` is the success response to send to the source address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StunReply {
    pub len: usize,
    /// This check nominated a new address (the first one, or a switch).
    pub nominated_changed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceEvent {
    /// First nomination: media may flow to/from this address.
    Connected(SocketAddr),
    /// The remote nominated another address (network change, better pair).
    NominatedChanged(SocketAddr),
    /// No valid check within the consent (or setup) window: stop sending, tear down.
    ConsentExpired,
}

/// Where the agent is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceState {
    /// Waiting for checks and a nomination.
    New,
    /// A pair is nominated and consent is fresh.
    Connected,
    /// Consent expired; terminal.
    Closed,
}

/// The ICE-lite agent of one transport. See the module docs.
pub struct IceLite {
    local: IceCredentials,
    /// HMAC key of the local password, prepared once: every check is verified with it.
    key: hmac::Key,
    remote_ufrag: Option<String>,
    state: IceState,
    /// Validated remote addresses with the time of their last valid check (for LRU eviction).
    valid: Vec<(SocketAddr, Instant)>,
    nominated: Option<SocketAddr>,
    created: Instant,
    /// Last authenticated check from any address (setup phase).
    last_check: Option<Instant>,
    /// Last authenticated check from the nominated address (consent).
    last_consent: Option<Instant>,
    consent_timeout: Duration,
    setup_timeout: Duration,
    events: VecDeque<IceEvent>,
}

impl std::fmt::Debug for IceLite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceLite")
            .field("local", &self.local)
            .field("remote_ufrag", &self.remote_ufrag)
            .field("state", &self.state)
            .field("nominated", &self.nominated)
            .field("valid", &self.valid)
            .finish_non_exhaustive()
    }
}

impl IceLite {
    pub fn new(local: IceCredentials, now: Instant) -> Self {
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, local.pwd.as_bytes());
        Self {
            local,
            key,
            remote_ufrag: None,
            state: IceState::New,
            valid: Vec::with_capacity(MAX_VALID_REMOTES),
            nominated: None,
            created: now,
            last_check: None,
            last_consent: None,
            consent_timeout: CONSENT_TIMEOUT,
            setup_timeout: SETUP_TIMEOUT,
            events: VecDeque::with_capacity(4),
        }
    }

    pub fn local_credentials(&self) -> &IceCredentials {
        &self.local
    }

    /// Once known (from the remote SDP), USERNAME must be exactly "local:remote". Until then any
    /// remote part is accepted: checks may arrive before the answer is processed.
    pub fn set_remote_ufrag(&mut self, ufrag: String) {
        self.remote_ufrag = Some(ufrag);
    }

    pub fn set_consent_timeout(&mut self, timeout: Duration) {
        self.consent_timeout = timeout;
    }

    pub fn set_setup_timeout(&mut self, timeout: Duration) {
        self.setup_timeout = timeout;
    }

    pub fn state(&self) -> IceState {
        self.state
    }

    pub fn nominated(&self) -> Option<SocketAddr> {
        self.nominated
    }

    /// Whether `addr` passed an authenticated check: DTLS and SRTP are accepted only from such
    /// addresses. Always false once closed.
    pub fn is_valid_remote(&self, addr: SocketAddr) -> bool {
        self.state != IceState::Closed && self.valid.iter().any(|(a, _)| *a == addr)
    }

    /// Answer one STUN message received from `from`. See the module docs and [`IceError`].
    pub fn handle_stun(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: &StunMessage<'_>,
        out: &mut [u8],
    ) -> Result<StunReply, IceError> {
        if self.state == IceState::Closed {
            return Err(IceError::Closed);
        }
        let tx = msg.transaction_id();
        if msg.class() != Class::Request {
            // Indications and responses need no answer (we send no requests).
            return Err(IceError::NotBindingRequest { reply_len: 0 });
        }
        if msg.method() != stun::METHOD_BINDING {
            let reply_len = self.error(tx, 400, "Bad Request", false, &[], out)?;
            return Err(IceError::NotBindingRequest { reply_len });
        }
        // RFC 8489 section 9.1.3: no USERNAME or MESSAGE-INTEGRITY is a 400, a wrong one a 401;
        // neither answer carries MESSAGE-INTEGRITY since the request was not authenticated.
        let Some(username) = msg.username() else {
            let reply_len = self.error(tx, 400, "Bad Request", false, &[], out)?;
            return Err(IceError::MissingCredentials { reply_len });
        };
        if !msg.has_integrity() {
            let reply_len = self.error(tx, 400, "Bad Request", false, &[], out)?;
            return Err(IceError::MissingCredentials { reply_len });
        }
        if !self.username_matches(username) {
            let reply_len = self.error(tx, 401, "Unauthorized", false, &[], out)?;
            return Err(IceError::UsernameMismatch { reply_len });
        }
        if !msg.verify_integrity_with(&self.key) {
            let reply_len = self.error(tx, 401, "Unauthorized", false, &[], out)?;
            return Err(IceError::BadIntegrity { reply_len });
        }
        // Authenticated from here on: error answers carry MESSAGE-INTEGRITY.
        if let Some(typ) = msg.unknown_comprehension_required() {
            let reply_len = self.error(tx, 420, "Unknown Attribute", true, &[typ], out)?;
            return Err(IceError::UnknownAttribute { typ, reply_len });
        }
        if msg.ice_controlled().is_some() {
            // RFC 8445 section 7.3.1.1 with a lite agent: it can never take the controlling
            // role, so the remote must; 487 tells it to switch.
            let reply_len = self.error(tx, 487, "Role Conflict", true, &[], out)?;
            return Err(IceError::RoleConflict { reply_len });
        }

        let len = stun::write_binding_success_with(tx, from, &self.key, out)?;
        self.learn(now, from);
        self.last_check = Some(now);

        let mut nominated_changed = false;
        if msg.use_candidate() && self.nominated != Some(from) {
            nominated_changed = true;
            let first = self.nominated.is_none();
            self.nominated = Some(from);
            tracing::debug!(%from, first, "ice: nominated");
            if first {
                self.state = IceState::Connected;
                self.events.push_back(IceEvent::Connected(from));
            } else {
                // Coalesce a burst of switches into the latest so the queue stays bounded.
                if let Some(IceEvent::NominatedChanged(last)) = self.events.back_mut() {
                    *last = from;
                } else {
                    self.events.push_back(IceEvent::NominatedChanged(from));
                }
            }
        }
        if self.nominated == Some(from) {
            self.last_consent = Some(now);
        }
        Ok(StunReply { len, nominated_changed })
    }

    /// Next event, if any.
    pub fn poll_event(&mut self) -> Option<IceEvent> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] must run next: the consent (or setup) deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            IceState::Closed => None,
            _ => self.deadline(),
        }
    }

    /// Expire consent when its deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == IceState::Closed {
            return;
        }
        if let Some(deadline) = self.deadline()
            && now >= deadline
        {
            tracing::debug!(nominated = ?self.nominated, "ice: consent expired");
            self.state = IceState::Closed;
            self.events.push_back(IceEvent::ConsentExpired);
        }
    }

    /// Before nomination: the later of the setup window and the last check's consent window, so
    /// a remote still checking is given time to nominate. After: consent of the nominated pair.
    /// `None` only if the arithmetic overflows `Instant` (a timeout too large to matter).
    fn deadline(&self) -> Option<Instant> {
        match self.last_consent {
            Some(t) if self.nominated.is_some() => t.checked_add(self.consent_timeout),
            _ => {
                let setup = self.created.checked_add(self.setup_timeout);
                let checks = self.last_check.and_then(|t| t.checked_add(self.consent_timeout));
                match (setup, checks) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                }
            }
        }
    }

    fn username_matches(&self, username: &[u8]) -> bool {
        // "receiver:sender": ufrags are ice-chars, so the first ':' is the separator.
        let Some(colon) = username.iter().position(|&b| b == b':') else {
            return false;
        };
        let (local, remote) = (&username[..colon], &username[colon + 1..]);
        if local != self.local.ufrag.as_bytes() {
            return false;
        }
        match &self.remote_ufrag {
            Some(expected) => remote == expected.as_bytes(),
            None => true,
        }
    }

    /// Record `from` as validated, refreshing it or evicting the least recently checked entry
    /// (never the nominated one) when full. No allocation: capacity is reserved in `new`.
    fn learn(&mut self, now: Instant, from: SocketAddr) {
        if let Some(entry) = self.valid.iter_mut().find(|(a, _)| *a == from) {
            entry.1 = now;
            return;
        }
        if self.valid.len() >= MAX_VALID_REMOTES {
            let nominated = self.nominated;
            let oldest = self
                .valid
                .iter()
                .enumerate()
                .filter(|(_, (a, _))| Some(*a) != nominated)
                .min_by_key(|(_, (_, t))| *t)
                .map(|(i, _)| i);
            if let Some(i) = oldest {
                self.valid.swap_remove(i);
            }
        }
        self.valid.push((from, now));
    }

    fn error(
        &self,
        tx: [u8; 12],
        code: u16,
        reason: &str,
        authenticated: bool,
        unknown: &[u16],
        out: &mut [u8],
    ) -> Result<usize, IceError> {
        let key = authenticated.then_some(&self.key);
        Ok(stun::write_binding_error_with(tx, code, reason, key, unknown, out)?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test.

    use super::*;
    use crate::stun::{MessageWriter, parse, write_binding_request};

    fn creds() -> IceCredentials {
        IceCredentials { ufrag: "rtr1".into(), pwd: "router-password-0123456789".into() }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    struct Req {
        username: &'static str,
        pwd: &'static str,
        use_candidate: bool,
    }

    fn request(tx: u8, r: Req) -> ([u8; 256], usize) {
        let mut buf = [0u8; 256];
        let n = write_binding_request(
            [tx; 12],
            r.username.as_bytes(),
            r.pwd.as_bytes(),
            0x6e00_01ff,
            Some(0x1234),
            r.use_candidate,
            &mut buf,
        )
        .unwrap();
        (buf, n)
    }

    fn good(tx: u8, use_candidate: bool) -> ([u8; 256], usize) {
        request(tx, Req { username: "rtr1:brws", pwd: "router-password-0123456789", use_candidate })
    }

    fn send(
        agent: &mut IceLite,
        now: Instant,
        from: SocketAddr,
        (buf, n): ([u8; 256], usize),
    ) -> (Result<StunReply, IceError>, Vec<u8>) {
        let mut out = [0u8; 256];
        let msg = parse(&buf[..n]).unwrap();
        let r = agent.handle_stun(now, from, &msg, &mut out);
        let len = match &r {
            Ok(reply) => reply.len,
            Err(e) => e.reply_len(),
        };
        (r, out[..len].to_vec())
    }

    #[test]
    fn random_credentials_are_long_enough_ice_chars_and_distinct() {
        let a = IceCredentials::random().unwrap();
        let b = IceCredentials::random().unwrap();
        assert!(a.ufrag.len() >= 4 && a.pwd.len() >= 22);
        for c in a.ufrag.bytes().chain(a.pwd.bytes()) {
            assert!(ICE_CHARS.contains(&c));
        }
        assert_ne!(a, b);
        assert!(!format!("{a:?}").contains(&a.pwd));
    }

    #[test]
    fn check_is_answered_with_authenticated_success_carrying_source_address() {
        let now = Instant::now();
        let mut agent = IceLite::new(creds(), now);
        let from = addr("[2001:db8::5]:40000");
        let (r, bytes) = send(&mut agent, now, from, good(1, false));
        let reply = r.unwrap();
        assert!(!reply.nominated_changed);
        let resp = parse(&bytes).unwrap();
        assert_eq!(resp.class(), Class::SuccessResponse);
        assert_eq!(resp.transaction_id(), [1; 12]);
        assert_eq!(resp.xor_mapped_address(), Some(from));
        assert!(resp.verify_integrity(b"router-password-0123456789"));
        assert!(resp.has_fingerprint());
        assert!(agent.is_valid_remote(from));
        assert!(!agent.is_valid_remote(addr("[2001:db8::5]:40001")));
        assert_eq!(agent.nominated(), None);
        assert_eq!(agent.poll_event(), None);
    }

    #[test]
    fn wrong_password_gets_401_and_error() {
        let now = Instant::now();
        let mut agent = IceLite::new(creds(), now);
        let from = addr("192.0.2.1:1000");
        let req = request(2, Req { username: "rtr1:brws", pwd: "not-the-router-password!!", use_candidate: true });
        let (r, bytes) = send(&mut agent, now, from, req);
        assert!(matches!(r, Err(IceError::BadIntegrity { reply_len }) if reply_len > 0));
        let resp = parse(&bytes).unwrap();
        assert_eq!(resp.class(), Class::ErrorResponse);
        assert_eq!(resp.error_code().unwrap().code, 401);
        assert!(!resp.has_integrity());
        assert!(!agent.is_valid_remote(from));
        assert_eq!(agent.nominated(), None);
        assert_eq!(agent.poll_event(), None);
    }

    #[test]
    fn unknown_local_ufrag_gets_401() {
        let now = Instant::now();
        let mut agent = IceLite::new(creds(), now);
        for username in ["other:brws", "rtr1brws", "rtr10:brws", ":rtr1"] {
            let req = request(3, Req { username, pwd: "router-password-0123456789", use_candidate: false });
            let (r, bytes) = send(&mut agent, now, addr("192.0.2.1:1000"), req);
            assert!(matches!(r, Err(IceError::UsernameMismatch { .. })), "{username}");
            assert_eq!(parse(&bytes).unwrap().error_code().unwrap().code, 401);
        }
        assert!(!agent.is_valid_remote(addr("192.0.2.1:1000")));
    }

    #[test]
    fn remote_ufrag_is_enforced_once_set() {
        let now = Instant::now();
        let mut agent = IceLite::new(creds(), now);
        let from = addr("192.0.2.1:1000");
        // Not set yet: any remote part is accepted.
        assert!(send(&mut agent, now, from, good(4, false)).0.is_ok());
        agent.set_remote_ufrag("other".into());
        let (r, _) = send(&mut agent, now, from, good(5, false));
        assert!(matches!(r, Err(IceError::UsernameMismatch { .. })));
        agent.set_remote_ufrag("brws".into());
        assert!(send(&mut agent, now, from, good(6, false)).0.is_ok());
    }

    #[test]
    fn missing_integrity_gets_400() {
        let now = Instant::now();
        let mut agent = IceLite::new(creds(), now);
        let mut buf = [0u8; 256];
        let mut w = MessageWriter::new(&mut buf, Class::Request, 1, [7; 12]).unwrap();
        w.username(b"rtr1:brws").unwrap().use_candidate().unwrap();
        let n = w.finish();
        let (r, bytes) = send(&mut agent, now, addr("192.0.2.1:1000"), (buf, n));
        assert!(matches!(r, Err(IceError::MissingCredentials { .. })));
        assert_eq!(parse(&bytes).unwrap().error_code().unwrap().code, 400);
        assert_eq!(agent.nominated(), None);
    }

    #[test]
    fn remote_claiming_controlled_gets_authenticated_487() {
        let now = Instant::now();
        let mut agent = IceLite::new(creds(), now);
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, b"router-password-0123456789");
        let mut buf = [0u8; 256];
        let mut w = MessageWriter::new(&mut buf, Class::Request, 1, [8; 12]).unwrap();
        w.username(b"rtr1:brws")
            .unwrap()
            .priority(1)
            .unwrap()
            .ice_controlled(99)
            .unwrap()
            .use_candidate()
            .unwrap()
            .message_integrity(&key)
            .unwrap()
            .fingerprint()
            .unwrap();
        let n = w.finish();
        let from = addr("192.0.2.1:1000");
        let (r, bytes) = send(&mut agent, now, from, (buf, n));
        assert!(matches!(r, Err(IceError::RoleConflict { .. })));
        let resp = parse(&bytes).unwrap();
        assert_eq!(resp.error_code().unwrap().code, 487);
        assert!(resp.verify_integrity(b"router-password-0123456789"));
        assert_eq!(agent.nominated(), None);
        assert!(!agent.is_valid_remote(from));
    }

    #[test]
    fn unknown_required_attribute_gets_420() {
        let now = Instant::now();
        let mut agent = IceLite::new(creds(), now);
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, b"router-password-0123456789");
        let mut buf = [0u8; 256];
        let mut w = MessageWriter::new(&mut buf, Class::Request, 1, [8; 12]).unwrap();
        w.username(b"rtr1:brws").unwrap().attribute(0x7001, &[1, 2]).unwrap().message_integrity(&key).unwrap();
        let n = w.finish();
        let (r, bytes) = send(&mut agent, now, addr("192.0.2.1:1000"), (buf, n));
        assert!(matches!(r, Err(IceError::UnknownAttribute { typ: 0x7001, .. })));
        assert_eq!(parse(&bytes).unwrap().error_code().unwrap().code, 420);
    }

    #[test]
    fn responses_and_indications_are_ignored_without_reply() {
        let now = Instant::now();
        let mut agent = IceLite::new(creds(), now);
        let mut buf = [0u8; 256];
        let n = stun::write_binding_success([1; 12], addr("192.0.2.1:1"), b"x", &mut buf).unwrap();
        let (r, bytes) = send(&mut agent, now, addr("192.0.2.1:1000"), (buf, n));
        assert_eq!(r, Err(IceError::NotBindingRequest { reply_len: 0 }));
        assert!(bytes.is_empty());
    }

    #[test]
    fn small_output_buffer_is_an_error_not_a_panic() {
        let now = Instant::now();
        let mut agent = IceLite::new(creds(), now);
        let (buf, n) = good(1, true);
        let msg = parse(&buf[..n]).unwrap();
        let mut out = [0u8; 30];
        let r = agent.handle_stun(now, addr("192.0.2.1:1000"), &msg, &mut out);
        assert!(matches!(r, Err(IceError::Stun(StunError::BufferTooSmall { .. }))));
        // Nothing was learned from a check we could not answer.
        assert_eq!(agent.nominated(), None);
    }

    #[test]
    fn use_candidate_nominates_then_a_later_nomination_switches() {
        let now = Instant::now();
        let mut agent = IceLite::new(creds(), now);
        let a = addr("192.0.2.1:1000");
        let b = addr("[2001:db8::9]:2000");

        let (r, _) = send(&mut agent, now, a, good(1, true));
        assert!(r.unwrap().nominated_changed);
        assert_eq!(agent.nominated(), Some(a));
        assert_eq!(agent.state(), IceState::Connected);
        assert_eq!(agent.poll_event(), Some(IceEvent::Connected(a)));

        // Re-nominating the same address is not a change.
        let (r, _) = send(&mut agent, now, a, good(2, true));
        assert!(!r.unwrap().nominated_changed);
        // A plain check from b validates it without nominating.
        let (r, _) = send(&mut agent, now, b, good(3, false));
        assert!(!r.unwrap().nominated_changed);
        assert_eq!(agent.nominated(), Some(a));
        assert_eq!(agent.poll_event(), None);

        let (r, _) = send(&mut agent, now, b, good(4, true));
        assert!(r.unwrap().nominated_changed);
        assert_eq!(agent.nominated(), Some(b));
        assert_eq!(agent.poll_event(), Some(IceEvent::NominatedChanged(b)));
        assert_eq!(agent.poll_event(), None);
        assert!(agent.is_valid_remote(a) && agent.is_valid_remote(b));
    }

    #[test]
    fn consent_expires_30s_after_last_check_from_nominated() {
        let t0 = Instant::now();
        let mut agent = IceLite::new(creds(), t0);
        let a = addr("192.0.2.1:1000");
        let other = addr("192.0.2.2:1000");
        send(&mut agent, t0, a, good(1, true)).0.unwrap();
        assert_eq!(agent.poll_event(), Some(IceEvent::Connected(a)));

        // Consent checks every 5 s keep it alive well past 30 s.
        let mut t = t0;
        for i in 0..10u8 {
            t += Duration::from_secs(5);
            agent.handle_timeout(t);
            send(&mut agent, t, a, good(10 + i, false)).0.unwrap();
        }
        assert_eq!(agent.state(), IceState::Connected);
        let last = t;
        assert_eq!(agent.poll_timeout(), Some(last + CONSENT_TIMEOUT));

        // Checks from a non-nominated address do not refresh consent.
        send(&mut agent, last + Duration::from_secs(20), other, good(50, false)).0.unwrap();
        assert_eq!(agent.poll_timeout(), Some(last + CONSENT_TIMEOUT));

        agent.handle_timeout(last + CONSENT_TIMEOUT - Duration::from_millis(1));
        assert_eq!(agent.state(), IceState::Connected);
        assert_eq!(agent.poll_event(), None);
        agent.handle_timeout(last + CONSENT_TIMEOUT);
        assert_eq!(agent.state(), IceState::Closed);
        assert_eq!(agent.poll_event(), Some(IceEvent::ConsentExpired));
        assert_eq!(agent.poll_event(), None);
        assert_eq!(agent.poll_timeout(), None);
        assert!(!agent.is_valid_remote(a));

        // Once only, and closed for good.
        agent.handle_timeout(last + CONSENT_TIMEOUT * 3);
        assert_eq!(agent.poll_event(), None);
        let (r, bytes) = send(&mut agent, last + CONSENT_TIMEOUT, a, good(60, true));
        assert_eq!(r, Err(IceError::Closed));
        assert!(bytes.is_empty());
    }

    #[test]
    fn no_check_within_setup_window_expires() {
        let t0 = Instant::now();
        let mut agent = IceLite::new(creds(), t0);
        assert_eq!(agent.poll_timeout(), Some(t0 + SETUP_TIMEOUT));
        agent.handle_timeout(t0 + Duration::from_secs(29));
        assert_eq!(agent.poll_event(), None);
        agent.handle_timeout(t0 + SETUP_TIMEOUT);
        assert_eq!(agent.poll_event(), Some(IceEvent::ConsentExpired));
        assert_eq!(agent.state(), IceState::Closed);
    }

    #[test]
    fn checks_before_nomination_extend_the_setup_window() {
        let t0 = Instant::now();
        let mut agent = IceLite::new(creds(), t0);
        let a = addr("192.0.2.1:1000");
        let t1 = t0 + Duration::from_secs(20);
        send(&mut agent, t1, a, good(1, false)).0.unwrap();
        assert_eq!(agent.poll_timeout(), Some(t1 + CONSENT_TIMEOUT));
        agent.handle_timeout(t0 + SETUP_TIMEOUT);
        assert_eq!(agent.state(), IceState::New);
        agent.handle_timeout(t1 + CONSENT_TIMEOUT);
        assert_eq!(agent.poll_event(), Some(IceEvent::ConsentExpired));
    }

    #[test]
    fn consent_timeout_is_configurable() {
        let t0 = Instant::now();
        let mut agent = IceLite::new(creds(), t0);
        agent.set_consent_timeout(Duration::from_secs(5));
        let a = addr("192.0.2.1:1000");
        send(&mut agent, t0, a, good(1, true)).0.unwrap();
        assert_eq!(agent.poll_timeout(), Some(t0 + Duration::from_secs(5)));
        agent.handle_timeout(t0 + Duration::from_secs(5));
        assert_eq!(agent.state(), IceState::Closed);
    }

    #[test]
    fn valid_remotes_are_bounded_and_keep_the_nominated() {
        let t0 = Instant::now();
        let mut agent = IceLite::new(creds(), t0);
        let nominated = addr("192.0.2.1:1");
        send(&mut agent, t0, nominated, good(0, true)).0.unwrap();
        for port in 2..(2 + 2 * MAX_VALID_REMOTES as u16) {
            let t = t0 + Duration::from_millis(u64::from(port));
            send(&mut agent, t, addr(&format!("192.0.2.1:{port}")), good(1, false)).0.unwrap();
        }
        assert_eq!(agent.valid.len(), MAX_VALID_REMOTES);
        assert!(agent.is_valid_remote(nominated));
        let newest = 1 + 2 * MAX_VALID_REMOTES as u16;
        assert!(agent.is_valid_remote(addr(&format!("192.0.2.1:{newest}"))));
        assert!(!agent.is_valid_remote(addr("192.0.2.1:2")));
    }
}

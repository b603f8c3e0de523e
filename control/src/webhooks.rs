//! Webhook delivery: the dispatcher that drains the store's outbox to the receivers' URLs.
//!
//! Events are rows written by `store` in the same transaction as the change that caused them
//! (`store::outbox`), already routed to an endpoint `{url, headers, secret}`. This task only
//! moves them: it asks the store for what is due, POSTs each body, and records the outcome.
//!
//! ```text
//!  record_activity ──(one SQLite tx)──► outbox row (pending)
//!                                              │ due_webhooks: the oldest pending event per room
//!  Dispatcher loop ◄───────────────────────────┘
//!    ├─ POST (≤ 16 in flight, across rooms; one at a time within a room, by the store's query)
//!    ├─ 2xx ──────────────► webhook_delivered
//!    └─ else / error / 10 s ► webhook_attempt_failed(retry_at = now + retry_delay(attempts)),
//!                             or give up (`failed`) once the event is 24 hours old
//! ```
//!
//! Delivery is at least once: a crash after the receiver answered but before the store recorded
//! it sends the event again after restart, so receivers de-duplicate by `X-Webhook-Id` (the
//! envelope's `id`). Each request is signed ([`sign`]): `X-Webhook-Signature: v1=<hex
//! HMAC-SHA256(secret, "<X-Webhook-Timestamp>.<body>")>`; docs/webhooks.md shows receivers how
//! to check it.
//!
//! ```
//! use control::webhooks::{sign, verify_signature};
//! let sig = sign("secret", 1_700_000_000, br#"{"id":"e1"}"#);
//! assert!(sig.starts_with("v1="));
//! assert!(verify_signature("secret", &sig, 1_700_000_000, br#"{"id":"e1"}"#));
//! assert!(!verify_signature("secret", &sig, 1_700_000_001, br#"{"id":"e1"}"#));
//! ```
//!
//! The daemon starts it with [`spawn`]; whoever writes events may poke the returned
//! [`tokio::sync::Notify`] so they go out at once rather than at the next poll (at most 1 s).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::{constant_time, hmac};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HOST, HeaderName, HeaderValue, USER_AGENT};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use store::outbox::Delivery;
use store::{Store, StoreError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};
use util::LockExt;

/// How long after its creation an event is still retried; then it is given up (`failed`).
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The longest wait between two attempts.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(600);

/// The header names of a delivery.
pub const ID_HEADER: &str = "x-webhook-id";
pub const TIMESTAMP_HEADER: &str = "x-webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "x-webhook-signature";

/// The wait before the next attempt after `attempts` failed ones: 1 s, 3 s, 10 s (100ms's
/// schedule), then doubling (20 s, 40 s, ...) up to 10 minutes. `None` for `attempts == 0` (no
/// failure, nothing to retry) and once the waits so far add up to [`GIVE_UP_AFTER`]: with a
/// receiver down for good that is about 150 attempts over 24 hours. The dispatcher also gives
/// up when the event itself is older than that ([`next_attempt_at`]), which matters when the
/// daemon was down for part of the day.
pub fn retry_delay(attempts: u32) -> Option<Duration> {
    let delay = |n: u32| -> Duration {
        match n {
            1 => Duration::from_secs(1),
            2 => Duration::from_secs(3),
            3 => Duration::from_secs(10),
            // 10 s doubled (n - 3) times; the shift is bounded so it cannot overflow.
            n => Duration::from_secs(10u64 << (n - 3).min(16)).min(MAX_RETRY_DELAY),
        }
    };
    if attempts == 0 {
        return None;
    }
    // Waits before this one: 1 + 3 + 10 + 20 + ... (cheap: at most ~150 terms).
    let waited: Duration = (1..attempts).map(delay).sum();
    let next = delay(attempts);
    (waited + next <= GIVE_UP_AFTER).then_some(next)
}

/// When to try again an event created at `created_ms` whose `attempts`-th attempt just failed
/// at `now_ms` (all in ms since the epoch), under `schedule`; `None` to give up, because the
/// schedule says so or because the retry would fall past `created_ms + horizon`.
pub fn next_attempt_at(
    schedule: fn(u32) -> Option<Duration>,
    horizon: Duration,
    created_ms: i64,
    attempts: u32,
    now_ms: i64,
) -> Option<i64> {
    let at = now_ms.saturating_add(schedule(attempts)?.as_millis() as i64);
    (at <= created_ms.saturating_add(horizon.as_millis() as i64)).then_some(at)
}

/// The signature header's value for a delivery at `timestamp` (Unix seconds):
/// `v1=` and the lowercase hex HMAC-SHA256, keyed by the endpoint secret's UTF-8 bytes, of
/// `"<timestamp>.<body>"`.
pub fn sign(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let tag = mac(secret, timestamp, body);
    let mut out = String::with_capacity(3 + 2 * tag.as_ref().len());
    out.push_str("v1=");
    for b in tag.as_ref() {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out
}

/// Whether `header_value` (an `X-Webhook-Signature`; several `v1=` entries may be separated by
/// commas or spaces, e.g. during a secret rotation) holds the signature of `body` at
/// `timestamp` under `secret`. The comparison is constant-time. Checking that `timestamp` is
/// recent (against replays) is the caller's business.
pub fn verify_signature(secret: &str, header_value: &str, timestamp: u64, body: &[u8]) -> bool {
    let expected = mac(secret, timestamp, body);
    let mut ok = false;
    for entry in header_value.split([',', ' ']).filter(|e| !e.is_empty()) {
        if let Some(hex) = entry.strip_prefix("v1=")
            && let Some(given) = decode_hex(hex)
        {
            // No early exit, so the time taken does not say which entry matched.
            ok |= constant_time::verify_slices_are_equal(expected.as_ref(), &given).is_ok();
        }
    }
    ok
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn mac(secret: &str, timestamp: u64, body: &[u8]) -> hmac::Tag {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    ctx.sign()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let nibble = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    };
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks_exact(2).map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?)).collect()
}

/// Why a POST did not get a response.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("bad URL: {0}")]
    Url(String),
    #[error("bad header {0:?}")]
    Header(String),
    #[error("connection refused")]
    Refused,
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("TLS: {0}")]
    Tls(std::io::Error),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("timed out")]
    Timeout,
}

/// An HTTP/1.1 client for deliveries: one connection per request (hyper's connection-level
/// client over our own TCP or rustls stream), http and https, with a deadline for the whole
/// exchange up to the response head.
#[derive(Debug, Clone)]
pub struct Client {
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
    user_agent: HeaderValue,
}

impl Client {
    /// A client trusting Mozilla's roots (webpki-roots) plus `extra_roots` (a private CA, or a
    /// test's self-signed receiver).
    pub fn new(timeout: Duration, extra_roots: &[CertificateDer<'static>]) -> Result<Client, rustls::Error> {
        let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        for cert in extra_roots {
            roots.add(cert.clone())?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let user_agent = HeaderValue::from_static(concat!("rtc-control-webhooks/", env!("CARGO_PKG_VERSION")));
        Ok(Client { tls: Arc::new(config), timeout, user_agent })
    }

    /// POSTs `body` to `url` with `headers` (the endpoint's custom ones first, so the standard
    /// ones given after them win) and returns the response status.
    pub async fn post(&self, url: &str, headers: &[(String, String)], body: Bytes) -> Result<u16, PostError> {
        match tokio::time::timeout(self.timeout, self.post_inner(url, headers, body)).await {
            Ok(r) => r,
            Err(_) => Err(PostError::Timeout),
        }
    }

    async fn post_inner(&self, url: &str, headers: &[(String, String)], body: Bytes) -> Result<u16, PostError> {
        let uri: Uri = url.parse().map_err(|e| PostError::Url(format!("{url}: {e}")))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(PostError::Url(format!("{url}: not http or https"))),
        };
        let authority = uri.authority().ok_or_else(|| PostError::Url(format!("{url}: no host")))?.clone();
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path = uri.path_and_query().map_or("/", |p| p.as_str());

        let mut req = Request::post(path).body(Full::new(body)).map_err(|e| PostError::Url(e.to_string()))?;
        let h = req.headers_mut();
        for (name, value) in headers {
            let name = HeaderName::try_from(name.as_str()).map_err(|_| PostError::Header(name.clone()))?;
            let value = HeaderValue::try_from(value.as_str()).map_err(|_| PostError::Header(name.to_string()))?;
            h.insert(name, value);
        }
        h.insert(HOST, HeaderValue::try_from(authority.as_str()).map_err(|_| PostError::Url(url.into()))?);
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(USER_AGENT, self.user_agent.clone());

        let tcp = TcpStream::connect((host.as_str(), port)).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => PostError::Refused,
            _ => PostError::Connect(e),
        })?;
        let _ = tcp.set_nodelay(true);
        if https {
            let name = ServerName::try_from(host).map_err(|e| PostError::Url(format!("{url}: {e}")))?;
            let tls =
                tokio_rustls::TlsConnector::from(self.tls.clone()).connect(name, tcp).await.map_err(PostError::Tls)?;
            exchange(tls, req).await
        } else {
            exchange(tcp, req).await
        }
    }
}

/// One request on a fresh connection: drives the connection and the request together, returns
/// at the response head (the body is not read; the connection is then dropped).
async fn exchange<S>(io: S, req: Request<Full<Bytes>>) -> Result<u16, PostError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let mut conn = std::pin::pin!(conn);
    let mut send = std::pin::pin!(sender.send_request(req));
    tokio::select! {
        biased;
        resp = &mut send => Ok(resp?.status().as_u16()),
        // The connection can finish first when the server answered and closed: the response
        // then waits in the request's channel (or the channel is closed, an error).
        end = &mut conn => {
            end?;
            Ok(send.await?.status().as_u16())
        }
    }
}

/// The dispatcher's knobs; [`Config::default`] is what the daemon uses.
#[derive(Debug, Clone)]
pub struct Config {
    /// Deliveries in flight at once (each to a different room).
    pub concurrency: usize,
    /// Deadline of one attempt (connect, TLS, request, response head).
    pub timeout: Duration,
    /// Longest sleep between two looks at the outbox (events written by another process, or
    /// retries scheduled before a restart, are found within this).
    pub poll: Duration,
    /// Wait after the n-th failed attempt ([`retry_delay`]; tests shorten it).
    pub retry: fn(u32) -> Option<Duration>,
    /// Give up on events older than this.
    pub horizon: Duration,
    /// Extra trusted roots for https endpoints.
    pub extra_roots: Vec<CertificateDer<'static>>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            concurrency: 16,
            timeout: Duration::from_secs(10),
            poll: Duration::from_secs(1),
            retry: retry_delay,
            horizon: GIVE_UP_AFTER,
            extra_roots: Vec::new(),
        }
    }
}

/// The delivery loop over a shared store.
#[derive(Debug)]
pub struct Dispatcher {
    store: Arc<Mutex<Store>>,
    client: Client,
    config: Config,
    wake: Arc<Notify>,
}

/// Starts the daemon's dispatcher (default [`Config`]) on the current tokio runtime; it stops
/// when `shutdown` turns true. Returns the wake-up to poke after writing events.
pub fn spawn(store: Arc<Mutex<Store>>, shutdown: watch::Receiver<bool>) -> Arc<Notify> {
    match Dispatcher::new(store, Config::default()) {
        Ok(d) => {
            let wake = d.waker();
            tokio::spawn(d.run(shutdown));
            wake
        }
        Err(e) => {
            // Only a broken TLS provider gets here; the daemon still serves everything else.
            tracing::error!(error = %e, "webhook dispatcher not started");
            Arc::new(Notify::new())
        }
    }
}

/// What one delivery task reports back.
struct Outcome {
    seq: i64,
    retry_at: Option<i64>,
}

impl Dispatcher {
    pub fn new(store: Arc<Mutex<Store>>, config: Config) -> Result<Dispatcher, rustls::Error> {
        let client = Client::new(config.timeout, &config.extra_roots)?;
        Ok(Dispatcher { store, client, config, wake: Arc::new(Notify::new()) })
    }

    /// Poke this after writing events, to send them now rather than at the next poll.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Runs until `shutdown` turns true (or its sender is dropped). Deliveries in flight then are
    /// abandoned; their events stay pending and go out after the next start.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut tasks: JoinSet<Outcome> = JoinSet::new();
        let mut in_flight: HashSet<i64> = HashSet::new();
        // Retry times this process set: the store's `next_webhook_at` also counts later events
        // of rooms held back by a failing head, so it cannot say exactly when the head is due.
        let mut retries: Vec<i64> = Vec::new();
        info!(concurrency = self.config.concurrency, "webhook dispatcher running");
        loop {
            if *shutdown.borrow() {
                break;
            }
            let now = util::unix_ms() as i64;
            let free = self.config.concurrency.saturating_sub(in_flight.len());
            let mut next_at = None;
            if free > 0 {
                // In-flight heads are still pending and come back from the query; ask for enough.
                let want = u32::try_from(in_flight.len() + free).unwrap_or(u32::MAX);
                let fetched = {
                    let store = self.store.lock_unpoisoned();
                    store.due_webhooks(now, want).and_then(|d| Ok((d, store.next_webhook_at()?)))
                };
                match fetched {
                    Ok((due, next)) => {
                        next_at = next;
                        let fresh: Vec<Delivery> =
                            due.into_iter().filter(|d| !in_flight.contains(&d.seq)).take(free).collect();
                        for d in fresh {
                            in_flight.insert(d.seq);
                            tasks.spawn(deliver(self.client.clone(), self.store.clone(), self.config.clone(), d));
                        }
                    }
                    Err(e) => warn!(error = %e, "reading the webhook outbox"),
                }
            }
            retries.retain(|&t| t > now);
            let mut wake_at = now + self.config.poll.as_millis() as i64;
            if let Some(t) = next_at.filter(|&t| t > now) {
                wake_at = wake_at.min(t);
            }
            if let Some(&t) = retries.iter().min() {
                wake_at = wake_at.min(t);
            }
            let sleep = Duration::from_millis(u64::try_from(wake_at - now).unwrap_or(0));
            tokio::select! {
                Some(done) = tasks.join_next(), if !tasks.is_empty() => match done {
                    Ok(o) => {
                        in_flight.remove(&o.seq);
                        retries.extend(o.retry_at);
                    }
                    Err(e) => {
                        // A panicked delivery task: its seq is unknown here, so start afresh
                        // once the others finish (the store still has every event).
                        warn!(error = %e, "webhook delivery task failed");
                        if tasks.is_empty() {
                            in_flight.clear();
                        }
                    }
                },
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
                _ = crate::shutting_down(&mut shutdown) => break,
            }
        }
        tasks.abort_all();
        info!("webhook dispatcher stopped");
    }
}

/// One attempt at one event, recorded in the store.
async fn deliver(client: Client, store: Arc<Mutex<Store>>, config: Config, d: Delivery) -> Outcome {
    let timestamp = util::unix_ms() / 1000;
    let signature = sign(&d.secret, timestamp, d.body.as_bytes());
    let mut headers = d.headers.clone();
    headers.push((ID_HEADER.into(), d.id.clone()));
    headers.push((TIMESTAMP_HEADER.into(), timestamp.to_string()));
    headers.push((SIGNATURE_HEADER.into(), signature));
    let result = client.post(&d.url, &headers, Bytes::from(d.body.clone())).await;
    let now = util::unix_ms() as i64;
    let attempt = d.attempts + 1;
    let error = match result {
        Ok(status) if (200..300).contains(&status) => None,
        Ok(status) => Some(format!("HTTP {status}")),
        Err(e) => Some(e.to_string()),
    };
    let Some(error) = error else {
        debug!(id = %d.id, kind = %d.kind, attempt, "webhook delivered");
        record(&store, |s| s.webhook_delivered(d.seq, now));
        return Outcome { seq: d.seq, retry_at: None };
    };
    let created = created_ms(&d.body).unwrap_or(now);
    let retry_at = next_attempt_at(config.retry, config.horizon, created, attempt, now);
    match retry_at {
        Some(at) => warn!(id = %d.id, kind = %d.kind, url = %d.url, attempt, %error,
                          retry_in_ms = at - now, "webhook delivery failed"),
        None => warn!(id = %d.id, kind = %d.kind, url = %d.url, attempt, %error,
                      "webhook delivery failed; giving up on this event"),
    }
    record(&store, |s| s.webhook_attempt_failed(d.seq, &error, retry_at));
    Outcome { seq: d.seq, retry_at }
}

/// The event's creation time, from its envelope's `timestamp`.
fn created_ms(body: &str) -> Option<i64> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    store::time::parse_ms(v.get("timestamp")?.as_str()?)
}

fn record(store: &Mutex<Store>, f: impl FnOnce(&Store) -> Result<(), StoreError>) {
    if let Err(e) = f(&store.lock_unpoisoned()) {
        // The event stays pending as it was and is sent again: at least once, never lost.
        warn!(error = %e, "recording a webhook outcome");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_schedule_follows_100ms_then_doubles_to_ten_minutes() {
        let s = |n| retry_delay(n).map(|d| d.as_secs());
        let table = [
            (0, None),
            (1, Some(1)),
            (2, Some(3)),
            (3, Some(10)),
            (4, Some(20)),
            (5, Some(40)),
            (6, Some(80)),
            (7, Some(160)),
            (8, Some(320)),
            (9, Some(600)),
            (10, Some(600)),
            (100, Some(600)),
        ];
        for (attempts, want) in table {
            assert_eq!(s(attempts), want, "after {attempts} failed attempts");
        }
    }

    #[test]
    fn retry_schedule_stops_once_the_waits_reach_a_day() {
        let last = (1..1000).take_while(|&n| retry_delay(n).is_some()).last().unwrap_or(0);
        let total: Duration = (1..=last).filter_map(retry_delay).sum();
        assert!(total <= GIVE_UP_AFTER && total + MAX_RETRY_DELAY > GIVE_UP_AFTER, "total {total:?}");
        assert_eq!(retry_delay(last + 1), None);
        assert_eq!(last, 150);
    }

    #[test]
    fn next_attempt_gives_up_past_the_horizon_from_creation() {
        let h = GIVE_UP_AFTER.as_millis() as i64;
        let table = [
            // (created, attempts, now, want)
            (0, 1, 0, Some(1_000)),
            (0, 3, 5_000, Some(15_000)),
            (0, 9, h - 600_000, Some(h)),
            (0, 9, h - 599_999, None),
            (0, 1, h, None),
            // A daemon down for two days: the event is too old, whatever the count.
            (0, 1, 2 * h, None),
            (0, 0, 0, None),
        ];
        for (created, attempts, now, want) in table {
            assert_eq!(next_attempt_at(retry_delay, GIVE_UP_AFTER, created, attempts, now), want, "{attempts}@{now}");
        }
    }

    #[test]
    fn signature_matches_an_independent_hmac() {
        // printf '%s' '1700000000.{"id":"evt"}' | openssl dgst -sha256 -hmac 'whsec-test-secret'
        let want = "v1=825ba4e78ccd0506579e9ee1497ef921c347c2ea5490d5ebf0f1ff8f67fa2771";
        assert_eq!(sign("whsec-test-secret", 1_700_000_000, br#"{"id":"evt"}"#), want);
        assert!(verify_signature("whsec-test-secret", want, 1_700_000_000, br#"{"id":"evt"}"#));
        assert!(verify_signature(
            "whsec-test-secret",
            &want.to_uppercase().replace("V1=", "v1="),
            1_700_000_000,
            br#"{"id":"evt"}"#
        ));
    }

    #[test]
    fn verification_rejects_wrong_or_malformed_signatures() {
        let body = br#"{"id":"evt"}"#;
        let good = sign("k", 7, body);
        assert!(verify_signature("k", &format!("v1=00, {good}"), 7, body), "one of several entries");
        for bad in [
            String::new(),
            "v1=".into(),
            "v1=zz".into(),
            "v1=abc".into(),
            good.trim_start_matches("v1=").to_owned(),
            good.replace("v1=", "v0="),
            format!("{good}00"),
            format!("v1=é{}", &good[4..]),
        ] {
            assert!(!verify_signature("k", &bad, 7, body), "{bad:?}");
        }
        assert!(!verify_signature("other", &good, 7, body));
        assert!(!verify_signature("k", &good, 8, body));
        assert!(!verify_signature("k", &good, 7, br#"{"id":"evu"}"#));
    }

    #[test]
    fn creation_time_comes_from_the_envelope() {
        assert_eq!(created_ms(r#"{"timestamp":"2023-11-14T22:13:20.123Z"}"#), Some(1_700_000_000_123));
        assert_eq!(created_ms("not json"), None);
        assert_eq!(created_ms(r#"{"timestamp":5}"#), None);
    }
}

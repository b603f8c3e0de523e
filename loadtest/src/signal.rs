//! The platform's client-facing protocols as an app and the 100ms SDK speak them: the REST API
//! (a room, then one auth token per simulated peer, with a management token minted from the
//! workspace credentials) and the signaling WebSocket (JSON-RPC 2.0, §3 of the protocol).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::Error;

/// Trusts the platform's certificate (self-signed on first run) besides the public roots.
pub fn tls_config(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, Error> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = ca {
        for cert in CertificateDer::pem_file_iter(ca).map_err(|e| Error::Setup(format!("{}: {e}", ca.display())))? {
            let cert = cert.map_err(|e| Error::Setup(format!("{}: {e}", ca.display())))?;
            roots.add(cert).map_err(|e| Error::Setup(format!("{}: {e}", ca.display())))?;
        }
    }
    Ok(Arc::new(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth()))
}

/// `https://host:port` split into its parts.
fn host_port(url: &str) -> Result<(String, u16), Error> {
    let rest = url.strip_prefix("https://").ok_or_else(|| Error::Setup(format!("{url}: not an https:// URL")))?;
    let hostport = rest.split('/').next().unwrap_or(rest);
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().map_err(|_| Error::Setup(format!("{url}: bad port")))?),
        None => (hostport, 443),
    };
    Ok((host.to_owned(), port))
}

/// The REST API of control.
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    tls: Arc<rustls::ClientConfig>,
    management: String,
}

impl Api {
    /// An API client whose management token is minted from `credentials.json` (written by
    /// control on first run: workspace id, access key, secret).
    pub fn from_credentials(base: &str, credentials: &Path, tls: Arc<rustls::ClientConfig>) -> Result<Api, Error> {
        let text = std::fs::read_to_string(credentials)
            .map_err(|e| Error::Setup(format!("{}: {e} (is the platform running?)", credentials.display())))?;
        let v: Value =
            serde_json::from_str(&text).map_err(|e| Error::Setup(format!("{}: {e}", credentials.display())))?;
        let field = |k: &str| {
            v[k].as_str().map(str::to_owned).ok_or_else(|| Error::Setup(format!("{}: no {k}", credentials.display())))
        };
        let ws = store::Workspace {
            id: field("workspace_id")?,
            name: field("workspace").unwrap_or_default(),
            access_key: field("access_key")?,
            secret: field("secret")?,
        };
        let management = store::token::mint_management_token(&ws, Duration::from_secs(24 * 3600), SystemTime::now());
        Ok(Api { base: base.trim_end_matches('/').to_owned(), tls, management })
    }

    /// `GET /metrics` (same management token as the REST calls): the exposition text.
    pub async fn metrics(&self) -> Result<String, Error> {
        let (status, body) = self.request("GET", "/metrics", None).await?;
        let text = String::from_utf8_lossy(&body).into_owned();
        if !status.is_success() {
            return Err(Error::Http(format!("{}/metrics: {status}: {text}", self.base)));
        }
        Ok(text)
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, Error> {
        let url = format!("{}{path}", self.base);
        let (status, body) = self.request("POST", path, Some(body)).await?;
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(Error::Http(format!("{url}: {status}: {v}")));
        }
        Ok(v)
    }

    async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(hyper::StatusCode, Bytes), Error> {
        let url = format!("{}{path}", self.base);
        let (host, port) = host_port(&url)?;
        let tcp = TcpStream::connect((host.as_str(), port)).await.map_err(|e| Error::Http(format!("{url}: {e}")))?;
        let name = ServerName::try_from(host.clone()).map_err(|e| Error::Http(format!("{url}: {e}")))?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| Error::Http(format!("{url}: TLS: {e}")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| Error::Http(format!("{url}: {e}")))?;
        tokio::spawn(conn);
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", host)
            .header("authorization", format!("Bearer {}", self.management))
            .header("content-type", "application/json")
            .body(Full::new(body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()))))
            .map_err(|e| Error::Http(format!("{url}: {e}")))?;
        let resp = sender.send_request(req).await.map_err(|e| Error::Http(format!("{url}: {e}")))?;
        let status = resp.status();
        let body = resp.into_body().collect().await.map_err(|e| Error::Http(format!("{url}: {e}")))?.to_bytes();
        Ok((status, body))
    }

    /// Creates (or finds) a room by name; its id.
    pub async fn room(&self, name: &str) -> Result<String, Error> {
        let v = self.post("/v2/rooms", json!({"name": name})).await?;
        v["id"].as_str().map(str::to_owned).ok_or_else(|| Error::Http(format!("room without id: {v}")))
    }

    /// An auth token for a peer of a room.
    pub async fn auth_token(&self, room_id: &str, role: &str, user: &str) -> Result<String, Error> {
        let v = self.post("/v2/auth-tokens", json!({"room_id": room_id, "role": role, "user_id": user})).await?;
        v["token"].as_str().map(str::to_owned).ok_or_else(|| Error::Http(format!("no token: {v}")))
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// One signaling WebSocket: requests with fresh ids, notifies, and pushes.
#[derive(Debug)]
pub struct Signal {
    ws: Ws,
    next: u64,
}

/// What arrived on the socket.
#[derive(Debug)]
pub enum Incoming {
    /// A response to the request with this id: `Ok(result)` or `Err(error)`.
    Response(String, Result<Value, Value>),
    /// A push: method and params.
    Push(String, Value),
    Closed,
}

impl Signal {
    /// Opens `endpoint` (from `/init`) with the SDK's query parameters.
    pub async fn connect(
        endpoint: &str,
        peer: &str,
        token: &str,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<Signal, Error> {
        let sep = if endpoint.contains('?') { '&' } else { '?' };
        let url = format!("{endpoint}{sep}peer={peer}&token={token}&protocol_version=2.5&protocol_spec=20250115");
        let connector = tokio_tungstenite::Connector::Rustls(tls);
        let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(url, None, false, Some(connector))
            .await
            .map_err(|e| Error::Signal(format!("WebSocket {endpoint}: {e}")))?;
        Ok(Signal { ws, next: 0 })
    }

    /// Sends a request; its id.
    pub async fn request(&mut self, method: &str, params: Value) -> Result<String, Error> {
        self.next += 1;
        let id = format!("lt-{}", self.next);
        let msg = json!({"method": method, "params": params, "id": id, "jsonrpc": "2.0"});
        self.send(msg).await?;
        Ok(id)
    }

    pub async fn notify(&mut self, method: &str, params: Value) -> Result<(), Error> {
        self.send(json!({"method": method, "params": params})).await
    }

    async fn send(&mut self, msg: Value) -> Result<(), Error> {
        self.ws.send(Message::Text(msg.to_string().into())).await.map_err(|e| Error::Signal(format!("send: {e}")))
    }

    /// The next message (cancel-safe: usable in `select!`).
    pub async fn recv(&mut self) -> Incoming {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let Ok(v) = serde_json::from_str::<Value>(&t) else { continue };
                    if let Some(id) = v.get("id").and_then(Value::as_str) {
                        let r = match v.get("error") {
                            Some(e) if !e.is_null() => Err(e.clone()),
                            _ => Ok(v["result"].clone()),
                        };
                        return Incoming::Response(id.to_owned(), r);
                    }
                    if let Some(m) = v.get("method").and_then(Value::as_str) {
                        return Incoming::Push(m.to_owned(), v["params"].clone());
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Incoming::Closed,
                Some(Ok(_)) => {}
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.notify("leave", json!({"client_reason": "load test done"})).await;
        let _ = self.ws.close(None).await;
    }
}

/// `GET /init` with the auth token: the signaling WebSocket endpoint.
pub async fn init(init_url: &str, token: &str, peer: &str, tls: Arc<rustls::ClientConfig>) -> Result<String, Error> {
    let base = init_url.trim_end_matches('/');
    let (host, port) = host_port(base)?;
    let tcp = TcpStream::connect((host.as_str(), port)).await.map_err(|e| Error::Http(format!("{base}: {e}")))?;
    let name = ServerName::try_from(host.clone()).map_err(|e| Error::Http(format!("{base}: {e}")))?;
    let tls = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| Error::Http(format!("{base}: TLS: {e}")))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| Error::Http(format!("{base}: {e}")))?;
    tokio::spawn(conn);
    let req = hyper::Request::get(format!("/init?peer_id={peer}&user_agent_v2=sdk:loadtest"))
        .header("host", host)
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .map_err(|e| Error::Http(format!("{base}: {e}")))?;
    let resp = sender.send_request(req).await.map_err(|e| Error::Http(format!("{base}/init: {e}")))?;
    let status = resp.status();
    let body = resp.into_body().collect().await.map_err(|e| Error::Http(format!("{base}/init: {e}")))?.to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(Error::Http(format!("{base}/init: {status}: {v}")));
    }
    v["endpoint"].as_str().map(str::to_owned).ok_or_else(|| Error::Http(format!("/init without endpoint: {v}")))
}

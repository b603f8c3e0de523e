//! The HTTPS listener of control (REST API, demo, HLS) and of signaling (`/init`, the
//! WebSocket, WHIP and WHEP): one accept loop for both.
//!
//! - **TLS**: rustls with a [`ReloadableCert`]: [`ReloadableCert::reload`] reads the PEM files
//!   again and the next handshake gets the new certificate; connections already open go on.
//! - **HTTP**: hyper's HTTP/1.1 server with upgrades (the WebSocket) running an axum router;
//!   each request carries the client's address as `ConnectInfo<SocketAddr>`, which the
//!   per-address rate limits read.
//! - **Against slow or greedy clients** ([`Limits`]): at most `max_per_ip` open connections per
//!   client address (more are closed at accept, before any TLS work); the TLS handshake and a
//!   request's headers must arrive within `handshake`; a request (body included) must be
//!   answered within `request`, else `408`. Upgraded connections (WebSockets) are not timed.
//!
//! ```no_run
//! # async fn f(app: axum::Router) -> Result<(), https_server::TlsError> {
//! let cert = std::sync::Arc::new(https_server::ReloadableCert::load("cert.pem".into(), "key.pem".into())?);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await.expect("bind");
//! https_server::serve(listener, cert.server_config(), app, https_server::Limits::default(), std::future::pending()).await;
//! # Ok(()) }
//! ```

#[cfg(feature = "serve")]
mod limits;
#[cfg(feature = "serve")]
mod serve;
mod tls;

#[cfg(feature = "serve")]
pub use limits::{ConnectionCount, Limits};
#[cfg(feature = "serve")]
pub use serve::serve;
pub use tls::{ReloadableCert, TlsError, fingerprint};

//! The accept loop: cap, TLS, HTTP/1.1, the axum router.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::limits::{ConnectionCount, Limits};

/// At most one warning this often about connections refused over the per-address cap (each
/// is logged at debug).
const CAP_WARNING_EVERY: Duration = Duration::from_secs(60);

/// Accepts connections on `listener` and serves `app` on them until `shutdown` resolves.
/// Connections already open are left to finish.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: axum::Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let count = ConnectionCount::default();
    let started = Instant::now();
    // Seconds since `started` of the last cap warning, plus one (0: none yet).
    let warned = AtomicU64::new(0);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            res = listener.accept() => match res {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        let counted = match count.admit(peer.ip(), limits.max_per_ip) {
            Ok(c) => c,
            Err(open) => {
                debug!(%peer, open, "connection refused: the address has its maximum of connections open");
                let now = started.elapsed().as_secs() + 1;
                let last = warned.load(Ordering::Relaxed);
                if last == 0 || now >= last + CAP_WARNING_EVERY.as_secs() {
                    warned.store(now, Ordering::Relaxed);
                    warn!(ip = %peer.ip(), open, "refusing connections over the per-address cap (max-connections-per-ip); more are logged at debug");
                }
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let _counted = counted;
            let tls = match tokio::time::timeout(limits.handshake, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    debug!(%peer, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let svc = tower::service_fn(move |mut req: axum::http::Request<hyper::body::Incoming>| {
                // The client's address, for per-address limits.
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                let app = app.clone();
                async move {
                    match tokio::time::timeout(limits.request, app.oneshot(req)).await {
                        Ok(response) => response,
                        Err(_) => {
                            debug!(%peer, "request timed out");
                            Ok::<_, Infallible>(timed_out(limits.request))
                        }
                    }
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.handshake)
                .serve_connection(TokioIo::new(tls), hyper_util::service::TowerToHyperService::new(svc))
                .with_upgrades();
            if let Err(e) = conn.await {
                debug!(%peer, "connection: {e}");
            }
        });
    }
}

/// `408` in the platform's error shape; the connection closes after it.
fn timed_out(after: Duration) -> Response {
    let body = format!(r#"{{"code":408,"message":"the request was not complete within {} s"}}"#, after.as_secs());
    (StatusCode::REQUEST_TIMEOUT, [(header::CONTENT_TYPE, "application/json"), (header::CONNECTION, "close")], body)
        .into_response()
}

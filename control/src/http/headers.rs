//! Security headers on every HTTPS response of control: HSTS (the platform is HTTPS only),
//! no MIME sniffing, no referrer, and a content security policy for the demo app: its own
//! scripts only, workers and media from `blob:` (the SDK's timers and the HLS player's media
//! source), and connections to any HTTPS/WSS origin (signaling listens on another port, and an
//! app may put it on another host).

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// The demo's policy; see the module docs for each source.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; worker-src 'self' blob:; \
     connect-src 'self' https: wss: blob: data:; img-src 'self' data: blob:; media-src 'self' blob: data:; \
     style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'";

/// Two years, the HSTS preload list's floor.
pub const STRICT_TRANSPORT_SECURITY: &str = "max-age=63072000";

pub async fn add(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    for (name, value) in [
        (header::STRICT_TRANSPORT_SECURITY, STRICT_TRANSPORT_SECURITY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
    ] {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    }
    r
}

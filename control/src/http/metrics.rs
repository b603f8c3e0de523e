//! `GET /metrics`: the platform's metrics in the Prometheus text exposition format (0.0.4),
//! gathered at scrape time from the three processes. docs/control.md lists every name.
//!
//! - the router's shards, through the router's control socket (`{"method": "metrics"}`): packets
//!   and bytes in and out, drops by reason, NACKs, PLIs, layer switches, receive-batch depth,
//!   CPU time and the in-router latency histogram (receive → sends submitted);
//! - signaling, through its admin socket (`{"op": "metrics"}`): active rooms, transports,
//!   WebSocket connections;
//! - control itself: HTTP requests by status class, the webhook outbox's depth, child restarts.
//!
//! A process that does not answer is reported as `platform_component_up{component} 0` and its
//! metrics are left out: the scrape still succeeds, so the rest stays visible. The route needs a
//! management token like the REST API (`Authorization: Bearer`): the figures reveal load and
//! room counts, which operators keep private.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{RawQuery, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use util::LockExt;

use crate::http::AppState;
use crate::http::rest::{Mgmt, RestError};

/// How long the router has to answer a scrape.
const ROUTER_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest router reply read (a few KiB per shard).
const MAX_REPLY: u64 = 4 << 20;
/// The content type Prometheus expects for the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Control's own counters, kept by a middleware on every route.
#[derive(Debug, Default)]
pub struct ControlMetrics {
    /// HTTP responses by status class: 1xx..5xx at indices 0..4.
    pub responses: [AtomicU64; 5],
}

/// Counts every response by its status class.
pub async fn count_requests(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let class = (resp.status().as_u16() / 100).clamp(1, 5) as usize - 1;
    st.metrics.responses[class].fetch_add(1, Ordering::Relaxed);
    resp
}

/// The `/metrics` handler.
pub async fn serve(Mgmt(_): Mgmt, State(st): State<AppState>, RawQuery(query): RawQuery) -> Response {
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        return RestError::bad_request(format!("/metrics takes no query parameters (got \"{q}\")")).into_response();
    }
    let router = router_metrics(&st.router_socket).await;
    let signaling = st.admin.call("metrics", json!({})).await.map_err(|e| e.to_string());
    let store = st.store.clone();
    let outbox =
        tokio::task::spawn_blocking(move || store.lock_unpoisoned().pending_webhooks().map_err(|e| e.to_string()))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
    let mut out = Exposition::default();
    render_router(&mut out, router.as_ref().ok());
    render_signaling(&mut out, signaling.as_ref().ok());
    render_control(&mut out, &st, outbox.as_ref().ok().copied());
    out.family("platform_component_up", "gauge", "Whether the component answered this scrape (1) or not (0).");
    for (component, ok) in [("router", router.is_ok()), ("signaling", signaling.is_ok())] {
        out.sample("platform_component_up", &[("component", component)], u64::from(ok));
    }
    if let Err(e) = &router {
        tracing::debug!("metrics: router: {e}");
    }
    (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], out.text).into_response()
}

/// Asks the router's control socket for every shard's metrics.
pub async fn router_metrics(path: &Path) -> Result<Value, String> {
    let call = async {
        let stream = UnixStream::connect(path).await.map_err(|e| format!("{}: {e}", path.display()))?;
        let (read, mut write) = stream.into_split();
        write.write_all(b"{\"id\":1,\"method\":\"metrics\"}\n").await.map_err(|e| e.to_string())?;
        let mut line = String::new();
        BufReader::new(read).take(MAX_REPLY).read_line(&mut line).await.map_err(|e| e.to_string())?;
        let mut v: Value = serde_json::from_str(&line).map_err(|e| format!("bad reply: {e}"))?;
        match v.get_mut("result") {
            Some(r) => Ok(r.take()),
            None => Err(format!("router refused: {}", v["error"])),
        }
    };
    tokio::time::timeout(ROUTER_TIMEOUT, call).await.map_err(|_| "no reply within 3 s".to_string())?
}

/// Text in the exposition format, written family by family.
#[derive(Debug, Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                let _ = write!(self.text, "{k}=\"{v}\"");
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }
}

/// Shard I/O totals: (metric, field of the router's `io` object, help).
const IO_COUNTERS: &[(&str, &str, &str)] = &[
    ("router_packets_in_total", "rx_datagrams", "Datagrams received by the shard's socket."),
    ("router_bytes_in_total", "rx_bytes", "UDP payload bytes received."),
    ("router_packets_out_total", "tx_datagrams", "Datagrams the kernel accepted for sending."),
    ("router_bytes_out_total", "tx_bytes", "UDP payload bytes the kernel accepted for sending."),
    ("router_rx_truncated_total", "rx_truncated", "Received datagrams too large for a buffer, dropped."),
    ("router_rx_errors_total", "rx_errors", "Receive errors survived (ICMP errors and the like)."),
    ("router_tx_errors_total", "tx_errors", "Datagrams that failed to send."),
    ("router_tx_syscall_messages_total", "tx_messages", "Sends handed to the kernel (a GSO run counts once)."),
    ("router_tx_gso_batches_total", "tx_gso_batches", "Sends that carried a GSO run of two or more datagrams."),
];

/// The counters of clients reached over a connection (ICE-TCP per shard, TURN for the router):
/// (metric suffix, field, type, help).
const STREAM_COUNTERS: &[(&str, &str, &str, &str)] = &[
    ("clients", "open", "gauge", "Clients connected now (TCP connections; TURN: also UDP allocations)."),
    ("accepted_total", "accepted", "counter", "Clients taken on."),
    ("refused_total", "refused", "counter", "Clients refused: past the cap."),
    ("closed_not_stun_total", "closed_not_stun", "counter", "Connections closed because they did not open with STUN."),
    ("closed_idle_total", "closed_idle", "counter", "Connections closed after the idle timeout."),
    ("datagrams_in_total", "rx_datagrams", "counter", "Datagrams clients sent to the shards."),
    ("datagrams_in_dropped_total", "rx_dropped", "counter", "Datagrams from clients dropped: the shard was behind."),
    ("datagrams_out_total", "tx_datagrams", "counter", "Datagrams the shards sent to clients."),
    (
        "datagrams_out_dropped_total",
        "tx_dropped",
        "counter",
        "Datagrams to clients dropped: the connection or socket did not take them.",
    ),
];

fn render_router(out: &mut Exposition, metrics: Option<&Value>) {
    let Some(m) = metrics else { return };
    let shards: Vec<&Value> = m["shards"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
    let drop_reasons: Vec<&str> =
        m["drop_reasons"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let label = |s: &Value| s["shard"].as_u64().unwrap_or(0).to_string();

    out.family("router_shard_info", "gauge", "One per shard: its UDP address and I/O backend.");
    for s in &shards {
        let (shard, addr, backend) = (label(s), s["addr"].as_str().unwrap_or(""), s["backend"].as_str().unwrap_or(""));
        out.sample("router_shard_info", &[("shard", &shard), ("addr", addr), ("backend", backend)], 1);
    }
    for (name, field, help) in IO_COUNTERS {
        out.family(name, "counter", help);
        for s in &shards {
            out.sample(name, &[("shard", &label(s))], s["counters"]["shell"]["io"][field].as_u64().unwrap_or(0));
        }
    }
    out.family("router_rx_batches_total", "counter", "Receive passes that returned datagrams.");
    for s in &shards {
        out.sample("router_rx_batches_total", &[("shard", &label(s))], shell(s, "rx_batches"));
    }
    out.family(
        "router_rx_batch_peak",
        "gauge",
        "Largest receive batch since the previous scrape (kernel queue depth).",
    );
    for s in &shards {
        out.sample("router_rx_batch_peak", &[("shard", &label(s))], shell(s, "rx_batch_peak"));
    }
    out.family("router_cpu_seconds_total", "counter", "CPU time (user + system) of the shard thread.");
    for s in &shards {
        out.sample("router_cpu_seconds_total", &[("shard", &label(s))], shell(s, "cpu_ns") as f64 / 1e9);
    }
    out.family("router_transports", "gauge", "Transports the shard holds.");
    for s in &shards {
        out.sample("router_transports", &[("shard", &label(s))], s["counters"]["transports"].as_u64().unwrap_or(0));
    }
    out.family(
        "router_simulcast_tracks",
        "gauge",
        "Simulcast video tracks by how many of their layers carry frames now (live_layers 1: only the lowest).",
    );
    for s in &shards {
        let by = s["counters"]["simulcast_tracks_by_live_layers"].as_array().cloned().unwrap_or_default();
        for (live, n) in by.iter().enumerate() {
            let live = live.to_string();
            out.sample(
                "router_simulcast_tracks",
                &[("shard", &label(s)), ("live_layers", &live)],
                n.as_u64().unwrap_or(0),
            );
        }
    }
    out.family("router_dropped_total", "counter", "Packets dropped by the engine, by reason.");
    for s in &shards {
        for reason in &drop_reasons {
            let n = s["counters"][*reason].as_u64().unwrap_or(0);
            out.sample("router_dropped_total", &[("shard", &label(s)), ("reason", reason)], n);
        }
    }
    // Every other engine counter, under its own name: forwarded, NACKs, PLIs, layer switches...
    let mut names: Vec<&str> = shards
        .iter()
        .flat_map(|s| s["counters"].as_object().into_iter().flatten())
        .filter(|(k, v)| v.is_u64() && *k != "transports" && !drop_reasons.contains(&k.as_str()))
        .map(|(k, _)| k.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let metric = format!("router_{name}_total");
        out.family(&metric, "counter", &format!("The engine's `{name}` counter (docs/router.md)."));
        for s in &shards {
            out.sample(&metric, &[("shard", &label(s))], s["counters"][name].as_u64().unwrap_or(0));
        }
    }
    for (suffix, field, kind, help) in STREAM_COUNTERS {
        let name = format!("router_ice_tcp_{suffix}");
        out.family(&name, kind, &format!("ICE over TCP: {help}"));
        for s in &shards {
            out.sample(&name, &[("shard", &label(s))], s["counters"]["ice_tcp"][field].as_u64().unwrap_or(0));
        }
        if m["turn"].is_object() {
            let name = format!("router_turn_{suffix}");
            out.family(&name, kind, &format!("TURN (UDP, TCP, TLS): {help}"));
            out.sample(&name, &[], m["turn"][field].as_u64().unwrap_or(0));
        }
    }
    let name = "router_latency_seconds";
    out.family(name, "histogram", "In-router latency: a receive batch taken from the kernel to its sends submitted.");
    for s in &shards {
        let h = &s["counters"]["shell"];
        histogram(out, name, &[("shard", &label(s))], &h["latency"], &h["latency_bounds_us"]);
    }
}

/// One series of a histogram family from a process's `{counts, sum_ns}` reply
/// (`schema::histogram::Histogram`) and its bucket bounds in µs.
fn histogram(out: &mut Exposition, name: &str, labels: &[(&str, &str)], h: &Value, bounds_us: &Value) {
    let bounds: Vec<u64> = bounds_us.as_array().into_iter().flatten().filter_map(Value::as_u64).collect();
    let counts: Vec<u64> = h["counts"].as_array().into_iter().flatten().filter_map(Value::as_u64).collect();
    let mut cumulative = 0u64;
    let mut bucket = |le: &str, count: u64| {
        let mut l = labels.to_vec();
        l.push(("le", le));
        out.sample(&format!("{name}_bucket"), &l, count);
    };
    for (i, bound) in bounds.iter().enumerate() {
        cumulative += counts.get(i).copied().unwrap_or(0);
        bucket(&format!("{}", *bound as f64 / 1e6), cumulative);
    }
    let total: u64 = counts.iter().sum();
    bucket("+Inf", total);
    out.sample(&format!("{name}_sum"), labels, h["sum_ns"].as_u64().unwrap_or(0) as f64 / 1e9);
    out.sample(&format!("{name}_count"), labels, total);
}

fn shell(s: &Value, field: &str) -> u64 {
    s["counters"]["shell"][field].as_u64().unwrap_or(0)
}

fn render_signaling(out: &mut Exposition, m: Option<&Value>) {
    let Some(m) = m else { return };
    for (name, field, kind, help) in [
        ("signaling_active_rooms", "active_rooms", "gauge", "Rooms with a running session."),
        ("signaling_transports", "transports", "gauge", "Router transports signaling holds for peers."),
        ("signaling_websocket_connections", "open_sockets", "gauge", "Open signaling WebSocket connections."),
        (
            "signaling_websocket_connections_accepted_total",
            "sockets_accepted",
            "counter",
            "Signaling WebSocket connections accepted since signaling started.",
        ),
    ] {
        out.family(name, kind, help);
        out.sample(name, &[], m[field].as_u64().unwrap_or(0));
    }
    let name = "signaling_join_seconds";
    out.family(
        name,
        "histogram",
        "Server-side join time: a `join` read off its socket to its answer queued for the socket.",
    );
    histogram(out, name, &[], &m["join_latency"], &m["join_latency_bounds_us"]);
}

fn render_control(out: &mut Exposition, st: &AppState, outbox: Option<i64>) {
    out.family("control_http_responses_total", "counter", "HTTP responses control sent, by status class.");
    for (i, class) in ["1xx", "2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
        out.sample("control_http_responses_total", &[("code", class)], st.metrics.responses[i].load(Ordering::Relaxed));
    }
    if let Some(n) = outbox {
        out.family("control_webhook_outbox_pending", "gauge", "Webhook events waiting for delivery.");
        out.sample("control_webhook_outbox_pending", &[], n);
    }
    let children = st.status.snapshot();
    out.family("control_child_restarts_total", "counter", "Restarts of a supervised process after its first start.");
    for (name, c) in &children {
        out.sample("control_child_restarts_total", &[("child", name)], c.restarts);
    }
    out.family("control_child_up", "gauge", "Whether the supervised process is running.");
    for (name, c) in &children {
        out.sample("control_child_up", &[("child", name)], u64::from(c.pid.is_some()));
    }
}

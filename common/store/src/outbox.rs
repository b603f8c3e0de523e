//! The webhook outbox: every event is a row written in the same transaction as the state change
//! that caused it, so an event exists if and only if its change was committed, and a crash
//! between commit and delivery loses nothing (the dispatcher in control picks the row up again).
//!
//! An event is routed when it is written: to the room's own `webhook` if it has one, otherwise
//! to the workspace's; with neither, it is kept as `unrouted` (listed, never sent). Delivery is
//! in order per room: [`Store::due_webhooks`] offers only the oldest pending event of each room,
//! so a receiver that fails holds back that room's later events until it answers or the
//! dispatcher gives up on the event (`failed`).
//!
//! The body is the 100ms envelope, `{version, id, app_id, account_id, template_id, timestamp,
//! type, data}`; the signature is control's business (it holds the per-endpoint secret from
//! here).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::db::{Conn, Row, vals};
use crate::page::{self, Listing, Page, PageQuery};
use crate::{Room, Store, StoreError, Workspace};

/// A webhook endpoint: where events go, the extra headers to send, and the secret that signs
/// each delivery (made by the store when the endpoint is set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    pub url: String,
    #[serde(default)]
    pub headers: serde_json::Map<String, Value>,
    #[serde(default)]
    pub secret: String,
}

/// One event due for delivery.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub seq: i64,
    pub id: String,
    pub kind: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub secret: String,
    pub body: String,
    pub attempts: u32,
}

/// An event as the API lists it.
#[derive(Debug, Clone, Serialize)]
pub struct EventRecord {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub room_id: Option<String>,
    pub status: String,
    pub attempts: u32,
    pub url: Option<String>,
    pub last_error: Option<String>,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    pub next_attempt_at: Option<i64>,
    pub delivered_at: Option<i64>,
    pub event: Value,
}

/// A fresh endpoint secret (32 random bytes, hex).
pub fn new_endpoint_secret() -> String {
    crate::ids::random_secret()
}

/// Checks an endpoint from the API: an `http` or `https` URL and string headers.
pub fn check_endpoint(v: &Value, field: &str) -> Result<Endpoint, crate::template::FieldError> {
    use crate::template::FieldError;
    let url = v.get("url").and_then(Value::as_str).unwrap_or_default();
    if !(url.starts_with("http://") || url.starts_with("https://"))
        || url.len() > 2048
        || url.contains(char::is_whitespace)
    {
        return Err(FieldError::new(format!("{field}.url"), "an http:// or https:// URL is required"));
    }
    let headers = match v.get("headers") {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(h)) => {
            for (k, val) in h {
                let token =
                    !k.is_empty() && k.bytes().all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c));
                if !token || val.as_str().is_none_or(|s| s.contains(['\r', '\n'])) {
                    return Err(FieldError::new(
                        format!("{field}.headers.{k}"),
                        "header names are tokens and values single-line strings",
                    ));
                }
            }
            h.clone()
        }
        Some(_) => return Err(FieldError::new(format!("{field}.headers"), "must be an object of strings")),
    };
    Ok(Endpoint { url: url.to_owned(), headers, secret: String::new() })
}

/// Writes one event (inside the caller's transaction) and routes it. `now_ms` is the event time.
pub(crate) fn enqueue(
    tx: &Conn,
    ws: &Workspace,
    room: Option<&Room>,
    template_id: &str,
    kind: &str,
    data: Value,
    now_ms: i64,
) -> Result<String, StoreError> {
    let id = crate::new_uuid();
    let body = json!({
        "version": "2.0",
        "id": id,
        "app_id": ws.id,
        "account_id": ws.id,
        "template_id": template_id,
        "timestamp": crate::time::format_ms(now_ms),
        "type": kind,
        "data": data,
    });
    let endpoint = match room.and_then(|r| r.attrs.get("webhook")).filter(|w| w.get("url").is_some()) {
        Some(w) => Some(serde_json::from_value::<Endpoint>(w.clone())?),
        None => workspace_endpoint(tx, &ws.id)?,
    };
    let (url, headers, secret, status, next) = match &endpoint {
        Some(e) => (Some(&e.url), Some(serde_json::to_string(&e.headers)?), Some(&e.secret), "pending", Some(now_ms)),
        None => (None, None, None, "unrouted", None),
    };
    tx.execute(
        "INSERT INTO outbox (id, workspace_id, room_id, type, body, created_at, url, headers, secret, status, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        &vals![&id, &ws.id, room.map(|r| &r.id), kind, body.to_string(), now_ms, url, headers, secret, status, next],
    )?;
    Ok(id)
}

fn workspace_endpoint(conn: &Conn, workspace_id: &str) -> Result<Option<Endpoint>, StoreError> {
    let raw = conn.query_opt("SELECT webhook FROM workspaces WHERE id = ?1", &vals![workspace_id])?;
    match raw.map(|r| r.opt_text(0)).transpose()?.flatten() {
        Some(s) => Ok(Some(serde_json::from_str(&s)?)),
        None => Ok(None),
    }
}

impl Store {
    /// The workspace's webhook endpoint, if set.
    pub fn workspace_webhook(&self, workspace_id: &str) -> Result<Option<Endpoint>, StoreError> {
        workspace_endpoint(&self.conn, workspace_id)
    }

    /// Sets (or with `None` removes) the workspace's endpoint. A new URL gets a new secret; the
    /// same URL keeps its secret (receivers need not re-configure for a header change).
    pub fn set_workspace_webhook(
        &self,
        workspace_id: &str,
        endpoint: Option<Endpoint>,
    ) -> Result<Option<Endpoint>, StoreError> {
        let old = self.workspace_webhook(workspace_id)?;
        let endpoint = endpoint.map(|mut e| {
            e.secret = match &old {
                Some(o) if o.url == e.url && !o.secret.is_empty() => o.secret.clone(),
                _ => new_endpoint_secret(),
            };
            e
        });
        let json = endpoint.as_ref().map(serde_json::to_string).transpose()?;
        let n = self.conn.execute("UPDATE workspaces SET webhook = ?1 WHERE id = ?2", &vals![json, workspace_id])?;
        if n == 0 {
            return Err(StoreError::NoWorkspace(workspace_id.into()));
        }
        Ok(endpoint)
    }

    /// The oldest pending event of each room (and of the workspace-level events), due at
    /// `now_ms`, at most `limit`.
    pub fn due_webhooks(&self, now_ms: i64, limit: u32) -> Result<Vec<Delivery>, StoreError> {
        let rows = self.conn.query(
            "SELECT seq, id, type, url, headers, secret, body, attempts FROM outbox o
             WHERE status = 'pending' AND next_attempt_at <= ?1
               AND seq = (SELECT MIN(seq) FROM outbox p WHERE p.status = 'pending'
                          AND p.workspace_id = o.workspace_id AND p.room_id IS NOT DISTINCT FROM o.room_id)
             ORDER BY seq LIMIT ?2",
            &vals![now_ms, i64::from(limit)],
        )?;
        let mut out = Vec::new();
        for r in &rows {
            let headers: serde_json::Map<String, Value> = serde_json::from_str(&r.text(4)?)?;
            let headers = headers.into_iter().map(|(k, v)| (k, v.as_str().unwrap_or_default().to_owned())).collect();
            out.push(Delivery {
                seq: r.int(0)?,
                id: r.text(1)?,
                kind: r.text(2)?,
                url: r.text(3)?,
                headers,
                secret: r.text(5)?,
                body: r.text(6)?,
                attempts: r.int(7)? as u32,
            });
        }
        Ok(out)
    }

    /// How many events wait in the outbox (pending, due or not): control's metrics.
    pub fn pending_webhooks(&self) -> Result<i64, StoreError> {
        self.conn.query_one("SELECT COUNT(*) FROM outbox WHERE status = 'pending'", &[])?.int(0)
    }

    /// The time of the next pending attempt, if any (for the dispatcher's sleep).
    pub fn next_webhook_at(&self) -> Result<Option<i64>, StoreError> {
        self.conn.query_one("SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'pending'", &[])?.opt_int(0)
    }

    /// Records a successful delivery.
    pub fn webhook_delivered(&self, seq: i64, now_ms: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE outbox SET status = 'delivered', attempts = attempts + 1, delivered_at = ?1, next_attempt_at = NULL, last_error = NULL
             WHERE seq = ?2",
            &vals![now_ms, seq],
        )?;
        Ok(())
    }

    /// Records a failed attempt: retried at `retry_at_ms`, or given up (`failed`) with `None`.
    pub fn webhook_attempt_failed(&self, seq: i64, error: &str, retry_at_ms: Option<i64>) -> Result<(), StoreError> {
        let status = if retry_at_ms.is_some() { "pending" } else { "failed" };
        self.conn.execute(
            "UPDATE outbox SET status = ?1, attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3 WHERE seq = ?4",
            &vals![status, retry_at_ms, error, seq],
        )?;
        Ok(())
    }

    /// A page of a workspace's events, newest last, filtered by status (`pending`, `delivered`,
    /// `failed`, `unrouted`; `undelivered` means pending or failed) and room.
    pub fn webhook_events(
        &self,
        workspace_id: &str,
        status: Option<&str>,
        room_id: Option<&str>,
        page: &Page,
    ) -> Result<Listing<EventRecord>, StoreError> {
        let q = PageQuery {
            table: "outbox",
            cols: "id, type, room_id, status, attempts, url, last_error, created_at, next_attempt_at, delivered_at, body",
            key: "seq",
            id: "id",
            filters: "workspace_id = ?1
                AND (CAST(?2 AS TEXT) IS NULL OR status = ?2 OR (?2 = 'undelivered' AND status IN ('pending', 'failed')))
                AND (CAST(?3 AS TEXT) IS NULL OR room_id = ?3)",
            args: vals![workspace_id, status, room_id].into(),
            row: event_row,
            last: |e| &e.id,
        };
        page::query(&self.conn, q, page)
    }
}

fn event_row(r: &Row) -> Result<EventRecord, StoreError> {
    Ok(EventRecord {
        id: r.text(0)?,
        kind: r.text(1)?,
        room_id: r.opt_text(2)?,
        status: r.text(3)?,
        attempts: r.int(4)? as u32,
        url: r.opt_text(5)?,
        last_error: r.opt_text(6)?,
        created_at: r.int(7)?,
        next_attempt_at: r.opt_int(8)?,
        delivered_at: r.opt_int(9)?,
        event: serde_json::from_str(&r.text(10)?).unwrap_or(Value::Null),
    })
}

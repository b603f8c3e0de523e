//! Recording jobs and their assets (100ms `/v2/recordings` and `/v2/recording-assets`).
//!
//! A job moves `starting` → `running` → `stopping` → `completed`, or to `failed` with a
//! reason from any state before `completed`. Each job has a small `tap` number, unique across
//! jobs, that the router tags its copied packets with. A job's `kind` says what it makes:
//!
//! - `track` (the recorder): an asset per file (one part of one track), `type: "track"`, with
//!   `metadata {track_id, stream_id, peer_id, user_id, track_type, part}`; webhooks
//!   `track.recording.started.success`, `track.recording.success`, `recording.failed`.
//! - `composite` (the compositor): an asset per MP4 part, `type: "room-composite"`, with
//!   `metadata {resolution {width, height}}`; webhooks `beam.started.success`,
//!   `beam.recording.success`, `beam.stopped.success`, `beam.failure`.
//! - `rtmp` (the compositor, 100ms's external stream): the same, with the job's `rtmp` URLs in
//!   the webhooks; MP4 assets only when it records.
//! - `hls` (the compositor, 100ms's live stream): `running` once its first segment is written;
//!   a `room-vod` asset when it keeps a VOD; webhooks `hls.started.success`,
//!   `hls.recording.success`, `hls.stopped.success`, `hls.failure`.
//!
//! A compositor job's `spec` holds what its start asked for (resolution, meeting URL, RTMP
//! URLs, HLS ladder), enough to rebuild the compositor's job file.
//!
//! Webhooks go through the outbox in the same transaction as the change.

use serde::Serialize;
use serde_json::{Value, json};

use crate::db::{Conn, Row, Val, vals};
use crate::outbox::enqueue;
use crate::page::{self, Listing, Page, PageQuery};
use crate::time::format_ms;
use crate::{Store, StoreError, new_id};

/// Job kinds.
pub const TRACK: &str = "track";
pub const COMPOSITE: &str = "composite";
pub const HLS: &str = "hls";
pub const RTMP: &str = "rtmp";

/// The job states.
pub const STARTING: &str = "starting";
pub const RUNNING: &str = "running";
pub const STOPPING: &str = "stopping";
pub const COMPLETED: &str = "completed";
pub const FAILED: &str = "failed";

/// One recording job.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Recording {
    pub id: String,
    #[serde(skip)]
    pub workspace_id: String,
    pub room_id: String,
    pub session_id: String,
    #[serde(skip)]
    pub tap: u32,
    /// [`TRACK`] or [`COMPOSITE`].
    pub kind: String,
    /// The start's settings (a composite's `resolution`, `meeting_url`).
    pub spec: Value,
    pub status: String,
    pub started_by: String,
    pub stopped_by: String,
    /// Why it failed (empty unless `failed`).
    pub error: String,
    /// Unix ms.
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub stopped_at: Option<i64>,
    pub updated_at: i64,
}

/// One recorded file.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Asset {
    pub id: String,
    pub job_id: String,
    pub room_id: String,
    pub session_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    /// Relative to the recordings directory.
    pub path: String,
    pub size: i64,
    /// Seconds.
    pub duration: f64,
    pub metadata: Value,
    pub created_at: i64,
}

/// Filters of the list calls.
#[derive(Debug, Clone, Default)]
pub struct RecordingFilter {
    pub room_id: Option<String>,
    pub session_id: Option<String>,
    pub status: Option<String>,
    /// Jobs of these kinds only (jobs; ignored for assets); empty: any.
    pub kinds: Vec<&'static str>,
}

const REC_COLS: &str = "id, workspace_id, room_id, session_id, tap, status, started_by, stopped_by, error, created_at, started_at, stopped_at, updated_at, kind, spec";
const ASSET_COLS: &str = "id, job_id, room_id, session_id, type, status, path, size, duration_ms, metadata, created_at";

fn rec_row(r: &Row) -> Result<Recording, StoreError> {
    Ok(Recording {
        id: r.text(0)?,
        workspace_id: r.text(1)?,
        room_id: r.text(2)?,
        session_id: r.text(3)?,
        tap: u32::try_from(r.int(4)?).map_err(|_| StoreError::BadValue("tap".into()))?,
        status: r.text(5)?,
        started_by: r.text(6)?,
        stopped_by: r.text(7)?,
        error: r.text(8)?,
        created_at: r.int(9)?,
        started_at: r.opt_int(10)?,
        stopped_at: r.opt_int(11)?,
        updated_at: r.int(12)?,
        kind: r.text(13)?,
        spec: serde_json::from_str(&r.text(14)?)?,
    })
}

fn asset_row(r: &Row) -> Result<Asset, StoreError> {
    Ok(Asset {
        id: r.text(0)?,
        job_id: r.text(1)?,
        room_id: r.text(2)?,
        session_id: r.text(3)?,
        kind: r.text(4)?,
        status: r.text(5)?,
        path: r.text(6)?,
        size: r.int(7)?,
        duration: r.int(8)? as f64 / 1000.0,
        metadata: serde_json::from_str(&r.text(9)?)?,
        created_at: r.int(10)?,
    })
}

/// Whether a job in `status` has not ended.
pub fn is_live(status: &str) -> bool {
    matches!(status, STARTING | RUNNING | STOPPING)
}

impl Store {
    /// A new job of `kind` in `starting` for a room's active session.
    #[allow(clippy::too_many_arguments)]
    pub fn create_recording(
        &self,
        workspace_id: &str,
        room_id: &str,
        session_id: &str,
        started_by: &str,
        kind: &str,
        spec: &Value,
        now_ms: i64,
    ) -> Result<Recording, StoreError> {
        self.conn.with_tx(|tx| {
            let tap = tx.query_one("SELECT COALESCE(MAX(tap), 0) + 1 FROM recordings", &[])?.int(0)?;
            let id = new_id();
            tx.execute(
                "INSERT INTO recordings (id, workspace_id, room_id, session_id, tap, status, started_by, stopped_by, error, created_at, updated_at, kind, spec)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, '', '', ?8, ?8, ?9, ?10)",
                &vals![&id, workspace_id, room_id, session_id, tap, STARTING, started_by, now_ms, kind, &spec.to_string()],
            )?;
            recording_in(tx, &id)?.ok_or_else(|| StoreError::BadValue("recording vanished".into()))
        })
    }

    /// Replaces a job's settings (set once, right after it is created: its playback URL names
    /// it).
    pub fn set_recording_spec(&self, id: &str, spec: &Value) -> Result<(), StoreError> {
        self.conn.execute("UPDATE recordings SET spec = ?2 WHERE id = ?1", &vals![id, &spec.to_string()]).map(drop)
    }

    /// One job of a workspace.
    pub fn recording(&self, workspace_id: &str, id: &str) -> Result<Option<Recording>, StoreError> {
        Ok(recording_in(&self.conn, id)?.filter(|r| r.workspace_id == workspace_id))
    }

    /// The job with this tap number, any workspace (the recorder only knows the id).
    pub fn recording_by_id(&self, id: &str) -> Result<Option<Recording>, StoreError> {
        recording_in(&self.conn, id)
    }

    /// Jobs that have not ended (any workspace), oldest first.
    pub fn live_recordings(&self) -> Result<Vec<Recording>, StoreError> {
        let sql = format!(
            "SELECT {REC_COLS} FROM recordings WHERE status IN ('starting', 'running', 'stopping') ORDER BY rowid"
        );
        self.conn.query(&sql, &[])?.iter().map(rec_row).collect()
    }

    /// A room's jobs that have not ended, oldest first (what its peers are told is recording
    /// or streaming).
    pub fn live_recordings_of_room(&self, workspace_id: &str, room_id: &str) -> Result<Vec<Recording>, StoreError> {
        let sql = format!(
            "SELECT {REC_COLS} FROM recordings WHERE workspace_id = ?1 AND room_id = ?2
               AND status IN ('starting', 'running', 'stopping') ORDER BY rowid"
        );
        self.conn.query(&sql, &vals![workspace_id, room_id])?.iter().map(rec_row).collect()
    }

    /// Active sessions that have never had a job of `kind`: (workspace, room, session).
    pub fn sessions_without_job(&self, kind: &str) -> Result<Vec<(String, String, String)>, StoreError> {
        self.conn
            .query(
                "SELECT workspace_id, room_id, id FROM sessions WHERE active = 1
                   AND NOT EXISTS (SELECT 1 FROM recordings r WHERE r.session_id = sessions.id AND r.kind = ?1)
                   ORDER BY rowid",
                &vals![kind],
            )?
            .iter()
            .map(|r| Ok((r.text(0)?, r.text(1)?, r.text(2)?)))
            .collect()
    }

    /// A page of a workspace's jobs, oldest first.
    pub fn recordings(
        &self,
        workspace_id: &str,
        filter: &RecordingFilter,
        page: &Page,
    ) -> Result<Listing<Recording>, StoreError> {
        let q = PageQuery {
            table: "recordings",
            cols: REC_COLS,
            key: "rowid",
            id: "id",
            filters: JOB_FILTERS,
            args: job_filter_args(workspace_id, filter),
            row: rec_row,
            last: |r| &r.id,
        };
        page::query(&self.conn, q, page)
    }

    /// Moves a job on. A job that ended stays ended (`false`); `failed` records `error` and
    /// emits `recording.failed`.
    pub fn set_recording_status(
        &self,
        id: &str,
        status: &str,
        error: &str,
        by: Option<&str>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.conn.with_tx(|tx| {
            let Some(rec) = recording_in(tx, id)? else { return Ok(false) };
            if !is_live(&rec.status) || rec.status == status {
                return Ok(false);
            }
            let started = if status == RUNNING { Some(now_ms) } else { rec.started_at };
            let stopped = if matches!(status, STOPPING | FAILED) || (status == COMPLETED && rec.stopped_at.is_none()) {
                rec.stopped_at.or(Some(now_ms))
            } else {
                rec.stopped_at
            };
            let stopped_by = by.map_or(rec.stopped_by.clone(), str::to_owned);
            tx.execute(
                "UPDATE recordings SET status = ?2, error = ?3, started_at = ?4, stopped_at = ?5, stopped_by = ?6, updated_at = ?7 WHERE id = ?1",
                &vals![id, status, error, started, stopped, &stopped_by, now_ms],
            )?;
            if rec.kind != TRACK {
                let now = Recording { started_at: started, stopped_at: stopped, stopped_by, ..rec.clone() };
                if let Some((kind, data)) = job_event(&now, status, error) {
                    emit(tx, &rec, kind, data, now_ms)?;
                }
            } else if status == FAILED {
                emit(
                    tx,
                    &rec,
                    "recording.failed",
                    json!({ "recording_id": rec.id, "error": error, "error_type": "CLOUD_ACCESS_ERROR" }),
                    now_ms,
                )?;
            }
            Ok(true)
        })
    }

    /// The first file of a track was opened: `track.recording.started.success`.
    pub fn recording_track_started(&self, id: &str, metadata: &Value, now_ms: i64) -> Result<(), StoreError> {
        self.conn.with_tx(|tx| {
            let Some(rec) = recording_in(tx, id)? else { return Ok(()) };
            emit(tx, &rec, "track.recording.started.success", track_fields(&rec, metadata), now_ms)
        })
    }

    /// Records one finished file (idempotent by job and path) and emits
    /// `track.recording.success` (a track job) or `beam.recording.success` (a composite) with
    /// `extra` (size, duration, path, URL) merged in: for a new file, or a known one whose size
    /// changed (a repeated report of the same file is not news).
    #[allow(clippy::too_many_arguments)]
    pub fn add_asset(
        &self,
        job_id: &str,
        path: &str,
        size: i64,
        duration_ms: i64,
        metadata: &Value,
        extra: Value,
        now_ms: i64,
    ) -> Result<Option<Asset>, StoreError> {
        self.conn.with_tx(|tx| {
            let Some(rec) = recording_in(tx, job_id)? else { return Ok(None) };
            let existing =
                tx.query_opt("SELECT id, size FROM recording_assets WHERE job_id = ?1 AND path = ?2", &vals![job_id, path])?;
            let meta = metadata.to_string();
            let mut news = true;
            let id = match existing {
                Some(r) => {
                    let id = r.text(0)?;
                    news = r.int(1)? != size;
                    tx.execute(
                        "UPDATE recording_assets SET size = ?2, duration_ms = ?3, metadata = ?4 WHERE id = ?1",
                        &vals![&id, size, duration_ms, &meta],
                    )?;
                    id
                }
                None => {
                    let id = new_id();
                    tx.execute(
                        "INSERT INTO recording_assets (id, job_id, workspace_id, room_id, session_id, type, status, path, size, duration_ms, metadata, created_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'completed', ?7, ?8, ?9, ?10, ?11)",
                        &vals![&id, job_id, &rec.workspace_id, &rec.room_id, &rec.session_id, asset_type(&rec.kind), path, size, duration_ms, &meta, now_ms],
                    )?;
                    id
                }
            };
            let (event, mut data) = if rec.kind == HLS {
                let mut f = beam_fields(&rec);
                f["hls_vod_recording_path"] = json!(path);
                f["hls_vod_recording_size"] = json!(size);
                f["recording_created_at"] = json!(format_ms(now_ms));
                ("hls.recording.success", f)
            } else if rec.kind != TRACK {
                let mut f = beam_fields(&rec);
                f["recording_id"] = json!(rec.id);
                f["created_at"] = json!(format_ms(now_ms));
                ("beam.recording.success", f)
            } else {
                ("track.recording.success", track_fields(&rec, metadata))
            };
            if let (Value::Object(d), Value::Object(e)) = (&mut data, extra) {
                d.extend(e);
            }
            if news {
                emit(tx, &rec, event, data, now_ms)?;
            }
            asset_in(tx, &id)
        })
    }

    /// One asset of a workspace.
    pub fn asset(&self, workspace_id: &str, id: &str) -> Result<Option<Asset>, StoreError> {
        let sql = format!("SELECT {ASSET_COLS} FROM recording_assets WHERE id = ?1 AND workspace_id = ?2");
        self.conn.query_opt(&sql, &vals![id, workspace_id])?.as_ref().map(asset_row).transpose()
    }

    /// The job of an asset, whatever its workspace (for signed downloads).
    pub fn asset_job(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_opt("SELECT job_id FROM recording_assets WHERE id = ?1", &vals![id])?
            .map(|r| r.text(0))
            .transpose()
    }

    /// Every asset of one job, in the order written.
    pub fn job_assets(&self, job_id: &str) -> Result<Vec<Asset>, StoreError> {
        let sql = format!("SELECT {ASSET_COLS} FROM recording_assets WHERE job_id = ?1 ORDER BY rowid");
        self.conn.query(&sql, &vals![job_id])?.iter().map(asset_row).collect()
    }

    /// A page of a workspace's assets, oldest first.
    pub fn assets(
        &self,
        workspace_id: &str,
        filter: &RecordingFilter,
        page: &Page,
    ) -> Result<Listing<Asset>, StoreError> {
        let q = PageQuery {
            table: "recording_assets",
            cols: ASSET_COLS,
            key: "rowid",
            id: "id",
            filters: FILTERS,
            args: filter_args(workspace_id, filter),
            row: asset_row,
            last: |a| &a.id,
        };
        page::query(&self.conn, q, page)
    }
}

/// The conditions of both list calls (jobs and assets both carry room, session and status).
const FILTERS: &str = "workspace_id = ?1 AND (CAST(?2 AS TEXT) IS NULL OR room_id = ?2)
    AND (CAST(?3 AS TEXT) IS NULL OR session_id = ?3) AND (CAST(?4 AS TEXT) IS NULL OR status = ?4)";

fn filter_args(workspace_id: &str, filter: &RecordingFilter) -> Vec<Val> {
    vals![workspace_id, filter.room_id.as_deref(), filter.session_id.as_deref(), filter.status.as_deref()].into()
}

/// [`FILTERS`] and the job's kind among a comma-separated list (`?5`, empty: any).
const JOB_FILTERS: &str = "workspace_id = ?1 AND (CAST(?2 AS TEXT) IS NULL OR room_id = ?2)
    AND (CAST(?3 AS TEXT) IS NULL OR session_id = ?3) AND (CAST(?4 AS TEXT) IS NULL OR status = ?4)
    AND (CAST(?5 AS TEXT) = '' OR (',' || CAST(?5 AS TEXT) || ',') LIKE ('%,' || kind || ',%'))";

fn job_filter_args(workspace_id: &str, filter: &RecordingFilter) -> Vec<Val> {
    let kinds = filter.kinds.join(",");
    vals![workspace_id, filter.room_id.as_deref(), filter.session_id.as_deref(), filter.status.as_deref(), &kinds]
        .into()
}

fn recording_in(conn: &Conn, id: &str) -> Result<Option<Recording>, StoreError> {
    let sql = format!("SELECT {REC_COLS} FROM recordings WHERE id = ?1");
    conn.query_opt(&sql, &vals![id])?.as_ref().map(rec_row).transpose()
}

fn asset_in(conn: &Conn, id: &str) -> Result<Option<Asset>, StoreError> {
    let sql = format!("SELECT {ASSET_COLS} FROM recording_assets WHERE id = ?1");
    conn.query_opt(&sql, &vals![id])?.as_ref().map(asset_row).transpose()
}

fn track_fields(rec: &Recording, metadata: &Value) -> Value {
    json!({
        "recording_id": rec.id,
        "peer_id": metadata["peer_id"],
        "stream_id": metadata["stream_id"],
        "track_id": metadata["track_id"],
        "track_type": metadata["track_type"],
    })
}

/// The asset type of a job's files.
pub fn asset_type(kind: &str) -> &'static str {
    match kind {
        COMPOSITE | RTMP => "room-composite",
        HLS => "room-vod",
        _ => "track",
    }
}

/// The webhook of a compositor job's state, if it has one, and its fields.
fn job_event(rec: &Recording, status: &str, error: &str) -> Option<(&'static str, Value)> {
    let hls = rec.kind == HLS;
    let (kind, mut data) = match status {
        RUNNING => (if hls { "hls.started.success" } else { "beam.started.success" }, beam_fields(rec)),
        COMPLETED => (
            if hls { "hls.stopped.success" } else { "beam.stopped.success" },
            stopped_fields(rec, rec.spec["stop_reason"].as_str().unwrap_or("client request")),
        ),
        FAILED => (if hls { "hls.failure" } else { "beam.failure" }, beam_fields(rec)),
        _ => return None,
    };
    if status == FAILED {
        data["error_code"] = json!(500);
        data["error_message"] = json!(error);
        data["error_type"] = json!("INTERNAL_ERROR");
    }
    Some((kind, data))
}

/// The fields every `beam.*` webhook carries (100ms's names).
fn beam_fields(rec: &Recording) -> Value {
    let res = &rec.spec["resolution"];
    json!({
        "beam_id": rec.id,
        "job_id": rec.id,
        "recording_enabled": true,
        "peer_id": rec.started_by,
        "meeting_url": rec.spec.get("meeting_url").cloned().unwrap_or(json!("")),
        "max_width": res["width"],
        "max_height": res["height"],
        "rtmp": rec.spec.get("rtmp_urls").and_then(Value::as_array).map_or_else(Vec::new, |urls| {
            urls.iter().map(|u| json!({ "url": u })).collect()
        }),
        "url": rec.spec.get("playback_url").cloned().unwrap_or(Value::Null),
        "recording_vod_playlist_enabled": rec.spec.get("vod").cloned().unwrap_or(json!(false)),
        "started_at": rec.started_at.map(format_ms),
    })
}

fn stopped_fields(rec: &Recording, reason: &str) -> Value {
    let mut f = beam_fields(rec);
    let duration = match (rec.started_at, rec.stopped_at) {
        (Some(a), Some(b)) => (b - a).max(0) / 1000,
        _ => 0,
    };
    f["stopped_at"] = json!(rec.stopped_at.map(format_ms));
    f["duration"] = json!(duration);
    f["reason"] = json!(reason);
    f
}

fn emit(tx: &Conn, rec: &Recording, kind: &str, extra: Value, now_ms: i64) -> Result<(), StoreError> {
    let Some(ws) = tx
        .query_opt("SELECT id, name, access_key, secret FROM workspaces WHERE id = ?1", &vals![&rec.workspace_id])?
        .as_ref()
        .map(crate::workspace::workspace_row)
        .transpose()?
    else {
        return Ok(());
    };
    let room = crate::room::room_where(tx, "id = ?1", &vals![&rec.room_id])?;
    let template_id = room.as_ref().map(|r| r.template_id.clone()).unwrap_or_default();
    let mut data = json!({
        "room_id": rec.room_id,
        "room_name": room.as_ref().map(|r| r.name.clone()).unwrap_or_default(),
        "session_id": rec.session_id,
        "template_id": template_id,
        "recording_started_at": rec.started_at.map(format_ms),
    });
    if let (Value::Object(d), Value::Object(e)) = (&mut data, extra) {
        d.extend(e);
    }
    enqueue(tx, &ws, room.as_ref(), &template_id, kind, data, now_ms).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::backends;

    #[test]
    fn a_job_moves_through_its_states_and_lists_its_assets() {
        for b in backends("recording") {
            let store = &b.store;
            let ws = store.ensure_default_workspace().unwrap();
            let room = store.upsert_room(&ws.id, "rec-room", None).unwrap();
            let a = store.create_recording(&ws.id, &room.id, "s1", "", TRACK, &json!({}), 1000).unwrap();
            let b2 = store
                .create_recording(
                    &ws.id,
                    &room.id,
                    "s1",
                    "",
                    COMPOSITE,
                    &json!({"resolution": {"width": 640, "height": 360}}),
                    1001,
                )
                .unwrap();
            assert_eq!(a.status, STARTING);
            assert_ne!(a.tap, b2.tap, "tap numbers are unique");
            assert!(store.set_recording_status(&a.id, RUNNING, "", None, 2000).unwrap());
            let meta = json!({"track_id": "t1", "peer_id": "p1", "stream_id": "s", "track_type": "audio"});
            let asset = store.add_asset(&a.id, "x/t1.1.ogg", 500, 1500, &meta, json!({}), 3000).unwrap().unwrap();
            assert_eq!((asset.kind.as_str(), asset.duration), ("track", 1.5));
            // The same file again (a repeated report) updates, not duplicates.
            store.add_asset(&a.id, "x/t1.1.ogg", 600, 1500, &meta, json!({}), 3001).unwrap();
            assert_eq!(store.job_assets(&a.id).unwrap().len(), 1);
            assert!(store.set_recording_status(&a.id, STOPPING, "", Some("api"), 4000).unwrap());
            assert!(store.set_recording_status(&a.id, COMPLETED, "", None, 5000).unwrap());
            assert!(!store.set_recording_status(&a.id, FAILED, "late", None, 6000).unwrap(), "ended stays ended");
            let got = store.recording(&ws.id, &a.id).unwrap().unwrap();
            assert_eq!((got.status.as_str(), got.stopped_at, got.started_at), (COMPLETED, Some(4000), Some(2000)));
            // A composite job's files are `room-composite` assets.
            assert_eq!(b2.kind, COMPOSITE);
            assert_eq!(b2.spec["resolution"]["width"], 640);
            assert!(store.set_recording_status(&b2.id, RUNNING, "", None, 2000).unwrap());
            let mp4 = store.add_asset(&b2.id, "j/composite.1.mp4", 9000, 5000, &json!({}), json!({}), 3000).unwrap();
            assert_eq!(mp4.unwrap().kind, "room-composite");
            assert!(store.set_recording_status(&b2.id, FAILED, "disk full", None, 7000).unwrap());
            let page = store
                .recordings(
                    &ws.id,
                    &RecordingFilter { status: Some(FAILED.into()), ..Default::default() },
                    &Page::first(10),
                )
                .unwrap();
            assert_eq!(page.data.len(), 1);
            assert_eq!(page.data[0].error, "disk full");
            assert_eq!(store.live_recordings().unwrap().len(), 0);
            let assets = store.assets(&ws.id, &RecordingFilter::default(), &Page::first(10)).unwrap();
            assert_eq!(assets.data[0].size, 600);
        }
    }
}

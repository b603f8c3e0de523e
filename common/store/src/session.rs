//! Sessions: one continuous call in a room. A session opens when the first peer joins and closes
//! when the last one leaves, when the room is ended, or when it reaches the room's cap
//! ([`crate::Room::session_cap`], at most 12 hours); it keeps every peer that was in it, with
//! join and leave times.
//!
//! Signaling reports what happens in a live room as an [`Activity`]; [`Store::record_activity`]
//! applies it to the session tables and writes the webhook events it causes into the outbox, in
//! one transaction. Time is an argument, so the cap is tested with an injected clock:
//!
//! ```
//! # let dir = std::env::temp_dir().join(format!("session-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! use std::time::{Duration, UNIX_EPOCH};
//! use store::session::{Activity, PeerRecord};
//! let store = store::Store::open(&dir.join("platform.db")).unwrap();
//! let ws = store.ensure_default_workspace().unwrap();
//! let room = store.upsert_room(&ws.id, "standup", None).unwrap();
//! let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
//! let alice = PeerRecord::new("p1", "alice", "Alice", "host", t0);
//! let s1 = store.record_activity(&room.id, &Activity::PeerJoined { peer: alice.clone() }, t0).unwrap().unwrap();
//! let later = t0 + Duration::from_secs(60);
//! let left = Activity::PeerLeft { peer: alice, reason: "client request".into(), message: String::new(), session_waits: false };
//! store.record_activity(&room.id, &left, later).unwrap();
//! let session = store.session(&ws.id, &s1).unwrap().unwrap();
//! assert!(!session.active);
//! assert_eq!(session.peers["p1"].left_at, Some(store::time::unix_ms(later)));
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

mod read;

use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::{Value, json};

use crate::db::{Conn, Row, vals};
use crate::outbox::enqueue;
use crate::time::{format_ms, unix_ms};
use crate::{Room, Store, StoreError, Workspace, new_id};

pub use read::{Session, SessionFilter, SessionPeer};

/// A peer as sessions and webhooks describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerRecord {
    pub peer_id: String,
    pub user_id: String,
    pub name: String,
    /// The peer's metadata string (`user_data` in webhooks).
    pub metadata: String,
    pub role: String,
    pub joined_at: SystemTime,
}

impl PeerRecord {
    pub fn new(peer_id: &str, user_id: &str, name: &str, role: &str, joined_at: SystemTime) -> PeerRecord {
        PeerRecord {
            peer_id: peer_id.into(),
            user_id: user_id.into(),
            name: name.into(),
            metadata: String::new(),
            role: role.into(),
            joined_at,
        }
    }
}

/// A track as track webhooks describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrackRecord {
    pub track_id: String,
    pub stream_id: String,
    /// `audio` or `video`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `regular`, `screen`, ...
    pub source: String,
    pub mute: bool,
    pub started_at: SystemTime,
}

/// Something that happened in a live room.
#[derive(Debug, Clone, PartialEq)]
pub enum Activity {
    PeerJoined {
        peer: PeerRecord,
    },
    /// `reason` from 100ms's vocabulary (`client request`, `peer kicked`, `websocket closed`,
    /// `server removed peer`, `room ended`); `message` the removal reason given, if any.
    /// The last peer's leave closes the session, unless `session_waits`: the room keeps it
    /// open for its jobs (`autoStopTimeout`) and ends it later with `SessionEnded`.
    PeerLeft {
        peer: PeerRecord,
        reason: String,
        message: String,
        session_waits: bool,
    },
    TrackAdded {
        peer: PeerRecord,
        track: TrackRecord,
    },
    TrackUpdated {
        peer: PeerRecord,
        track: TrackRecord,
    },
    TrackRemoved {
        peer: PeerRecord,
        track: TrackRecord,
    },
    /// `peer.role` is the new role.
    RoleChanged {
        peer: PeerRecord,
        previous_role: String,
        requested_by: Option<String>,
    },
    /// Name or metadata changed (kept in the session; no webhook, as with 100ms).
    PeerUpdated {
        peer: PeerRecord,
    },
    /// A join refused (`peer.join.failure`): the room or the role is full, or the role may not
    /// be joined. Recorded with or without an open session; it changes no session row.
    JoinFailed {
        peer: PeerRecord,
        error_message: String,
    },
    /// A role change refused (`role.change.failure`): the new role is full. `peer.role` is
    /// the role the peer keeps; `role` the one refused.
    RoleChangeFailed {
        peer: PeerRecord,
        role: String,
        error_message: String,
    },
    /// The room was ended (by peer `ended_by`, or by the API when `None`), or reached its cap
    /// (`explicit: false`; `room.end.success` is sent only for an explicit end).
    SessionEnded {
        reason: String,
        ended_by: Option<String>,
        lock: bool,
        explicit: bool,
    },
}

/// The room-level fields every room event carries.
struct Context<'a> {
    ws: Workspace,
    room: &'a Room,
    session_id: String,
    started_at: i64,
}

impl Context<'_> {
    fn data(&self, extra: Value) -> Value {
        let mut d = json!({
            "room_id": self.room.id,
            "room_name": self.room.name,
            "session_id": self.session_id,
            "template_id": self.room.template_id,
            "session_started_at": format_ms(self.started_at),
        });
        if let (Value::Object(d), Value::Object(extra)) = (&mut d, extra) {
            d.extend(extra);
        }
        d
    }

    fn emit(&self, tx: &Conn, kind: &str, extra: Value, now: i64) -> Result<(), StoreError> {
        enqueue(tx, &self.ws, Some(self.room), &self.room.template_id, kind, self.data(extra), now).map(|_| ())
    }
}

fn peer_fields(p: &PeerRecord) -> Value {
    json!({
        "peer_id": p.peer_id,
        "user_id": p.user_id,
        "user_name": p.name,
        "user_data": p.metadata,
        "role": p.role,
        "joined_at": format_ms(unix_ms(p.joined_at)),
        "type": "regular",
    })
}

fn track_fields(p: &PeerRecord, t: &TrackRecord, stopped_at: Option<i64>) -> Value {
    let mut v = peer_fields(p);
    if let Value::Object(m) = &mut v {
        m.remove("user_data");
        m.insert("track_id".into(), json!(t.track_id));
        m.insert("stream_id".into(), json!(t.stream_id));
        m.insert("type".into(), json!(t.kind));
        m.insert("source".into(), json!(t.source));
        m.insert("mute".into(), json!(t.mute));
        m.insert("started_at".into(), json!(format_ms(unix_ms(t.started_at))));
        if let Some(s) = stopped_at {
            m.insert("stopped_at".into(), json!(format_ms(s)));
        }
    }
    v
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Value::Object(a), Value::Object(b)) = (&mut a, b) {
        a.extend(b);
    }
    a
}

impl Store {
    /// Applies one activity of room `room_id` at `now`: session and peer rows plus the webhook
    /// events, in one transaction. Returns the session it landed in (`None` when it concerned
    /// no open session, e.g. a leave after the session was closed by its cap).
    pub fn record_activity(
        &self,
        room_id: &str,
        activity: &Activity,
        now: SystemTime,
    ) -> Result<Option<String>, StoreError> {
        self.record_activity_in(room_id, None, activity, now)
    }

    /// [`Store::record_activity`], naming the session a join opens (signaling's own session id,
    /// so the SDK's `session_id` and the REST one agree). Ignored when a session is open.
    pub fn record_activity_in(
        &self,
        room_id: &str,
        new_session_id: Option<&str>,
        activity: &Activity,
        now: SystemTime,
    ) -> Result<Option<String>, StoreError> {
        let now_ms = unix_ms(now);
        let room = self.room(room_id)?.ok_or_else(|| StoreError::NoRoom(room_id.into()))?;
        let ws =
            self.workspace(&room.workspace_id)?.ok_or_else(|| StoreError::NoWorkspace(room.workspace_id.clone()))?;
        self.conn.with_tx(|tx| {
            let mut current = active_session(tx, room_id)?;
            if let Some((id, started_at)) = &current
                && started_at + room.session_cap().as_millis() as i64 <= now_ms
            {
                let ctx = Context { ws: ws.clone(), room: &room, session_id: id.clone(), started_at: *started_at };
                close_session(
                    tx,
                    &ctx,
                    started_at + room.session_cap().as_millis() as i64,
                    "session max duration reached",
                )?;
                current = None;
            }
            if let Activity::JoinFailed { peer, error_message } | Activity::RoleChangeFailed { peer, error_message, .. } =
                activity
            {
                // A refusal needs no session: the first peer of a room may be the one refused.
                let (session_id, started_at) = current.unwrap_or_else(|| (String::new(), now_ms));
                let ctx = Context { ws, room: &room, session_id: session_id.clone(), started_at };
                let mut extra = json!({ "error_message": error_message });
                let kind = match activity {
                    Activity::RoleChangeFailed { role, .. } => {
                        extra["requested_role"] = json!(role);
                        "role.change.failure"
                    }
                    _ => "peer.join.failure",
                };
                ctx.emit(tx, kind, merge(peer_fields(peer), extra), now_ms)?;
                return Ok((!session_id.is_empty()).then_some(session_id));
            }
            let session = match (current, activity) {
                (Some((id, started_at)), _) => Some(Context { ws, room: &room, session_id: id, started_at }),
                (None, Activity::PeerJoined { .. }) => {
                    let id = new_session_id.filter(|s| !s.is_empty()).map_or_else(new_id, str::to_owned);
                    tx.execute(
                        "INSERT INTO sessions (id, workspace_id, room_id, active, started_at, updated_at) VALUES (?1, ?2, ?3, 1, ?4, ?4)",
                        &vals![&id, &room.workspace_id, &room.id, now_ms],
                    )?;
                    let ctx = Context { ws, room: &room, session_id: id, started_at: now_ms };
                    ctx.emit(tx, "session.open.success", json!({}), now_ms)?;
                    Some(ctx)
                }
                (None, _) => None,
            };
            let Some(ctx) = session else {
                return Ok(None);
            };
            let sid = ctx.session_id.clone();
            match activity {
                Activity::PeerJoined { peer } => {
                    tx.execute(
                        "INSERT INTO session_peers (session_id, peer_id, user_id, name, role, joined_at, left_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)
                         ON CONFLICT (session_id, peer_id) DO UPDATE SET user_id = excluded.user_id,
                           name = excluded.name, role = excluded.role, joined_at = excluded.joined_at, left_at = NULL",
                        &vals![&sid, &peer.peer_id, &peer.user_id, &peer.name, &peer.role, unix_ms(peer.joined_at)],
                    )?;
                    ctx.emit(tx, "peer.join.success", peer_fields(peer), now_ms)?;
                }
                Activity::PeerLeft { peer, reason, message, session_waits } => {
                    if peer_leaves(tx, &ctx, peer, reason, message, now_ms)?
                        && !session_waits
                        && remaining_peers(tx, &sid)? == 0
                    {
                        close_session(tx, &ctx, now_ms, reason)?;
                    }
                }
                Activity::TrackAdded { peer, track } => {
                    ctx.emit(tx, "track.add.success", track_fields(peer, track, None), now_ms)?
                }
                Activity::TrackUpdated { peer, track } => {
                    ctx.emit(tx, "track.update.success", track_fields(peer, track, None), now_ms)?
                }
                Activity::TrackRemoved { peer, track } => {
                    ctx.emit(tx, "track.remove.success", track_fields(peer, track, Some(now_ms)), now_ms)?
                }
                Activity::RoleChanged { peer, previous_role, requested_by } => {
                    tx.execute(
                        "UPDATE session_peers SET role = ?1 WHERE session_id = ?2 AND peer_id = ?3",
                        &vals![&peer.role, &sid, &peer.peer_id],
                    )?;
                    let mut extra = json!({"previous_role": previous_role, "role_changed_at": format_ms(now_ms)});
                    if let Some(by) = requested_by {
                        extra["role_change_requested_by"] = json!(by);
                    }
                    ctx.emit(tx, "role.change.success", merge(peer_fields(peer), extra), now_ms)?;
                }
                Activity::PeerUpdated { peer } => {
                    tx.execute(
                        "UPDATE session_peers SET name = ?1 WHERE session_id = ?2 AND peer_id = ?3",
                        &vals![&peer.name, &sid, &peer.peer_id],
                    )?;
                }
                // Recorded above, before any session is looked at.
                Activity::JoinFailed { .. } | Activity::RoleChangeFailed { .. } => {}
                Activity::SessionEnded { reason, ended_by, lock, explicit } => {
                    if *explicit {
                        let peer: Option<(String, String, String)> = match ended_by {
                            Some(id) => tx
                                .query_opt(
                                    "SELECT user_id, name, role FROM session_peers WHERE session_id = ?1 AND peer_id = ?2",
                                    &vals![&sid, id],
                                )?
                                .map(|r| Ok::<_, StoreError>((r.text(0)?, r.text(1)?, r.text(2)?)))
                                .transpose()?,
                            None => None,
                        };
                        let by = match (ended_by, peer) {
                            (Some(id), Some((user_id, name, role))) => {
                                json!({"peer_id": id, "user_id": user_id, "user_name": name, "role": role, "source": "peer"})
                            }
                            (Some(id), None) => json!({"peer_id": id, "user_id": "", "user_name": "", "role": "", "source": "peer"}),
                            (None, _) => json!({"peer_id": "", "user_id": "", "user_name": "", "role": "", "source": "api"}),
                        };
                        ctx.emit(tx, "room.end.success", merge(by, json!({"lock_room": lock, "reason": reason})), now_ms)?;
                    }
                    close_session(tx, &ctx, now_ms, if *explicit { "room ended" } else { reason })?;
                }
            }
            Ok(Some(sid))
        })
    }

    /// Closes every active session that has outlived its room's cap at `now` (a sweep for rooms
    /// nobody touches any more). Returns the (room id, session id) pairs closed.
    pub fn expire_sessions(&self, now: SystemTime) -> Result<Vec<(String, String)>, StoreError> {
        let active = self
            .conn
            .query("SELECT room_id, id, started_at FROM sessions WHERE active = 1", &[])?
            .iter()
            .map(|r| Ok((r.text(0)?, r.text(1)?, r.int(2)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let mut closed = Vec::new();
        for (room_id, session_id, started_at) in active {
            let Some(room) = self.room(&room_id)? else { continue };
            let end = started_at + room.session_cap().as_millis() as i64;
            if end > unix_ms(now) {
                continue;
            }
            let ws = self
                .workspace(&room.workspace_id)?
                .ok_or_else(|| StoreError::NoWorkspace(room.workspace_id.clone()))?;
            let ctx = Context { ws, room: &room, session_id: session_id.clone(), started_at };
            self.conn.with_tx(|tx| close_session(tx, &ctx, end, "session max duration reached"))?;
            closed.push((room_id, session_id));
        }
        Ok(closed)
    }

    /// The active session of a room, if any: (id, started_at ms).
    pub fn active_session(&self, room_id: &str) -> Result<Option<(String, i64)>, StoreError> {
        active_session(&self.conn, room_id)
    }
}

fn active_session(conn: &Conn, room_id: &str) -> Result<Option<(String, i64)>, StoreError> {
    conn.query_opt("SELECT id, started_at FROM sessions WHERE room_id = ?1 AND active = 1", &vals![room_id])?
        .map(|r: Row| Ok((r.text(0)?, r.int(1)?)))
        .transpose()
}

fn remaining_peers(tx: &Conn, session_id: &str) -> Result<i64, StoreError> {
    tx.query_one("SELECT COUNT(*) FROM session_peers WHERE session_id = ?1 AND left_at IS NULL", &vals![session_id])?
        .int(0)
}

/// Marks `peer` left and emits `peer.leave.success`; false if it was not in the session (or had
/// left already), so a repeated leave sends nothing.
fn peer_leaves(
    tx: &Conn,
    ctx: &Context<'_>,
    peer: &PeerRecord,
    reason: &str,
    message: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let n = tx.execute(
        "UPDATE session_peers SET left_at = ?1 WHERE session_id = ?2 AND peer_id = ?3 AND left_at IS NULL",
        &vals![now_ms, &ctx.session_id, &peer.peer_id],
    )?;
    if n == 0 {
        return Ok(false);
    }
    let joined = unix_ms(peer.joined_at);
    let extra = json!({
        "left_at": format_ms(now_ms),
        "duration": (now_ms - joined).max(0) / 1000,
        "reason": reason,
        "message": message,
    });
    ctx.emit(tx, "peer.leave.success", merge(peer_fields(peer), extra), now_ms)?;
    Ok(true)
}

/// Closes the session at `end_ms`: the peers still in it leave with `reason`, then
/// `session.close.success`.
fn close_session(tx: &Conn, ctx: &Context<'_>, end_ms: i64, reason: &str) -> Result<(), StoreError> {
    let still_in = tx
        .query(
            "SELECT peer_id, user_id, name, role, joined_at FROM session_peers WHERE session_id = ?1 AND left_at IS NULL",
            &vals![&ctx.session_id],
        )?
        .iter()
        .map(|r| {
            let joined = r.int(4)?;
            Ok(PeerRecord {
                peer_id: r.text(0)?,
                user_id: r.text(1)?,
                name: r.text(2)?,
                metadata: String::new(),
                role: r.text(3)?,
                joined_at: std::time::UNIX_EPOCH + Duration::from_millis(joined.max(0) as u64),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    for p in &still_in {
        peer_leaves(tx, ctx, p, reason, "", end_ms)?;
    }
    tx.execute(
        "UPDATE sessions SET active = 0, ended_at = ?1, updated_at = ?1 WHERE id = ?2",
        &vals![end_ms, &ctx.session_id],
    )?;
    let extra = json!({
        "session_stopped_at": format_ms(end_ms),
        "session_duration": (end_ms - ctx.started_at).max(0) / 1000,
    });
    ctx.emit(tx, "session.close.success", extra, end_ms)
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::Page;
    use crate::test_support::{Backend, backends};

    /// Each backend with the default workspace and a room `r`.
    fn setups(tag: &str) -> Vec<(Backend, Workspace, Room)> {
        backends(tag)
            .into_iter()
            .map(|b| {
                let ws = b.store.ensure_default_workspace().unwrap();
                let room = b.store.upsert_room(&ws.id, "r", None).unwrap();
                (b, ws, room)
            })
            .collect()
    }

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn events(s: &Store, ws: &Workspace) -> Vec<(String, Value)> {
        s.webhook_events(&ws.id, None, None, &Page::first(100))
            .unwrap()
            .data
            .into_iter()
            .map(|e| (e.kind, e.event["data"].clone()))
            .collect()
    }

    fn left(p: &PeerRecord) -> Activity {
        leaves(p, false)
    }

    fn leaves(p: &PeerRecord, session_waits: bool) -> Activity {
        Activity::PeerLeft { peer: p.clone(), reason: "client request".into(), message: String::new(), session_waits }
    }

    #[test]
    fn a_last_leave_that_waits_keeps_the_session_for_a_returning_peer_until_it_is_ended() {
        for (b, ws, room) in setups("waits") {
            let s = &b.store;
            let a = PeerRecord::new("pa", "ua", "A", "host", t(0));
            let s1 = s.record_activity(&room.id, &Activity::PeerJoined { peer: a.clone() }, t(0)).unwrap().unwrap();
            let waits = leaves(&a, true);
            s.record_activity(&room.id, &waits, t(10)).unwrap();
            assert!(s.session(&ws.id, &s1).unwrap().unwrap().active, "open while the room's jobs wait");
            let back = PeerRecord::new("pb", "ub", "B", "host", t(12));
            assert_eq!(
                s.record_activity(&room.id, &Activity::PeerJoined { peer: back.clone() }, t(12)).unwrap(),
                Some(s1.clone())
            );
            s.record_activity(&room.id, &leaves(&back, true), t(20)).unwrap();
            let ended = Activity::SessionEnded {
                reason: "last peer left".into(),
                ended_by: None,
                lock: false,
                explicit: false,
            };
            s.record_activity(&room.id, &ended, t(26)).unwrap();
            let session = s.session(&ws.id, &s1).unwrap().unwrap();
            assert_eq!((session.active, session.ended_at, session.peers.len()), (false, Some(unix_ms(t(26))), 2));
        }
    }

    #[test]
    fn join_leave_rejoin_makes_two_sessions_with_their_peers() {
        for (b, ws, room) in setups("rejoin") {
            let s = &b.store;
            let a = PeerRecord::new("pa", "ua", "A", "host", t(0));
            let b = PeerRecord::new("pb", "ub", "B", "guest", t(5));
            let s1 = s.record_activity(&room.id, &Activity::PeerJoined { peer: a.clone() }, t(0)).unwrap().unwrap();
            assert_eq!(
                s.record_activity(&room.id, &Activity::PeerJoined { peer: b.clone() }, t(5)).unwrap(),
                Some(s1.clone())
            );
            s.record_activity(&room.id, &left(&a), t(10)).unwrap();
            assert!(s.session(&ws.id, &s1).unwrap().unwrap().active, "B is still there");
            s.record_activity(&room.id, &left(&b), t(20)).unwrap();
            // A repeated leave changes nothing and sends nothing.
            assert_eq!(s.record_activity(&room.id, &left(&b), t(21)).unwrap(), None);
            let first = s.session(&ws.id, &s1).unwrap().unwrap();
            assert!(!first.active);
            assert_eq!(first.ended_at, Some(unix_ms(t(20))));
            assert_eq!(first.peers.len(), 2);
            assert_eq!(first.peers["pb"].role, "guest");

            let a2 = PeerRecord::new("pa2", "ua", "A", "host", t(100));
            let s2 = s.record_activity(&room.id, &Activity::PeerJoined { peer: a2 }, t(100)).unwrap().unwrap();
            assert_ne!(s1, s2);
            let all = s
                .sessions(
                    &ws.id,
                    &SessionFilter { room_id: Some(room.id.clone()), ..Default::default() },
                    &Page::first(10),
                )
                .unwrap();
            assert_eq!(all.data.iter().map(|s| s.active).collect::<Vec<_>>(), [false, true]);
            let active = s
                .sessions(&ws.id, &SessionFilter { active: Some(true), ..Default::default() }, &Page::first(10))
                .unwrap();
            assert_eq!(active.data.len(), 1);

            let kinds: Vec<String> = events(s, &ws).into_iter().map(|(k, _)| k).collect();
            assert_eq!(
                kinds,
                [
                    "session.open.success",
                    "peer.join.success",
                    "peer.join.success",
                    "peer.leave.success",
                    "peer.leave.success",
                    "session.close.success",
                    "session.open.success",
                    "peer.join.success"
                ]
            );
            let evs = events(s, &ws);
            assert_eq!(evs[3].1["reason"], "client request");
            assert_eq!(evs[3].1["duration"], 10);
            assert_eq!(evs[5].1["session_duration"], 20);
            assert_eq!(evs[1].1["room_name"], "r");
        }
    }

    #[test]
    fn the_twelve_hour_cap_closes_a_session_with_an_injected_clock() {
        for (b, ws, room) in setups("cap") {
            let s = &b.store;
            let a = PeerRecord::new("pa", "ua", "A", "host", t(0));
            let s1 = s.record_activity(&room.id, &Activity::PeerJoined { peer: a.clone() }, t(0)).unwrap().unwrap();
            // Just before the cap nothing is closed.
            assert!(s.expire_sessions(t(43_199)).unwrap().is_empty());
            // A late joiner after the cap lands in a fresh session; the old one ended at exactly 12 h.
            let b = PeerRecord::new("pb", "ub", "B", "guest", t(43_300));
            let s2 = s.record_activity(&room.id, &Activity::PeerJoined { peer: b }, t(43_300)).unwrap().unwrap();
            assert_ne!(s1, s2);
            let old = s.session(&ws.id, &s1).unwrap().unwrap();
            assert_eq!(old.ended_at, Some(unix_ms(t(43_200))));
            assert_eq!(old.peers["pa"].left_at, Some(unix_ms(t(43_200))));
            // A's leave arrives late: it concerns no open session.
            assert_eq!(s.record_activity(&room.id, &left(&a), t(43_400)).unwrap(), Some(s2.clone()));
            assert!(s.session(&ws.id, &s2).unwrap().unwrap().active);
            // The sweep closes the second one at its own cap.
            assert_eq!(s.expire_sessions(t(43_300 + 43_200)).unwrap(), [(room.id.clone(), s2.clone())]);
            let leave =
                events(s, &ws).into_iter().find(|(k, d)| k == "peer.leave.success" && d["peer_id"] == "pa").unwrap();
            assert_eq!(leave.1["reason"], "session max duration reached");
        }
    }

    #[test]
    fn a_room_cap_shorter_than_twelve_hours_applies() {
        for (b, ws, _) in setups("shortcap") {
            let s = &b.store;
            let mut attrs = serde_json::Map::new();
            attrs.insert("max_duration_seconds".into(), json!(120));
            let room = s.upsert_room_with(&ws.id, "short", None, &attrs).unwrap();
            let a = PeerRecord::new("pa", "ua", "A", "host", t(0));
            s.record_activity(&room.id, &Activity::PeerJoined { peer: a }, t(0)).unwrap();
            assert_eq!(s.expire_sessions(t(119)).unwrap().len(), 0);
            assert_eq!(s.expire_sessions(t(120)).unwrap().len(), 1);
        }
    }

    #[test]
    fn track_role_and_end_events_carry_100ms_fields() {
        for (b, ws, room) in setups("events") {
            let s = &b.store;
            let a = PeerRecord::new("pa", "ua", "A", "guest", t(0));
            s.record_activity(&room.id, &Activity::PeerJoined { peer: a.clone() }, t(0)).unwrap();
            let track = TrackRecord {
                track_id: "tr".into(),
                stream_id: "st".into(),
                kind: "video".into(),
                source: "regular".into(),
                mute: false,
                started_at: t(1),
            };
            s.record_activity(&room.id, &Activity::TrackAdded { peer: a.clone(), track: track.clone() }, t(1)).unwrap();
            let muted = TrackRecord { mute: true, ..track.clone() };
            s.record_activity(&room.id, &Activity::TrackUpdated { peer: a.clone(), track: muted }, t(2)).unwrap();
            s.record_activity(&room.id, &Activity::TrackRemoved { peer: a.clone(), track }, t(3)).unwrap();
            let host = PeerRecord { role: "host".into(), ..a.clone() };
            let change =
                Activity::RoleChanged { peer: host.clone(), previous_role: "guest".into(), requested_by: None };
            s.record_activity(&room.id, &change, t(4)).unwrap();
            let end = Activity::SessionEnded {
                reason: "done".into(),
                ended_by: Some(host.peer_id),
                lock: true,
                explicit: true,
            };
            s.record_activity(&room.id, &end, t(5)).unwrap();
            let evs = events(s, &ws);
            let kinds: Vec<&str> = evs.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(
                kinds,
                [
                    "session.open.success",
                    "peer.join.success",
                    "track.add.success",
                    "track.update.success",
                    "track.remove.success",
                    "role.change.success",
                    "room.end.success",
                    "peer.leave.success",
                    "session.close.success"
                ]
            );
            assert_eq!(evs[2].1["type"], "video");
            assert_eq!(evs[3].1["mute"], true);
            assert!(evs[4].1["stopped_at"].is_string());
            assert_eq!((evs[5].1["previous_role"].as_str(), evs[5].1["role"].as_str()), (Some("guest"), Some("host")));
            assert!(evs[5].1.get("role_change_requested_by").is_none(), "absent when the change came from the API");
            assert_eq!(evs[6].1["lock_room"], true);
            assert_eq!((evs[6].1["user_id"].as_str(), evs[6].1["role"].as_str()), (Some("ua"), Some("host")));
            assert_eq!(evs[7].1["reason"], "room ended");
            let all = s.webhook_events(&ws.id, None, None, &Page::first(100)).unwrap().data;
            assert!(all.iter().all(|e| e.status == "unrouted"), "no endpoint configured");
            let env = &all[0].event;
            assert_eq!(env["version"], "2.0");
            assert_eq!(env["app_id"], json!(ws.id));
            assert_eq!(env["template_id"], json!(room.template_id));
        }
    }

    #[test]
    fn refused_joins_and_role_changes_are_webhooks_with_or_without_a_session() {
        for (b, ws, room) in setups("failures") {
            let s = &b.store;
            let a = PeerRecord::new("pa", "ua", "A", "guest", t(0));
            let refused = Activity::JoinFailed { peer: a.clone(), error_message: "the room is full".into() };
            assert_eq!(s.record_activity(&room.id, &refused, t(0)).unwrap(), None, "no session is opened");
            let s1 = s.record_activity(&room.id, &Activity::PeerJoined { peer: a.clone() }, t(1)).unwrap().unwrap();
            let change = Activity::RoleChangeFailed {
                peer: a.clone(),
                role: "host".into(),
                error_message: "role 'host' is full".into(),
            };
            assert_eq!(s.record_activity(&room.id, &change, t(2)).unwrap(), Some(s1.clone()));
            let evs = events(s, &ws);
            let kinds: Vec<&str> = evs.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(
                kinds,
                ["peer.join.failure", "session.open.success", "peer.join.success", "role.change.failure"]
            );
            assert_eq!(
                (evs[0].1["error_message"].as_str(), evs[0].1["session_id"].as_str()),
                (Some("the room is full"), Some(""))
            );
            assert_eq!((evs[3].1["role"].as_str(), evs[3].1["requested_role"].as_str()), (Some("guest"), Some("host")));
            assert_eq!(evs[3].1["session_id"], json!(s1));
            let session = s.session(&ws.id, &s1).unwrap().unwrap();
            assert_eq!((session.active, session.peers.len()), (true, 1), "a failure changes no session row");
        }
    }

    #[test]
    fn delivery_is_in_order_per_room_and_survives_failures() {
        for (b, ws, room) in setups("delivery") {
            let s = &b.store;
            let ep = s
                .set_workspace_webhook(
                    &ws.id,
                    Some(crate::outbox::Endpoint {
                        url: "http://127.0.0.1:9/hook".into(),
                        headers: Default::default(),
                        secret: String::new(),
                    }),
                )
                .unwrap()
                .unwrap();
            assert_eq!(ep.secret.len(), 64);
            let other = s.upsert_room(&ws.id, "other", None).unwrap();
            let a = PeerRecord::new("pa", "ua", "A", "host", t(0));
            s.record_activity(&room.id, &Activity::PeerJoined { peer: a.clone() }, t(0)).unwrap();
            s.record_activity(&other.id, &Activity::PeerJoined { peer: a }, t(0)).unwrap();
            let now = unix_ms(t(0));
            let due = s.due_webhooks(now, 10).unwrap();
            // One per room: each room's session.open.success.
            assert_eq!(
                due.iter().map(|d| d.kind.as_str()).collect::<Vec<_>>(),
                ["session.open.success", "session.open.success"]
            );
            assert_eq!(due[0].secret, ep.secret);
            s.webhook_attempt_failed(due[0].seq, "HTTP 500", Some(now + 1000)).unwrap();
            s.webhook_delivered(due[1].seq, now).unwrap();
            // The first room is held back until its retry; the second moves on.
            let due2 = s.due_webhooks(now, 10).unwrap();
            assert_eq!(due2.len(), 1);
            assert_eq!(due2[0].kind, "peer.join.success");
            let due3 = s.due_webhooks(now + 1000, 10).unwrap();
            assert_eq!(due3.len(), 2);
            assert_eq!(due3[0].seq, due[0].seq);
            assert_eq!(due3[0].attempts, 1);
            s.webhook_attempt_failed(due3[0].seq, "gave up", None).unwrap();
            let undelivered = s.webhook_events(&ws.id, Some("undelivered"), None, &Page::first(10)).unwrap().data;
            assert_eq!(undelivered.len(), 3);
            assert_eq!(undelivered[0].status, "failed");
            assert_eq!(undelivered[0].last_error.as_deref(), Some("gave up"));
        }
    }
}

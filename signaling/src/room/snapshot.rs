//! The room's snapshot: what a restarted signaling process needs to pick its peers up again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use schema::api::Event;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::peer::Peer;
use super::{Room, RoomMsg, recording};
use crate::rpc::Incoming;

/// What survives a restart of signaling: the router keeps the transports and keeps
/// forwarding; this lets a new signaling process pick the peers up again when their SDKs
/// reconnect (they re-offer on the same publish connection, without `join`).
#[derive(Debug, Deserialize)]
pub(super) struct Snapshot {
    pub(super) shard: Option<u8>,
    pub(super) session: Option<(String, u64)>,
    pub(super) peers: BTreeMap<String, Peer>,
    /// Absent in snapshots written before recordings were kept.
    #[serde(default)]
    pub(super) recordings: Vec<recording::Active>,
    /// The one recording of snapshots written before a room could run several jobs.
    #[serde(default)]
    pub(super) recording: Option<recording::Active>,
    /// A session kept open for its jobs after its last peer left (Unix ms).
    #[serde(default)]
    pub(super) linger_until: Option<u64>,
    /// Absent in snapshots written before the session store.
    #[serde(default)]
    pub(super) session_store: super::session_store::SessionStore,
}

/// [`Snapshot`] borrowed from the room, for writing: serialized straight from its state, not
/// through a `serde_json::Value` copy of every peer (building and dropping that tree was the
/// largest part of signaling's CPU in a join storm of 200 peers).
#[derive(Serialize)]
struct SnapshotRef<'a> {
    shard: Option<u8>,
    session: &'a Option<(String, u64)>,
    peers: &'a BTreeMap<String, Peer>,
    recordings: &'a Vec<recording::Active>,
    linger_until: Option<u64>,
    session_store: &'a super::session_store::SessionStore,
}

impl Room {
    pub(super) fn snapshot_path(&self) -> Option<std::path::PathBuf> {
        self.env.state_dir.as_ref().map(|d| d.join(format!("{}.json", self.id)))
    }

    /// Picks up the peers a previous signaling process left: they count as away (their
    /// sockets died with it) and get the usual 60 s to reconnect.
    pub(super) fn restore(&mut self) {
        let Some(path) = self.snapshot_path() else { return };
        let Ok(text) = std::fs::read_to_string(&path) else { return };
        let snapshot: Snapshot = match serde_json::from_str(&text) {
            Ok(s) => s,
            Err(e) => {
                warn!(room = %self.id, path = %path.display(), error = %e, "unreadable room snapshot ignored");
                return;
            }
        };
        self.shard = snapshot.shard;
        self.session = snapshot.session;
        self.peers = snapshot.peers;
        self.recordings = snapshot.recordings;
        self.recordings.extend(snapshot.recording);
        self.linger_until = snapshot.linger_until;
        self.session_store = snapshot.session_store;
        let now = Instant::now();
        for peer in self.peers.values_mut() {
            // A WHIP or WHEP peer has no socket to lose: its media went on through the restart.
            if peer.via.reconnects() {
                peer.away_since = Some(now);
            }
            for t in peer.publish.iter().map(|p| p.transport.id).chain(peer.subscribe.iter().map(|s| s.transport.id)) {
                self.env.hub.register_transport(t, &self.id);
            }
        }
        self.saved = text.into_bytes();
        info!(room = %self.id, peers = self.peers.len(), "room restored from the previous signaling process; waiting for its peers to reconnect");
    }

    /// Writes the room's snapshot when it changed (atomically: a crash mid-write leaves the
    /// previous one), or removes it when the room is empty.
    pub(super) fn save(&mut self) {
        let Some(path) = self.snapshot_path() else { return };
        // An empty room is kept while its session waits for its jobs' peers to come back.
        if self.peers.is_empty() && self.linger_until.is_none() {
            if !self.saved.is_empty() {
                let _ = std::fs::remove_file(&path);
                self.saved.clear();
            }
            return;
        }
        let mut text = std::mem::take(&mut self.spare);
        text.clear();
        let snapshot = SnapshotRef {
            shard: self.shard,
            session: &self.session,
            peers: &self.peers,
            recordings: &self.recordings,
            linger_until: self.linger_until,
            session_store: &self.session_store,
        };
        let written = match serde_json::to_writer(&mut text, &snapshot) {
            Err(e) => {
                warn!(room = %self.id, error = %e, "room snapshot not serialized");
                false
            }
            Ok(()) if text == self.saved => false,
            Ok(()) => {
                let tmp = path.with_extension("json.tmp");
                let result = std::fs::write(&tmp, &text).and_then(|_| std::fs::rename(&tmp, &path));
                if let Err(e) = &result {
                    warn!(room = %self.id, path = %path.display(), error = %e, "room snapshot not written");
                }
                result.is_ok()
            }
        };
        if written {
            std::mem::swap(&mut self.saved, &mut text);
        }
        self.spare = text;
    }
}

/// A burst of messages (a peer joining a big room sends the others a notification each, and
/// their answers come back together) writes one snapshot, not one each: the snapshot holds
/// every peer with its last subscribe offer, about 5 KB a peer, and serializing it after every
/// message made joins into a 200-peer room queue for seconds. A crash loses at most this much
/// of the room's latest changes; the peers' SDKs reconnect either way.
pub(super) const SNAPSHOT_COALESCE: Duration = Duration::from_millis(200);

/// Messages that change nothing the snapshot holds: keep-alives and trickles, and the router's
/// layer and audio level reports (the room only relays those). Data channel messages are
/// track preferences, which pause and resume consumers: those are saved.
pub(super) fn changes_no_snapshot(msg: &RoomMsg) -> bool {
    match msg {
        RoomMsg::Rpc { msg: Incoming::Request { method, .. } | Incoming::Notify { method, .. }, .. } => {
            method == "ping" || method == "trickle" || method == "analytics"
        }
        RoomMsg::Router(event) => matches!(
            event,
            Event::ConsumerLayersChanged { .. }
                | Event::AudioLevels { .. }
                | Event::LayersNeeded { .. }
                | Event::TransportConnected { .. }
                | Event::DataChannelOpened { .. }
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use schema::ids::ProducerId;
    use schema::tap::TapReader;

    #[test]
    fn running_jobs_survive_in_the_snapshot_and_old_snapshots_still_load() {
        let tracks = recording::Active {
            recording_id: "rec-1".into(),
            tap: 7,
            reader: TapReader::Recorder,
            tapped: [ProducerId(3)].into_iter().collect(),
        };
        let composite = recording::Active {
            recording_id: "rec-2".into(),
            tap: 8,
            reader: TapReader::Compositor,
            tapped: [ProducerId(3)].into_iter().collect(),
        };
        let peers: BTreeMap<String, Peer> = BTreeMap::new();
        let jobs = vec![tracks.clone(), composite];
        let mut store = super::super::session_store::SessionStore::default();
        store.set("pinned", json!({"text": "hi"}), "p1", 5, None).expect("a value");
        // The same shape `save` writes.
        let text = serde_json::to_string(&SnapshotRef {
            shard: Some(0),
            session: &None,
            peers: &peers,
            recordings: &jobs,
            linger_until: Some(1234),
            session_store: &store,
        })
        .expect("serializable");
        let back: Snapshot = serde_json::from_str(&text).expect("a snapshot");
        assert_eq!(back.linger_until, Some(1234), "a session waiting for its jobs survives too");
        assert!(back.session_store.get("pinned").is_some(), "the session store survives too");
        let got: Vec<_> = back.recordings.iter().map(|a| (a.recording_id.as_str(), a.tap, a.reader)).collect();
        assert_eq!(got, [("rec-1", 7, TapReader::Recorder), ("rec-2", 8, TapReader::Compositor)]);
        assert_eq!(back.recordings[0].tapped, tracks.tapped);
        // A snapshot of the one-recording days: its job is the recorder's.
        let one = json!({ "shard": 0, "session": null, "peers": {}, "recording": {"recording_id": "r", "tap": 3, "tapped": [5]} });
        let old: Snapshot = serde_json::from_str(&one.to_string()).expect("one-recording snapshot");
        let legacy = old.recording.expect("the legacy field is read");
        assert_eq!((legacy.tap, legacy.reader), (3, TapReader::Recorder));
        let older: Snapshot =
            serde_json::from_str(r#"{"shard": 0, "session": null, "peers": {}}"#).expect("old snapshot");
        assert!(older.recordings.is_empty() && older.recording.is_none());
    }
}

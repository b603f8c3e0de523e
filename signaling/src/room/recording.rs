//! Recording and compositing in a room: which producers the router taps, for whom.
//!
//! Control starts a job with the admin op `start_recording {recording_id, tap, reader?}`:
//! every published track of the room is tapped (router `start_tap`, with a [`TapMeta`] naming
//! the job, room, session, peer and track, for the `reader`: the recorder for a track
//! recording, the compositor for a composite job), and so is every track published while the
//! job runs. `stop_recording` ends the job's taps. A room can run several jobs at once (a
//! track recording and a composite job, say), each with its own tap number: control's, which
//! the router tags each copied packet with and the reader keys its tracks by.
//!
//! `request_keyframe {recording_id, track_id}` (the reader waits for one: its start, a
//! broken stream, a part due to rotate) starts the track's tap again with the same number and
//! metadata: the router takes that as the same tap, and asks the publisher for a keyframe.

use std::collections::BTreeSet;

use schema::ids::ProducerId;
use schema::recording::TapMeta;
use schema::tap::TapReader;
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use super::{AdminError, Room};

/// A job running in a room. The room's jobs are part of its snapshot, so a restarted
/// signaling process still taps the tracks published after its restart.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct Active {
    pub recording_id: String,
    pub tap: u32,
    /// Absent in snapshots written before the compositor: the recorder.
    #[serde(default)]
    pub reader: TapReader,
    pub tapped: BTreeSet<ProducerId>,
}

impl Room {
    /// `start_recording`: taps every published track for `reader`; idempotent for the same job.
    pub(super) async fn start_recording(
        &mut self,
        recording_id: String,
        tap: u32,
        reader: TapReader,
    ) -> Result<Value, AdminError> {
        if let Some(a) = self.recordings.iter().find(|a| a.tap == tap && a.recording_id != recording_id) {
            return Err(AdminError::new(409, format!("tap {tap} is already job {}'s in this room", a.recording_id)));
        }
        if !self.recordings.iter().any(|a| a.recording_id == recording_id) {
            self.recordings.push(Active { recording_id: recording_id.clone(), tap, reader, tapped: BTreeSet::new() });
        }
        let tracks = self.tap_published().await;
        let tracks: Vec<Value> = tracks.into_iter().filter(|(id, _)| *id == recording_id).map(|(_, t)| t).collect();
        info!(room = %self.id, recording = %recording_id, ?reader, tracks = tracks.len(), "recording started");
        Ok(json!({ "recording_id": recording_id, "tracks": tracks }))
    }

    /// `stop_recording`: ends the taps of this job, or of every job in the room.
    pub(super) async fn stop_recording(&mut self, recording_id: Option<String>) -> Result<Value, AdminError> {
        let (ended, kept): (Vec<Active>, Vec<Active>) = std::mem::take(&mut self.recordings)
            .into_iter()
            .partition(|a| recording_id.as_ref().is_none_or(|id| *id == a.recording_id));
        self.recordings = kept;
        if ended.is_empty() {
            return Err(AdminError::new(404, "no such recording running in this room"));
        }
        let mut tracks = 0;
        for active in &ended {
            for producer in &active.tapped {
                if let Err(e) = self.env.router.stop_tap(*producer, Some(active.tap)).await {
                    debug!(error = %e, "stop_tap (the producer may be gone)");
                }
            }
            tracks += active.tapped.len();
            info!(room = %self.id, recording = %active.recording_id, "recording stopped");
        }
        let ids: Vec<&str> = ended.iter().map(|a| a.recording_id.as_str()).collect();
        Ok(json!({ "recording_id": ids.join(","), "tracks": tracks }))
    }

    /// `request_keyframe`: the router asks the publisher of one tapped track for a keyframe.
    pub(super) async fn request_keyframe(&mut self, recording_id: &str, track_id: &str) -> Result<Value, AdminError> {
        let Some(active) = self.recordings.iter().find(|a| a.recording_id == recording_id).cloned() else {
            return Err(AdminError::new(404, "no such recording running in this room"));
        };
        let Some((producer, meta)) =
            self.tap_metas(&active).into_iter().find(|(p, m)| m.track_id == track_id && active.tapped.contains(p))
        else {
            return Err(AdminError::new(404, "no such track tapped in this recording"));
        };
        let text = serde_json::to_string(&meta).unwrap_or_default();
        self.env.router.start_tap(producer, active.tap, text, active.reader).await.map_err(super::Refusal::from)?;
        debug!(room = %self.id, track = %track_id, "keyframe asked for the recorder");
        Ok(json!({ "track_id": track_id }))
    }

    /// Every published track's producer and the metadata its tap carries.
    fn tap_metas(&self, active: &Active) -> Vec<(ProducerId, TapMeta)> {
        let session_id = self.session.as_ref().map(|(id, _)| id.clone()).unwrap_or_default();
        let mut wanted = Vec::new();
        for peer in self.peers.values() {
            let Some(publish) = &peer.publish else { continue };
            for t in publish.tracks.values() {
                let meta = TapMeta {
                    recording_id: active.recording_id.clone(),
                    room_id: self.id.clone(),
                    session_id: session_id.clone(),
                    peer_id: peer.id.clone(),
                    user_id: peer.user_id.clone(),
                    track_id: t.state.track_id.clone(),
                    stream_id: t.state.stream_id.clone(),
                    track_type: t.state.kind.clone(),
                    source: t.state.source.clone(),
                    peer_name: peer.name.clone(),
                    muted: t.state.mute,
                };
                wanted.push((t.producer, meta));
            }
        }
        wanted
    }

    /// Re-sends the tap metadata of one peer's tracks to the compositor's jobs, after a mute or
    /// a new name: the composite's layout and tile names follow it. (The recorder keeps what
    /// it had: its files are named by ids, not names.)
    pub(super) async fn retap_peer(&mut self, peer_id: &str) {
        let jobs: Vec<Active> = self.recordings.iter().filter(|a| a.reader == TapReader::Compositor).cloned().collect();
        for active in jobs {
            for (producer, meta) in self.tap_metas(&active) {
                if meta.peer_id != peer_id || !active.tapped.contains(&producer) {
                    continue;
                }
                let text = serde_json::to_string(&meta).unwrap_or_default();
                if let Err(e) = self.env.router.start_tap(producer, active.tap, text, active.reader).await {
                    warn!(room = %self.id, track = %meta.track_id, error = %e, "cannot update a tapped track's metadata");
                }
            }
        }
    }

    /// Taps the published tracks not tapped yet, for every job (at a start, and after each
    /// publish). Returns every tapped track's metadata, with its job.
    pub(super) async fn tap_published(&mut self) -> Vec<(String, Value)> {
        let mut tracks = Vec::new();
        for i in 0..self.recordings.len() {
            let active = self.recordings[i].clone();
            for (producer, meta) in self.tap_metas(&active) {
                if !active.tapped.contains(&producer) {
                    let text = serde_json::to_string(&meta).unwrap_or_default();
                    match self.env.router.start_tap(producer, active.tap, text, active.reader).await {
                        Ok(_) => {
                            if let Some(a) = self.recordings.iter_mut().find(|a| a.recording_id == active.recording_id)
                            {
                                a.tapped.insert(producer);
                            }
                        }
                        Err(e) => {
                            warn!(room = %self.id, track = %meta.track_id, error = %e, "cannot tap track for recording");
                            continue;
                        }
                    }
                }
                tracks.push((active.recording_id.clone(), serde_json::to_value(&meta).unwrap_or_default()));
            }
        }
        tracks
    }
}

//! Track recording in a room: which producers the router taps for the recorder.
//!
//! Control starts a recording with the admin op `start_recording {recording_id, tap}`: every
//! published track of the room is tapped (router `start_tap`, with a [`TapMeta`] naming the
//! recording, room, session, peer and track), and so is every track published while the
//! recording runs. `stop_recording` ends the taps. The tap number is control's: the router
//! tags each copied packet with it and the recorder keys its tracks by it.
//!
//! `request_keyframe {recording_id, track_id}` (the recorder waits for one: its start, a
//! broken stream, a part due to rotate) starts the track's tap again with the same number and
//! metadata: the router takes that as the same tap, and asks the publisher for a keyframe.

use std::collections::BTreeSet;

use schema::ids::ProducerId;
use schema::recording::TapMeta;
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use super::{AdminError, Room};

/// The recording running in a room. It is part of the room's snapshot, so a restarted
/// signaling process still taps the tracks published after its restart.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct Active {
    pub recording_id: String,
    pub tap: u32,
    pub tapped: BTreeSet<ProducerId>,
}

impl Room {
    /// `start_recording`: taps every published track; idempotent for the same recording.
    pub(super) async fn start_recording(&mut self, recording_id: String, tap: u32) -> Result<Value, AdminError> {
        if let Some(a) = &self.recording
            && a.recording_id != recording_id
        {
            return Err(AdminError::new(409, format!("recording {} is already running in this room", a.recording_id)));
        }
        if self.recording.is_none() {
            self.recording = Some(Active { recording_id: recording_id.clone(), tap, tapped: BTreeSet::new() });
        }
        let tracks = self.tap_published().await;
        info!(room = %self.id, recording = %recording_id, tracks = tracks.len(), "recording started");
        Ok(json!({ "recording_id": recording_id, "tracks": tracks }))
    }

    /// `stop_recording`: ends the taps (of this recording, or of whichever runs).
    pub(super) async fn stop_recording(&mut self, recording_id: Option<String>) -> Result<Value, AdminError> {
        let Some(active) = self.recording.take_if(|a| recording_id.as_ref().is_none_or(|id| *id == a.recording_id))
        else {
            return Err(AdminError::new(404, "no such recording running in this room"));
        };
        for producer in &active.tapped {
            if let Err(e) = self.env.router.stop_tap(*producer).await {
                debug!(error = %e, "stop_tap (the producer may be gone)");
            }
        }
        info!(room = %self.id, recording = %active.recording_id, "recording stopped");
        Ok(json!({ "recording_id": active.recording_id, "tracks": active.tapped.len() }))
    }

    /// `request_keyframe`: the router asks the publisher of one tapped track for a keyframe.
    pub(super) async fn request_keyframe(&mut self, recording_id: &str, track_id: &str) -> Result<Value, AdminError> {
        let Some(active) = self.recording.clone().filter(|a| a.recording_id == recording_id) else {
            return Err(AdminError::new(404, "no such recording running in this room"));
        };
        let Some((producer, meta)) =
            self.tap_metas(&active).into_iter().find(|(p, m)| m.track_id == track_id && active.tapped.contains(p))
        else {
            return Err(AdminError::new(404, "no such track tapped in this recording"));
        };
        let text = serde_json::to_string(&meta).unwrap_or_default();
        self.env.router.start_tap(producer, active.tap, text).await.map_err(super::Refusal::from)?;
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
                };
                wanted.push((t.producer, meta));
            }
        }
        wanted
    }

    /// Taps the published tracks not tapped yet (at the start, and after each publish).
    /// Returns every tapped track's metadata.
    pub(super) async fn tap_published(&mut self) -> Vec<Value> {
        let Some(active) = self.recording.clone() else { return Vec::new() };
        let mut tracks = Vec::new();
        for (producer, meta) in self.tap_metas(&active) {
            if !active.tapped.contains(&producer) {
                let text = serde_json::to_string(&meta).unwrap_or_default();
                match self.env.router.start_tap(producer, active.tap, text).await {
                    Ok(_) => {
                        if let Some(a) = self.recording.as_mut() {
                            a.tapped.insert(producer);
                        }
                    }
                    Err(e) => {
                        warn!(room = %self.id, track = %meta.track_id, error = %e, "cannot tap track for recording");
                        continue;
                    }
                }
            }
            tracks.push(serde_json::to_value(&meta).unwrap_or_default());
        }
        tracks
    }
}

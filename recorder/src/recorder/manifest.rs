//! `manifest.json`, one per recording: what it is, and every part of every track, kept on disk
//! (write then rename) so a restarted recorder and control read the same list.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use schema::recording::{PartInfo, TapMeta};
use serde::{Deserialize, Serialize};

use super::track::Track;

/// `manifest.json` of one recording.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub recording_id: String,
    pub room_id: String,
    pub session_id: String,
    pub tracks: Vec<ManifestTrack>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManifestTrack {
    #[serde(flatten)]
    pub meta: TapMeta,
    pub codec: String,
    /// The simulcast layer recorded (0 lowest).
    pub layer: u8,
    pub parts: Vec<PartInfo>,
}

/// The manifests of the recordings this process has touched, under the recordings directory.
/// A manifest is read from disk the first time its recording is seen (a restarted recorder
/// continues it) and written back whole on every change.
#[derive(Debug)]
pub(super) struct Manifests {
    dir: PathBuf,
    by_recording: HashMap<String, Manifest>,
}

impl Manifests {
    pub(super) fn new(dir: PathBuf) -> Manifests {
        Manifests { dir, by_recording: HashMap::new() }
    }

    /// The recordings directory (parts' paths in a manifest are relative to it).
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory of a recording (its manifest, and its peers' directories of parts).
    pub(super) fn recording_dir(&self, meta: &TapMeta) -> PathBuf {
        self.dir.join(safe_component(&meta.recording_id))
    }

    /// The manifest of `meta`'s recording, read from disk or begun.
    pub(super) fn load(&mut self, meta: &TapMeta) -> &mut Manifest {
        let rec_dir = self.recording_dir(meta);
        self.by_recording.entry(meta.recording_id.clone()).or_insert_with(|| {
            let from_disk =
                std::fs::read(rec_dir.join("manifest.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
            from_disk.unwrap_or_else(|| Manifest {
                recording_id: meta.recording_id.clone(),
                room_id: meta.room_id.clone(),
                session_id: meta.session_id.clone(),
                tracks: Vec::new(),
            })
        })
    }

    /// Lists (or updates) one part of `t` and writes the manifest.
    pub(super) fn note_part(&mut self, t: &Track, info: PartInfo) -> Result<(), String> {
        let rec_dir = self.recording_dir(&t.meta);
        let manifest = self.load(&t.meta);
        upsert_part(manifest, t, t.layer.unwrap_or(0), info);
        write_manifest(&rec_dir, manifest)
    }
}

fn upsert_part(manifest: &mut Manifest, t: &Track, layer: u8, info: PartInfo) {
    let codec = t.codec_name().to_string();
    let entry = match manifest.tracks.iter_mut().position(|m| m.meta.track_id == t.meta.track_id) {
        Some(i) => &mut manifest.tracks[i],
        None => {
            manifest.tracks.push(ManifestTrack { meta: t.meta.clone(), codec, layer, parts: Vec::new() });
            let last = manifest.tracks.len() - 1;
            &mut manifest.tracks[last]
        }
    };
    entry.layer = layer;
    match entry.parts.iter_mut().find(|p| p.part == info.part) {
        Some(p) => *p = info,
        None => entry.parts.push(info),
    }
}

pub(super) fn write_manifest(rec_dir: &Path, manifest: &Manifest) -> Result<(), String> {
    let tmp = rec_dir.join("manifest.json.tmp");
    let body = serde_json::to_vec_pretty(manifest).map_err(|e| e.to_string())?;
    std::fs::write(&tmp, body).map_err(|e| describe("write", &tmp, &e))?;
    let path = rec_dir.join("manifest.json");
    std::fs::rename(&tmp, &path).map_err(|e| describe("rename", &path, &e))
}

/// Why a file operation failed, as the API shows it.
pub(super) fn describe(op: &str, path: &Path, e: &std::io::Error) -> String {
    let what = match e.raw_os_error() {
        Some(libc::ENOSPC) => "disk full".to_string(),
        Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) => "directory not writable".to_string(),
        _ => e.to_string(),
    };
    format!("cannot {op} {}: {what}", path.display())
}

/// An id as one path component: no separators, no `..`, not empty, not too long.
pub(super) fn safe_component(s: &str) -> String {
    let cleaned: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).take(64).collect();
    if cleaned.is_empty() { "_".into() } else { cleaned }
}

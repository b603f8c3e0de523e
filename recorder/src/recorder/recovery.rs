//! Parts that an earlier recorder process left open (it was killed), closed as they are when
//! their track is tapped again.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use schema::recording::{PartInfo, TapMeta};
use tracing::warn;

use super::manifest::{Manifests, write_manifest};

/// The track's parts listed incomplete: they hold whole pages, clusters and fragments up to
/// the kill, so each is marked complete with the size on disk and the duration last noted, and
/// returned to be reported. (An MP4 part cut in the middle of a fragment is first cut back to
/// its last whole one; a WebM part gets its duration over the placeholder.)
pub(super) fn recover_parts(manifests: &mut Manifests, meta: &TapMeta) -> Vec<PartInfo> {
    let dir = manifests.dir().to_owned();
    let rec_dir = manifests.recording_dir(meta);
    let manifest = manifests.load(meta);
    let mut recovered = Vec::new();
    for t in manifest.tracks.iter_mut().filter(|t| t.meta.track_id == meta.track_id) {
        for p in t.parts.iter_mut().filter(|p| !p.complete) {
            let path = dir.join(&p.path);
            if p.path.ends_with(".mp4")
                && let Err(e) = trim_to_whole_fragments(&path)
            {
                warn!(path = %path.display(), error = %e, "recovered part not cut to its last fragment");
            }
            if let Ok(m) = std::fs::metadata(&path) {
                p.size = m.len();
            }
            if p.path.ends_with(".webm")
                && let Err(e) = patch_duration(&path, p.duration_ms as f64)
            {
                warn!(path = %path.display(), error = %e, "recovered part keeps no duration");
            }
            p.complete = true;
            recovered.push(p.clone());
        }
    }
    if !recovered.is_empty()
        && let Err(e) = write_manifest(&rec_dir, manifest)
    {
        warn!(error = %e, "manifest not updated after recovering parts");
    }
    recovered
}

/// Cuts an MP4 part that a killed writer left back to its last whole fragment, so that every
/// sample it lists is there.
fn trim_to_whole_fragments(path: &Path) -> std::io::Result<()> {
    use std::io::Read;
    let mut f = OpenOptions::new().read(true).write(true).open(path)?;
    let len = f.metadata()?.len();
    let keep = crate::mp4::whole_boxes(len, |at| {
        let mut head = [0u8; 8];
        f.seek(SeekFrom::Start(at)).and_then(|_| f.read_exact(&mut head)).ok()?;
        Some(head)
    });
    if keep < len {
        f.set_len(keep)?;
    }
    Ok(())
}

/// Gives a WebM part that a killed writer left its duration, over the placeholder.
fn patch_duration(path: &Path, duration_ms: f64) -> std::io::Result<()> {
    use std::io::Read;
    let mut f = OpenOptions::new().read(true).write(true).open(path)?;
    let mut head = vec![0u8; 512];
    let n = f.read(&mut head)?;
    let Some(at) = crate::webm::find_placeholder(&head[..n]) else { return Ok(()) };
    f.seek(SeekFrom::Start(at as u64))?;
    f.write_all(&crate::webm::duration_patch(duration_ms))
}

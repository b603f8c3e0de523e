//! WebM (Matroska) writing for one video track, sans-IO: calls return bytes to append, and
//! [`WebmWriter::finish`] also returns one patch (offset, bytes) for the duration.
//!
//! Built so that a file cut short still plays: the Segment has unknown size (it is never
//! patched), and each Cluster is written whole, with its size, when the next keyframe starts
//! one or it reaches [`MAX_CLUSTER_MS`]; a killed recorder loses the cluster in memory (at
//! most a second), and the file ends on a complete cluster. The Info's Duration is a Void element until `finish`
//! overwrites it in place, so a finished file has a duration and a cut one still parses.

/// A cluster is flushed once it spans this long (block times are i16 ms relative to it).
pub const MAX_CLUSTER_MS: u64 = 1_000;

/// Offset of the Duration placeholder from the start of the file, and its size.
const VOID_LEN: usize = 11;

fn id_bytes(id: u32) -> Vec<u8> {
    let b = id.to_be_bytes();
    let skip = b.iter().position(|&x| x != 0).unwrap_or(3);
    b[skip..].to_vec()
}

/// An EBML size in 8 bytes (always the long form: simple, and patchable in place).
fn size8(n: u64) -> [u8; 8] {
    let mut b = n.to_be_bytes();
    b[0] = 0x01;
    b
}

fn element(id: u32, body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&id_bytes(id));
    out.extend_from_slice(&size8(body.len() as u64));
    out.extend_from_slice(body);
}

fn uint(id: u32, v: u64, out: &mut Vec<u8>) {
    let b = v.to_be_bytes();
    let skip = b.iter().position(|&x| x != 0).unwrap_or(7);
    element(id, &b[skip..], out);
}

fn string(id: u32, s: &str, out: &mut Vec<u8>) {
    element(id, s.as_bytes(), out);
}

/// What the track holds.
#[derive(Debug, Clone)]
pub struct VideoTrack {
    /// Matroska codec id, e.g. `V_VP8`.
    pub codec_id: &'static str,
    pub width: u16,
    pub height: u16,
}

/// Writes one video track into a WebM file.
#[derive(Debug)]
pub struct WebmWriter {
    /// Where the Duration placeholder is.
    void_at: u64,
    /// Bytes returned so far (the file offset of the next byte).
    written: u64,
    cluster: Vec<u8>,
    cluster_start_ms: Option<u64>,
    last_ms: u64,
    first_ms: Option<u64>,
    frames: u64,
    /// Time of the last frame in a cluster already handed out (what a cut file holds).
    flushed_ms: u64,
}

impl WebmWriter {
    /// The EBML header, the Segment (unknown size), Info and Tracks.
    pub fn start(track: &VideoTrack) -> (WebmWriter, Vec<u8>) {
        let mut out = Vec::new();
        let mut ebml = Vec::new();
        uint(0x4286, 1, &mut ebml); // EBMLVersion
        uint(0x42f7, 1, &mut ebml); // EBMLReadVersion
        uint(0x42f2, 4, &mut ebml); // EBMLMaxIDLength
        uint(0x42f3, 8, &mut ebml); // EBMLMaxSizeLength
        string(0x4282, "webm", &mut ebml); // DocType
        uint(0x4287, 4, &mut ebml); // DocTypeVersion
        uint(0x4285, 2, &mut ebml); // DocTypeReadVersion
        element(0x1a45_dfa3, &ebml, &mut out);
        // Segment of unknown size: all ones in the 8-byte form.
        out.extend_from_slice(&id_bytes(0x1853_8067));
        out.extend_from_slice(&[0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        let mut info = Vec::new();
        uint(0x2a_d7b1, 1_000_000, &mut info); // TimestampScale: 1 ms
        string(0x4d80, "recorder", &mut info); // MuxingApp
        string(0x5741, "recorder", &mut info); // WritingApp
        let void_in_info = info.len();
        // Void placeholder of VOID_LEN bytes: id, 1-byte size, 9 bytes of zeros.
        info.push(0xec);
        info.push(0x80 | (VOID_LEN as u8 - 2));
        info.extend_from_slice(&[0; VOID_LEN - 2]);
        let info_header = id_bytes(0x1549_a966).len() + 8;
        let void_at = (out.len() + info_header + void_in_info) as u64;
        element(0x1549_a966, &info, &mut out);
        let mut video = Vec::new();
        uint(0xb0, u64::from(track.width), &mut video); // PixelWidth
        uint(0xba, u64::from(track.height), &mut video); // PixelHeight
        let mut entry = Vec::new();
        uint(0xd7, 1, &mut entry); // TrackNumber
        uint(0x73c5, 1, &mut entry); // TrackUID
        uint(0x83, 1, &mut entry); // TrackType: video
        string(0x86, track.codec_id, &mut entry);
        element(0xe0, &video, &mut entry);
        let mut tracks = Vec::new();
        element(0xae, &entry, &mut tracks);
        element(0x1654_ae6b, &tracks, &mut out);
        let w = WebmWriter {
            void_at,
            written: out.len() as u64,
            cluster: Vec::new(),
            cluster_start_ms: None,
            last_ms: 0,
            first_ms: None,
            frames: 0,
            flushed_ms: 0,
        };
        (w, out)
    }

    /// One whole frame at `ms` (milliseconds on any monotonic base; the first frame is 0).
    /// Returns a finished cluster when this frame started a new one.
    pub fn frame(&mut self, ms: u64, keyframe: bool, data: &[u8]) -> Vec<u8> {
        let first = *self.first_ms.get_or_insert(ms);
        let t = ms.saturating_sub(first).max(self.last_ms);
        let mut out = Vec::new();
        if let Some(start) = self.cluster_start_ms
            && (keyframe || t - start >= MAX_CLUSTER_MS)
        {
            self.flush_cluster(&mut out);
        }
        self.last_ms = t;
        let start = match self.cluster_start_ms {
            Some(s) => s,
            None => {
                self.cluster_start_ms = Some(t);
                uint(0xe7, t, &mut self.cluster); // Timestamp of the cluster
                t
            }
        };
        let rel = (t - start) as i16;
        let mut block = Vec::with_capacity(data.len() + 4);
        block.push(0x81); // track number 1
        block.extend_from_slice(&rel.to_be_bytes());
        block.push(if keyframe { 0x80 } else { 0x00 });
        block.extend_from_slice(data);
        element(0xa3, &block, &mut self.cluster); // SimpleBlock
        self.frames += 1;
        self.written += out.len() as u64;
        out
    }

    fn flush_cluster(&mut self, out: &mut Vec<u8>) {
        if self.cluster_start_ms.take().is_some() {
            self.flushed_ms = self.last_ms;
            element(0x1f43_b675, &self.cluster, out);
            self.cluster.clear();
        }
    }

    /// Bytes handed out so far plus the cluster held in memory.
    pub fn size(&self) -> u64 {
        self.written + self.cluster.len() as u64
    }

    /// Milliseconds from the first frame to the last.
    pub fn duration_ms(&self) -> u64 {
        self.last_ms
    }

    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Milliseconds of video already handed out in whole clusters.
    pub fn flushed_ms(&self) -> u64 {
        self.flushed_ms
    }

    /// Milliseconds the file holds once finished, in whole ms: the last frame counts one mean
    /// interval, as the Duration [`WebmWriter::finish`] writes.
    pub fn total_ms(&self) -> u64 {
        let d = self.last_ms;
        if self.frames > 1 { d + d / (self.frames - 1) } else { d }
    }

    /// The last cluster, and the Duration to write over the placeholder at the offset given.
    /// The duration counts the last frame too (one frame interval, estimated as the mean).
    pub fn finish(&mut self) -> (Vec<u8>, (u64, Vec<u8>)) {
        let mut out = Vec::new();
        self.flush_cluster(&mut out);
        self.written += out.len() as u64;
        let interval = if self.frames > 1 { self.last_ms as f64 / (self.frames - 1) as f64 } else { 0.0 };
        let duration = self.last_ms as f64 + interval;
        (out, (self.void_at, duration_patch(duration)))
    }
}

/// The Duration element (ms, 8-byte float) that replaces the Void placeholder.
pub fn duration_patch(duration_ms: f64) -> Vec<u8> {
    let mut patch = Vec::with_capacity(VOID_LEN);
    patch.extend_from_slice(&[0x44, 0x89, 0x88]);
    patch.extend_from_slice(&duration_ms.to_be_bytes());
    patch
}

/// Where the Void placeholder is in a file's first bytes (a file a killed writer left), so a
/// recovered file can be given its duration.
pub fn find_placeholder(head: &[u8]) -> Option<usize> {
    let mut void = [0u8; VOID_LEN];
    void[0] = 0xec;
    void[1] = 0x80 | (VOID_LEN as u8 - 2);
    head.windows(VOID_LEN).position(|w| w == void)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder_is_a_void_of_the_patch_size() {
        let (mut w, head) = WebmWriter::start(&VideoTrack { codec_id: "V_VP8", width: 640, height: 480 });
        let at = w.void_at as usize;
        assert_eq!(head[at], 0xec);
        assert_eq!(head[at + 1], 0x80 | 9);
        let c1 = w.frame(1000, true, b"key");
        assert!(c1.is_empty(), "the first cluster stays in memory");
        let c2 = w.frame(1033, false, b"delta");
        assert!(c2.is_empty());
        let c3 = w.frame(1066, true, b"key2");
        assert_eq!(&c3[..4], &[0x1f, 0x43, 0xb6, 0x75], "a keyframe closes the cluster");
        assert_eq!(find_placeholder(&head), Some(at));
        let (_, (off, patch)) = w.finish();
        assert_eq!(off as usize, at);
        assert_eq!(patch.len(), VOID_LEN);
        assert_eq!(w.duration_ms(), 66);
        assert_eq!(w.frames(), 3);
    }

    #[test]
    fn long_gop_is_cut_into_clusters() {
        let (mut w, _) = WebmWriter::start(&VideoTrack { codec_id: "V_VP8", width: 2, height: 2 });
        let mut clusters = 0;
        for i in 0..400u64 {
            if !w.frame(i * 33, i == 0, b"x").is_empty() {
                clusters += 1;
            }
        }
        assert_eq!(clusters, 12, "13.2 s in clusters of 31 frames (1.02 s)");
        assert_eq!(w.flushed_ms(), 371 * 33, "the last frame of the last flushed cluster");
    }
}

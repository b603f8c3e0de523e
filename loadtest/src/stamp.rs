//! The send stamp a publisher writes into every payload: which track it is (a source id) and
//! when it was sent (µs on the run's clock). It sits just before the 7 bytes `synth-media`
//! keeps at the end (layer byte, frame and packet numbers), so both survive forwarding and a
//! subscriber reads one-way latency from the packet itself.

/// Bytes the stamp takes: source id (4) and send time (8).
pub const LEN: usize = 12;
/// Bytes after the stamp that belong to `synth-media` (layer, frame, packet index).
const TAIL: usize = 7;

/// What a stamp says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub source: u32,
    pub sent_us: u64,
}

/// Writes the stamp into a payload; false (and nothing written) if it is too short.
pub fn write(payload: &mut [u8], stamp: Stamp) -> bool {
    let n = payload.len();
    let Some(start) = n.checked_sub(TAIL + LEN) else { return false };
    // Keep the codec header bytes (VP8 descriptor and frame header, Opus TOC) intact.
    if start < 16 {
        return false;
    }
    payload[start..start + 4].copy_from_slice(&stamp.source.to_be_bytes());
    payload[start + 4..start + LEN].copy_from_slice(&stamp.sent_us.to_be_bytes());
    true
}

/// Reads the stamp of a payload; `None` if it is too short to hold one.
pub fn read(payload: &[u8]) -> Option<Stamp> {
    let start = payload.len().checked_sub(TAIL + LEN).filter(|s| *s >= 16)?;
    let source = u32::from_be_bytes(payload[start..start + 4].try_into().ok()?);
    let sent_us = u64::from_be_bytes(payload[start + 4..start + LEN].try_into().ok()?);
    Some(Stamp { source, sent_us })
}

/// A source id: publisher index and track (0 audio, 1.. video layers).
pub fn source_id(publisher: u32, track: u8) -> u32 {
    (publisher << 8) | u32::from(track)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_keeps_the_media_tail() {
        let mut s = synth_media::OpusStream::new(1, 0);
        let mut p = s.next_packet().payload;
        let tag = synth_media::tag(&p);
        assert!(write(&mut p, Stamp { source: source_id(3, 1), sent_us: 123_456_789 }));
        assert_eq!(read(&p), Some(Stamp { source: 0x301, sent_us: 123_456_789 }));
        assert_eq!(synth_media::tag(&p), tag);
        assert_eq!(p[0], 0x60, "Opus TOC byte untouched");
    }

    #[test]
    fn short_payloads_are_refused() {
        let mut p = vec![0u8; 20];
        assert!(!write(&mut p, Stamp { source: 1, sent_us: 1 }));
        assert_eq!(read(&p), None);
        assert_eq!(read(&[]), None);
    }
}

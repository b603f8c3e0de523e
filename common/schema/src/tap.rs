//! The media tap: the records a router shard writes into its shared-memory ring to the
//! recorder, one record per RTP packet of a tapped producer, plus a few control records.
//!
//! These records are on the packet path, so they are a small fixed binary layout, not JSON:
//! `b'T'`, the schema version (u16 LE), a record type byte, then the fields (little endian).
//!
//! | type | record | fields after the 4-byte header |
//! | --- | --- | --- |
//! | 1 | [`TapRecord::Start`] | tap u32, producer u32, codec u8, clock_rate u32, meta (the rest: UTF-8 JSON chosen by whoever started the tap) |
//! | 2 | [`TapRecord::Rtp`] | tap u32, producer u32, layer u8, the decrypted RTP packet (the rest) |
//! | 3 | [`TapRecord::SenderReport`] | tap u32, producer u32, layer u8, NTP time u64, RTP time u32 |
//! | 4 | [`TapRecord::Stop`] | tap u32, producer u32 |
//!
//! A shard repeats `Start` for every tapped producer about once a second, so a recorder that
//! was restarted (or missed a `Start` in a full ring) learns every track again without asking.
//!
//! ```
//! use schema::codec::Codec;
//! use schema::tap::TapRecord;
//! let rec = TapRecord::Rtp { tap: 7, producer: 0x0100_0002, layer: 0, packet: &[0x80, 96, 0, 1] };
//! let mut buf = Vec::new();
//! rec.encode(&mut buf);
//! assert_eq!(TapRecord::decode(&buf), Ok(rec));
//! assert!(TapRecord::decode(&buf[..5]).is_err());
//! ```

use crate::SCHEMA_VERSION;
use crate::codec::Codec;

const MAGIC: u8 = b'T';
const HEADER: usize = 4;

/// Which process reads a tap: each has its own tap segment (one ring per router shard), so a
/// producer tapped for both a track recording and a composite job is copied into both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TapReader {
    /// The recorder: one file per track.
    #[default]
    Recorder,
    /// The compositor: the room's tracks in one picture and one sound.
    Compositor,
}

impl TapReader {
    pub const ALL: [TapReader; 2] = [TapReader::Recorder, TapReader::Compositor];

    /// A dense index, for arrays of per-reader state.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One record of the tap ring. Borrowed from the ring slot: no copy on decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapRecord<'a> {
    /// A producer is tapped: what it carries and who it belongs to (`meta`).
    Start { tap: u32, producer: u32, codec: Codec, clock_rate: u32, meta: &'a str },
    /// One RTP packet (decrypted; RTX already turned back into the original).
    Rtp { tap: u32, producer: u32, layer: u8, packet: &'a [u8] },
    /// The publisher's RTCP sender report for one layer: maps RTP time to wall-clock (NTP).
    SenderReport { tap: u32, producer: u32, layer: u8, ntp: u64, rtp_time: u32 },
    /// The tap on this producer ended (stopped, or the producer closed).
    Stop { tap: u32, producer: u32 },
}

/// Why a tap record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TapError {
    #[error("tap record too short ({0} bytes)")]
    Short(usize),
    #[error("not a tap record (magic {0:#04x})")]
    BadMagic(u8),
    #[error("tap record of schema v{theirs}, this build reads v{ours}: upgrade the older of router and recorder")]
    VersionMismatch { ours: u16, theirs: u16 },
    #[error("unknown tap record type {0}")]
    UnknownType(u8),
    #[error("unknown codec number {0}")]
    UnknownCodec(u8),
    #[error("tap metadata is not UTF-8")]
    BadMeta,
}

fn codec_number(c: Codec) -> u8 {
    match c {
        Codec::Opus => 1,
        Codec::Vp8 => 2,
        Codec::Vp9 => 3,
        Codec::H264 => 4,
    }
}

fn codec_from(n: u8) -> Result<Codec, TapError> {
    Ok(match n {
        1 => Codec::Opus,
        2 => Codec::Vp8,
        3 => Codec::Vp9,
        4 => Codec::H264,
        other => return Err(TapError::UnknownCodec(other)),
    })
}

impl<'a> TapRecord<'a> {
    /// The encoded length, for `send_with` into a ring slot.
    pub fn encoded_len(&self) -> usize {
        HEADER
            + match self {
                TapRecord::Start { meta, .. } => 13 + meta.len(),
                TapRecord::Rtp { packet, .. } => 9 + packet.len(),
                TapRecord::SenderReport { .. } => 21,
                TapRecord::Stop { .. } => 8,
            }
    }

    /// Appends the record to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + self.encoded_len(), 0);
        self.encode_into(&mut out[start..]);
    }

    /// Writes the record into `buf`, which must be exactly [`Self::encoded_len`] long (a ring
    /// slot from `send_with`).
    pub fn encode_into(&self, buf: &mut [u8]) {
        let (kind, tap, producer) = match *self {
            TapRecord::Start { tap, producer, .. } => (1, tap, producer),
            TapRecord::Rtp { tap, producer, .. } => (2, tap, producer),
            TapRecord::SenderReport { tap, producer, .. } => (3, tap, producer),
            TapRecord::Stop { tap, producer } => (4, tap, producer),
        };
        buf[0] = MAGIC;
        buf[1..3].copy_from_slice(&SCHEMA_VERSION.to_le_bytes());
        buf[3] = kind;
        buf[4..8].copy_from_slice(&tap.to_le_bytes());
        buf[8..12].copy_from_slice(&producer.to_le_bytes());
        match *self {
            TapRecord::Start { codec, clock_rate, meta, .. } => {
                buf[12] = codec_number(codec);
                buf[13..17].copy_from_slice(&clock_rate.to_le_bytes());
                buf[17..].copy_from_slice(meta.as_bytes());
            }
            TapRecord::Rtp { layer, packet, .. } => {
                buf[12] = layer;
                buf[13..].copy_from_slice(packet);
            }
            TapRecord::SenderReport { layer, ntp, rtp_time, .. } => {
                buf[12] = layer;
                buf[13..21].copy_from_slice(&ntp.to_le_bytes());
                buf[21..25].copy_from_slice(&rtp_time.to_le_bytes());
            }
            TapRecord::Stop { .. } => {}
        }
    }

    /// Reads one record; every length is checked, nothing panics on bad input.
    pub fn decode(buf: &'a [u8]) -> Result<TapRecord<'a>, TapError> {
        if buf.len() < 12 {
            return Err(TapError::Short(buf.len()));
        }
        if buf[0] != MAGIC {
            return Err(TapError::BadMagic(buf[0]));
        }
        let version = u16::from_le_bytes([buf[1], buf[2]]);
        if version != SCHEMA_VERSION {
            return Err(TapError::VersionMismatch { ours: SCHEMA_VERSION, theirs: version });
        }
        let u32_at = |i: usize| u32::from_le_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        let tap = u32_at(4);
        let producer = u32_at(8);
        let need = |n: usize| if buf.len() < n { Err(TapError::Short(buf.len())) } else { Ok(()) };
        match buf[3] {
            1 => {
                need(17)?;
                let meta = std::str::from_utf8(&buf[17..]).map_err(|_| TapError::BadMeta)?;
                Ok(TapRecord::Start { tap, producer, codec: codec_from(buf[12])?, clock_rate: u32_at(13), meta })
            }
            2 => {
                need(13)?;
                Ok(TapRecord::Rtp { tap, producer, layer: buf[12], packet: &buf[13..] })
            }
            3 => {
                need(25)?;
                let mut ntp = [0u8; 8];
                ntp.copy_from_slice(&buf[13..21]);
                Ok(TapRecord::SenderReport {
                    tap,
                    producer,
                    layer: buf[12],
                    ntp: u64::from_le_bytes(ntp),
                    rtp_time: u32_at(21),
                })
            }
            4 => Ok(TapRecord::Stop { tap, producer }),
            other => Err(TapError::UnknownType(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_round_trips() {
        let recs = [
            TapRecord::Start { tap: 1, producer: 2, codec: Codec::Vp8, clock_rate: 90_000, meta: r#"{"a":1}"# },
            TapRecord::Rtp { tap: 1, producer: 2, layer: 2, packet: &[1, 2, 3] },
            TapRecord::SenderReport { tap: 1, producer: 2, layer: 0, ntp: u64::MAX - 5, rtp_time: 77 },
            TapRecord::Stop { tap: u32::MAX, producer: 9 },
        ];
        for r in recs {
            let mut buf = Vec::new();
            r.encode(&mut buf);
            assert_eq!(buf.len(), r.encoded_len());
            assert_eq!(TapRecord::decode(&buf), Ok(r));
        }
    }

    #[test]
    fn bad_records_are_errors() {
        let mut buf = Vec::new();
        TapRecord::SenderReport { tap: 1, producer: 2, layer: 0, ntp: 1, rtp_time: 2 }.encode(&mut buf);
        for n in 0..buf.len() {
            assert!(TapRecord::decode(&buf[..n]).is_err(), "{n}");
        }
        let mut bad = buf.clone();
        bad[0] = b'X';
        assert_eq!(TapRecord::decode(&bad), Err(TapError::BadMagic(b'X')));
        let mut bad = buf.clone();
        bad[1] = bad[1].wrapping_add(1);
        assert!(matches!(TapRecord::decode(&bad), Err(TapError::VersionMismatch { .. })));
        let mut bad = buf.clone();
        bad[3] = 9;
        assert_eq!(TapRecord::decode(&bad), Err(TapError::UnknownType(9)));
        let mut start = Vec::new();
        TapRecord::Start { tap: 1, producer: 2, codec: Codec::Opus, clock_rate: 48_000, meta: "" }.encode(&mut start);
        start[12] = 0;
        assert_eq!(TapRecord::decode(&start), Err(TapError::UnknownCodec(0)));
        start[12] = 1;
        start.extend_from_slice(&[0xff, 0xfe]);
        assert_eq!(TapRecord::decode(&start), Err(TapError::BadMeta));
    }
}

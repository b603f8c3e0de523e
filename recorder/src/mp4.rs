//! Fragmented MP4 (ISO/IEC 14496-12, with the `avc1` sample entry of 14496-15) for one H.264
//! track, sans-IO: calls return bytes to append. Written by hand: the dozen boxes are small,
//! and a crate for them would bring more than it saves.
//!
//! Built so that a file cut short still plays: the header (`ftyp`, then a `moov` with empty
//! sample tables and an `mvex`) says every sample comes in fragments, and each fragment
//! (`moof` + `mdat`) is handed out whole, when the next keyframe starts one or it reaches
//! [`MAX_FRAGMENT_MS`]. A killed recorder loses the fragment in memory (at most a second); the
//! file ends on a complete fragment and needs no index or patch ([`complete_prefix`] finds
//! where that is in a file cut in the middle of one). The `moov` gives no duration: readers
//! add up the fragments.
//!
//! Times are in the RTP clock (90 kHz for video): the track's timescale is the clock rate, so
//! decode times and sample durations are RTP timestamp differences as they came. WebRTC's
//! H.264 has no B-frames, so decode order is presentation order and no composition offsets
//! are written.

use crate::depack::ParamSets;

/// A fragment is handed out once it spans this long, even without a keyframe.
pub const MAX_FRAGMENT_MS: u64 = 1_000;

/// Sample flags (14496-12 8.8.3.1): a sync sample depends on no other; any other depends on
/// others and is not a sync sample.
const SYNC_SAMPLE: u32 = 0x0200_0000;
const NON_SYNC_SAMPLE: u32 = 0x0101_0000;

/// The unity matrix of `mvhd` and `tkhd`.
const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// Appends a box: 32-bit size, type, body (made by `body`).
fn mp4_box(kind: &[u8; 4], out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(kind);
    body(out);
    let size = (out.len() - at) as u32;
    out[at..at + 4].copy_from_slice(&size.to_be_bytes());
}

/// A full box: a box whose body starts with a version byte and 24 bits of flags.
fn full_box(kind: &[u8; 4], version: u8, flags: u32, out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    mp4_box(kind, out, |o| {
        o.extend_from_slice(&((u32::from(version) << 24) | (flags & 0x00ff_ffff)).to_be_bytes());
        body(o);
    });
}

fn u16s(out: &mut Vec<u8>, v: &[u16]) {
    v.iter().for_each(|x| out.extend_from_slice(&x.to_be_bytes()));
}

fn u32s(out: &mut Vec<u8>, v: &[u32]) {
    v.iter().for_each(|x| out.extend_from_slice(&x.to_be_bytes()));
}

/// What the track holds.
#[derive(Debug, Clone)]
pub struct AvcTrack {
    pub params: ParamSets,
    pub width: u16,
    pub height: u16,
    /// Ticks per second of the times given to [`Mp4Writer::frame`] (the RTP clock rate).
    pub timescale: u32,
}

/// Why a track cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mp4Error {
    #[error("the SPS is too short for an avcC box")]
    ShortSps,
    #[error("a parameter set is longer than 65535 bytes")]
    LongParamSet,
}

/// One sample of the fragment being built.
#[derive(Debug, Clone, Copy)]
struct Sample {
    time: u64,
    size: u32,
    keyframe: bool,
}

/// Writes one H.264 track into a fragmented MP4 file.
#[derive(Debug)]
pub struct Mp4Writer {
    timescale: u64,
    samples: Vec<Sample>,
    data: Vec<u8>,
    /// `moof` sequence number of the next fragment (from 1).
    sequence: u32,
    first_time: Option<u64>,
    last_time: u64,
    frames: u64,
    /// Bytes handed out so far.
    written: u64,
    /// End time of the last fragment handed out (what a cut file holds).
    flushed: u64,
}

impl Mp4Writer {
    /// `ftyp` and `moov`.
    pub fn start(track: &AvcTrack) -> Result<(Mp4Writer, Vec<u8>), Mp4Error> {
        let ParamSets { sps, pps } = &track.params;
        let (Some(profile), Some(compat), Some(level)) = (sps.get(1), sps.get(2), sps.get(3)) else {
            return Err(Mp4Error::ShortSps);
        };
        let (Ok(sps_len), Ok(pps_len)) = (u16::try_from(sps.len()), u16::try_from(pps.len())) else {
            return Err(Mp4Error::LongParamSet);
        };
        let timescale = track.timescale.max(1);
        let mut out = Vec::with_capacity(800);
        mp4_box(b"ftyp", &mut out, |o| {
            o.extend_from_slice(b"isom");
            u32s(o, &[0x200]);
            o.extend_from_slice(b"isomiso6avc1mp41");
        });
        mp4_box(b"moov", &mut out, |o| {
            full_box(b"mvhd", 0, 0, o, |o| {
                // Times, timescale (ms), duration 0 (fragments carry it), rate, volume.
                u32s(o, &[0, 0, 1000, 0, 0x0001_0000]);
                u16s(o, &[0x0100, 0]);
                u32s(o, &[0, 0]);
                u32s(o, &MATRIX);
                u32s(o, &[0; 6]);
                u32s(o, &[2]); // next_track_ID
            });
            mp4_box(b"trak", o, |o| {
                // Flags: enabled, in the movie.
                full_box(b"tkhd", 0, 3, o, |o| {
                    u32s(o, &[0, 0, 1, 0, 0, 0, 0]); // times, track 1, reserved, duration, reserved
                    u16s(o, &[0, 0, 0, 0]); // layer, alternate group, volume, reserved
                    u32s(o, &MATRIX);
                    u32s(o, &[u32::from(track.width) << 16, u32::from(track.height) << 16]);
                });
                mp4_box(b"mdia", o, |o| {
                    full_box(b"mdhd", 0, 0, o, |o| {
                        u32s(o, &[0, 0, timescale, 0]);
                        u16s(o, &[0x55c4, 0]); // language "und", packed
                    });
                    full_box(b"hdlr", 0, 0, o, |o| {
                        u32s(o, &[0]);
                        o.extend_from_slice(b"vide");
                        u32s(o, &[0, 0, 0]);
                        o.extend_from_slice(b"VideoHandler\0");
                    });
                    mp4_box(b"minf", o, |o| {
                        full_box(b"vmhd", 0, 1, o, |o| u16s(o, &[0, 0, 0, 0]));
                        mp4_box(b"dinf", o, |o| {
                            full_box(b"dref", 0, 0, o, |o| {
                                u32s(o, &[1]);
                                full_box(b"url ", 0, 1, o, |_| {}); // data in this file
                            })
                        });
                        mp4_box(b"stbl", o, |o| {
                            full_box(b"stsd", 0, 0, o, |o| {
                                u32s(o, &[1]);
                                mp4_box(b"avc1", o, |o| {
                                    u16s(o, &[0, 0, 0, 1]); // reserved, data_reference_index 1
                                    u32s(o, &[0, 0, 0, 0]); // pre_defined, reserved
                                    u16s(o, &[track.width, track.height]);
                                    u32s(o, &[0x0048_0000, 0x0048_0000, 0]); // 72 dpi, reserved
                                    u16s(o, &[1]); // frame_count
                                    o.extend_from_slice(&[0; 32]); // compressorname
                                    u16s(o, &[0x0018, 0xffff]); // depth, pre_defined -1
                                    mp4_box(b"avcC", o, |o| {
                                        // Version 1, profile, constraints, level, 4-byte
                                        // lengths, one SPS, one PPS.
                                        o.extend_from_slice(&[1, *profile, *compat, *level, 0xff, 0xe1]);
                                        u16s(o, &[sps_len]);
                                        o.extend_from_slice(sps);
                                        o.push(1);
                                        u16s(o, &[pps_len]);
                                        o.extend_from_slice(pps);
                                    });
                                });
                            });
                            full_box(b"stts", 0, 0, o, |o| u32s(o, &[0]));
                            full_box(b"stsc", 0, 0, o, |o| u32s(o, &[0]));
                            full_box(b"stsz", 0, 0, o, |o| u32s(o, &[0, 0]));
                            full_box(b"stco", 0, 0, o, |o| u32s(o, &[0]));
                        });
                    });
                });
            });
            mp4_box(b"mvex", o, |o| {
                // trex: track 1, sample description 1, no defaults (every trun says).
                full_box(b"trex", 0, 0, o, |o| u32s(o, &[1, 1, 0, 0, 0]));
            });
        });
        let w = Mp4Writer {
            timescale: u64::from(timescale),
            samples: Vec::new(),
            data: Vec::new(),
            sequence: 1,
            first_time: None,
            last_time: 0,
            frames: 0,
            written: out.len() as u64,
            flushed: 0,
        };
        Ok((w, out))
    }

    fn ms(&self, ticks: u64) -> u64 {
        ticks * 1000 / self.timescale
    }

    /// One access unit (AVCC) at `time` (timescale ticks on any monotonic base; the first
    /// sample is 0). Returns a finished fragment when this sample started a new one.
    pub fn frame(&mut self, time: u64, keyframe: bool, data: &[u8]) -> Vec<u8> {
        let first = *self.first_time.get_or_insert(time);
        let t = time.saturating_sub(first).max(self.last_time);
        let mut out = Vec::new();
        if let Some(start) = self.samples.first().map(|s| s.time)
            && (keyframe || self.ms(t - start) >= MAX_FRAGMENT_MS)
        {
            self.flush_fragment(t, &mut out);
        }
        self.last_time = t;
        self.samples.push(Sample { time: t, size: data.len() as u32, keyframe });
        self.data.extend_from_slice(data);
        self.frames += 1;
        self.written += out.len() as u64;
        out
    }

    /// Writes the held samples as one `moof` + `mdat`; `end` is when the last one ends.
    fn flush_fragment(&mut self, end: u64, out: &mut Vec<u8>) {
        let Some(base) = self.samples.first().map(|s| s.time) else { return };
        let moof_at = out.len();
        let mut data_offset_at = 0;
        mp4_box(b"moof", out, |o| {
            full_box(b"mfhd", 0, 0, o, |o| u32s(o, &[self.sequence]));
            mp4_box(b"traf", o, |o| {
                // default-base-is-moof: data offsets count from the moof's first byte.
                full_box(b"tfhd", 0, 0x02_0000, o, |o| u32s(o, &[1]));
                full_box(b"tfdt", 1, 0, o, |o| o.extend_from_slice(&base.to_be_bytes()));
                // Data offset, and per sample its duration, size and flags.
                full_box(b"trun", 0, 0x000701, o, |o| {
                    u32s(o, &[self.samples.len() as u32]);
                    data_offset_at = o.len();
                    u32s(o, &[0]);
                    for (i, s) in self.samples.iter().enumerate() {
                        let next = self.samples.get(i + 1).map_or(end, |n| n.time);
                        let duration = u32::try_from(next - s.time).unwrap_or(u32::MAX);
                        let flags = if s.keyframe { SYNC_SAMPLE } else { NON_SYNC_SAMPLE };
                        u32s(o, &[duration, s.size, flags]);
                    }
                });
            });
        });
        // The samples start right after the moof and the mdat's 8-byte header.
        let data_offset = (out.len() - moof_at + 8) as u32;
        out[data_offset_at..data_offset_at + 4].copy_from_slice(&data_offset.to_be_bytes());
        out.extend_from_slice(&((self.data.len() + 8) as u32).to_be_bytes());
        out.extend_from_slice(b"mdat");
        out.append(&mut self.data);
        self.samples.clear();
        self.sequence += 1;
        self.flushed = end;
    }

    /// Bytes handed out so far plus the fragment held in memory.
    pub fn size(&self) -> u64 {
        self.written + self.data.len() as u64
    }

    /// Milliseconds from the first sample to the last.
    pub fn duration_ms(&self) -> u64 {
        self.ms(self.last_time)
    }

    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Milliseconds of video already handed out in whole fragments.
    pub fn flushed_ms(&self) -> u64 {
        self.ms(self.flushed)
    }

    /// The last fragment. Its last sample lasts the mean interval of the part (the next
    /// timestamp that would say never comes).
    pub fn finish(&mut self) -> Vec<u8> {
        let interval = if self.frames > 1 { self.last_time / (self.frames - 1) } else { self.timescale / 30 };
        let mut out = Vec::new();
        self.flush_fragment(self.last_time + interval, &mut out);
        self.written += out.len() as u64;
        out
    }

    /// Milliseconds the file holds once finished (the last sample included).
    pub fn total_ms(&self) -> u64 {
        self.ms(self.flushed.max(self.last_time))
    }
}

/// The length of the longest prefix of `file` that is whole top-level boxes, i.e. where a file
/// cut in the middle of a fragment ends on the last complete one. A `moof` whose `mdat` is
/// missing or cut is left out with it.
pub fn complete_prefix(file: &[u8]) -> usize {
    let header_at = |at: u64| file.get(at as usize..at as usize + 8)?.try_into().ok();
    whole_boxes(file.len() as u64, header_at) as usize
}

/// [`complete_prefix`] of a file of `len` bytes, reading only the 8-byte box headers (a file on
/// disk is not read whole): `header_at(offset)` returns the 8 bytes there.
pub fn whole_boxes(len: u64, mut header_at: impl FnMut(u64) -> Option<[u8; 8]>) -> u64 {
    let (mut at, mut complete) = (0u64, 0u64);
    while at + 8 <= len {
        let Some(head) = header_at(at) else { break };
        let size = u64::from(u32::from_be_bytes([head[0], head[1], head[2], head[3]]));
        if size < 8 || at + size > len {
            break;
        }
        at += size;
        // A moof alone is no use: the file is complete only once its mdat is.
        if &head[4..8] != b"moof" {
            complete = at;
        }
    }
    complete
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A libx264 baseline SPS and PPS for 320x240.
    fn params() -> ParamSets {
        ParamSets {
            sps: vec![0x67, 0x42, 0xc0, 0x0d, 0xd9, 0x01, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10],
            pps: vec![0x68, 0xcb, 0x83, 0xcb, 0x20],
        }
    }

    fn boxes(b: &[u8]) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + 8 <= b.len() {
            let size = u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize;
            out.push((String::from_utf8_lossy(&b[at + 4..at + 8]).into_owned(), size));
            at += size.max(8);
        }
        out
    }

    #[test]
    fn header_is_ftyp_then_moov_with_the_parameter_sets() {
        let track = AvcTrack { params: params(), width: 320, height: 240, timescale: 90_000 };
        let (_, head) = Mp4Writer::start(&track).unwrap();
        let top: Vec<_> = boxes(&head).into_iter().map(|b| b.0).collect();
        assert_eq!(top, ["ftyp", "moov"]);
        let avcc = head.windows(4).position(|w| w == b"avcC").unwrap();
        assert_eq!(&head[avcc + 4..avcc + 10], &[1, 0x42, 0xc0, 0x0d, 0xff, 0xe1]);
        assert_eq!(&head[avcc + 12..avcc + 12 + 15], &params().sps[..]);
        assert!(head.windows(4).any(|w| w == b"trex"));
        let short = AvcTrack { params: ParamSets { sps: vec![0x67], pps: vec![0x68] }, ..track };
        assert_eq!(Mp4Writer::start(&short).err(), Some(Mp4Error::ShortSps));
    }

    #[test]
    fn fragments_start_at_keyframes_and_carry_durations_from_timestamps() {
        let track = AvcTrack { params: params(), width: 320, height: 240, timescale: 90_000 };
        let (mut w, _) = Mp4Writer::start(&track).unwrap();
        assert!(w.frame(900_000, true, &[0, 0, 0, 1, 0x65]).is_empty(), "the first fragment is held");
        assert!(w.frame(903_000, false, &[0, 0, 0, 1, 0x41]).is_empty());
        assert!(w.frame(909_000, false, &[0, 0, 0, 2, 0x41, 0]).is_empty(), "a 6000-tick gap");
        let frag = w.frame(912_000, true, &[0, 0, 0, 1, 0x65]);
        let top = boxes(&frag);
        assert_eq!(top.iter().map(|b| b.0.as_str()).collect::<Vec<_>>(), ["moof", "mdat"]);
        assert_eq!(top[1].1, 8 + 5 + 5 + 6);
        // trun: count 3, data offset = moof size + 8, then (duration, size, flags) each.
        let trun = frag.windows(4).position(|w| w == b"trun").unwrap() + 8;
        let word = |i: usize| u32::from_be_bytes(frag[trun + 4 * i..trun + 4 * i + 4].try_into().unwrap());
        assert_eq!(word(0), 3);
        assert_eq!(word(1) as usize, top[0].1 + 8);
        assert_eq!((word(2), word(3), word(4)), (3000, 5, SYNC_SAMPLE));
        assert_eq!((word(5), word(6), word(7)), (6000, 5, NON_SYNC_SAMPLE));
        assert_eq!((word(8), word(9)), (3000, 6));
        assert_eq!(w.flushed_ms(), 133);
        let tail = w.finish();
        // tfdt of the last fragment: its decode time from the first sample.
        let tfdt = tail.windows(4).position(|w| w == b"tfdt").unwrap() + 8;
        assert_eq!(u64::from_be_bytes(tail[tfdt..tfdt + 8].try_into().unwrap()), 12_000);
        assert_eq!(w.frames(), 4);
        assert_eq!(w.total_ms(), 133 + 44, "the last sample lasts the mean interval");
        assert_eq!(&tail[tail.len() - 5..], &[0, 0, 0, 1, 0x65]);
    }

    #[test]
    fn long_gop_is_cut_into_fragments_and_a_cut_file_ends_on_the_last_whole_one() {
        let track = AvcTrack { params: params(), width: 2, height: 2, timescale: 90_000 };
        let (mut w, mut file) = Mp4Writer::start(&track).unwrap();
        let head_len = file.len();
        let mut fragments = 0;
        for i in 0..100u64 {
            let f = w.frame(i * 3000, i == 0, &[0, 0, 0, 1, 0x41]);
            if !f.is_empty() {
                fragments += 1;
            }
            file.extend_from_slice(&f);
        }
        assert_eq!(fragments, 3, "3.3 s in fragments of 30 frames (1 s)");
        let whole = file.len();
        file.extend_from_slice(&w.finish());
        assert_eq!(complete_prefix(&file), file.len());
        assert_eq!(complete_prefix(&file[..file.len() - 3]), whole, "a cut mdat goes with its moof");
        assert_eq!(complete_prefix(&file[..whole + 20]), whole, "a cut moof");
        assert_eq!(complete_prefix(&file[..head_len - 1]), boxes(&file)[0].1, "only the ftyp");
    }
}

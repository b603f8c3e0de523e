//! Ogg Opus (RFC 7845) writing, sans-IO: every call returns whole Ogg pages as bytes.
//!
//! Each audio packet goes out as its own page, so a file cut short anywhere (a killed
//! recorder, a full disk) ends in at most one partial page, which demuxers skip: everything
//! before it plays. A page per 20 ms packet costs 27 + 1 bytes of overhead (~1.4 kB/s).

/// Ogg's CRC-32: polynomial 0x04c11db7, not reflected, initial value 0 (RFC 3533).
fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut r = (i as u32) << 24;
            for _ in 0..8 {
                r = if r & 0x8000_0000 != 0 { (r << 1) ^ 0x04c1_1db7 } else { r << 1 };
            }
            *e = r;
        }
        t
    });
    data.iter().fold(0u32, |crc, &b| (crc << 8) ^ table[((crc >> 24) as u8 ^ b) as usize])
}

/// Writes one Opus stream as Ogg pages.
#[derive(Debug)]
pub struct OggOpusWriter {
    serial: u32,
    sequence: u32,
    /// Granule (48 kHz samples) of the last packet's end.
    granule: u64,
}

/// Samples (at 48 kHz) in one Opus packet, from its TOC byte (RFC 6716 3.1); `None` if
/// malformed.
pub fn opus_packet_samples(packet: &[u8]) -> Option<u64> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    let frame: u64 = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        12..=15 => [480, 960][usize::from(config % 2)],
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames: u64 = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => u64::from(*packet.get(1)? & 0x3f),
    };
    let total = frame * frames;
    (frames > 0 && total <= 5760).then_some(total)
}

impl OggOpusWriter {
    pub fn new(serial: u32) -> OggOpusWriter {
        OggOpusWriter { serial, sequence: 0, granule: 0 }
    }

    /// The two header pages (OpusHead, OpusTags).
    pub fn headers(&mut self, channels: u8, input_rate: u32) -> Vec<u8> {
        let mut head = Vec::with_capacity(19);
        head.extend_from_slice(b"OpusHead");
        head.push(1); // version
        head.push(channels);
        head.extend_from_slice(&0u16.to_le_bytes()); // pre-skip: the packets are as sent, not re-encoded
        head.extend_from_slice(&input_rate.to_le_bytes());
        head.extend_from_slice(&0i16.to_le_bytes()); // output gain
        head.push(0); // channel mapping family 0 (mono/stereo)
        let mut tags = Vec::new();
        tags.extend_from_slice(b"OpusTags");
        let vendor = b"recorder";
        tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
        tags.extend_from_slice(vendor);
        tags.extend_from_slice(&0u32.to_le_bytes());
        let mut out = Vec::new();
        self.page(&head, 0, 0x02, &mut out);
        self.page(&tags, 0, 0x00, &mut out);
        out
    }

    /// One audio packet that ends at `end_granule` (48 kHz samples since the stream start).
    /// Granules never go back: a late or duplicate time is moved to just after the last.
    pub fn packet(&mut self, packet: &[u8], end_granule: u64, out: &mut Vec<u8>) {
        let g = end_granule.max(self.granule + 1);
        self.granule = g;
        self.page(packet, g, 0x00, out);
    }

    /// The end of the stream: an empty page with the end-of-stream flag.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let g = self.granule;
        self.page(&[], g, 0x04, out);
    }

    /// The granule of the last packet (the stream's duration in 48 kHz samples).
    pub fn granule(&self) -> u64 {
        self.granule
    }

    /// Milliseconds the stream holds (its granule at 48 kHz).
    pub fn total_ms(&self) -> u64 {
        self.granule / 48
    }

    fn page(&mut self, data: &[u8], granule: u64, flags: u8, out: &mut Vec<u8>) {
        // Lacing: 255s then the remainder; a packet of exactly n*255 bytes ends with a 0.
        // Packets here are < 255 * 255 bytes (one page); longer ones are cut (never on the wire).
        let data = &data[..data.len().min(255 * 254)];
        // The end-of-stream page holds no packet at all (an empty Opus packet is invalid).
        let mut lacing = vec![255u8; data.len() / 255];
        if !data.is_empty() {
            lacing.push((data.len() % 255) as u8);
        }
        let start = out.len();
        out.extend_from_slice(b"OggS");
        out.push(0);
        out.push(flags);
        out.extend_from_slice(&granule.to_le_bytes());
        out.extend_from_slice(&self.serial.to_le_bytes());
        out.extend_from_slice(&self.sequence.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes()); // CRC, filled below
        out.push(lacing.len() as u8);
        out.extend_from_slice(&lacing);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out[start + 22..start + 26].copy_from_slice(&crc.to_le_bytes());
        self.sequence += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_the_ogg_reference_value() {
        // The CRC of "123456789" with Ogg's parameters (CRC-32/MPEG-2 without the final xor
        // and with init 0, i.e. CRC-32/BZIP2's core): 0x89a1897f.
        assert_eq!(crc32(b"123456789"), 0x89a1_897f);
    }

    #[test]
    fn toc_gives_packet_durations() {
        assert_eq!(opus_packet_samples(&[0xf8, 0]), Some(960)); // CELT FB 20 ms, one frame
        assert_eq!(opus_packet_samples(&[(1 << 3) | 1]), Some(1920)); // SILK 20 ms, two frames
        assert_eq!(opus_packet_samples(&[(16 << 3) | 3, 4]), Some(480)); // CELT 2.5 ms x4
        assert_eq!(opus_packet_samples(&[3, 0]), None); // code 3 with zero frames
        assert_eq!(opus_packet_samples(&[]), None);
    }

    #[test]
    fn pages_have_lacing_and_sequence() {
        let mut w = OggOpusWriter::new(7);
        let h = w.headers(2, 48_000);
        assert_eq!(&h[..4], b"OggS");
        assert_eq!(h[5], 0x02, "first page begins the stream");
        let mut out = Vec::new();
        w.packet(&[0xfc; 300], 960, &mut out);
        assert_eq!(out[26], 2, "two lacing values");
        assert_eq!(&out[27..29], &[255, 45]);
        assert_eq!(u32::from_le_bytes([out[18], out[19], out[20], out[21]]), 2, "third page");
        w.packet(&[0xfc; 10], 500, &mut out);
        assert_eq!(w.granule(), 961, "granules never go back");
    }
}

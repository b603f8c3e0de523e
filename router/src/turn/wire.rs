//! TURN's bytes on a TCP stream (RFC 8656): STUN messages and ChannelData messages back to
//! back, told apart by their first two bits, each ChannelData padded to four bytes.

use std::net::SocketAddr;

use router_engine::stun::{self, Class, MessageWriter, StunError};

pub const METHOD_ALLOCATE: u16 = 0x003;
pub const METHOD_REFRESH: u16 = 0x004;
pub const METHOD_SEND: u16 = 0x006;
pub const METHOD_DATA: u16 = 0x007;
pub const METHOD_CREATE_PERMISSION: u16 = 0x008;
pub const METHOD_CHANNEL_BIND: u16 = 0x009;

/// TURN's attributes (RFC 8656 section 18).
pub mod attr {
    pub const CHANNEL_NUMBER: u16 = 0x000C;
    pub const LIFETIME: u16 = 0x000D;
    pub const XOR_PEER_ADDRESS: u16 = 0x0012;
    pub const DATA: u16 = 0x0013;
    pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
    pub const REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
    pub const EVEN_PORT: u16 = 0x0018;
    pub const REQUESTED_TRANSPORT: u16 = 0x0019;
    pub const RESERVATION_TOKEN: u16 = 0x0022;
}

/// Channel numbers a client may bind.
pub const CHANNELS: std::ops::RangeInclusive<u16> = 0x4000..=0x4FFF;

/// The largest message accepted from a client: a STUN message's or a ChannelData's 16-bit
/// length plus its header.
pub const MAX_FRAME: usize = 20 + 0xFFFF;

/// One message cut from the stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    Stun(&'a [u8]),
    ChannelData { channel: u16, data: &'a [u8] },
}

/// The stream holds something that is neither.
#[derive(Debug, PartialEq, Eq)]
pub struct NotTurn;

/// The first whole message of `buf` and the bytes it takes (padding included); `None` until
/// it has arrived whole.
pub fn next_frame(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, NotTurn> {
    let Some(head) = buf.get(..4) else { return Ok(None) };
    let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
    match head[0] >> 6 {
        0 => {
            // STUN's magic cookie: a TLS record or anything else starting with two zero bits
            // is told apart by its fifth to eighth bytes.
            if buf.get(4..8).is_some_and(|c| c != stun::MAGIC_COOKIE.to_be_bytes()) {
                return Err(NotTurn);
            }
            let total = 20 + len;
            Ok(buf.get(..total).map(|m| (Frame::Stun(m), total)))
        }
        1 => {
            let channel = u16::from_be_bytes([head[0], head[1]]);
            if !CHANNELS.contains(&channel) {
                return Err(NotTurn);
            }
            let total = 4 + ((len + 3) & !3);
            if buf.len() < total {
                return Ok(None);
            }
            Ok(Some((Frame::ChannelData { channel, data: &buf[4..4 + len] }, total)))
        }
        _ => Err(NotTurn),
    }
}

/// Appends a ChannelData message, padded to four bytes when it goes on a stream (`pad`); false
/// for a datagram too long for one.
pub fn channel_data(out: &mut Vec<u8>, channel: u16, data: &[u8], pad: bool) -> bool {
    let Ok(len) = u16::try_from(data.len()) else { return false };
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
    if pad {
        out.resize(out.len() + (4 - data.len() % 4) % 4, 0);
    }
    true
}

/// A ChannelData message that is a whole datagram (over UDP, unpadded or padded).
pub fn datagram_frame(datagram: &[u8]) -> Result<Frame<'_>, NotTurn> {
    match next_frame(datagram)? {
        Some((Frame::ChannelData { channel, data }, _)) => Ok(Frame::ChannelData { channel, data }),
        Some((Frame::Stun(m), used)) if used == datagram.len() => Ok(Frame::Stun(m)),
        // An unpadded ChannelData's data runs to the end of the datagram.
        None if datagram.len() >= 4 && datagram[0] >> 6 == 1 => {
            let channel = u16::from_be_bytes([datagram[0], datagram[1]]);
            let len = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
            match datagram.get(4..4 + len) {
                Some(data) if CHANNELS.contains(&channel) => Ok(Frame::ChannelData { channel, data }),
                _ => Err(NotTurn),
            }
        }
        _ => Err(NotTurn),
    }
}

/// Appends a Data indication carrying `data` from `peer`; `id` makes its transaction id.
pub fn data_indication(out: &mut Vec<u8>, peer: SocketAddr, data: &[u8], id: u64) -> bool {
    let mut tx = [0u8; 12];
    tx[4..].copy_from_slice(&id.to_be_bytes());
    append_message(out, 48 + data.len(), |buf| {
        let mut w = MessageWriter::new(buf, Class::Indication, METHOD_DATA, tx)?;
        w.xor_address(attr::XOR_PEER_ADDRESS, peer)?.attribute(attr::DATA, data)?;
        Ok(w.finish())
    })
}

/// Appends the message `write` makes in at most `room` bytes; false (nothing appended) when it
/// could not.
pub fn append_message(
    out: &mut Vec<u8>,
    room: usize,
    write: impl FnOnce(&mut [u8]) -> Result<usize, StunError>,
) -> bool {
    let start = out.len();
    out.resize(start + room, 0);
    match write(&mut out[start..]) {
        Ok(n) => {
            out.truncate(start + n);
            true
        }
        Err(_) => {
            out.truncate(start);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_cut_whole_and_padding_is_skipped() {
        let mut stream = Vec::new();
        assert!(channel_data(&mut stream, 0x4001, b"hello", true));
        assert_eq!(stream.len(), 12, "5 bytes padded to 8, after a 4-byte header");
        assert!(data_indication(&mut stream, "192.0.2.1:4000".parse().unwrap(), b"xyz", 7));
        let (frame, used) = next_frame(&stream).unwrap().unwrap();
        assert_eq!(frame, Frame::ChannelData { channel: 0x4001, data: b"hello" });
        let rest = &stream[used..];
        let (Frame::Stun(msg), used) = next_frame(rest).unwrap().unwrap() else { panic!("not STUN") };
        assert_eq!(used, rest.len());
        let parsed = router_engine::stun::parse(msg).unwrap();
        assert_eq!(parsed.method(), METHOD_DATA);
        assert_eq!(parsed.attribute(attr::DATA), Some(&b"xyz"[..]));
        assert_eq!(parsed.xor_address(attr::XOR_PEER_ADDRESS), Some("192.0.2.1:4000".parse().unwrap()));
        // Cut anywhere, a frame waits for the rest.
        for cut in 0..stream.len() {
            if let Some((_, used)) = next_frame(&stream[..cut]).unwrap() {
                assert!(used <= cut);
            }
        }
    }

    #[test]
    fn bytes_that_are_neither_stun_nor_channel_data_are_refused() {
        assert_eq!(next_frame(b"\x16\x03\x01\x00\x05hello"), Err(NotTurn), "a TLS record on the plain port");
        assert_eq!(next_frame(b"\x00\x01\x00\x00\x00\x00\x00\x00"), Err(NotTurn), "no magic cookie");
        assert_eq!(next_frame(&[0x50, 0, 0, 4, 1, 2, 3, 4]), Err(NotTurn), "channel 0x5000 is out of range");
    }
}

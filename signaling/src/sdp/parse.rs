//! The SDP model (RFC 8866) restricted to what WebRTC uses, its parser and its writer.
//!
//! Input is untrusted (it comes from a client over the WebSocket): [`Sdp::parse`] checks a
//! size limit first, never panics, and reports the first bad line with its number. Attributes
//! we understand become typed [`Attribute`] variants; any other `a=` line is kept verbatim as
//! [`Attribute::Other`] so a parse/write round trip loses nothing we might need.
//!
//! ```
//! use signaling::sdp::{Attribute, Direction, Sdp};
//! let text = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
//!             m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\n\
//!             a=rtpmap:111 opus/48000/2\r\n";
//! let sdp = Sdp::parse(text).unwrap();
//! assert_eq!(sdp.media[0].mid(), Some("0"));
//! assert_eq!(sdp.media[0].direction(), Direction::SendOnly);
//! assert!(matches!(&sdp.media[0].attributes[2], Attribute::Rtpmap(r) if r.encoding == "opus"));
//! assert_eq!(Sdp::parse(&sdp.to_string()).unwrap(), sdp);
//! ```

use std::fmt;

use thiserror::Error;

use super::attribute::parse_attribute;
pub use super::attribute::{
    Attribute, Candidate, Direction, Extmap, Fmtp, Rid, RtcpFb, Rtpmap, Setup, Simulcast, SimulcastRid, SsrcAttr,
    SsrcGroup, fmtp_param,
};

/// Largest SDP accepted, in bytes. A Chrome offer with audio, video and simulcast is ~6 KiB.
pub const MAX_SDP_LEN: usize = 64 * 1024;
/// Most m-lines accepted in one SDP.
pub const MAX_MEDIA: usize = 64;
/// Most attributes accepted in one section (session or media).
pub const MAX_ATTRIBUTES: usize = 512;

/// Why a text is not an SDP we accept.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ParseError {
    #[error("SDP of {0} bytes is larger than the {MAX_SDP_LEN}-byte limit")]
    TooLarge(usize),
    #[error("more than {MAX_MEDIA} m-lines")]
    TooManyMedia,
    #[error("more than {MAX_ATTRIBUTES} attributes in one section")]
    TooManyAttributes,
    #[error("the SDP is empty")]
    Empty,
    #[error("line {line}: {reason}")]
    BadLine { line: usize, reason: &'static str },
    #[error("missing {0} line")]
    Missing(&'static str),
}

/// `o=<username> <sess-id> <sess-version> IN <IP4|IP6> <address>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub username: String,
    /// Up to 64 bits in practice, but some stacks send longer digit strings: kept as text.
    pub session_id: String,
    pub session_version: u64,
    pub address_type: String,
    pub address: String,
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// `audio`, `video`, `application`, or anything else (kept, then rejected by negotiation).
    pub kind: String,
    /// 0 means rejected (or bundle-only).
    pub port: u16,
    pub proto: String,
    /// Payload types for RTP, `webrtc-datachannel` for SCTP.
    pub formats: Vec<String>,
    /// The `c=` line's value (`IN IP4 0.0.0.0`).
    pub connection: Option<String>,
    /// `b=` lines, verbatim.
    pub bandwidth: Vec<String>,
    pub attributes: Vec<Attribute>,
}

/// A whole session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdp {
    pub origin: Origin,
    pub name: String,
    /// The `t=` line's value (WebRTC always says `0 0`).
    pub timing: String,
    pub connection: Option<String>,
    pub attributes: Vec<Attribute>,
    pub media: Vec<Media>,
}

impl Media {
    pub fn new(kind: &str, port: u16, proto: &str, formats: Vec<String>) -> Media {
        Media {
            kind: kind.into(),
            port,
            proto: proto.into(),
            formats,
            connection: None,
            bandwidth: Vec::new(),
            attributes: Vec::new(),
        }
    }

    pub fn mid(&self) -> Option<&str> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Mid(m) => Some(m.as_str()),
            _ => None,
        })
    }

    /// The section's direction; `sendrecv` when none is given.
    pub fn direction(&self) -> Direction {
        self.attributes
            .iter()
            .find_map(|a| match a {
                Attribute::Direction(d) => Some(*d),
                _ => None,
            })
            .unwrap_or_default()
    }

    pub fn has(&self, wanted: &Attribute) -> bool {
        self.attributes.iter().any(|a| a == wanted)
    }

    pub fn rtpmaps(&self) -> impl Iterator<Item = &Rtpmap> {
        self.attributes.iter().filter_map(|a| match a {
            Attribute::Rtpmap(r) => Some(r),
            _ => None,
        })
    }

    pub fn fmtp(&self, pt: u8) -> Option<&Fmtp> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Fmtp(f) if f.pt == pt => Some(f),
            _ => None,
        })
    }

    /// The feedback lines that apply to `pt` (its own and the `*` ones).
    pub fn rtcp_fbs(&self, pt: u8) -> impl Iterator<Item = &RtcpFb> {
        self.attributes.iter().filter_map(move |a| match a {
            Attribute::RtcpFb(f) if f.pt.is_none() || f.pt == Some(pt) => Some(f),
            _ => None,
        })
    }

    pub fn extmaps(&self) -> impl Iterator<Item = &Extmap> {
        self.attributes.iter().filter_map(|a| match a {
            Attribute::Extmap(e) => Some(e),
            _ => None,
        })
    }

    pub fn ssrcs(&self) -> impl Iterator<Item = &SsrcAttr> {
        self.attributes.iter().filter_map(|a| match a {
            Attribute::Ssrc(s) => Some(s),
            _ => None,
        })
    }

    pub fn ssrc_groups(&self) -> impl Iterator<Item = &SsrcGroup> {
        self.attributes.iter().filter_map(|a| match a {
            Attribute::SsrcGroup(g) => Some(g),
            _ => None,
        })
    }

    pub fn rids(&self) -> impl Iterator<Item = &Rid> {
        self.attributes.iter().filter_map(|a| match a {
            Attribute::Rid(r) => Some(r),
            _ => None,
        })
    }

    pub fn simulcast(&self) -> Option<&Simulcast> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Simulcast(s) => Some(s),
            _ => None,
        })
    }

    /// `a=msid` as (stream id, track id).
    pub fn msid(&self) -> Option<(&str, Option<&str>)> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Msid { stream, track } => Some((stream.as_str(), track.as_deref())),
            _ => None,
        })
    }
}

/// Looks an attribute up in a media section first, then at session level (ICE and DTLS
/// attributes may be at either).
pub fn find_attr<'a, T>(sdp: &'a Sdp, media: Option<&'a Media>, f: impl Fn(&'a Attribute) -> Option<T>) -> Option<T> {
    media.and_then(|m| m.attributes.iter().find_map(&f)).or_else(|| sdp.attributes.iter().find_map(&f))
}

impl Sdp {
    /// Parses an SDP. Accepts `\r\n` or bare `\n` line ends; rejects anything over the size
    /// limits, any line that is not `<letter>=<value>`, and malformed values of the attributes
    /// we type.
    pub fn parse(text: &str) -> Result<Sdp, ParseError> {
        if text.len() > MAX_SDP_LEN {
            return Err(ParseError::TooLarge(text.len()));
        }
        let mut origin = None;
        let mut name = None;
        let mut timing = None;
        let mut version_seen = false;
        let mut session_conn = None;
        let mut session_attrs = Vec::new();
        let mut media: Vec<Media> = Vec::new();
        let mut any = false;
        for (i, raw) in text.split('\n').enumerate() {
            let line_no = i + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.is_empty() {
                continue;
            }
            any = true;
            let bad = |reason| ParseError::BadLine { line: line_no, reason };
            let bytes = line.as_bytes();
            if bytes.len() < 2 || bytes[1] != b'=' || !bytes[0].is_ascii_lowercase() {
                return Err(bad("not a <type>=<value> line"));
            }
            // Index 2 is a char boundary: bytes 0 and 1 are ASCII.
            let value = &line[2..];
            match (bytes[0], media.last_mut()) {
                (b'v', None) => {
                    if value != "0" {
                        return Err(bad("version is not 0"));
                    }
                    version_seen = true;
                }
                (b'o', None) => origin = Some(parse_origin(value).ok_or(bad("malformed o= line"))?),
                (b's', None) => name = Some(value.to_string()),
                (b't', None) => timing = Some(value.to_string()),
                (b'c', None) => session_conn = Some(value.to_string()),
                (b'a', None) => {
                    if session_attrs.len() >= MAX_ATTRIBUTES {
                        return Err(ParseError::TooManyAttributes);
                    }
                    session_attrs.push(parse_attribute(value).map_err(bad)?);
                }
                (b'm', _) => {
                    if !version_seen {
                        return Err(bad("m= before v="));
                    }
                    if media.len() >= MAX_MEDIA {
                        return Err(ParseError::TooManyMedia);
                    }
                    media.push(parse_media_line(value).ok_or(bad("malformed m= line"))?);
                }
                (b'c', Some(m)) => m.connection = Some(value.to_string()),
                (b'b', Some(m)) => {
                    if m.bandwidth.len() >= 16 {
                        return Err(bad("too many b= lines"));
                    }
                    m.bandwidth.push(value.to_string())
                }
                (b'a', Some(m)) => {
                    if m.attributes.len() >= MAX_ATTRIBUTES {
                        return Err(ParseError::TooManyAttributes);
                    }
                    m.attributes.push(parse_attribute(value).map_err(bad)?);
                }
                // Lines WebRTC never needs (i, u, e, p, b at session level, z, k, r): ignored.
                (b'i' | b'u' | b'e' | b'p' | b'b' | b'z' | b'k' | b'r', _) => {}
                (b'v' | b'o' | b's' | b't', Some(_)) => return Err(bad("session line inside a media section")),
                _ => return Err(bad("unknown line type")),
            }
        }
        if !any {
            return Err(ParseError::Empty);
        }
        if !version_seen {
            return Err(ParseError::Missing("v="));
        }
        Ok(Sdp {
            origin: origin.ok_or(ParseError::Missing("o="))?,
            name: name.ok_or(ParseError::Missing("s="))?,
            timing: timing.ok_or(ParseError::Missing("t="))?,
            connection: session_conn,
            attributes: session_attrs,
            media,
        })
    }

    /// The mids of the first `a=group:BUNDLE`, if any.
    pub fn bundle(&self) -> Option<&[String]> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Group { semantics, mids } if semantics == "BUNDLE" => Some(mids.as_slice()),
            _ => None,
        })
    }
}

fn parse_origin(v: &str) -> Option<Origin> {
    let mut it = v.split(' ');
    let username = it.next()?.to_string();
    let session_id = it.next()?.to_string();
    if session_id.is_empty() || !session_id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let session_version = it.next()?.parse().ok()?;
    if it.next()? != "IN" {
        return None;
    }
    let address_type = it.next()?.to_string();
    let address = it.next()?.to_string();
    if it.next().is_some() {
        return None;
    }
    Some(Origin { username, session_id, session_version, address_type, address })
}

fn parse_media_line(v: &str) -> Option<Media> {
    let mut it = v.split(' ');
    let kind = it.next().filter(|k| !k.is_empty())?;
    let port_spec = it.next()?;
    // `<port>/<number of ports>` is legal; WebRTC never uses it, we keep only the port.
    let port = port_spec.split('/').next()?.parse().ok()?;
    let proto = it.next().filter(|p| !p.is_empty())?;
    let formats: Vec<String> = it.filter(|f| !f.is_empty()).map(str::to_string).collect();
    if formats.len() > 128 {
        return None;
    }
    Some(Media::new(kind, port, proto, formats))
}

impl fmt::Display for Sdp {
    /// Writes the SDP with `\r\n` line ends, session part first, in RFC 8866 order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.origin;
        write!(f, "v=0\r\n")?;
        write!(f, "o={} {} {} IN {} {}\r\n", o.username, o.session_id, o.session_version, o.address_type, o.address)?;
        write!(f, "s={}\r\n", self.name)?;
        if let Some(c) = &self.connection {
            write!(f, "c={c}\r\n")?;
        }
        write!(f, "t={}\r\n", self.timing)?;
        for a in &self.attributes {
            write!(f, "a={a}\r\n")?;
        }
        for m in &self.media {
            write!(f, "m={} {} {}", m.kind, m.port, m.proto)?;
            for fmt in &m.formats {
                write!(f, " {fmt}")?;
            }
            f.write_str("\r\n")?;
            if let Some(c) = &m.connection {
                write!(f, "c={c}\r\n")?;
            }
            for b in &m.bandwidth {
                write!(f, "b={b}\r\n")?;
            }
            for a in &m.attributes {
                write!(f, "a={a}\r\n")?;
            }
        }
        Ok(())
    }
}

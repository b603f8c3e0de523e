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

/// `a=sendrecv` and friends. An absent direction means `sendrecv` (RFC 8866 6.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    fn from_name(s: &str) -> Option<Direction> {
        Some(match s {
            "sendrecv" => Direction::SendRecv,
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => return None,
        })
    }

    /// Whether the side that wrote this direction sends media.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the side that wrote this direction receives media.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

/// `a=setup` (RFC 4145, 8842): who starts the DTLS handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    ActPass,
    Active,
    Passive,
    HoldConn,
}

impl Setup {
    pub fn as_str(self) -> &'static str {
        match self {
            Setup::ActPass => "actpass",
            Setup::Active => "active",
            Setup::Passive => "passive",
            Setup::HoldConn => "holdconn",
        }
    }
}

/// `a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rtpmap {
    pub pt: u8,
    pub encoding: String,
    pub clock_rate: u32,
    pub channels: Option<u8>,
}

/// `a=fmtp:<pt> <params>`; the parameters stay text, [`Fmtp::get`] reads one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fmtp {
    pub pt: u8,
    pub params: String,
}

impl Fmtp {
    /// The value of `key=value` in the `;`-separated parameters (keys compare case-insensitively).
    pub fn get(&self, key: &str) -> Option<&str> {
        fmtp_param(&self.params, key)
    }
}

/// Reads `key` from `a=fmtp`-style `k=v;k=v` parameters.
pub fn fmtp_param<'a>(params: &'a str, key: &str) -> Option<&'a str> {
    params.split(';').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        k.trim().eq_ignore_ascii_case(key).then(|| v.trim())
    })
}

/// `a=rtcp-fb:<pt|*> <type> [<subtype>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtcpFb {
    /// `None` is the wildcard `*`.
    pub pt: Option<u8>,
    /// `nack`, `nack pli`, `ccm fir`, `transport-cc`, `goog-remb`...
    pub value: String,
}

/// `a=extmap:<id>[/<direction>] <uri> [<attributes>]` (RFC 8285).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extmap {
    pub id: u8,
    pub direction: Option<Direction>,
    pub uri: String,
    pub params: Option<String>,
}

/// `a=ssrc:<ssrc> <attribute>[:<value>]` (RFC 5576).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsrcAttr {
    pub ssrc: u32,
    pub name: String,
    pub value: Option<String>,
}

/// `a=ssrc-group:<semantics> <ssrc>...` (`FID` pairs a stream with its RTX, `SIM` lists layers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsrcGroup {
    pub semantics: String,
    pub ssrcs: Vec<u32>,
}

/// `a=rid:<id> <send|recv> [<restrictions>]` (RFC 8851).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rid {
    pub id: String,
    /// True for `send`, false for `recv`.
    pub send: bool,
    pub params: Option<String>,
}

/// One simulcast stream alternative: a rid, `~` when it starts paused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulcastRid {
    pub rid: String,
    pub paused: bool,
}

/// `a=simulcast:[send <list>] [recv <list>]` (RFC 8853). Each stream is a list of alternatives
/// (`,`); streams are separated by `;`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Simulcast {
    pub send: Vec<Vec<SimulcastRid>>,
    pub recv: Vec<Vec<SimulcastRid>>,
}

/// `a=candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type> ...`
/// (RFC 8839). Extension attributes after the type (`raddr`, `generation`, ...) stay text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub foundation: String,
    pub component: u16,
    pub transport: String,
    pub priority: u32,
    pub address: String,
    pub port: u16,
    pub typ: String,
    pub rest: Option<String>,
}

/// One `a=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribute {
    /// `a=group:<semantics> <mid>...` (BUNDLE, LS).
    Group {
        semantics: String,
        mids: Vec<String>,
    },
    /// `a=msid-semantic: WMS [<id>...]`, kept as text.
    MsidSemantic(String),
    Mid(String),
    Direction(Direction),
    IceUfrag(String),
    IcePwd(String),
    IceOptions(String),
    IceLite,
    /// `a=fingerprint:<hash> <hex>`.
    Fingerprint {
        algorithm: String,
        value: String,
    },
    Setup(Setup),
    RtcpMux,
    RtcpRsize,
    Rtpmap(Rtpmap),
    Fmtp(Fmtp),
    RtcpFb(RtcpFb),
    Extmap(Extmap),
    Ssrc(SsrcAttr),
    SsrcGroup(SsrcGroup),
    /// `a=msid:<stream id> [<track id>]` (RFC 8830).
    Msid {
        stream: String,
        track: Option<String>,
    },
    Rid(Rid),
    Simulcast(Simulcast),
    Candidate(Candidate),
    EndOfCandidates,
    SctpPort(u16),
    MaxMessageSize(u64),
    /// Any other attribute, verbatim: `a=<name>[:<value>]`.
    Other {
        name: String,
        value: Option<String>,
    },
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

fn parse_u8_pt(s: &str) -> Result<u8, &'static str> {
    match s.parse::<u8>() {
        Ok(pt) if pt <= 127 => Ok(pt),
        _ => Err("bad payload type"),
    }
}

fn nonempty(s: &str, what: &'static str) -> Result<String, &'static str> {
    if s.is_empty() || s.contains(' ') { Err(what) } else { Ok(s.to_string()) }
}

fn parse_attribute(v: &str) -> Result<Attribute, &'static str> {
    let (name, value) = match v.split_once(':') {
        Some((n, val)) => (n, Some(val)),
        None => (v, None),
    };
    if name.is_empty() {
        return Err("empty attribute name");
    }
    let need = |what| value.ok_or(what);
    Ok(match name {
        "group" => {
            let val = need("group without value")?;
            let mut it = val.split(' ').filter(|s| !s.is_empty());
            let semantics = it.next().ok_or("group without semantics")?.to_string();
            let mids: Vec<String> = it.map(str::to_string).collect();
            if mids.len() > MAX_MEDIA {
                return Err("group lists too many mids");
            }
            Attribute::Group { semantics, mids }
        }
        "msid-semantic" => Attribute::MsidSemantic(need("msid-semantic without value")?.trim().to_string()),
        "mid" => Attribute::Mid(nonempty(need("mid without value")?, "bad mid")?),
        "sendrecv" | "sendonly" | "recvonly" | "inactive" if value.is_none() => {
            // Unwrap-free: the match arm already restricted the name.
            Attribute::Direction(Direction::from_name(name).ok_or("bad direction")?)
        }
        "ice-ufrag" => Attribute::IceUfrag(nonempty(need("ice-ufrag without value")?, "bad ice-ufrag")?),
        "ice-pwd" => Attribute::IcePwd(nonempty(need("ice-pwd without value")?, "bad ice-pwd")?),
        "ice-options" => Attribute::IceOptions(need("ice-options without value")?.to_string()),
        "ice-lite" => Attribute::IceLite,
        "fingerprint" => {
            let (alg, hex) = need("fingerprint without value")?.split_once(' ').ok_or("fingerprint without hash")?;
            let ok_hex = !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
            if alg.is_empty() || !ok_hex {
                return Err("malformed fingerprint");
            }
            Attribute::Fingerprint { algorithm: alg.to_ascii_lowercase(), value: hex.to_string() }
        }
        "setup" => Attribute::Setup(match need("setup without value")? {
            "actpass" => Setup::ActPass,
            "active" => Setup::Active,
            "passive" => Setup::Passive,
            "holdconn" => Setup::HoldConn,
            _ => return Err("bad setup role"),
        }),
        "rtcp-mux" => Attribute::RtcpMux,
        "rtcp-rsize" => Attribute::RtcpRsize,
        "rtpmap" => {
            let (pt, rest) = need("rtpmap without value")?.split_once(' ').ok_or("malformed rtpmap")?;
            let pt = parse_u8_pt(pt)?;
            let mut parts = rest.trim().split('/');
            let encoding = parts.next().filter(|e| !e.is_empty()).ok_or("rtpmap without encoding")?.to_string();
            let clock_rate = parts.next().and_then(|c| c.parse().ok()).ok_or("bad rtpmap clock rate")?;
            let channels = match parts.next() {
                Some(c) => Some(c.parse().map_err(|_| "bad rtpmap channels")?),
                None => None,
            };
            if parts.next().is_some() {
                return Err("malformed rtpmap");
            }
            Attribute::Rtpmap(Rtpmap { pt, encoding, clock_rate, channels })
        }
        "fmtp" => {
            let (pt, params) = need("fmtp without value")?.split_once(' ').ok_or("malformed fmtp")?;
            Attribute::Fmtp(Fmtp { pt: parse_u8_pt(pt)?, params: params.trim().to_string() })
        }
        "rtcp-fb" => {
            let (pt, fb) = need("rtcp-fb without value")?.split_once(' ').ok_or("malformed rtcp-fb")?;
            let pt = if pt == "*" { None } else { Some(parse_u8_pt(pt)?) };
            if fb.trim().is_empty() {
                return Err("rtcp-fb without type");
            }
            Attribute::RtcpFb(RtcpFb { pt, value: fb.trim().to_string() })
        }
        "extmap" => {
            let val = need("extmap without value")?;
            let mut it = val.splitn(3, ' ');
            let id_dir = it.next().ok_or("malformed extmap")?;
            let uri = it.next().filter(|u| !u.is_empty()).ok_or("extmap without uri")?.to_string();
            let params = it.next().map(str::to_string);
            let (id, direction) = match id_dir.split_once('/') {
                Some((id, d)) => (id, Some(Direction::from_name(d).ok_or("bad extmap direction")?)),
                None => (id_dir, None),
            };
            // RFC 8285: 1-14 one-byte, up to 255 with two-byte headers; 0 and 15 are reserved.
            let id: u8 = id.parse().map_err(|_| "bad extmap id")?;
            if id == 0 || id == 15 {
                return Err("reserved extmap id");
            }
            Attribute::Extmap(Extmap { id, direction, uri, params })
        }
        "ssrc" => {
            let val = need("ssrc without value")?;
            let (ssrc, attr) = val.split_once(' ').ok_or("ssrc without attribute")?;
            let ssrc = ssrc.parse().map_err(|_| "bad ssrc")?;
            let (n, v) = match attr.split_once(':') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (attr, None),
            };
            if n.is_empty() {
                return Err("ssrc without attribute");
            }
            Attribute::Ssrc(SsrcAttr { ssrc, name: n.to_string(), value: v })
        }
        "ssrc-group" => {
            let val = need("ssrc-group without value")?;
            let mut it = val.split(' ').filter(|s| !s.is_empty());
            let semantics = it.next().ok_or("ssrc-group without semantics")?.to_string();
            let ssrcs = it.map(|s| s.parse::<u32>()).collect::<Result<Vec<_>, _>>().map_err(|_| "bad ssrc in group")?;
            if ssrcs.is_empty() || ssrcs.len() > 16 {
                return Err("ssrc-group size");
            }
            Attribute::SsrcGroup(SsrcGroup { semantics, ssrcs })
        }
        "msid" => {
            let val = need("msid without value")?;
            let mut it = val.split(' ').filter(|s| !s.is_empty());
            let stream = it.next().ok_or("msid without stream id")?.to_string();
            let track = it.next().map(str::to_string);
            if it.next().is_some() {
                return Err("malformed msid");
            }
            Attribute::Msid { stream, track }
        }
        "rid" => {
            let val = need("rid without value")?;
            let mut it = val.splitn(3, ' ');
            let id = nonempty(it.next().unwrap_or(""), "rid without id")?;
            let send = match it.next() {
                Some("send") => true,
                Some("recv") => false,
                _ => return Err("rid direction is neither send nor recv"),
            };
            Attribute::Rid(Rid { id, send, params: it.next().map(str::to_string) })
        }
        "simulcast" => Attribute::Simulcast(parse_simulcast(need("simulcast without value")?)?),
        "candidate" => Attribute::Candidate(parse_candidate(need("candidate without value")?)?),
        "end-of-candidates" => Attribute::EndOfCandidates,
        "sctp-port" => Attribute::SctpPort(need("sctp-port without value")?.parse().map_err(|_| "bad sctp-port")?),
        "max-message-size" => Attribute::MaxMessageSize(
            need("max-message-size without value")?.parse().map_err(|_| "bad max-message-size")?,
        ),
        _ => Attribute::Other { name: name.to_string(), value: value.map(str::to_string) },
    })
}

fn parse_simulcast(v: &str) -> Result<Simulcast, &'static str> {
    let mut out = Simulcast::default();
    let mut it = v.split(' ').filter(|s| !s.is_empty());
    while let Some(dir) = it.next() {
        let list = it.next().ok_or("simulcast direction without streams")?;
        let target = match dir {
            "send" => &mut out.send,
            "recv" => &mut out.recv,
            _ => return Err("simulcast direction is neither send nor recv"),
        };
        for stream in list.split(';') {
            let mut alts = Vec::new();
            for alt in stream.split(',') {
                let (paused, rid) = match alt.strip_prefix('~') {
                    Some(r) => (true, r),
                    None => (false, alt),
                };
                if rid.is_empty() {
                    return Err("empty simulcast rid");
                }
                alts.push(SimulcastRid { rid: rid.to_string(), paused });
            }
            if target.len() >= 16 {
                return Err("too many simulcast streams");
            }
            target.push(alts);
        }
    }
    Ok(out)
}

fn parse_candidate(v: &str) -> Result<Candidate, &'static str> {
    let mut it = v.splitn(9, ' ');
    let mut next = || it.next().filter(|s| !s.is_empty()).ok_or("candidate too short");
    let foundation = next()?.to_string();
    let component = next()?.parse().map_err(|_| "bad candidate component")?;
    let transport = next()?.to_string();
    let priority = next()?.parse().map_err(|_| "bad candidate priority")?;
    let address = next()?.to_string();
    let port = next()?.parse().map_err(|_| "bad candidate port")?;
    if next()? != "typ" {
        return Err("candidate without typ");
    }
    let typ = next()?.to_string();
    let rest = it.next().map(str::to_string);
    Ok(Candidate { foundation, component, transport, priority, address, port, typ, rest })
}

impl fmt::Display for Candidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {} {} typ {}",
            self.foundation, self.component, self.transport, self.priority, self.address, self.port, self.typ
        )?;
        if let Some(r) = &self.rest {
            write!(f, " {r}")?;
        }
        Ok(())
    }
}

fn write_rids(f: &mut fmt::Formatter<'_>, streams: &[Vec<SimulcastRid>]) -> fmt::Result {
    for (i, s) in streams.iter().enumerate() {
        if i > 0 {
            f.write_str(";")?;
        }
        for (j, alt) in s.iter().enumerate() {
            if j > 0 {
                f.write_str(",")?;
            }
            if alt.paused {
                f.write_str("~")?;
            }
            f.write_str(&alt.rid)?;
        }
    }
    Ok(())
}

impl fmt::Display for Attribute {
    /// Writes the line without `a=` and without the line end.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attribute::Group { semantics, mids } => {
                write!(f, "group:{semantics}")?;
                for m in mids {
                    write!(f, " {m}")?;
                }
                Ok(())
            }
            Attribute::MsidSemantic(s) => write!(f, "msid-semantic: {s}"),
            Attribute::Mid(m) => write!(f, "mid:{m}"),
            Attribute::Direction(d) => f.write_str(d.as_str()),
            Attribute::IceUfrag(u) => write!(f, "ice-ufrag:{u}"),
            Attribute::IcePwd(p) => write!(f, "ice-pwd:{p}"),
            Attribute::IceOptions(o) => write!(f, "ice-options:{o}"),
            Attribute::IceLite => f.write_str("ice-lite"),
            Attribute::Fingerprint { algorithm, value } => write!(f, "fingerprint:{algorithm} {value}"),
            Attribute::Setup(s) => write!(f, "setup:{}", s.as_str()),
            Attribute::RtcpMux => f.write_str("rtcp-mux"),
            Attribute::RtcpRsize => f.write_str("rtcp-rsize"),
            Attribute::Rtpmap(r) => {
                write!(f, "rtpmap:{} {}/{}", r.pt, r.encoding, r.clock_rate)?;
                if let Some(c) = r.channels {
                    write!(f, "/{c}")?;
                }
                Ok(())
            }
            Attribute::Fmtp(x) => write!(f, "fmtp:{} {}", x.pt, x.params),
            Attribute::RtcpFb(x) => match x.pt {
                Some(pt) => write!(f, "rtcp-fb:{pt} {}", x.value),
                None => write!(f, "rtcp-fb:* {}", x.value),
            },
            Attribute::Extmap(e) => {
                write!(f, "extmap:{}", e.id)?;
                if let Some(d) = e.direction {
                    write!(f, "/{}", d.as_str())?;
                }
                write!(f, " {}", e.uri)?;
                if let Some(p) = &e.params {
                    write!(f, " {p}")?;
                }
                Ok(())
            }
            Attribute::Ssrc(s) => {
                write!(f, "ssrc:{} {}", s.ssrc, s.name)?;
                if let Some(v) = &s.value {
                    write!(f, ":{v}")?;
                }
                Ok(())
            }
            Attribute::SsrcGroup(g) => {
                write!(f, "ssrc-group:{}", g.semantics)?;
                for s in &g.ssrcs {
                    write!(f, " {s}")?;
                }
                Ok(())
            }
            Attribute::Msid { stream, track } => match track {
                Some(t) => write!(f, "msid:{stream} {t}"),
                None => write!(f, "msid:{stream}"),
            },
            Attribute::Rid(r) => {
                write!(f, "rid:{} {}", r.id, if r.send { "send" } else { "recv" })?;
                if let Some(p) = &r.params {
                    write!(f, " {p}")?;
                }
                Ok(())
            }
            Attribute::Simulcast(s) => {
                f.write_str("simulcast:")?;
                if !s.send.is_empty() {
                    f.write_str("send ")?;
                    write_rids(f, &s.send)?;
                }
                if !s.recv.is_empty() {
                    if !s.send.is_empty() {
                        f.write_str(" ")?;
                    }
                    f.write_str("recv ")?;
                    write_rids(f, &s.recv)?;
                }
                Ok(())
            }
            Attribute::Candidate(c) => write!(f, "candidate:{c}"),
            Attribute::EndOfCandidates => f.write_str("end-of-candidates"),
            Attribute::SctpPort(p) => write!(f, "sctp-port:{p}"),
            Attribute::MaxMessageSize(s) => write!(f, "max-message-size:{s}"),
            Attribute::Other { name, value } => match value {
                Some(v) => write!(f, "{name}:{v}"),
                None => f.write_str(name),
            },
        }
    }
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

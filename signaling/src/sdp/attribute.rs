//! SDP attributes (`a=` lines): their typed forms, how each is parsed, and how each is written.
//! `parse.rs` holds the session and media structure around them.

use std::fmt;

use super::parse::MAX_MEDIA;

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

fn parse_u8_pt(s: &str) -> Result<u8, &'static str> {
    match s.parse::<u8>() {
        Ok(pt) if pt <= 127 => Ok(pt),
        _ => Err("bad payload type"),
    }
}

fn nonempty(s: &str, what: &'static str) -> Result<String, &'static str> {
    if s.is_empty() || s.contains(' ') { Err(what) } else { Ok(s.to_string()) }
}

pub(super) fn parse_attribute(v: &str) -> Result<Attribute, &'static str> {
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

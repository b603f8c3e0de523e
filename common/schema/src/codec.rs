//! The codecs the router forwards, as named in the direct API (`"opus"`, `"vp8"`, `"vp9"`,
//! `"h264"`). Only the names live here; reading payloads (keyframe detection, the VP8
//! descriptor) is the engine's business (`router_engine::codec`).
//!
//! ```
//! use schema::codec::Codec;
//! assert_eq!(Codec::from_encoding_name("VP8"), Some(Codec::Vp8));
//! assert_eq!(serde_json::to_string(&Codec::H264).unwrap(), "\"h264\"");
//! assert!(!Codec::Opus.is_video());
//! ```

use serde::{Deserialize, Serialize};

/// The codecs the router forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    Opus,
    Vp8,
    Vp9,
    H264,
}

impl Codec {
    /// Every codec, for tables and tests.
    pub const ALL: [Codec; 4] = [Codec::Opus, Codec::Vp8, Codec::Vp9, Codec::H264];

    /// From the encoding name of an SDP `a=rtpmap` line (case-insensitive).
    pub fn from_encoding_name(name: &str) -> Option<Codec> {
        [("opus", Codec::Opus), ("VP8", Codec::Vp8), ("VP9", Codec::Vp9), ("H264", Codec::H264)]
            .into_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, c)| c)
    }

    /// Whether this is a video codec (keyframes and layers matter).
    pub fn is_video(self) -> bool {
        !matches!(self, Codec::Opus)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_names_map_case_insensitively() {
        assert_eq!(Codec::from_encoding_name("vp8"), Some(Codec::Vp8));
        assert_eq!(Codec::from_encoding_name("OPUS"), Some(Codec::Opus));
        assert_eq!(Codec::from_encoding_name("h264"), Some(Codec::H264));
        assert_eq!(Codec::from_encoding_name("AV1"), None);
        assert!(!Codec::Opus.is_video() && Codec::H264.is_video() && Codec::Vp9.is_video());
    }
}

//! RTP header extension ids negotiated for one peer connection, and the `a=extmap` URIs they
//! are negotiated by.
//!
//! Signaling reads the `a=extmap:<id> <uri>` lines of an SDP into an [`ExtensionIds`] with
//! [`ExtensionIds::set_from_uri`] and hands it to the router in `produce` / `consume`; the
//! engine reads and writes the extensions by these ids (`router_engine::rtp`).
//!
//! ```
//! use schema::extensions::{ExtensionIds, URI_MID, URI_TRANSPORT_CC};
//! let mut ids = ExtensionIds::default();
//! assert!(ids.set_from_uri(3, URI_TRANSPORT_CC));
//! assert!(!ids.set_from_uri(9, "urn:example:unknown"));
//! assert_eq!(ids.transport_cc, Some(3));
//! assert_eq!(ids.uri_of(3), Some(URI_TRANSPORT_CC));
//! assert_eq!(ids.uri_of(4), None);
//! # let _ = URI_MID;
//! ```

use serde::{Deserialize, Serialize};

/// `a=extmap` URI of the media identification (mid) extension (RFC 9143).
pub const URI_MID: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
/// `a=extmap` URI of the RTP stream id (rid) extension (RFC 8852).
pub const URI_RID: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
/// `a=extmap` URI of the repaired RTP stream id extension (RFC 8852), sent on RTX streams.
pub const URI_REPAIRED_RID: &str = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id";
/// `a=extmap` URI of abs-send-time (24-bit 6.18 fixed-point seconds).
pub const URI_ABS_SEND_TIME: &str = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time";
/// `a=extmap` URI of the transport-wide sequence number (draft-holmer-rmcat-transport-wide-cc).
pub const URI_TRANSPORT_CC: &str = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
/// `a=extmap` URI of the client-to-mixer audio level (RFC 6464).
pub const URI_AUDIO_LEVEL: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
/// `a=extmap` URI of the coordination of video orientation (3GPP TS 26.114).
pub const URI_VIDEO_ORIENTATION: &str = "urn:3gpp:video-orientation";

/// Extension ids negotiated for one peer connection (from SDP `a=extmap`), `None` when absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExtensionIds {
    pub mid: Option<u8>,
    pub rid: Option<u8>,
    pub repaired_rid: Option<u8>,
    pub abs_send_time: Option<u8>,
    pub transport_cc: Option<u8>,
    pub audio_level: Option<u8>,
    pub video_orientation: Option<u8>,
}

impl ExtensionIds {
    /// Records the id of an `a=extmap:<id> <uri>` line; returns false for URIs we don't use.
    pub fn set_from_uri(&mut self, id: u8, uri: &str) -> bool {
        let slot = match uri {
            URI_MID => &mut self.mid,
            URI_RID => &mut self.rid,
            URI_REPAIRED_RID => &mut self.repaired_rid,
            URI_ABS_SEND_TIME => &mut self.abs_send_time,
            URI_TRANSPORT_CC => &mut self.transport_cc,
            URI_AUDIO_LEVEL => &mut self.audio_level,
            URI_VIDEO_ORIENTATION => &mut self.video_orientation,
            _ => return false,
        };
        *slot = Some(id);
        true
    }

    /// The URI for an id, if it is one we track.
    pub fn uri_of(&self, id: u8) -> Option<&'static str> {
        let pairs = [
            (self.mid, URI_MID),
            (self.rid, URI_RID),
            (self.repaired_rid, URI_REPAIRED_RID),
            (self.abs_send_time, URI_ABS_SEND_TIME),
            (self.transport_cc, URI_TRANSPORT_CC),
            (self.audio_level, URI_AUDIO_LEVEL),
            (self.video_orientation, URI_VIDEO_ORIENTATION),
        ];
        pairs.into_iter().find(|(i, _)| *i == Some(id)).map(|(_, u)| u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_uri_maps_to_its_own_slot_and_back() {
        let uris = [
            URI_MID,
            URI_RID,
            URI_REPAIRED_RID,
            URI_ABS_SEND_TIME,
            URI_TRANSPORT_CC,
            URI_AUDIO_LEVEL,
            URI_VIDEO_ORIENTATION,
        ];
        let mut ids = ExtensionIds::default();
        for (i, uri) in uris.iter().enumerate() {
            assert!(ids.set_from_uri(i as u8 + 1, uri), "{uri}");
        }
        for (i, uri) in uris.iter().enumerate() {
            assert_eq!(ids.uri_of(i as u8 + 1), Some(*uri));
        }
        assert_eq!(ids.uri_of(0), None);
        assert_eq!(ids.uri_of(14), None);
    }

    #[test]
    fn absent_fields_deserialize_as_not_negotiated() {
        let ids: ExtensionIds = serde_json::from_str(r#"{"mid": 4}"#).expect("partial object is valid");
        assert_eq!(ids, ExtensionIds { mid: Some(4), ..ExtensionIds::default() });
    }
}

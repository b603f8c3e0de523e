//! The 100ms client protocol's JSON shapes that signaling reads and writes: the track record
//! (`TrackState`), peer notifications, the room state. Field names are the SDK's
//! (`../shared/100MS-PROTOCOL.md` §5.1, §6.2).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// One track as the SDK describes it (`TrackState`): keyed by `track_id` everywhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackState {
    pub track_id: String,
    #[serde(default)]
    pub stream_id: String,
    /// "audio" or "video".
    #[serde(rename = "type", default)]
    pub kind: String,
    /// "regular", "screen", "plugin", ...
    #[serde(default = "regular")]
    pub source: String,
    #[serde(default)]
    pub mute: bool,
    #[serde(default)]
    pub description: String,
}

fn regular() -> String {
    "regular".to_owned()
}

impl TrackState {
    pub fn is_screen(&self) -> bool {
        self.source == "screen"
    }
}

/// What the protocol says about a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo<'a> {
    pub peer_id: &'a str,
    pub role: &'a str,
    pub name: &'a str,
    pub data: &'a str,
    pub user_id: &'a str,
    pub joined_at_ms: u64,
    /// `group-join`'s groups; `_handraise` is a raised hand.
    pub groups: &'a std::collections::BTreeSet<String>,
}

impl PeerInfo<'_> {
    /// The short form used as `peer` in track notifications and `on-broadcast`.
    pub fn brief(&self) -> Value {
        json!({
            "peer_id": self.peer_id,
            "role": self.role,
            "groups": self.groups,
            "info": { "name": self.name, "data": self.data, "user_id": self.user_id, "type": "regular" },
        })
    }

    /// The full `PeerNotification` (peer-list, on-peer-join, on-peer-update). `realtime` must
    /// be true: the SDK removes a known peer whose update lacks it.
    pub fn notification<'t>(&self, tracks: impl Iterator<Item = &'t TrackState>) -> Value {
        let tracks: serde_json::Map<String, Value> =
            tracks.map(|t| (t.track_id.clone(), serde_json::to_value(t).unwrap_or(Value::Null))).collect();
        json!({
            "peer_id": self.peer_id,
            "role": self.role,
            "info": { "name": self.name, "data": self.data, "user_id": self.user_id, "type": "regular" },
            "joined_at": self.joined_at_ms,
            "tracks": tracks,
            "groups": self.groups,
            "realtime": true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn track_state_reads_the_sdk_form_and_fills_defaults() {
        let t: TrackState =
            serde_json::from_str(r#"{"track_id":"t1","stream_id":"s","type":"video","mute":true}"#).unwrap();
        assert_eq!(t.source, "regular");
        assert!(t.mute);
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["type"], "video");
        assert_eq!(v["description"], "");
    }

    #[test]
    fn peer_notifications_are_realtime_and_carry_info() {
        let groups = ["_handraise".to_owned()].into_iter().collect();
        let p = PeerInfo {
            peer_id: "p",
            role: "host",
            name: "Ann",
            data: "",
            user_id: "u",
            joined_at_ms: 5,
            groups: &groups,
        };
        let n = p.notification(std::iter::empty());
        assert_eq!(n["realtime"], true);
        assert_eq!(n["info"]["name"], "Ann");
        assert!(n["tracks"].as_object().unwrap().is_empty());
        assert_eq!(p.brief()["info"]["user_id"], "u");
        assert_eq!(n["groups"], serde_json::json!(["_handraise"]));
        assert_eq!(p.brief()["groups"], serde_json::json!(["_handraise"]));
    }

    #[test]
    fn random_ids_are_24_hex_digits_and_differ() {
        // Session, message and token ids come from the store's generator: 100ms's shape.
        let (a, b) = (store::new_id(), store::new_id());
        assert_eq!(a.len(), 24);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}

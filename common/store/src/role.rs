//! Roles: what a peer may publish, whose tracks it receives, and what it may do to others.
//!
//! [`Role`] serializes to exactly the `HMSRole` object the 100ms web SDK reads from
//! `known_roles` in `on-policy-change` (camelCase; `publishParams.audio`, `.video` and `.screen`
//! always present because the SDK reads them without a guard; `simulcast` and the optional
//! permissions left out when unset). Templates store their roles as this JSON, so what signaling
//! sends is what the template holds.
//!
//! ```
//! use store::role::{default_roles, TrackKind};
//! let roles = default_roles();
//! assert!(roles["guest"].may_publish(TrackKind::Video));
//! assert!(!roles["audio-only"].may_publish(TrackKind::Video));
//! assert!(roles["audio-only"].subscribes_to("host"));
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A kind of track a peer publishes, as named in `publishParams.allowed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackKind {
    Audio,
    Video,
    Screen,
}

impl TrackKind {
    /// The name used in `publishParams.allowed` (and in the SDK's track `source`/`type`).
    pub fn as_str(self) -> &'static str {
        match self {
            TrackKind::Audio => "audio",
            TrackKind::Video => "video",
            TrackKind::Screen => "screen",
        }
    }
}

/// One role of a template (100ms `HMSRole`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Role {
    pub name: String,
    /// 1 is the highest; the order in which roles are degraded.
    pub priority: u32,
    pub publish_params: PublishParams,
    pub subscribe_params: SubscribeParams,
    pub permissions: Permissions,
    /// 0 or absent: unlimited; n: at most n peers; -1: nobody may join in this role. Part of the
    /// template API, not of the SDK's `HMSRole`, so it is left out when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_peer_count: Option<i32>,
}

impl Role {
    /// Whether a peer in this role may publish a track of `kind`.
    pub fn may_publish(&self, kind: TrackKind) -> bool {
        self.publish_params.allowed.iter().any(|a| a == kind.as_str())
    }

    /// Whether a peer in this role receives the tracks of peers in `role`.
    pub fn subscribes_to(&self, role: &str) -> bool {
        self.subscribe_params.subscribe_to_roles.iter().any(|r| r == role)
    }
}

/// `publishParams`. `allowed` holds `"audio"`, `"video"`, `"screen"` (strings, not
/// [`TrackKind`], so a template holding a value we do not know yet still loads).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishParams {
    pub allowed: Vec<String>,
    pub audio: AudioSettings,
    pub video: VideoSettings,
    pub screen: VideoSettings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulcast: Option<Simulcast>,
}

/// `publishParams.audio`: bit rate in kbps, codec `opus`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AudioSettings {
    pub bit_rate: u32,
    pub codec: String,
}

/// `publishParams.video` and `publishParams.screen`: bit rate in kbps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VideoSettings {
    pub bit_rate: u32,
    pub codec: String,
    pub frame_rate: u32,
    pub width: u32,
    pub height: u32,
}

/// `publishParams.simulcast`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Simulcast {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<SimulcastLayers>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screen: Option<SimulcastLayers>,
}

/// `{layers: [...]}`, at most three, `f` first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimulcastLayers {
    pub layers: Vec<SimulcastLayer>,
}

/// One simulcast encoding: `rid` is `f`, `h` or `q`; `maxBitrate` in kbps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimulcastLayer {
    pub rid: String,
    pub scale_resolution_down_by: f64,
    pub max_bitrate: u32,
    pub max_framerate: u32,
}

/// `subscribeParams`: whose tracks this role receives, and a cap on their total bit rate (kbps).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscribeParams {
    pub subscribe_to_roles: Vec<String>,
    pub max_subs_bit_rate: u32,
}

/// `permissions`: what a peer in this role may do to the room and to others.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permissions {
    pub end_room: bool,
    pub remove_others: bool,
    /// Ask others to mute.
    pub mute: bool,
    /// Ask others to unmute.
    pub unmute: bool,
    pub change_role: bool,
    pub hls_streaming: bool,
    pub rtmp_streaming: bool,
    pub browser_recording: bool,
    pub poll_read: bool,
    pub poll_write: bool,
    /// Receive the peer count and list before joining.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_room_state: Option<bool>,
    /// `"read"`, `"write"`, `"admin"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whiteboard: Option<Vec<String>>,
    /// Transcription mode (`"caption"`, ...) to permission levels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcriptions: Option<BTreeMap<String, Vec<String>>>,
}

impl Permissions {
    /// Every permission (a host).
    pub fn all() -> Permissions {
        Permissions {
            end_room: true,
            remove_others: true,
            mute: true,
            unmute: true,
            change_role: true,
            hls_streaming: true,
            rtmp_streaming: true,
            browser_recording: true,
            poll_read: true,
            poll_write: true,
            send_room_state: None,
            whiteboard: None,
            transcriptions: None,
        }
    }
}

/// Name of the default template created in every new workspace.
pub const DEFAULT_TEMPLATE_NAME: &str = "default";

/// Opus at 32 kbps.
fn audio() -> AudioSettings {
    AudioSettings { bit_rate: 32, codec: "opus".into() }
}

/// 720p camera: 1280x720 at 30 fps, 800 kbps.
fn video() -> VideoSettings {
    VideoSettings { bit_rate: 800, codec: "vp8".into(), frame_rate: 30, width: 1280, height: 720 }
}

/// Screen share: 1920x1080 at 10 fps, 1024 kbps (the 100ms default bit rate).
fn screen() -> VideoSettings {
    VideoSettings { bit_rate: 1024, codec: "vp8".into(), frame_rate: 10, width: 1920, height: 1080 }
}

/// Camera simulcast, in the 100ms template order (`f` first): 1280x720 at 1.2 Mbit/s,
/// 640x360 at 450 kbit/s, 320x180 at 150 kbit/s, each at 30 fps. Subscribers get the layer
/// their tile and their bandwidth call for (docs/simulcast.md).
fn camera_simulcast() -> Simulcast {
    let layer = |rid: &str, scale: f64, kbps: u32| SimulcastLayer {
        rid: rid.into(),
        scale_resolution_down_by: scale,
        max_bitrate: kbps,
        max_framerate: 30,
    };
    Simulcast {
        video: Some(SimulcastLayers {
            layers: vec![layer("f", 1.0, 1200), layer("h", 2.0, 450), layer("q", 4.0, 150)],
        }),
        screen: None,
    }
}

fn role(name: &str, priority: u32, allowed: &[&str], subscribe_to: &[&str], permissions: Permissions) -> Role {
    Role {
        name: name.into(),
        priority,
        publish_params: PublishParams {
            allowed: allowed.iter().map(|s| (*s).to_owned()).collect(),
            audio: audio(),
            video: video(),
            screen: screen(),
            simulcast: allowed.contains(&"video").then(camera_simulcast),
        },
        subscribe_params: SubscribeParams {
            subscribe_to_roles: subscribe_to.iter().map(|s| (*s).to_owned()).collect(),
            max_subs_bit_rate: 3200,
        },
        permissions,
        max_peer_count: None,
    }
}

/// The roles of the default template: `host` (audio, video, screen; every permission),
/// `guest` (audio, video; no admin permission) and `audio-only` (audio only; also receives the
/// other audio-only peers).
pub fn default_roles() -> BTreeMap<String, Role> {
    let guest_permissions = Permissions { poll_read: true, ..Permissions::default() };
    [
        // Everyone hears and sees everyone: audio-only peers are still heard.
        role("host", 1, &["audio", "video", "screen"], &["host", "guest", "audio-only"], Permissions::all()),
        role("guest", 2, &["audio", "video"], &["host", "guest", "audio-only"], guest_permissions.clone()),
        role("audio-only", 3, &["audio"], &["host", "guest", "audio-only"], guest_permissions),
    ]
    .into_iter()
    .map(|r| (r.name.clone(), r))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_serializes_to_the_sdk_hmsrole_shape() {
        let roles = default_roles();
        let v = serde_json::to_value(&roles["guest"]).unwrap();
        let expected = serde_json::json!({
            "name": "guest",
            "priority": 2,
            "publishParams": {
                "allowed": ["audio", "video"],
                "audio": {"bitRate": 32, "codec": "opus"},
                "video": {"bitRate": 800, "codec": "vp8", "frameRate": 30, "width": 1280, "height": 720},
                "screen": {"bitRate": 1024, "codec": "vp8", "frameRate": 10, "width": 1920, "height": 1080},
                "simulcast": {"video": {"layers": [
                    {"rid": "f", "scaleResolutionDownBy": 1.0, "maxBitrate": 1200, "maxFramerate": 30},
                    {"rid": "h", "scaleResolutionDownBy": 2.0, "maxBitrate": 450, "maxFramerate": 30},
                    {"rid": "q", "scaleResolutionDownBy": 4.0, "maxBitrate": 150, "maxFramerate": 30}
                ]}}
            },
            "subscribeParams": {"subscribeToRoles": ["host", "guest", "audio-only"], "maxSubsBitRate": 3200},
            "permissions": {
                "endRoom": false, "removeOthers": false, "mute": false, "unmute": false,
                "changeRole": false, "hlsStreaming": false, "rtmpStreaming": false,
                "browserRecording": false, "pollRead": true, "pollWrite": false
            }
        });
        assert_eq!(v, expected);
        // An audio-only role publishes no camera: no simulcast.
        assert!(roles["audio-only"].publish_params.simulcast.is_none());
    }

    #[test]
    fn simulcast_and_optional_permissions_round_trip() {
        let mut r = default_roles()["host"].clone();
        r.publish_params.simulcast = Some(Simulcast {
            video: Some(SimulcastLayers {
                layers: vec![
                    SimulcastLayer {
                        rid: "f".into(),
                        scale_resolution_down_by: 1.0,
                        max_bitrate: 700,
                        max_framerate: 30,
                    },
                    SimulcastLayer {
                        rid: "q".into(),
                        scale_resolution_down_by: 4.0,
                        max_bitrate: 150,
                        max_framerate: 15,
                    },
                ],
            }),
            screen: None,
        });
        r.permissions.send_room_state = Some(true);
        r.permissions.whiteboard = Some(vec!["admin".into()]);
        r.max_peer_count = Some(10);
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains(r#""simulcast":{"video":{"layers":[{"rid":"f","scaleResolutionDownBy":1.0,"maxBitrate":700,"maxFramerate":30}"#));
        assert!(json.contains(r#""sendRoomState":true"#));
        assert!(json.contains(r#""maxPeerCount":10"#));
        let back: Role = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn default_roles_publish_and_subscribe_rules() {
        let roles = default_roles();
        let host = &roles["host"];
        assert!(host.may_publish(TrackKind::Audio) && host.may_publish(TrackKind::Video));
        assert!(host.may_publish(TrackKind::Screen));
        assert!(host.permissions.end_room && host.permissions.change_role);
        assert_eq!(host.priority, 1);
        let guest = &roles["guest"];
        assert!(guest.may_publish(TrackKind::Video) && !guest.may_publish(TrackKind::Screen));
        assert!(!guest.permissions.end_room && !guest.permissions.remove_others);
        let audio_only = &roles["audio-only"];
        assert!(audio_only.may_publish(TrackKind::Audio));
        assert!(!audio_only.may_publish(TrackKind::Video) && !audio_only.may_publish(TrackKind::Screen));
        assert!(audio_only.subscribes_to("audio-only") && audio_only.subscribes_to("host"));
        assert!(guest.subscribes_to("audio-only") && host.subscribes_to("audio-only"));
        for (name, r) in &roles {
            assert_eq!(&r.name, name, "a role's name equals its key (the SDK looks it up by name)");
        }
    }
}

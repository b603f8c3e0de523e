//! The checks 100ms applies to a template body: defaults filled into partial roles, then every
//! field checked, each problem reported with its JSON path.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{TemplateParts, empty_array, empty_object};
use crate::role::Role;

/// Longest template or role name.
pub const MAX_NAME: usize = 100;

/// One problem with a request body: the field (a JSON path) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError { field: field.into(), message: message.into() }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// The body of `POST /v2/templates` and `POST /v2/templates/{id}` (full replace).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TemplateInput {
    #[serde(default)]
    pub name: Option<String>,
    /// Role name to a (possibly partial) role object.
    #[serde(default)]
    pub roles: BTreeMap<String, Value>,
    #[serde(default)]
    pub settings: Option<Value>,
    #[serde(default)]
    pub destinations: Option<Value>,
    #[serde(default)]
    pub plugins: Option<Value>,
    #[serde(default)]
    pub recordings: Option<Value>,
}

/// A checked template body, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedTemplate {
    pub name: String,
    pub roles: BTreeMap<String, Role>,
    pub parts: TemplateParts,
}

impl TemplateInput {
    /// Fills defaults and checks everything; all problems at once.
    pub fn check(&self) -> Result<CheckedTemplate, Vec<FieldError>> {
        let mut errors = Vec::new();
        let name = match &self.name {
            Some(n) => {
                check_name("name", n, true, &mut errors);
                n.clone()
            }
            None => {
                errors.push(FieldError::new("name", "required"));
                String::new()
            }
        };
        if self.roles.is_empty() {
            errors.push(FieldError::new("roles", "a template needs at least one role"));
        }
        let mut roles = BTreeMap::new();
        for (role_name, body) in &self.roles {
            if let Some(role) = role_from_input(role_name, body, &format!("roles.{role_name}"), &mut errors) {
                roles.insert(role_name.clone(), role);
            }
        }
        check_role_references(&roles, &mut errors);
        let parts = TemplateParts {
            settings: self.settings.clone().unwrap_or_else(empty_object),
            destinations: self.destinations.clone().unwrap_or_else(empty_object),
            plugins: self.plugins.clone().unwrap_or_else(empty_object),
            recordings: self.recordings.clone().unwrap_or_else(empty_array),
            layouts: empty_object(),
        };
        check_parts(&parts, &mut errors);
        if errors.is_empty() { Ok(CheckedTemplate { name, roles, parts }) } else { Err(errors) }
    }
}

/// Template names: `a-zA-Z0-9`, space, `-`, `.`, `_`, `:`. Role names: the same but no space
/// (they travel in tokens and URL paths).
fn check_name(field: &str, name: &str, spaces: bool, errors: &mut Vec<FieldError>) {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':') || (spaces && b == b' '));
    if !ok {
        let allowed =
            if spaces { "a-z, A-Z, 0-9, space, '-', '.', '_', ':'" } else { "a-z, A-Z, 0-9, '-', '.', '_', ':'" };
        errors.push(FieldError::new(field, format!("must be 1 to {MAX_NAME} characters of {allowed}")));
    }
}

/// The role a template gets for fields its input leaves out: audio and video at 100ms's
/// defaults, subscribed to nobody (the caller says whom it sees), no permissions.
pub fn role_defaults(name: &str) -> Value {
    json!({
        "name": name,
        "priority": 1,
        "publishParams": {
            "allowed": [],
            "audio": {"bitRate": 32, "codec": "opus"},
            "video": {"bitRate": 256, "codec": "vp8", "frameRate": 25, "width": 320, "height": 180},
            "screen": {"bitRate": 1024, "codec": "vp8", "frameRate": 10, "width": 1280, "height": 720}
        },
        "subscribeParams": {"subscribeToRoles": [], "maxSubsBitRate": 3200},
        "permissions": {
            "endRoom": false, "removeOthers": false, "mute": false, "unmute": false,
            "changeRole": false, "hlsStreaming": true, "rtmpStreaming": true,
            "browserRecording": true, "pollRead": false, "pollWrite": false
        }
    })
}

/// Merges `patch` into `base` (objects key by key, anything else replaced).
pub fn merge_json(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge_json(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p.clone(),
    }
}

/// Builds one role from its (partial) input and checks its own fields (not its references to
/// other roles: see [`check_role_references`]). `path` prefixes the field names in errors.
pub fn role_from_input(name: &str, body: &Value, path: &str, errors: &mut Vec<FieldError>) -> Option<Role> {
    check_name(&format!("{path}.name"), name, false, errors);
    if !body.is_object() {
        errors.push(FieldError::new(path, "a role is a JSON object"));
        return None;
    }
    let mut full = role_defaults(name);
    merge_json(&mut full, body);
    // The key names the role; a different `name` inside is ignored here (the role API renames
    // explicitly).
    full["name"] = Value::String(name.to_owned());
    let role: Role = match serde_json::from_value(full) {
        Ok(r) => r,
        Err(e) => {
            errors.push(FieldError::new(path, format!("not a valid role: {e}")));
            return None;
        }
    };
    check_role(&role, path, errors);
    Some(role)
}

fn range(errors: &mut Vec<FieldError>, field: String, value: u32, lo: u32, hi: u32) {
    if value < lo || value > hi {
        errors.push(FieldError::new(field, format!("{value} is out of range {lo} to {hi}")));
    }
}

/// The limits of one role's fields (100ms's template API ranges).
pub fn check_role(role: &Role, path: &str, errors: &mut Vec<FieldError>) {
    range(errors, format!("{path}.priority"), role.priority, 1, 5);
    if let Some(n) = role.max_peer_count
        && n < -1
    {
        errors.push(FieldError::new(format!("{path}.maxPeerCount"), "must be -1 (nobody), 0 (unlimited) or a cap"));
    }
    let p = &role.publish_params;
    for (i, kind) in p.allowed.iter().enumerate() {
        if !matches!(kind.as_str(), "audio" | "video" | "screen") {
            errors.push(FieldError::new(
                format!("{path}.publishParams.allowed[{i}]"),
                format!("unknown track kind {kind:?} (audio, video, screen)"),
            ));
        }
    }
    let a = format!("{path}.publishParams.audio");
    range(errors, format!("{a}.bitRate"), p.audio.bit_rate, 16, 128);
    if p.audio.codec != "opus" {
        errors.push(FieldError::new(format!("{a}.codec"), format!("unsupported codec {:?} (opus)", p.audio.codec)));
    }
    for (kind, v, min_bitrate, max_bitrate, w, h) in [
        ("video", &p.video, 30, 2000, (50, 1920), (50, 1080)),
        ("screen", &p.screen, 500, 8000, (480, 1920), (270, 1080)),
    ] {
        let f = format!("{path}.publishParams.{kind}");
        range(errors, format!("{f}.bitRate"), v.bit_rate, min_bitrate, max_bitrate);
        range(errors, format!("{f}.frameRate"), v.frame_rate, 1, 30);
        range(errors, format!("{f}.width"), v.width, w.0, w.1);
        range(errors, format!("{f}.height"), v.height, h.0, h.1);
        if !matches!(v.codec.as_str(), "vp8" | "h264" | "vp9") {
            errors.push(FieldError::new(
                format!("{f}.codec"),
                format!("unsupported codec {:?} (vp8, h264, vp9)", v.codec),
            ));
        }
    }
    if let Some(s) = &p.simulcast {
        for (kind, layers) in [("video", &s.video), ("screen", &s.screen)] {
            let Some(layers) = layers else { continue };
            check_layers(&format!("{path}.publishParams.simulcast.{kind}.layers"), &layers.layers, errors);
        }
    }
    range(
        errors,
        format!("{path}.subscribeParams.maxSubsBitRate"),
        role.subscribe_params.max_subs_bit_rate,
        0,
        100_000,
    );
}

/// Simulcast layers: at most three, `f` then `h` then `q` (a subset, in that order), `f` first
/// at scale 1, scales strictly increasing within [1, 12], bit rates 0 to 2000 kbps.
fn check_layers(path: &str, layers: &[crate::role::SimulcastLayer], errors: &mut Vec<FieldError>) {
    if layers.len() > 3 {
        errors.push(FieldError::new(path, "at most 3 layers"));
        return;
    }
    let order = |rid: &str| ["f", "h", "q"].iter().position(|r| *r == rid);
    let mut last: Option<(usize, f64)> = None;
    for (i, l) in layers.iter().enumerate() {
        let f = format!("{path}[{i}]");
        let Some(rank) = order(&l.rid) else {
            errors.push(FieldError::new(format!("{f}.rid"), format!("unknown rid {:?} (f, h, q)", l.rid)));
            continue;
        };
        if i == 0 && (rank != 0 || l.scale_resolution_down_by != 1.0) {
            errors.push(FieldError::new(f.clone(), "the first layer must be rid \"f\" with scaleResolutionDownBy 1"));
        }
        if !(1.0..=12.0).contains(&l.scale_resolution_down_by) {
            errors.push(FieldError::new(format!("{f}.scaleResolutionDownBy"), "must be within 1 to 12"));
        }
        if let Some((prev_rank, prev_scale)) = last {
            if rank <= prev_rank {
                errors.push(FieldError::new(format!("{f}.rid"), "layers go f, h, q in that order, each at most once"));
            }
            if l.scale_resolution_down_by <= prev_scale {
                errors.push(FieldError::new(
                    format!("{f}.scaleResolutionDownBy"),
                    "must grow from one layer to the next",
                ));
            }
        }
        range(errors, format!("{f}.maxBitrate"), l.max_bitrate, 0, 2000);
        range(errors, format!("{f}.maxFramerate"), l.max_framerate, 1, 30);
        last = Some((rank, l.scale_resolution_down_by));
    }
}

/// `subscribeToRoles` may name only roles of the same template.
pub fn check_role_references(roles: &BTreeMap<String, Role>, errors: &mut Vec<FieldError>) {
    for (name, role) in roles {
        for (i, target) in role.subscribe_params.subscribe_to_roles.iter().enumerate() {
            if !roles.contains_key(target) {
                errors.push(FieldError::new(
                    format!("roles.{name}.subscribeParams.subscribeToRoles[{i}]"),
                    format!("unknown role {target:?}"),
                ));
            }
        }
    }
}

/// Light checks of the JSON parts: their types, the region, room-state interval, and the one
/// recording config 100ms allows.
pub fn check_parts(parts: &TemplateParts, errors: &mut Vec<FieldError>) {
    for (field, v) in
        [("settings", &parts.settings), ("destinations", &parts.destinations), ("plugins", &parts.plugins)]
    {
        if !v.is_object() {
            errors.push(FieldError::new(field, "must be a JSON object"));
        }
    }
    if let Some(region) = parts.settings.get("region")
        && !matches!(region.as_str(), Some("in" | "us" | "eu" | "auto"))
    {
        errors.push(FieldError::new("settings.region", "region not supported (in, us, eu, auto)"));
    }
    if let Some(interval) = parts.settings.pointer("/roomState/messageInterval") {
        let ok = interval.as_u64().is_some_and(|s| (5..=3600).contains(&s) && s % 5 == 0);
        if !ok {
            errors.push(FieldError::new("settings.roomState.messageInterval", "a multiple of 5 within 5 to 3600"));
        }
    }
    match parts.recordings.as_array() {
        None => errors.push(FieldError::new("recordings", "must be a JSON array")),
        Some(a) if a.len() > 1 => errors.push(FieldError::new("recordings", "only one recording config is allowed")),
        Some(a) => {
            for (i, r) in a.iter().enumerate() {
                if !r.is_object() {
                    errors.push(FieldError::new(format!("recordings[{i}]"), "must be a JSON object"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(v: Value) -> Result<CheckedTemplate, Vec<FieldError>> {
        serde_json::from_value::<TemplateInput>(v).unwrap().check()
    }

    fn fields(v: Value) -> Vec<String> {
        check(v).unwrap_err().into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn partial_roles_get_defaults() {
        let t = check(json!({"name": "t", "roles": {"host": {"publishParams": {"allowed": ["audio"]}, "subscribeParams": {"subscribeToRoles": ["host"]}}}})).unwrap();
        let host = &t.roles["host"];
        assert_eq!(host.name, "host");
        assert_eq!(host.publish_params.allowed, ["audio"]);
        assert_eq!(host.publish_params.video.width, 320);
        assert_eq!(host.subscribe_params.max_subs_bit_rate, 3200);
        assert_eq!(t.parts.recordings, json!([]));
    }

    #[test]
    fn empty_templates_and_missing_names_are_refused() {
        assert_eq!(fields(json!({"roles": {}})), ["name", "roles"]);
        assert_eq!(fields(json!({"name": "bad/name", "roles": {"a": {}}})), ["name"]);
        assert_eq!(fields(json!({"name": "ok", "roles": {"has space": {}}})), ["roles.has space.name"]);
    }

    #[test]
    fn impossible_resolutions_and_rates_are_refused_field_by_field() {
        let f = fields(json!({"name": "t", "roles": {"r": {
            "priority": 9,
            "publishParams": {
                "allowed": ["audio", "hologram"],
                "audio": {"bitRate": 500},
                "video": {"width": 10000, "height": 20, "frameRate": 0},
                "screen": {"codec": "mpeg2"}
            }
        }}}));
        assert_eq!(
            f,
            [
                "roles.r.priority",
                "roles.r.publishParams.allowed[1]",
                "roles.r.publishParams.audio.bitRate",
                "roles.r.publishParams.video.frameRate",
                "roles.r.publishParams.video.width",
                "roles.r.publishParams.video.height",
                "roles.r.publishParams.screen.codec",
            ]
        );
    }

    #[test]
    fn wrong_types_name_the_role() {
        let e = check(json!({"name": "t", "roles": {"r": {"priority": "high"}}})).unwrap_err();
        assert_eq!(e[0].field, "roles.r");
        assert!(e[0].message.contains("not a valid role"), "{}", e[0].message);
        assert_eq!(fields(json!({"name": "t", "roles": {"r": 5}})), ["roles.r"]);
    }

    #[test]
    fn simulcast_layer_rules() {
        let layers =
            |l: Value| json!({"name": "t", "roles": {"r": {"publishParams": {"simulcast": {"video": {"layers": l}}}}}});
        let ok = json!([
            {"rid": "f", "scaleResolutionDownBy": 1.0, "maxBitrate": 700, "maxFramerate": 30},
            {"rid": "h", "scaleResolutionDownBy": 2.0, "maxBitrate": 250, "maxFramerate": 30},
            {"rid": "q", "scaleResolutionDownBy": 4.0, "maxBitrate": 100, "maxFramerate": 15}
        ]);
        assert!(check(layers(ok)).is_ok());
        let starts_with_h = json!([{"rid": "h", "scaleResolutionDownBy": 2.0, "maxBitrate": 250, "maxFramerate": 30}]);
        assert_eq!(fields(layers(starts_with_h)), ["roles.r.publishParams.simulcast.video.layers[0]"]);
        let out_of_order = json!([
            {"rid": "f", "scaleResolutionDownBy": 1.0, "maxBitrate": 700, "maxFramerate": 30},
            {"rid": "q", "scaleResolutionDownBy": 4.0, "maxBitrate": 100, "maxFramerate": 15},
            {"rid": "h", "scaleResolutionDownBy": 2.0, "maxBitrate": 250, "maxFramerate": 30}
        ]);
        assert_eq!(
            fields(layers(out_of_order)),
            [
                "roles.r.publishParams.simulcast.video.layers[2].rid",
                "roles.r.publishParams.simulcast.video.layers[2].scaleResolutionDownBy"
            ]
        );
        let bad_rid = json!([{"rid": "x", "scaleResolutionDownBy": 1.0, "maxBitrate": 1, "maxFramerate": 1}]);
        assert_eq!(fields(layers(bad_rid)), ["roles.r.publishParams.simulcast.video.layers[0].rid"]);
    }

    #[test]
    fn subscribe_to_unknown_roles_is_refused() {
        let f = fields(json!({"name": "t", "roles": {
            "a": {"subscribeParams": {"subscribeToRoles": ["a", "b", "nobody"]}},
            "b": {}
        }}));
        assert_eq!(f, ["roles.a.subscribeParams.subscribeToRoles[2]"]);
    }

    #[test]
    fn parts_are_checked() {
        let f = fields(json!({"name": "t", "roles": {"a": {}},
            "settings": {"region": "mars", "roomState": {"messageInterval": 7}},
            "destinations": [],
            "recordings": [{}, {}]}));
        assert_eq!(f, ["destinations", "settings.region", "settings.roomState.messageInterval", "recordings"]);
    }
}

//! Prebuilt layouts: what 100ms's conferencing UI (`@100mslive/roomkit-react`) shows each role
//! of a template, in the `@100mslive/types-prebuilt` shape (`Layout`: `themes`, `typography`,
//! `logo`, `options`, and `screens` for `preview`, `conferencing` and `leave`, each screen's
//! `elements` turning a control on by being present).
//!
//! A role without a layout of its own gets [`default_layout`], 100ms's defaults for its kind:
//! the video-conferencing screens (chat with pinning, participant list, grid, emoji reactions,
//! be-right-back, hand raise) for a role that publishes, and the HLS viewer's screen for a role
//! that publishes nothing in a template with an HLS destination. A stored layout replaces the
//! default whole; it is checked by [`check_layout`] against the shape, every unknown field and
//! every value of the wrong type reported at once with its path.

use serde_json::{Value, json};

use super::{FieldError, Template};
use crate::role::Role;

/// The JSON shape of a layout field.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Text,
    Flag,
    Number,
    Texts,
    OneOf(&'static [&'static str]),
    Object(&'static [(&'static str, Shape)]),
    ListOf(&'static Shape),
    /// `{string: string}` (`options`).
    TextMap,
}

use Shape::*;

const EMPTY: Shape = Object(&[]);
const CHAT: Shape = Object(&[
    ("initial_state", OneOf(&["CHAT_STATE_UNSPECIFIED", "CHAT_STATE_OPEN", "CHAT_STATE_CLOSE"])),
    ("is_overlay", Flag),
    ("allow_pinning_messages", Flag),
    ("public_chat_enabled", Flag),
    ("roles_whitelist", Texts),
    ("private_chat_enabled", Flag),
    ("chat_title", Text),
    ("message_placeholder", Text),
    ("real_time_controls", Object(&[("can_disable_chat", Flag), ("can_block_user", Flag), ("can_hide_message", Flag)])),
]);
const HEADER: Shape = Object(&[("title", Text), ("description", Text)]);
const VIRTUAL_BACKGROUND: Shape = Object(&[(
    "background_media",
    ListOf(&Object(&[("url", Text), ("default", Flag), ("media_type", OneOf(&["UNSPECIFIED", "IMAGE", "VIDEO"]))])),
)]);
const NOISE_CANCELLATION: Shape = Object(&[("enabled_by_default", Flag)]);
const PREVIEW: Shape = Object(&[
    (
        "default",
        Object(&[(
            "elements",
            Object(&[
                ("preview_header", Object(&[("title", Text), ("sub_title", Text)])),
                (
                    "join_form",
                    Object(&[
                        (
                            "join_btn_type",
                            OneOf(&[
                                "JOIN_BTN_TYPE_UNSPECIFIED",
                                "JOIN_BTN_TYPE_JOIN_AND_GO_LIVE",
                                "JOIN_BTN_TYPE_JOIN_ONLY",
                            ]),
                        ),
                        ("join_btn_label", Text),
                        ("go_live_btn_label", Text),
                    ]),
                ),
                ("virtual_background", VIRTUAL_BACKGROUND),
                ("noise_cancellation", NOISE_CANCELLATION),
            ]),
        )]),
    ),
    ("skip_preview_screen", Flag),
]);
const CONFERENCING: Shape = Object(&[
    (
        "default",
        Object(&[(
            "elements",
            Object(&[
                ("chat", CHAT),
                ("participant_list", EMPTY),
                (
                    "video_tile_layout",
                    Object(&[(
                        "grid",
                        Object(&[
                            ("enable_local_tile_inset", Flag),
                            ("prominent_roles", Texts),
                            ("enable_spotlighting_peer", Flag),
                            ("tiles_in_view", Number),
                        ]),
                    )]),
                ),
                ("emoji_reactions", EMPTY),
                (
                    "on_stage_exp",
                    Object(&[
                        ("bring_to_stage_label", Text),
                        ("remove_from_stage_label", Text),
                        ("on_stage_role", Text),
                        ("off_stage_roles", Texts),
                        ("skip_preview_for_role_change", Flag),
                    ]),
                ),
                ("brb", EMPTY),
                ("header", HEADER),
                ("hand_raise", EMPTY),
                ("virtual_background", VIRTUAL_BACKGROUND),
                ("noise_cancellation", NOISE_CANCELLATION),
            ]),
        )]),
    ),
    (
        "hls_live_streaming",
        Object(&[(
            "elements",
            Object(&[
                ("chat", CHAT),
                ("participant_list", EMPTY),
                ("emoji_reactions", EMPTY),
                ("header", HEADER),
                ("hand_raise", EMPTY),
            ]),
        )]),
    ),
]);
const LEAVE: Shape = Object(&[(
    "default",
    Object(&[(
        "elements",
        Object(&[(
            "feedback",
            Object(&[
                ("title", Text),
                ("sub_title", Text),
                (
                    "ratings",
                    ListOf(&Object(&[
                        ("label", Text),
                        ("value", Number),
                        ("emoji", Text),
                        ("question", Text),
                        ("reasons", Texts),
                    ])),
                ),
                ("comment", Object(&[("label", Text), ("placeholder", Text)])),
                ("submit_btn_label", Text),
            ]),
        )]),
    )]),
)]);
const PALETTE: Shape = Object(&[
    ("primary_default", Text),
    ("primary_bright", Text),
    ("primary_dim", Text),
    ("primary_disabled", Text),
    ("on_primary_high", Text),
    ("on_primary_medium", Text),
    ("on_primary_low", Text),
    ("secondary_default", Text),
    ("secondary_bright", Text),
    ("secondary_dim", Text),
    ("secondary_disabled", Text),
    ("on_secondary_high", Text),
    ("on_secondary_medium", Text),
    ("on_secondary_low", Text),
    ("background_default", Text),
    ("background_dim", Text),
    ("surface_default", Text),
    ("surface_bright", Text),
    ("surface_brighter", Text),
    ("surface_dim", Text),
    ("on_surface_high", Text),
    ("on_surface_medium", Text),
    ("on_surface_low", Text),
    ("border_default", Text),
    ("border_bright", Text),
    ("alert_success", Text),
    ("alert_warning", Text),
    ("alert_error_default", Text),
    ("alert_error_bright", Text),
    ("alert_error_brighter", Text),
    ("alert_error_dim", Text),
]);
/// What a stored layout may hold (the ids and the role are the server's, and are ignored).
const LAYOUT: Shape = Object(&[
    ("id", Text),
    ("role", Text),
    ("role_id", Text),
    ("template_id", Text),
    ("app_id", Text),
    (
        "themes",
        ListOf(&Object(&[
            ("name", Text),
            ("default", Flag),
            ("palette", PALETTE),
            ("theme_type", OneOf(&["THEME_TYPE_UNSPECIFIED", "THEME_TYPE_DARK", "THEME_TYPE_LIGHT"])),
        ])),
    ),
    ("typography", Object(&[("font_family", Text)])),
    ("logo", Object(&[("url", Text)])),
    ("options", TextMap),
    ("screens", Object(&[("preview", PREVIEW), ("conferencing", CONFERENCING), ("leave", LEAVE)])),
]);

/// The largest layout stored (a layout with a few themes is a few KB).
pub const MAX_LAYOUT_BYTES: usize = 64 * 1024;

/// Checks a layout a client sent; every problem at once, each with its JSON path.
pub fn check_layout(layout: &Value) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    if layout.to_string().len() > MAX_LAYOUT_BYTES {
        errors.push(FieldError::new("layout", format!("larger than {MAX_LAYOUT_BYTES} bytes")));
    } else {
        check(layout, LAYOUT, "", &mut errors);
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

fn check(v: &Value, shape: Shape, path: &str, errors: &mut Vec<FieldError>) {
    let at = |p: &str| if p.is_empty() { "layout".to_owned() } else { p.to_owned() };
    if v.is_null() {
        return; // absent, as protobuf's JSON writes an unset field
    }
    let ok = match shape {
        Text => v.is_string(),
        Flag => v.is_boolean(),
        Number => v.is_number(),
        Texts => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
        OneOf(allowed) => v.as_str().is_some_and(|s| allowed.contains(&s)),
        TextMap => v.as_object().is_some_and(|m| m.values().all(Value::is_string)),
        ListOf(item) => match v.as_array() {
            Some(items) => {
                for (i, x) in items.iter().enumerate() {
                    check(x, *item, &format!("{}[{i}]", at(path)), errors);
                }
                true
            }
            None => false,
        },
        Object(fields) => match v.as_object() {
            Some(map) => {
                for (key, x) in map {
                    let p = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                    match fields.iter().find(|(name, _)| name == key) {
                        Some((_, s)) => check(x, *s, &p, errors),
                        None => errors.push(FieldError::new(p, "unknown field")),
                    }
                }
                true
            }
            None => false,
        },
    };
    if !ok {
        let want = match shape {
            Text => "must be a string".to_owned(),
            Flag => "must be true or false".to_owned(),
            Number => "must be a number".to_owned(),
            Texts => "must be a list of strings".to_owned(),
            OneOf(allowed) => format!("must be one of {}", allowed.join(", ")),
            TextMap => "must be an object of strings".to_owned(),
            ListOf(_) => "must be a list".to_owned(),
            Object(_) => "must be an object".to_owned(),
        };
        errors.push(FieldError::new(at(path), want));
    }
}

/// Whether `role` watches the room's HLS stream rather than joining the call: it publishes
/// nothing, and the template streams HLS.
fn watches_hls(template: &Template, role: &Role) -> bool {
    let streams_hls =
        template.parts.destinations.get("hlsDestinations").and_then(Value::as_object).is_some_and(|m| !m.is_empty());
    role.publish_params.allowed.is_empty() && streams_hls
}

/// 100ms's default layout for `role`.
pub fn default_layout(template: &Template, role: &Role) -> Value {
    let chat = json!({
        "public_chat_enabled": true,
        "private_chat_enabled": true,
        "chat_title": "Chat",
        "allow_pinning_messages": role.permissions.remove_others,
        "message_placeholder": "Send a message...",
        "roles_whitelist": [],
        "real_time_controls": {
            "can_disable_chat": role.permissions.remove_others,
            "can_block_user": role.permissions.remove_others,
            "can_hide_message": role.permissions.remove_others,
        },
    });
    let conferencing = if watches_hls(template, role) {
        json!({ "hls_live_streaming": { "elements": {
            "chat": chat,
            "participant_list": {},
            "emoji_reactions": {},
            "hand_raise": {},
            "header": { "title": "Live", "description": "" },
        } } })
    } else {
        json!({ "default": { "elements": {
            "chat": chat,
            "participant_list": {},
            "video_tile_layout": { "grid": {
                "enable_local_tile_inset": true,
                "prominent_roles": [],
                "enable_spotlighting_peer": true,
            } },
            "emoji_reactions": {},
            "brb": {},
            "hand_raise": {},
        } } })
    };
    let publishes = !role.publish_params.allowed.is_empty();
    let mut preview = json!({ "default": { "elements": {
        "preview_header": { "title": "Get Started", "sub_title": "Setup your audio and video before joining" },
        "join_form": {
            "join_btn_type": "JOIN_BTN_TYPE_JOIN_ONLY",
            "join_btn_label": "Join Now",
            "go_live_btn_label": "Go Live",
        },
    } } });
    if !publishes {
        preview["default"]["elements"]["preview_header"]["sub_title"] = json!("Enter your name to join");
    }
    json!({
        "typography": { "font_family": "Inter" },
        "themes": [{ "name": "Default", "default": true, "theme_type": "THEME_TYPE_DARK" }],
        "options": {},
        "screens": {
            "preview": preview,
            "conferencing": conferencing,
            "leave": { "default": { "elements": { "feedback": {
                "title": "How was your experience?",
                "ratings": [
                    { "value": 1, "emoji": "😔", "label": "Awful", "question": "What went wrong?" },
                    { "value": 2, "emoji": "☹️", "label": "Bad", "question": "What went wrong?" },
                    { "value": 3, "emoji": "🙂", "label": "Fair", "question": "What could be better?" },
                    { "value": 4, "emoji": "😄", "label": "Good", "question": "What did you like?" },
                    { "value": 5, "emoji": "🤩", "label": "Great", "question": "What did you like?" },
                ],
                "comment": { "label": "Tell us more", "placeholder": "Your feedback" },
                "submit_btn_label": "Submit Feedback",
            } } } },
        },
    })
}

/// The layout of `role_name` in `template` as the layout API answers it: the stored one or
/// the default, with its ids. `None` for a role the template does not have.
pub fn role_layout(template: &Template, role_name: &str) -> Option<Value> {
    let role = template.roles.get(role_name)?;
    let mut layout = template
        .parts
        .layouts
        .get(role_name)
        .filter(|l| l.is_object())
        .cloned()
        .unwrap_or_else(|| default_layout(template, role));
    let ids = json!({
        "id": layout_id(&template.id, role_name),
        "role": role_name,
        "role_id": role_name,
        "template_id": template.id,
        "app_id": template.workspace_id,
    });
    if let (Value::Object(l), Value::Object(ids)) = (&mut layout, ids) {
        l.extend(ids);
    }
    Some(layout)
}

/// A layout's id: its template and role (a template has one layout per role).
pub fn layout_id(template_id: &str, role: &str) -> String {
    format!("{template_id}.{role}")
}

/// The layouts of every role of `template`, `first_role`'s first (Prebuilt starts with the
/// first layout and switches when the peer's role is known).
pub fn template_layouts(template: &Template, first_role: Option<&str>) -> Vec<Value> {
    let mut names: Vec<&String> = template.roles.keys().collect();
    if let Some(first) = first_role {
        names.sort_by_key(|n| n.as_str() != first);
    }
    names.into_iter().filter_map(|n| role_layout(template, n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> Template {
        Template {
            id: "t1".into(),
            name: "default".into(),
            workspace_id: "ws".into(),
            roles: crate::role::default_roles(),
            parts: Default::default(),
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn every_default_layout_passes_its_own_check_and_carries_its_ids() {
        let t = template();
        for layout in template_layouts(&t, Some("guest")) {
            check_layout(&layout).unwrap_or_else(|e| panic!("{e:?}"));
            assert_eq!(layout["template_id"], "t1");
        }
        assert_eq!(template_layouts(&t, Some("guest"))[0]["role"], "guest", "the token's role first");
        let host = role_layout(&t, "host").unwrap();
        assert!(host.pointer("/screens/conferencing/default/elements/hand_raise").is_some());
        assert_eq!(role_layout(&t, "nobody"), None);
    }

    #[test]
    fn a_bad_layout_is_refused_with_every_problem_and_its_path() {
        let bad = json!({
            "screens": {
                "preview": { "default": { "elements": { "join_form": { "join_btn_type": "JUMP" } } } },
                "conferencing": { "default": { "elements": { "chat": { "public_chat_enabled": "yes" }, "whiteboard": {} } } },
            },
            "themes": [{ "palette": { "primary_default": 5 } }],
            "options": { "a": 1 },
            "extra": true,
        });
        let errors: Vec<String> = check_layout(&bad).unwrap_err().iter().map(ToString::to_string).collect();
        for want in [
            "screens.preview.default.elements.join_form.join_btn_type: must be one of",
            "screens.conferencing.default.elements.chat.public_chat_enabled: must be true or false",
            "screens.conferencing.default.elements.whiteboard: unknown field",
            "themes[0].palette.primary_default: must be a string",
            "options: must be an object of strings",
            "extra: unknown field",
        ] {
            assert!(errors.iter().any(|e| e.starts_with(want)), "{want} not in {errors:#?}");
        }
        assert_eq!(check_layout(&json!([1])).unwrap_err()[0].to_string(), "layout: must be an object");
        let huge = json!({ "options": { "x": "y".repeat(MAX_LAYOUT_BYTES) } });
        assert!(check_layout(&huge).is_err());
    }
}

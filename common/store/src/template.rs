//! Templates as the REST API sees them: a set of roles plus room settings, destinations, plugins
//! and the recording configuration, stored per workspace (here), with the checks 100ms applies
//! (field-level errors, in `check.rs`).
//!
//! Input is JSON in the 100ms shape. A role may be partial: what it leaves out is filled from
//! [`role_defaults`] ("sane defaults", as 100ms says), then the whole role is checked. Every
//! problem is reported at once, each with the JSON path of the field at fault:
//!
//! ```
//! use store::template::{TemplateInput, FieldError};
//! let input: TemplateInput = serde_json::from_value(serde_json::json!({
//!     "name": "webinar",
//!     "roles": {
//!         "speaker": {"publishParams": {"allowed": ["audio", "video"]}},
//!         "viewer": {"subscribeParams": {"subscribeToRoles": ["speaker", "ghost"]}}
//!     }
//! })).unwrap();
//! let errors = input.check().unwrap_err();
//! assert_eq!(errors, vec![FieldError::new("roles.viewer.subscribeParams.subscribeToRoles[1]", "unknown role \"ghost\"")]);
//! ```

mod check;
pub mod layout;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::db::{Row, vals};
use crate::ids::new_id;
use crate::page::{self, Listing, Page, PageQuery};
use crate::role::Role;
use crate::time::unix_now;
use crate::{Store, StoreError};

pub use check::{
    CheckedTemplate, FieldError, MAX_NAME, TemplateInput, check_parts, check_role, check_role_references, merge_json,
    role_defaults, role_from_input,
};

/// A template's parts besides its roles, kept as JSON in the 100ms shape (they are read by
/// features that come later: recording, streaming, plugins).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateParts {
    #[serde(default = "empty_object")]
    pub settings: Value,
    #[serde(default = "empty_object")]
    pub destinations: Value,
    #[serde(default = "empty_object")]
    pub plugins: Value,
    /// `/templates/{id}/recordings`: an array of at most one recording config.
    #[serde(default = "empty_array")]
    pub recordings: Value,
    /// Prebuilt layouts set for roles (`layout.rs`), by role name; a role not here gets the
    /// default.
    #[serde(default = "empty_object")]
    pub layouts: Value,
}

impl Default for TemplateParts {
    fn default() -> TemplateParts {
        TemplateParts {
            settings: empty_object(),
            destinations: empty_object(),
            plugins: empty_object(),
            recordings: empty_array(),
            layouts: empty_object(),
        }
    }
}

impl TemplateParts {
    /// The config a compositor job of `kind` follows: the recording config for a composite,
    /// the first HLS or RTMP destination for a stream (100ms keeps `maxDuration` and
    /// `autoStopTimeout` there).
    pub fn job_config(&self, kind: &str) -> Option<&Value> {
        let first_dest =
            |key: &str| self.destinations.get(key).and_then(Value::as_object).and_then(|m| m.values().next());
        match kind {
            crate::recording::COMPOSITE => self.recordings.get(0),
            crate::recording::HLS => first_dest("hlsDestinations"),
            crate::recording::RTMP => first_dest("rtmpDestinations"),
            _ => None,
        }
    }

    /// How long a job of `kind` keeps the room's session open after its last peer left
    /// (`autoStopTimeout`, seconds; the composite's is under `compositeRecording.browserComposite`):
    /// a peer who comes back within it finds the job still running. `None` (unset or 0): the job
    /// stops with the session, when the last peer leaves.
    pub fn auto_stop_timeout(&self, kind: &str) -> Option<std::time::Duration> {
        let config = self.job_config(kind)?;
        let config = if kind == crate::recording::COMPOSITE {
            config.pointer("/compositeRecording/browserComposite")?
        } else {
            config
        };
        config.get("autoStopTimeout").and_then(Value::as_u64).filter(|&s| s > 0).map(std::time::Duration::from_secs)
    }
}

pub(crate) fn empty_object() -> Value {
    json!({})
}
pub(crate) fn empty_array() -> Value {
    json!([])
}

/// A template: the roles a room's peers may have, plus the room settings (see the module guide).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Template {
    pub id: String,
    pub name: String,
    pub workspace_id: String,
    pub roles: BTreeMap<String, Role>,
    pub parts: TemplateParts,
    /// Unix seconds.
    pub created_at: i64,
    pub updated_at: i64,
}

impl Store {
    /// The template `template_id`, with its roles.
    pub fn template(&self, template_id: &str) -> Result<Option<Template>, StoreError> {
        let sql = format!("SELECT {TEMPLATE_COLS} FROM templates WHERE id = ?1");
        self.conn.query_opt(&sql, &vals![template_id])?.as_ref().map(template_row).transpose()
    }

    /// The template `template_id` if it belongs to `workspace_id` (another workspace's template
    /// is as good as absent).
    pub fn template_in(&self, workspace_id: &str, template_id: &str) -> Result<Option<Template>, StoreError> {
        Ok(self.template(template_id)?.filter(|t| t.workspace_id == workspace_id))
    }

    /// A page of a workspace's templates, oldest first.
    pub fn templates(&self, workspace_id: &str, page: &Page) -> Result<Listing<Template>, StoreError> {
        let q = PageQuery {
            table: "templates",
            cols: TEMPLATE_COLS,
            key: "rowid",
            id: "id",
            filters: "workspace_id = ?1",
            args: vals![workspace_id].into(),
            row: template_row,
            last: |t| &t.id,
        };
        page::query(&self.conn, q, page)
    }

    /// Saves a checked template: `id: None` creates one, or overwrites the workspace's template of
    /// the same name (100ms: create by name overwrites); `Some(id)` replaces that template whole.
    pub fn save_template(
        &self,
        workspace_id: &str,
        id: Option<&str>,
        t: &CheckedTemplate,
    ) -> Result<Template, StoreError> {
        let roles = serde_json::to_string(&t.roles)?;
        let parts = serde_json::to_string(&t.parts)?;
        let now = unix_now();
        // Layouts are set on their own (`/v2/templates/{id}/layouts`): replacing a template
        // keeps them.
        let keeping_layouts = |tx: &crate::db::Conn, id: &str| -> Result<String, StoreError> {
            let old = tx.query_opt("SELECT parts FROM templates WHERE id = ?1", &vals![id])?;
            let Some(old) = old else { return Ok(parts.clone()) };
            let old: TemplateParts = serde_json::from_str(&old.text(0)?)?;
            Ok(serde_json::to_string(&TemplateParts { layouts: old.layouts, ..t.parts.clone() })?)
        };
        let id = self.conn.with_tx(|tx| {
            let same_name = tx
                .query_opt(
                    "SELECT id FROM templates WHERE workspace_id = ?1 AND name = ?2",
                    &vals![workspace_id, &t.name],
                )?
                .map(|r| r.text(0))
                .transpose()?;
            Ok(match (id, same_name) {
                (Some(id), Some(other)) if other != id => return Err(StoreError::TemplateNameTaken(t.name.clone())),
                (Some(id), _) => {
                    let n = tx.execute(
                        "UPDATE templates SET name = ?1, roles = ?2, parts = ?3, updated_at = ?4 WHERE id = ?5 AND workspace_id = ?6",
                        &vals![&t.name, &roles, &keeping_layouts(tx, id)?, now, id, workspace_id],
                    )?;
                    if n == 0 {
                        return Err(StoreError::NoTemplate(id.into()));
                    }
                    id.to_owned()
                }
                (None, Some(existing)) => {
                    tx.execute(
                        "UPDATE templates SET roles = ?1, parts = ?2, updated_at = ?3 WHERE id = ?4",
                        &vals![&roles, &keeping_layouts(tx, &existing)?, now, &existing],
                    )?;
                    existing
                }
                (None, None) => {
                    let id = new_id();
                    tx.execute(
                        "INSERT INTO templates (id, workspace_id, name, roles, parts, created_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                        &vals![&id, workspace_id, &t.name, &roles, &parts, now],
                    )?;
                    id
                }
            })
        })?;
        self.template(&id)?.ok_or(StoreError::NoTemplate(id))
    }

    /// Replaces a template's roles (after the caller checked them against each other).
    pub fn set_template_roles(
        &self,
        template_id: &str,
        roles: &BTreeMap<String, Role>,
    ) -> Result<Template, StoreError> {
        let json = serde_json::to_string(roles)?;
        let n = self.conn.execute(
            "UPDATE templates SET roles = ?1, updated_at = ?2 WHERE id = ?3",
            &vals![json, unix_now(), template_id],
        )?;
        if n == 0 {
            return Err(StoreError::NoTemplate(template_id.into()));
        }
        self.template(template_id)?.ok_or_else(|| StoreError::NoTemplate(template_id.into()))
    }

    /// Replaces a template's settings, destinations, plugins and recordings.
    pub fn set_template_parts(&self, template_id: &str, parts: &TemplateParts) -> Result<Template, StoreError> {
        let json = serde_json::to_string(parts)?;
        let n = self.conn.execute(
            "UPDATE templates SET parts = ?1, updated_at = ?2 WHERE id = ?3",
            &vals![json, unix_now(), template_id],
        )?;
        if n == 0 {
            return Err(StoreError::NoTemplate(template_id.into()));
        }
        self.template(template_id)?.ok_or_else(|| StoreError::NoTemplate(template_id.into()))
    }

    /// The template new rooms of `workspace_id` get when none is named.
    pub fn default_template(&self, workspace_id: &str) -> Result<Template, StoreError> {
        let row =
            self.conn.query_opt("SELECT default_template_id FROM workspaces WHERE id = ?1", &vals![workspace_id])?;
        let row = row.ok_or_else(|| StoreError::NoWorkspace(workspace_id.into()))?;
        let id = row.opt_text(0)?;
        let id = id.ok_or_else(|| StoreError::NoTemplate(format!("default of workspace {workspace_id}")))?;
        self.template(&id)?.ok_or(StoreError::NoTemplate(id))
    }
}

const TEMPLATE_COLS: &str = "id, name, workspace_id, roles, parts, created_at, updated_at";

fn template_row(r: &Row) -> Result<Template, StoreError> {
    Ok(Template {
        id: r.text(0)?,
        name: r.text(1)?,
        workspace_id: r.text(2)?,
        roles: serde_json::from_str(&r.text(3)?)?,
        parts: serde_json::from_str(&r.text(4)?)?,
        created_at: r.int(5)?,
        updated_at: r.int(6)?,
    })
}

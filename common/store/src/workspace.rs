//! Workspaces (tenants) and their credentials: the key pairs that sign a workspace's tokens.

use crate::db::{Row, vals};
use crate::ids::{new_id, random_secret};
use crate::template::TemplateParts;
use crate::time::unix_now;
use crate::{Store, StoreError, role};

/// Name of the workspace created on first run.
pub const DEFAULT_WORKSPACE: &str = "default";

/// A tenant (its rooms, templates, sessions, webhooks), seen through one of its key pairs: the
/// access key and secret that sign its tokens.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub id: String,
    pub name: String,
    pub access_key: String,
    pub secret: String,
}

impl Store {
    /// The workspace named [`DEFAULT_WORKSPACE`]; on first run, creates it with a fresh access
    /// key and secret and the default template ([`role::default_roles`]).
    pub fn ensure_default_workspace(&self) -> Result<Workspace, StoreError> {
        match self.create_workspace(DEFAULT_WORKSPACE) {
            Ok(ws) => Ok(ws),
            // Another process (or an earlier run) made it: read theirs.
            Err(StoreError::WorkspaceExists(_)) => self
                .workspace_named(DEFAULT_WORKSPACE)?
                .ok_or_else(|| StoreError::NoWorkspace(DEFAULT_WORKSPACE.into())),
            Err(e) => Err(e),
        }
    }

    /// Creates workspace `name` with a first key pair and the default template.
    pub fn create_workspace(&self, name: &str) -> Result<Workspace, StoreError> {
        let ws = Workspace { id: new_id(), name: name.to_owned(), access_key: new_id(), secret: random_secret() };
        let template_id = new_id();
        let roles = serde_json::to_string(&role::default_roles())?;
        let parts = serde_json::to_string(&TemplateParts::default())?;
        let now = unix_now();
        self.conn.with_tx(|tx| {
            let inserted = tx.execute(
                "INSERT INTO workspaces (id, name, access_key, secret, default_template_id, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
                &vals![&ws.id, &ws.name, &ws.access_key, &ws.secret, &template_id, now],
            )?;
            if inserted == 0 {
                return Err(StoreError::WorkspaceExists(name.into()));
            }
            tx.execute(
                "INSERT INTO credentials (access_key, workspace_id, secret, created_at) VALUES (?1, ?2, ?3, ?4)",
                &vals![&ws.access_key, &ws.id, &ws.secret, now],
            )?;
            tx.execute(
                "INSERT INTO templates (id, workspace_id, name, roles, parts, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                &vals![&template_id, &ws.id, role::DEFAULT_TEMPLATE_NAME, roles, parts, now],
            )?;
            Ok(())
        })?;
        Ok(ws)
    }

    /// Adds a key pair to a workspace (keys are rotated by adding one, moving the apps to it,
    /// then revoking the old one with [`Store::revoke_credential`]; until then both work).
    pub fn add_credential(&self, workspace_id: &str) -> Result<Workspace, StoreError> {
        let mut ws = self.workspace(workspace_id)?.ok_or_else(|| StoreError::NoWorkspace(workspace_id.into()))?;
        ws.access_key = new_id();
        ws.secret = random_secret();
        self.conn.execute(
            "INSERT INTO credentials (access_key, workspace_id, secret, created_at) VALUES (?1, ?2, ?3, ?4)",
            &vals![&ws.access_key, &ws.id, &ws.secret, unix_now()],
        )?;
        Ok(ws)
    }

    /// A workspace's key pairs, oldest first (access keys and creation times: never the
    /// secrets, which are shown once, when made).
    pub fn credentials(&self, workspace_id: &str) -> Result<Vec<Credential>, StoreError> {
        let rows = self.conn.query(
            "SELECT access_key, created_at FROM credentials WHERE workspace_id = ?1 ORDER BY created_at, rowid",
            &vals![workspace_id],
        )?;
        rows.iter().map(|r| Ok(Credential { access_key: r.text(0)?, created_at: r.int(1)? })).collect()
    }

    /// Revokes a key pair: tokens it signed are refused from the next check on (every check
    /// reads the keys). The workspace keeps at least one; if the revoked one was its first, the
    /// newest remaining one takes its place.
    pub fn revoke_credential(&self, workspace_id: &str, access_key: &str) -> Result<(), StoreError> {
        self.conn.with_tx(|tx| {
            let n = tx
                .query_one("SELECT COUNT(*) FROM credentials WHERE workspace_id = ?1", &vals![workspace_id])?
                .int(0)?;
            let mine = tx
                .query_opt(
                    "SELECT access_key FROM credentials WHERE workspace_id = ?1 AND access_key = ?2",
                    &vals![workspace_id, access_key],
                )?
                .is_some();
            if !mine {
                return Err(StoreError::NoCredential(access_key.into()));
            }
            if n <= 1 {
                return Err(StoreError::LastCredential(access_key.into()));
            }
            tx.execute("DELETE FROM credentials WHERE access_key = ?1", &vals![access_key])?;
            tx.execute(
                "UPDATE workspaces SET (access_key, secret) = (SELECT c.access_key, c.secret FROM credentials c
                     WHERE c.workspace_id = ?1 ORDER BY c.created_at DESC, c.rowid DESC LIMIT 1)
                 WHERE id = ?1 AND access_key = ?2",
                &vals![workspace_id, access_key],
            )?;
            Ok(())
        })
    }

    /// Every workspace, with its first key pair, oldest first.
    pub fn workspaces(&self) -> Result<Vec<Workspace>, StoreError> {
        let rows = self.conn.query("SELECT id, name, access_key, secret FROM workspaces ORDER BY rowid", &[])?;
        rows.iter().map(workspace_row).collect()
    }

    /// The workspace `id`, with its first key pair.
    pub fn workspace(&self, id: &str) -> Result<Option<Workspace>, StoreError> {
        self.conn
            .query_opt("SELECT id, name, access_key, secret FROM workspaces WHERE id = ?1", &vals![id])?
            .as_ref()
            .map(workspace_row)
            .transpose()
    }

    /// The workspace named `name`, with its first key pair.
    pub fn workspace_named(&self, name: &str) -> Result<Option<Workspace>, StoreError> {
        self.conn
            .query_opt("SELECT id, name, access_key, secret FROM workspaces WHERE name = ?1", &vals![name])?
            .as_ref()
            .map(workspace_row)
            .transpose()
    }

    /// The workspace owning `access_key`, seen through that key pair.
    pub fn workspace_by_access_key(&self, access_key: &str) -> Result<Option<Workspace>, StoreError> {
        self.conn
            .query_opt(
                "SELECT w.id, w.name, c.access_key, c.secret FROM credentials c JOIN workspaces w ON w.id = c.workspace_id
                 WHERE c.access_key = ?1",
                &vals![access_key],
            )?
            .as_ref()
            .map(workspace_row)
            .transpose()
    }
}

/// A key pair as listed: its access key and when it was made (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub access_key: String,
    pub created_at: i64,
}

pub(crate) fn workspace_row(r: &Row) -> Result<Workspace, StoreError> {
    Ok(Workspace { id: r.text(0)?, name: r.text(1)?, access_key: r.text(2)?, secret: r.text(3)? })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    #[test]
    fn a_revoked_key_signs_nothing_and_the_last_key_stays() {
        for b in backends("ws-revoke") {
            let store = &b.store;
            let first = store.ensure_default_workspace().unwrap();
            let token = crate::token::mint_management_token(&first, Duration::from_secs(600), SystemTime::now());
            assert!(matches!(
                store.revoke_credential(&first.id, &first.access_key),
                Err(crate::StoreError::LastCredential(_))
            ));
            let second = store.add_credential(&first.id).unwrap();
            let keys: Vec<String> = store.credentials(&first.id).unwrap().into_iter().map(|c| c.access_key).collect();
            assert_eq!(keys, [first.access_key.clone(), second.access_key.clone()], "{}", b.name);
            assert!(crate::token::verify_management_token(store, &token, SystemTime::now()).is_ok());
            store.revoke_credential(&first.id, &first.access_key).unwrap();
            assert!(matches!(
                crate::token::verify_management_token(store, &token, SystemTime::now()),
                Err(crate::token::TokenError::UnknownAccessKey)
            ));
            // The workspace is now seen through the remaining key.
            assert_eq!(store.workspace(&first.id).unwrap().unwrap().access_key, second.access_key, "{}", b.name);
            assert!(matches!(store.revoke_credential(&first.id, "not-a-key"), Err(crate::StoreError::NoCredential(_))));
        }
    }

    use crate::test_support::backends;

    #[test]
    fn default_workspace_is_created_once_and_survives_reopen() {
        for b in backends("ws") {
            let store = &b.store;
            let ws = store.ensure_default_workspace().unwrap();
            assert_eq!(ws.name, "default");
            assert_eq!(ws.access_key.len(), 24);
            assert_eq!(ws.secret.len(), 64);
            let again = store.ensure_default_workspace().unwrap();
            assert_eq!((again.id.clone(), again.secret.clone()), (ws.id.clone(), ws.secret.clone()));
            let store = b.reopen();
            let reopened = store.ensure_default_workspace().unwrap();
            assert_eq!(reopened.access_key, ws.access_key, "{}", b.name);
            assert_eq!(store.workspace_by_access_key(&ws.access_key).unwrap().unwrap().id, ws.id);
            assert!(store.workspace_by_access_key("nope").unwrap().is_none());
            let t = store.default_template(&ws.id).unwrap();
            assert_eq!(t.name, "default");
            assert_eq!(t.roles.keys().collect::<Vec<_>>(), ["audio-only", "guest", "host"]);
            assert_eq!(store.template(&t.id).unwrap().unwrap().roles, t.roles);
            assert!(store.template("0000").unwrap().is_none());
            assert_eq!(store.workspaces().unwrap().len(), 1);
        }
    }
}

//! Test helper: the same test body on every backend. [`backends`] gives a fresh SQLite store,
//! plus a fresh PostgreSQL database when `STORE_TEST_POSTGRES_URL` names a server (each test
//! gets its own database, dropped afterwards). Without the variable the PostgreSQL run is
//! skipped, and says so.

use crate::Store;

/// One store to run a test against; drops its PostgreSQL database when dropped.
#[derive(Debug)]
pub(crate) struct Backend {
    pub store: Store,
    /// What [`Store::connect`] takes to open the same database again.
    pub location: String,
    pub name: &'static str,
    admin: Option<(String, String)>,
}

impl Backend {
    /// Another connection to the same database.
    pub fn reopen(&self) -> Store {
        Store::connect(&self.location).unwrap()
    }

    /// PostgreSQL only: the server ends every connection to this backend's database (as a
    /// server restart would), waiting up to 5 s for each to be gone.
    pub fn terminate_connections(&self) {
        let Some((url, db)) = &self.admin else { return };
        let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
        c.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[db],
        )
        .unwrap();
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some((url, db)) = &self.admin
            && let Ok(mut c) = postgres::Client::connect(url, postgres::NoTls)
        {
            // FORCE: ends this backend's own connections (and any reopened ones) first.
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
        }
    }
}

/// `url` with its database name replaced by `db`.
pub(crate) fn with_dbname(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, format!("?{q}")),
        None => (rest, String::new()),
    };
    let host = rest.split('/').next().unwrap();
    format!("{scheme}://{host}/{db}{query}")
}

/// A fresh PostgreSQL database on the test server, if one is configured.
pub(crate) fn postgres_url(tag: &str) -> Option<(String, String, String)> {
    let Ok(url) = std::env::var("STORE_TEST_POSTGRES_URL") else {
        eprintln!("{tag}: PostgreSQL skipped: STORE_TEST_POSTGRES_URL unset");
        return None;
    };
    let db = format!("store_{}_{}", tag.replace(|c: char| !c.is_ascii_alphanumeric(), "_"), crate::new_id());
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
    Some((with_dbname(&url, &db), url, db))
}

/// A fresh store on each backend.
pub(crate) fn backends(tag: &str) -> Vec<Backend> {
    let dir = std::env::temp_dir().join(format!("store-test-{tag}-{}-{}", std::process::id(), crate::new_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("platform.db").to_string_lossy().into_owned();
    let mut out = vec![Backend { store: Store::connect(&path).unwrap(), location: path, name: "sqlite", admin: None }];
    if let Some((location, admin_url, db)) = postgres_url(tag) {
        let store = Store::connect(&location).unwrap_or_else(|e| {
            // Drop the database just made before failing the test.
            if let Ok(mut c) = postgres::Client::connect(&admin_url, postgres::NoTls) {
                let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
            }
            panic!("{location}: {e}")
        });
        out.push(Backend { store, location, name: "postgres", admin: Some((admin_url, db)) });
    }
    out
}

#[test]
fn database_names_replace_the_url_path() {
    assert_eq!(with_dbname("postgres://u@h:5/postgres", "x"), "postgres://u@h:5/x");
    assert_eq!(with_dbname("postgresql://u:p@h/db?sslmode=disable", "y"), "postgresql://u:p@h/y?sslmode=disable");
}

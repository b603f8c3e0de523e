//! The first start makes a self-signed certificate (valid for localhost: the test client checks
//! it) and later starts reuse it, as they reuse the workspace credentials.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Daemon, TempDir, https_request};

#[test]
fn self_signed_certificate_and_credentials_survive_a_restart() {
    let tmp = TempDir::new("cert");
    let data = tmp.path().join("data");
    std::fs::create_dir(tmp.path().join("bin")).unwrap();
    let bin = tmp.path().join("bin");
    let demo = tmp.path().join("none");

    let mut d = Daemon::start(&data, &bin, &demo, &[]);
    assert_eq!(d.get("/api/config").status, 200, "the client trusts the generated cert for localhost");
    let cert = std::fs::read(data.join("tls/cert.pem")).unwrap();
    let key = std::fs::read(data.join("tls/key.pem")).unwrap();
    let creds = std::fs::read(data.join("credentials.json")).unwrap();
    assert_eq!(std::fs::metadata(data.join("tls/key.pem")).unwrap().permissions().mode() & 0o777, 0o600);
    let st = d.stop();
    assert!(st.success(), "control exits cleanly on SIGTERM: {st}");
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap();
    assert!(log.contains("created a self-signed certificate"), "{log}");
    assert!(log.contains("sha256"), "the fingerprint is logged");

    let old_cert = tmp.path().join("old-cert.pem");
    std::fs::write(&old_cert, &cert).unwrap();
    let d = Daemon::start(&data, &bin, &demo, &[]);
    assert_eq!(std::fs::read(data.join("tls/cert.pem")).unwrap(), cert);
    assert_eq!(std::fs::read(data.join("tls/key.pem")).unwrap(), key);
    assert_eq!(std::fs::read(data.join("credentials.json")).unwrap(), creds);
    // The server presents the very certificate the first run made.
    assert_eq!(https_request(d.port, &old_cert, "GET", "/api/config", None).status, 200);
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap();
    assert_eq!(log.matches("created a self-signed certificate").count(), 1, "{log}");
}

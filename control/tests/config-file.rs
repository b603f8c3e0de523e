//! `control --config <file>`: the daemon runs with the file's settings, and its command line
//! wins where both say something.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use common::{Daemon, TempDir, real_bin_dir};

#[test]
fn the_daemon_runs_with_its_config_file_and_the_command_line_overrides_it() {
    let tmp = TempDir::new("config-file");
    let config = tmp.path().join("control.toml");
    // The command line's --data-dir (the harness gives one) must win over the file's.
    std::fs::write(&config, "data-dir = \"/nonexistent/platform\"\nrate-limit-room-code = 1\n").unwrap();
    let data = tmp.path().join("data");
    let d = Daemon::start_with_args(
        &data,
        &real_bin_dir(),
        &tmp.path().join("no-demo"),
        &[],
        &["--config", config.to_str().unwrap()],
    );
    assert!(data.join("platform.db").exists(), "the command line's data directory is used");
    // The file's limit: one demo token request a minute from this address, then 429.
    let body = r#"{"room":"cfg","user":"u","role":"host"}"#;
    assert_eq!(d.post("/api/token", body).status, 200);
    let second = d.post("/api/token", body);
    assert_eq!(second.status, 429, "{}", second.text());

    // A bad file stops the daemon before it starts, naming the key.
    std::fs::write(&config, "rate-limit-room-cod = 1\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_control"))
        .args(["--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown key `rate-limit-room-cod`"), "{err}");
}

//! `--config <file>`: the daemon's flags in one TOML file, for a service that starts with a
//! fixed command line (`deploy/control.service`).
//!
//! Each key is a flag's long name without the dashes (`router-port = 40000`,
//! `announce-ip = ["203.0.113.7"]`, `no-turn = true`); the values are the flag's, typed: a
//! string, a number, `true` for a switch (`false` leaves it off), an array for a flag that may
//! be repeated. A flag given on the command line overrides the file's key, a list included.
//! `deploy/control.toml` lists every key with its default and meaning.
//!
//! The file is turned into command-line flags placed before the command line's own, so clap
//! checks and parses both the same way, with the same messages.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use clap::CommandFactory;

use crate::cli::Cli;

/// Why a config file cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("--config needs a file")]
    NoPath,
    #[error("cannot read the config file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("the config file {path} is not valid TOML: {reason}")]
    Syntax { path: String, reason: String },
    #[error(
        "the config file {path} has an unknown key `{key}`; its keys are the daemon's flags without the dashes ({known})"
    )]
    UnknownKey { path: String, key: String, known: String },
    #[error("in the config file {path}, `{key}`: {reason}")]
    Value { path: String, key: String, reason: String },
}

/// What a flag of the daemon takes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Switch,
    One,
    Many,
}

/// The daemon's flags (long name → what it takes), from the command-line definition itself.
fn flags() -> BTreeMap<String, Kind> {
    let cmd = Cli::command();
    cmd.get_arguments()
        .filter_map(|a| {
            let long = a.get_long()?;
            let kind = match a.get_action() {
                clap::ArgAction::SetTrue => Kind::Switch,
                clap::ArgAction::Append => Kind::Many,
                _ => Kind::One,
            };
            Some((long.to_string(), kind))
        })
        .filter(|(name, _)| !matches!(name.as_str(), "config" | "help" | "version"))
        .collect()
}

/// The command line with the config file's flags put before its own. A command line without
/// `--config`, or one for a subcommand, is returned as it is.
pub fn expand(args: Vec<OsString>) -> Result<Vec<OsString>, ConfigError> {
    let mut path = None;
    for (i, a) in args.iter().enumerate().skip(1) {
        let a = a.to_string_lossy();
        if a == "--config" {
            path = Some(args.get(i + 1).ok_or(ConfigError::NoPath)?.clone());
            break;
        }
        if let Some(p) = a.strip_prefix("--config=") {
            path = Some(OsString::from(p));
            break;
        }
    }
    let Some(path) = path else { return Ok(args) };
    let path = Path::new(&path);
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::Read { path: path.display().to_string(), reason: e.to_string() })?;
    let given: Vec<String> = args.iter().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    let from_file = flags_of(&text, &path.display().to_string(), &given)?;
    let mut out = Vec::with_capacity(args.len() + from_file.len());
    out.extend(args.first().cloned());
    out.extend(from_file.into_iter().map(OsString::from));
    out.extend(args.into_iter().skip(1));
    Ok(out)
}

/// The flags a config file's text sets, less those `given` on the command line.
fn flags_of(text: &str, path: &str, given: &[String]) -> Result<Vec<String>, ConfigError> {
    let table: toml::Table =
        text.parse().map_err(|e: toml::de::Error| ConfigError::Syntax { path: path.into(), reason: e.to_string() })?;
    let flags = flags();
    let mut out = Vec::new();
    for (key, value) in &table {
        let Some(&kind) = flags.get(key) else {
            return Err(ConfigError::UnknownKey {
                path: path.into(),
                key: key.clone(),
                known: flags.keys().map(String::as_str).collect::<Vec<_>>().join(", "),
            });
        };
        let flag = format!("--{key}");
        if given.iter().any(|g| *g == flag || g.starts_with(&format!("{flag}="))) {
            continue;
        }
        let bad = |reason: &str| ConfigError::Value { path: path.into(), key: key.clone(), reason: reason.into() };
        match (kind, value) {
            (Kind::Switch, toml::Value::Boolean(on)) => {
                if *on {
                    out.push(flag);
                }
            }
            (Kind::Switch, _) => return Err(bad("a switch: true or false")),
            (Kind::Many, toml::Value::Array(items)) => {
                for item in items {
                    out.push(flag.clone());
                    out.push(scalar(item).ok_or_else(|| bad("the list holds a table or a list"))?);
                }
            }
            (_, v) => {
                out.push(flag);
                out.push(scalar(v).ok_or_else(|| bad("one value (a string or a number) is expected"))?);
            }
        }
    }
    Ok(out)
}

/// A TOML value as a flag's argument.
fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Datetime(d) => Some(d.to_string()),
        toml::Value::Array(_) | toml::Value::Table(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn run_args(config: &str, command_line: &[&str]) -> Result<crate::cli::RunArgs, String> {
        let dir = std::env::temp_dir().join(format!("control-config-{}-{}", std::process::id(), config.len()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let path = dir.join("control.toml");
        std::fs::write(&path, config).map_err(|e| e.to_string())?;
        let mut args: Vec<OsString> = vec!["control".into(), "--config".into(), path.clone().into()];
        args.extend(command_line.iter().map(OsString::from));
        let expanded = expand(args).map_err(|e| e.to_string());
        let _ = std::fs::remove_dir_all(&dir);
        Cli::try_parse_from(expanded?).map(|c| c.run).map_err(|e| e.to_string())
    }

    #[test]
    fn the_files_keys_set_the_flags_and_the_command_line_wins() {
        let config = r#"
            router-port = 41000
            public-host = "media.example.com"
            announce-ip = ["203.0.113.7", "2001:db8::7"]
            no-turn = true
            open-demo-tokens = false
            rate-limit-init = 100
        "#;
        let a = run_args(config, &[]).unwrap();
        assert_eq!(
            (a.router_port, a.public_host.as_str(), a.no_turn, a.open_demo_tokens),
            (41000, "media.example.com", true, false)
        );
        assert_eq!(a.announce_ips.len(), 2);
        assert_eq!(a.rate_limit_init, 100);
        assert!(a.config.is_some(), "the file is named in the arguments");
        // The command line overrides a value and a whole list.
        let a = run_args(config, &["--router-port", "42000", "--announce-ip=198.51.100.1"]).unwrap();
        assert_eq!(a.router_port, 42000);
        assert_eq!(a.announce_ips, ["198.51.100.1".parse::<std::net::IpAddr>().unwrap()]);
        // Unset keys keep their defaults.
        assert_eq!(a.turn_port, 3478);
    }

    #[test]
    fn a_bad_file_says_what_and_where() {
        let e = run_args("router-prot = 1\n", &[]).unwrap_err();
        assert!(e.contains("unknown key `router-prot`") && e.contains("router-port"), "{e}");
        let e = run_args("no-turn = \"yes\"\n", &[]).unwrap_err();
        assert!(e.contains("`no-turn`: a switch"), "{e}");
        let e = run_args("router-port = [1, 2]\n", &[]).unwrap_err();
        assert!(e.contains("`router-port`: one value"), "{e}");
        let e = run_args("router-port = \n", &[]).unwrap_err();
        assert!(e.contains("not valid TOML"), "{e}");
        // A value of the wrong shape is clap's error, naming the flag.
        let e = run_args("router-port = 70000\n", &[]).unwrap_err();
        assert!(e.contains("--router-port"), "{e}");
        let e = expand(vec!["control".into(), "--config".into(), "/nonexistent/control.toml".into()]).unwrap_err();
        assert!(e.to_string().contains("cannot read the config file /nonexistent/control.toml"), "{e}");
        assert_eq!(expand(vec!["control".into(), "--config".into()]).unwrap_err(), ConfigError::NoPath);
    }

    /// deploy/control.toml is the documented list of every flag: each key it sets or shows
    /// commented out is a flag, every flag is there, and the file is a usable config.
    #[test]
    fn the_example_config_lists_every_flag_and_is_usable() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/control.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let shown: Vec<&str> = text
            .lines()
            .map(|l| l.trim_start_matches('#').trim())
            .filter_map(|l| l.split_once(" = ").map(|(k, _)| k))
            .filter(|k| !k.contains(' '))
            .collect();
        let flags = flags();
        for key in &shown {
            assert!(flags.contains_key(*key), "deploy/control.toml shows `{key}`, which is no flag");
        }
        for flag in flags.keys() {
            assert!(shown.contains(&flag.as_str()), "deploy/control.toml does not show `{flag}`");
        }
        // Everything commented out, uncommented, is a valid config too (the defaults shown).
        let uncommented: String = text
            .lines()
            .map(|l| l.strip_prefix("# ").filter(|r| r.contains(" = ") && !r.contains(". ")).unwrap_or(l))
            .map(|l| format!("{l}\n"))
            .collect();
        for t in [text.as_str(), uncommented.as_str()] {
            let args = flags_of(t, "deploy/control.toml", &[]).unwrap();
            let mut argv = vec!["control".to_string()];
            argv.extend(args);
            let cli = Cli::try_parse_from(&argv);
            assert!(cli.is_ok(), "{:?}", cli.err().map(|e| e.to_string()));
        }
    }

    #[test]
    fn a_command_line_without_config_is_left_alone() {
        let args: Vec<OsString> = vec!["control".into(), "token".into(), "--room".into(), "r".into()];
        assert_eq!(expand(args.clone()).unwrap(), args);
    }
}

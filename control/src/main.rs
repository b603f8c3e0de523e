//! `control`: the daemon (see the crate docs and docs/control.md), or one of its subcommands
//! (`token`, `management-token`, `workspace ...`).

use std::io::IsTerminal;

use clap::Parser;
use control::cli::{Cli, Command};

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        // Colours only for a person watching; a log file gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let args = match control::config_file::expand(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("control: {e}");
            std::process::exit(2);
        }
    };
    let cli = Cli::parse_from(args);
    let result = match cli.command {
        Some(Command::Token(args)) => control::print_token(&args),
        Some(Command::ManagementToken(args)) => control::print_management_token(&args),
        Some(Command::Workspace(cmd)) => control::workspace_command(&cmd),
        None => match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
            Ok(rt) => rt.block_on(control::run(cli.run)),
            Err(e) => {
                eprintln!("control: cannot start the async runtime: {e}");
                std::process::exit(1);
            }
        },
    };
    if let Err(e) = result {
        tracing::error!("{e}");
        eprintln!("control: {e}");
        std::process::exit(1);
    }
}

//! Router shell.

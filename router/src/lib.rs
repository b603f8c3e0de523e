//! Router shell.

pub mod io;

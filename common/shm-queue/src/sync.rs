//! The atomics the ring protocol uses: std's in normal builds, loom's under `--cfg loom`, so the
//! model checker explores the very code that runs in production.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

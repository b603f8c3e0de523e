//! The router process: thread-per-core shards around the sans-IO [`router_engine`].
//!
//! - [`io`]: UDP I/O for one shard, io_uring (multishot receive into a provided-buffer ring,
//!   batched sends) or recvmmsg/sendmmsg, with UDP GSO.
//! - [`shard`]: one pinned thread per core owning a socket and an engine; commands arrive on
//!   a channel and wake the loop.
//! - [`handle`]: the whole router ([`Router`]): its shards, which shard a command goes to,
//!   and its events fanned out to subscribers.
//! - [`control_socket`]: the local control channel (JSON lines on a Unix socket).
//! - [`link`]: the shared-memory link to signaling (same commands, binary frames).
//! - [`metrics`]: the latency histogram and CPU time the shards report for operators.
//! - [`config`]: the TOML configuration.
//! - [`ceiling`]: the machine's forwarding ceiling with the same I/O backend (the `udp-ceiling`
//!   binary, run by `scripts/bench.sh`), the yardstick for the router's speed.
//!
//! See docs/router.md for the data path and the direct API.

pub mod ceiling;
pub mod config;
pub mod control_socket;
pub mod handle;
pub mod io;
pub mod link;
pub mod metrics;
pub mod shard;
pub mod tap;

pub use handle::Router;

/// The old home of [`Router`] and the control socket, before they were split: kept so that
/// `router::control::Router` (integration tests, signaling's tests) still resolves.
pub mod control {
    pub use crate::control_socket::{SocketGuard, serve};
    pub use crate::handle::Router;
}

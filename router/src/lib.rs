//! The router process: thread-per-core shards around the sans-IO [`router_engine`].
//!
//! - [`io`]: UDP I/O for one shard, io_uring (multishot receive into a provided-buffer ring,
//!   batched sends) or recvmmsg/sendmmsg, with UDP GSO.
//! - [`shard`]: one pinned thread per core owning a socket and an engine; commands arrive on
//!   a channel and wake the loop.
//! - [`control`]: the whole router and its local control channel (JSON lines on a Unix socket).
//! - [`link`]: the shared-memory link to signaling (same commands, binary frames).
//! - [`metrics`]: the latency histogram and CPU time the shards report for operators.
//! - [`config`]: the TOML configuration.
//! - [`ceiling`]: the machine's forwarding ceiling with the same I/O backend (the `udp-ceiling`
//!   binary, run by `scripts/bench.sh`), the yardstick for the router's speed.
//!
//! See docs/router.md for the data path and the direct API.

pub mod ceiling;
pub mod config;
pub mod control;
pub mod io;
pub mod link;
pub mod metrics;
pub mod shard;
pub mod tap;

//! The router process: thread-per-core shards around the sans-IO [`router_engine`].
//!
//! - [`io`]: UDP I/O for one shard, recvmmsg/sendmmsg (the default) or io_uring (multishot
//!   receive into a provided-buffer ring, batched sends), with UDP GSO.
//! - [`shard`]: one pinned thread per core owning a socket and an engine; commands arrive on
//!   a channel, wake the loop and are applied to the engine between receive passes.
//! - [`stream_peers`]: clients a shard reaches over a TCP connection (ICE-TCP, TURN): what
//!   their threads hand the shard, and the outbox the shard writes their datagrams into.
//! - [`ice_tcp`]: ICE over TCP, RFC 6544 passive candidates on each shard's port.
//! - [`turn`]: TURN over TCP and TLS, relaying into the shards without a second socket.
//! - [`handle`]: the whole router ([`Router`]): its shards, which shard a command goes to,
//!   and its events fanned out to subscribers.
//! - [`control_socket`]: the local control channel (JSON lines on a Unix socket).
//! - [`link`]: the shared-memory link to signaling (same commands, binary frames).
//! - [`tap`]: each shard's ring of the media tap to the recorder.
//! - [`metrics`]: the latency histogram and CPU time the shards report for operators.
//! - [`config`]: the TOML configuration.
//! - [`ceiling`]: the machine's forwarding ceiling with the same I/O backend (the `udp-ceiling`
//!   binary, run by `scripts/bench.sh`), the yardstick for the router's speed.
//!
//! # How a command flows
//!
//! A [`schema::RouterCommand`] arrives on the control socket (JSON) or the link (a binary
//! frame); [`Router::request`] sends it to the shard its id (or `shard` parameter) names; the
//! shard runs it on its engine between two receive passes and answers a typed
//! [`schema::RouterResponse`]. The link sends that back framed; the control socket writes its
//! payload as plain JSON ([`Router::call`]).
//!
//! ```
//! use router::Router;
//! use router::config::Config;
//! use schema::RouterCommand;
//! use schema::api::TransportInfo;
//!
//! let cfg = Config { shards: 1, base_port: 0, pin: false, ..Config::default() };
//! let router = Router::start(&cfg)?;
//! let info: TransportInfo = router.request(RouterCommand::CreateTransport { shard: None })?.try_into()?;
//! assert_eq!(info.id.shard(), 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! See docs/router.md for the data path and the direct API.

pub mod candidates;
pub mod ceiling;
pub mod config;
pub mod control_socket;
pub mod handle;
pub mod ice_tcp;
pub mod io;
pub mod link;
pub mod metrics;
pub mod shard;
pub mod stream_peers;
pub mod tap;
pub mod turn;

pub use handle::Router;

//! The router's media engine: everything a WebRTC SFU shard does to a packet, with no I/O.
//!
//! (The full guide is written as the engine takes shape; see docs/router.md.)

pub mod codec;
pub mod ice;
pub mod nack;
pub mod rtcp;
pub mod rtp;
pub mod rtx_cache;
pub mod srtp;
pub mod stats;
pub mod stun;
pub mod twcc;

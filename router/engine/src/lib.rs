//! The router's media engine: everything a WebRTC SFU shard does to a packet, with no I/O.
//!
//! (The full guide is written as the engine takes shape; see docs/router.md.)

pub mod codec;
pub mod ice;
pub mod rtcp;
pub mod rtp;
pub mod srtp;
pub mod stun;
pub mod twcc;

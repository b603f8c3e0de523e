//! The direct API of a shard: the commands signaling sends (no SDP here), what they return,
//! and the events the engine reports.
//!
//! The message types live in the `schema` crate (`schema::api`, `schema::ids`, ...), shared
//! with every process that talks to the router; name them there. Only [`EngineConfig`], which
//! never leaves the router process, is defined here.

use std::net::SocketAddr;
use std::time::Duration;

use schema::api::IceCandidate;
use serde::{Deserialize, Serialize};

/// Tunables of a shard's engine.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct EngineConfig {
    /// The shard's index: the top byte of every id it hands out, so ids are unique across a
    /// router's shards and a command finds its shard from the id alone.
    pub shard: u8,
    /// The addresses clients send to (the shard's UDP socket and its ICE-TCP listener, at the
    /// bound address or the public ones in front of it), put in every transport's info. The
    /// engine answers a check from any address whatever it announced (ICE-lite).
    pub candidates: Vec<IceCandidate>,
    /// A transport with no valid ICE check for this long is closed (RFC 7675 says 30 s).
    #[serde(with = "millis")]
    pub consent_timeout: Duration,
    /// At most one PLI per producer per window, however many subscribers ask.
    #[serde(with = "millis")]
    pub pli_throttle: Duration,
    /// Round-trip time assumed for NACK pacing until one is measured.
    #[serde(with = "millis")]
    pub default_rtt: Duration,
    /// Interval of RTCP sender and receiver reports.
    #[serde(with = "millis")]
    pub rtcp_interval: Duration,
    /// Interval of [`schema::api::Event::Stats`]; zero disables them.
    #[serde(with = "millis")]
    pub stats_interval: Duration,
    /// Packets kept per producer for retransmission.
    pub rtx_cache_packets: usize,
    /// A simulcast layer no consumer has needed for this long is stopped at the publisher
    /// (by capping its send rate with REMB, see `uplink`); zero never stops one.
    #[serde(with = "millis")]
    pub stop_unneeded_layers_after: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            shard: 0,
            candidates: vec![IceCandidate::udp(SocketAddr::from(([127, 0, 0, 1], 0)))],
            consent_timeout: Duration::from_secs(30),
            pli_throttle: Duration::from_millis(500),
            default_rtt: Duration::from_millis(100),
            rtcp_interval: Duration::from_secs(1),
            stats_interval: Duration::from_secs(5),
            rtx_cache_packets: 512,
            stop_unneeded_layers_after: Duration::from_secs(30),
        }
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

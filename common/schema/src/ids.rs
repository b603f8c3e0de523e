//! Small typed ids for the objects of a router shard: transports, producers, consumers.
//!
//! The router's engine hands them out from one counter per shard and never reuses them, so a
//! stale id held by signaling after a close can only miss, never hit a newer object. The top
//! byte is the shard's index, so a command finds its shard from the id alone ([`TransportId::shard`]).
//! On the wire an id is a bare JSON number.
//!
//! ```
//! use schema::ids::TransportId;
//! let t = TransportId(0x0200_0007);
//! assert_eq!(t.shard(), 2);
//! assert_eq!(serde_json::to_string(&t).unwrap(), "33554439");
//! ```

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u32);

        impl $name {
            /// The index of the shard that owns this object: the id's top byte.
            pub fn shard(self) -> u8 {
                (self.0 >> 24) as u8
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

id_type!(
    /// One ICE+DTLS+SRTP transport: a peer connection's bundle.
    TransportId
);
id_type!(
    /// One incoming media track on a transport.
    ProducerId
);
id_type!(
    /// One outgoing copy of a producer on another transport.
    ConsumerId
);

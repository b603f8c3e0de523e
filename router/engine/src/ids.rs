//! Small typed ids for the objects of a shard (defined in `schema::ids`), and the hash maps
//! keyed by them.
//!
//! Ids are handed out from one counter per engine and never reused, so a stale id held by
//! signaling after a close can only miss, never hit a newer object.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A fast hasher for small integer and socket-address keys on the packet path.
///
/// The keys are chosen by us (ids) or bounded per transport (SSRCs, addresses of validated
/// ICE pairs), so hash flooding is not a concern that SipHash would need to cover here.
#[derive(Debug, Default, Clone, Copy)]
pub struct FastHasher(u64);

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64)
    }
    fn write_u16(&mut self, i: u16) {
        self.add(i as u64)
    }
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64)
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i)
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64)
    }
}

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        // The FxHash step: rotate, xor, multiply by an odd constant.
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// A `HashMap` with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

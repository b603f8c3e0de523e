//! Per-SSRC state of an SRTP session: packet index tracking, replay windows, and the small
//! bounded map that holds them.
//!
//! The map is a sorted `Vec` searched by binary search: a session has a handful of SSRCs (a
//! subscriber's outbound session a few hundred at most), lookups happen per packet and
//! insertions only when a stream starts, so a sorted array beats a hash map on both speed and
//! memory, and it allocates only when a new SSRC appears.

use super::SrtpError;

/// Packets remembered behind the highest index received (RFC 3711 3.3.2 asks for at least 64).
pub(crate) const REPLAY_WINDOW: u64 = 128;

/// Highest packet index seen on one SSRC plus a bitmap of which of the `REPLAY_WINDOW` indices
/// below it have been accepted. The sending side uses it only for `highest`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ReplayWindow {
    /// `None` until the first packet is committed.
    highest: Option<u64>,
    /// Bit `d` set: index `highest - d` was accepted.
    bits: u128,
}

impl ReplayWindow {
    /// RFC 3711 3.3.1: the 48-bit index `ROC || SEQ` for a received 16-bit sequence number,
    /// guessing the rollover counter as the one that puts `seq` nearest the highest index seen.
    /// The first packet of a stream takes ROC 0. `None` when the guess falls outside
    /// `0..2^48` (a packet from "before" the stream began, or the index space is exhausted).
    pub(crate) fn estimate_rtp_index(&self, seq: u16) -> Option<u64> {
        let Some(highest) = self.highest else {
            return Some(u64::from(seq));
        };
        let roc = (highest >> 16) as i64;
        let s_l = highest as u16;
        let v = if s_l < 0x8000 {
            if seq > s_l && seq - s_l > 0x8000 { roc - 1 } else { roc }
        } else if s_l - 0x8000 > seq {
            roc + 1
        } else {
            roc
        };
        if !(0..=i64::from(u32::MAX)).contains(&v) {
            return None;
        }
        Some(((v as u64) << 16) | u64::from(seq))
    }

    /// `Err(Replay)` if `index` was already accepted or is too old to tell.
    pub(crate) fn check(&self, index: u64) -> Result<(), SrtpError> {
        let Some(highest) = self.highest else {
            return Ok(());
        };
        if index > highest {
            return Ok(());
        }
        let age = highest - index;
        if age >= REPLAY_WINDOW || (self.bits >> age) & 1 == 1 {
            return Err(SrtpError::Replay);
        }
        Ok(())
    }

    /// Records `index` as accepted; call only once the packet has been authenticated.
    pub(crate) fn commit(&mut self, index: u64) {
        match self.highest {
            None => {
                self.highest = Some(index);
                self.bits = 1;
            }
            Some(highest) if index > highest => {
                let shift = index - highest;
                self.bits = if shift >= REPLAY_WINDOW { 0 } else { self.bits << shift };
                self.bits |= 1;
                self.highest = Some(index);
            }
            Some(highest) => {
                let age = highest - index;
                if age < REPLAY_WINDOW {
                    self.bits |= 1 << age;
                }
            }
        }
    }

    /// Rollover counter of the highest index seen (0 before the first packet).
    pub(crate) fn roc(&self) -> u32 {
        self.highest.map_or(0, |h| (h >> 16) as u32)
    }
}

/// A bounded map from SSRC to per-stream state, sorted by SSRC.
#[derive(Debug)]
pub(crate) struct SsrcMap<T> {
    entries: Vec<(u32, T)>,
    max: usize,
}

impl<T: Copy + Default> SsrcMap<T> {
    pub(crate) fn new(max: usize) -> Self {
        Self { entries: Vec::new(), max }
    }

    pub(crate) fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Where `ssrc` is (`Ok`) or would go (`Err`); errors if it is absent and the map is full.
    /// The slot stays valid until the map is next modified.
    pub(crate) fn slot(&self, ssrc: u32) -> Result<Slot, SrtpError> {
        match self.entries.binary_search_by_key(&ssrc, |e| e.0) {
            Ok(i) => Ok(Slot::Present(i)),
            Err(_) if self.entries.len() >= self.max => Err(SrtpError::TooManySsrcs(self.max)),
            Err(i) => Ok(Slot::Vacant(i)),
        }
    }

    /// The state in `slot`, or the default for a new stream.
    pub(crate) fn get(&self, slot: Slot) -> T {
        match slot {
            Slot::Present(i) => self.entries[i].1,
            Slot::Vacant(_) => T::default(),
        }
    }

    /// Stores `value` in `slot` (which must come from `slot()` with no change since).
    pub(crate) fn put(&mut self, slot: Slot, ssrc: u32, value: T) {
        match slot {
            Slot::Present(i) => self.entries[i].1 = value,
            Slot::Vacant(i) => self.entries.insert(i, (ssrc, value)),
        }
    }

    pub(crate) fn lookup(&self, ssrc: u32) -> Option<&T> {
        self.entries.binary_search_by_key(&ssrc, |e| e.0).ok().map(|i| &self.entries[i].1)
    }

    pub(crate) fn remove(&mut self, ssrc: u32) -> bool {
        match self.entries.binary_search_by_key(&ssrc, |e| e.0) {
            Ok(i) => {
                self.entries.remove(i);
                true
            }
            Err(_) => false,
        }
    }
}

/// A position in an [`SsrcMap`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Slot {
    Present(usize),
    Vacant(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_packet_takes_roc_zero() {
        let w = ReplayWindow::default();
        assert_eq!(w.estimate_rtp_index(65535), Some(65535));
        assert_eq!(w.roc(), 0);
    }

    #[test]
    fn index_guess_follows_wrap_and_late_packets() {
        let mut w = ReplayWindow::default();
        w.commit(65530);
        // Forward across the wrap: ROC + 1.
        assert_eq!(w.estimate_rtp_index(3), Some(65536 + 3));
        w.commit(65536 + 3);
        assert_eq!(w.roc(), 1);
        // A late packet from before the wrap: ROC - 1.
        assert_eq!(w.estimate_rtp_index(65533), Some(65533));
        // A packet ahead within the same ROC.
        assert_eq!(w.estimate_rtp_index(1000), Some(65536 + 1000));
    }

    #[test]
    fn packet_before_stream_start_has_no_index() {
        let mut w = ReplayWindow::default();
        w.commit(10);
        // Seq 65000 behind seq 10 would need ROC -1.
        assert_eq!(w.estimate_rtp_index(65000), None);
    }

    #[test]
    fn window_rejects_duplicates_and_too_old() {
        let mut w = ReplayWindow::default();
        for i in [100u64, 102, 101, 300] {
            w.check(i).expect("fresh");
            w.commit(i);
        }
        assert_eq!(w.check(300), Err(SrtpError::Replay));
        // 300 - 127 = 173 is the oldest still tracked.
        assert_eq!(w.check(173), Ok(()));
        assert_eq!(w.check(172), Err(SrtpError::Replay));
        assert_eq!(w.check(102), Err(SrtpError::Replay));
        w.commit(250);
        assert_eq!(w.check(250), Err(SrtpError::Replay));
        assert_eq!(w.check(249), Ok(()));
    }

    #[test]
    fn map_is_bounded_and_sorted() {
        let mut m: SsrcMap<u32> = SsrcMap::new(3);
        for ssrc in [30u32, 10, 20] {
            let s = m.slot(ssrc).expect("room");
            m.put(s, ssrc, ssrc * 2);
        }
        assert_eq!(m.slot(40).err(), Some(SrtpError::TooManySsrcs(3)));
        // Existing SSRCs are still found when full.
        let s = m.slot(20).expect("present");
        assert_eq!(m.get(s), 40);
        assert_eq!(m.lookup(10), Some(&20));
        assert!(m.remove(10));
        assert!(m.slot(40).is_ok());
        assert_eq!(m.len(), 2);
    }
}

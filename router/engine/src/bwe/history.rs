//! What was sent and what arrived: the sent-packet history feedback is matched against, and the acknowledged rate.

use std::collections::VecDeque;

use super::HISTORY_MAX_PACKETS;

/// Acknowledged rate window, in arrival time.
const ACKED_WINDOW_US: i64 = 500_000;

/// No acknowledged rate from a shorter span: a handful of packets says little.
const ACKED_MIN_SPAN_US: i64 = 100_000;

/// An arrival this far before the newest one is a clock jump, not reordering.
const ACKED_RESET_US: i64 = 10_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    /// A gap in the sequence numbers we were told about.
    NotSent,
    Sent,
    Reported,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct SentPacket {
    /// Microseconds since the estimator was created.
    pub(super) send_us: i64,
    pub(super) size: u32,
    /// Probe cluster the packet was sent in; 0 for none.
    pub(super) cluster: u16,
    pub(super) status: Status,
}

pub(super) enum Lookup {
    Unknown,
    Duplicate,
    Fresh(SentPacket, i64),
}

/// Sent packets by unwrapped sequence number, consecutive from `first`.
#[derive(Debug, Default)]
pub(super) struct SentHistory {
    pub(super) packets: VecDeque<SentPacket>,
    /// Unwrapped sequence number of `packets[0]`.
    pub(super) first: i64,
    /// Highest unwrapped sequence number sent, kept when the history empties.
    pub(super) highest: Option<i64>,
}

impl SentHistory {
    pub(super) fn unwrap_seq(&self, seq: u16) -> Option<i64> {
        let h = self.highest?;
        Some(h + i64::from(seq.wrapping_sub(h as u16) as i16))
    }

    /// Records a sent packet; returns its unwrapped sequence number.
    pub(super) fn insert(&mut self, seq: u16, packet: SentPacket, oldest_us: i64) -> i64 {
        let s = self.unwrap_seq(seq).unwrap_or(i64::from(seq));
        match self.highest {
            Some(h) if s <= h => {
                // A late report of an earlier seq: fill its gap if still kept.
                if let Some(slot) = usize::try_from(s - self.first).ok().and_then(|i| self.packets.get_mut(i))
                    && slot.status == Status::NotSent
                {
                    *slot = packet;
                }
                return s;
            }
            Some(h) if !self.packets.is_empty() && s - h <= HISTORY_MAX_PACKETS as i64 => {
                let gap = SentPacket { status: Status::NotSent, cluster: 0, size: 0, ..packet };
                for _ in h + 1..s {
                    self.packets.push_back(gap);
                }
            }
            _ => {
                self.packets.clear();
                self.first = s;
            }
        }
        self.packets.push_back(packet);
        self.highest = Some(s);
        while self.packets.len() > HISTORY_MAX_PACKETS || self.packets.front().is_some_and(|p| p.send_us < oldest_us) {
            self.packets.pop_front();
            self.first += 1;
        }
        s
    }

    pub(super) fn report(&mut self, seq: u16) -> Lookup {
        let Some(s) = self.unwrap_seq(seq) else { return Lookup::Unknown };
        let Some(p) = usize::try_from(s - self.first).ok().and_then(|i| self.packets.get_mut(i)) else {
            return Lookup::Unknown;
        };
        match p.status {
            Status::NotSent => Lookup::Unknown,
            Status::Reported => Lookup::Duplicate,
            Status::Sent => {
                p.status = Status::Reported;
                Lookup::Fresh(*p, s)
            }
        }
    }
}

/// Bytes that arrived, over a window of arrival time.
#[derive(Debug, Default)]
pub(super) struct AckedRate {
    pub(super) window: VecDeque<(i64, u32)>,
    pub(super) bytes: u64,
    pub(super) latest_us: i64,
}

impl AckedRate {
    pub(super) fn push(&mut self, arrival_us: i64, size: u32) {
        if !self.window.is_empty() {
            if arrival_us < self.latest_us - ACKED_RESET_US || arrival_us > self.latest_us + ACKED_RESET_US {
                self.window.clear();
                self.bytes = 0;
            } else if arrival_us < self.latest_us - ACKED_WINDOW_US {
                return; // too late to matter
            }
        }
        if self.window.is_empty() {
            self.latest_us = arrival_us;
        }
        self.window.push_back((arrival_us, size));
        self.bytes += u64::from(size);
        self.latest_us = self.latest_us.max(arrival_us);
        while let Some(&(at, s)) = self.window.front() {
            if at >= self.latest_us - ACKED_WINDOW_US {
                break;
            }
            self.window.pop_front();
            self.bytes -= u64::from(s);
        }
    }

    pub(super) fn bps(&self) -> Option<f64> {
        let &(first_us, first_size) = self.window.front()?;
        let span = self.latest_us - first_us;
        if self.window.len() < 2 || span < ACKED_MIN_SPAN_US {
            return None;
        }
        // Without the first packet's bytes: they arrived before the span starts.
        Some((self.bytes - u64::from(first_size)) as f64 * 8e6 / span as f64)
    }
}

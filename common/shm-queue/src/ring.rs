//! The ring: control block layout, framing, and the index / wake-up protocol.
//!
//! One ring is a control block of three cache lines followed by `capacity` data bytes
//! (a power of two). Indices are free-running `u64` byte counts; a position is
//! `index & (capacity - 1)`, so they never wrap in practice and `head - tail` is the fill.
//!
//! ```text
//! line 0 (producer writes): head, producer pid, closed flag, start time
//! line 1 (consumer writes): tail, consumer pid, closed flag, start time
//! line 2 (wake-up):         sleeping flag, futex sequence word
//! data:                     frames, 8-byte aligned: [len: u32][record bytes][pad to 8]
//! ```
//!
//! A frame that would straddle the end of the data area is preceded by a padding marker
//! (`len == u32::MAX`) that fills the rest of the area; the frame then starts at position 0.
//! Frames are contiguous, so a record is always one slice. The producer publishes a frame by
//! storing `head` with Release after writing it; the consumer loads `head` with Acquire, so it
//! never sees a partial (torn) record, and frees space by storing `tail` with Release only
//! after it is done with the bytes.
//!
//! Wake-up without a syscall per message: the consumer announces sleep by swapping `sleeping`
//! to 1, re-checks `head`, and only then waits on the futex word `seq`. The producer swaps
//! `sleeping` back to 0 after every publish, and bumps `seq` and calls futex-wake only when it
//! was 1. Every access to `sleeping` is a read-modify-write, so they are totally ordered and
//! each one synchronizes with the one before: either the producer's swap comes first and the
//! consumer's re-check sees the new `head`, or the consumer's comes first and the producer
//! sees 1 and wakes it. The consumer read `seq` before announcing, so a bump that lands
//! between its re-check and its futex-wait makes the wait return at once (the loom model in
//! this file checks exactly this).
//!
//! Everything read from the shared memory is validated: a corrupt or hostile peer yields
//! [`RecvError::Corrupt`], never a panic or an out-of-bounds access.

use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::{RecvError, SendError};

pub(crate) const CACHE_LINE: usize = 64;
/// Bytes of the length prefix of each frame.
pub(crate) const FRAME_HEADER: u64 = 4;
/// Frames start on 8-byte boundaries, so a length prefix never straddles the end.
pub(crate) const FRAME_ALIGN: u64 = 8;
/// Length value marking padding up to the end of the data area.
pub(crate) const PAD: u32 = u32::MAX;
/// Size of a ring's control block in the segment.
pub(crate) const RING_CTL_SIZE: usize = 3 * CACHE_LINE;

/// Frame size of a record of `len` bytes.
pub(crate) fn frame_len(len: u64) -> u64 {
    (FRAME_HEADER + len + FRAME_ALIGN - 1) & !(FRAME_ALIGN - 1)
}

/// The largest record a ring of `capacity` bytes can take: half the ring, so an empty ring
/// always accepts a maximal record wherever its indices stand (padding at most wastes the other
/// half).
pub(crate) fn max_record_for(capacity: u64) -> u64 {
    capacity / 2 - FRAME_HEADER
}

/// One side's liveness fields, on that side's own line.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Side {
    /// Process id of the attached side; 0 before anyone attached.
    pub pid: AtomicU32,
    /// Set when the side's handle is dropped (clean close).
    pub closed: AtomicU32,
    /// The process's start time (clock ticks since boot, from /proc), so a recycled pid is not
    /// mistaken for the peer; 0 if unknown.
    pub start_time: AtomicU64,
}

#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct ProducerLine {
    pub head: AtomicU64,
    pub side: Side,
}

#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct ConsumerLine {
    pub tail: AtomicU64,
    pub side: Side,
}

#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct WakeLine {
    /// 1 while the consumer is (about to be) asleep on `seq`.
    pub sleeping: AtomicU32,
    /// The futex word: bumped by every wake-up.
    pub seq: AtomicU32,
    #[cfg(loom)]
    pub parker: crate::futex::Parker,
}

/// A ring's control block. In normal builds it lives in the shared mapping (zero-filled by the
/// kernel, which is a valid all-zero state of every field); under loom it is allocated.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct RingCtl {
    pub producer: ProducerLine,
    pub consumer: ConsumerLine,
    pub wake: WakeLine,
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<RingCtl>() == RING_CTL_SIZE);

#[cfg(loom)]
impl RingCtl {
    pub(crate) fn new() -> Self {
        let side = || Side { pid: AtomicU32::new(0), closed: AtomicU32::new(0), start_time: AtomicU64::new(0) };
        RingCtl {
            producer: ProducerLine { head: AtomicU64::new(0), side: side() },
            consumer: ConsumerLine { tail: AtomicU64::new(0), side: side() },
            wake: WakeLine {
                sleeping: AtomicU32::new(0),
                seq: AtomicU32::new(0),
                parker: crate::futex::Parker::default(),
            },
        }
    }
}

/// Where a ring is: its control block and data area. Whoever builds one keeps the memory
/// mapped for as long as any copy is used (the endpoints hold the mapping's `Arc`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RingRef {
    pub ctl: *const RingCtl,
    pub data: *mut u8,
    pub capacity: u64,
    pub max_record: u64,
}

impl RingRef {
    fn ctl(&self) -> &RingCtl {
        // SAFETY: by the construction contract of RingRef, `ctl` points to a live, aligned
        // RingCtl for as long as this RingRef is used; all its fields are atomics, so shared
        // references are fine even with the peer writing concurrently.
        unsafe { &*self.ctl }
    }

    fn mask(&self) -> u64 {
        self.capacity - 1
    }

    /// Writes a length prefix at data position `pos`.
    fn write_u32(&self, pos: u64, value: u32) {
        debug_assert!(pos + FRAME_HEADER <= self.capacity && pos.is_multiple_of(FRAME_ALIGN));
        // SAFETY: callers pass an 8-aligned position inside the data area (positions are
        // masked indices, multiples of FRAME_ALIGN, and capacity is a multiple of it), so the 4
        // bytes are in bounds and aligned; the producer owns [head, tail + capacity).
        unsafe { self.data.add(pos as usize).cast::<u32>().write_volatile(value) }
    }

    /// Reads a length prefix at data position `pos`.
    fn read_u32(&self, pos: u64) -> u32 {
        debug_assert!(pos + FRAME_HEADER <= self.capacity && pos.is_multiple_of(FRAME_ALIGN));
        // SAFETY: as in write_u32: in bounds and aligned; the producer published these bytes
        // before the head we acquired and does not touch them until we release the tail.
        unsafe { self.data.add(pos as usize).cast::<u32>().read_volatile() }
    }

    /// The bytes `[pos, pos + len)` of the data area, for the producer to fill.
    #[allow(clippy::mut_from_ref)] // the producer core is the unique writer of this range
    fn slice_mut(&self, pos: u64, len: u64) -> &mut [u8] {
        debug_assert!(pos + len <= self.capacity);
        // SAFETY: in bounds (checked by the caller's frame arithmetic); the range lies between
        // head and tail + capacity, which only the single producer touches until it publishes
        // head, and the returned borrow ends before that.
        unsafe { std::slice::from_raw_parts_mut(self.data.add(pos as usize), len as usize) }
    }

    /// The bytes `[pos, pos + len)` of the data area, for the consumer to read.
    fn slice(&self, pos: u64, len: u64) -> &[u8] {
        debug_assert!(pos + len <= self.capacity);
        // SAFETY: in bounds (validated by the consumer against capacity); the range lies in
        // [tail, head), published by the producer and not rewritten until the consumer
        // releases tail, which happens after this borrow ends.
        unsafe { std::slice::from_raw_parts(self.data.add(pos as usize), len as usize) }
    }
}

/// The producing half of a ring: owns the head index.
#[derive(Debug)]
pub(crate) struct ProducerCore {
    ring: RingRef,
    head: u64,
    cached_tail: u64,
}

// SAFETY: the raw pointers in RingRef point into memory that is shared by design and accessed
// through atomics and the SPSC protocol; the owner of the core keeps it mapped.
unsafe impl Send for ProducerCore {}

impl ProducerCore {
    /// A producer continuing from the ring's current head. There must be one producer per ring
    /// (the endpoint layer enforces it through the pid slot).
    pub(crate) fn new(ring: RingRef) -> Self {
        let ctl = ring.ctl();
        let head = ctl.producer.head.load(Ordering::Acquire);
        let cached_tail = ctl.consumer.tail.load(Ordering::Acquire);
        ProducerCore { ring, head, cached_tail }
    }

    pub(crate) fn ctl(&self) -> &RingCtl {
        self.ring.ctl()
    }

    pub(crate) fn max_record(&self) -> usize {
        self.ring.max_record as usize
    }

    /// Appends one record of `len` bytes written by `fill`, or fails without blocking.
    pub(crate) fn try_push_with(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) -> Result<(), SendError> {
        let cap = self.ring.capacity;
        let len64 = len as u64;
        if len64 > self.ring.max_record {
            return Err(SendError::TooLarge { len, max: self.ring.max_record as usize });
        }
        let frame = frame_len(len64);
        let pos = self.head & self.ring.mask();
        let to_end = cap - pos;
        let need = if frame <= to_end { frame } else { to_end + frame };
        // Saturating: a corrupt tail from the peer reads as "full", never as an overflow.
        let free = |tail: u64| cap.saturating_sub(self.head.wrapping_sub(tail));
        if need > free(self.cached_tail) {
            self.cached_tail = self.ctl().consumer.tail.load(Ordering::Acquire);
            if need > free(self.cached_tail) {
                return Err(SendError::Full);
            }
        }
        let mut head = self.head;
        if frame > to_end {
            self.ring.write_u32(pos, PAD);
            head += to_end;
        }
        let pos = head & self.ring.mask();
        // len <= max_record < capacity / 2 <= 2^31, so it fits and is never PAD.
        self.ring.write_u32(pos, len as u32);
        fill(self.ring.slice_mut(pos + FRAME_HEADER, len64));
        head += frame;
        self.head = head;
        self.ctl().producer.head.store(head, Ordering::Release);
        if self.ctl().wake.sleeping.swap(0, Ordering::AcqRel) != 0 {
            self.wake();
        }
        Ok(())
    }

    /// Bumps the futex word and wakes the consumer (also used on close).
    pub(crate) fn wake(&self) {
        let wake = &self.ctl().wake;
        wake.seq.fetch_add(1, Ordering::AcqRel);
        #[cfg(not(loom))]
        crate::futex::wake(&wake.seq);
        #[cfg(loom)]
        crate::futex::wake(&wake.seq, &wake.parker);
    }

    /// Whether the consumer has announced it is asleep (diagnostics and benches).
    pub(crate) fn consumer_sleeping(&self) -> bool {
        self.ctl().wake.sleeping.load(Ordering::Acquire) != 0
    }

    /// Bytes in flight, as far as the producer knows.
    pub(crate) fn len_bytes(&self) -> u64 {
        self.head.wrapping_sub(self.ctl().consumer.tail.load(Ordering::Acquire)).min(self.ring.capacity)
    }
}

/// The consuming half of a ring: owns the tail index.
#[derive(Debug)]
pub(crate) struct ConsumerCore {
    ring: RingRef,
    tail: u64,
    cached_head: u64,
    /// Where the record returned by `peek` ends (the tail to release on `commit`).
    pending_tail: Option<u64>,
}

// SAFETY: as for ProducerCore.
unsafe impl Send for ConsumerCore {}

impl ConsumerCore {
    pub(crate) fn new(ring: RingRef) -> Self {
        let ctl = ring.ctl();
        let tail = ctl.consumer.tail.load(Ordering::Acquire);
        ConsumerCore { ring, tail, cached_head: tail, pending_tail: None }
    }

    pub(crate) fn ctl(&self) -> &RingCtl {
        self.ring.ctl()
    }

    /// The next record, without consuming it; `commit` releases it. `Ok(None)` when empty.
    pub(crate) fn peek(&mut self) -> Result<Option<&[u8]>, RecvError> {
        loop {
            if self.tail == self.cached_head {
                self.cached_head = self.ctl().producer.head.load(Ordering::Acquire);
                if self.tail == self.cached_head {
                    return Ok(None);
                }
            }
            let avail = self.cached_head.wrapping_sub(self.tail);
            if avail > self.ring.capacity {
                return Err(RecvError::Corrupt("producer index is ahead of the ring"));
            }
            let pos = self.tail & self.ring.mask();
            if avail < FRAME_HEADER {
                return Err(RecvError::Corrupt("published bytes end inside a length prefix"));
            }
            let len = self.ring.read_u32(pos);
            if len == PAD {
                let to_end = self.ring.capacity - pos;
                if to_end > avail {
                    return Err(RecvError::Corrupt("padding runs past the published bytes"));
                }
                // Skip the padding locally; the tail is released together with the record.
                self.tail += to_end;
                continue;
            }
            let len = u64::from(len);
            if len > self.ring.max_record {
                return Err(RecvError::Corrupt("record longer than the ring's maximum"));
            }
            let frame = frame_len(len);
            if frame > avail || pos + frame > self.ring.capacity {
                return Err(RecvError::Corrupt("record runs past the published bytes"));
            }
            self.pending_tail = Some(self.tail + frame);
            return Ok(Some(self.ring.slice(pos + FRAME_HEADER, len)));
        }
    }

    /// Releases the record returned by the last `peek` to the producer.
    pub(crate) fn commit(&mut self) {
        if let Some(tail) = self.pending_tail.take() {
            self.tail = tail;
            self.ctl().consumer.tail.store(tail, Ordering::Release);
        }
    }

    /// Whether a record (or padding) is published beyond our tail.
    pub(crate) fn has_data(&mut self) -> bool {
        if self.tail != self.cached_head {
            return true;
        }
        self.cached_head = self.ctl().producer.head.load(Ordering::Acquire);
        self.tail != self.cached_head
    }

    /// Sleeps until the producer publishes, closes, or `timeout` passes (`None`: no limit).
    /// May return early (spuriously); callers re-check.
    pub(crate) fn wait(&mut self, timeout: Option<std::time::Duration>) {
        let wake = &self.ring.ctl().wake;
        let seq = wake.seq.load(Ordering::Acquire);
        wake.sleeping.swap(1, Ordering::AcqRel);
        let head = self.ring.ctl().producer.head.load(Ordering::Acquire);
        if head == self.tail {
            #[cfg(not(loom))]
            crate::futex::wait(&wake.seq, seq, timeout);
            #[cfg(loom)]
            crate::futex::wait(&wake.seq, seq, &wake.parker, timeout);
        }
        wake.sleeping.swap(0, Ordering::AcqRel);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! Model-checks the index and wake-up protocol: no record is lost, torn or reordered, and
    //! a sleeping consumer is always woken (a lost wake-up shows up as a loom deadlock).
    //! Run: `RUSTFLAGS="--cfg loom" cargo test -p shm-queue --release --lib loom`.
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// A ring in ordinary memory: loom atomics cannot live in a mapping.
    struct TestRing {
        ctl: Box<RingCtl>,
        data: Box<[std::cell::UnsafeCell<u8>]>,
    }
    // SAFETY: accessed only through the SPSC protocol under test.
    unsafe impl Send for TestRing {}
    unsafe impl Sync for TestRing {}

    impl TestRing {
        fn new(capacity: usize) -> Self {
            let data = (0..capacity).map(|_| std::cell::UnsafeCell::new(0)).collect();
            TestRing { ctl: Box::new(RingCtl::new()), data }
        }
        fn ring_ref(&self) -> RingRef {
            let capacity = self.data.len() as u64;
            RingRef {
                ctl: &*self.ctl,
                data: self.data.as_ptr() as *mut u8,
                capacity,
                max_record: max_record_for(capacity),
            }
        }
    }

    fn record(i: usize, len: usize) -> Vec<u8> {
        (0..len).map(|j| (i * 31 + j) as u8).collect()
    }

    #[test]
    fn loom_sleeping_consumer_gets_every_record_in_order() {
        // 64-byte ring, records of frames 24 + 32 + 16: the third must wait for space (Full)
        // and wraps with a padding marker.
        const LENS: [usize; 3] = [20, 28, 8];
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(|| {
            let ring = Arc::new(TestRing::new(64));
            let producer_ring = ring.clone();
            let producer = thread::spawn(move || {
                let mut p = ProducerCore::new(producer_ring.ring_ref());
                for (i, len) in LENS.into_iter().enumerate() {
                    let rec = record(i, len);
                    loop {
                        match p.try_push_with(len, |buf| buf.copy_from_slice(&rec)) {
                            Ok(()) => break,
                            Err(SendError::Full) => thread::yield_now(),
                            Err(e) => panic!("unexpected {e}"),
                        }
                    }
                }
            });
            let mut c = ConsumerCore::new(ring.ring_ref());
            for (i, len) in LENS.into_iter().enumerate() {
                loop {
                    if let Some(got) = c.peek().expect("valid stream") {
                        assert_eq!(got, &record(i, len)[..]);
                        c.commit();
                        break;
                    }
                    c.wait(None);
                }
            }
            producer.join().expect("producer thread");
        });
    }
}

//! The shared segment: creating and opening it (memfd or a named file under /dev/shm), the
//! header that identifies it, mapping it, handing its fd to another process, and cleaning up.
//!
//! Layout: a 64-byte header, then `rings` rings of `RING_CTL_SIZE + capacity` bytes each.
//!
//! ```text
//! 0   magic "SHMQUEUE" (u64, written last, Release)   8  layout version (u32)
//! 12  ring count (u32)   16 capacity (u64)   24 max record (u32)   28 creator pid (u32)
//! 32  total length (u64)
//! 64  ring 0: control block (3 cache lines), data
//!     ring 1: ...
//! ```

use crate::ring::{RING_CTL_SIZE, RingCtl, RingRef, max_record_for};
use crate::sync::{AtomicU64, Ordering};
use crate::{Config, Error};
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;

/// "SHMQUEUE" in ASCII, big-endian.
pub const MAGIC: u64 = 0x5348_4d51_5545_5545;
/// Bumped on any change of the header or ring layout.
pub const LAYOUT_VERSION: u32 = 1;
const HEADER_SIZE: usize = 64;
/// Smallest ring: one cache line of data.
pub const MIN_CAPACITY: usize = 64;
/// Largest ring: 1 GiB of data.
pub const MAX_CAPACITY: usize = 1 << 30;
/// Rings per segment: 1 (a one-way queue) up to this.
pub const MAX_RINGS: usize = 16;
/// Where named segments live.
pub const SHM_DIR: &str = "/dev/shm";

#[repr(C)]
struct Header {
    magic: AtomicU64,
    version: u32,
    rings: u32,
    capacity: u64,
    max_record: u32,
    creator_pid: u32,
    total_len: u64,
}
const _: () = assert!(std::mem::size_of::<Header>() <= HEADER_SIZE);

/// The validated shape of a segment (a copy: the shared header is read once, at open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    pub rings: usize,
    pub capacity: usize,
    pub max_record: usize,
}

impl Shape {
    fn ring_stride(&self) -> usize {
        RING_CTL_SIZE + self.capacity
    }
    fn total_len(&self) -> usize {
        HEADER_SIZE + self.rings * self.ring_stride()
    }
}

fn check_config(config: &Config) -> Result<Shape, Error> {
    let Config { rings, capacity, max_record } = *config;
    if !(1..=MAX_RINGS).contains(&rings) {
        return Err(Error::BadConfig { what: "ring count", value: rings, rule: "between 1 and 16" });
    }
    if !capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
        return Err(Error::BadConfig { what: "capacity", value: capacity, rule: "a power of two from 64 to 2^30" });
    }
    let limit = max_record_for(capacity as u64) as usize;
    let max_record = max_record.unwrap_or(limit);
    if max_record == 0 || max_record > limit {
        return Err(Error::BadConfig { what: "max record", value: max_record, rule: "1 to capacity / 2 - 4 bytes" });
    }
    Ok(Shape { rings, capacity, max_record })
}

/// A mapped segment. Dropping the last handle unmaps it and, for a named segment opened by its
/// creator, unlinks the file.
#[derive(Debug)]
pub(crate) struct Mapping {
    base: NonNull<u8>,
    len: usize,
    file: File,
    shape: Shape,
    unlink_on_drop: Option<PathBuf>,
}

// SAFETY: the mapping is shared memory by design; every access goes through atomics or the
// SPSC protocol, and the pointer stays valid until Drop.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` only hands out RingRefs and reads the immutable shape copy.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: base/len are exactly what mmap returned, and no RingRef outlives the Mapping
        // (endpoints hold the Arc).
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
        if let Some(path) = &self.unlink_on_drop {
            // Best effort: a missing file (someone cleaned it) is not worth a panic in Drop.
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Maps `len` bytes of `file` shared and read-write.
fn map(file: &File, len: usize) -> Result<NonNull<u8>, Error> {
    // SAFETY: a fresh mapping at a kernel-chosen address; it aliases nothing in this process.
    let ptr = unsafe {
        libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, file.as_raw_fd(), 0)
    };
    if ptr == libc::MAP_FAILED {
        return Err(Error::io("mmap", io::Error::last_os_error()));
    }
    NonNull::new(ptr.cast()).ok_or_else(|| Error::io("mmap", io::Error::other("null mapping")))
}

impl Mapping {
    fn header(&self) -> &Header {
        // SAFETY: the mapping is at least HEADER_SIZE bytes (checked at open/create), page
        // aligned, and lives as long as &self.
        unsafe { &*self.base.as_ptr().cast::<Header>() }
    }

    /// Builds a fresh segment in `file` (already sized 0).
    fn create(file: File, shape: Shape, unlink_on_drop: Option<PathBuf>) -> Result<Self, Error> {
        let len = shape.total_len();
        file.set_len(len as u64).map_err(|e| Error::io("ftruncate", e))?;
        let base = map(&file, len)?;
        let mapping = Mapping { base, len, file, shape, unlink_on_drop };
        let header = mapping.base.as_ptr().cast::<Header>();
        // SAFETY: the new mapping is ours alone until the fd or name is handed out (a named
        // opener that races us sees magic 0 and gets BadMagic); plain writes to the header's
        // non-atomic fields through a raw pointer, then the magic is published with Release.
        unsafe {
            (&raw mut (*header).version).write(LAYOUT_VERSION);
            (&raw mut (*header).rings).write(shape.rings as u32);
            (&raw mut (*header).capacity).write(shape.capacity as u64);
            (&raw mut (*header).max_record).write(shape.max_record as u32);
            (&raw mut (*header).creator_pid).write(std::process::id());
            (&raw mut (*header).total_len).write(len as u64);
        }
        mapping.header().magic.store(MAGIC, Ordering::Release);
        Ok(mapping)
    }

    /// Maps an existing segment and validates its header.
    fn open(file: File) -> Result<Self, Error> {
        let file_len = file.metadata().map_err(|e| Error::io("fstat", e))?.len();
        if file_len < HEADER_SIZE as u64 {
            return Err(Error::TooSmall { len: file_len, need: HEADER_SIZE as u64 });
        }
        let len = usize::try_from(file_len).map_err(|_| Error::BadLayout("segment larger than the address space"))?;
        let base = map(&file, len)?;
        let placeholder = Shape { rings: 0, capacity: 0, max_record: 0 };
        let mut mapping = Mapping { base, len, file, shape: placeholder, unlink_on_drop: None };
        let h = mapping.header();
        let magic = h.magic.load(Ordering::Acquire);
        if magic != MAGIC {
            return Err(Error::BadMagic { found: magic, expected: MAGIC });
        }
        // SAFETY: the creator wrote these fields before publishing the magic we acquired, and
        // never writes them again; raw reads avoid asserting anything about later writes.
        let (version, rings, capacity, max_record, total_len) = unsafe {
            let p = mapping.base.as_ptr().cast::<Header>();
            (
                (&raw const (*p).version).read_volatile(),
                (&raw const (*p).rings).read_volatile(),
                (&raw const (*p).capacity).read_volatile(),
                (&raw const (*p).max_record).read_volatile(),
                (&raw const (*p).total_len).read_volatile(),
            )
        };
        if version != LAYOUT_VERSION {
            return Err(Error::BadVersion { found: version, supported: LAYOUT_VERSION });
        }
        let capacity = usize::try_from(capacity).map_err(|_| Error::BadLayout("capacity overflows usize"))?;
        let config = Config { rings: rings as usize, capacity, max_record: Some(max_record as usize) };
        let shape = check_config(&config).map_err(|_| Error::BadLayout("ring count, capacity or max record"))?;
        if shape.total_len() as u64 != total_len || total_len > file_len {
            return Err(Error::BadLayout("total length does not match the rings or the file"));
        }
        mapping.shape = shape;
        Ok(mapping)
    }

    pub(crate) fn shape(&self) -> Shape {
        self.shape
    }

    /// Ring `index` (checked by the caller against the shape).
    pub(crate) fn ring(&self, index: usize) -> RingRef {
        debug_assert!(index < self.shape.rings);
        let offset = HEADER_SIZE + index * self.shape.ring_stride();
        // SAFETY: offset + stride <= total_len <= len, validated at create/open; the control
        // block is 64-aligned (HEADER_SIZE, RING_CTL_SIZE and capacity are multiples of 64 and
        // the mapping is page aligned).
        let ctl = unsafe { self.base.as_ptr().add(offset) };
        RingRef {
            ctl: ctl.cast::<RingCtl>(),
            // SAFETY: as above, the data area follows the control block inside the mapping.
            data: unsafe { ctl.add(RING_CTL_SIZE) },
            capacity: self.shape.capacity as u64,
            max_record: self.shape.max_record as u64,
        }
    }
}

/// A shared-memory segment holding one or more rings; see the crate docs.
///
/// Cloning is cheap (an `Arc`); endpoints taken from it keep the mapping alive on their own.
#[derive(Debug, Clone)]
pub struct Segment {
    pub(crate) map: Arc<Mapping>,
}

impl Segment {
    /// Creates an anonymous segment in a memfd (sealed against resizing, so a peer cannot
    /// shrink it under us and turn accesses into SIGBUS). `name` only shows in /proc/*/fd.
    /// Hand it to another process with [`Segment::inheritable_fd`] or [`send_fd`].
    pub fn create_memfd(name: &str, config: Config) -> Result<Segment, Error> {
        let shape = check_config(&config)?;
        let cname = CString::new(name).map_err(|_| Error::BadName(name.to_owned()))?;
        let file = memfd_create(&cname)?;
        let map = Mapping::create(file, shape, None)?;
        seal_size(&map.file)?;
        Ok(Segment { map: Arc::new(map) })
    }

    /// Creates a named segment `/dev/shm/{prefix}.{pid}.{tag}` (mode 0600), unlinked when the
    /// last handle of this creator drops. The pid in the name lets [`clean_stale`] remove the
    /// segments of creators that died without dropping. `prefix` and `tag` must be non-empty
    /// and free of `/`, `.` and NUL.
    pub fn create_named(prefix: &str, tag: &str, config: Config) -> Result<Segment, Error> {
        let shape = check_config(&config)?;
        for part in [prefix, tag] {
            if part.is_empty() || part.contains(['/', '.', '\0']) {
                return Err(Error::BadName(part.to_owned()));
            }
        }
        let path = Path::new(SHM_DIR).join(format!("{prefix}.{}.{tag}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io("create /dev/shm file", e))?;
        let map = match Mapping::create(file, shape, Some(path.clone())) {
            Ok(map) => map,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        Ok(Segment { map: Arc::new(map) })
    }

    /// Opens a named segment by its file name under /dev/shm (as [`Segment::name`] returns).
    pub fn open_named(name: &str) -> Result<Segment, Error> {
        if name.is_empty() || name.contains(['/', '\0']) {
            return Err(Error::BadName(name.to_owned()));
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(Path::new(SHM_DIR).join(name))
            .map_err(|e| Error::io("open /dev/shm file", e))?;
        Ok(Segment { map: Arc::new(Mapping::open(file)?) })
    }

    /// Opens a segment from a file descriptor (a memfd received over a socket, say).
    pub fn open_fd(fd: OwnedFd) -> Result<Segment, Error> {
        Ok(Segment { map: Arc::new(Mapping::open(File::from(fd))?) })
    }

    /// Opens a segment from an fd number inherited from the parent process.
    ///
    /// # Safety
    /// `fd` must be an open file descriptor that nothing else in this process owns or will
    /// close; the segment takes ownership and closes it when dropped.
    pub unsafe fn open_raw_fd(fd: RawFd) -> Result<Segment, Error> {
        // SAFETY: ownership of `fd` is transferred by the caller's contract.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        Segment::open_fd(owned)
    }

    /// A duplicate of the segment's fd without close-on-exec, for a child process to inherit:
    /// pass its number to the child (an argument or environment variable), spawn, then drop it.
    pub fn inheritable_fd(&self) -> Result<OwnedFd, Error> {
        // SAFETY: F_DUPFD only reads the fd we own and returns a new one (or -1).
        let fd = unsafe { libc::fcntl(self.map.file.as_raw_fd(), libc::F_DUPFD, 3) };
        if fd < 0 {
            return Err(Error::io("dup", io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just returned by F_DUPFD, so it is open and owned by no one else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// The file name under /dev/shm of a named segment this process created; `None` for a
    /// memfd or an opened segment.
    pub fn name(&self) -> Option<&str> {
        self.map.unlink_on_drop.as_deref().and_then(Path::file_name).and_then(|n| n.to_str())
    }

    /// Number of rings.
    pub fn rings(&self) -> usize {
        self.map.shape().rings
    }

    /// Data bytes per ring.
    pub fn capacity(&self) -> usize {
        self.map.shape().capacity
    }

    /// The largest record a ring accepts.
    pub fn max_record(&self) -> usize {
        self.map.shape().max_record
    }
}

impl AsFd for Segment {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.map.file.as_fd()
    }
}

fn memfd_create(name: &CString) -> Result<File, Error> {
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(Error::io("memfd_create", io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just returned by memfd_create, so it is open and owned by no one else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

fn seal_size(file: &File) -> Result<(), Error> {
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: F_ADD_SEALS on an fd we own; no memory is passed.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(Error::io("seal memfd", io::Error::last_os_error()));
    }
    Ok(())
}

/// Removes named segments under /dev/shm whose creator process is gone: files named
/// `{prefix}.{pid}.*` where no process `pid` exists. Returns the removed paths.
pub fn clean_stale(prefix: &str) -> io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let lead = format!("{prefix}.");
    for entry in std::fs::read_dir(SHM_DIR)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&lead)) else { continue };
        let Some(pid) = rest.split('.').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let path = entry.path();
            match std::fs::remove_file(&path) {
                Ok(()) => removed.push(path),
                // Another cleaner got there first.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}

/// Sends `fd` over a Unix socket (SCM_RIGHTS) with a one-byte payload.
pub fn send_fd(sock: &UnixStream, fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    let mut cmsg_buf = [0u64; 4]; // u64 for alignment; CMSG_SPACE(4) is 24 bytes on Linux.
    // SAFETY: msghdr is plain data; zeroed is a valid "no name, no flags" value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg_buf.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is a pure size computation.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as _;
    // SAFETY: msg_control points to cmsg_buf, large enough for one cmsghdr carrying one fd
    // (CMSG_SPACE above); CMSG_FIRSTHDR/CMSG_DATA stay inside it; sendmsg reads `byte`, `iov`
    // and `cmsg_buf`, all alive for the call.
    let sent = unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        libc::CMSG_DATA(cmsg).cast::<RawFd>().write_unaligned(fd.as_raw_fd());
        libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
    };
    if sent < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Receives an fd sent with [`send_fd`] (close-on-exec set).
pub fn recv_fd(sock: &UnixStream) -> io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    let mut cmsg_buf = [0u64; 4];
    // SAFETY: as in send_fd.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg_buf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cmsg_buf) as _;
    // SAFETY: recvmsg writes at most iov_len bytes into `byte` and msg_controllen into
    // cmsg_buf, both alive for the call.
    let got = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel filled msg's control area; CMSG_FIRSTHDR returns null or a header
    // inside it, and we check level, type and length before reading the fd.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null()
            || (*cmsg).cmsg_level != libc::SOL_SOCKET
            || (*cmsg).cmsg_type != libc::SCM_RIGHTS
            || ((*cmsg).cmsg_len as usize) < libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize
        {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "no file descriptor in the message"));
        }
        let fd = libc::CMSG_DATA(cmsg).cast::<RawFd>().read_unaligned();
        // The kernel installed this fd for us just now; nobody else owns it.
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

//! A shared-memory file mapped into this process: the one audited place where the
//! platform touches raw shared memory. Everything above uses bounded copies and
//! atomic views handed out from here.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, AtomicU32};
use std::sync::Arc;

use xennet_ring::{DomId, GrantRef, PAGE_SIZE};

use memmap2::{MmapOptions, MmapRaw};

use super::error::ShmError;
use super::guard::Guard;

/// What another domain's file may be before it is mapped: a whole number of `unit`s,
/// `min..=max` bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FileLimit {
    pub(crate) unit: usize,
    pub(crate) min: usize,
    pub(crate) max: usize,
    /// How the limit reads in an error ("1..=1048576 pages of 4096 bytes").
    pub(crate) text: &'static str,
}

/// A mapped file (or anonymous memory) of `len` bytes, shared with other mappings of
/// the same file, in this process or others.
#[derive(Debug)]
pub struct Region {
    /// For another domain's file: the SIGBUS guard (declared before `map`, so it is
    /// unregistered before the unmap).
    guard: Option<Guard>,
    map: MmapRaw,
    len: usize,
    path: Option<PathBuf>,
}

impl Region {
    /// Create `path` (0600, must not exist), size it to `len` bytes (zeroed), map it.
    pub fn create(path: &Path, len: usize) -> Result<Region, ShmError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| ShmError::io(path, e))?;
        file.set_len(len as u64)
            .map_err(|e| ShmError::io(path, e))?;
        Self::map(&file, path, len)
    }

    /// Map another domain's existing file, read-write: a regular file (not followed
    /// through a symbolic link) whose size is checked against `limit` before anything
    /// is mapped, and guarded so that the owner truncating it cannot kill this
    /// process (see `guard.rs`).
    pub(crate) fn open_peer(path: &Path, limit: FileLimit) -> Result<Region, ShmError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| ShmError::io(path, e))?;
        let meta = file.metadata().map_err(|e| ShmError::io(path, e))?;
        if !meta.file_type().is_file() {
            return Err(ShmError::BadFile(path.to_path_buf()));
        }
        let size = meta.len();
        let fits = usize::try_from(size)
            .ok()
            .filter(|s| (limit.min..=limit.max).contains(s) && s % limit.unit == 0);
        let Some(size) = fits else {
            return Err(ShmError::PeerFileSize {
                path: path.to_path_buf(),
                size,
                limit: limit.text,
            });
        };
        let mut region = Self::map(&file, path, size)?;
        let guard = Guard::register(region.map.as_ptr(), size)
            .ok_or_else(|| ShmError::Unguarded(path.to_path_buf()))?;
        region.guard = Some(guard);
        Ok(region)
    }

    /// Anonymous shared memory (threads of one process).
    pub fn anonymous(len: usize) -> Result<Region, ShmError> {
        let map = MmapOptions::new()
            .len(len)
            .map_anon()
            .map_err(|e| ShmError::io("<anonymous>", e))?;
        let map = MmapRaw::from(map);
        Ok(Region {
            guard: None,
            map,
            len,
            path: None,
        })
    }

    fn map(file: &File, path: &Path, len: usize) -> Result<Region, ShmError> {
        let map = MmapOptions::new()
            .len(len)
            .map_raw(file)
            .map_err(|e| ShmError::io(path, e))?;
        Ok(Region {
            guard: None,
            map,
            len,
            path: Some(path.to_path_buf()),
        })
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region is empty (never, for a valid region).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether this is another domain's file and a page of it was found cut off by a
    /// truncation (and replaced): the peer is broken, nothing read from the region
    /// since may be used as its data.
    pub fn faulted(&self) -> bool {
        self.guard.as_ref().is_some_and(Guard::faulted)
    }

    /// The file backing the region, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn check(&self, offset: usize, len: usize) -> Option<()> {
        (offset.checked_add(len)? <= self.len).then_some(())
    }

    /// A pointer to `offset` if `offset + len` is inside the region.
    pub fn ptr(&self, offset: usize, len: usize) -> Option<NonNull<u8>> {
        self.check(offset, len)?;
        // SAFETY: offset + len <= self.len, so the pointer stays inside the mapping.
        NonNull::new(unsafe { self.map.as_mut_ptr().add(offset) })
    }

    /// Copy bytes out of the region. False if out of bounds.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> bool {
        let Some(p) = self.ptr(offset, buf.len()) else {
            return false;
        };
        // SAFETY: the source range is inside the live mapping (checked by `ptr`) and
        // cannot overlap `buf`, a Rust allocation. Another party may write the bytes
        // concurrently; they are plain bytes, so that only changes the values read.
        unsafe { std::ptr::copy_nonoverlapping(p.as_ptr(), buf.as_mut_ptr(), buf.len()) };
        true
    }

    /// Copy bytes into the region. False if out of bounds.
    pub fn write(&self, offset: usize, data: &[u8]) -> bool {
        let Some(p) = self.ptr(offset, data.len()) else {
            return false;
        };
        // SAFETY: as in `read`, with the roles of source and destination swapped.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p.as_ptr(), data.len()) };
        true
    }

    /// Copy `len` bytes from `src` at `src_off` into this region at `dst_off` (the
    /// hypervisor's copy between two domains' pages). False if either is out of bounds.
    pub fn copy_from(&self, dst_off: usize, src: &Region, src_off: usize, len: usize) -> bool {
        let (Some(d), Some(s)) = (self.ptr(dst_off, len), src.ptr(src_off, len)) else {
            return false;
        };
        // SAFETY: both ranges are inside live mappings; `copy` tolerates overlap (the
        // same file may be mapped twice). Bytes are plain data.
        unsafe { std::ptr::copy(s.as_ptr(), d.as_ptr(), len) };
        true
    }

    /// An atomic view of the aligned u32 at `offset`.
    pub fn atomic_u32(&self, offset: usize) -> Option<&AtomicU32> {
        if offset % 4 != 0 {
            return None;
        }
        let p = self.ptr(offset, 4)?;
        // SAFETY: in bounds, 4-aligned (mappings are page-aligned), and valid for the
        // region's life (the borrow of self). Shared words are only accessed atomically.
        Some(unsafe { &*(p.as_ptr() as *const AtomicU32) })
    }

    /// An atomic view of the aligned u16 at `offset`.
    pub fn atomic_u16(&self, offset: usize) -> Option<&AtomicU16> {
        if offset % 2 != 0 {
            return None;
        }
        let p = self.ptr(offset, 2)?;
        // SAFETY: as in `atomic_u32`, for a 2-aligned u16.
        Some(unsafe { &*(p.as_ptr() as *const AtomicU16) })
    }
}

/// Size of a domain's event page.
pub const EVTCHN_BYTES: usize = 4096;
/// Bytes per grant entry (`grant_entry_v1`).
pub const GRANT_ENTRY_BYTES: usize = 8;

/// The three shared regions of a domain.
#[derive(Debug)]
pub struct Regions {
    /// The domain's id.
    pub domid: DomId,
    /// Its memory.
    pub memory: Arc<Region>,
    /// Its grant table.
    pub gnttab: Arc<Region>,
    /// Its event-channel page.
    pub evtchn: Arc<Region>,
}

impl Regions {
    /// Pages of memory.
    pub fn pages(&self) -> u32 {
        pages(&self.memory)
    }

    /// Grant entries.
    pub fn grant_entries(&self) -> u32 {
        grant_entries(&self.gnttab)
    }

    /// The combined flags/domid word of entry `gref`.
    pub(crate) fn grant_word(&self, gref: GrantRef) -> Option<&AtomicU32> {
        grant_word(&self.gnttab, gref)
    }

    /// The frame word of entry `gref`.
    pub(crate) fn grant_frame(&self, gref: GrantRef) -> Option<&AtomicU32> {
        grant_frame(&self.gnttab, gref)
    }

    /// Byte offset of `frame` + `offset`, if inside memory and the page.
    pub(crate) fn frame_offset(&self, frame: u64, offset: usize, len: usize) -> Option<usize> {
        frame_offset(&self.memory, frame, offset, len)
    }
}

/// Pages in a memory region.
pub(crate) fn pages(memory: &Region) -> u32 {
    (memory.len() / PAGE_SIZE) as u32
}

/// Entries in a grant-table region.
pub(crate) fn grant_entries(gnttab: &Region) -> u32 {
    (gnttab.len() / GRANT_ENTRY_BYTES) as u32
}

/// The combined flags/domid word of entry `gref` of a grant table.
pub(crate) fn grant_word(gnttab: &Region, gref: GrantRef) -> Option<&AtomicU32> {
    gnttab.atomic_u32((gref.0 as usize).checked_mul(GRANT_ENTRY_BYTES)?)
}

/// The frame word of entry `gref` of a grant table.
pub(crate) fn grant_frame(gnttab: &Region, gref: GrantRef) -> Option<&AtomicU32> {
    gnttab.atomic_u32((gref.0 as usize).checked_mul(GRANT_ENTRY_BYTES)? + 4)
}

/// Byte offset of `frame` + `offset` in a memory region, if inside it and the page.
pub(crate) fn frame_offset(
    memory: &Region,
    frame: u64,
    offset: usize,
    len: usize,
) -> Option<usize> {
    if frame >= u64::from(pages(memory)) || offset.checked_add(len)? > PAGE_SIZE {
        return None;
    }
    Some(frame as usize * PAGE_SIZE + offset)
}

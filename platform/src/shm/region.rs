//! A shared-memory file mapped into this process: the one audited place where the
//! platform touches raw shared memory. Everything above uses bounded copies and
//! atomic views handed out from here.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, AtomicU32};

use xennet_ring::{DomId, GrantRef, PAGE_SIZE};

use memmap2::{MmapOptions, MmapRaw};

use super::error::ShmError;

/// A mapped file (or anonymous memory) of `len` bytes, shared with other mappings of
/// the same file, in this process or others.
#[derive(Debug)]
pub struct Region {
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

    /// Map an existing file; its size must be exactly `len` if given.
    pub fn open(path: &Path, len: Option<usize>) -> Result<Region, ShmError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| ShmError::io(path, e))?;
        let size = file.metadata().map_err(|e| ShmError::io(path, e))?.len() as usize;
        if len.is_some_and(|l| l != size) || size == 0 {
            return Err(ShmError::BadFile(path.to_path_buf()));
        }
        Self::map(&file, path, size)
    }

    /// Anonymous shared memory (threads of one process).
    pub fn anonymous(len: usize) -> Result<Region, ShmError> {
        let map = MmapOptions::new()
            .len(len)
            .map_anon()
            .map_err(|e| ShmError::io("<anonymous>", e))?;
        let map = MmapRaw::from(map);
        Ok(Region {
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
    pub memory: Region,
    /// Its grant table.
    pub gnttab: Region,
    /// Its event-channel page.
    pub evtchn: Region,
}

impl Regions {
    /// Pages of memory.
    pub fn pages(&self) -> u32 {
        (self.memory.len() / PAGE_SIZE) as u32
    }

    /// Grant entries.
    pub fn grant_entries(&self) -> u32 {
        (self.gnttab.len() / GRANT_ENTRY_BYTES) as u32
    }

    /// The combined flags/domid word of entry `gref`.
    pub(crate) fn grant_word(&self, gref: GrantRef) -> Option<&AtomicU32> {
        self.gnttab
            .atomic_u32((gref.0 as usize).checked_mul(GRANT_ENTRY_BYTES)?)
    }

    /// The frame word of entry `gref`.
    pub(crate) fn grant_frame(&self, gref: GrantRef) -> Option<&AtomicU32> {
        self.gnttab
            .atomic_u32((gref.0 as usize).checked_mul(GRANT_ENTRY_BYTES)? + 4)
    }

    /// Byte offset of `frame` + `offset`, if inside memory and the page.
    pub(crate) fn frame_offset(&self, frame: u64, offset: usize, len: usize) -> Option<usize> {
        if frame >= u64::from(self.pages()) || offset.checked_add(len)? > PAGE_SIZE {
            return None;
        }
        Some(frame as usize * PAGE_SIZE + offset)
    }
}

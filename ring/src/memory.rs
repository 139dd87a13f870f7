//! A domain's own memory as drivers see it: pages named by [`Frame`], reached through
//! copies (never references, since a peer may write a granted page at any time).

use core::ptr::NonNull;

use crate::page::{Frame, PAGE_SIZE};

/// Why a local memory access was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryError {
    /// The frame is not part of this domain's memory.
    BadFrame(Frame),
    /// `offset + len` runs past the end of the page.
    CrossesPage {
        /// Offset in the page.
        offset: usize,
        /// Length of the access.
        len: usize,
    },
    /// No free frame left.
    OutOfFrames,
    /// A write through a read-only mapping.
    ReadOnly,
}

impl core::fmt::Display for MemoryError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MemoryError::BadFrame(fr) => write!(f, "frame {} is outside domain memory", fr.0),
            MemoryError::CrossesPage { offset, len } => {
                write!(
                    f,
                    "access of {len} bytes at offset {offset} crosses the page end"
                )
            }
            MemoryError::OutOfFrames => write!(f, "no free frame in domain memory"),
            MemoryError::ReadOnly => write!(f, "write through a read-only mapping"),
        }
    }
}

/// The caller's own pages. Every access is a bounded copy within one page, so a page
/// a peer writes concurrently (a granted rx buffer) never becomes a Rust reference.
pub trait LocalMemory {
    /// Copy `buf.len()` bytes from `frame` at `offset` into `buf`.
    fn read(&self, frame: Frame, offset: usize, buf: &mut [u8]) -> Result<(), MemoryError>;

    /// Copy `data` into `frame` at `offset`.
    fn write(&self, frame: Frame, offset: usize, data: &[u8]) -> Result<(), MemoryError>;

    /// The address of a whole page, for placing a shared ring in it
    /// (`FrontRing::init`). Valid while the memory object lives.
    fn page_ptr(&self, frame: Frame) -> Result<NonNull<u8>, MemoryError>;
}

/// Allocation of whole pages from the caller's memory (rings, buffer pools).
pub trait FrameAlloc {
    /// Take a free frame.
    fn alloc_frame(&self) -> Result<Frame, MemoryError>;

    /// Return a frame; it must no longer be granted.
    fn free_frame(&self, frame: Frame);
}

impl<T: LocalMemory + ?Sized> LocalMemory for &T {
    fn read(&self, frame: Frame, offset: usize, buf: &mut [u8]) -> Result<(), MemoryError> {
        (**self).read(frame, offset, buf)
    }
    fn write(&self, frame: Frame, offset: usize, data: &[u8]) -> Result<(), MemoryError> {
        (**self).write(frame, offset, data)
    }
    fn page_ptr(&self, frame: Frame) -> Result<NonNull<u8>, MemoryError> {
        (**self).page_ptr(frame)
    }
}

impl<T: FrameAlloc + ?Sized> FrameAlloc for &T {
    fn alloc_frame(&self) -> Result<Frame, MemoryError> {
        (**self).alloc_frame()
    }
    fn free_frame(&self, frame: Frame) {
        (**self).free_frame(frame)
    }
}

/// A peer page mapped through a grant (see [`crate::grant::GrantMap`]).
pub trait MappedPage {
    /// The start of the mapped 4096-byte page.
    fn as_ptr(&self) -> NonNull<u8>;

    /// Whether the mapping is read-only.
    fn readonly(&self) -> bool;
}

/// Copy `buf.len()` bytes out of a mapped page (checked against the page's bounds).
pub fn read_mapped<M: MappedPage + ?Sized>(
    page: &M,
    offset: usize,
    buf: &mut [u8],
) -> Result<(), MemoryError> {
    check_in_page(offset, buf.len())?;
    // SAFETY: `as_ptr` points at a live 4096-byte mapping (MappedPage's contract) and
    // offset + len <= 4096 was checked above; bytes are plain data, so a concurrent
    // writer can only change the values read, and `buf` does not overlap the mapping.
    unsafe {
        core::ptr::copy_nonoverlapping(
            page.as_ptr().as_ptr().add(offset),
            buf.as_mut_ptr(),
            buf.len(),
        );
    }
    Ok(())
}

/// Copy `data` into a mapped page (checked against the page's bounds; refused for a
/// read-only mapping).
pub fn write_mapped<M: MappedPage + ?Sized>(
    page: &M,
    offset: usize,
    data: &[u8],
) -> Result<(), MemoryError> {
    if page.readonly() {
        return Err(MemoryError::ReadOnly);
    }
    check_in_page(offset, data.len())?;
    // SAFETY: `as_ptr` is a live writable 4096-byte mapping (MappedPage's contract,
    // not read-only: checked), offset + len <= 4096 (checked); plain bytes, and `data`
    // does not overlap the mapping.
    unsafe {
        core::ptr::copy_nonoverlapping(
            data.as_ptr(),
            page.as_ptr().as_ptr().add(offset),
            data.len(),
        );
    }
    Ok(())
}

/// The part of `buf` from its first page boundary on. A frame buffer that pages are
/// copied into starts there, so source and destination share their page offset:
/// glibc's memcpy slows down badly when the destination sits a few bytes above or
/// below the source modulo 4096 (docs/design.md §8), which is where a large heap
/// buffer (allocator header of 16 bytes) would otherwise put it.
pub fn page_aligned(buf: &mut [u8]) -> &mut [u8] {
    let off = buf.as_ptr().align_offset(PAGE_SIZE).min(buf.len());
    &mut buf[off..]
}

/// Check that an access of `len` bytes at `offset` stays within one page.
pub fn check_in_page(offset: usize, len: usize) -> Result<(), MemoryError> {
    match offset.checked_add(len) {
        Some(end) if end <= PAGE_SIZE => Ok(()),
        _ => Err(MemoryError::CrossesPage { offset, len }),
    }
}

//! A backend's own pages: anonymous page-aligned memory, frame = page index.

use std::ptr::NonNull;
use std::sync::Mutex;

use xennet_ring::memory::check_in_page;
use xennet_ring::{Frame, FrameAlloc, LocalMemory, MemoryError, PAGE_SIZE};

use super::XenLinuxError;

/// `pages` pages of anonymous memory, page-aligned, for the local side of grant copies
/// (the kernel pins them for the copy by their virtual address) and for anything else a
/// backend keeps in whole pages. `Frame(i)` is page `i`; any page in range may be read
/// or written, allocated or not (as with the `shm` platform's `Domain`).
pub struct LocalPages {
    // The start of a private anonymous mapping of `pages * PAGE_SIZE` bytes, owned
    // (unmapped on drop). Every access goes through it with bounds checked, so a page
    // the kernel writes during a grant copy never sits behind a Rust reference.
    base: NonNull<u8>,
    pages: usize,
    free: Mutex<FreeList>,
}

struct FreeList {
    stack: Vec<u32>,
    allocated: Vec<bool>,
}

// SAFETY: `base` is a mapping owned by `self` (unmapped only in Drop); all accesses through it are raw bounded copies of plain bytes, which are
// sound from any thread (concurrent writers can only change the values), and the free
// list is behind a Mutex.
unsafe impl Send for LocalPages {}
// SAFETY: see `Send`: shared access only performs raw byte copies and Mutex-guarded
// bookkeeping.
unsafe impl Sync for LocalPages {}

impl std::fmt::Debug for LocalPages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalPages")
            .field("pages", &self.pages)
            .field("base", &self.base)
            .finish()
    }
}

impl LocalPages {
    /// `pages` zeroed pages (at least 1, at most `u32::MAX`).
    pub fn new(pages: usize) -> Result<LocalPages, XenLinuxError> {
        let bad = |msg: &str| XenLinuxError::LocalAlloc {
            pages,
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, msg),
        };
        if pages == 0 || pages > u32::MAX as usize {
            return Err(bad("pages must be 1..=u32::MAX"));
        }
        let len = pages
            .checked_mul(PAGE_SIZE)
            .ok_or_else(|| bad("size overflows"))?;
        // SAFETY: a fresh private anonymous mapping (addr null, fd -1): no existing
        // memory is affected.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(XenLinuxError::LocalAlloc {
                pages,
                source: std::io::Error::last_os_error(),
            });
        }
        let base = NonNull::new(p.cast::<u8>()).ok_or_else(|| bad("null mapping"))?;
        debug_assert_eq!(base.as_ptr() as usize % PAGE_SIZE, 0);
        Ok(LocalPages {
            base,
            pages,
            free: Mutex::new(FreeList {
                stack: (0..pages as u32).rev().collect(),
                allocated: vec![false; pages],
            }),
        })
    }

    /// Number of pages.
    pub fn pages(&self) -> usize {
        self.pages
    }

    /// Frames not allocated.
    pub fn free_count(&self) -> usize {
        self.free.lock().map(|f| f.stack.len()).unwrap_or(0)
    }

    /// The address of page `frame`, if in range.
    pub fn addr(&self, frame: Frame) -> Option<NonNull<u8>> {
        let i = usize::try_from(frame.0).ok().filter(|&i| i < self.pages)?;
        // SAFETY: i < pages, so the offset stays inside the `pages * PAGE_SIZE`
        // mapping starting at `base` (it cannot overflow: the mapping exists).
        Some(unsafe { self.base.add(i * PAGE_SIZE) })
    }

    fn at(&self, frame: Frame, offset: usize, len: usize) -> Result<*mut u8, MemoryError> {
        check_in_page(offset, len)?;
        let page = self.addr(frame).ok_or(MemoryError::BadFrame(frame))?;
        // SAFETY: offset + len <= PAGE_SIZE (checked), so page + offset is within the
        // page, inside the mapping.
        Ok(unsafe { page.as_ptr().add(offset) })
    }

    /// Copy `len` bytes between two places of this memory (a local-to-local grant
    /// copy); the ranges may overlap.
    pub fn copy_within(
        &self,
        src: Frame,
        src_off: usize,
        dst: Frame,
        dst_off: usize,
        len: usize,
    ) -> Result<(), MemoryError> {
        let s = self.at(src, src_off, len)?;
        let d = self.at(dst, dst_off, len)?;
        // SAFETY: both ranges are `len` bytes inside the mapping (checked by `at`);
        // `copy` allows overlap; the bytes are plain data.
        unsafe { core::ptr::copy(s, d, len) };
        Ok(())
    }
}

impl Drop for LocalPages {
    fn drop(&mut self) {
        // SAFETY: `base` is the mapping of `pages * PAGE_SIZE` bytes made in `new`,
        // unmapped once, here; `&mut self` means no access is in progress, and users
        // of the memory (GntDev) hold it through an Arc, so none outlives it.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.pages * PAGE_SIZE) };
    }
}

impl LocalMemory for LocalPages {
    fn read(&self, frame: Frame, offset: usize, buf: &mut [u8]) -> Result<(), MemoryError> {
        let p = self.at(frame, offset, buf.len())?;
        // SAFETY: `p..p+len` is inside the mapping (checked by `at`); `buf` is a
        // distinct Rust allocation, so they do not overlap; plain bytes.
        unsafe { core::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    fn write(&self, frame: Frame, offset: usize, data: &[u8]) -> Result<(), MemoryError> {
        let p = self.at(frame, offset, data.len())?;
        // SAFETY: as in `read`, with the copy going the other way into writable
        // anonymous memory.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) };
        Ok(())
    }

    fn page_ptr(&self, frame: Frame) -> Result<NonNull<u8>, MemoryError> {
        self.addr(frame).ok_or(MemoryError::BadFrame(frame))
    }
}

impl FrameAlloc for LocalPages {
    fn alloc_frame(&self) -> Result<Frame, MemoryError> {
        let mut f = self.free.lock().map_err(|_| MemoryError::OutOfFrames)?;
        let i = f.stack.pop().ok_or(MemoryError::OutOfFrames)?;
        f.allocated[i as usize] = true;
        Ok(Frame(u64::from(i)))
    }

    fn free_frame(&self, frame: Frame) {
        let Ok(mut f) = self.free.lock() else { return };
        match usize::try_from(frame.0).ok().filter(|&i| i < self.pages) {
            Some(i) if f.allocated[i] => {
                f.allocated[i] = false;
                f.stack.push(i as u32);
            }
            _ => tracing::debug!(frame = frame.0, "free of a frame not allocated"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_pages_read_write_and_bounds() {
        let m = LocalPages::new(3).unwrap();
        assert_eq!(m.pages(), 3);
        let p0 = m.page_ptr(Frame(0)).unwrap();
        assert_eq!(p0.as_ptr() as usize % PAGE_SIZE, 0);
        assert_eq!(
            m.page_ptr(Frame(1)).unwrap().as_ptr() as usize,
            p0.as_ptr() as usize + PAGE_SIZE
        );
        let mut buf = [0xffu8; 8];
        m.read(Frame(2), 4088, &mut buf).unwrap();
        assert_eq!(buf, [0; 8], "fresh pages are zero");
        m.write(Frame(1), 4090, b"abcdef").unwrap();
        m.read(Frame(1), 4090, &mut buf[..6]).unwrap();
        assert_eq!(&buf[..6], b"abcdef");
        // Frame 1's bytes did not spill into frame 2.
        let mut first = [0u8; 1];
        m.read(Frame(2), 0, &mut first).unwrap();
        assert_eq!(first, [0]);
        assert_eq!(
            m.write(Frame(1), 4091, b"abcdef"),
            Err(MemoryError::CrossesPage {
                offset: 4091,
                len: 6
            })
        );
        assert_eq!(
            m.read(Frame(0), 4097, &mut []),
            Err(MemoryError::CrossesPage {
                offset: 4097,
                len: 0
            })
        );
        assert_eq!(
            m.read(Frame(3), 0, &mut buf),
            Err(MemoryError::BadFrame(Frame(3)))
        );
        assert_eq!(
            m.page_ptr(Frame(u64::MAX)),
            Err(MemoryError::BadFrame(Frame(u64::MAX)))
        );
        m.copy_within(Frame(1), 4090, Frame(0), 0, 6).unwrap();
        m.read(Frame(0), 0, &mut buf[..6]).unwrap();
        assert_eq!(&buf[..6], b"abcdef");
    }

    #[test]
    fn local_pages_alloc_free() {
        let m = LocalPages::new(2).unwrap();
        let a = m.alloc_frame().unwrap();
        let b = m.alloc_frame().unwrap();
        assert_eq!((a, b), (Frame(0), Frame(1)));
        assert_eq!(m.alloc_frame(), Err(MemoryError::OutOfFrames));
        m.free_frame(a);
        m.free_frame(a); // double free is ignored
        m.free_frame(Frame(9)); // out of range is ignored
        assert_eq!(m.free_count(), 1);
        assert_eq!(m.alloc_frame(), Ok(a));
        assert!(LocalPages::new(0).is_err());
    }
}

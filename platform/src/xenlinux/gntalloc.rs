//! The granting side over `/dev/xen/gntalloc`: pages the kernel allocates for us,
//! each granted to one peer domain at allocation.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

use xennet_ring::grant::GrantError;
use xennet_ring::memory::check_in_page;
use xennet_ring::{
    DomId, Frame, FrameAlloc, GrantAccess, GrantRef, GrantStatus, LocalMemory, MemoryError, Port,
    PAGE_SIZE,
};

use super::sys;
use super::{open_device, XenLinuxError};

/// Where the gntalloc device lives.
pub const GNTALLOC_PATH: &str = "/dev/xen/gntalloc";

/// Our pages shared with one peer through gntalloc.
///
/// gntalloc creates the grant together with the page (`IOCTL_GNTALLOC_ALLOC_GREF`),
/// for the domain and with the writability named then. So:
///
/// - every page of a `GntAlloc` is granted to the `peer` of [`GntAlloc::open`];
///   [`GrantAccess::grant_access`] for another domain fails
///   ([`GrantStatus::BadDomain`]);
/// - [`FrameAlloc::alloc_frame`] allocates pages whose grant is **writable**, so a
///   read-only [`GrantAccess::grant_access`] of such a page still hands the peer a
///   writable grant (gntalloc cannot change it). A caller that knows a page will only
///   ever be granted read-only (tx buffers) allocates it with
///   [`GntAlloc::alloc_page`]`(false)`; a writable grant of such a page is refused
///   ([`GrantStatus::PermissionDenied`]);
/// - the grant lives from allocation to [`FrameAlloc::free_frame`]:
///   [`GrantAccess::end_access`] only records that we no longer use it as granted. The
///   kernel ends the foreign access when the page is freed (and keeps the page until
///   the peer has unmapped it).
///
/// `Frame(n)` is the page at mmap offset `n * 4096` of this file (gntalloc never reuses
/// offsets within a file, so frame numbers are never reused either).
pub struct GntAlloc {
    fd: OwnedFd,
    path: PathBuf,
    peer: DomId,
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    frames: HashMap<u64, Entry>,
    by_gref: HashMap<u32, u64>,
}

struct Entry {
    gref: GrantRef,
    ptr: PagePtr,
    writable: bool,
    granted: AtomicBool,
}

/// A page of our own mapping of the device.
struct PagePtr(NonNull<u8>);

// SAFETY: the pointer names a MAP_SHARED mapping of a kernel page owned by the
// GntAlloc (unmapped only in free_frame under the write lock, or in Drop); it is only used for
// bounded raw byte copies, which are sound from any thread.
unsafe impl Send for PagePtr {}
// SAFETY: as for Send: shared use is only raw bounded byte copies.
unsafe impl Sync for PagePtr {}

impl std::fmt::Debug for GntAlloc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GntAlloc")
            .field("path", &self.path)
            .field("peer", &self.peer)
            .finish()
    }
}

impl GntAlloc {
    /// Open `/dev/xen/gntalloc` for pages granted to `peer`.
    pub fn open(peer: DomId) -> Result<GntAlloc, XenLinuxError> {
        Self::open_path(Path::new(GNTALLOC_PATH), peer)
    }

    /// Open the gntalloc device at `path`.
    pub fn open_path(path: &Path, peer: DomId) -> Result<GntAlloc, XenLinuxError> {
        let fd = open_device(
            path,
            false,
            "load the xen-gntalloc module (Xen guests only)",
        )?;
        Ok(GntAlloc {
            fd,
            path: path.to_path_buf(),
            peer,
            state: RwLock::new(State::default()),
        })
    }

    /// The domain every page is granted to.
    pub fn peer(&self) -> DomId {
        self.peer
    }

    /// Pages currently allocated.
    pub fn allocated(&self) -> usize {
        self.state.read().map(|s| s.frames.len()).unwrap_or(0)
    }

    /// Allocate one zeroed page granted to the peer (writable by the peer if
    /// `writable`), and map it for us (always read-write).
    pub fn alloc_page(&self, writable: bool) -> Result<(Frame, GrantRef), XenLinuxError> {
        let mut op = sys::IoctlGntallocAllocGref::<1> {
            domid: self.peer.0,
            flags: if writable {
                sys::GNTALLOC_FLAG_WRITABLE
            } else {
                0
            },
            count: 1,
            index: 0,
            gref_ids: [0],
        };
        // SAFETY: `op` is a live ioctl_gntalloc_alloc_gref with room for count = 1
        // reference, which is all the kernel writes.
        let r = unsafe { sys::ioctl(self.fd.as_fd(), sys::IOCTL_GNTALLOC_ALLOC_GREF, &mut op) };
        match r {
            Ok(_) => {}
            Err(libc::ENOSPC) => {
                return Err(XenLinuxError::GrantLimit {
                    path: self.path.clone(),
                })
            }
            Err(e) => {
                return Err(XenLinuxError::sys(
                    &self.path,
                    "IOCTL_GNTALLOC_ALLOC_GREF",
                    e,
                ))
            }
        }
        let gref = GrantRef(op.gref_ids[0]);
        let ptr = match self.mmap(op.index) {
            Ok(p) => p,
            Err(e) => {
                self.dealloc(op.index);
                return Err(e);
            }
        };
        let frame = Frame(op.index / PAGE_SIZE as u64);
        let mut st = self
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        st.frames.insert(
            frame.0,
            Entry {
                gref,
                ptr: PagePtr(ptr),
                writable,
                granted: AtomicBool::new(false),
            },
        );
        st.by_gref.insert(gref.0, frame.0);
        tracing::debug!(
            frame = frame.0,
            gref = gref.0,
            peer = self.peer.0,
            writable,
            "gntalloc page"
        );
        Ok((frame, gref))
    }

    /// The grant reference of an allocated frame.
    pub fn gref(&self, frame: Frame) -> Option<GrantRef> {
        self.state.read().ok()?.frames.get(&frame.0).map(|e| e.gref)
    }

    /// `IOCTL_GNTALLOC_SET_UNMAP_NOTIFY`: when the page is finally released (freed,
    /// or this process dies), clear the byte at `clear_byte` and/or notify `event`
    /// (a port bound in this domain's [`super::EventChannels`]). Both `None` cancels.
    pub fn set_unmap_notify(
        &self,
        frame: Frame,
        clear_byte: Option<u16>,
        event: Option<Port>,
    ) -> Result<(), XenLinuxError> {
        if !self
            .state
            .read()
            .map(|s| s.frames.contains_key(&frame.0))
            .unwrap_or(false)
        {
            return Err(XenLinuxError::BadFrame(frame));
        }
        let off = u64::from(clear_byte.unwrap_or(0));
        if off >= PAGE_SIZE as u64 {
            return Err(XenLinuxError::sys(
                &self.path,
                "IOCTL_GNTALLOC_SET_UNMAP_NOTIFY",
                libc::EINVAL,
            ));
        }
        let mut op = sys::IoctlGntallocUnmapNotify {
            index: frame.0 * PAGE_SIZE as u64 + off,
            action: clear_byte.map_or(0, |_| sys::UNMAP_NOTIFY_CLEAR_BYTE)
                | event.map_or(0, |_| sys::UNMAP_NOTIFY_SEND_EVENT),
            event_channel_port: event.map_or(0, |p| p.0),
        };
        // SAFETY: `op` is a live ioctl_gntalloc_unmap_notify, read by the kernel only.
        unsafe {
            sys::ioctl(
                self.fd.as_fd(),
                sys::IOCTL_GNTALLOC_SET_UNMAP_NOTIFY,
                &mut op,
            )
        }
        .map(drop)
        .map_err(|e| XenLinuxError::sys(&self.path, "IOCTL_GNTALLOC_SET_UNMAP_NOTIFY", e))
    }

    fn mmap(&self, index: u64) -> Result<NonNull<u8>, XenLinuxError> {
        let off = libc::off_t::try_from(index)
            .map_err(|_| XenLinuxError::sys(&self.path, "mmap", libc::EOVERFLOW))?;
        // SAFETY: a fresh shared mapping of one page of the device at the offset the
        // kernel returned for our page; no existing memory is affected (addr is null).
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                PAGE_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(&self.fd),
                off,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(XenLinuxError::sys(&self.path, "mmap", sys::errno()));
        }
        NonNull::new(p.cast::<u8>())
            .ok_or_else(|| XenLinuxError::sys(&self.path, "mmap", libc::EFAULT))
    }

    fn dealloc(&self, index: u64) {
        let mut op = sys::IoctlGntallocDeallocGref { index, count: 1 };
        // SAFETY: `op` is a live ioctl_gntalloc_dealloc_gref, read by the kernel only.
        let r = unsafe { sys::ioctl(self.fd.as_fd(), sys::IOCTL_GNTALLOC_DEALLOC_GREF, &mut op) };
        if let Err(e) = r {
            tracing::warn!(path = %self.path.display(), index, errno = e, "gntalloc dealloc failed");
        }
    }

    fn with_page<R>(
        &self,
        frame: Frame,
        offset: usize,
        len: usize,
        f: impl FnOnce(*mut u8) -> R,
    ) -> Result<R, MemoryError> {
        check_in_page(offset, len)?;
        let st = self
            .state
            .read()
            .map_err(|_| MemoryError::BadFrame(frame))?;
        let e = st
            .frames
            .get(&frame.0)
            .ok_or(MemoryError::BadFrame(frame))?;
        // SAFETY: the page is mapped while its entry exists, and entries are removed
        // (and pages unmapped) only under the write lock; our read lock is held across `f`;
        // offset + len <= PAGE_SIZE was checked.
        Ok(f(unsafe { e.ptr.0.as_ptr().add(offset) }))
    }
}

impl LocalMemory for GntAlloc {
    fn read(&self, frame: Frame, offset: usize, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.with_page(frame, offset, buf.len(), |p| {
            // SAFETY: `p` has `buf.len()` mapped bytes (with_page's contract); `buf` is
            // our own memory, not the mapping; plain bytes the peer may be writing.
            unsafe { core::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), buf.len()) }
        })
    }

    fn write(&self, frame: Frame, offset: usize, data: &[u8]) -> Result<(), MemoryError> {
        self.with_page(frame, offset, data.len(), |p| {
            // SAFETY: as in `read`; our mapping is always PROT_WRITE.
            unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) }
        })
    }

    /// The page stays mapped until [`FrameAlloc::free_frame`] of it or the drop of the
    /// `GntAlloc`; the pointer must not be used after either.
    fn page_ptr(&self, frame: Frame) -> Result<NonNull<u8>, MemoryError> {
        let st = self
            .state
            .read()
            .map_err(|_| MemoryError::BadFrame(frame))?;
        st.frames
            .get(&frame.0)
            .map(|e| e.ptr.0)
            .ok_or(MemoryError::BadFrame(frame))
    }
}

impl FrameAlloc for GntAlloc {
    /// A page with a **writable** grant to the peer (see the type's docs). The
    /// trait's error has no room for the cause, which is logged: the gntalloc limit
    /// (`ENOSPC`) and any other failure both give [`MemoryError::OutOfFrames`].
    fn alloc_frame(&self) -> Result<Frame, MemoryError> {
        self.alloc_page(true).map(|(f, _)| f).map_err(|e| {
            tracing::warn!("gntalloc: {e}");
            MemoryError::OutOfFrames
        })
    }

    fn free_frame(&self, frame: Frame) {
        let mut st = self
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(e) = st.frames.remove(&frame.0) else {
            tracing::debug!(frame = frame.0, "gntalloc: free of an unknown frame");
            return;
        };
        st.by_gref.remove(&e.gref.0);
        if e.granted.load(Ordering::Relaxed) {
            tracing::debug!(
                frame = frame.0,
                gref = e.gref.0,
                "gntalloc: freeing a page still granted"
            );
        }
        // SAFETY: the page was mapped by `mmap` with this length and is removed from
        // the table under the write lock, so no reader can still use it.
        if unsafe { libc::munmap(e.ptr.0.as_ptr().cast(), PAGE_SIZE) } != 0 {
            tracing::warn!(
                frame = frame.0,
                errno = sys::errno(),
                "gntalloc: munmap failed"
            );
        }
        drop(st);
        self.dealloc(frame.0 * PAGE_SIZE as u64);
    }
}

impl GrantAccess for GntAlloc {
    fn grant_access(
        &self,
        domid: DomId,
        frame: Frame,
        readonly: bool,
    ) -> Result<GrantRef, GrantError> {
        if domid != self.peer {
            tracing::debug!(
                "{}",
                XenLinuxError::WrongPeer {
                    peer: self.peer,
                    asked: domid
                }
            );
            return Err(GrantError::Status(GrantStatus::BadDomain));
        }
        let st = self
            .state
            .read()
            .map_err(|_| GrantError::Status(GrantStatus::GeneralError))?;
        let e = st.frames.get(&frame.0).ok_or(GrantError::BadFrame(frame))?;
        if !readonly && !e.writable {
            return Err(GrantError::Status(GrantStatus::PermissionDenied));
        }
        e.granted.store(true, Ordering::Relaxed);
        Ok(e.gref)
    }

    /// Records the end of use; the peer's access itself ends only when the page is
    /// freed (gntalloc has no way to revoke a grant but freeing its page), so this
    /// never reports [`GrantError::InUse`].
    fn end_access(&self, gref: GrantRef) -> Result<(), GrantError> {
        let st = self
            .state
            .read()
            .map_err(|_| GrantError::Status(GrantStatus::GeneralError))?;
        let frame = *st.by_gref.get(&gref.0).ok_or(GrantError::BadRef(gref))?;
        match st.frames.get(&frame) {
            Some(e) if e.granted.swap(false, Ordering::Relaxed) => Ok(()),
            _ => Err(GrantError::BadRef(gref)),
        }
    }
}

impl Drop for GntAlloc {
    fn drop(&mut self) {
        let st = self
            .state
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for e in st.frames.values() {
            // SAFETY: each entry's page was mapped by `mmap` with this length and is
            // unmapped once, here, as the table is dropped (&mut self: no readers).
            unsafe { libc::munmap(e.ptr.0.as_ptr().cast(), PAGE_SIZE) };
        }
        // Closing the descriptor releases every grant still allocated.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_absent_gntalloc_names_the_path() {
        let err =
            GntAlloc::open_path(Path::new("/nonexistent-xen/gntalloc"), DomId(0)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/nonexistent-xen/gntalloc"), "{msg}");
        assert!(msg.contains("xen-gntalloc"), "{msg}");
        assert_eq!(err.errno(), Some(libc::ENOENT));
        if !Path::new(GNTALLOC_PATH).exists() {
            let err = GntAlloc::open(DomId(0)).unwrap_err();
            assert!(err.to_string().contains(GNTALLOC_PATH), "{err}");
        }
    }

    /// Under Xen with the device usable: allocate, write, read back, grant, free.
    #[test]
    fn gntalloc_round_trip_when_available() {
        let g = match GntAlloc::open(DomId(0)) {
            Ok(g) => g,
            Err(e) => {
                println!("skipped: {e}");
                return;
            }
        };
        let f = g.alloc_frame().unwrap();
        g.write(f, 100, b"xen").unwrap();
        let mut b = [0u8; 3];
        g.read(f, 100, &mut b).unwrap();
        assert_eq!(&b, b"xen");
        let gref = g.grant_access(DomId(0), f, false).unwrap();
        assert_eq!(Some(gref), g.gref(f));
        assert!(g.grant_access(DomId(1), f, false).is_err());
        g.end_access(gref).unwrap();
        g.free_frame(f);
        assert_eq!(g.allocated(), 0);
    }
}

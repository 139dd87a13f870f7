//! The using side over `/dev/xen/gntdev`: grant copies (`IOCTL_GNTDEV_GRANT_COPY`)
//! between a peer's grants and our [`LocalPages`], and grant maps into our address
//! space.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use xennet_ring::grant::GnttabCopy;
use xennet_ring::{
    DomId, Frame, FrameAlloc, GrantCopy, GrantMap, GrantRef, GrantStatus, LocalMemory, MappedPage,
    MemoryError, PAGE_SIZE,
};

use super::pages::LocalPages;
use super::sys::{self, GntdevCopyPtr, GntdevGrantCopySegment};
use super::{open_device, XenLinuxError};

/// Where the gntdev device lives.
pub const GNTDEV_PATH: &str = "/dev/xen/gntdev";

/// Segments handed to the kernel per `IOCTL_GNTDEV_GRANT_COPY` (bounds the scratch
/// buffer; the kernel itself issues the hypercall 16 operations at a time).
const COPY_CHUNK: usize = 1024;

/// One side of a copy, as the kernel is to see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopySide {
    /// An address in our memory (a [`LocalPages`] page plus the offset).
    Local(NonNull<u8>),
    /// A peer's grant.
    Foreign {
        /// The grant reference.
        gref: u32,
        /// Byte offset in the granted page.
        offset: u16,
        /// The granting domain.
        domid: u16,
    },
}

impl CopySide {
    fn to_ptr(self) -> GntdevCopyPtr {
        match self {
            CopySide::Local(p) => GntdevCopyPtr::local(p.as_ptr() as usize),
            CopySide::Foreign {
                gref,
                offset,
                domid,
            } => GntdevCopyPtr::foreign(gref, offset, domid),
        }
    }

    fn is_foreign(self) -> bool {
        matches!(self, CopySide::Foreign { .. })
    }
}

/// A [`GnttabCopy`] translated for gntdev.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translated {
    /// Where the bytes come from.
    pub source: CopySide,
    /// Where the bytes go.
    pub dest: CopySide,
    /// Number of bytes.
    pub len: u16,
}

impl Translated {
    /// Neither side is a grant: gntdev refuses such segments (`EINVAL` for the whole
    /// batch), so they are done as a plain memory copy instead.
    pub fn is_local_only(&self) -> bool {
        !self.source.is_foreign() && !self.dest.is_foreign()
    }

    /// The kernel's segment (status zero).
    pub fn to_segment(&self) -> GntdevGrantCopySegment {
        let mut flags = 0;
        if self.source.is_foreign() {
            flags |= sys::GNTCOPY_SOURCE_GREF;
        }
        if self.dest.is_foreign() {
            flags |= sys::GNTCOPY_DEST_GREF;
        }
        GntdevGrantCopySegment {
            source: self.source.to_ptr(),
            dest: self.dest.to_ptr(),
            len: self.len,
            flags,
            status: 0,
        }
    }
}

/// Translate one copy operation: the side with its `GNTCOPY_*_gref` flag becomes
/// `{ref, offset, domid}`; the other side names a frame of our own memory, found with
/// `local` (page address of a frame) and offset into a virtual address.
///
/// Checked first, as Xen checks them: `offset + len` within the page on both sides
/// ([`GrantStatus::BadCopyArg`]); a local side must say `DOMID_SELF`
/// ([`GrantStatus::PermissionDenied`]: this backend does not know its own domain id,
/// and cannot copy from another domain's frames); its frame must be one of ours
/// ([`GrantStatus::BadCopyArg`], as in the `shm` platform); a grant reference must fit
/// `grant_ref_t` ([`GrantStatus::BadGntref`]).
pub fn translate_copy(
    op: &GnttabCopy,
    local: impl Fn(Frame) -> Option<NonNull<u8>>,
) -> Result<Translated, GrantStatus> {
    let len = usize::from(op.len);
    if usize::from(op.source.offset) + len > PAGE_SIZE
        || usize::from(op.dest.offset) + len > PAGE_SIZE
    {
        return Err(GrantStatus::BadCopyArg);
    }
    let side = |ptr: &xennet_ring::grant::GnttabCopyPtr, is_gref: bool| {
        if is_gref {
            let gref = u32::try_from(ptr.u).map_err(|_| GrantStatus::BadGntref)?;
            return Ok(CopySide::Foreign {
                gref,
                offset: ptr.offset,
                domid: ptr.domid,
            });
        }
        if ptr.domid != DomId::SELF.0 {
            return Err(GrantStatus::PermissionDenied);
        }
        let page = local(Frame(ptr.u)).ok_or(GrantStatus::BadCopyArg)?;
        // SAFETY: offset + len <= PAGE_SIZE was checked above, so page + offset stays
        // within (or one past the end of, when len = 0 at offset 4096) the page that
        // `local` returned.
        Ok(CopySide::Local(unsafe {
            page.add(usize::from(ptr.offset))
        }))
    };
    Ok(Translated {
        source: side(&op.source, op.flags & sys::GNTCOPY_SOURCE_GREF != 0)?,
        dest: side(&op.dest, op.flags & sys::GNTCOPY_DEST_GREF != 0)?,
        len: op.len,
    })
}

/// The `GNTST_*` status closest to an errno of a gntdev request (the kernel does not
/// pass the hypervisor's per-grant status of a map through).
fn status_of_errno(errno: i32) -> GrantStatus {
    match errno {
        libc::EFAULT => GrantStatus::BadVirtAddr,
        libc::ENOMEM | libc::ENOSPC => GrantStatus::NoSpace,
        libc::EPERM | libc::EACCES => GrantStatus::PermissionDenied,
        libc::EAGAIN => GrantStatus::Eagain,
        _ => GrantStatus::GeneralError,
    }
}

/// Grant copies and maps through `/dev/xen/gntdev`, with our side of every copy in a
/// shared [`LocalPages`] (also reachable through this type's [`LocalMemory`] and
/// [`FrameAlloc`], which forward to it).
pub struct GntDev {
    fd: OwnedFd,
    path: PathBuf,
    pages: Arc<LocalPages>,
    scratch: Mutex<Scratch>,
}

#[derive(Default)]
struct Scratch {
    segs: Vec<GntdevGrantCopySegment>,
    which: Vec<usize>,
}

impl std::fmt::Debug for GntDev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GntDev")
            .field("path", &self.path)
            .field("pages", &self.pages.pages())
            .finish()
    }
}

/// A peer page mapped through gntdev. Dropping it does not unmap (the page stays
/// mapped, and counted against gntdev's limit, until the process exits): call
/// [`GrantMap::unmap`].
#[derive(Debug)]
pub struct GntDevMapping {
    ptr: NonNull<u8>,
    index: u64,
    readonly: bool,
    domid: DomId,
    gref: GrantRef,
}

// SAFETY: the pointer names a MAP_SHARED mapping of a granted page that stays mapped
// until `unmap` consumes this handle; it is only used through MappedPage's raw bounded
// copies, which are sound from any thread.
unsafe impl Send for GntDevMapping {}
// SAFETY: as for Send; `&GntDevMapping` only exposes the pointer value and flags.
unsafe impl Sync for GntDevMapping {}

impl GntDevMapping {
    /// The granting domain.
    pub fn domid(&self) -> DomId {
        self.domid
    }

    /// The grant mapped.
    pub fn gref(&self) -> GrantRef {
        self.gref
    }
}

impl MappedPage for GntDevMapping {
    fn as_ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    fn readonly(&self) -> bool {
        self.readonly
    }
}

impl GntDev {
    /// Open `/dev/xen/gntdev`, with `pages` as our side of grant copies.
    pub fn open(pages: Arc<LocalPages>) -> Result<GntDev, XenLinuxError> {
        Self::open_path(Path::new(GNTDEV_PATH), pages)
    }

    /// Open the gntdev device at `path`.
    pub fn open_path(path: &Path, pages: Arc<LocalPages>) -> Result<GntDev, XenLinuxError> {
        let fd = open_device(path, false, "load the xen-gntdev module (Xen guests only)")?;
        Ok(GntDev {
            fd,
            path: path.to_path_buf(),
            pages,
            scratch: Mutex::new(Scratch::default()),
        })
    }

    /// Our pages.
    pub fn pages(&self) -> &Arc<LocalPages> {
        &self.pages
    }

    /// Map `gref` of `domid` (read-only if `readonly`; a writable map of a read-only
    /// grant fails): `IOCTL_GNTDEV_MAP_GRANT_REF` for one grant, then `mmap` of the
    /// offset it returns, which is where the hypervisor map happens.
    pub fn map_page(
        &self,
        domid: DomId,
        gref: GrantRef,
        readonly: bool,
    ) -> Result<GntDevMapping, XenLinuxError> {
        let mut op = sys::IoctlGntdevMapGrantRef::<1> {
            count: 1,
            pad: 0,
            index: 0,
            refs: [sys::IoctlGntdevGrantRef {
                domid: u32::from(domid.0),
                gref: gref.0,
            }],
        };
        // SAFETY: `op` is a live ioctl_gntdev_map_grant_ref holding count = 1 refs.
        unsafe { sys::ioctl(self.fd.as_fd(), sys::IOCTL_GNTDEV_MAP_GRANT_REF, &mut op) }
            .map_err(|e| XenLinuxError::sys(&self.path, "IOCTL_GNTDEV_MAP_GRANT_REF", e))?;
        let prot = if readonly {
            libc::PROT_READ
        } else {
            libc::PROT_READ | libc::PROT_WRITE
        };
        let mapped = libc::off_t::try_from(op.index)
            .map_err(|_| libc::EOVERFLOW)
            .and_then(|off| {
                // SAFETY: a fresh shared mapping of one page of the device at the offset
                // the kernel just returned; addr is null, so no existing memory changes.
                let p = unsafe {
                    libc::mmap(
                        core::ptr::null_mut(),
                        PAGE_SIZE,
                        prot,
                        libc::MAP_SHARED,
                        self.fd.as_raw_fd(),
                        off,
                    )
                };
                if p == libc::MAP_FAILED {
                    Err(sys::errno())
                } else {
                    NonNull::new(p.cast::<u8>()).ok_or(libc::EFAULT)
                }
            });
        match mapped {
            Ok(ptr) => Ok(GntDevMapping {
                ptr,
                index: op.index,
                readonly,
                domid,
                gref,
            }),
            Err(e) => {
                // Release the slot the map request reserved.
                let _ = self.unmap_index(op.index);
                Err(XenLinuxError::sys(&self.path, "mmap", e))
            }
        }
    }

    /// Undo [`GntDev::map_page`]: `munmap` (which unmaps the grant), then
    /// `IOCTL_GNTDEV_UNMAP_GRANT_REF` to release the slot.
    pub fn unmap_page(&self, m: GntDevMapping) -> Result<(), XenLinuxError> {
        // SAFETY: `m` owns a one-page mapping made by map_page; consuming `m` means no
        // handle to it remains.
        if unsafe { libc::munmap(m.ptr.as_ptr().cast(), PAGE_SIZE) } != 0 {
            return Err(XenLinuxError::sys(&self.path, "munmap", sys::errno()));
        }
        self.unmap_index(m.index)
    }

    fn unmap_index(&self, index: u64) -> Result<(), XenLinuxError> {
        let mut op = sys::IoctlGntdevUnmapGrantRef {
            index,
            count: 1,
            pad: 0,
        };
        // SAFETY: `op` is a live ioctl_gntdev_unmap_grant_ref, read by the kernel only.
        unsafe { sys::ioctl(self.fd.as_fd(), sys::IOCTL_GNTDEV_UNMAP_GRANT_REF, &mut op) }
            .map(drop)
            .map_err(|e| XenLinuxError::sys(&self.path, "IOCTL_GNTDEV_UNMAP_GRANT_REF", e))
    }

    /// Perform `ops`, writing each one's status; see [`GrantCopy::grant_copy`]. An error
    /// means a `IOCTL_GNTDEV_GRANT_COPY` call failed as a whole: its operations are
    /// marked [`GrantStatus::GeneralError`] (the kernel may have done some of them).
    pub fn copy_batch(&self, ops: &mut [GnttabCopy]) -> Result<(), XenLinuxError> {
        let mut sc = self
            .scratch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut result = Ok(());
        for (chunk_no, chunk) in ops.chunks_mut(COPY_CHUNK).enumerate() {
            let Scratch { segs, which } = &mut *sc;
            segs.clear();
            which.clear();
            for (i, op) in chunk.iter_mut().enumerate() {
                op.status = match translate_copy(op, |f| self.pages.addr(f)) {
                    Err(s) => s.raw(),
                    Ok(t) if t.is_local_only() => {
                        match self.pages.copy_within(
                            Frame(op.source.u),
                            usize::from(op.source.offset),
                            Frame(op.dest.u),
                            usize::from(op.dest.offset),
                            usize::from(op.len),
                        ) {
                            Ok(()) => GrantStatus::Okay.raw(),
                            Err(_) => GrantStatus::BadCopyArg.raw(),
                        }
                    }
                    Ok(t) => {
                        segs.push(t.to_segment());
                        which.push(i);
                        GrantStatus::GeneralError.raw()
                    }
                };
            }
            if segs.is_empty() {
                continue;
            }
            let mut arg = sys::IoctlGntdevGrantCopy {
                count: segs.len() as libc::c_uint,
                segments: segs.as_mut_ptr(),
            };
            // Local sides point into `self.pages` (translate_copy), alive through
            // `self`, within one page each; the kernel pins those pages for the copy.
            // SAFETY: `arg` names `segs.len()` initialised segments in `segs`, which
            // outlives the call; the kernel writes only their `status` fields.
            match unsafe { sys::ioctl(self.fd.as_fd(), sys::IOCTL_GNTDEV_GRANT_COPY, &mut arg) } {
                Ok(_) => {
                    for (seg, &i) in segs.iter().zip(which.iter()) {
                        chunk[i].status = seg.status;
                    }
                }
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), errno = e, chunk = chunk_no, "grant copy failed");
                    result = Err(XenLinuxError::sys(&self.path, "IOCTL_GNTDEV_GRANT_COPY", e));
                }
            }
        }
        result
    }
}

impl GrantCopy for GntDev {
    fn grant_copy(&self, ops: &mut [GnttabCopy]) -> Result<(), GrantStatus> {
        self.copy_batch(ops)
            .map_err(|e| e.errno().map_or(GrantStatus::GeneralError, status_of_errno))
    }
}

impl GrantMap for GntDev {
    type Mapping = GntDevMapping;

    fn map(
        &self,
        domid: DomId,
        gref: GrantRef,
        readonly: bool,
    ) -> Result<GntDevMapping, GrantStatus> {
        self.map_page(domid, gref, readonly).map_err(|e| {
            tracing::debug!(domid = domid.0, gref = gref.0, "gntdev map: {e}");
            e.errno().map_or(GrantStatus::GeneralError, status_of_errno)
        })
    }

    fn unmap(&self, mapping: GntDevMapping) -> Result<(), GrantStatus> {
        self.unmap_page(mapping).map_err(|e| {
            tracing::warn!("gntdev unmap: {e}");
            GrantStatus::BadHandle
        })
    }
}

impl LocalMemory for GntDev {
    fn read(&self, frame: Frame, offset: usize, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.pages.read(frame, offset, buf)
    }

    fn write(&self, frame: Frame, offset: usize, data: &[u8]) -> Result<(), MemoryError> {
        self.pages.write(frame, offset, data)
    }

    fn page_ptr(&self, frame: Frame) -> Result<NonNull<u8>, MemoryError> {
        self.pages.page_ptr(frame)
    }
}

impl FrameAlloc for GntDev {
    fn alloc_frame(&self) -> Result<Frame, MemoryError> {
        self.pages.alloc_frame()
    }

    fn free_frame(&self, frame: Frame) {
        self.pages.free_frame(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xennet_ring::grant::GnttabCopyPtr;

    fn pool() -> LocalPages {
        LocalPages::new(4).unwrap()
    }

    #[test]
    fn translate_from_grant_into_local_frame() {
        let m = pool();
        let op = GnttabCopy::from_grant(
            GnttabCopyPtr::gref(GrantRef(77), DomId(5), 100),
            GnttabCopyPtr::local(Frame(2), 30),
            1000,
        );
        let t = translate_copy(&op, |f| m.addr(f)).unwrap();
        let base = m.addr(Frame(2)).unwrap().as_ptr() as usize;
        assert_eq!(
            t.source,
            CopySide::Foreign {
                gref: 77,
                offset: 100,
                domid: 5
            }
        );
        assert_eq!(
            t.dest,
            CopySide::Local(NonNull::new((base + 30) as *mut u8).unwrap())
        );
        assert!(!t.is_local_only());
        let seg = t.to_segment();
        assert_eq!(seg.flags, sys::GNTCOPY_SOURCE_GREF);
        assert_eq!((seg.len, seg.status), (1000, 0));
        assert_eq!(
            seg.source.to_bytes(),
            GntdevCopyPtr::foreign(77, 100, 5).to_bytes()
        );
        assert_eq!(
            seg.dest.to_bytes(),
            GntdevCopyPtr::local(base + 30).to_bytes()
        );
    }

    #[test]
    fn translate_from_local_frame_into_grant() {
        let m = pool();
        let op = GnttabCopy::to_grant(
            GnttabCopyPtr::local(Frame(0), 0),
            GnttabCopyPtr::gref(GrantRef(9), DomId(3), 4000),
            96,
        );
        let seg = translate_copy(&op, |f| m.addr(f)).unwrap().to_segment();
        assert_eq!(seg.flags, sys::GNTCOPY_DEST_GREF);
        assert_eq!(
            seg.source.to_bytes(),
            GntdevCopyPtr::local(m.addr(Frame(0)).unwrap().as_ptr() as usize).to_bytes()
        );
        assert_eq!(
            seg.dest.to_bytes(),
            GntdevCopyPtr::foreign(9, 4000, 3).to_bytes()
        );
    }

    #[test]
    fn translate_checks_like_the_hypervisor() {
        let m = pool();
        let at = |f| m.addr(f);
        let g = |off| GnttabCopyPtr::gref(GrantRef(1), DomId(1), off);
        let l = |fr, off| GnttabCopyPtr::local(Frame(fr), off);
        // Crossing the page end on either side.
        assert_eq!(
            translate_copy(&GnttabCopy::from_grant(g(4000), l(0, 0), 97), at),
            Err(GrantStatus::BadCopyArg)
        );
        assert_eq!(
            translate_copy(&GnttabCopy::from_grant(g(0), l(0, 4095), 2), at),
            Err(GrantStatus::BadCopyArg)
        );
        assert!(translate_copy(&GnttabCopy::from_grant(g(0), l(0, 0), 4096), at).is_ok());
        // A frame outside the pool.
        assert_eq!(
            translate_copy(&GnttabCopy::from_grant(g(0), l(4, 0), 1), at),
            Err(GrantStatus::BadCopyArg)
        );
        // A local side naming another domain.
        let mut foreign_local = l(0, 0);
        foreign_local.domid = 7;
        assert_eq!(
            translate_copy(&GnttabCopy::from_grant(g(0), foreign_local, 1), at),
            Err(GrantStatus::PermissionDenied)
        );
        // A grant reference wider than grant_ref_t.
        let mut wide = g(0);
        wide.u = 1 << 32;
        assert_eq!(
            translate_copy(&GnttabCopy::from_grant(wide, l(0, 0), 1), at),
            Err(GrantStatus::BadGntref)
        );
        // Grant to grant, and local to local.
        let mut both = GnttabCopy::from_grant(g(0), g(8), 8);
        both.flags = sys::GNTCOPY_SOURCE_GREF | sys::GNTCOPY_DEST_GREF;
        let t = translate_copy(&both, at).unwrap();
        assert_eq!(t.to_segment().flags, 3);
        let mut local = GnttabCopy::from_grant(l(0, 0), l(1, 0), 8);
        local.flags = 0;
        assert!(translate_copy(&local, at).unwrap().is_local_only());
    }

    #[test]
    fn status_of_errno_maps_known_errors() {
        assert_eq!(status_of_errno(libc::ENOMEM), GrantStatus::NoSpace);
        assert_eq!(status_of_errno(libc::EFAULT), GrantStatus::BadVirtAddr);
        assert_eq!(status_of_errno(libc::EINVAL), GrantStatus::GeneralError);
    }

    #[test]
    fn open_absent_gntdev_names_the_path() {
        let err =
            GntDev::open_path(Path::new("/nonexistent-xen/gntdev"), Arc::new(pool())).unwrap_err();
        assert!(err.to_string().contains("/nonexistent-xen/gntdev"), "{err}");
        assert_eq!(err.errno(), Some(libc::ENOENT));
        if !Path::new(GNTDEV_PATH).exists() {
            let err = GntDev::open(Arc::new(pool())).unwrap_err();
            assert!(err.to_string().contains(GNTDEV_PATH), "{err}");
            assert!(err.to_string().contains("xen-gntdev"), "{err}");
        }
    }

    /// Without a device, a copy batch of local-only and invalid operations never
    /// reaches the kernel; this runs the same code path with /dev/null as the "device"
    /// (any ioctl on it would fail, and none is issued).
    #[test]
    fn local_only_and_invalid_ops_never_reach_the_kernel() {
        let dev = GntDev::open_path(Path::new("/dev/null"), Arc::new(pool())).unwrap();
        dev.write(Frame(0), 10, b"hello").unwrap();
        let mut local = GnttabCopy::from_grant(
            GnttabCopyPtr::local(Frame(0), 10),
            GnttabCopyPtr::local(Frame(3), 4091),
            5,
        );
        local.flags = 0;
        let bad = GnttabCopy::from_grant(
            GnttabCopyPtr::gref(GrantRef(1), DomId(1), 4095),
            GnttabCopyPtr::local(Frame(0), 0),
            2,
        );
        let mut ops = [local, bad];
        dev.grant_copy(&mut ops).unwrap();
        assert_eq!(ops[0].status(), GrantStatus::Okay);
        assert_eq!(ops[1].status(), GrantStatus::BadCopyArg);
        let mut out = [0u8; 5];
        dev.read(Frame(3), 4091, &mut out).unwrap();
        assert_eq!(&out, b"hello");
        // And a real grant op does reach it: /dev/null refuses the ioctl.
        let real = GnttabCopy::from_grant(
            GnttabCopyPtr::gref(GrantRef(1), DomId(1), 0),
            GnttabCopyPtr::local(Frame(0), 0),
            2,
        );
        let mut ops = [real];
        assert!(dev.grant_copy(&mut ops).is_err());
        assert_eq!(ops[0].status(), GrantStatus::GeneralError);
    }
}

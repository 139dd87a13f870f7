//! The kernel ABI of Linux's Xen user-space devices: the one module where its
//! structures and request numbers are written down.
//!
//! Transcribed from the uapi headers `xen/gntalloc.h`, `xen/gntdev.h` and
//! `xen/evtchn.h` (package `linux-libc-dev`); the tests compile a small C program
//! against the installed headers and compare every size, offset and request number,
//! and also hold the x86_64 values as literals for machines without a C compiler.
//!
//! Request numbers use the generic `_IOC` encoding of `asm-generic/ioctl.h` (direction
//! in bits 30-31, size in bits 16-29, type in bits 8-15, number in bits 0-7), which is
//! the encoding of every architecture Linux runs on as a Xen guest (x86, x86_64, arm,
//! aarch64, riscv64). Other architectures (powerpc, mips, sparc, alpha) encode
//! differently and are refused at compile time rather than given wrong numbers.

use core::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd};

#[cfg(not(any(
    target_arch = "x86",
    target_arch = "x86_64",
    target_arch = "arm",
    target_arch = "aarch64",
    target_arch = "riscv64"
)))]
compile_error!(
    "xenlinux: only the generic _IOC encoding (x86, arm, aarch64, riscv64) is transcribed"
);

// ---------------------------------------------------------------------------------
// _IOC encoding (asm-generic/ioctl.h)
// ---------------------------------------------------------------------------------

const IOC_NRBITS: u32 = 8;
const IOC_TYPEBITS: u32 = 8;
const IOC_SIZEBITS: u32 = 14;
const IOC_NRSHIFT: u32 = 0;
const IOC_TYPESHIFT: u32 = IOC_NRSHIFT + IOC_NRBITS;
const IOC_SIZESHIFT: u32 = IOC_TYPESHIFT + IOC_TYPEBITS;
const IOC_DIRSHIFT: u32 = IOC_SIZESHIFT + IOC_SIZEBITS;

/// `_IOC_NONE`: the direction every Xen device request uses.
pub const IOC_NONE: u32 = 0;

/// `_IOC(dir, type, nr, size)`. Panics at compile time (all callers are consts) if
/// `size` does not fit the 14-bit size field.
pub const fn ioc(dir: u32, ty: u8, nr: u8, size: usize) -> u32 {
    assert!(
        size < (1 << IOC_SIZEBITS),
        "ioctl argument too large for _IOC"
    );
    (dir << IOC_DIRSHIFT)
        | ((size as u32) << IOC_SIZESHIFT)
        | ((ty as u32) << IOC_TYPESHIFT)
        | ((nr as u32) << IOC_NRSHIFT)
}

// ---------------------------------------------------------------------------------
// gntalloc.h: /dev/xen/gntalloc, grant our own (kernel-allocated) pages to a peer
// ---------------------------------------------------------------------------------

/// `struct ioctl_gntalloc_alloc_gref`, with room for `N` grant references.
///
/// The C struct ends in `__u32 gref_ids[1]`, a flexible array: the kernel writes
/// `count` references there, so a request for `count` pages needs `N >= count`.
/// `N = 1` is exactly the C struct (and what the request number's size names).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoctlGntallocAllocGref<const N: usize = 1> {
    /// In: the domain to be given access.
    pub domid: u16,
    /// In: `GNTALLOC_FLAG_*`.
    pub flags: u16,
    /// In: number of pages.
    pub count: u32,
    /// Out: the mmap offset (bytes) of the first page.
    pub index: u64,
    /// Out: one grant reference per page.
    pub gref_ids: [u32; N],
}

/// `GNTALLOC_FLAG_WRITABLE`: the peer may write the pages (else its grant is
/// read-only). Our own mapping of the page is writable either way.
pub const GNTALLOC_FLAG_WRITABLE: u16 = 1;

/// `IOCTL_GNTALLOC_ALLOC_GREF`.
pub const IOCTL_GNTALLOC_ALLOC_GREF: u32 =
    ioc(IOC_NONE, b'G', 5, size_of::<IoctlGntallocAllocGref<1>>());

/// `struct ioctl_gntalloc_dealloc_gref`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoctlGntallocDeallocGref {
    /// In: the offset returned by the allocation.
    pub index: u64,
    /// In: number of references to release.
    pub count: u32,
}

/// `IOCTL_GNTALLOC_DEALLOC_GREF`.
pub const IOCTL_GNTALLOC_DEALLOC_GREF: u32 =
    ioc(IOC_NONE, b'G', 6, size_of::<IoctlGntallocDeallocGref>());

/// `struct ioctl_gntalloc_unmap_notify` (same layout as gntdev's).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoctlUnmapNotify {
    /// In: mmap offset of a byte in the page (the byte to clear, with
    /// [`UNMAP_NOTIFY_CLEAR_BYTE`]).
    pub index: u64,
    /// In: `UNMAP_NOTIFY_*` actions.
    pub action: u32,
    /// In: the event channel to notify (with [`UNMAP_NOTIFY_SEND_EVENT`]).
    pub event_channel_port: u32,
}

/// `struct ioctl_gntalloc_unmap_notify`.
pub type IoctlGntallocUnmapNotify = IoctlUnmapNotify;

/// `IOCTL_GNTALLOC_SET_UNMAP_NOTIFY`.
pub const IOCTL_GNTALLOC_SET_UNMAP_NOTIFY: u32 =
    ioc(IOC_NONE, b'G', 7, size_of::<IoctlGntallocUnmapNotify>());

/// `UNMAP_NOTIFY_CLEAR_BYTE`: clear the byte at `index` when the page goes.
pub const UNMAP_NOTIFY_CLEAR_BYTE: u32 = 0x1;
/// `UNMAP_NOTIFY_SEND_EVENT`: notify `event_channel_port` when the page goes.
pub const UNMAP_NOTIFY_SEND_EVENT: u32 = 0x2;

// ---------------------------------------------------------------------------------
// gntdev.h: /dev/xen/gntdev, map and copy through a peer's grants
// ---------------------------------------------------------------------------------

/// `struct ioctl_gntdev_grant_ref`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoctlGntdevGrantRef {
    /// The granting domain.
    pub domid: u32,
    /// Its grant reference.
    pub gref: u32,
}

/// `struct ioctl_gntdev_map_grant_ref`, with room for `N` references (the C struct
/// ends in the flexible `refs[1]`; `N = 1` is the C struct).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoctlGntdevMapGrantRef<const N: usize = 1> {
    /// In: number of grants.
    pub count: u32,
    /// Padding.
    pub pad: u32,
    /// Out: the mmap offset (bytes) to map the grants at.
    pub index: u64,
    /// In: the grants.
    pub refs: [IoctlGntdevGrantRef; N],
}

/// `IOCTL_GNTDEV_MAP_GRANT_REF`.
pub const IOCTL_GNTDEV_MAP_GRANT_REF: u32 =
    ioc(IOC_NONE, b'G', 0, size_of::<IoctlGntdevMapGrantRef<1>>());

/// `struct ioctl_gntdev_unmap_grant_ref`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoctlGntdevUnmapGrantRef {
    /// In: the offset returned by the map request.
    pub index: u64,
    /// In: number of pages.
    pub count: u32,
    /// Padding.
    pub pad: u32,
}

/// `IOCTL_GNTDEV_UNMAP_GRANT_REF`.
pub const IOCTL_GNTDEV_UNMAP_GRANT_REF: u32 =
    ioc(IOC_NONE, b'G', 1, size_of::<IoctlGntdevUnmapGrantRef>());

/// `struct ioctl_gntdev_unmap_notify`.
pub type IoctlGntdevUnmapNotify = IoctlUnmapNotify;

/// `IOCTL_GNTDEV_SET_UNMAP_NOTIFY`.
pub const IOCTL_GNTDEV_SET_UNMAP_NOTIFY: u32 =
    ioc(IOC_NONE, b'G', 7, size_of::<IoctlGntdevUnmapNotify>());

/// The `foreign` arm of a copy segment's union: a peer's grant.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GntdevCopyForeign {
    /// `grant_ref_t ref`.
    pub gref: u32,
    /// Byte offset in the granted page.
    pub offset: u16,
    /// `domid_t domid`: the granting domain.
    pub domid: u16,
}

/// One side of a copy segment: `union { void *virt; struct {..} foreign; }`.
///
/// `virt` is held as a `usize` (same size and alignment as `void *` on every Linux
/// target) so that segments are plain data that may cross threads; which arm is live
/// is told by the segment's `GNTCOPY_*_gref` flag.
#[repr(C)]
#[derive(Clone, Copy)]
pub union GntdevCopyPtr {
    /// A virtual address in the caller's address space.
    pub virt: usize,
    /// A peer's grant.
    pub foreign: GntdevCopyForeign,
}

impl GntdevCopyPtr {
    /// The local-address arm (the unused bytes of the union are zero).
    pub const fn local(addr: usize) -> Self {
        let mut p = GntdevCopyPtr {
            foreign: GntdevCopyForeign {
                gref: 0,
                offset: 0,
                domid: 0,
            },
        };
        p.virt = addr;
        p
    }

    /// The grant arm.
    pub const fn foreign(gref: u32, offset: u16, domid: u16) -> Self {
        GntdevCopyPtr {
            foreign: GntdevCopyForeign {
                gref,
                offset,
                domid,
            },
        }
    }

    /// The union's bytes (both arms are plain integers, and every byte is
    /// initialised by the constructors above).
    pub fn to_bytes(self) -> [u8; size_of::<GntdevCopyPtr>()] {
        // The foreign arm spans the whole union on every target, and `local` starts
        // from it, so no byte is left uninitialised.
        // SAFETY: GntdevCopyPtr is a repr(C) union of integers, every byte initialised
        // (above); size_of matches the array's length by construction.
        unsafe { core::mem::transmute::<GntdevCopyPtr, [u8; size_of::<GntdevCopyPtr>()]>(self) }
    }
}

impl core::fmt::Debug for GntdevCopyPtr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "GntdevCopyPtr({:02x?})", self.to_bytes())
    }
}

/// `struct gntdev_grant_copy_segment`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct GntdevGrantCopySegment {
    /// Where the bytes come from.
    pub source: GntdevCopyPtr,
    /// Where the bytes go.
    pub dest: GntdevCopyPtr,
    /// Number of bytes.
    pub len: u16,
    /// `GNTCOPY_*`: which sides are grants.
    pub flags: u16,
    /// Out: `GNTST_*`.
    pub status: i16,
}

/// `GNTCOPY_source_gref`.
pub const GNTCOPY_SOURCE_GREF: u16 = 1 << 0;
/// `GNTCOPY_dest_gref`.
pub const GNTCOPY_DEST_GREF: u16 = 1 << 1;

/// `struct ioctl_gntdev_grant_copy`.
#[repr(C)]
#[derive(Debug)]
pub struct IoctlGntdevGrantCopy {
    /// Number of segments.
    pub count: libc::c_uint,
    /// The segments (each one's `status` is written back).
    pub segments: *mut GntdevGrantCopySegment,
}

/// `IOCTL_GNTDEV_GRANT_COPY`.
pub const IOCTL_GNTDEV_GRANT_COPY: u32 = ioc(IOC_NONE, b'G', 8, size_of::<IoctlGntdevGrantCopy>());

// ---------------------------------------------------------------------------------
// evtchn.h: /dev/xen/evtchn, event channels for user space
// ---------------------------------------------------------------------------------

/// `struct ioctl_evtchn_bind_interdomain`; the request returns the local port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoctlEvtchnBindInterdomain {
    /// The remote domain.
    pub remote_domain: libc::c_uint,
    /// Its unbound port.
    pub remote_port: libc::c_uint,
}

/// `IOCTL_EVTCHN_BIND_INTERDOMAIN`.
pub const IOCTL_EVTCHN_BIND_INTERDOMAIN: u32 =
    ioc(IOC_NONE, b'E', 1, size_of::<IoctlEvtchnBindInterdomain>());

/// `struct ioctl_evtchn_bind_unbound_port`; the request returns the new port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoctlEvtchnBindUnboundPort {
    /// The domain that may bind to the port.
    pub remote_domain: libc::c_uint,
}

/// `IOCTL_EVTCHN_BIND_UNBOUND_PORT`.
pub const IOCTL_EVTCHN_BIND_UNBOUND_PORT: u32 =
    ioc(IOC_NONE, b'E', 2, size_of::<IoctlEvtchnBindUnboundPort>());

/// `struct ioctl_evtchn_unbind`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoctlEvtchnUnbind {
    /// The local port.
    pub port: libc::c_uint,
}

/// `IOCTL_EVTCHN_UNBIND`.
pub const IOCTL_EVTCHN_UNBIND: u32 = ioc(IOC_NONE, b'E', 3, size_of::<IoctlEvtchnUnbind>());

/// `struct ioctl_evtchn_notify`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoctlEvtchnNotify {
    /// The local port whose remote end is notified.
    pub port: libc::c_uint,
}

/// `IOCTL_EVTCHN_NOTIFY`.
pub const IOCTL_EVTCHN_NOTIFY: u32 = ioc(IOC_NONE, b'E', 4, size_of::<IoctlEvtchnNotify>());

/// `IOCTL_EVTCHN_RESET`: empty the pending ring and clear its overflow flag.
pub const IOCTL_EVTCHN_RESET: u32 = ioc(IOC_NONE, b'E', 5, 0);

/// `evtchn_port_t`: what `read()` returns and `write()` takes on the device.
pub type EvtchnPort = u32;

// ---------------------------------------------------------------------------------
// Calls
// ---------------------------------------------------------------------------------

/// The calling thread's `errno`.
pub fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// `ioctl(fd, request, arg)`: the (non-negative) return value or the errno.
///
/// # Safety
///
/// `arg` must be what `request` expects: a pointer to a live, properly initialised
/// value of the request's argument type (as large as the kernel will read and write
/// for the counts it contains), or null for requests without an argument; any
/// pointers inside it must be valid for the kernel's accesses.
pub unsafe fn ioctl<T>(fd: BorrowedFd<'_>, request: u32, arg: *mut T) -> Result<i32, i32> {
    // SAFETY: the caller guarantees `arg` matches `request` (see above); `fd` is a
    // live descriptor for the duration of the borrow.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request as libc::Ioctl, arg) };
    if rc < 0 {
        Err(errno())
    } else {
        Ok(rc)
    }
}

#[cfg(test)]
mod tests;

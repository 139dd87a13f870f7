//! The split drivers in user space of a Linux domain under real Xen, through Linux's
//! Xen devices instead of the `shm` platform's emulation.
//!
//! # What runs where
//!
//! - **netfront in a domU** (a user-space frontend): [`GntAlloc`] for its pages and
//!   their grants ([`xennet_ring::FrameAlloc`], [`xennet_ring::LocalMemory`],
//!   [`xennet_ring::GrantAccess`]; every page is granted to the one backend domain
//!   named at [`GntAlloc::open`]) and [`EventChannels`] for its event channel.
//! - **netback in dom0 or a driver domain** (a user-space backend): [`GntDev`] to copy
//!   through and map the frontend's grants ([`xennet_ring::GrantCopy`],
//!   [`xennet_ring::GrantMap`]), [`LocalPages`] for its own buffer pages (the local
//!   side of each copy), and [`EventChannels`].
//!
//! XenStore is not here: the `xenstore` module's client speaks the same wire protocol
//! that `/dev/xen/xenbus` (or xenstored's socket in dom0) carries.
//!
//! # What the kernel needs
//!
//! A Linux kernel running as a Xen guest with the modules `xen-gntalloc` (frontend),
//! `xen-gntdev` (backend) and `xen-evtchn` (both) loaded, which create
//! `/dev/xen/gntalloc`, `/dev/xen/gntdev` and `/dev/xen/evtchn`; `xenfs` mounted on
//! `/proc/xen` is what the toolstack and `/dev/xen/xenbus` users expect. The devices
//! are root-only (mode 0600) by default: run as root or have udev grant access.
//! [`probe`] says which devices exist, so that tests and tools can skip with a reason.
//!
//! # Kernel limits
//!
//! - gntalloc: module parameter `limit` (default 1024) caps the grants allocated
//!   through the device, **system-wide** across all open files (not per file); a page
//!   freed by us but still mapped by the peer keeps counting until the peer unmaps it.
//!   Over the limit the allocation fails with `ENOSPC`, reported as
//!   [`XenLinuxError::GrantLimit`] (and [`xennet_ring::MemoryError::OutOfFrames`]
//!   through the trait). Raise it with `/sys/module/xen_gntalloc/parameters/limit`.
//! - gntdev: module parameter `limit` caps the pages mapped through the device
//!   system-wide (1048576 in the kernel source read; older kernels also had a per-file
//!   limit set with `IOCTL_GNTDEV_SET_MAX_GRANTS`); over it, mapping fails `ENOMEM`.
//!   Grant copies do not count.
//! - evtchn: the device queues each port at most once until it is re-enabled, in a ring
//!   sized for every bound port, so its overflow (`EFBIG`) should not happen; if it
//!   does, [`EventChannels`] resets the ring and reports every bound port as pending.

mod evtchn;
mod gntalloc;
mod gntdev;
mod pages;
pub mod sys;

use std::path::{Path, PathBuf};

pub use evtchn::{EventChannels, EventPort, EVTCHN_PATH};
pub use gntalloc::{GntAlloc, GNTALLOC_PATH};
pub use gntdev::{translate_copy, CopySide, GntDev, GntDevMapping, Translated, GNTDEV_PATH};
pub use pages::LocalPages;

use xennet_ring::{DomId, Frame, GrantRef};

/// Why an operation on a Xen device failed.
#[derive(Debug, thiserror::Error)]
pub enum XenLinuxError {
    /// The device could not be opened (absent: the module is not loaded or this is not
    /// a Xen guest; or not permitted: not root).
    #[error("cannot open {path}: {} ({hint})", os_msg(*errno))]
    Open {
        /// The device path.
        path: PathBuf,
        /// The errno of `open`.
        errno: i32,
        /// What usually causes it.
        hint: &'static str,
    },
    /// A system call on an open device failed.
    #[error("{path}: {op} failed: {}", os_msg(*errno))]
    Sys {
        /// The device path.
        path: PathBuf,
        /// The operation (`"IOCTL_GNTDEV_MAP_GRANT_REF"`, `"mmap"`, `"read"`...).
        op: &'static str,
        /// Its errno.
        errno: i32,
    },
    /// gntalloc's system-wide grant limit was reached (`ENOSPC`).
    #[error(
        "{path}: gntalloc grant limit reached (module parameter xen_gntalloc.limit, \
         default 1024 system-wide)"
    )]
    GrantLimit {
        /// The device path.
        path: PathBuf,
    },
    /// A gntalloc page can only be granted to the domain chosen at open.
    #[error("pages of this gntalloc handle are granted to domain {peer}, not {asked}")]
    WrongPeer {
        /// The domain the pages are granted to.
        peer: DomId,
        /// The domain asked for.
        asked: DomId,
    },
    /// The frame is not one of ours.
    #[error("frame {} is not allocated here", .0 .0)]
    BadFrame(Frame),
    /// The grant reference is not one of ours.
    #[error("grant ref {0} is not allocated here")]
    BadRef(GrantRef),
    /// A page allocated with a read-only grant was asked to be granted writable.
    #[error("frame {} was allocated with a read-only grant", .0 .0)]
    ReadOnlyGrant(Frame),
    /// Allocating local memory failed.
    #[error("cannot allocate {pages} local pages: {source}")]
    LocalAlloc {
        /// Pages asked for.
        pages: usize,
        /// The OS error.
        source: std::io::Error,
    },
}

impl XenLinuxError {
    /// The errno behind the error, if one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            XenLinuxError::Open { errno, .. } | XenLinuxError::Sys { errno, .. } => Some(*errno),
            XenLinuxError::GrantLimit { .. } => Some(libc::ENOSPC),
            XenLinuxError::LocalAlloc { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    pub(crate) fn sys(path: &Path, op: &'static str, errno: i32) -> Self {
        XenLinuxError::Sys {
            path: path.to_path_buf(),
            op,
            errno,
        }
    }
}

fn os_msg(errno: i32) -> String {
    std::io::Error::from_raw_os_error(errno).to_string()
}

/// Open a Xen device read-write, close-on-exec (and non-blocking if asked).
pub(crate) fn open_device(
    path: &Path,
    nonblock: bool,
    module: &'static str,
) -> Result<std::os::fd::OwnedFd, XenLinuxError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut flags = libc::O_CLOEXEC;
    if nonblock {
        flags |= libc::O_NONBLOCK;
    }
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(flags)
        .open(path)
    {
        Ok(f) => Ok(f.into()),
        Err(e) => {
            let errno = e.raw_os_error().unwrap_or(libc::EIO);
            let hint = match errno {
                libc::ENOENT | libc::ENODEV | libc::ENXIO => module,
                libc::EACCES | libc::EPERM => "the Xen devices are root-only by default",
                _ => "unexpected error",
            };
            Err(XenLinuxError::Open {
                path: path.to_path_buf(),
                errno,
                hint,
            })
        }
    }
}

/// Which of Linux's Xen devices exist on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    /// `/dev/xen/gntalloc` (module xen-gntalloc): what a frontend needs.
    pub gntalloc: bool,
    /// `/dev/xen/gntdev` (module xen-gntdev): what a backend needs.
    pub gntdev: bool,
    /// `/dev/xen/evtchn` (module xen-evtchn): what both need.
    pub evtchn: bool,
}

/// Look for the three devices (existence only; opening may still need root).
pub fn probe() -> Probe {
    Probe {
        gntalloc: Path::new(GNTALLOC_PATH).exists(),
        gntdev: Path::new(GNTDEV_PATH).exists(),
        evtchn: Path::new(EVTCHN_PATH).exists(),
    }
}

impl Probe {
    /// The paths of the missing devices.
    pub fn missing(&self) -> Vec<&'static str> {
        [
            (self.gntalloc, GNTALLOC_PATH),
            (self.gntdev, GNTDEV_PATH),
            (self.evtchn, EVTCHN_PATH),
        ]
        .into_iter()
        .filter_map(|(present, path)| (!present).then_some(path))
        .collect()
    }

    /// Why a frontend (gntalloc + evtchn) cannot run here, or `None` if it can.
    pub fn frontend_skip_reason(&self) -> Option<String> {
        Self::reason(&[(self.gntalloc, GNTALLOC_PATH), (self.evtchn, EVTCHN_PATH)])
    }

    /// Why a backend (gntdev + evtchn) cannot run here, or `None` if it can.
    pub fn backend_skip_reason(&self) -> Option<String> {
        Self::reason(&[(self.gntdev, GNTDEV_PATH), (self.evtchn, EVTCHN_PATH)])
    }

    fn reason(need: &[(bool, &'static str)]) -> Option<String> {
        let missing: Vec<&str> = need.iter().filter(|(p, _)| !p).map(|(_, n)| *n).collect();
        if missing.is_empty() {
            return None;
        }
        let xen = std::fs::read_to_string("/sys/hypervisor/type")
            .map(|t| t.trim() == "xen")
            .unwrap_or(false);
        Some(format!(
            "{} missing ({})",
            missing.join(", "),
            if xen {
                "Xen guest: load xen-gntalloc / xen-gntdev / xen-evtchn"
            } else {
                "not running under Xen"
            }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_send_and_sync() {
        fn both<T: Send + Sync>() {}
        both::<GntAlloc>();
        both::<GntDev>();
        both::<GntDevMapping>();
        both::<LocalPages>();
        both::<EventChannels>();
        both::<EventPort>();
        both::<XenLinuxError>();
    }

    #[test]
    fn probe_reports_consistently() {
        let p = probe();
        assert_eq!(
            p.missing().len(),
            [p.gntalloc, p.gntdev, p.evtchn]
                .iter()
                .filter(|x| !**x)
                .count()
        );
        assert_eq!(p.frontend_skip_reason().is_none(), p.gntalloc && p.evtchn);
        assert_eq!(p.backend_skip_reason().is_none(), p.gntdev && p.evtchn);
        if let Some(r) = p.backend_skip_reason() {
            println!("backend would skip: {r}");
        }
    }

    #[test]
    fn open_missing_device_names_the_path() {
        let path = Path::new("/nonexistent-xen/gntdev");
        let err = open_device(path, false, "load the xen-gntdev module").unwrap_err();
        assert_eq!(err.errno(), Some(libc::ENOENT));
        let msg = err.to_string();
        assert!(msg.contains("/nonexistent-xen/gntdev"), "{msg}");
        assert!(msg.contains("xen-gntdev"), "{msg}");
    }
}

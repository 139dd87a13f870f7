//! A Linux TAP device as the uplink: frames the fabric sends to `peth0` are written to
//! the TAP; frames the kernel sends through the TAP enter the fabric. The kernel's
//! own stack (addresses, ARP, ping, TCP) is then a real peer on the segment.
//!
//! Opening a TAP needs CAP_NET_ADMIN and `/dev/net/tun`. The device is created in the
//! network namespace of the calling thread; configure it (`ip link set NAME up`, an
//! address) from outside. Frames are read without blocking in [`Endpoint::poll`].
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;

use xennet_ring::time::Instant;

use super::Endpoint;

/// Largest frame read from the TAP (64 KiB plus an Ethernet header).
const MAX_FRAME: usize = 65_535 + 14;
/// Frames read per poll, so one busy TAP cannot starve the rest.
const READ_BUDGET: usize = 64;

/// TAP errors.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// `/dev/net/tun` could not be opened.
    #[error("cannot open /dev/net/tun: {0}")]
    Open(std::io::Error),
    /// TUNSETIFF failed (no CAP_NET_ADMIN, name in use...).
    #[error("TUNSETIFF {name}: {source}")]
    SetIff {
        /// The device name.
        name: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// TUNSETPERSIST failed.
    #[error("TUNSETPERSIST {name}: {source}")]
    Persist {
        /// The device name.
        name: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The name is not a valid interface name.
    #[error("bad TAP name {0:?}: 1-15 characters")]
    BadName(String),
}

/// An open TAP device.
#[derive(Debug)]
pub struct TapDevice {
    name: String,
    file: File,
    buf: Vec<u8>,
    rx_frames: u64,
    tx_frames: u64,
    tx_errors: u64,
}

#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

impl TapDevice {
    /// Creates (or attaches to) TAP device `name` with IFF_TAP | IFF_NO_PI, non-blocking.
    pub fn open(name: &str) -> Result<TapDevice, TapError> {
        if name.is_empty() || name.len() > 15 || name.contains('\0') {
            return Err(TapError::BadName(name.to_string()));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(TapError::Open)?;
        let mut req = IfReq {
            name: [0; 16],
            flags: (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short,
            _pad: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: `file` is an open descriptor of /dev/net/tun; TUNSETIFF reads and
        // writes a `struct ifreq` (40 bytes: 16-byte name, then the flags union),
        // which `IfReq` lays out with repr(C) and lives for the duration of the call.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req as *mut IfReq) };
        if rc < 0 {
            return Err(TapError::SetIff {
                name: name.to_string(),
                source: std::io::Error::last_os_error(),
            });
        }
        tracing::info!(tap = name, "TAP uplink opened");
        Ok(TapDevice {
            name: name.to_string(),
            file,
            buf: vec![0; MAX_FRAME],
            rx_frames: 0,
            tx_frames: 0,
            tx_errors: 0,
        })
    }

    /// Makes the device outlive this descriptor (`persist`: it stays, down, until
    /// made non-persistent and closed: how a kernel vif lasts from the backend's
    /// probe to the device's removal across connections), or not.
    pub fn set_persist(&self, persist: bool) -> Result<(), TapError> {
        // SAFETY: `file` is an open TAP descriptor; TUNSETPERSIST takes its argument
        // by value (an int flag), no memory is passed.
        let rc = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                libc::TUNSETPERSIST,
                libc::c_ulong::from(persist),
            )
        };
        if rc < 0 {
            return Err(TapError::Persist {
                name: self.name.clone(),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// The device name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The descriptor, for the caller's poll/epoll loop.
    pub fn fd(&self) -> std::os::unix::io::RawFd {
        self.file.as_raw_fd()
    }

    /// (frames read, frames written, write errors).
    pub fn stats(&self) -> (u64, u64, u64) {
        (self.rx_frames, self.tx_frames, self.tx_errors)
    }
}

impl Endpoint for TapDevice {
    fn receive(&mut self, _now: Instant, frame: &[u8]) {
        match self.file.write(frame) {
            // A TAP write takes the whole frame or fails.
            Ok(n) if n == frame.len() => self.tx_frames += 1,
            Ok(_) => self.tx_errors += 1,
            // The interface is down or its queue full: the frame is lost, as on a wire.
            Err(_) => self.tx_errors += 1,
        }
    }

    fn poll(&mut self, _now: Instant, tx: &mut dyn FnMut(&[u8])) {
        for _ in 0..READ_BUDGET {
            match self.file.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => {
                    self.rx_frames += 1;
                    tx(&self.buf[..n]);
                }
                Err(e)
                    if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted =>
                {
                    break
                }
                Err(e) => {
                    tracing::warn!(tap = %self.name, error = %e, "TAP read failed");
                    break;
                }
            }
        }
    }

    fn poll_at(&mut self, _now: Instant) -> Option<Instant> {
        None
    }

    fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        Some(self.file.as_fd())
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

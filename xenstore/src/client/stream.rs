//! What a client talks over: a daemon's unix socket, or a Xen domain's xenbus device.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;

/// xenstored's socket in domain 0 on a real Xen host.
pub const XENSTORED_SOCKET: &str = "/run/xenstored/socket";
/// The xenbus device of a Linux domain on a real Xen host.
pub const XENBUS_DEVICE: &str = "/dev/xen/xenbus";

/// What a client talks over: a daemon's unix socket, or a Xen domain's xenbus device.
pub(super) enum Stream {
    Unix(UnixStream),
    Device(std::fs::File),
}

impl Stream {
    pub(super) fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
            Stream::Device(f) => Stream::Device(f.try_clone()?),
        })
    }

    /// Ends the connection for the daemon and wakes a reader blocked on a socket.
    pub(super) fn shutdown(&self) {
        if let Stream::Unix(s) = self {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Device(f) => f.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Device(f) => f.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

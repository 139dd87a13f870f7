//! Event channels over `/dev/xen/evtchn`, with the verbs of the `shm` platform's
//! `EventChannels`.
//!
//! The device delivers an event on a bound port by queueing the port number for
//! `read()` and disabling the port; it stays disabled (further events stay pending in
//! the hypervisor) until the port number is written back with `write()`. So
//! [`EventChannels::poll_into`] reads the queued ports and writes them straight back
//! (re-enabling them) before returning them: an event arriving while the caller drains
//! its rings is queued again, and the caller wakes for it next time.
//!
//! Masking is ours: the device has no mask request. A port [`EventChannels::mask`]ed
//! here is not written back when its event is read; the event is held, and delivered
//! (and the port re-enabled) by [`EventChannels::unmask`].

use std::collections::HashSet;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use xennet_ring::{DomId, Notify, Port};

use super::sys;
use super::{open_device, XenLinuxError};

/// Where the evtchn device lives.
pub const EVTCHN_PATH: &str = "/dev/xen/evtchn";

/// Ports read per `read()` (one page of `evtchn_port_t`, the most the device returns).
const READ_PORTS: usize = 1024;

/// A domain's event channels through one open of the evtchn device. Thread-safe:
/// [`EventChannels::notify`] takes no lock; reads take a short one, never across a
/// blocking wait.
pub struct EventChannels {
    fd: OwnedFd,
    path: PathBuf,
    /// Woken by [`EventChannels::unmask`] when it makes a held event deliverable, so a
    /// thread blocked in [`EventChannels::wait_into`] sees it.
    wake: OwnedFd,
    /// Set by [`EventChannels::interrupt`]: the next or current wait returns.
    interrupted: AtomicBool,
    rx: Mutex<Rx>,
}

#[derive(Default)]
struct Rx {
    bound: HashSet<u32>,
    masked: HashSet<u32>,
    /// Events read while masked (the port is left disabled in the device).
    held: Vec<u32>,
    /// Held events made deliverable by `unmask`.
    ready: Vec<u32>,
    buf: Vec<sys::EvtchnPort>,
    rearm: Vec<sys::EvtchnPort>,
}

impl std::fmt::Debug for EventChannels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventChannels")
            .field("path", &self.path)
            .finish()
    }
}

impl EventChannels {
    /// Open `/dev/xen/evtchn`.
    pub fn open() -> Result<Arc<EventChannels>, XenLinuxError> {
        Self::open_path(Path::new(EVTCHN_PATH))
    }

    /// Open the evtchn device at `path`.
    pub fn open_path(path: &Path) -> Result<Arc<EventChannels>, XenLinuxError> {
        let fd = open_device(path, true, "load the xen-evtchn module (Xen guests only)")?;
        let wake = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )
        .map_err(|e| XenLinuxError::sys(path, "eventfd", e.raw_os_error()))?;
        Ok(Arc::new(EventChannels {
            fd,
            path: path.to_path_buf(),
            wake,
            interrupted: AtomicBool::new(false),
            rx: Mutex::new(Rx {
                buf: vec![0; READ_PORTS],
                ..Rx::default()
            }),
        }))
    }

    fn rx(&self) -> MutexGuard<'_, Rx> {
        self.rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn bind(
        &self,
        op: &'static str,
        request: u32,
        arg: *mut libc::c_void,
    ) -> Result<Port, XenLinuxError> {
        // SAFETY: the callers pass a pointer to a live argument struct of `request`'s
        // type (bind_unbound_port / bind_interdomain), read by the kernel only.
        let port = unsafe { sys::ioctl(self.fd.as_fd(), request, arg) }
            .map_err(|e| XenLinuxError::sys(&self.path, op, e))?;
        let port = port as u32; // non-negative: ioctl returned Ok
        self.rx().bound.insert(port);
        Ok(Port(port))
    }

    /// `EVTCHNOP_alloc_unbound` (`IOCTL_EVTCHN_BIND_UNBOUND_PORT`): a fresh port of
    /// ours that `remote` may bind to, already bound to this handle.
    pub fn alloc_unbound(&self, remote: DomId) -> Result<Port, XenLinuxError> {
        let mut op = sys::IoctlEvtchnBindUnboundPort {
            remote_domain: u32::from(remote.0),
        };
        self.bind(
            "IOCTL_EVTCHN_BIND_UNBOUND_PORT",
            sys::IOCTL_EVTCHN_BIND_UNBOUND_PORT,
            (&raw mut op).cast(),
        )
    }

    /// `EVTCHNOP_bind_interdomain` (`IOCTL_EVTCHN_BIND_INTERDOMAIN`): a new local port
    /// connected to `remote`'s unbound `remote_port`.
    pub fn bind_interdomain(
        &self,
        remote: DomId,
        remote_port: Port,
    ) -> Result<Port, XenLinuxError> {
        let mut op = sys::IoctlEvtchnBindInterdomain {
            remote_domain: u32::from(remote.0),
            remote_port: remote_port.0,
        };
        self.bind(
            "IOCTL_EVTCHN_BIND_INTERDOMAIN",
            sys::IOCTL_EVTCHN_BIND_INTERDOMAIN,
            (&raw mut op).cast(),
        )
    }

    /// Whether `port` is bound through this handle (the device cannot say whether the
    /// remote end is connected).
    pub fn is_bound(&self, port: Port) -> bool {
        self.rx().bound.contains(&port.0)
    }

    /// `EVTCHNOP_send` (`IOCTL_EVTCHN_NOTIFY`), reporting the error.
    pub fn try_notify(&self, port: Port) -> Result<(), XenLinuxError> {
        let mut op = sys::IoctlEvtchnNotify { port: port.0 };
        // SAFETY: `op` is a live ioctl_evtchn_notify, read by the kernel only.
        unsafe { sys::ioctl(self.fd.as_fd(), sys::IOCTL_EVTCHN_NOTIFY, &mut op) }
            .map(drop)
            .map_err(|e| XenLinuxError::sys(&self.path, "IOCTL_EVTCHN_NOTIFY", e))
    }

    /// `EVTCHNOP_send`: notify the remote end of `port`. False if the device refused
    /// (the port is not bound here: `ENOTCONN`). Takes no lock.
    pub fn notify(&self, port: Port) -> bool {
        match self.try_notify(port) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!("{e}");
                false
            }
        }
    }

    /// Mask a port: its events are held (not returned by polls) until unmasked.
    pub fn mask(&self, port: Port) {
        self.rx().masked.insert(port.0);
    }

    /// Unmask a port; an event held while it was masked is delivered now (and wakes a
    /// waiter).
    pub fn unmask(&self, port: Port) {
        let mut rx = self.rx();
        if !rx.masked.remove(&port.0) {
            return;
        }
        let before = rx.held.len();
        rx.held.retain(|&p| p != port.0);
        if rx.held.len() != before {
            rx.ready.push(port.0);
            self.rearm(&[port.0]);
            self.kick();
        }
    }

    /// `IOCTL_EVTCHN_UNBIND`: close the port (the remote end's becomes unbound).
    pub fn close(&self, port: Port) {
        let mut op = sys::IoctlEvtchnUnbind { port: port.0 };
        // SAFETY: `op` is a live ioctl_evtchn_unbind, read by the kernel only.
        if let Err(e) = unsafe { sys::ioctl(self.fd.as_fd(), sys::IOCTL_EVTCHN_UNBIND, &mut op) } {
            tracing::debug!(port = port.0, errno = e, "evtchn unbind failed");
        }
        let mut rx = self.rx();
        rx.bound.remove(&port.0);
        rx.masked.remove(&port.0);
        rx.held.retain(|&p| p != port.0);
        rx.ready.retain(|&p| p != port.0);
    }

    /// `IOCTL_EVTCHN_RESET`: empty the device's pending queue and clear its overflow.
    pub fn reset(&self) -> Result<(), XenLinuxError> {
        // SAFETY: IOCTL_EVTCHN_RESET takes no argument.
        unsafe {
            sys::ioctl::<libc::c_void>(
                self.fd.as_fd(),
                sys::IOCTL_EVTCHN_RESET,
                core::ptr::null_mut(),
            )
        }
        .map(drop)
        .map_err(|e| XenLinuxError::sys(&self.path, "IOCTL_EVTCHN_RESET", e))
    }

    /// Re-enable ports in the device (`write()` of their numbers).
    fn rearm(&self, ports: &[sys::EvtchnPort]) {
        if ports.is_empty() {
            return;
        }
        // The device takes at most a page of ports per write.
        for chunk in ports.chunks(READ_PORTS) {
            let bytes = core::mem::size_of_val(chunk);
            // SAFETY: `chunk` is `bytes` bytes of initialised u32s, read by the kernel.
            let n = unsafe { libc::write(self.fd.as_raw_fd(), chunk.as_ptr().cast(), bytes) };
            if n < 0 {
                tracing::warn!(path = %self.path.display(), errno = sys::errno(), "evtchn re-enable failed");
            }
        }
    }

    /// Make a [`EventChannels::wait_into`] in progress (or the next one) return at
    /// once, with or without events.
    pub fn interrupt(&self) {
        self.interrupted.store(true, Ordering::Release);
        self.kick();
    }

    fn kick(&self) {
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
    }

    /// Take every pending event without blocking; appends the ports to `out`.
    pub fn poll_into(&self, out: &mut Vec<Port>) {
        let mut guard = self.rx();
        let rx = &mut *guard;
        let mut counter = [0u8; 8];
        let _ = rustix::io::read(&self.wake, &mut counter);
        out.extend(rx.ready.drain(..).map(Port));
        rx.rearm.clear();
        loop {
            let cap = core::mem::size_of_val(rx.buf.as_slice());
            // SAFETY: `rx.buf` is `cap` bytes of writable u32s; the device writes whole
            // ports only, at most `cap` bytes. The descriptor is non-blocking.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), rx.buf.as_mut_ptr().cast(), cap) };
            if n < 0 {
                match sys::errno() {
                    libc::EINTR => continue,
                    libc::EAGAIN => break,
                    libc::EFBIG => {
                        // The queue overflowed: events were lost. Reset it, and
                        // report (and re-enable) every bound port: spurious events are
                        // harmless, drivers drain their rings on each.
                        tracing::warn!(path = %self.path.display(), "evtchn queue overflow; resetting");
                        if let Err(e) = self.reset() {
                            tracing::warn!("{e}");
                            break;
                        }
                        let ports: Vec<u32> = rx.bound.iter().copied().collect();
                        for p in ports {
                            Self::deliver(rx, p, out);
                        }
                        continue;
                    }
                    e => {
                        tracing::warn!(path = %self.path.display(), errno = e, "evtchn read failed");
                        break;
                    }
                }
            }
            let ports = n as usize / core::mem::size_of::<sys::EvtchnPort>();
            for i in 0..ports {
                let p = rx.buf[i];
                Self::deliver(rx, p, out);
            }
            if ports < rx.buf.len() {
                break;
            }
        }
        self.rearm(&rx.rearm);
        rx.rearm.clear();
    }

    fn deliver(rx: &mut Rx, p: u32, out: &mut Vec<Port>) {
        if rx.masked.contains(&p) {
            if !rx.held.contains(&p) {
                rx.held.push(p);
            }
        } else {
            out.push(Port(p));
            rx.rearm.push(p);
        }
    }

    /// Block until an event is pending or `timeout` passes; returns the ports that had
    /// events (empty on timeout).
    pub fn wait(&self, timeout: Option<Duration>) -> Vec<Port> {
        let mut out = Vec::new();
        self.wait_into(timeout, &mut out);
        out
    }

    /// [`EventChannels::wait`] into a caller's buffer: `poll()` on the device (no lock
    /// held), then [`EventChannels::poll_into`].
    pub fn wait_into(&self, timeout: Option<Duration>, out: &mut Vec<Port>) {
        let start = out.len();
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            self.poll_into(out);
            if out.len() > start || self.interrupted.swap(false, Ordering::AcqRel) {
                return;
            }
            let ms: libc::c_int = match deadline {
                None => -1,
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => {
                        // Round up, so a short timeout does not spin at 0 ms.
                        let ms = left.as_nanos().div_ceil(1_000_000);
                        ms.min(libc::c_int::MAX as u128) as libc::c_int
                    }
                    _ => return,
                },
            };
            let mut fds = [
                libc::pollfd {
                    fd: self.fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.wake.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: `fds` is a live array of 2 pollfds on descriptors we own.
            let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
            if r < 0 {
                let e = sys::errno();
                if e != libc::EINTR {
                    tracing::warn!(path = %self.path.display(), errno = e, "evtchn poll failed");
                    return;
                }
            } else if fds[0].revents & libc::POLLNVAL != 0 {
                tracing::warn!(path = %self.path.display(), "evtchn descriptor invalid");
                return;
            }
            // Readable, error (overflow: poll_into resets), timeout or EINTR: look.
        }
    }

    /// A handle that notifies through `port` (implements [`Notify`]).
    pub fn port(self: &Arc<Self>, port: Port) -> EventPort {
        EventPort {
            channels: self.clone(),
            port,
        }
    }
}

/// One local port, for drivers: kicks the remote end.
#[derive(Clone, Debug)]
pub struct EventPort {
    channels: Arc<EventChannels>,
    port: Port,
}

impl EventPort {
    /// The local port number.
    pub fn port(&self) -> Port {
        self.port
    }
}

impl Notify for EventPort {
    fn notify(&self) {
        self.channels.notify(self.port);
    }
}

impl crate::EventChannelOps for Arc<EventChannels> {
    type Notifier = EventPort;
    type Error = XenLinuxError;

    fn alloc_unbound(&self, remote: DomId) -> Result<Port, XenLinuxError> {
        EventChannels::alloc_unbound(self, remote)
    }

    fn bind_interdomain(&self, remote: DomId, remote_port: Port) -> Result<Port, XenLinuxError> {
        EventChannels::bind_interdomain(self, remote, remote_port)
    }

    fn notifier(&self, port: Port) -> EventPort {
        EventChannels::port(self, port)
    }

    fn close(&self, port: Port) {
        EventChannels::close(self, port)
    }

    fn wait_into(&self, timeout: Option<Duration>, out: &mut Vec<Port>) {
        EventChannels::wait_into(self, timeout, out)
    }

    fn mask(&self, port: Port) {
        EventChannels::mask(self, port)
    }

    fn unmask(&self, port: Port) {
        EventChannels::unmask(self, port)
    }

    fn interrupter(&self) -> crate::Interrupter {
        let ch = self.clone();
        crate::Interrupter::new(move || ch.interrupt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_absent_evtchn_names_the_path() {
        let err = EventChannels::open_path(Path::new("/nonexistent-xen/evtchn")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent-xen/evtchn"), "{err}");
        assert!(err.to_string().contains("xen-evtchn"), "{err}");
        if !Path::new(EVTCHN_PATH).exists() {
            let err = EventChannels::open().unwrap_err();
            assert!(err.to_string().contains(EVTCHN_PATH), "{err}");
        }
    }

    /// The read/re-enable/mask logic, with one end of a socketpair standing in for the
    /// device: ports written into the other end are "pending" (what `read()` returns),
    /// and the re-enabling `write()`s come out at the other end.
    #[test]
    fn poll_reads_ports_rearms_and_holds_masked() {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let wake = rustix::event::eventfd(0, rustix::event::EventfdFlags::NONBLOCK).unwrap();
        let ch = Arc::new(EventChannels {
            fd: OwnedFd::from(ours),
            path: PathBuf::from("socketpair"),
            wake,
            interrupted: AtomicBool::new(false),
            rx: Mutex::new(Rx {
                buf: vec![0; READ_PORTS],
                ..Rx::default()
            }),
        });
        let send = |ports: &[u32]| {
            use std::io::Write;
            let bytes: Vec<u8> = ports.iter().flat_map(|p| p.to_ne_bytes()).collect();
            (&theirs).write_all(&bytes).unwrap();
        };
        let rearmed = || {
            use std::io::Read;
            theirs.set_nonblocking(true).unwrap();
            let mut b = [0u8; 64];
            let n = (&theirs).read(&mut b).unwrap_or(0);
            b[..n]
                .chunks(4)
                .map(|c| u32::from_ne_bytes(c.try_into().unwrap()))
                .collect::<Vec<_>>()
        };
        ch.mask(Port(7));
        send(&[3, 7, 5]);
        let got = ch.wait(Some(Duration::from_secs(5)));
        assert_eq!(got, vec![Port(3), Port(5)]);
        assert_eq!(rearmed(), vec![3, 5], "masked port 7 stays disabled");
        assert!(ch.wait(Some(Duration::from_millis(20))).is_empty());
        // Unmasking delivers the held event and re-enables the port, waking a waiter.
        let ch2 = ch.clone();
        let waiter = std::thread::spawn(move || ch2.wait(Some(Duration::from_secs(5))));
        std::thread::sleep(Duration::from_millis(50));
        ch.unmask(Port(7));
        assert_eq!(waiter.join().unwrap(), vec![Port(7)]);
        assert_eq!(rearmed(), vec![7]);
        // Notify through the handle reaches the fake device as an ioctl, which a
        // socket refuses: false, no panic.
        assert!(!ch.notify(Port(3)));
        ch.port(Port(3)).notify();
    }
}

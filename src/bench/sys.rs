//! The few system calls the benchmark needs that std does not offer: CPU time of this
//! process, CPU pinning, and batched datagram I/O (`sendmmsg`/`recvmmsg`).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// User + system CPU time consumed so far by this process, in nanoseconds.
pub fn cpu_time_ns() -> u64 {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole `rusage` into the pointer we pass; the buffer is
    // a properly aligned, writable `rusage` that outlives the call.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) };
    if rc != 0 {
        return 0;
    }
    // SAFETY: rc == 0 means the kernel filled the structure; zeroed() made every byte valid.
    let ru = unsafe { ru.assume_init() };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Pin the calling thread to `cpu` (ignored if the machine has fewer CPUs).
pub fn pin_to_cpu(cpu: usize) {
    let n = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if n < 2 {
        return;
    }
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu % n);
    // Pinning is an optimisation for stable figures; failing to pin is not an error.
    let _ = rustix::thread::sched_setaffinity(None, &set);
}

/// Number of CPUs available to this process.
pub fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Send `bufs` as individual datagrams with one `sendmmsg` call; returns how many went.
pub fn sendmmsg(fd: BorrowedFd<'_>, bufs: &[&[u8]]) -> io::Result<usize> {
    let mut iovs: Vec<libc::iovec> = bufs
        .iter()
        .map(|b| libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: mmsghdr is plain C data; all-zero is a valid "no name, no control" header.
    let mut hdrs: Vec<libc::mmsghdr> = (0..bufs.len())
        .map(|_| unsafe { std::mem::zeroed() })
        .collect();
    for (h, iov) in hdrs.iter_mut().zip(iovs.iter_mut()) {
        h.msg_hdr.msg_iov = iov;
        h.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: `hdrs` holds `bufs.len()` headers, each pointing at one iovec that points
    // at a live buffer borrowed for the duration of the call; the kernel only reads them.
    let n = unsafe { libc::sendmmsg(fd.as_raw_fd(), hdrs.as_mut_ptr(), hdrs.len() as u32, 0) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Receive up to `bufs.len()` datagrams with one `recvmmsg` call, blocking for the first;
/// writes each datagram's length into `lens` and returns how many arrived.
pub fn recvmmsg(fd: BorrowedFd<'_>, bufs: &mut [Vec<u8>], lens: &mut [usize]) -> io::Result<usize> {
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: mmsghdr is plain C data; all-zero is a valid "no name, no control" header.
    let mut hdrs: Vec<libc::mmsghdr> = (0..bufs.len())
        .map(|_| unsafe { std::mem::zeroed() })
        .collect();
    for (h, iov) in hdrs.iter_mut().zip(iovs.iter_mut()) {
        h.msg_hdr.msg_iov = iov;
        h.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: every header points at one iovec describing a writable buffer we own
    // exclusively for the call; MSG_WAITFORONE returns after at least one datagram.
    let n = unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            hdrs.as_mut_ptr(),
            hdrs.len() as u32,
            libc::MSG_WAITFORONE,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    for (len, h) in lens.iter_mut().zip(hdrs.iter()).take(n) {
        *len = h.msg_len as usize;
    }
    Ok(n)
}

//! Surviving a peer that truncates its file under our mapping.
//!
//! A page of a `MAP_SHARED` file mapping past the file's end raises SIGBUS when it is
//! touched, wherever the access is: a grant copy here, or a ring index read through a
//! grant mapping in a driver. Every mapping of another domain's file is registered in
//! a fixed table; a SIGBUS handler looks the faulting address up, and if it is in a
//! registered mapping it replaces that page with a private anonymous page filled with
//! `0xff` (`mmap(MAP_FIXED)`), marks the mapping faulted and returns, so the access
//! completes on the replacement. `0xff` fails closed everywhere a peer's bytes are
//! interpreted: a grant entry reads as neither permitted nor free, ring producer
//! indices as far beyond the ring (the vif ends with a counted fatal error), event
//! ports as masked and transient. The copy and map paths check the mark and fail the
//! operation, so no byte read from a replacement page is used as the peer's data.
//! Faults anywhere else go to the handler that was installed before ours (or the
//! default action): our own bugs still crash. docs/design.md §5 says why this and not
//! sealed memfds.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};

/// Peer mappings that can be guarded at once: a driver domain maps three files per
/// guest (memory, grant table, event page), so this serves over 1300 guests.
const SLOTS: usize = 4096;

struct Slot {
    /// Start address; 0 when the slot is free or being filled.
    start: AtomicUsize,
    /// Length in bytes; non-zero while the slot is claimed.
    len: AtomicUsize,
    faulted: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)] // only used to build the table
const FREE: Slot = Slot {
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    faulted: AtomicBool::new(false),
};

static TABLE: [Slot; SLOTS] = [FREE; SLOTS];
/// Pages replaced since the process started.
static REPLACED: AtomicUsize = AtomicUsize::new(0);
static HOST_PAGE: AtomicUsize = AtomicUsize::new(4096);
static INSTALL: Once = Once::new();
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The SIGBUS disposition found when ours was installed (called for faults that are
/// not in a guarded mapping).
struct Previous(libc::sigaction);
// SAFETY: a plain C struct of integers and a function pointer, written once before
// it is published through the OnceLock and only read afterwards.
unsafe impl Sync for Previous {}
// SAFETY: as above; it holds no pointer to data.
unsafe impl Send for Previous {}
static PREVIOUS: OnceLock<Previous> = OnceLock::new();

/// A registered mapping; dropping it unregisters (drop it before unmapping).
#[derive(Debug)]
pub(super) struct Guard {
    slot: usize,
}

impl Guard {
    /// Register `len` bytes at `start`. `None` if the handler could not be installed or
    /// the table is full (the caller refuses to map the peer then).
    pub(super) fn register(start: *const u8, len: usize) -> Option<Guard> {
        install();
        if !INSTALLED.load(Ordering::Acquire) || len == 0 || start.is_null() {
            return None;
        }
        for (i, s) in TABLE.iter().enumerate() {
            if s.len
                .compare_exchange(0, len, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                s.faulted.store(false, Ordering::Relaxed);
                s.start.store(start as usize, Ordering::Release);
                return Some(Guard { slot: i });
            }
        }
        None
    }

    /// Whether a page of the mapping was found past the file's end (and replaced).
    pub(super) fn faulted(&self) -> bool {
        TABLE[self.slot].faulted.load(Ordering::Acquire)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let s = &TABLE[self.slot];
        s.start.store(0, Ordering::Release);
        s.faulted.store(false, Ordering::Relaxed);
        s.len.store(0, Ordering::Release);
    }
}

/// Pages of peer mappings replaced after a truncation, since the process started.
pub fn pages_replaced() -> usize {
    REPLACED.load(Ordering::Relaxed)
}

fn install() {
    INSTALL.call_once(|| {
        // SAFETY: sysconf has no memory effects.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if page > 0 {
            HOST_PAGE.store(page as usize, Ordering::Relaxed);
        }
        // SAFETY: all-zero is a valid sigaction (SIG_DFL, empty mask, no flags).
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
        new.sa_sigaction = on_sigbus as *const () as libc::sighandler_t;
        new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY: `new` and `old` are valid sigaction structs; the handler only uses
        // atomics, mmap and memset on the faulting page, and the saved disposition.
        let ok = unsafe {
            libc::sigemptyset(&mut new.sa_mask);
            libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut old) == 0
                && PREVIOUS.set(Previous(old)).is_ok()
                && libc::sigaction(libc::SIGBUS, &new, std::ptr::null_mut()) == 0
        };
        if ok {
            INSTALLED.store(true, Ordering::Release);
        } else {
            tracing::warn!("cannot install the SIGBUS handler; peers' files will not be mapped");
        }
    });
}

/// Replace the page at `addr` if it is in a guarded mapping; true if it was.
fn replace_guarded(addr: usize) -> bool {
    for s in TABLE.iter() {
        let start = s.start.load(Ordering::Acquire);
        if start == 0 || addr < start {
            continue;
        }
        if addr - start >= s.len.load(Ordering::Acquire) {
            continue;
        }
        let page_size = HOST_PAGE.load(Ordering::Relaxed);
        let page = addr & !(page_size - 1);
        // SAFETY: `page` is in a live mapping of a peer's file (registered until just
        // before it is unmapped; the faulting thread holds it alive); a private page
        // over it changes only what later accesses of that page see.
        let p = unsafe {
            libc::mmap(
                page as *mut libc::c_void,
                page_size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return false;
        }
        // SAFETY: the page was just mapped readable and writable, `page_size` bytes.
        unsafe { std::ptr::write_bytes(p.cast::<u8>(), 0xff, page_size) };
        s.faulted.store(true, Ordering::Release);
        REPLACED.fetch_add(1, Ordering::Relaxed);
        return true;
    }
    false
}

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler; for SIGBUS
    // `si_addr` is the faulting address.
    let addr = unsafe { (*info).si_addr() } as usize;
    if replace_guarded(addr) {
        return;
    }
    let prev = PREVIOUS.get().map(|p| p.0.sa_sigaction);
    let flags = PREVIOUS.get().map_or(0, |p| p.0.sa_flags);
    match prev {
        Some(h) if h != libc::SIG_DFL && h != libc::SIG_IGN => {
            if flags & libc::SA_SIGINFO != 0 {
                // SAFETY: the previous handler was installed with SA_SIGINFO, so it has
                // this signature; it gets the arguments the kernel gave us.
                let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    unsafe { std::mem::transmute(h) };
                f(sig, info, ctx);
            } else {
                // SAFETY: a handler installed without SA_SIGINFO takes the signal number.
                let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(h) };
                f(sig);
            }
        }
        _ => {
            // Not a peer's page: the default action. Returning re-runs the access,
            // which faults again and ends the process as it would have without us.
            // SAFETY: restoring the default disposition of SIGBUS.
            unsafe {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(libc::SIGBUS, &dfl, std::ptr::null_mut());
            }
        }
    }
}

//! The `xen` feature: the drivers' event and grant traits on a real hypervisor,
//! through `xen-sys`'s hypercall entry points, for a unikernel guest.
//!
//! Only argument marshalling lives here: the argument structs of
//! `xen/event_channel.h` and `xen/grant_table.h` (the copy op is
//! `xennet_ring::grant::GnttabCopy`, Xen's own layout) and the hypercall numbers.
//! The hypercall itself goes through the [`Hypercall`] trait, so everything but the
//! trap can be tested here without a hypervisor (a recording implementation
//! checks the numbers and the bytes each call passes).
//!
//! Granting (`GrantAccess`) in a PV guest is writing one's own grant table:
//! [`XenGrants::setup_table`] asks Xen for the table's frames (`GNTTABOP_setup_table`),
//! the unikernel maps them, and [`GrantTable`] grants and ends access on the mapped
//! entries with the in-use flag protocol of `xennet_ring::grant::flags`, shared by
//! both platforms (the v1 entry layout is the same). Booting, mapping those frames
//! and the XenStore ring are the unikernel's job and out of scope.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering};
use xennet_ring::grant::{GnttabCopy, GrantEntryV1, GrantError, GrantStatus};

use xennet_ring::{
    DomId, Frame, GrantAccess, GrantCopy, GrantMap, GrantRef, MappedPage, Notify, Port,
};

use xennet_ring::grant::flags;

/// `__HYPERVISOR_grant_table_op`.
pub const HYPERVISOR_GRANT_TABLE_OP: u32 = 20;
/// `__HYPERVISOR_event_channel_op`.
pub const HYPERVISOR_EVENT_CHANNEL_OP: u32 = 32;
/// `GNTTABOP_map_grant_ref`.
pub const GNTTABOP_MAP_GRANT_REF: u64 = 0;
/// `GNTTABOP_unmap_grant_ref`.
pub const GNTTABOP_UNMAP_GRANT_REF: u64 = 1;
/// `GNTTABOP_setup_table`.
pub const GNTTABOP_SETUP_TABLE: u64 = 2;
/// `GNTTABOP_copy`.
pub const GNTTABOP_COPY: u64 = 5;
/// `DOMID_SELF`.
pub const DOMID_SELF: u16 = 0x7ff0;
/// `GNTTAB_NR_RESERVED_ENTRIES`: refs the toolstack uses (console, XenStore).
pub const GNTTAB_NR_RESERVED_ENTRIES: u32 = 8;
/// `EVTCHNOP_send`.
pub const EVTCHNOP_SEND: u64 = 4;
/// `EVTCHNOP_unmask`.
pub const EVTCHNOP_UNMASK: u64 = 9;
/// `GNTMAP_host_map`.
pub const GNTMAP_HOST_MAP: u32 = 1 << 1;
/// `GNTMAP_readonly`.
pub const GNTMAP_READONLY: u32 = 1 << 2;

/// A three-argument hypercall (all the drivers need).
pub trait Hypercall {
    /// Issues hypercall `op`.
    ///
    /// # Safety
    /// The arguments must be what Xen expects for `op`; pointers must point to
    /// live, correctly laid out argument structs for the duration of the call.
    unsafe fn call3(&self, op: u32, a1: u64, a2: u64, a3: u64) -> i64;
}

/// The real hypervisor, through `xen-sys`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Xen;

impl Hypercall for Xen {
    unsafe fn call3(&self, op: u32, a1: u64, a2: u64, a3: u64) -> i64 {
        // SAFETY: forwarded from the caller's contract; xen-sys issues the trap
        // through the hypercall page.
        unsafe { xen_sys::hypercall_3(op, a1, a2, a3) as i64 }
    }
}

/// `struct evtchn_send` and `struct evtchn_unmask` (both `{ evtchn_port_t port; }`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvtchnPort {
    /// The local port.
    pub port: u32,
}

/// `struct gnttab_map_grant_ref` (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabMapGrantRef {
    /// IN: where to map.
    pub host_addr: u64,
    /// IN: `GNTMAP_*`.
    pub flags: u32,
    /// IN: the grant.
    pub gref: u32,
    /// IN: the granting domain.
    pub dom: u16,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// OUT: handle for unmapping.
    pub handle: u32,
    /// OUT: bus address (unused).
    pub dev_bus_addr: u64,
}

/// `struct gnttab_unmap_grant_ref` (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabUnmapGrantRef {
    /// IN: the mapped address.
    pub host_addr: u64,
    /// IN: bus address (0).
    pub dev_bus_addr: u64,
    /// IN: handle from the map.
    pub handle: u32,
    /// OUT: `GNTST_*`.
    pub status: i16,
}

const _: () = assert!(core::mem::size_of::<EvtchnPort>() == 4);
const _: () = assert!(core::mem::size_of::<GnttabMapGrantRef>() == 32);
const _: () = assert!(core::mem::size_of::<GnttabUnmapGrantRef>() == 24);
const _: () = assert!(core::mem::size_of::<GnttabCopy>() == 40);

/// The outcome of a one-op grant table call: the hypercall's return, then the
/// op's own `GNTST_*` status.
fn op_status(rc: i64, status: i16) -> Result<(), GrantStatus> {
    if rc < 0 {
        return Err(GrantStatus::GeneralError);
    }
    match GrantStatus::from_raw(status) {
        GrantStatus::Okay => Ok(()),
        e => Err(e),
    }
}

/// `struct gnttab_setup_table` (24 bytes on x86_64).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct GnttabSetupTable {
    /// IN: `DOMID_SELF`.
    pub dom: u16,
    /// IN: frames wanted.
    pub nr_frames: u32,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// IN: where Xen writes the frame numbers (`XEN_GUEST_HANDLE(xen_pfn_t)`).
    pub frame_list: u64,
}

/// A domain's own v1 grant table, mapped (the granting side, [`GrantAccess`]).
/// Refs below [`GNTTAB_NR_RESERVED_ENTRIES`] are never handed out; the free list is
/// allocated once, so granting allocates nothing.
pub struct GrantTable {
    entries: NonNull<GrantEntryV1>,
    count: u32,
    refs: std::sync::Mutex<Refs>,
}

/// Which refs are free (a stack) and which are granted (by index).
struct Refs {
    free: Vec<u32>,
    granted: Vec<bool>,
}

// SAFETY: the table is shared memory accessed only through atomics (the flags word)
// and single aligned stores (the frame, before the flags publish it); the free list
// is behind a mutex.
unsafe impl Send for GrantTable {}
// SAFETY: as above.
unsafe impl Sync for GrantTable {}

impl GrantTable {
    /// The table of `count` entries at `entries`.
    ///
    /// # Safety
    /// `entries` must point to `count` v1 entries of this domain's grant table, mapped
    /// (8-byte aligned) for as long as this value lives, and nothing else in this
    /// domain may grant or end access on refs at or above the reserved ones.
    pub unsafe fn new(entries: NonNull<GrantEntryV1>, count: u32) -> GrantTable {
        let refs = Refs {
            free: (GNTTAB_NR_RESERVED_ENTRIES..count).rev().collect(),
            granted: vec![false; count as usize],
        };
        GrantTable {
            entries,
            count,
            refs: std::sync::Mutex::new(refs),
        }
    }

    /// The entry's flags|domid word and its frame word.
    fn words(&self, gref: GrantRef) -> Option<(&AtomicU32, &AtomicU32)> {
        if gref.0 < GNTTAB_NR_RESERVED_ENTRIES || gref.0 >= self.count {
            return None;
        }
        // SAFETY: in bounds (checked); the entry is 8-byte aligned and mapped for our
        // lifetime (`new`'s contract); an `AtomicU32` has the layout of the `u32` pair
        // `flags|domid` (little-endian, flags in the low half) and of `frame`.
        unsafe {
            let e = self.entries.as_ptr().add(gref.0 as usize) as *const AtomicU32;
            Some((&*e, &*e.add(1)))
        }
    }

    /// Refs free to grant.
    pub fn free_refs(&self) -> usize {
        self.refs.lock().map(|r| r.free.len()).unwrap_or(0)
    }
}

impl GrantAccess for GrantTable {
    fn grant_access(
        &self,
        domid: DomId,
        frame: Frame,
        readonly: bool,
    ) -> Result<GrantRef, GrantError> {
        let fr = u32::try_from(frame.0).map_err(|_| GrantError::BadFrame(frame))?;
        let mut refs = self.refs.lock().map_err(|_| GrantError::TableFull)?;
        let gref = GrantRef(refs.free.pop().ok_or(GrantError::TableFull)?);
        let Some((word, fword)) = self.words(gref) else {
            return Err(GrantError::BadRef(gref));
        };
        refs.granted[gref.0 as usize] = true;
        fword.store(fr, Ordering::Relaxed);
        flags::publish(word, domid.0, readonly);
        Ok(gref)
    }

    fn end_access(&self, gref: GrantRef) -> Result<(), GrantError> {
        let (word, _) = self.words(gref).ok_or(GrantError::BadRef(gref))?;
        let mut refs = self.refs.lock().map_err(|_| GrantError::BadRef(gref))?;
        if !refs.granted[gref.0 as usize] {
            return Err(GrantError::BadRef(gref));
        }
        if !flags::end_access(word) {
            return Err(GrantError::InUse(gref));
        }
        refs.granted[gref.0 as usize] = false;
        refs.free.push(gref.0);
        Ok(())
    }
}

/// Event channels through `HYPERVISOR_event_channel_op`.
#[derive(Clone, Debug, Default)]
pub struct XenEvents<H> {
    hv: H,
}

impl<H: Hypercall + Clone> XenEvents<H> {
    /// Over a hypercall implementation.
    pub fn new(hv: H) -> Self {
        XenEvents { hv }
    }

    fn op(&self, cmd: u64, port: Port) -> Result<(), i64> {
        let mut arg = EvtchnPort { port: port.0 };
        // SAFETY: `arg` is a live `evtchn_send`/`evtchn_unmask` for the call.
        let rc = unsafe {
            self.hv.call3(
                HYPERVISOR_EVENT_CHANNEL_OP,
                cmd,
                &mut arg as *mut EvtchnPort as u64,
                0,
            )
        };
        if rc < 0 {
            Err(rc)
        } else {
            Ok(())
        }
    }

    /// `EVTCHNOP_send`.
    pub fn send(&self, port: Port) -> Result<(), i64> {
        self.op(EVTCHNOP_SEND, port)
    }

    /// `EVTCHNOP_unmask`.
    pub fn unmask(&self, port: Port) -> Result<(), i64> {
        self.op(EVTCHNOP_UNMASK, port)
    }

    /// A notifier for one port (what netfront and netback kick).
    pub fn port(&self, port: Port) -> XenPort<H> {
        XenPort {
            events: self.clone(),
            port,
        }
    }
}

/// One bound port.
#[derive(Clone, Debug)]
pub struct XenPort<H> {
    events: XenEvents<H>,
    port: Port,
}

impl<H: Hypercall + Clone> Notify for XenPort<H> {
    fn notify(&self) {
        // A failed send means the port is closed; the ring protocol tolerates a
        // lost kick from a peer that is going away.
        let _ = self.events.send(self.port);
    }
}

/// Grant copy and map through `HYPERVISOR_grant_table_op`. Mapping through the
/// [`GrantMap`] trait needs a range of the guest's virtual address space to map
/// peer pages into ([`XenGrants::with_map_area`]).
#[derive(Debug, Default)]
pub struct XenGrants<H> {
    hv: H,
    /// Free page-sized slots of the map area.
    slots: std::sync::Mutex<Vec<u64>>,
}

/// A peer page mapped into the map area.
#[derive(Debug)]
pub struct XenMapping {
    addr: u64,
    handle: u32,
    readonly: bool,
}

impl MappedPage for XenMapping {
    fn as_ptr(&self) -> NonNull<u8> {
        // The map area is never at address 0 (checked by `with_map_area`).
        NonNull::new(self.addr as *mut u8).unwrap_or(NonNull::dangling())
    }
    fn readonly(&self) -> bool {
        self.readonly
    }
}

impl<H: Hypercall> XenGrants<H> {
    /// Copy only (no map area).
    pub fn new(hv: H) -> Self {
        XenGrants {
            hv,
            slots: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// With `pages` pages of virtual address space at `base` to map peer pages into.
    ///
    /// # Safety
    /// `base` must be page-aligned, non-zero, and `pages` pages from it must be
    /// reserved for these mappings alone (no other memory is mapped there) for as
    /// long as this value lives.
    pub unsafe fn with_map_area(hv: H, base: u64, pages: usize) -> Self {
        assert!(
            base != 0 && base % 4096 == 0,
            "map area must be page-aligned and non-null"
        );
        let slots = (0..pages as u64).rev().map(|i| base + i * 4096).collect();
        XenGrants {
            hv,
            slots: std::sync::Mutex::new(slots),
        }
    }

    /// `GNTTABOP_setup_table` for this domain: Xen writes the frame numbers of the
    /// first `frames.len()` grant-table frames into `frames` (to be mapped by the
    /// caller, then handed to [`GrantTable::new`]).
    pub fn setup_table(&self, frames: &mut [u64]) -> Result<(), GrantStatus> {
        let mut op = GnttabSetupTable {
            dom: DOMID_SELF,
            nr_frames: u32::try_from(frames.len()).map_err(|_| GrantStatus::GeneralError)?,
            frame_list: frames.as_mut_ptr() as u64,
            ..GnttabSetupTable::default()
        };
        // SAFETY: one live `gnttab_setup_table`, count 1; `frame_list` points to
        // `nr_frames` writable u64s that outlive the call.
        let rc = unsafe {
            self.hv.call3(
                HYPERVISOR_GRANT_TABLE_OP,
                GNTTABOP_SETUP_TABLE,
                &mut op as *mut _ as u64,
                1,
            )
        };
        op_status(rc, op.status)
    }

    /// Maps `gref` of `dom` at `host_addr`; returns the unmap handle.
    pub fn map_at(
        &self,
        host_addr: u64,
        dom: DomId,
        gref: GrantRef,
        readonly: bool,
    ) -> Result<u32, GrantStatus> {
        let mut op = GnttabMapGrantRef {
            host_addr,
            flags: GNTMAP_HOST_MAP | if readonly { GNTMAP_READONLY } else { 0 },
            gref: gref.0,
            dom: dom.0,
            ..GnttabMapGrantRef::default()
        };
        // SAFETY: one live `gnttab_map_grant_ref`, count 1.
        let rc = unsafe {
            self.hv.call3(
                HYPERVISOR_GRANT_TABLE_OP,
                GNTTABOP_MAP_GRANT_REF,
                &mut op as *mut _ as u64,
                1,
            )
        };
        op_status(rc, op.status).map(|()| op.handle)
    }

    /// Unmaps what [`XenGrants::map_at`] mapped.
    pub fn unmap_at(&self, host_addr: u64, handle: u32) -> Result<(), GrantStatus> {
        let mut op = GnttabUnmapGrantRef {
            host_addr,
            handle,
            ..GnttabUnmapGrantRef::default()
        };
        // SAFETY: one live `gnttab_unmap_grant_ref`, count 1.
        let rc = unsafe {
            self.hv.call3(
                HYPERVISOR_GRANT_TABLE_OP,
                GNTTABOP_UNMAP_GRANT_REF,
                &mut op as *mut _ as u64,
                1,
            )
        };
        op_status(rc, op.status)
    }
}

impl<H: Hypercall> GrantMap for XenGrants<H> {
    type Mapping = XenMapping;

    fn map(&self, domid: DomId, gref: GrantRef, readonly: bool) -> Result<XenMapping, GrantStatus> {
        let addr = self
            .slots
            .lock()
            .map_err(|_| GrantStatus::GeneralError)?
            .pop()
            .ok_or(GrantStatus::NoDeviceSpace)?;
        match self.map_at(addr, domid, gref, readonly) {
            Ok(handle) => Ok(XenMapping {
                addr,
                handle,
                readonly,
            }),
            Err(e) => {
                if let Ok(mut s) = self.slots.lock() {
                    s.push(addr);
                }
                Err(e)
            }
        }
    }

    fn unmap(&self, m: XenMapping) -> Result<(), GrantStatus> {
        self.unmap_at(m.addr, m.handle)?;
        if let Ok(mut s) = self.slots.lock() {
            s.push(m.addr);
        }
        Ok(())
    }
}

impl<H: Hypercall> GrantCopy for XenGrants<H> {
    fn grant_copy(&self, ops: &mut [GnttabCopy]) -> Result<(), GrantStatus> {
        if ops.is_empty() {
            return Ok(());
        }
        // SAFETY: `ops` is a live array of `gnttab_copy` in Xen's layout (asserted
        // 40 bytes above); Xen writes each op's status.
        let rc = unsafe {
            self.hv.call3(
                HYPERVISOR_GRANT_TABLE_OP,
                GNTTABOP_COPY,
                ops.as_mut_ptr() as u64,
                ops.len() as u64,
            )
        };
        if rc < 0 {
            Err(GrantStatus::GeneralError)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;
    use xennet_ring::grant::GnttabCopyPtr;
    use xennet_ring::Frame;

    /// Records each call and what its first argument struct held; answers with
    /// `rc` and, for map/copy, writes the given status back like Xen does.
    /// (hypercall, command, count, argument bytes).
    type Call = (u32, u64, u64, Vec<u8>);

    #[derive(Clone, Default)]
    struct Recorder {
        calls: Rc<RefCell<Vec<Call>>>,
        rc: i64,
        status: i16,
    }

    impl Hypercall for Recorder {
        unsafe fn call3(&self, op: u32, a1: u64, a2: u64, a3: u64) -> i64 {
            let len = match (op, a1) {
                (HYPERVISOR_EVENT_CHANNEL_OP, _) => 4,
                (HYPERVISOR_GRANT_TABLE_OP, GNTTABOP_MAP_GRANT_REF) => 32,
                (HYPERVISOR_GRANT_TABLE_OP, GNTTABOP_UNMAP_GRANT_REF) => 24,
                (HYPERVISOR_GRANT_TABLE_OP, GNTTABOP_COPY) => 40 * a3 as usize,
                (HYPERVISOR_GRANT_TABLE_OP, GNTTABOP_SETUP_TABLE) => 24,
                _ => 0,
            };
            // SAFETY: the callers pass a pointer to `len` live bytes (checked by
            // the cases above, which mirror the real argument structs).
            let bytes = unsafe { std::slice::from_raw_parts(a2 as *const u8, len) }.to_vec();
            self.calls.borrow_mut().push((op, a1, a3, bytes));
            if op == HYPERVISOR_GRANT_TABLE_OP && a1 == GNTTABOP_SETUP_TABLE {
                // SAFETY: as above; Xen writes the frame list and the status.
                let t = unsafe { &mut *(a2 as *mut GnttabSetupTable) };
                for i in 0..t.nr_frames as usize {
                    // SAFETY: the caller passed `nr_frames` writable u64s.
                    unsafe { *(t.frame_list as *mut u64).add(i) = 0x1000 + i as u64 };
                }
                t.status = self.status;
            }
            if op == HYPERVISOR_GRANT_TABLE_OP && a1 == GNTTABOP_MAP_GRANT_REF {
                // SAFETY: as above; Xen writes `status` and `handle`.
                let m = unsafe { &mut *(a2 as *mut GnttabMapGrantRef) };
                m.status = self.status;
                m.handle = 77;
            }
            self.rc
        }
    }

    #[test]
    fn event_ops_pass_the_port_struct() {
        let r = Recorder::default();
        let ev = XenEvents::new(r.clone());
        ev.send(Port(5)).unwrap();
        ev.unmask(Port(6)).unwrap();
        ev.port(Port(7)).notify();
        let calls = r.calls.borrow();
        assert_eq!(calls[0], (32, 4, 0, 5u32.to_le_bytes().to_vec()));
        assert_eq!(calls[1], (32, 9, 0, 6u32.to_le_bytes().to_vec()));
        assert_eq!(calls[2].3, 7u32.to_le_bytes().to_vec());
        let failing = XenEvents::new(Recorder {
            rc: -22,
            ..Recorder::default()
        });
        assert_eq!(failing.send(Port(1)), Err(-22));
    }

    #[test]
    fn map_marshals_flags_ref_and_domain_and_reads_status() {
        let r = Recorder::default();
        let g = XenGrants::new(r.clone());
        assert_eq!(g.map_at(0x1000, DomId(3), GrantRef(9), true), Ok(77));
        let (op, cmd, count, bytes) = r.calls.borrow()[0].clone();
        assert_eq!((op, cmd, count), (20, 0, 1));
        assert_eq!(&bytes[0..8], &0x1000u64.to_le_bytes());
        assert_eq!(
            &bytes[8..12],
            &(GNTMAP_HOST_MAP | GNTMAP_READONLY).to_le_bytes()
        );
        assert_eq!(&bytes[12..16], &9u32.to_le_bytes());
        assert_eq!(&bytes[16..18], &3u16.to_le_bytes());
        let denied = XenGrants::new(Recorder {
            status: -8,
            ..Recorder::default()
        });
        assert_eq!(
            denied.map_at(0, DomId(1), GrantRef(1), false),
            Err(GrantStatus::PermissionDenied)
        );
        g.unmap_at(0x1000, 77).unwrap();
        let (_, cmd, _, bytes) = r.calls.borrow()[1].clone();
        assert_eq!(cmd, 1);
        assert_eq!(&bytes[16..20], &77u32.to_le_bytes());
    }

    #[test]
    fn grant_map_trait_uses_the_map_area_and_returns_slots() {
        let r = Recorder::default();
        // SAFETY: the recorder never touches the addresses; nothing is mapped.
        let g = unsafe { XenGrants::with_map_area(r.clone(), 0x7000_0000, 2) };
        let a = GrantMap::map(&g, DomId(1), GrantRef(8), false).unwrap();
        let b = GrantMap::map(&g, DomId(1), GrantRef(9), true).unwrap();
        assert_eq!(a.as_ptr().as_ptr() as u64, 0x7000_0000);
        assert_eq!(b.as_ptr().as_ptr() as u64, 0x7000_1000);
        assert!(b.readonly() && !a.readonly());
        assert_eq!(
            GrantMap::map(&g, DomId(1), GrantRef(10), false).unwrap_err(),
            GrantStatus::NoDeviceSpace
        );
        GrantMap::unmap(&g, a).unwrap();
        let c = GrantMap::map(&g, DomId(1), GrantRef(10), false).unwrap();
        assert_eq!(
            c.as_ptr().as_ptr() as u64,
            0x7000_0000,
            "the freed slot is reused"
        );
        // A refused map gives its slot back.
        // SAFETY: as above.
        let denied = unsafe {
            XenGrants::with_map_area(
                Recorder {
                    status: -3,
                    ..Recorder::default()
                },
                0x1000,
                1,
            )
        };
        assert_eq!(
            GrantMap::map(&denied, DomId(1), GrantRef(1), false).unwrap_err(),
            GrantStatus::BadGntref
        );
        assert_eq!(denied.slots.lock().unwrap().len(), 1);
    }

    #[test]
    fn copy_passes_the_batch_unchanged() {
        let r = Recorder::default();
        let g = XenGrants::new(r.clone());
        let mut ops = [
            GnttabCopy::from_grant(
                GnttabCopyPtr::gref(GrantRef(8), DomId(1), 0),
                GnttabCopyPtr::local(Frame(5), 64),
                60,
            ),
            GnttabCopy::to_grant(
                GnttabCopyPtr::local(Frame(6), 0),
                GnttabCopyPtr::gref(GrantRef(9), DomId(1), 2),
                1500,
            ),
        ];
        g.grant_copy(&mut ops).unwrap();
        let (op, cmd, count, bytes) = r.calls.borrow()[0].clone();
        assert_eq!((op, cmd, count, bytes.len()), (20, 5, 2, 80));
        assert_eq!(&bytes[0..8], &8u64.to_le_bytes()); // source.u = gref
        assert_eq!(&bytes[32..34], &60u16.to_le_bytes()); // len
        g.grant_copy(&mut []).unwrap();
        assert_eq!(r.calls.borrow().len(), 1, "an empty batch is no hypercall");
        let failing = XenGrants::new(Recorder {
            rc: -1,
            ..Recorder::default()
        });
        assert_eq!(failing.grant_copy(&mut ops), Err(GrantStatus::GeneralError));
    }

    #[test]
    fn setup_table_marshals_self_and_the_frame_list() {
        let r = Recorder::default();
        let g = XenGrants::new(r.clone());
        let mut frames = [0u64; 4];
        g.setup_table(&mut frames).unwrap();
        assert_eq!(frames, [0x1000, 0x1001, 0x1002, 0x1003]);
        let (op, cmd, count, bytes) = r.calls.borrow()[0].clone();
        assert_eq!((op, cmd, count), (20, 2, 1));
        assert_eq!(&bytes[0..2], &DOMID_SELF.to_le_bytes());
        assert_eq!(&bytes[4..8], &4u32.to_le_bytes());
        assert_eq!(&bytes[16..24], &(frames.as_ptr() as u64).to_le_bytes());
        let bad = XenGrants::new(Recorder {
            status: GrantStatus::GeneralError as i16,
            ..Recorder::default()
        });
        assert_eq!(bad.setup_table(&mut frames), Err(GrantStatus::GeneralError));
    }

    #[test]
    fn grant_table_grants_ends_and_refuses_while_in_use() {
        use xennet_ring::grant::GrantFlags;
        // Stand-in for the mapped table: 16 entries, 8-byte aligned.
        let mut mem = vec![0u64; 16];
        let base = mem.as_mut_ptr();
        let entries = NonNull::new(base as *mut GrantEntryV1).unwrap();
        // Every access below goes through `base`, as the hypervisor's would: atomics on
        // the entry's words (never a reference to `mem` while the table lives).
        let entry = |i: u32| {
            // SAFETY: i < 16, `mem` outlives every use, and u64 entries are 8-aligned.
            unsafe { &*(base.add(i as usize) as *const core::sync::atomic::AtomicU64) }
        };
        // SAFETY: `mem` holds 16 aligned entries and outlives the table.
        let t = unsafe { GrantTable::new(entries, 16) };
        assert_eq!(t.free_refs(), 8);
        let g = t.grant_access(DomId(3), Frame(0x1234), true).unwrap();
        assert!(
            g.0 >= GNTTAB_NR_RESERVED_ENTRIES,
            "reserved refs are never granted"
        );
        let e = entry(g.0).load(Ordering::SeqCst);
        let flags = e as u16;
        assert_eq!(
            flags,
            GrantFlags::PERMIT_ACCESS.bits() | GrantFlags::READONLY.bits()
        );
        assert_eq!((e >> 16) as u16, 3, "domid");
        assert_eq!((e >> 32) as u32, 0x1234, "frame");
        // The peer (the hypervisor, for a real table) marks it in use: end is refused.
        entry(g.0).fetch_or(u64::from(GrantFlags::READING.bits()), Ordering::SeqCst);
        assert_eq!(t.end_access(g), Err(GrantError::InUse(g)));
        entry(g.0).fetch_and(!u64::from(GrantFlags::READING.bits()), Ordering::SeqCst);
        t.end_access(g).unwrap();
        assert_eq!(entry(g.0).load(Ordering::SeqCst) as u16, 0, "flags cleared");
        assert_eq!(t.end_access(g), Err(GrantError::BadRef(g)), "ended twice");
        assert_eq!(
            t.end_access(GrantRef(2)),
            Err(GrantError::BadRef(GrantRef(2)))
        );
        assert_eq!(
            t.grant_access(DomId(3), Frame(1 << 40), false),
            Err(GrantError::BadFrame(Frame(1 << 40)))
        );
        let all: Vec<GrantRef> = (0..8)
            .map(|_| t.grant_access(DomId(3), Frame(1), false).unwrap())
            .collect();
        assert_eq!(
            t.grant_access(DomId(3), Frame(1), false),
            Err(GrantError::TableFull)
        );
        for g in all {
            t.end_access(g).unwrap();
        }
        assert_eq!(t.free_refs(), 8);
    }
}

//! What the driver domain needs of the platform it runs on: the grant operations
//! and memory netback's vifs are built over, and the event channels the data plane
//! sleeps on ([`DriverPlatform`]). Two implement it:
//! - [`Side`](crate::side::Side): the process platform (`shm`), domains in files or
//!   anonymous memory, what `xennet up`, the demo, the tests and benches run;
//! - [`XenLinuxSide`]: Linux user space in dom0 (or a driver domain) under real Xen,
//!   through `/dev/xen/gntdev` and `/dev/xen/evtchn` (`xennet up --platform xenlinux`).

use std::sync::Arc;
use std::time::Duration;

use xennet_netback::vif::Vif;
use xennet_netback::xenbus::{BackendDevice, FrontendParams, XenbusError};
use xennet_platform::shm::{Domain, GrantOps};
use xennet_platform::xenlinux::{self, GntDev, GntDevMapping, LocalPages, XenLinuxError};
use xennet_platform::EventChannelOps;
use xennet_ring::grant::GnttabCopy;
use xennet_ring::time::Instant;
use xennet_ring::{
    DomId, Frame, FrameAlloc, GrantCopy, GrantMap, GrantRef, GrantStatus, LocalMemory, MemoryError,
    Port,
};

use crate::side::Side;

/// A driver domain's platform: what its vifs map and copy through, where their
/// staging pages live, and the event channels the data plane waits on.
pub trait DriverPlatform {
    /// Grant copy and map on the driver domain's behalf.
    type Grants: GrantCopy + GrantMap + Clone;
    /// The driver domain's own pages (the local side of every grant copy).
    type Memory: LocalMemory + FrameAlloc + Clone;
    /// The driver domain's event channels.
    type Events: EventChannelOps;

    /// The grant operations.
    fn grants(&self) -> &Self::Grants;

    /// The memory the vifs' staging pages come from.
    fn memory(&self) -> &Self::Memory;

    /// The event channels.
    fn events(&self) -> &Self::Events;

    /// The time the data plane goes by (its timers: rate credit, receive ageing,
    /// throttling, the switch's ageing). The monotonic clock
    /// ([`xennet_platform::clock::now`]); a test platform can play one.
    fn now(&self) -> Instant {
        xennet_platform::clock::now()
    }

    /// Block until an event is pending on some bound port or `timeout` passes;
    /// appends the ports that had events to `out` (nothing on timeout). Allocates
    /// nothing once `out` has grown.
    fn wait_into(&self, timeout: Option<Duration>, out: &mut Vec<Port>) {
        self.events().wait_into(timeout, out);
    }

    /// Hold `port`'s events (the event-storm throttle).
    fn mask(&self, port: Port) {
        self.events().mask(port);
    }

    /// Deliver `port`'s events again (one held while masked arrives now).
    fn unmask(&self, port: Port) {
        self.events().unmask(port);
    }

    /// Close `port` (the frontend's end becomes unbound).
    fn close(&self, port: Port) {
        self.events().close(port);
    }

    /// Connect a device whose frontend published `params`: bind its channels, map
    /// its rings ([`BackendDevice::connect_with`] over this platform).
    fn connect(
        &self,
        dev: &BackendDevice,
        params: &FrontendParams,
    ) -> Result<PlatformConnected<Self>, XenbusError> {
        dev.connect_with(
            params,
            self.grants().clone(),
            self.memory().clone(),
            self.events(),
        )
    }
}

/// A connected vif on platform `P` and its local event-channel ports.
pub type PlatformConnected<P> = (PlatformVif<P>, Vec<Port>);

/// A vif on platform `P`.
pub type PlatformVif<P> = Vif<
    <P as DriverPlatform>::Grants,
    <P as DriverPlatform>::Memory,
    <<P as DriverPlatform>::Events as EventChannelOps>::Notifier,
>;

impl DriverPlatform for Side {
    type Grants = GrantOps;
    type Memory = Domain;
    type Events = Arc<xennet_platform::shm::EventChannels>;

    fn grants(&self) -> &GrantOps {
        &self.ops
    }

    fn memory(&self) -> &Domain {
        &self.domain
    }

    fn events(&self) -> &Self::Events {
        &self.events
    }
}

/// One open of `/dev/xen/gntdev`, shared by every vif's queues (the device is used
/// through `&self` only; its local pages are behind their own lock).
#[derive(Clone, Debug)]
pub struct SharedGntDev(pub Arc<GntDev>);

impl GrantCopy for SharedGntDev {
    fn grant_copy(&self, ops: &mut [GnttabCopy]) -> Result<(), GrantStatus> {
        self.0.grant_copy(ops)
    }
}

impl GrantMap for SharedGntDev {
    type Mapping = GntDevMapping;

    fn map(
        &self,
        domid: DomId,
        gref: GrantRef,
        readonly: bool,
    ) -> Result<GntDevMapping, GrantStatus> {
        self.0.map(domid, gref, readonly)
    }

    fn unmap(&self, mapping: GntDevMapping) -> Result<(), GrantStatus> {
        self.0.unmap(mapping)
    }
}

impl LocalMemory for SharedGntDev {
    fn read(&self, frame: Frame, offset: usize, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.0.read(frame, offset, buf)
    }

    fn write(&self, frame: Frame, offset: usize, data: &[u8]) -> Result<(), MemoryError> {
        self.0.write(frame, offset, data)
    }

    fn page_ptr(&self, frame: Frame) -> Result<std::ptr::NonNull<u8>, MemoryError> {
        self.0.page_ptr(frame)
    }
}

impl FrameAlloc for SharedGntDev {
    fn alloc_frame(&self) -> Result<Frame, MemoryError> {
        self.0.alloc_frame()
    }

    fn free_frame(&self, frame: Frame) {
        self.0.free_frame(frame)
    }
}

/// Pages the xenlinux driver domain keeps for its vifs' staging buffers (each queue
/// takes `TX_STAGING_PAGES + RX_STAGING_PAGES` = 144): 128 MiB of anonymous memory,
/// enough for 28 vifs of 8 queues (or 56 of 4). Touched only as queues use them.
pub const XEN_LOCAL_PAGES: usize = 32768;

/// The driver domain in Linux user space under real Xen: grant copies and maps
/// through gntdev (our side of each copy in [`LocalPages`]), event channels through
/// evtchn.
#[derive(Clone, Debug)]
pub struct XenLinuxSide {
    /// gntdev, also the vifs' memory (it forwards to its local pages).
    pub gntdev: SharedGntDev,
    /// `/dev/xen/evtchn`.
    pub events: Arc<xenlinux::EventChannels>,
}

impl XenLinuxSide {
    /// Open gntdev over `pages` local pages, and evtchn.
    pub fn open(pages: usize) -> Result<XenLinuxSide, XenLinuxError> {
        let local = Arc::new(LocalPages::new(pages)?);
        let gntdev = SharedGntDev(Arc::new(GntDev::open(local)?));
        let events = xenlinux::EventChannels::open()?;
        Ok(XenLinuxSide { gntdev, events })
    }
}

impl DriverPlatform for XenLinuxSide {
    type Grants = SharedGntDev;
    type Memory = SharedGntDev;
    type Events = Arc<xenlinux::EventChannels>;

    fn grants(&self) -> &SharedGntDev {
        &self.gntdev
    }

    fn memory(&self) -> &SharedGntDev {
        &self.gntdev
    }

    fn events(&self) -> &Self::Events {
        &self.events
    }
}

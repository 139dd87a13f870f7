//! A `smoltcp::phy::Device` over a [`Netfront`]: smoltcp's interface polls it for
//! received frames and hands it frames to send.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use xennet_ring::{FrameAlloc, GrantAccess, LocalMemory, Notify};

use crate::{FrontCounters, Netfront};

/// Frames kept between a receive pass and smoltcp consuming them.
const RX_BACKLOG: usize = 64;

/// The largest frame the device offers smoltcp when the backend takes multi-slot
/// frames: a 9000-byte MTU plus the Ethernet header.
pub const JUMBO_FRAME: usize = 9014;

/// A netfront as a smoltcp device. Received frames are pulled from the rings in
/// batches into a small backlog; a frame smoltcp hands over is sent at once (it is
/// counted as a tx drop if the ring is full, since smoltcp cannot take it back).
pub struct NetfrontDevice<P, N> {
    front: Netfront<P, N>,
    backlog: VecDeque<Vec<u8>>,
    spare: Vec<Vec<u8>>,
    tx_buf: Vec<u8>,
    /// Frames smoltcp produced while the ring had no room.
    pub tx_dropped_busy: u64,
}

impl<P, N> NetfrontDevice<P, N>
where
    P: GrantAccess + FrameAlloc + LocalMemory,
    N: Notify,
{
    /// Wrap a connected netfront.
    pub fn new(front: Netfront<P, N>) -> Self {
        NetfrontDevice {
            front,
            backlog: VecDeque::with_capacity(RX_BACKLOG),
            spare: Vec::new(),
            tx_buf: Vec::with_capacity(65536),
            tx_dropped_busy: 0,
        }
    }

    /// The driver underneath.
    pub fn netfront(&mut self) -> &mut Netfront<P, N> {
        &mut self.front
    }

    /// Unwrap.
    pub fn into_inner(self) -> Netfront<P, N> {
        self.front
    }

    /// Counters of the driver.
    pub fn counters(&self) -> FrontCounters {
        self.front.counters()
    }

    /// Move received frames from the rings into the backlog and reap tx responses.
    /// Returns whether anything happened. Errors leave the device broken (see
    /// [`Netfront::state`]).
    pub fn pump(&mut self) -> Result<bool, crate::FrontError> {
        let reaped = self.front.poll_tx()?;
        let room = RX_BACKLOG.saturating_sub(self.backlog.len());
        let (backlog, spare) = (&mut self.backlog, &mut self.spare);
        let got = self.front.receive(room, |frame, _meta| {
            let mut buf = spare.pop().unwrap_or_default();
            buf.clear();
            buf.extend_from_slice(frame);
            backlog.push_back(buf);
        })?;
        Ok(reaped > 0 || got > 0)
    }

    /// Frames waiting for smoltcp.
    pub fn backlog(&self) -> usize {
        self.backlog.len()
    }
}

impl<P, N> phy::Device for NetfrontDevice<P, N>
where
    P: GrantAccess + FrameAlloc + LocalMemory,
    N: Notify,
{
    type RxToken<'a>
        = RxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, P, N>
    where
        Self: 'a;

    fn receive(&mut self, _now: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        if self.backlog.is_empty() {
            let _ = self.pump();
            // Running dry: arm the rings' event indices so the backend's next response
            // kicks us, and catch whatever arrived while arming.
            if self.backlog.is_empty() && self.front.final_check().unwrap_or(false) {
                let _ = self.pump();
            }
        }
        let frame = self.backlog.pop_front()?;
        Some((
            RxToken {
                frame,
                spare: &mut self.spare,
            },
            TxToken {
                front: &mut self.front,
                buf: &mut self.tx_buf,
                dropped: &mut self.tx_dropped_busy,
            },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<Self::TxToken<'_>> {
        if !self.front.is_connected() {
            return None;
        }
        if self.front.tx_room() == 0 {
            let _ = self.front.poll_tx();
            if self.front.tx_room() == 0 {
                return None;
            }
        }
        Some(TxToken {
            front: &mut self.front,
            buf: &mut self.tx_buf,
            dropped: &mut self.tx_dropped_busy,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        // Jumbo frames when the backend takes multi-slot frames (feature-sg).
        caps.max_transmission_unit = if self.front.features().sg {
            JUMBO_FRAME
        } else {
            1514
        };
        caps.max_burst_size = Some(32);
        let mut csum = ChecksumCapabilities::default();
        csum.ipv4 = Checksum::Both;
        caps.checksum = csum;
        caps
    }
}

/// A received frame lent to smoltcp.
pub struct RxToken<'a> {
    frame: Vec<u8>,
    spare: &'a mut Vec<Vec<u8>>,
}

impl<'a> RxToken<'a> {
    /// Lends `frame`; once consumed, its buffer goes back to `spare` (kept up to
    /// 64 buffers), so a device reusing buffers allocates nothing per frame.
    pub fn new(frame: Vec<u8>, spare: &'a mut Vec<Vec<u8>>) -> Self {
        RxToken { frame, spare }
    }
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let r = f(&self.frame);
        if self.spare.len() < RX_BACKLOG {
            self.spare.push(self.frame);
        }
        r
    }
}

/// Room to send one frame.
pub struct TxToken<'a, P, N> {
    front: &'a mut Netfront<P, N>,
    buf: &'a mut Vec<u8>,
    dropped: &'a mut u64,
}

impl<P, N> phy::TxToken for TxToken<'_, P, N>
where
    P: GrantAccess + FrameAlloc + LocalMemory,
    N: Notify,
{
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        self.buf.clear();
        self.buf.resize(len, 0);
        let r = f(&mut self.buf[..]);
        if self.front.send(&self.buf[..]).is_err() {
            *self.dropped += 1;
        }
        r
    }
}

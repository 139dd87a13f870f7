//! The devices under a [`Host`](super::Host)'s interface: [`Wire`], the queue pair
//! of a host on a switch port, and [`Screened`], any device with the echo requests to
//! the host taken out on the way in.

use std::collections::VecDeque;

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant as SmolInstant;

use super::echo::EchoRequest;
use crate::wire::{Ipv4Address, MacAddr};

/// Frames queued towards a host on a switch port before it polls; more are dropped.
pub(super) const RX_QUEUE: usize = 256;
/// Echo requests waiting for an answer; more are ignored (like a flooded host).
const ECHO_BACKLOG: usize = 64;
/// Frame buffers a [`Screened`] device keeps for reuse.
const POOL: usize = 64;

/// The wire of a host on a switch port: frames in from the fabric, frames out to it.
#[derive(Debug, Default)]
pub struct Wire {
    pub(super) rx: VecDeque<Vec<u8>>,
    pub(super) tx: Vec<Vec<u8>>,
    /// Frames dropped because `rx` was full.
    pub(super) rx_dropped: u64,
}

/// A frame from the [`Wire`].
pub struct WireRx(Vec<u8>);
/// Room for a frame on the [`Wire`].
pub struct WireTx<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for WireRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for WireTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.push(buf);
        r
    }
}

impl Device for Wire {
    type RxToken<'a> = WireRx;
    type TxToken<'a> = WireTx<'a>;

    fn receive(&mut self, _now: SmolInstant) -> Option<(WireRx, WireTx<'_>)> {
        let f = self.rx.pop_front()?;
        Some((WireRx(f), WireTx(&mut self.tx)))
    }

    fn transmit(&mut self, _now: SmolInstant) -> Option<WireTx<'_>> {
        Some(WireTx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

/// The frame buffers a [`Screened`] device keeps between polls.
#[derive(Debug, Default)]
pub(super) struct Screen {
    /// Buffers to copy received frames into (they come back once consumed).
    spare: Vec<Vec<u8>>,
    /// A received frame waiting for a transmit token (smoltcp takes both together).
    held: Option<Vec<u8>>,
}

/// `inner` as smoltcp sees it: echo requests to `me` are taken out into `requests`.
pub(super) struct Screened<'a, D> {
    pub(super) inner: &'a mut D,
    pub(super) me: (MacAddr, Ipv4Address),
    pub(super) requests: &'a mut Vec<EchoRequest>,
    pub(super) screen: &'a mut Screen,
}

/// A received frame passed on; its buffer goes back to the pool once consumed (kept
/// up to 64), so a device reusing buffers allocates nothing per frame.
pub(super) struct PooledRx<'a> {
    frame: Vec<u8>,
    pool: &'a mut Vec<Vec<u8>>,
}

impl phy::RxToken for PooledRx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let r = f(&self.frame);
        if self.pool.len() < POOL {
            self.pool.push(self.frame);
        }
        r
    }
}

impl<D: Device> Device for Screened<'_, D> {
    type RxToken<'b>
        = PooledRx<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = D::TxToken<'b>
    where
        Self: 'b;

    fn receive(&mut self, t: SmolInstant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        if self.screen.held.is_none() {
            loop {
                let (rx, _) = self.inner.receive(t)?;
                let me = self.me;
                let mut buf = self.screen.spare.pop().unwrap_or_default();
                let req = phy::RxToken::consume(rx, |f| match EchoRequest::parse(f, me.0, me.1) {
                    Some(req) => Some(req),
                    None => {
                        buf.clear();
                        buf.extend_from_slice(f);
                        None
                    }
                });
                match req {
                    Some(req) => {
                        self.screen.spare.push(buf);
                        if self.requests.len() < ECHO_BACKLOG {
                            self.requests.push(req);
                        }
                    }
                    None => {
                        self.screen.held = Some(buf);
                        break;
                    }
                }
            }
        }
        // No room to answer right now: the frame stays held for the next poll.
        let tx = self.inner.transmit(t)?;
        let frame = self.screen.held.take()?;
        let rx = PooledRx {
            frame,
            pool: &mut self.screen.spare,
        };
        Some((rx, tx))
    }

    fn transmit(&mut self, t: SmolInstant) -> Option<Self::TxToken<'_>> {
        self.inner.transmit(t)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.inner.capabilities()
    }
}

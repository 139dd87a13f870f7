//! One queue pair of a frontend device: its tx and rx rings, the pages granted for
//! each, and the per-packet logic of both directions.

use alloc::vec;
use alloc::vec::Vec;

use xennet_ring::netif::{
    CtrlGref, Extra, ExtraInfo, RxFlags, RxRequest, RxResponse, TxFlags, TxRequest, TxResponse,
    NETIF_RSP_DROPPED, NETIF_RSP_ERROR, NETIF_RSP_NULL, XEN_NETIF_CTRLF_GREF_READONLY,
    XEN_NETIF_GSO_TYPE_TCPV4, XEN_NETIF_MAX_TX_SIZE,
};
use xennet_ring::{
    DomId, FrameAlloc, FrontRing, GrantAccess, GrantRef, LocalMemory, Notify, PAGE_SIZE,
};

use xennet_ring::memory::page_aligned;

use crate::counters::FrontCounters;
use crate::error::{FrontError, SendError};
use crate::pool::{GrantedPages, IdStack};

/// Smallest frame accepted for transmission: an Ethernet header.
pub const MIN_FRAME: usize = 14;

/// Offloads requested for one transmitted frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxOffload {
    /// The L4 checksum is blank and must be filled by the receiver (`csum_blank`).
    pub csum_blank: bool,
    /// The checksum is known good (`data_validated`).
    pub data_validated: bool,
    /// Segment the frame (a large TCP/IPv4 segment) into this MSS (`extra_info` GSO slot).
    pub gso_tcpv4_mss: Option<u16>,
}

/// Metadata of a received frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxMeta {
    /// The backend validated the checksum.
    pub data_validated: bool,
    /// The checksum is blank (the frame came from a local sender with offload).
    pub csum_blank: bool,
}

/// Grant refs and sizes of one queue, written to XenStore by the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueRefs {
    /// `tx-ring-ref`.
    pub tx_ring_ref: GrantRef,
    /// `rx-ring-ref`.
    pub rx_ring_ref: GrantRef,
}

pub(crate) struct Queue<N> {
    tx: FrontRing<TxRequest, TxResponse>,
    rx: FrontRing<RxRequest, RxResponse>,
    ring_pages: GrantedPages,
    tx_pages: GrantedPages,
    tx_ids: IdStack,
    /// Per tx id: 0 = free, 1 = in flight (fragment), 2 = in flight (head of a packet).
    tx_state: Vec<u8>,
    rx_pages: GrantedPages,
    rx_target: u32,
    /// Reassembly buffer, used from its first page boundary on (`page_aligned`).
    asm: Vec<u8>,
    asm_len: usize,
    asm_bad: bool,
    asm_meta: Option<RxMeta>,
    expect_extra: bool,
    tx_kick: N,
    rx_kick: N,
}

impl<N: Notify> Queue<N> {
    pub(crate) fn new<P: GrantAccess + FrameAlloc + LocalMemory>(
        platform: &P,
        backend: DomId,
        rx_target: u32,
        tx_kick: N,
        rx_kick: N,
    ) -> Result<Self, FrontError> {
        let mut ring_pages = GrantedPages::new(platform, backend, 2, false)?;
        let rings = (|| {
            let tx_ptr = platform.page_ptr(ring_pages.frames[0])?;
            let rx_ptr = platform.page_ptr(ring_pages.frames[1])?;
            // SAFETY: both pages are ours, allocated above and freed only in `release`,
            // after the rings are dropped; nothing else in this process touches them.
            let tx = unsafe { FrontRing::init(tx_ptr, PAGE_SIZE) }?;
            // SAFETY: as above.
            let rx = unsafe { FrontRing::init(rx_ptr, PAGE_SIZE) }?;
            Ok::<_, FrontError>((tx, rx))
        })();
        let (tx, rx) = match rings {
            Ok(r) => r,
            Err(e) => {
                ring_pages.release(platform);
                return Err(e);
            }
        };
        let n_tx = tx.size() as usize;
        let n_rx = rx.size() as usize;
        let mut tx_pages = match GrantedPages::new(platform, backend, n_tx, true) {
            Ok(p) => p,
            Err(e) => {
                ring_pages.release(platform);
                return Err(e);
            }
        };
        let rx_pages = match GrantedPages::new(platform, backend, n_rx, false) {
            Ok(p) => p,
            Err(e) => {
                tx_pages.release(platform);
                ring_pages.release(platform);
                return Err(e);
            }
        };
        Ok(Queue {
            tx,
            rx,
            ring_pages,
            tx_pages,
            tx_ids: IdStack::full(n_tx),
            tx_state: vec![0; n_tx],
            rx_pages,
            rx_target: rx_target.clamp(1, n_rx as u32),
            asm: vec![0; XEN_NETIF_MAX_TX_SIZE + 1 + PAGE_SIZE],
            asm_len: 0,
            asm_bad: false,
            asm_meta: None,
            expect_extra: false,
            tx_kick,
            rx_kick,
        })
    }

    pub(crate) fn refs(&self) -> QueueRefs {
        QueueRefs {
            tx_ring_ref: self.ring_pages.grefs[0],
            rx_ring_ref: self.ring_pages.grefs[1],
        }
    }

    /// The buffer pools as staging-grant list entries: tx pages (read-only) first,
    /// then rx pages.
    pub(crate) fn static_grefs(&self) -> impl Iterator<Item = CtrlGref> + '_ {
        let tx = self.tx_pages.grefs.iter().map(|&gref| CtrlGref {
            gref,
            flags: XEN_NETIF_CTRLF_GREF_READONLY,
            status: 0,
        });
        let rx = self.rx_pages.grefs.iter().map(|&gref| CtrlGref {
            gref,
            flags: 0,
            status: 0,
        });
        tx.chain(rx)
    }

    /// Free tx ring slots and buffers, as frames of one slot.
    pub(crate) fn tx_room(&self) -> usize {
        (self.tx.free_requests() as usize).min(self.tx_ids.len())
    }

    /// Queue one frame (not yet published).
    pub(crate) fn queue_frame<P: LocalMemory>(
        &mut self,
        platform: &P,
        frame: &[u8],
        off: &TxOffload,
        sg: bool,
        counters: &mut FrontCounters,
    ) -> Result<(), SendError> {
        let len = frame.len();
        if !(MIN_FRAME..=XEN_NETIF_MAX_TX_SIZE).contains(&len) || (!sg && len > PAGE_SIZE) {
            return Err(SendError::BadLength(len));
        }
        let slots = len.div_ceil(PAGE_SIZE);
        let extra = usize::from(off.gso_tcpv4_mss.is_some());
        if self.tx_ids.len() < slots || (self.tx.free_requests() as usize) < slots + extra {
            counters.tx_busy += 1;
            return Err(SendError::Busy);
        }
        let mut base = TxFlags::empty();
        if off.csum_blank {
            base |= TxFlags::CSUM_BLANK;
        }
        if off.data_validated {
            base |= TxFlags::DATA_VALIDATED;
        }
        for (i, chunk) in frame.chunks(PAGE_SIZE).enumerate() {
            // Checked above: enough ids and ring slots for every chunk.
            let Some(id) = self.tx_ids.pop() else {
                return Err(SendError::Busy);
            };
            let idx = id as usize;
            if platform.write(self.tx_pages.frames[idx], 0, chunk).is_err() {
                self.tx_ids.push(id);
                return Err(SendError::NotConnected);
            }
            let mut flags = if i == 0 { base } else { TxFlags::empty() };
            if i + 1 < slots {
                flags |= TxFlags::MORE_DATA;
            }
            if i == 0 && extra == 1 {
                flags |= TxFlags::EXTRA_INFO;
            }
            let req = TxRequest {
                gref: self.tx_pages.grefs[idx],
                offset: 0,
                flags: flags.bits(),
                id,
                // The first slot carries the whole packet's length (netif.h).
                size: if i == 0 {
                    len as u16
                } else {
                    chunk.len() as u16
                },
            };
            // Cannot fail: free_requests was checked.
            let _ = self.tx.push_request(&req);
            self.tx_state[idx] = if i == 0 { 2 } else { 1 };
            if i == 0 {
                if let Some(mss) = off.gso_tcpv4_mss {
                    let gso = Extra::Gso {
                        size: mss,
                        gso_type: XEN_NETIF_GSO_TYPE_TCPV4,
                        features: 0,
                    };
                    let _ = self.tx.push_request(&ExtraInfo::encode(gso, false).into());
                }
            }
        }
        counters.tx_packets += 1;
        counters.tx_bytes += len as u64;
        Ok(())
    }

    /// Publish queued tx requests; kick the backend if its event index asks.
    /// Notify the backend through both channels (the same one twice when shared).
    pub(crate) fn kick(&self, counters: &mut FrontCounters) {
        self.tx_kick.notify();
        self.rx_kick.notify();
        counters.notify_sent += 2;
    }

    pub(crate) fn flush_tx(&mut self, counters: &mut FrontCounters) {
        if self.tx.push_requests_and_check_notify() {
            self.tx_kick.notify();
            counters.notify_sent += 1;
        }
    }

    /// Take tx responses, returning their buffers to the pool.
    pub(crate) fn reap_tx(&mut self, counters: &mut FrontCounters) -> Result<usize, FrontError> {
        let mut n = 0;
        while let Some(rsp) = self.tx.pop_response()? {
            if rsp.status == NETIF_RSP_NULL {
                // The answer to an extra-info slot: carries no id.
                continue;
            }
            let id = rsp.id;
            let state = self.tx_state.get(id as usize).copied().unwrap_or(0);
            if state == 0 {
                return Err(FrontError::BadTxResponseId(id));
            }
            self.tx_state[id as usize] = 0;
            self.tx_ids.push(id);
            if state == 2 {
                match rsp.status {
                    NETIF_RSP_ERROR => counters.tx_errors += 1,
                    NETIF_RSP_DROPPED => counters.tx_dropped += 1,
                    _ => {}
                }
            }
            n += 1;
        }
        Ok(n)
    }

    /// Post empty granted pages until `rx_target` are outstanding; kick if asked.
    pub(crate) fn refill_rx(&mut self, counters: &mut FrontCounters) {
        let size = self.rx.size();
        let outstanding = self.rx.req_prod_pvt().since(self.rx.rsp_cons());
        let mut posted = 0;
        for _ in outstanding..self.rx_target {
            // The buffer is named by the slot: the response for it comes back in the
            // same slot, so the slot index finds the buffer again.
            let slot = self.rx.req_prod_pvt().slot(size);
            let req = RxRequest {
                id: slot as u16,
                pad: 0,
                gref: self.rx_pages.grefs[slot as usize],
            };
            if self.rx.push_request(&req).is_err() {
                break;
            }
            posted += 1;
        }
        if posted > 0 {
            counters.rx_posted += posted;
            if self.rx.push_requests_and_check_notify() {
                self.rx_kick.notify();
                counters.notify_sent += 1;
            }
        }
    }

    /// Take rx responses, reassemble frames and hand each whole frame to `deliver`;
    /// at most `budget` frames. Refills the ring afterwards.
    pub(crate) fn receive<P: LocalMemory>(
        &mut self,
        platform: &P,
        budget: usize,
        deliver: &mut dyn FnMut(&[u8], RxMeta),
        counters: &mut FrontCounters,
    ) -> Result<usize, FrontError> {
        let size = self.rx.size();
        let mut frames = 0;
        while frames < budget {
            let slot = self.rx.rsp_cons().slot(size) as usize;
            let Some(rsp) = self.rx.pop_response()? else {
                break;
            };
            if self.expect_extra {
                let extra = ExtraInfo::from(rsp);
                self.expect_extra = extra.more();
                continue;
            }
            if self.take_fragment(platform, slot, &rsp)? {
                let len = self.asm_len;
                let meta = self.asm_meta.take().unwrap_or_default();
                if self.asm_bad {
                    counters.rx_errors += 1;
                } else {
                    counters.rx_packets += 1;
                    counters.rx_bytes += len as u64;
                    deliver(&page_aligned(&mut self.asm)[..len], meta);
                    frames += 1;
                }
                self.asm_len = 0;
                self.asm_bad = false;
            }
        }
        self.refill_rx(counters);
        Ok(frames)
    }

    /// Append one response's bytes to the frame being assembled; true at its end.
    fn take_fragment<P: LocalMemory>(
        &mut self,
        platform: &P,
        slot: usize,
        rsp: &RxResponse,
    ) -> Result<bool, FrontError> {
        let flags = rsp.rx_flags();
        if flags.contains(RxFlags::EXTRA_INFO) {
            self.expect_extra = true;
        }
        if self.asm_meta.is_none() {
            self.asm_meta = Some(RxMeta {
                data_validated: flags.contains(RxFlags::DATA_VALIDATED),
                csum_blank: flags.contains(RxFlags::CSUM_BLANK),
            });
        }
        if rsp.status < 0 {
            self.asm_bad = true;
        } else {
            let (offset, len) = (rsp.offset as usize, rsp.status as usize);
            if offset + len > PAGE_SIZE {
                return Err(FrontError::BadRxResponse {
                    offset: rsp.offset,
                    status: rsp.status,
                });
            }
            let end = self.asm_len + len;
            if end > XEN_NETIF_MAX_TX_SIZE || self.asm_bad {
                self.asm_bad = true;
            } else {
                platform.read(
                    self.rx_pages.frames[slot],
                    offset,
                    &mut page_aligned(&mut self.asm)[self.asm_len..end],
                )?;
                self.asm_len = end;
            }
        }
        Ok(!flags.contains(RxFlags::MORE_DATA))
    }

    /// Before sleeping: true if responses are waiting on either ring; otherwise both
    /// event indices are armed so the backend's next response kicks us.
    pub(crate) fn final_check(&mut self) -> Result<bool, FrontError> {
        let tx = self.tx.final_check_for_responses()?;
        let rx = self.rx.final_check_for_responses()?;
        Ok(tx || rx)
    }

    /// Frames in flight on the tx ring (sent, not yet answered).
    pub(crate) fn tx_in_flight(&self) -> usize {
        self.tx_state.iter().filter(|&&s| s != 0).count()
    }

    /// End every grant and free the pages; returns grants still in use (leaked).
    pub(crate) fn release<P: GrantAccess + FrameAlloc>(mut self, platform: &P) -> usize {
        let mut leaked = self.tx_pages.release(platform);
        leaked += self.rx_pages.release(platform);
        let Queue {
            ring_pages, tx, rx, ..
        } = self;
        // The rings point into the pages: end them before the pages go.
        let _ = (tx, rx);
        let mut ring_pages = ring_pages;
        leaked + ring_pages.release(platform)
    }
}

//! Guest transmit: requests copied out of the ring once, validated as Linux netback
//! grades them, grant-copied in batches into staging pages, and delivered whole.
//!
//! Grading (docs/design.md §7): fatal (vif disconnected) for an impossible ring index,
//! a chain of [`FATAL_SLOTS`] or more slots, a slot crossing its page, a bad extra-info
//! slot, a chain continuing past the published requests, or an unusable grant; the
//! packet is dropped with an ERROR response (vif kept) for more than
//! [`XEN_NETIF_NR_SLOTS_MIN`] slots, fragments larger than the size left, or a packet
//! shorter than an Ethernet header.

use xennet_ring::time::{Duration, Instant};

use xennet_ring::grant::{GnttabCopy, GnttabCopyPtr};
use xennet_ring::memory::{page_aligned, read_mapped};
use xennet_ring::netif::{
    Extra, ExtraInfo, TxFlags, TxRequest, TxResponse, ETH_HLEN, NETIF_RSP_ERROR, NETIF_RSP_NULL,
    NETIF_RSP_OKAY, XEN_NETIF_GSO_TYPE_TCPV4, XEN_NETIF_GSO_TYPE_TCPV6, XEN_NETIF_MAX_TX_SIZE,
    XEN_NETIF_NR_SLOTS_MIN,
};
use xennet_ring::{
    BackRing, Frame, GrantCopy, GrantMap, GrantStatus, LocalMemory, Notify, RingMemory, SharedRing,
    PAGE_SIZE,
};

use super::counters::VifCounters;
use super::credit::Credit;
use super::error::VifError;
use super::offload::{self, TxOffload};
use super::peer::Peer;

/// Status for a packet that is dropped but does not end the connection.
const DROP_STATUS: i16 = NETIF_RSP_ERROR;
/// Status for a delivered packet.
const OK_STATUS: i16 = NETIF_RSP_OKAY;

/// Staging pages per queue for guest transmit (grant copies land here).
pub const TX_STAGING_PAGES: usize = 96;
/// Frames per guest-transmit grant-copy batch.
pub const TX_BATCH: usize = 64;
/// A chain this long (data slots) ends the connection, as Linux's `fatal_skb_slots`.
pub const FATAL_SLOTS: usize = 20;

/// One parsed packet of the current batch.
#[derive(Clone, Copy, Debug)]
pub(super) struct TxPacket {
    /// First slot in the queue's `slots`.
    start: usize,
    /// Slots of the packet, extras included.
    n: usize,
    /// Bit i set: slot i is an extra-info slot.
    extra_mask: u32,
    /// Total length (the first slot's `size`).
    len: usize,
    /// Its data pieces in the queue's `pieces`.
    pieces_start: usize,
    pieces_n: usize,
    /// Dropped with an ERROR response (not delivered) if set.
    drop: bool,
    /// Checksum and segmentation the frontend asked for.
    offload: TxOffload,
}

/// Where one data slot's bytes are read from.
#[derive(Clone, Copy, Debug)]
pub(super) enum Piece {
    /// Grant-copied into a staging page: the copy's index in the queue's `ops`.
    Staged(u32),
    /// Read through a staging grant (a page kept mapped): table entry, offset, length.
    Mapped { entry: u32, offset: u16, len: u16 },
}

/// Staging space: where in which staging page a copy lands.
struct Cursor {
    page: usize,
    off: usize,
}

impl Cursor {
    /// Place `len` bytes whose source is at `src_off` in its page; keeps the copy in one
    /// page and gives source and destination the same offset modulo 64 (docs/design.md
    /// §8: glibc memcpy slows down badly at some small offset distances).
    fn place(&mut self, len: usize, src_off: usize, pages: usize) -> Option<(usize, usize)> {
        let mut off = (self.off.div_ceil(64) * 64) + (src_off % 64);
        if off + len > PAGE_SIZE {
            self.page += 1;
            off = src_off % 64;
        }
        if self.page >= pages || off + len > PAGE_SIZE {
            return None;
        }
        self.off = off + len;
        Some((self.page, off))
    }

    fn pages_left(&self, pages: usize) -> usize {
        pages.saturating_sub(self.page + 1)
    }
}

/// The transmit half of a queue: the tx ring, the staging pages grant copies land in,
/// the batch being assembled, the credit limiter and the kick. The ring's memory is a
/// parameter so tests can play a frontend that rewrites slots after they are read.
pub(super) struct TxPath<N, R = SharedRing<TxRequest, TxResponse>> {
    ring: BackRing<TxRequest, TxResponse, R>,
    staging: Vec<Frame>,
    ops: Vec<GnttabCopy>,
    /// Where each data slot of the current batch comes from.
    pieces: Vec<Piece>,
    slots: Vec<TxRequest>,
    pkts: Vec<TxPacket>,
    /// Where a guest's frame is assembled (used from its first page boundary on,
    /// see [`xennet_ring::memory::page_aligned`]).
    frame_buf: Vec<u8>,
    /// Where the segments of a GSO frame are built, one at a time.
    segment_buf: Vec<u8>,
    credit: Credit,
    /// A packet's first slot, taken off the ring, that waits for rate credit. The
    /// packet is built from this copy once the credit refills, never from the slot
    /// again: the frontend may have rewritten it since (XSA-155).
    held: Option<TxRequest>,
    kick: N,
}

impl<N: Notify, R: RingMemory<TxRequest, TxResponse>> TxPath<N, R> {
    pub(super) fn new(
        ring: BackRing<TxRequest, TxResponse, R>,
        staging: Vec<Frame>,
        rate: Option<(u64, Duration)>,
        now: Instant,
        kick: N,
    ) -> Self {
        TxPath {
            ring,
            ops: Vec::with_capacity(staging.len() * 2),
            pieces: Vec::with_capacity(staging.len() * 2),
            staging,
            slots: Vec::with_capacity(TX_BATCH * 4),
            pkts: Vec::with_capacity(TX_BATCH),
            frame_buf: vec![0; XEN_NETIF_MAX_TX_SIZE + 1 + PAGE_SIZE],
            segment_buf: vec![0; XEN_NETIF_MAX_TX_SIZE + 1],
            credit: Credit::new(rate, now),
            held: None,
            kick,
        }
    }

    /// Before sleeping: whether requests are waiting (else `req_event` is armed).
    /// While a packet waits for credit nothing can move before the refill, so the
    /// ring is not looked at: the caller sleeps until [`TxPath::next_refill`].
    pub(super) fn final_check(&mut self) -> Result<bool, VifError> {
        if self.held.is_some() {
            return Ok(false);
        }
        Ok(self.ring.final_check_for_requests()?)
    }

    /// When rate credit next refills, if a packet waits for it (else no timer: an
    /// idle rate-limited queue needs no wake-up).
    pub(super) fn next_refill(&self) -> Option<Instant> {
        if self.held.is_some() {
            self.credit.next_refill()
        } else {
            None
        }
    }

    /// The staging pages, for freeing at close (the ring end goes with `self`).
    pub(super) fn into_staging(self) -> Vec<Frame> {
        self.staging
    }

    /// Take up to `budget` frames from the tx ring, grant-copy them in batches, hand
    /// each whole frame to `deliver`, and answer every slot.
    pub(super) fn process<G, M>(
        &mut self,
        peer: &Peer<G, M>,
        counters: &mut VifCounters,
        budget: usize,
        now: Instant,
        deliver: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, VifError>
    where
        G: GrantCopy + GrantMap,
        M: LocalMemory,
    {
        let mut done = 0;
        while done < budget {
            self.ops.clear();
            self.pieces.clear();
            self.slots.clear();
            self.pkts.clear();
            let mut cur = Cursor { page: 0, off: 0 };
            // Gather a batch while a whole maximal packet still fits in staging.
            while self.pkts.len() < TX_BATCH
                && done + self.pkts.len() < budget
                && cur.pages_left(self.staging.len()) >= XEN_NETIF_NR_SLOTS_MIN
            {
                // Each first slot is read once: a packet held back for credit is
                // charged and built from the copy taken then.
                let (first, waited) = match self.held.take() {
                    Some(req) => (req, true),
                    None => match self.ring.pop_request()? {
                        Some(req) => (req, false),
                        None => break,
                    },
                };
                if !self.credit.take(u64::from(first.size), now) {
                    if !waited {
                        counters.tx_credit_waits += 1;
                    }
                    self.held = Some(first);
                    break;
                }
                let pkt = self.parse(peer, &mut cur, first)?;
                self.pkts.push(pkt);
            }
            if self.pkts.is_empty() {
                break;
            }
            if !self.ops.is_empty() {
                counters.copy_batches += 1;
                peer.grants
                    .grant_copy(&mut self.ops)
                    .map_err(VifError::Copy)?;
            }
            for i in 0..self.pkts.len() {
                let pkt = self.pkts[i];
                let mut status = if pkt.drop { DROP_STATUS } else { OK_STATUS };
                if !pkt.drop {
                    let buf = page_aligned(&mut self.frame_buf);
                    let mut pos = 0;
                    for &piece in &self.pieces[pkt.pieces_start..pkt.pieces_start + pkt.pieces_n] {
                        match piece {
                            Piece::Staged(i) => {
                                let op = &self.ops[i as usize];
                                let st = op.status();
                                if st != GrantStatus::Okay {
                                    return Err(VifError::BadGrant(st));
                                }
                                let len = op.len as usize;
                                let frame = xennet_ring::Frame(op.dest.u);
                                peer.memory.read(
                                    frame,
                                    op.dest.offset as usize,
                                    &mut buf[pos..pos + len],
                                )?;
                                pos += len;
                            }
                            Piece::Mapped { entry, offset, len } => {
                                let len = usize::from(len);
                                read_mapped(
                                    peer.statics.page(entry as usize),
                                    usize::from(offset),
                                    &mut buf[pos..pos + len],
                                )?;
                                counters.mapped_slots += 1;
                                pos += len;
                            }
                        }
                    }
                    if pos != pkt.len {
                        status = DROP_STATUS;
                    } else if pkt.offload.is_none() {
                        deliver(&buf[..pos]);
                        counters.tx_packets += 1;
                        counters.tx_bytes += pos as u64;
                    } else {
                        let frame = &mut buf[..pos];
                        match offload::complete(frame, pkt.offload, &mut self.segment_buf, deliver)
                        {
                            Ok(frames) => {
                                counters.tx_packets += 1;
                                counters.tx_bytes += pos as u64;
                                if pkt.offload.gso.is_some() {
                                    counters.tx_gso_segments += frames as u64;
                                }
                            }
                            Err(_) => {
                                counters.tx_bad_offload += 1;
                                status = DROP_STATUS;
                            }
                        }
                    }
                }
                if status == DROP_STATUS {
                    counters.tx_errors += 1;
                }
                let slots = &self.slots[pkt.start..pkt.start + pkt.n];
                respond(&mut self.ring, slots, pkt.extra_mask, status)?;
            }
            done += self.pkts.len();
            if self.ring.push_responses_and_check_notify() {
                self.kick.notify();
                counters.notify_sent += 1;
            }
        }
        Ok(done)
    }

    /// Take the rest of the packet that `first` (already off the ring) begins, each
    /// slot copied once, validate the slots, and add its copy operations.
    fn parse<G: GrantMap, M>(
        &mut self,
        peer: &Peer<G, M>,
        cur: &mut Cursor,
        first: TxRequest,
    ) -> Result<TxPacket, VifError> {
        let start = self.slots.len();
        self.slots.push(first);
        let mut extra_mask = 0u32;
        let first_flags = TxFlags::from_bits_truncate(first.flags);
        let mut offload = TxOffload {
            csum_blank: first_flags.contains(TxFlags::CSUM_BLANK),
            gso: None,
        };
        // Extra-info slots follow the first slot.
        if first_flags.contains(TxFlags::EXTRA_INFO) {
            loop {
                let Some(raw) = self.ring.pop_request()? else {
                    return Err(VifError::IncompleteChain);
                };
                extra_mask |= 1 << (self.slots.len() - start);
                self.slots.push(raw);
                let extra = ExtraInfo::from(raw);
                match extra.decode() {
                    Err(_) => return Err(VifError::BadExtra(extra.type_)),
                    Ok(Extra::Gso { size, gso_type, .. }) => {
                        let known = gso_type == XEN_NETIF_GSO_TYPE_TCPV4
                            || gso_type == XEN_NETIF_GSO_TYPE_TCPV6;
                        if size == 0 || !known {
                            return Err(VifError::BadExtra(extra.type_));
                        }
                        offload.gso = Some((size, gso_type));
                    }
                    Ok(_) => {}
                }
                if !extra.more() {
                    break;
                }
                if self.slots.len() - start >= 8 {
                    return Err(VifError::BadExtra(extra.type_));
                }
            }
        }
        // Data continuation slots.
        let mut more = first_flags.contains(TxFlags::MORE_DATA);
        let mut data_slots = 1;
        while more {
            let Some(req) = self.ring.pop_request()? else {
                return Err(VifError::IncompleteChain);
            };
            data_slots += 1;
            if data_slots >= FATAL_SLOTS {
                return Err(VifError::ChainTooLong(FATAL_SLOTS));
            }
            more = TxFlags::from_bits_truncate(req.flags).contains(TxFlags::MORE_DATA);
            self.slots.push(req);
        }
        let n = self.slots.len() - start;
        let total = usize::from(first.size);
        let mut pkt = TxPacket {
            start,
            n,
            extra_mask,
            len: total,
            pieces_start: self.pieces.len(),
            pieces_n: 0,
            drop: false,
            offload,
        };
        // Sizes: every data slot stays in its page (fatal otherwise); the fragments after
        // the first must fit in the total, the first slot holding the rest.
        let mut rest = 0usize;
        for (i, req) in self.slots[start..].iter().enumerate() {
            if i == 0 || extra_mask & (1 << i) != 0 {
                continue;
            }
            if usize::from(req.offset) + usize::from(req.size) > PAGE_SIZE {
                return Err(VifError::SlotCrossesPage {
                    offset: req.offset,
                    size: req.size,
                });
            }
            rest += usize::from(req.size);
        }
        let first_len = total.checked_sub(rest);
        if let Some(fl) = first_len {
            if usize::from(first.offset) + fl > PAGE_SIZE {
                return Err(VifError::SlotCrossesPage {
                    offset: first.offset,
                    size: fl as u16,
                });
            }
        }
        let Some(first_len) = first_len else {
            pkt.drop = true;
            return Ok(pkt);
        };
        if data_slots > XEN_NETIF_NR_SLOTS_MIN || total < ETH_HLEN {
            pkt.drop = true;
            return Ok(pkt);
        }
        let ops_start = self.ops.len();
        for i in 0..n {
            if extra_mask & (1 << i) != 0 {
                continue;
            }
            let req = self.slots[start + i];
            let len = if i == 0 {
                first_len
            } else {
                usize::from(req.size)
            };
            if len == 0 {
                continue;
            }
            // A page the frontend keeps mapped for us: read it directly at delivery.
            if let Some(entry) = peer.statics.find(req.gref) {
                self.pieces.push(Piece::Mapped {
                    entry: entry as u32,
                    offset: req.offset,
                    len: len as u16,
                });
                continue;
            }
            let Some((page, off)) = cur.place(len, usize::from(req.offset), self.staging.len())
            else {
                // Cannot happen: a batch stops while fewer pages than a maximal packet
                // needs remain. Treat as a drop rather than trusting that.
                pkt.drop = true;
                self.ops.truncate(ops_start);
                self.pieces.truncate(pkt.pieces_start);
                return Ok(pkt);
            };
            self.pieces.push(Piece::Staged(self.ops.len() as u32));
            self.ops.push(GnttabCopy::from_grant(
                GnttabCopyPtr::gref(req.gref, peer.frontend, req.offset),
                GnttabCopyPtr::local(self.staging[page], off as u16),
                len as u16,
            ));
        }
        pkt.pieces_n = self.pieces.len() - pkt.pieces_start;
        Ok(pkt)
    }
}

/// Answer every slot of a packet: data slots with `status`, extra slots with NULL.
/// `extra_mask` has bit i set if slot i is an extra-info slot.
fn respond<R: RingMemory<TxRequest, TxResponse>>(
    ring: &mut BackRing<TxRequest, TxResponse, R>,
    slots: &[TxRequest],
    extra_mask: u32,
    status: i16,
) -> Result<(), VifError> {
    for (i, req) in slots.iter().enumerate() {
        let rsp = if extra_mask & (1 << i) != 0 {
            TxResponse {
                id: 0,
                status: NETIF_RSP_NULL,
            }
        } else {
            TxResponse { id: req.id, status }
        };
        ring.push_response(&rsp)?;
    }
    Ok(())
}

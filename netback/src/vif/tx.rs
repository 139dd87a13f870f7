//! Guest transmit: requests copied out of the ring once, validated as Linux netback
//! grades them, grant-copied in batches into staging pages, and delivered whole.
//!
//! Grading (docs/design.md §7): fatal (vif disconnected) for an impossible ring index,
//! a chain of [`FATAL_SLOTS`] or more slots, a slot crossing its page, a bad extra-info
//! slot, a chain continuing past the published requests, or an unusable grant; the
//! packet is dropped with an ERROR response (vif kept) for more than
//! [`XEN_NETIF_NR_SLOTS_MIN`] slots, fragments larger than the size left, or a packet
//! shorter than an Ethernet header.

use std::time::Instant;

use xennet_ring::grant::{GnttabCopy, GnttabCopyPtr};
use xennet_ring::memory::{page_aligned, read_mapped};
use xennet_ring::netif::{
    Extra, ExtraInfo, TxFlags, XEN_NETIF_GSO_TYPE_TCPV4, XEN_NETIF_GSO_TYPE_TCPV6,
    XEN_NETIF_NR_SLOTS_MIN,
};
use xennet_ring::{FrameAlloc, GrantCopy, GrantMap, GrantStatus, LocalMemory, Notify, PAGE_SIZE};

use super::error::VifError;
use super::queue::{respond, NetbackQueue, DROP_STATUS, ETH_HLEN, OK_STATUS, TX_BATCH};

/// A chain this long (data slots) ends the connection, as Linux's `fatal_skb_slots`.
pub const FATAL_SLOTS: usize = 20;

/// One parsed packet of the current batch.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TxPacket {
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
}

/// Where one data slot's bytes are read from.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Piece {
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

pub(super) fn process<G, M, N>(
    q: &mut NetbackQueue<G, M, N>,
    budget: usize,
    now: Instant,
    deliver: &mut dyn FnMut(&[u8]),
) -> Result<usize, VifError>
where
    G: GrantCopy + GrantMap,
    M: LocalMemory + FrameAlloc,
    N: Notify,
{
    let mut done = 0;
    while done < budget {
        q.ops.clear();
        q.pieces.clear();
        q.slots.clear();
        q.pkts.clear();
        let mut cur = Cursor { page: 0, off: 0 };
        // Gather a batch while a whole maximal packet still fits in staging.
        while q.pkts.len() < TX_BATCH
            && done + q.pkts.len() < budget
            && cur.pages_left(q.tx_staging.len()) >= XEN_NETIF_NR_SLOTS_MIN
        {
            let Some(first) = q.tx.peek_request()? else {
                break;
            };
            if !q.credit.take(u64::from(first.size), now) {
                q.counters.tx_credit_waits += 1;
                break;
            }
            let pkt = parse(q, &mut cur)?;
            q.pkts.push(pkt);
        }
        if q.pkts.is_empty() {
            break;
        }
        if !q.ops.is_empty() {
            q.counters.copy_batches += 1;
            q.grants.grant_copy(&mut q.ops).map_err(VifError::Copy)?;
        }
        for i in 0..q.pkts.len() {
            let pkt = q.pkts[i];
            let mut status = if pkt.drop { DROP_STATUS } else { OK_STATUS };
            if !pkt.drop {
                let buf = page_aligned(&mut q.frame_buf);
                let mut pos = 0;
                for &piece in &q.pieces[pkt.pieces_start..pkt.pieces_start + pkt.pieces_n] {
                    match piece {
                        Piece::Staged(i) => {
                            let op = &q.ops[i as usize];
                            let st = op.status();
                            if st != GrantStatus::Okay {
                                return Err(VifError::BadGrant(st));
                            }
                            let len = op.len as usize;
                            let frame = xennet_ring::Frame(op.dest.u);
                            q.memory.read(
                                frame,
                                op.dest.offset as usize,
                                &mut buf[pos..pos + len],
                            )?;
                            pos += len;
                        }
                        Piece::Mapped { entry, offset, len } => {
                            let len = usize::from(len);
                            read_mapped(
                                q.statics.page(entry as usize),
                                usize::from(offset),
                                &mut buf[pos..pos + len],
                            )?;
                            q.counters.mapped_slots += 1;
                            pos += len;
                        }
                    }
                }
                if pos == pkt.len {
                    deliver(&buf[..pos]);
                    q.counters.tx_packets += 1;
                    q.counters.tx_bytes += pos as u64;
                } else {
                    status = DROP_STATUS;
                }
            }
            if status == DROP_STATUS {
                q.counters.tx_errors += 1;
            }
            let slots = &q.slots[pkt.start..pkt.start + pkt.n];
            respond(&mut q.tx, slots, pkt.extra_mask, status)?;
        }
        done += q.pkts.len();
        if q.tx.push_responses_and_check_notify() {
            q.tx_kick.notify();
            q.counters.notify_sent += 1;
        }
    }
    Ok(done)
}

/// Take one packet's slots off the ring (each copied once), validate them, and add
/// its copy operations.
fn parse<G, M, N>(q: &mut NetbackQueue<G, M, N>, cur: &mut Cursor) -> Result<TxPacket, VifError>
where
    G: GrantCopy + GrantMap,
    M: LocalMemory + FrameAlloc,
    N: Notify,
{
    let start = q.slots.len();
    let Some(first) = q.tx.pop_request()? else {
        return Err(VifError::IncompleteChain);
    };
    q.slots.push(first);
    let mut extra_mask = 0u32;
    let first_flags = TxFlags::from_bits_truncate(first.flags);
    // Extra-info slots follow the first slot.
    if first_flags.contains(TxFlags::EXTRA_INFO) {
        loop {
            let Some(raw) = q.tx.pop_request()? else {
                return Err(VifError::IncompleteChain);
            };
            extra_mask |= 1 << (q.slots.len() - start);
            q.slots.push(raw);
            let extra = ExtraInfo::from(raw);
            match extra.decode() {
                Err(_) => return Err(VifError::BadExtra(extra.type_)),
                Ok(Extra::Gso { size, gso_type, .. }) => {
                    let known = gso_type == XEN_NETIF_GSO_TYPE_TCPV4
                        || gso_type == XEN_NETIF_GSO_TYPE_TCPV6;
                    if size == 0 || !known {
                        return Err(VifError::BadExtra(extra.type_));
                    }
                }
                Ok(_) => {}
            }
            if !extra.more() {
                break;
            }
            if q.slots.len() - start >= 8 {
                return Err(VifError::BadExtra(extra.type_));
            }
        }
    }
    // Data continuation slots.
    let mut more = first_flags.contains(TxFlags::MORE_DATA);
    let mut data_slots = 1;
    while more {
        let Some(req) = q.tx.pop_request()? else {
            return Err(VifError::IncompleteChain);
        };
        data_slots += 1;
        if data_slots >= FATAL_SLOTS {
            return Err(VifError::ChainTooLong(FATAL_SLOTS));
        }
        more = TxFlags::from_bits_truncate(req.flags).contains(TxFlags::MORE_DATA);
        q.slots.push(req);
    }
    let n = q.slots.len() - start;
    let total = usize::from(first.size);
    let mut pkt = TxPacket {
        start,
        n,
        extra_mask,
        len: total,
        pieces_start: q.pieces.len(),
        pieces_n: 0,
        drop: false,
    };
    // Sizes: every data slot stays in its page (fatal otherwise); the fragments after
    // the first must fit in the total, the first slot holding the rest.
    let mut rest = 0usize;
    for (i, req) in q.slots[start..].iter().enumerate() {
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
    let ops_start = q.ops.len();
    for i in 0..n {
        if extra_mask & (1 << i) != 0 {
            continue;
        }
        let req = q.slots[start + i];
        let len = if i == 0 {
            first_len
        } else {
            usize::from(req.size)
        };
        if len == 0 {
            continue;
        }
        // A page the frontend keeps mapped for us: read it directly at delivery.
        if let Some(entry) = q.statics.find(req.gref) {
            q.pieces.push(Piece::Mapped {
                entry: entry as u32,
                offset: req.offset,
                len: len as u16,
            });
            continue;
        }
        let Some((page, off)) = cur.place(len, usize::from(req.offset), q.tx_staging.len()) else {
            // Cannot happen: a batch stops while fewer pages than a maximal packet
            // needs remain. Treat as a drop rather than trusting that.
            pkt.drop = true;
            q.ops.truncate(ops_start);
            q.pieces.truncate(pkt.pieces_start);
            return Ok(pkt);
        };
        q.pieces.push(Piece::Staged(q.ops.len() as u32));
        q.ops.push(GnttabCopy::from_grant(
            GnttabCopyPtr::gref(req.gref, q.frontend, req.offset),
            GnttabCopyPtr::local(q.tx_staging[page], off as u16),
            len as u16,
        ));
    }
    pkt.pieces_n = q.pieces.len() - pkt.pieces_start;
    Ok(pkt)
}

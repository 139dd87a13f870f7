//! netback's transmit path over arbitrary ring and grant contents: the input
//! becomes tx requests (any ids, refs, offsets, sizes and flags, including
//! refs never granted and chains that never end), an optional absurd
//! `req_prod`, and frame data. netback must answer, drop or disconnect with a
//! counted reason, never panic, and never hand over a frame over 65535 bytes.
#![no_main]

use xennet_platform::clock;

use libfuzzer_sys::fuzz_target;
use xennet_dom0::testing::Side;
use xennet_netback::vif::{NetbackQueue, QueueSetup};
use xennet_ring::netif::{TxRequest, TxResponse};
use xennet_ring::{DomId, FrameAlloc, FrontRing, GrantAccess, LocalMemory, PAGE_SIZE};

fuzz_target!(|data: &[u8]| {
    let (Ok(dom0), Ok(domu)) = (
        Side::anonymous(DomId(0), 512),
        Side::anonymous(DomId(7), 64),
    ) else {
        return;
    };
    dom0.know(&domu);
    let d = &domu.domain;
    let (Ok(tf), Ok(rf), Ok(df)) = (d.alloc_frame(), d.alloc_frame(), d.alloc_frame()) else {
        return;
    };
    let page: Vec<u8> = (0..PAGE_SIZE).map(|i| i as u8).collect();
    let _ = d.write(df, 0, &page);
    let (Ok(tx_ref), Ok(rx_ref), Ok(_data), Ok(_ro)) = (
        d.grant_access(DomId(0), tf, false),
        d.grant_access(DomId(0), rf, false),
        d.grant_access(DomId(0), df, true),
        d.grant_access(DomId(0), df, false),
    ) else {
        return;
    };
    let Ok(tx_page) = d.page_ptr(tf) else { return };
    // SAFETY: the page belongs to `domu`, which outlives the ring in this scope.
    let Ok(mut tx) = (unsafe { FrontRing::<TxRequest, TxResponse>::init(tx_page, PAGE_SIZE) })
    else {
        return;
    };
    let (Ok(gp), now) = (domu.events.alloc_unbound(DomId(0)), clock::now()) else {
        return;
    };
    let Ok(bp) = dom0.events.bind_interdomain(DomId(7), gp) else {
        return;
    };
    let kick = dom0.events.port(bp);
    let setup = QueueSetup {
        frontend: DomId(7),
        tx_ring_ref: tx_ref,
        rx_ring_ref: rx_ref,
    };
    let Ok(mut q) = NetbackQueue::connect(
        dom0.ops.clone(),
        dom0.domain.clone(),
        setup,
        None,
        kick.clone(),
        kick,
        now,
    ) else {
        return;
    };
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    for chunk in rest.chunks_exact(12) {
        let mut r = TxRequest::default();
        r.gref = xennet_ring::GrantRef(
            u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) % 16,
        );
        r.offset = u16::from_le_bytes([chunk[4], chunk[5]]);
        r.flags = u16::from_le_bytes([chunk[6], chunk[7]]);
        r.id = u16::from_le_bytes([chunk[8], chunk[9]]);
        r.size = u16::from_le_bytes([chunk[10], chunk[11]]);
        if tx.push_request(&r).is_err() {
            break;
        }
    }
    tx.push_requests();
    if ctl & 0x80 != 0 {
        // A producer index far ahead of what was written (RING_REQUEST_PROD_OVERFLOW).
        // SAFETY: offset 0 of the shared page is the aligned u32 `req_prod`; the page
        // is ours and alive; netback reads it with an atomic load.
        unsafe { tx_page.cast::<u32>().write_volatile(u32::from(ctl) << 20) };
    }
    for _ in 0..4 {
        let r = q.process_tx(64, now, &mut |frame: &[u8]| assert!(frame.len() <= 65535));
        if r.is_err() {
            break;
        }
    }
    let _ = q.close();
});

//! netfront's response processing against a hostile backend: arbitrary tx and rx
//! responses (ids never issued, duplicates, offsets and sizes past the page, error
//! statuses, extra-info and more-data flags) and an optional absurd `rsp_prod`.
//! netfront must deliver sane frames or mark the device broken; never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xennet_dom0::testing::{connect_pair, Side};
use xennet_netfront::Features;
use xennet_ring::netif::{RxRequest, RxResponse, TxRequest, TxResponse};
use xennet_ring::{BackRing, DomId, GrantMap, MappedPage, PAGE_SIZE};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else { return };
    let (Ok(dom0), Ok(domu)) = (Side::anonymous(DomId(0), 1024), Side::anonymous(DomId(3), 2048)) else {
        return;
    };
    dom0.know(&domu);
    domu.know(&dom0);
    let features = Features { sg: true, gso_tcpv4: ctl & 0x40 != 0 };
    let Ok((mut front, back, _)) = connect_pair(&dom0, &domu, 0, [0, 0x16, 0x3e, 0, 0, 3], 1, features, None) else {
        return;
    };
    back.close();
    let refs = front.queue_refs()[0];
    let (Ok(tx_map), Ok(rx_map)) = (
        dom0.ops.map(DomId(3), refs.tx_ring_ref, false),
        dom0.ops.map(DomId(3), refs.rx_ring_ref, false),
    ) else {
        return;
    };
    // SAFETY: both mappings stay alive until they are unmapped at the end, after
    // the last use of these ring ends.
    let ends = unsafe {
        (
            BackRing::<TxRequest, TxResponse>::attach(tx_map.as_ptr(), PAGE_SIZE),
            BackRing::<RxRequest, RxResponse>::attach(rx_map.as_ptr(), PAGE_SIZE),
        )
    };
    let (Ok(mut tx), Ok(mut rx)) = ends else {
        return;
    };
    // Some frames in flight, so that some response ids are real.
    let frame = [0xabu8; 1514];
    for i in 0..usize::from(ctl & 7) {
        let _ = front.send(&frame[..60 + i * 200]);
    }
    while let Ok(Some(_)) = tx.pop_request() {}
    while let Ok(Some(_)) = rx.pop_request() {}
    for r in rest.chunks_exact(8) {
        let word = |i: usize| u16::from_le_bytes([r[i], r[i + 1]]);
        if r[0] & 1 == 0 {
            let _ = tx.push_response(&TxResponse { id: word(2), status: word(4) as i16 });
        } else {
            let _ = rx.push_response(&RxResponse {
                id: word(2),
                offset: word(4),
                flags: u16::from(r[1]),
                status: word(6) as i16,
            });
        }
    }
    tx.push_responses();
    rx.push_responses();
    if ctl & 0x80 != 0 {
        // An rx producer index far beyond the ring (RING_RESPONSE_PROD_OVERFLOW).
        // SAFETY: offset 8 of the mapped ring page is the aligned u32 `rsp_prod`;
        // the mapping is alive; netfront reads it with an atomic load.
        unsafe { rx_map.as_ptr().as_ptr().add(8).cast::<u32>().write_volatile(u32::from(ctl) << 12) };
    }
    for _ in 0..3 {
        let _ = front.poll_tx();
        let _ = front.receive(64, |f, _| assert!(f.len() <= 65535));
        let _ = front.final_check();
    }
    let _ = front.close();
    let _ = dom0.ops.unmap(tx_map);
    let _ = dom0.ops.unmap(rx_map);
});

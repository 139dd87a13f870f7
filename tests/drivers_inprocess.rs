//! netfront <-> netback in one process: frames round-trip intact in both directions,
//! grants are released on close, and hostile ring contents end only that device.

use std::time::Duration;

use xennet_dom0::testing::{connect_pair, domains, rx_all, tx_all, Side};
use xennet_netfront::Features;
use xennet_platform::clock;

const MAC: [u8; 6] = [0x00, 0x16, 0x3e, 0x00, 0x00, 0x01];

fn sides() -> (Side, Side) {
    let (dom0, mut guests) = domains(1).unwrap();
    (dom0, guests.remove(0))
}

fn frame(len: usize, seed: u8) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect();
    f[..6].copy_from_slice(&[0xff; 6]);
    f
}

fn sg() -> Features {
    Features {
        sg: true,
        gso_tcpv4: true,
    }
}

#[test]
fn frames_of_every_size_round_trip_intact_both_ways() {
    let (dom0, domu) = sides();
    let (mut front, mut back, _) = connect_pair(&dom0, &domu, 0, MAC, 1, sg(), None).unwrap();
    let frames: Vec<Vec<u8>> = [60, 1514, 9000, 65535, 14, 4096, 4097, 8192]
        .iter()
        .enumerate()
        .map(|(i, &n)| frame(n, i as u8))
        .collect();
    assert_eq!(tx_all(&mut front, &mut back, &frames), frames);
    assert_eq!(rx_all(&mut front, &mut back, &frames), frames);
    let (fc, bc) = (front.counters(), back.counters());
    assert_eq!(fc.tx_packets, frames.len() as u64);
    assert_eq!(bc.tx_packets, frames.len() as u64);
    assert_eq!(bc.rx_packets, frames.len() as u64);
    assert_eq!(fc.rx_packets, frames.len() as u64);
    assert_eq!(bc.tx_errors + bc.rx_dropped(), 0);
}

#[test]
fn many_frames_through_full_rings_arrive_in_order() {
    let (dom0, domu) = sides();
    let (mut front, mut back, _) = connect_pair(&dom0, &domu, 0, MAC, 1, sg(), None).unwrap();
    let frames: Vec<Vec<u8>> = (0..3000).map(|i| frame(60 + i % 1400, i as u8)).collect();
    assert_eq!(tx_all(&mut front, &mut back, &frames), frames);
    assert_eq!(rx_all(&mut front, &mut back, &frames), frames);
    assert_eq!(front.tx_in_flight(), 0);
}

#[test]
fn multi_queue_spreads_flows_and_keeps_every_frame() {
    let (dom0, domu) = sides();
    let (mut front, mut back, ports) = connect_pair(&dom0, &domu, 0, MAC, 4, sg(), None).unwrap();
    assert_eq!(ports.len(), 4);
    let frames: Vec<Vec<u8>> = (0..400).map(|i| frame(100, i as u8)).collect();
    let mut got = tx_all(&mut front, &mut back, &frames);
    assert_eq!(got.len(), frames.len());
    let mut want = frames.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    let per_queue = back.queue_counters();
    assert!(per_queue.iter().filter(|c| c.tx_packets > 0).count() > 1);
}

#[test]
fn close_releases_every_grant_and_frame() {
    let (dom0, domu) = sides();
    let before_frames = domu.domain.free_frames();
    let (mut front, mut back, _) = connect_pair(&dom0, &domu, 0, MAC, 2, sg(), None).unwrap();
    assert!(domu.domain.grants_in_use() > 0);
    let frames: Vec<Vec<u8>> = (0..10).map(|i| frame(1000, i)).collect();
    tx_all(&mut front, &mut back, &frames);
    back.close();
    let (_, leaked) = front.close();
    assert_eq!(leaked, 0);
    assert_eq!(domu.domain.grants_in_use(), 0);
    assert_eq!(domu.domain.free_frames(), before_frames);
}

#[test]
fn end_access_fails_while_backend_maps_the_ring() {
    let (dom0, domu) = sides();
    let (front, back, _) = connect_pair(&dom0, &domu, 0, MAC, 1, sg(), None).unwrap();
    // The backend still maps the ring pages: the frontend cannot end those grants.
    let (_, leaked) = front.close();
    assert_eq!(
        leaked, 2,
        "both ring grants are still mapped by the backend"
    );
    back.close();
}

#[test]
fn notifications_are_held_off_under_load() {
    let (dom0, domu) = sides();
    let (mut front, mut back, _) = connect_pair(&dom0, &domu, 0, MAC, 1, sg(), None).unwrap();
    let frames: Vec<Vec<u8>> = (0..1000).map(|i| frame(60, i as u8)).collect();
    // Send in batches of 32 while the backend is not looking: it never re-armed its
    // event index, so only the first batch kicks it.
    let mut got = Vec::new();
    for chunk in frames.chunks(32) {
        let (n, _) = front.send_batch(chunk.iter().map(|f| f.as_slice()));
        assert_eq!(n, chunk.len());
        back.process_tx(64, clock::now(), &mut |f| got.push(f.to_vec()))
            .unwrap();
        front.poll_tx().unwrap();
    }
    assert_eq!(got, frames);
    assert!(front.counters().notify_sent <= 2, "{:?}", front.counters());
}

/// The same round-trip matrix tests/processes.rs runs across processes: every size,
/// scatter-gather on and off, one and four queues, through an echo backend.
#[test]
fn round_trip_matrix_sg_on_and_off_one_and_four_queues() {
    use xennet_dom0::testing::{echo_once, round_trip_matrix};
    for (sg, queues) in [(true, 1), (true, 4), (false, 1), (false, 4)] {
        let (dom0, domu) = sides();
        let features = Features {
            sg,
            gso_tcpv4: false,
        };
        let (mut front, mut back, _) =
            connect_pair(&dom0, &domu, 0, MAC, queues, features, None).unwrap();
        let mut scratch = Vec::new();
        let r = round_trip_matrix(&mut front, 8, Duration::from_secs(60), |_| {
            echo_once(&mut back, &mut scratch).unwrap();
        })
        .unwrap_or_else(|e| panic!("sg={sg} queues={queues}: {e}"));
        let (echoed, refused) = if sg { (32, 0) } else { (16, 16) };
        assert_eq!((r.echoed, r.refused), (echoed, refused));
        let c = front.counters();
        assert_eq!((c.tx_errors, c.rx_errors, c.fatal_errors), (0, 0, 0));
        // Without scatter-gather the backend never hands the guest a multi-slot frame.
        let big = xennet_dom0::testing::pattern_frame(9000, 1);
        if !sg {
            assert!(!back.enqueue_rx(&big, clock::now()));
            assert_eq!(back.counters().rx_dropped_too_big, 1);
        }
    }
}

/// XSA-403: every page the frontend grants is cleared first, so the backend cannot
/// read what the guest's memory held before (here: a secret in every free page).
#[test]
fn granted_pages_never_carry_stale_guest_data() {
    use xennet_ring::{FrameAlloc, GrantMap, GrantRef, LocalMemory, MappedPage};
    let (dom0, domu) = sides();
    // Dirty every free page of the guest, then give them back.
    let mut frames = Vec::new();
    while let Ok(f) = domu.domain.alloc_frame() {
        domu.domain.write(f, 0, &[0xee; 4096]).unwrap();
        frames.push(f);
    }
    for f in frames {
        domu.domain.free_frame(f);
    }
    let (front, _back, _) = connect_pair(&dom0, &domu, 0, MAC, 1, sg(), None).unwrap();
    // Map every grant the guest gave the backend; ring pages aside (the first two
    // refs), each must be all zero.
    let rings = front.queue_refs()[0];
    let mut seen = 0;
    for r in 0..8192u32 {
        let g = GrantRef(r);
        if g == rings.tx_ring_ref || g == rings.rx_ring_ref {
            continue;
        }
        let Ok(m) = dom0.ops.map(domu.domain.domid(), g, true) else {
            continue;
        };
        let mut page = vec![0u8; 4096];
        xennet_ring::memory::read_mapped(&m, 0, &mut page).unwrap();
        assert!(page.iter().all(|&b| b == 0), "grant {r} carries old data");
        assert!(m.readonly());
        dom0.ops.unmap(m).unwrap();
        seen += 1;
    }
    assert_eq!(seen, 512, "256 tx and 256 rx buffers");
}

/// The other end of the hold-off: at light load, when the peer has gone idle (armed
/// its event index in its final check) before each frame, every frame kicks it
/// exactly once, in both directions: one notification per packet.
#[test]
fn at_light_load_every_frame_kicks_its_idle_peer_once() {
    let (dom0, domu) = sides();
    let (mut front, mut back, _) = connect_pair(&dom0, &domu, 0, MAC, 1, sg(), None).unwrap();
    assert!(!back.final_check().unwrap());
    assert!(!front.final_check().unwrap());
    let (front_kicks, back_kicks) = (front.counters().notify_sent, back.counters().notify_sent);
    for i in 0..100u8 {
        let f = frame(60, i);
        front.send(&f).unwrap();
        let mut got = Vec::new();
        back.process_tx(64, clock::now(), &mut |x| got.push(x.to_vec()))
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0], f);
        assert!(!back.final_check().unwrap(), "backend idle again");
        // The guest takes its tx response and goes idle; then a frame comes back.
        front.poll_tx().unwrap();
        assert!(!front.final_check().unwrap(), "guest idle again");
        assert!(back.enqueue_rx(&f, clock::now()));
        back.process_rx(clock::now()).unwrap();
        let mut n = 0;
        front
            .receive(64, |x, _| n += usize::from(x == f.as_slice()))
            .unwrap();
        assert_eq!(n, 1);
        // Receiving reposted a buffer; the backend, with nothing queued for the
        // guest, does not ask to be kicked for buffers.
        assert!(!back.final_check().unwrap());
        front.poll_tx().unwrap();
        assert!(!front.final_check().unwrap());
    }
    let c = front.counters();
    let b = back.counters();
    // The guest kicked once per frame it sent (reposting a buffer kicks only a
    // backend waiting for buffers); the backend once per tx response and once per
    // frame it delivered, each to an idle guest.
    assert_eq!(c.notify_sent - front_kicks, 100, "{c:?}");
    assert_eq!(b.notify_sent - back_kicks, 200, "{b:?}");
}

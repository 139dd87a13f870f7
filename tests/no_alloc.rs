//! No heap allocation on the data path after start-up: a counting global allocator
//! watches this thread while frames move guest -> backend, backend -> guest (by grant
//! copy and through staging grants) and guest -> bridge -> guest through the driver
//! domain's data plane. Warm-up passes first fill the pools and spare lists, as a
//! running system has them; then the measured passes must not allocate at all.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use xennet_dom0::dataplane::Dataplane;
use xennet_dom0::testing::{connect_pair, domains, enable_ctrl, Back, Front, Side};
use xennet_netback::vif::RX_QUEUE_BYTES;
use xennet_netfront::Features;
use xennet_platform::clock;
use xennet_ring::DomId;

struct Counting;

thread_local! {
    static WATCHING: Cell<bool> = const { Cell::new(false) };
    /// Allocations seen while watching, per thread (tests run in parallel threads).
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    if WATCHING.with(Cell::get) {
        ALLOCS.with(|a| a.set(a.get() + 1));
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator, which upholds
// GlobalAlloc's contract; counting touches only const-initialised
// thread-locals (they do not allocate).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's layout (GlobalAlloc's contract).
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: `ptr` came from this allocator (System) with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator (System) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    let before = ALLOCS.with(Cell::get);
    WATCHING.with(|w| w.set(true));
    f();
    WATCHING.with(|w| w.set(false));
    ALLOCS.with(Cell::get) - before
}

const MAC_A: [u8; 6] = [0x00, 0x16, 0x3e, 0x00, 0x00, 0x01];
const MAC_B: [u8; 6] = [0x00, 0x16, 0x3e, 0x00, 0x00, 0x02];
const SIZES: [usize; 5] = [60, 512, 1514, 9000, 65535];

fn features() -> Features {
    Features {
        sg: true,
        gso_tcpv4: true,
    }
}

fn frame(len: usize, dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len).map(|i| (i * 13) as u8).collect();
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f
}

/// Every size, 32 frames each, guest -> backend then backend -> guest; returns the
/// frames that arrived (both ways).
fn traffic(front: &mut Front, back: &mut Back, frames: &[Vec<u8>]) -> usize {
    let mut arrived = 0;
    for f in frames {
        let batch = [f.as_slice(); 32];
        let (mut sent, mut got) = (0, 0);
        while got < batch.len() {
            let (n, _) = front.send_batch(batch[sent..].iter().copied());
            sent += n;
            back.process_tx(256, clock::now(), &mut |x| {
                got += usize::from(x == f.as_slice());
            })
            .unwrap();
            front.poll_tx().unwrap();
        }
        arrived += got;
        let now = clock::now();
        // As many as the queue's byte bound holds at a time (eight of 64 KiB).
        let fits = (RX_QUEUE_BYTES / f.len()).min(32);
        let (mut queued, mut got) = (0, 0);
        while got < 32 {
            while queued < (got + fits).min(32) {
                assert!(back.enqueue_rx(f, now));
                queued += 1;
            }
            back.process_rx(now).unwrap();
            front
                .receive(256, |x, _| got += usize::from(x == f.as_slice()))
                .unwrap();
        }
        arrived += got;
    }
    arrived
}

#[test]
fn the_counter_sees_an_allocation() {
    let n = allocations(|| {
        std::hint::black_box(vec![1u8; 100]);
    });
    assert_eq!(n, 1);
}

#[test]
fn guest_transmit_and_receive_allocate_nothing_by_copy_or_by_map() {
    for map in [false, true] {
        let dom0 = Side::anonymous(DomId(0), 8192).unwrap();
        let domu = Side::anonymous(DomId(1), 4096).unwrap();
        dom0.know(&domu);
        domu.know(&dom0);
        let (mut front, mut back, _) =
            connect_pair(&dom0, &domu, 0, MAC_A, 1, features(), None).unwrap();
        if map {
            enable_ctrl(&dom0, &domu, &mut front, &mut back).unwrap();
            while !front.ctrl_state().unwrap().done {
                back.process_ctrl().unwrap();
                front.poll_tx().unwrap();
            }
        }
        let frames: Vec<Vec<u8>> = SIZES.iter().map(|&n| frame(n, MAC_B, MAC_A)).collect();
        // Warm-up: the backend's spare frame buffers grow to the sizes they carry.
        for _ in 0..3 {
            assert_eq!(traffic(&mut front, &mut back, &frames), 64 * SIZES.len());
        }
        let n = allocations(|| {
            for _ in 0..3 {
                assert_eq!(traffic(&mut front, &mut back, &frames), 64 * SIZES.len());
            }
        });
        assert_eq!(n, 0, "map={map}: allocations on the data path");
        assert_eq!(back.counters().mapped_slots > 0, map);
    }
}

#[test]
fn the_bridged_data_plane_allocates_nothing_once_running() {
    let (dom0, guests) = domains(2).unwrap();
    let (a, b) = (&guests[0], &guests[1]);
    let (mut fa, va, pa) = connect_pair(&dom0, a, 0, MAC_A, 1, features(), None).unwrap();
    let (mut fb, vb, pb) = connect_pair(&dom0, b, 0, MAC_B, 1, features(), None).unwrap();
    let ports = |p: Vec<(xennet_ring::Port, xennet_ring::Port)>| p.iter().map(|x| x.1).collect();
    let vifs = vec![(1, MAC_A, va, ports(pa)), (2, MAC_B, vb, ports(pb))];
    let mut plane = Dataplane::bridged(dom0.clone(), vifs).unwrap();
    let frames: Vec<Vec<u8>> = [60, 1514, 9000]
        .iter()
        .map(|&n| frame(n, MAC_B, MAC_A))
        .collect();
    // Guest 2 speaks first, so the bridge knows where it is.
    fb.send(&frame(60, MAC_A, MAC_B)).unwrap();
    let pass = |fa: &mut Front, fb: &mut Front, plane: &mut Dataplane| {
        let mut got = 0;
        for f in &frames {
            let batch = [f.as_slice(); 32];
            let (mut sent, mut here) = (0, 0);
            while here < batch.len() {
                let (n, _) = fa.send_batch(batch[sent..].iter().copied());
                sent += n;
                plane.run_once();
                fb.receive(256, |x, _| here += usize::from(x == f.as_slice()))
                    .unwrap();
                fa.receive(256, |_, _| {}).unwrap();
                fa.poll_tx().unwrap();
                fb.poll_tx().unwrap();
            }
            got += here;
        }
        got
    };
    for _ in 0..3 {
        assert_eq!(pass(&mut fa, &mut fb, &mut plane), 96);
    }
    let n = allocations(|| {
        for _ in 0..3 {
            assert_eq!(pass(&mut fa, &mut fb, &mut plane), 96);
        }
    });
    assert_eq!(n, 0, "allocations in the bridged data plane");
}

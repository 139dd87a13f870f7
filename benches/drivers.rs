//! The drivers in one thread, per frame: guest transmit (netfront -> netback) and guest
//! receive (netback -> netfront) by grant copy and through staging grants (the pools
//! kept mapped: the copy-vs-map comparison), frames of 64 to 65535 bytes in batches of
//! 1 and 32; guest -> bridge -> guest through the driver domain's data plane; and the
//! event-index hold-off against a kick per frame. Every group reports elements and
//! bytes, so criterion prints Melem/s and GiB/s. The cross-process figures are
//! `xennet bench`'s.
// criterion_group! defines undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use xennet_dom0::dataplane::Dataplane;
use xennet_dom0::testing::{connect_pair, enable_ctrl, Back, Front, Side};
use xennet_netfront::Features;
use xennet_platform::clock;
use xennet_ring::{DomId, Notify, Port};

const SIZES: [usize; 5] = [64, 512, 1514, 9000, 65535];
const BATCHES: [usize; 2] = [1, 32];
const MAC_A: [u8; 6] = [0x00, 0x16, 0x3e, 0x00, 0x00, 0x01];
const MAC_B: [u8; 6] = [0x00, 0x16, 0x3e, 0x00, 0x00, 0x02];

fn features() -> Features {
    Features {
        sg: true,
        gso_tcpv4: false,
    }
}

fn frame(len: usize, dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f
}

/// A driver domain and a guest in this process, wired, with staging grants if `map`.
fn pair(map: bool) -> (Side, Side, Front, Back) {
    let dom0 = Side::anonymous(DomId(0), 8192).expect("dom0");
    let domu = Side::anonymous(DomId(1), 4096).expect("domU");
    dom0.know(&domu);
    domu.know(&dom0);
    let (mut front, mut back, _) =
        connect_pair(&dom0, &domu, 0, MAC_A, 1, features(), None).expect("wire");
    if map {
        enable_ctrl(&dom0, &domu, &mut front, &mut back).expect("control ring");
        while !front.ctrl_state().is_some_and(|s| s.done) {
            back.process_ctrl().expect("ctrl");
            front.poll_tx().expect("ctrl");
        }
        assert!(back.static_grants() > 0);
    }
    (dom0, domu, front, back)
}

fn mode(map: bool) -> &'static str {
    if map {
        "map"
    } else {
        "copy"
    }
}

/// One batch guest -> backend: send until all are taken, answering as netback does.
fn tx_batch(front: &mut Front, back: &mut Back, frames: &[&[u8]]) {
    let (mut sent, mut got) = (0, 0);
    while got < frames.len() {
        let (n, _) = front.send_batch(frames[sent..].iter().copied());
        sent += n;
        back.process_tx(256, clock::now(), &mut |x| {
            got += 1;
            black_box(x);
        })
        .expect("netback tx");
        front.poll_tx().expect("netfront tx");
    }
}

/// One batch backend -> guest.
fn rx_batch(front: &mut Front, back: &mut Back, frame: &[u8], batch: usize) {
    let now = clock::now();
    for _ in 0..batch {
        assert!(back.enqueue_rx(frame, now));
    }
    let mut got = 0;
    while got < batch {
        back.process_rx(now).expect("netback rx");
        got += front
            .receive(256, |x, _| {
                black_box(x);
            })
            .expect("netfront rx");
    }
}

/// Frames per second, or bytes per second, of an iteration moving `batch` frames.
fn throughput(bytes: bool, batch: usize, size: usize) -> Throughput {
    if bytes {
        Throughput::Bytes((batch * size) as u64)
    } else {
        Throughput::Elements(batch as u64)
    }
}

/// A group named `name`, or `name-bytes` when it reports bytes per second.
fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
    bytes: bool,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let name = if bytes {
        format!("{name}-bytes")
    } else {
        name.to_string()
    };
    let mut g = c.benchmark_group(name);
    g.warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(800));
    g
}

/// Guest transmit or receive (`tx`), by copy and by map, every size: one group
/// reporting frames per second (batches 1 and 32), one bytes per second (batch 32).
fn guest(c: &mut Criterion, tx: bool) {
    let dir = if tx { "guest-tx" } else { "guest-rx" };
    for bytes in [false, true] {
        let mut g = group(c, dir, bytes);
        let batches: &[usize] = if bytes { &[32] } else { &BATCHES };
        for map in [false, true] {
            let (_d0, _du, mut front, mut back) = pair(map);
            for size in SIZES {
                let f = if tx {
                    frame(size, MAC_B, MAC_A)
                } else {
                    frame(size, MAC_A, MAC_B)
                };
                for &batch in batches {
                    g.throughput(throughput(bytes, batch, size));
                    let frames: Vec<&[u8]> = vec![f.as_slice(); batch];
                    let id = BenchmarkId::new(format!("{}/{size}B", mode(map)), batch);
                    g.bench_function(id, |b| {
                        b.iter(|| {
                            if tx {
                                tx_batch(&mut front, &mut back, &frames)
                            } else {
                                rx_batch(&mut front, &mut back, &f, batch)
                            }
                        })
                    });
                }
            }
            let c = back.counters();
            assert_eq!((c.fatal_errors, c.rx_dropped()), (0, 0));
            // (Nothing moved when a filter skipped the group.)
            let moved = c.tx_packets + c.rx_packets > 0;
            assert!(
                !moved || (c.mapped_slots > 0) == map,
                "{dir}: staging iff map"
            );
        }
        g.finish();
    }
}

fn guest_tx(c: &mut Criterion) {
    guest(c, true);
}

fn guest_rx(c: &mut Criterion) {
    guest(c, false);
}

/// Guest 1 -> netback -> bridge -> netback -> guest 2, the data plane of `xennet up`.
fn bridge(c: &mut Criterion) {
    for bytes in [false, true] {
        let g = group(c, "guest-bridge-guest", bytes);
        bridge_group(g, bytes);
    }
}

fn bridge_group(
    mut g: criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    bytes: bool,
) {
    for map in [false, true] {
        let dom0 = Side::anonymous(DomId(0), 8192).expect("dom0");
        let a = Side::anonymous(DomId(1), 4096).expect("guest 1");
        let b2 = Side::anonymous(DomId(2), 4096).expect("guest 2");
        for s in [&a, &b2] {
            dom0.know(s);
            s.know(&dom0);
        }
        let (mut fa, mut va, pa) =
            connect_pair(&dom0, &a, 0, MAC_A, 1, features(), None).expect("wire 1");
        let (mut fb, mut vb, pb) =
            connect_pair(&dom0, &b2, 0, MAC_B, 1, features(), None).expect("wire 2");
        if map {
            enable_ctrl(&dom0, &a, &mut fa, &mut va).expect("ctrl 1");
            enable_ctrl(&dom0, &b2, &mut fb, &mut vb).expect("ctrl 2");
        }
        let ports = |p: &[(Port, Port)]| p.iter().map(|x| x.1).collect();
        let vifs = vec![(1, MAC_A, va, ports(&pa)), (2, MAC_B, vb, ports(&pb))];
        let mut plane = Dataplane::bridged(dom0.clone(), vifs).expect("data plane");
        // Let guest 2 speak once so the bridge learns where MAC_B is.
        fb.send(&frame(64, MAC_A, MAC_B)).expect("hello");
        for _ in 0..100 {
            plane.run_once();
            fa.receive(64, |_, _| {}).expect("rx");
            fa.poll_tx().expect("ctrl");
            fb.poll_tx().expect("ctrl");
        }
        for size in [64, 1514, 9000] {
            let f = frame(size, MAC_B, MAC_A);
            let batch = 32;
            g.throughput(throughput(bytes, batch, size));
            let frames: Vec<&[u8]> = vec![f.as_slice(); batch];
            g.bench_function(BenchmarkId::new(mode(map), size), |b| {
                b.iter(|| {
                    let mut sent = 0;
                    let mut got = 0;
                    while got < batch {
                        let (n, _) = fa.send_batch(frames[sent..].iter().copied());
                        sent += n;
                        plane.run_once();
                        got += fb
                            .receive(256, |x, _| {
                                black_box(x);
                            })
                            .expect("guest 2 rx");
                        fa.poll_tx().expect("guest 1 tx");
                    }
                })
            });
        }
    }
    g.finish();
}

/// The event-index hold-off against a kick per frame: 32 frames of 64 bytes, the
/// backend polled after each batch.
fn notify(c: &mut Criterion) {
    for bytes in [false, true] {
        notify_group(group(c, "notify", bytes), bytes);
    }
}

fn notify_group(
    mut g: criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    bytes: bool,
) {
    let dom0 = Side::anonymous(DomId(0), 8192).expect("dom0");
    let domu = Side::anonymous(DomId(1), 4096).expect("domU");
    dom0.know(&domu);
    domu.know(&dom0);
    let (mut front, mut back, ports) =
        connect_pair(&dom0, &domu, 0, MAC_A, 1, features(), None).expect("wire");
    let kick = domu.events.port(ports[0].0);
    let f = frame(64, MAC_B, MAC_A);
    let batch = 32;
    g.throughput(throughput(bytes, batch, 64));
    for every in [false, true] {
        let name = if every {
            "kick-every-frame"
        } else {
            "hold-off"
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                for _ in 0..batch {
                    front.send(&f).expect("send");
                    if every {
                        kick.notify();
                    }
                }
                let mut got = 0;
                while got < batch {
                    got += back
                        .process_tx(256, clock::now(), &mut |x| {
                            black_box(x);
                        })
                        .expect("netback tx");
                }
                front.poll_tx().expect("netfront tx");
                // The backend drains its kicks as its event loop would.
                let mut woken = Vec::new();
                dom0.events.wait_into(Some(Duration::ZERO), &mut woken);
                black_box(&woken);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, guest_tx, guest_rx, bridge, notify);
criterion_main!(benches);

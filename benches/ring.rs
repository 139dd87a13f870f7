//! The shared ring against the SPSC queues a user would otherwise pick: one
//! request and one response per item, same thread and across two threads, at
//! batch sizes 1/8/32/128. Each group runs twice, reporting items per second and
//! (the `-bytes` groups) bytes per second of request plus response.
// criterion_group! defines undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;
use std::mem::size_of;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use crossbeam_queue::ArrayQueue;
use xennet_ring::netif::{TxRequest, TxResponse};
use xennet_ring::{BackRing, FrontRing};

const BATCHES: [usize; 4] = [1, 8, 32, 128];
const PAGE: usize = 4096;

/// One page, 4096-aligned, shared by a front and a back end.
struct Page(Box<[u64; PAGE / 8]>);

impl Page {
    fn new() -> Self {
        Page(Box::new([0u64; PAGE / 8]))
    }
    fn ptr(&mut self) -> NonNull<u8> {
        NonNull::from(&mut self.0[0]).cast()
    }
}

type Front = FrontRing<TxRequest, TxResponse>;
type Back = BackRing<TxRequest, TxResponse>;

fn rings(page: &mut Page) -> (Front, Back) {
    // SAFETY: the page outlives both ends (the benches drop them first) and only
    // these two ends access it.
    unsafe {
        let f = Front::init(page.ptr(), PAGE).expect("front");
        let b = Back::attach(page.ptr(), PAGE).expect("back");
        (f, b)
    }
}

fn req(i: usize) -> TxRequest {
    TxRequest {
        id: i as u16,
        size: 64,
        ..TxRequest::default()
    }
}

/// Moves an end to another thread.
struct SendEnd<T>(T);
// SAFETY: an end is used by exactly one thread at a time; the other end's
// thread touches the page only through the ring's atomics and its own slots.
unsafe impl<T> Send for SendEnd<T> {}

fn same_thread(c: &mut Criterion) {
    for bytes in [false, true] {
        let mut g = c.benchmark_group(if bytes {
            "ring/same-thread-bytes"
        } else {
            "ring/same-thread"
        });
        for &b in &BATCHES {
            g.throughput(if bytes {
                Throughput::Bytes((b * (size_of::<TxRequest>() + size_of::<TxResponse>())) as u64)
            } else {
                Throughput::Elements(b as u64)
            });
            g.bench_with_input(BenchmarkId::new("xennet", b), &b, |bench, &b| {
                let mut page = Page::new();
                let (mut f, mut k) = rings(&mut page);
                bench.iter(|| {
                    for i in 0..b {
                        let _ = f.push_request(&req(i));
                    }
                    black_box(f.push_requests_and_check_notify());
                    while let Ok(Some(r)) = k.pop_request() {
                        let _ = k.push_response(&TxResponse {
                            id: r.id,
                            status: 0,
                        });
                    }
                    black_box(k.push_responses_and_check_notify());
                    while let Ok(Some(r)) = f.pop_response() {
                        black_box(r);
                    }
                });
            });
            g.bench_with_input(BenchmarkId::new("rtrb", b), &b, |bench, &b| {
                let (mut qp, mut qc) = rtrb::RingBuffer::<TxRequest>::new(256);
                let (mut sp, mut sc) = rtrb::RingBuffer::<TxResponse>::new(256);
                bench.iter(|| {
                    for i in 0..b {
                        let _ = qp.push(req(i));
                    }
                    while let Ok(r) = qc.pop() {
                        let _ = sp.push(TxResponse {
                            id: r.id,
                            status: 0,
                        });
                    }
                    while let Ok(r) = sc.pop() {
                        black_box(r);
                    }
                });
            });
            g.bench_with_input(
                BenchmarkId::new("crossbeam-ArrayQueue", b),
                &b,
                |bench, &b| {
                    let q = ArrayQueue::<TxRequest>::new(256);
                    let s = ArrayQueue::<TxResponse>::new(256);
                    bench.iter(|| {
                        for i in 0..b {
                            let _ = q.push(req(i));
                        }
                        while let Some(r) = q.pop() {
                            let _ = s.push(TxResponse {
                                id: r.id,
                                status: 0,
                            });
                        }
                        while let Some(r) = s.pop() {
                            black_box(r);
                        }
                    });
                },
            );
        }
        g.finish();
    }
}

/// Runs `rounds` round trips of `b` items through an echo thread; returns the time.
fn timed<T>(
    rounds: u64,
    b: usize,
    st: &mut T,
    send: impl Fn(&mut T, usize),
    recv: impl Fn(&mut T) -> usize,
) -> Duration {
    let t = Instant::now();
    for _ in 0..rounds {
        send(st, b);
        let mut got = 0;
        while got < b {
            let n = recv(st);
            if n == 0 {
                std::hint::spin_loop();
            }
            got += n;
        }
    }
    t.elapsed()
}

fn cross_thread(c: &mut Criterion) {
    for bytes in [false, true] {
        let mut g = c.benchmark_group(if bytes {
            "ring/cross-thread-bytes"
        } else {
            "ring/cross-thread"
        });
        g.measurement_time(Duration::from_secs(3));
        for &b in &BATCHES {
            g.throughput(if bytes {
                Throughput::Bytes((b * (size_of::<TxRequest>() + size_of::<TxResponse>())) as u64)
            } else {
                Throughput::Elements(b as u64)
            });
            g.bench_with_input(BenchmarkId::new("xennet", b), &b, |bench, &b| {
                let mut page = Page::new();
                let (mut f, k) = rings(&mut page);
                let stop = Arc::new(AtomicBool::new(false));
                let echo = {
                    let stop = stop.clone();
                    let mut k = SendEnd(k);
                    std::thread::spawn(move || {
                        let k = &mut k.0;
                        while !stop.load(Ordering::Relaxed) {
                            let mut n = 0;
                            while let Ok(Some(r)) = k.pop_request() {
                                let _ = k.push_response(&TxResponse {
                                    id: r.id,
                                    status: 0,
                                });
                                n += 1;
                            }
                            if n > 0 {
                                k.push_responses();
                            } else {
                                std::hint::spin_loop();
                            }
                        }
                    })
                };
                bench.iter_custom(|rounds| {
                    timed(
                        rounds,
                        b,
                        &mut f,
                        |f, b| {
                            for i in 0..b {
                                let _ = f.push_request(&req(i));
                            }
                            f.push_requests();
                        },
                        |f| {
                            let mut n = 0;
                            while let Ok(Some(r)) = f.pop_response() {
                                black_box(r);
                                n += 1;
                            }
                            n
                        },
                    )
                });
                stop.store(true, Ordering::Relaxed);
                let _ = echo.join();
            });
            g.bench_with_input(BenchmarkId::new("rtrb", b), &b, |bench, &b| {
                let (qp, mut qc) = rtrb::RingBuffer::<TxRequest>::new(256);
                let (mut sp, sc) = rtrb::RingBuffer::<TxResponse>::new(256);
                let stop = Arc::new(AtomicBool::new(false));
                let echo = {
                    let stop = stop.clone();
                    std::thread::spawn(move || {
                        while !stop.load(Ordering::Relaxed) {
                            match qc.pop() {
                                Ok(r) => {
                                    let _ = sp.push(TxResponse {
                                        id: r.id,
                                        status: 0,
                                    });
                                }
                                Err(_) => std::hint::spin_loop(),
                            }
                        }
                    })
                };
                let mut ends = (qp, sc);
                bench.iter_custom(|rounds| {
                    timed(
                        rounds,
                        b,
                        &mut ends,
                        |(qp, _), b| {
                            for i in 0..b {
                                let _ = qp.push(req(i));
                            }
                        },
                        |(_, sc)| {
                            let mut n = 0;
                            while let Ok(r) = sc.pop() {
                                black_box(r);
                                n += 1;
                            }
                            n
                        },
                    )
                });
                stop.store(true, Ordering::Relaxed);
                let _ = echo.join();
            });
            g.bench_with_input(
                BenchmarkId::new("crossbeam-ArrayQueue", b),
                &b,
                |bench, &b| {
                    let q = Arc::new(ArrayQueue::<TxRequest>::new(256));
                    let s = Arc::new(ArrayQueue::<TxResponse>::new(256));
                    let stop = Arc::new(AtomicBool::new(false));
                    let echo = {
                        let (q, s, stop) = (q.clone(), s.clone(), stop.clone());
                        std::thread::spawn(move || {
                            while !stop.load(Ordering::Relaxed) {
                                match q.pop() {
                                    Some(r) => {
                                        let _ = s.push(TxResponse {
                                            id: r.id,
                                            status: 0,
                                        });
                                    }
                                    None => std::hint::spin_loop(),
                                }
                            }
                        })
                    };
                    bench.iter_custom(|rounds| {
                        timed(
                            rounds,
                            b,
                            &mut (),
                            |_, b| {
                                for i in 0..b {
                                    let _ = q.push(req(i));
                                }
                            },
                            |_| {
                                let mut n = 0;
                                while let Some(r) = s.pop() {
                                    black_box(r);
                                    n += 1;
                                }
                                n
                            },
                        )
                    });
                    stop.store(true, Ordering::Relaxed);
                    let _ = echo.join();
                },
            );
        }
        g.finish();
    }
}

criterion_group!(benches, same_thread, cross_thread);
criterion_main!(benches);

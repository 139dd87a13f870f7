//! Grant copy on the process platform: the per-operation cost of copying 64
//! and 1500 bytes from a peer's grants into local frames, batched by 1 and 32
//! (what netback's transmit path does per slot), as operations and as bytes per
//! second.
// criterion_group! defines undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use xennet_platform::shm::{Domain, GrantOps, PeerDomain};
use xennet_ring::grant::{GnttabCopy, GnttabCopyPtr};
use xennet_ring::{DomId, FrameAlloc, GrantAccess, GrantCopy};

fn grant_copy(c: &mut Criterion) {
    let guest = Domain::anonymous(DomId(1), 256, 1024).expect("guest");
    let backend = Domain::anonymous(DomId(0), 256, 1024).expect("backend");
    let ops = GrantOps::new(&backend);
    ops.add_peer(PeerDomain::from_domain(&guest));
    let mut grefs = Vec::new();
    let mut frames = Vec::new();
    for _ in 0..32 {
        let f = guest.alloc_frame().expect("frame");
        grefs.push(guest.grant_access(DomId(0), f, true).expect("grant"));
        frames.push(backend.alloc_frame().expect("frame"));
    }
    for bytes in [false, true] {
        let mut g = c.benchmark_group(if bytes {
            "grant-copy-bytes"
        } else {
            "grant-copy"
        });
        for &len in &[64u16, 1500] {
            for &batch in &[1usize, 32] {
                g.throughput(if bytes {
                    Throughput::Bytes(batch as u64 * u64::from(len))
                } else {
                    Throughput::Elements(batch as u64)
                });
                let id = BenchmarkId::new(format!("{len}B"), format!("batch{batch}"));
                let mut batch_ops: Vec<GnttabCopy> = (0..batch)
                    .map(|i| {
                        GnttabCopy::from_grant(
                            GnttabCopyPtr::gref(grefs[i], DomId(1), 0),
                            GnttabCopyPtr::local(frames[i], 0),
                            len,
                        )
                    })
                    .collect();
                g.bench_function(id, |b| {
                    b.iter(|| {
                        ops.grant_copy(&mut batch_ops).expect("batch");
                        black_box(batch_ops[0].status);
                    })
                });
                assert!(batch_ops.iter().all(|o| o.status == 0), "copies failed");
            }
        }
        g.finish();
    }
}

criterion_group!(benches, grant_copy);
criterion_main!(benches);

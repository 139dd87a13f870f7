//! Test fixtures (feature `test-utils`, as vm-virtio keeps its `mock`): drive both
//! ends of a wired pair in one thread, patterned frames, and the round-trip matrix
//! body shared by the in-process and cross-process tests.

use std::time::{Duration, Instant};

use xennet_platform::clock;

pub use crate::side::*;

/// Drive both ends in this thread until the backend has taken every frame of
/// `frames` from the guest (bounded: 10 000 rounds); returns what it delivered.
pub fn tx_all(front: &mut Front, back: &mut Back, frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut next = 0;
    for _ in 0..10_000 {
        while next < frames.len() && front.send(&frames[next]).is_ok() {
            next += 1;
        }
        if back
            .process_tx(64, clock::now(), &mut |f| got.push(f.to_vec()))
            .is_err()
            || front.poll_tx().is_err()
            || got.len() == frames.len()
        {
            break;
        }
    }
    got
}

/// Drive both ends until the guest has received every frame of `frames` from the
/// backend (bounded: 10 000 rounds); returns what it received.
pub fn rx_all(front: &mut Front, back: &mut Back, frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut next = 0;
    for _ in 0..10_000 {
        while next < frames.len() && back.enqueue_rx(&frames[next], clock::now()) {
            next += 1;
        }
        if back.process_rx(clock::now()).is_err()
            || front.receive(64, |f, _| got.push(f.to_vec())).is_err()
            || got.len() == frames.len()
        {
            break;
        }
    }
    got
}

/// Frame sizes of the round-trip matrix (design: smallest frame, Ethernet MTU, jumbo,
/// the protocol's largest).
pub const ROUND_TRIP_SIZES: [usize; 4] = [60, 1514, 9000, 65535];

/// A frame of `len` bytes whose contents depend on `seed`; bytes 26..38 (IPv4
/// addresses and ports, what the queue hash reads) vary so flows spread over queues.
pub fn pattern_frame(len: usize, seed: u32) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(31)
                .wrapping_add(seed.wrapping_mul(7)) as u8
        })
        .collect();
    f[..6].copy_from_slice(&[0x00, 0x16, 0x3e, 0xff, 0xff, 0xff]);
    f[6..12].copy_from_slice(&[0x00, 0x16, 0x3e, 0xee, 0xee, 0xee]);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    if len >= 38 {
        f[26..30].copy_from_slice(&seed.to_be_bytes());
        f[34..38].copy_from_slice(&seed.wrapping_mul(2_654_435_761).to_be_bytes());
    }
    f
}

/// The round-trip test body, the same in one process and across processes: send
/// `per_size` frames of every size in [`ROUND_TRIP_SIZES`] to an echo backend and check
/// each comes back intact, in order per flow. Without scatter-gather, frames over a
/// page must be refused by the frontend (the caller keeps them). `pump` lets the echo
/// backend run (a local call, or a wait for the remote one); it is given up to `limit`.
pub fn round_trip_matrix(
    front: &mut Front,
    per_size: u32,
    limit: Duration,
    mut pump: impl FnMut(&mut Front),
) -> Result<RoundTrip, String> {
    let sg = front.features().sg;
    let mut out = RoundTrip::default();
    let mut back: Vec<Vec<u8>> = Vec::new();
    let deadline = Instant::now() + limit;
    for (k, &size) in ROUND_TRIP_SIZES.iter().enumerate() {
        let mut want = Vec::new();
        for i in 0..per_size {
            let f = pattern_frame(size, (k as u32) << 16 | i);
            match front.send(&f) {
                Ok(()) => want.push(f),
                Err(xennet_netfront::SendError::BadLength(_))
                    if !sg && size > xennet_ring::PAGE_SIZE =>
                {
                    out.refused += 1;
                }
                Err(e) => return Err(format!("{size} bytes: send: {e}")),
            }
            // Keep ring room: let the echo run between frames of the biggest sizes.
            while front.tx_room() < 20 && Instant::now() < deadline {
                pump(front);
                front.poll_tx().map_err(|e| e.to_string())?;
                receive_into(front, &mut back)?;
            }
        }
        while back.len() < want.len() && Instant::now() < deadline {
            pump(front);
            front.poll_tx().map_err(|e| e.to_string())?;
            receive_into(front, &mut back)?;
        }
        let got = std::mem::take(&mut back);
        if got.len() != want.len() {
            return Err(format!(
                "{size} bytes: {} of {} frames came back",
                got.len(),
                want.len()
            ));
        }
        // Queues may reorder across flows, never within one: compare as sets.
        let mut a = got.clone();
        let mut b = want.clone();
        a.sort();
        b.sort();
        if a != b {
            return Err(format!("{size} bytes: a frame came back damaged"));
        }
        out.echoed += got.len() as u64;
    }
    Ok(out)
}

fn receive_into(front: &mut Front, into: &mut Vec<Vec<u8>>) -> Result<(), String> {
    front
        .receive(256, |f, _| into.push(f.to_vec()))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// What [`round_trip_matrix`] saw.
#[derive(Debug, Default)]
pub struct RoundTrip {
    /// Frames that came back intact.
    pub echoed: u64,
    /// Frames the frontend refused (over a page without scatter-gather).
    pub refused: u64,
}

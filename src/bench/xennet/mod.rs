//! The xennet paths of the study. Each is a set of processes connected by the XenStore
//! handshake exactly as `xennet up` and `xennet guest` connect them:
//! - `tx`: a guest's netfront transmits; the driver domain's netback takes every frame;
//! - `rx`: the driver domain's netback sends; the guest's netfront receives;
//! - `bridge`: guest 1 -> netback -> bridge `xenbr0` -> netback -> guest 2;
//! - `tx-light`: `tx` at light load: the guest sends a batch, waits for its answers,
//!   then pauses [`LIGHT_GAP`], so the driver domain goes to sleep between batches and
//!   every batch has to wake it (notifications per batch near 1);
//! - `tx-copy`, `rx-copy`: `tx` and `rx` with a backend that does not offer the control
//!   ring, so every slot is a grant copy (the others use staging grants: the guest's
//!   buffer pages stay mapped in the driver domain).
//!
//! The coordinator (the `xennet bench` process) runs the XenStore daemon and writes the
//! devices as the toolstack does; each domain is a `bench-worker` process. A worker
//! prints its report as one JSON line once its part is done, then waits for its stdin to
//! close, so no domain tears down while another still measures.

use std::io::{self};
use std::time::Duration;

mod backend;
mod guest;
mod instance;
mod sync;

use backend::*;
use guest::*;
pub use guest::{connect_guest, print_report};
pub use instance::{linger, worker, Instance, Worker, WorkerEnv};
use sync::*;

use super::{Case, Sample, WorkerReport};

/// The sending guest (and the only guest of `tx` and `rx`).
const GUEST_A: u16 = 1;
/// The receiving guest of `bridge`.
const GUEST_B: u16 = 2;
/// Bytes of Ethernet header in front of the checked payload.
pub const HEADER: usize = 14;
/// An ethertype for local experiments (IEEE 802): no stack in the path answers it.
const ETHERTYPE: [u8; 2] = [0x88, 0xb5];
/// How long a worker keeps polling before it sleeps on its event channel. A blocking
/// wake across processes costs tens of microseconds here (docs/design.md §8); a
/// peer that is producing shows up well within this.
const SPIN: Duration = Duration::from_micros(50);
/// A worker that sees nothing at all for this long reports what it has.
const IDLE: Duration = Duration::from_secs(5);
/// Once frames flowed, this long without any means the sender is done (frames the
/// path dropped never come); the receiver reports.
const QUIET: Duration = Duration::from_millis(300);

/// `tx`: guest transmit into the driver domain.
pub fn tx(case: &Case) -> io::Result<Sample> {
    one_guest("tx", "xennet-back-tx", "xennet-front-send", case, false)
}

/// `rx`: the driver domain sends to a guest.
pub fn rx(case: &Case) -> io::Result<Sample> {
    one_guest("rx", "xennet-back-rx", "xennet-front-recv", case, true)
}

/// `tx` by plain grant copy (no staging grants).
pub fn tx_copy(case: &Case) -> io::Result<Sample> {
    one_guest(
        "tx-copy",
        "xennet-back-tx-copy",
        "xennet-front-send",
        case,
        false,
    )
}

/// `rx` by plain grant copy (no staging grants).
pub fn rx_copy(case: &Case) -> io::Result<Sample> {
    one_guest(
        "rx-copy",
        "xennet-back-rx-copy",
        "xennet-front-recv",
        case,
        true,
    )
}

/// The pause between batches of `tx-light` (longer than a waiting side's spin).
pub const LIGHT_GAP: Duration = Duration::from_micros(200);
/// Frames `tx-light` sends (its rate is set by the pause, not by the path).
pub const LIGHT_PACKETS: u64 = 2_000;

/// `tx` at light load: one batch per [`LIGHT_GAP`].
pub fn tx_light(case: &Case) -> io::Result<Sample> {
    let case = Case {
        packets: case.packets.min(LIGHT_PACKETS),
        ..case.clone()
    };
    one_guest(
        "tx-light",
        "xennet-back-tx",
        "xennet-front-send-light",
        &case,
        false,
    )
}

/// A driver domain and one guest; `back_sends` says which of them is the sender.
fn one_guest(
    path: &str,
    back_role: &str,
    front_role: &str,
    case: &Case,
    back_sends: bool,
) -> io::Result<Sample> {
    let inst = Instance::new(path, &[GUEST_A])?;
    let mut back = inst.spawn(back_role, None, case, 0)?;
    let mut front = inst.spawn(front_role, Some(GUEST_A), case, 1)?;
    let (b, f) = (back.report(), front.report());
    let (b, f) = (b?, f?);
    let (s, r) = if back_sends { (b, f) } else { (f, b) };
    Ok(Sample::from_reports(path, case, &s, &r, s.drops + r.drops))
}

/// `bridge`: guest 1 -> bridge -> guest 2, the driver domain forwarding.
pub fn bridge(case: &Case) -> io::Result<Sample> {
    let inst = Instance::new("bridge", &[GUEST_A, GUEST_B])?;
    let mut back = inst.spawn("xennet-back-bridge", None, case, 0)?;
    let mut recv = inst.spawn("xennet-front-recv", Some(GUEST_B), case, 1)?;
    let mut send = inst.spawn("xennet-front-send", Some(GUEST_A), case, 1)?;
    let s = send.report();
    let r = recv.report();
    let b = back.report();
    let (s, r, b) = (s?, r?, b?);
    // The driver domain's CPU and kicks count with the sender's.
    let sender = WorkerReport {
        cpu_ns: s.cpu_ns + b.cpu_ns,
        notifications: s.notifications + b.notifications,
        drops: s.drops + b.drops,
        ..s
    };
    let drops = sender.drops + r.drops;
    Ok(Sample::from_reports("bridge", case, &sender, &r, drops))
}

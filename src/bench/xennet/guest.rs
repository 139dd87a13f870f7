//! The guest's side of each path: connect netfront, then transmit or receive.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use xennet_netfront::xenbus as fe;
use xennet_platform::shm::{Domain, EventChannels, RuntimeDir};
use xennet_ring::DomId;
use xennet_xenstore::{domain_socket, XsClient};

use crate::bench::{sys, Case, WorkerReport};
use xennet_dom0::build::guest_mac;
use xennet_dom0::side::Front;
use xennet_dom0::up::xenstore_dir;

use super::*;

/// Print a report line for the coordinator.
pub fn print_report(r: &WorkerReport) {
    if let Ok(line) = serde_json::to_string(r) {
        println!("{line}");
    }
}

/// Connect guest `domid`'s netfront through XenStore in the instance at `dir`.
pub fn connect_guest(
    dir: &std::path::Path,
    domid: u16,
    opts: &fe::FrontOptions,
) -> io::Result<(Front, fe::FrontLink, Arc<EventChannels>)> {
    let rt = RuntimeDir::new(dir).map_err(|e| err("runtime dir")(e.to_string()))?;
    let domain = Domain::create(&rt, DomId(domid), 4096, 4096)
        .map_err(|e| err("guest domain")(e.to_string()))?;
    let events = EventChannels::new(&domain, Some(rt));
    let xs =
        XsClient::connect(domain_socket(&xenstore_dir(dir), domid)).map_err(io::Error::other)?;
    let (front, link) = fe::connect(&xs, &domain, &events, opts)
        .map_err(|e| err("netfront handshake")(e.to_string()))?;
    Ok((front, link, events))
}

/// A guest: the sender (pausing `gap` after each batch once it was answered, if
/// non-zero) when `send` is some, else the receiver.
pub(super) fn front(case: &Case, env: &WorkerEnv, send: Option<Duration>) -> io::Result<()> {
    sys::pin_to_cpu(env.cpu);
    let domid = env.domid.unwrap_or(GUEST_A);
    let (mut front, _link, events) = connect_guest(&env.dir, domid, &fe::FrontOptions::default())?;
    let report = match send {
        Some(gap) => transmit(case, &events, &mut front, gap)?,
        None => receive(case, &events, &mut front, domid)?,
    };
    print_report(&report);
    linger();
    Ok(())
}

/// Take tx answers; when there are none, wait for some (spin, then sleep). False once
/// the backend has gone quiet.
pub(super) fn reap_or_wait(
    w: &mut Waiter,
    events: &EventChannels,
    front: &mut Front,
) -> io::Result<bool> {
    let fail = |e: xennet_netfront::FrontError| err("netfront")(e.to_string());
    if front.poll_tx().map_err(fail)? > 0 {
        w.progress();
        return Ok(true);
    }
    w.idle(
        events,
        front,
        |f| Ok(f.poll_tx().map_err(fail)? > 0),
        |f| f.final_check().map_err(fail),
    )
}

/// Send every frame in batches of `case.batch`; wait for every answer. With a `gap`,
/// each batch is answered, then the sender pauses that long (light load).
pub(super) fn transmit(
    case: &Case,
    events: &EventChannels,
    front: &mut Front,
    gap: Duration,
) -> io::Result<WorkerReport> {
    let src = front.mac();
    let dst = guest_mac(GUEST_B);
    let mut frames: Vec<Vec<u8>> = (0..case.batch)
        .map(|_| vec![0u8; case.frame_bytes])
        .collect();
    let fail = |e: xennet_netfront::FrontError| err("netfront")(e.to_string());
    let mut w = Waiter::new();
    let c0 = front.counters();
    let cpu0 = sys::cpu_time_ns();
    let t0 = Instant::now();
    let mut seq = 0u64;
    let mut stalled = false;
    'send: while seq < case.packets {
        let n = (case.packets - seq).min(case.batch as u64) as usize;
        for (i, f) in frames.iter_mut().take(n).enumerate() {
            fill(f, dst, src, seq + i as u64);
        }
        let mut off = 0;
        while off < n {
            let (k, stop) = front.send_batch(frames[off..n].iter().map(Vec::as_slice));
            off += k;
            match stop {
                None | Some(xennet_netfront::SendError::Busy) => {}
                Some(e) => return Err(io::Error::other(format!("send: {e}"))),
            }
            // Ring or buffers full: take answers, waiting for them if need be.
            if off < n && !reap_or_wait(&mut w, events, front)? {
                stalled = true;
                seq += off as u64;
                break 'send;
            }
        }
        seq += n as u64;
        front.poll_tx().map_err(fail)?;
        if !gap.is_zero() {
            while front.tx_in_flight() > 0 {
                if !reap_or_wait(&mut w, events, front)? {
                    stalled = true;
                    break 'send;
                }
            }
            std::thread::sleep(gap);
        }
    }
    while !stalled && front.tx_in_flight() > 0 {
        if !reap_or_wait(&mut w, events, front)? {
            break;
        }
    }
    let c = front.counters();
    let report = WorkerReport {
        packets: seq,
        bad: 0,
        cpu_ns: sys::cpu_time_ns() - cpu0,
        wall_ns: t0.elapsed().as_nanos() as u64,
        notifications: c.notify_sent - c0.notify_sent,
        drops: (c.tx_errors + c.tx_dropped) - (c0.tx_errors + c0.tx_dropped),
        timed: 0,
    };
    Ok(report)
}

/// Receive until every frame arrived (or the sender went quiet).
pub(super) fn receive(
    case: &Case,
    events: &EventChannels,
    front: &mut Front,
    domid: u16,
) -> io::Result<WorkerReport> {
    let fail = |e: xennet_netfront::FrontError| err("netfront")(e.to_string());
    if domid == GUEST_B {
        // Let the bridge learn where guest 2 is.
        let mut hello = vec![0u8; 60];
        fill(&mut hello, [0xff; 6], front.mac(), u64::MAX);
        front
            .send(&hello)
            .map_err(|e| io::Error::other(format!("send: {e}")))?;
    }
    let mut got = 0u64;
    let mut bad = 0u64;
    let mut w = Waiter::new();
    let mut meter = Meter::new();
    let take = |front: &mut Front, got: &mut u64, bad: &mut u64| -> io::Result<usize> {
        // Answers to our own sends (the hello) are reaped too, so that the final
        // check before sleeping does not keep finding them.
        front.poll_tx().map_err(fail)?;
        front
            .receive(256, |f, _| {
                *got += 1;
                if !intact(case, f) {
                    *bad += 1;
                }
            })
            .map_err(fail)
    };
    while got < case.packets {
        if take(front, &mut got, &mut bad)? > 0 {
            w.progress();
        } else if !w.idle(
            events,
            front,
            |f| Ok(take(f, &mut got, &mut bad)? > 0),
            |f| f.final_check().map_err(fail),
        )? {
            break;
        }
        meter.saw(got, front.counters().notify_sent);
    }
    let c = front.counters();
    let report = meter.report(got, bad, w.last(), c.notify_sent, c.rx_errors);
    Ok(report)
}

//! The driver domain's side of each path: connect the backends, then sink, source,
//! forward (bridge) or echo frames.

use std::io::{self};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use xennet_netback::xenbus as be;
use xennet_platform::clock;
use xennet_platform::shm::{Domain, PeerAccess, PeerDomain, RuntimeDir};
use xennet_ring::DomId;
use xennet_xenstore::{dom0_socket, XenbusState, XsClient};

use crate::bench::{sys, Case, WorkerReport};
use xennet_dom0::build::{guest_mac, DD_MAC};
use xennet_dom0::dataplane::Dataplane;
use xennet_dom0::side::{Back, Side};
use xennet_dom0::up::xenstore_dir;

use super::*;

pub(super) enum BackRole {
    /// Take the guest's frames (`tx`).
    Sink,
    /// Send frames to the guest (`rx`).
    Source,
    /// Forward guest 1's frames to guest 2 through the bridge.
    Bridge,
    /// Send every frame back to the guest that sent it (round-trip tests).
    Echo,
}

/// Connect the backend of every vif the coordinator wrote, as `xennet up` does.
pub(super) fn connect_backends(
    rt: &RuntimeDir,
    side: &Side,
    xs: &XsClient,
    guests: &[u16],
    offer: be::Offer,
) -> io::Result<Vec<(u16, Back, Vec<xennet_ring::Port>)>> {
    let mut devs = Vec::new();
    for &g in guests {
        let path = format!("/local/domain/0/backend/vif/{g}/0");
        devs.push(be::probe_with(xs, &path, offer).map_err(|e| err("probe")(e.to_string()))?);
    }
    let mut out = Vec::new();
    for d in devs {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = d
                .frontend_state(xs)
                .map_err(|e| err("frontend state")(e.to_string()))?;
            if matches!(s, XenbusState::Initialised | XenbusState::Connected) {
                break;
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "frontend {} did not initialise",
                    d.frontend_id.0
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let params = d
            .read_frontend(xs)
            .map_err(|e| err("frontend nodes")(e.to_string()))?;
        let peer = PeerDomain::open(rt, d.frontend_id, PeerAccess::Grants)
            .map_err(|e| err("peer")(e.to_string()))?;
        side.ops.add_peer(peer);
        let (vif, ports) = d
            .connect(&params, &side.ops, &side.domain, &side.events)
            .map_err(|e| err("connect")(e.to_string()))?;
        d.set_state(xs, XenbusState::Connected)
            .map_err(|e| err("state")(e.to_string()))?;
        out.push((d.frontend_id.0, vif, ports));
    }
    Ok(out)
}

/// A driver domain; `ctrl_ring` says whether it offers the control ring (staging
/// grants).
pub(super) fn back(
    case: &Case,
    env: &WorkerEnv,
    role: BackRole,
    ctrl_ring: bool,
) -> io::Result<()> {
    let offer = |max_queues| be::Offer {
        max_queues,
        ctrl_ring,
    };
    sys::pin_to_cpu(env.cpu);
    let rt = RuntimeDir::new(&env.dir).map_err(|e| err("runtime dir")(e.to_string()))?;
    let domain =
        Domain::create(&rt, DomId(0), 8192, 1024).map_err(|e| err("domain 0")(e.to_string()))?;
    let side = Side::from_domain(domain, Some(rt.clone()));
    let xs = XsClient::connect(dom0_socket(&xenstore_dir(&env.dir))).map_err(io::Error::other)?;
    let report = match role {
        BackRole::Sink => {
            let mut vifs = connect_backends(&rt, &side, &xs, &[GUEST_A], offer(1))?;
            let (_, vif, _) = vifs.remove(0);
            sink(case, &side, vif)?
        }
        BackRole::Source => {
            let mut vifs = connect_backends(&rt, &side, &xs, &[GUEST_A], offer(1))?;
            let (_, vif, _) = vifs.remove(0);
            source(case, &side, vif)?
        }
        BackRole::Bridge => {
            let vifs = connect_backends(&rt, &side, &xs, &[GUEST_A, GUEST_B], offer(1))?;
            return forward(case, side, vifs);
        }
        BackRole::Echo => {
            let mut vifs = connect_backends(&rt, &side, &xs, &[GUEST_A], offer(be::MAX_QUEUES))?;
            let (_, vif, _) = vifs.remove(0);
            return echo(&side, vif);
        }
    };
    print_report(&report);
    linger();
    Ok(())
}

/// `tx`: take frames until every one arrived (or the sender went quiet).
pub(super) fn sink(case: &Case, side: &Side, mut vif: Back) -> io::Result<WorkerReport> {
    let mut got = 0u64;
    let mut bad = 0u64;
    let mut meter = Meter::new();
    let mut w = Waiter::new();
    let take = |vif: &mut Back, got: &mut u64, bad: &mut u64| -> io::Result<usize> {
        vif.process_tx(256, clock::now(), &mut |f| {
            *got += 1;
            if !intact(case, f) {
                *bad += 1;
            }
        })
        .map_err(|e| err("netback tx")(e.to_string()))
    };
    while got < case.packets {
        if take(&mut vif, &mut got, &mut bad)? > 0 {
            w.progress();
        } else if !w.idle(
            &side.events,
            &mut vif,
            |v| Ok(take(v, &mut got, &mut bad)? > 0),
            |v| v.final_check().map_err(|e| err("netback")(e.to_string())),
        )? {
            break;
        }
        meter.saw(got, vif.counters().notify_sent);
    }
    let c = vif.counters();
    Ok(meter.report(got, bad, w.last(), c.notify_sent, c.tx_errors))
}

/// `rx`: queue frames for the guest a batch at a time and copy them into its buffers.
pub(super) fn source(case: &Case, side: &Side, mut vif: Back) -> io::Result<WorkerReport> {
    let dst = guest_mac(GUEST_A);
    let src = DD_MAC.0;
    let mut frame = vec![0u8; case.frame_bytes];
    let cpu0 = sys::cpu_time_ns();
    let t0 = Instant::now();
    let mut w = Waiter::new();
    let mut seq = 0u64;
    let backlog = (case.batch * 2).max(64);
    let rx = |vif: &mut Back| {
        vif.process_rx(clock::now())
            .map_err(|e| err("netback rx")(e.to_string()))
    };
    while seq < case.packets || vif.rx_queued() > 0 {
        if seq < case.packets && vif.rx_queued() + case.batch <= backlog {
            let n = (case.packets - seq).min(case.batch as u64);
            let now = clock::now();
            for i in 0..n {
                fill(&mut frame, dst, src, seq + i);
                vif.enqueue_rx(&frame, now);
            }
            seq += n;
        }
        if rx(&mut vif)? > 0 {
            w.progress();
            continue;
        }
        if vif.rx_queued() + case.batch <= backlog && seq < case.packets {
            continue;
        }
        let more = w.idle(
            &side.events,
            &mut vif,
            |v| Ok(rx(v)? > 0),
            |v| v.final_check().map_err(|e| err("netback")(e.to_string())),
        )?;
        if !more {
            break;
        }
    }
    let c = vif.counters();
    Ok(WorkerReport {
        packets: seq,
        bad: 0,
        cpu_ns: sys::cpu_time_ns() - cpu0,
        wall_ns: t0.elapsed().as_nanos() as u64,
        notifications: c.notify_sent,
        drops: c.rx_dropped(),
        timed: 0,
    })
}

/// `bridge`: run the driver domain's data plane until guest 2 was handed every frame.
pub(super) fn forward(
    case: &Case,
    side: Side,
    vifs: Vec<(u16, Back, Vec<xennet_ring::Port>)>,
) -> io::Result<()> {
    let vifs = vifs
        .into_iter()
        .map(|(domid, vif, ports)| (domid, guest_mac(domid), vif, ports))
        .collect();
    let mut plane = Dataplane::bridged(side, vifs).map_err(io::Error::other)?;
    // (frames handed to guest 2, kicks sent, drops, frames taken from guest 1)
    let delivered = |plane: &Dataplane| -> (u64, u64, u64, u64) {
        let mut out = (0, 0, 0, 0);
        for v in &plane.vifs {
            let c = v.vif.counters();
            if v.vif.domid.0 == GUEST_B {
                out.0 = c.rx_packets;
            } else {
                out.3 = c.tx_packets;
            }
            out.1 += c.notify_sent;
            out.2 += c.tx_errors + c.rx_dropped();
        }
        out
    };
    // Progress is guest 1's frames coming in and guest 2's going out.
    let mut meter = Meter::new();
    let mut w = Waiter::new();
    let mut seen = (0, 0);
    loop {
        plane.run_once();
        let (got, kicks, _, taken) = delivered(&plane);
        meter.saw(got, kicks);
        if (got, taken) != seen {
            seen = (got, taken);
            w.progress();
        }
        if got >= case.packets {
            break;
        }
        let quiet = w.last().elapsed();
        if quiet >= w.limit() {
            break;
        }
        if quiet > SPIN {
            plane.wait(Duration::from_millis(100));
        }
    }
    let (got, kicks, drops, _) = delivered(&plane);
    let report = meter.report(got, 0, w.last(), kicks, drops);
    // Keep forwarding (stragglers, the guests' goodbyes) until told to exit.
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    std::thread::spawn(move || {
        linger();
        s2.store(true, Ordering::Relaxed);
    });
    print_report(&report);
    plane.run(&stop);
    Ok(())
}

/// Echo every frame back to the guest until stdin closes.
pub(super) fn echo(side: &Side, mut vif: Back) -> io::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    std::thread::spawn(move || {
        linger();
        s2.store(true, Ordering::Relaxed);
    });
    let mut scratch = Vec::new();
    let mut woken = Vec::new();
    let mut idle_since = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let n = xennet_dom0::side::echo_once(&mut vif, &mut scratch)
            .map_err(|e| err("echo")(e.to_string()))?;
        if n > 0 {
            idle_since = Instant::now();
        } else if idle_since.elapsed() > SPIN
            && !vif.final_check().map_err(|e| err("echo")(e.to_string()))?
        {
            woken.clear();
            side.events
                .wait_into(Some(Duration::from_millis(50)), &mut woken);
        }
    }
    Ok(())
}

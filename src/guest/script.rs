//! What a guest does once connected, on any platform: the script (pings, a TCP echo
//! exchange) over its smoltcp stack, or frames moved between netfront and a TAP device.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use smoltcp::phy::Device;
use xennet_dom0::stack::GuestStack;
use xennet_netfront::Netfront;
use xennet_ring::{FrameAlloc, GrantAccess, LocalMemory, Notify};
use xennet_switch::uplink::tap::TapDevice;
use xennet_switch::uplink::Endpoint;

use super::{GuestOptions, GuestReport};

/// Runs the pings and the TCP echo exchange `opts` asks for, into `rep`.
pub(super) fn run<D: Device>(
    stack: &mut GuestStack<D>,
    opts: &GuestOptions,
    wait: &mut dyn FnMut(Duration),
    rep: &mut GuestReport,
) {
    let interval = Duration::from_millis(100);
    for (i, target) in opts.pings.iter().enumerate() {
        if i > 0 {
            // smoltcp sends at most one ARP request per second for the whole
            // interface; without this pause the next target's first echoes would
            // wait for that window and their round trips would show it.
            stack.serve_for(Duration::from_secs(1), wait);
        }
        let _ = writeln!(rep.text, "\nguest {} pings {target}:", opts.domid);
        let p = stack.ping(*target, opts.count, interval, Duration::from_secs(1), wait);
        let _ = writeln!(rep.text, "{p}");
        rep.pings.push(p);
    }
    if let Some((addr, port)) = opts.tcp_echo {
        let payload = b"xennet: frames through netfront, the shared rings and netback";
        let _ = writeln!(
            rep.text,
            "\nguest {} opens a TCP connection to {addr}:{port} (echo):",
            opts.domid
        );
        let ok = match stack.tcp_exchange(addr, port, payload, false, Duration::from_secs(3), wait)
        {
            Ok(back) if back == payload => {
                let _ = writeln!(rep.text, "echoed {} bytes intact", back.len());
                true
            }
            Ok(back) => {
                let _ = writeln!(
                    rep.text,
                    "echo returned {} of {} bytes",
                    back.len(),
                    payload.len()
                );
                false
            }
            Err(e) => {
                let _ = writeln!(rep.text, "echo failed: {e}");
                false
            }
        };
        rep.tcp_echo_ok = Some(ok);
    }
}

/// Moves frames between the TAP device and the netfront for up to `limit`.
/// Frames the ring cannot take right now are counted, as a NIC would drop them.
pub(super) fn pump_tap<P, N>(
    front: &mut Netfront<P, N>,
    tap: &mut TapDevice,
    wait: &mut dyn FnMut(Duration),
    limit: Duration,
    dropped: &mut u64,
) where
    P: GrantAccess + FrameAlloc + LocalMemory,
    N: Notify,
{
    let until = Instant::now() + limit;
    let now = xennet_ring::time::Instant::ZERO;
    while Instant::now() < until {
        let mut moved = false;
        tap.poll(now, &mut |f| {
            moved = true;
            if front.send(f).is_err() {
                *dropped += 1;
            }
        });
        moved |= front.poll_tx().unwrap_or(0) > 0;
        moved |= front.receive(64, |f, _| tap.receive(now, f)).unwrap_or(0) > 0;
        if !moved && !front.final_check().unwrap_or(false) {
            // The TAP has no event channel: look at it every millisecond.
            wait(Duration::from_millis(1));
        }
    }
}

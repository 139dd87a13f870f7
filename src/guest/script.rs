//! What a guest does once connected, on any platform: the script (pings, a TCP echo
//! exchange) over its smoltcp stack, or frames moved between netfront and a TAP device.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use smoltcp::phy::Device;
use xennet_dom0::stack::GuestStack;
use xennet_netfront::{Netfront, SendError};
use xennet_ring::{FrameAlloc, GrantAccess, LocalMemory, Notify};
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

/// How often, at most, the pump prints its counters while they change.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Moves frames between a TAP device (any [`Endpoint`]) and the netfront, with
/// backpressure: frames read from the TAP that the tx ring cannot take yet wait here,
/// in order, and the TAP is not read again until they are all sent. The kernel's
/// queue behind the TAP (and its TCP) then waits for the ring, as it waits for a
/// NIC's, instead of frames being dropped and retransmitted. At most one TAP read's
/// worth of frames waits; their buffers are reused.
pub(super) struct TapPump {
    waiting: VecDeque<Vec<u8>>,
    spare: Vec<Vec<u8>>,
    /// Frames that had to wait for room in the tx ring.
    pub(super) waited: u64,
    /// Frames the netfront refused outright (a length it cannot send, the device
    /// not connected): dropped, and counted here.
    pub(super) refused: u64,
    reported: (u64, u64),
    report_at: Instant,
}

impl TapPump {
    pub(super) fn new() -> Self {
        TapPump {
            waiting: VecDeque::new(),
            spare: Vec::new(),
            waited: 0,
            refused: 0,
            reported: (0, 0),
            report_at: Instant::now(),
        }
    }

    /// One pass: tx responses reaped; waiting frames, then (once none waits) what the
    /// TAP has, to the netfront in one batch; received frames to the TAP. Returns
    /// whether anything moved.
    pub(super) fn pass<P, N, E>(&mut self, front: &mut Netfront<P, N>, tap: &mut E) -> bool
    where
        P: GrantAccess + FrameAlloc + LocalMemory,
        N: Notify,
        E: Endpoint,
    {
        let now = xennet_ring::time::Instant::ZERO;
        let mut moved = front.poll_tx().unwrap_or(0) > 0;
        moved |= self.flush(front);
        if self.waiting.is_empty() {
            let (waiting, spare) = (&mut self.waiting, &mut self.spare);
            tap.poll(now, &mut |f| {
                let mut buf = spare.pop().unwrap_or_default();
                buf.clear();
                buf.extend_from_slice(f);
                waiting.push_back(buf);
            });
            moved |= !self.waiting.is_empty();
            self.flush(front);
            self.waited += self.waiting.len() as u64;
        }
        moved |= front.receive(64, |f, _| tap.receive(now, f)).unwrap_or(0) > 0;
        moved
    }

    /// Sends the waiting frames in order, in one batch, until the ring is full.
    /// Returns whether any was taken.
    fn flush<P, N>(&mut self, front: &mut Netfront<P, N>) -> bool
    where
        P: GrantAccess + FrameAlloc + LocalMemory,
        N: Notify,
    {
        let mut any = false;
        while !self.waiting.is_empty() {
            let (taken, err) = front.send_batch(self.waiting.iter().map(Vec::as_slice));
            any |= taken > 0;
            for _ in 0..taken {
                self.recycle();
            }
            match err {
                None | Some(SendError::Busy) => break,
                // This frame can never be sent: counted, and the rest go on.
                Some(e) => {
                    tracing::debug!("TAP frame refused by netfront: {e}");
                    self.refused += 1;
                    self.recycle();
                }
            }
        }
        any
    }

    fn recycle(&mut self) {
        if let Some(buf) = self.waiting.pop_front() {
            if self.spare.len() < 64 {
                self.spare.push(buf);
            }
        }
    }

    /// The counters, as the pump prints them.
    pub(super) fn line(&self) -> String {
        format!(
            "TAP: {} frames waited for room in the tx ring (backpressure), {} refused by netfront",
            self.waited, self.refused
        )
    }

    /// Passes for up to `limit`, sleeping in `wait` when nothing moved; prints the
    /// counters (prefixed by `who`) at most once a [`REPORT_EVERY`] while they change.
    pub(super) fn pump<P, N, E>(
        &mut self,
        who: &str,
        front: &mut Netfront<P, N>,
        tap: &mut E,
        wait: &mut dyn FnMut(Duration),
        limit: Duration,
    ) where
        P: GrantAccess + FrameAlloc + LocalMemory,
        N: Notify,
        E: Endpoint,
    {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if !self.pass(front, tap) && !front.final_check().unwrap_or(false) {
                // The TAP has no event channel: look at it every millisecond (a
                // waiting frame is woken sooner, by the backend's tx response).
                wait(Duration::from_millis(1));
            }
        }
        let now = Instant::now();
        if (self.waited, self.refused) != self.reported && now >= self.report_at {
            println!("{who}: {}", self.line());
            self.reported = (self.waited, self.refused);
            self.report_at = now + REPORT_EVERY;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::any::Any;
    use std::collections::VecDeque;

    use xennet_dom0::testing::{connect_pair, pattern_frame, Side};
    use xennet_netfront::Features;
    use xennet_platform::clock;
    use xennet_ring::time::Instant;
    use xennet_ring::DomId;
    use xennet_switch::uplink::Endpoint;

    use super::TapPump;

    /// A TAP with a queue of frames to read (64 per poll, as `TapDevice` reads).
    struct FakeTap {
        to_read: VecDeque<Vec<u8>>,
    }

    impl Endpoint for FakeTap {
        fn receive(&mut self, _: Instant, _: &[u8]) {}
        fn poll(&mut self, _: Instant, tx: &mut dyn FnMut(&[u8])) {
            for _ in 0..64 {
                match self.to_read.pop_front() {
                    Some(f) => tx(&f),
                    None => break,
                }
            }
        }
        fn poll_at(&mut self, _: Instant) -> Option<Instant> {
            None
        }
        fn as_any_mut(&mut self) -> &mut dyn Any {
            self
        }
    }

    /// Issue 17 item 2: while the tx ring is full the pump stops reading the TAP
    /// (the frames wait, in order) instead of dropping what it read.
    #[test]
    fn a_full_tx_ring_holds_tap_frames_back_instead_of_dropping_them() {
        let dom0 = Side::anonymous(DomId(0), 2048).unwrap();
        let guest = Side::anonymous(DomId(1), 2048).unwrap();
        dom0.know(&guest);
        let features = Features {
            sg: true,
            gso_tcpv4: false,
        };
        let (mut front, mut back, _) = connect_pair(
            &dom0,
            &guest,
            0,
            [0, 0x16, 0x3e, 0, 0, 1],
            1,
            features,
            None,
        )
        .unwrap();
        let frames: Vec<Vec<u8>> = (0..1000).map(|i| pattern_frame(1514, i)).collect();
        let mut tap = FakeTap {
            to_read: frames.iter().cloned().collect(),
        };
        let mut pump = TapPump::new();
        // The backend is busy: the ring fills, and what the TAP still has waits.
        for _ in 0..20 {
            pump.pass(&mut front, &mut tap);
        }
        assert_eq!(pump.refused, 0, "frames dropped while the ring was full");
        assert!(
            !tap.to_read.is_empty(),
            "the TAP was read on while the ring was full"
        );
        // The backend catches up: every frame arrives, in order.
        let mut got = Vec::new();
        for _ in 0..10_000 {
            pump.pass(&mut front, &mut tap);
            back.process_tx(64, clock::now(), &mut |f| got.push(f.to_vec()))
                .unwrap();
            if got.len() == frames.len() {
                break;
            }
        }
        assert_eq!(pump.refused, 0);
        assert!(pump.waited > 0, "the ring never filled");
        assert_eq!(got.len(), frames.len(), "frames lost");
        assert!(got == frames, "frames reordered or damaged");
    }
}

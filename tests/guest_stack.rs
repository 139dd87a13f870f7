//! The guest's IP stack answers ping, echo and HTTP, and can ping and connect out:
//! two stacks joined by an in-memory wire, each in its own thread.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::time::Instant;
use smoltcp::wire::{Ipv4Address, Ipv4Cidr};
use xennet_dom0::stack::{GuestStack, ECHO_PORT, HTTP_PORT};

type Queue = Arc<Mutex<VecDeque<Vec<u8>>>>;

/// One end of an in-memory Ethernet wire.
struct WireEnd {
    rx: Queue,
    tx: Queue,
}

struct Rx(Vec<u8>);
struct Tx(Queue);

impl RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl TxToken for Tx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.lock().unwrap().push_back(buf);
        r
    }
}

impl Device for WireEnd {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx;

    fn receive(&mut self, _t: Instant) -> Option<(Rx, Tx)> {
        let frame = self.rx.lock().unwrap().pop_front()?;
        Some((Rx(frame), Tx(self.tx.clone())))
    }

    fn transmit(&mut self, _t: Instant) -> Option<Tx> {
        Some(Tx(self.tx.clone()))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

fn wire() -> (WireEnd, WireEnd) {
    let a: Queue = Default::default();
    let b: Queue = Default::default();
    (
        WireEnd {
            rx: a.clone(),
            tx: b.clone(),
        },
        WireEnd { rx: b, tx: a },
    )
}

fn nap(d: Duration) {
    std::thread::sleep(d.min(Duration::from_millis(1)));
}

#[test]
fn guest_stack_answers_ping_echo_and_http_and_connects_out() {
    let (end_a, end_b) = wire();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_b = stop.clone();
    let server = std::thread::spawn(move || {
        let cidr = Ipv4Cidr::new(Ipv4Address::new(10, 0, 0, 2), 24);
        let mut b = GuestStack::new(
            end_b,
            [0x00, 0x16, 0x3e, 0, 0, 2],
            cidr,
            None,
            "hello from domU 2",
        );
        while !stop_b.load(Ordering::Relaxed) {
            b.serve_for(Duration::from_millis(20), &mut nap);
        }
    });

    let cidr = Ipv4Cidr::new(Ipv4Address::new(10, 0, 0, 1), 24);
    let mut a = GuestStack::new(
        end_a,
        [0x00, 0x16, 0x3e, 0, 0, 1],
        cidr,
        None,
        "hello from domU 1",
    );
    let peer = Ipv4Address::new(10, 0, 0, 2);

    let ping = a.ping(
        peer,
        3,
        Duration::from_millis(50),
        Duration::from_secs(10),
        &mut nap,
    );
    assert_eq!((ping.transmitted, ping.received), (3, 3), "{ping}");
    assert!(
        ping.to_string()
            .contains("3 packets transmitted, 3 received, 0% packet loss"),
        "{ping}"
    );

    let payload: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    let echoed = a
        .tcp_exchange(
            peer,
            ECHO_PORT,
            &payload,
            false,
            Duration::from_secs(20),
            &mut nap,
        )
        .unwrap();
    assert_eq!(echoed, payload);

    let page = a
        .tcp_exchange(
            peer,
            HTTP_PORT,
            b"GET / HTTP/1.0\r\n\r\n",
            true,
            Duration::from_secs(20),
            &mut nap,
        )
        .unwrap();
    let page = String::from_utf8_lossy(&page);
    assert!(page.starts_with("HTTP/1.0 200 OK"), "{page}");
    assert!(page.contains("hello from domU 2"), "{page}");

    let lost = a.ping(
        Ipv4Address::new(10, 0, 0, 99),
        2,
        Duration::from_millis(20),
        Duration::from_millis(200),
        &mut nap,
    );
    assert_eq!(lost.received, 0);
    assert!(
        lost.to_string()
            .contains("2 packets transmitted, 0 received, 100% packet loss"),
        "{lost}"
    );

    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
}

/// The ARP requests among `frames`, as the addresses asked for.
fn arp_targets(frames: &VecDeque<Vec<u8>>) -> Vec<Ipv4Address> {
    use smoltcp::wire::{ArpPacket, ArpRepr, EthernetFrame, EthernetProtocol};
    frames
        .iter()
        .filter_map(|f| {
            let eth = EthernetFrame::new_checked(&f[..]).ok()?;
            if eth.ethertype() != EthernetProtocol::Arp {
                return None;
            }
            match ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).ok()?).ok()? {
                ArpRepr::EthernetIpv4 {
                    target_protocol_addr,
                    ..
                } => Some(target_protocol_addr),
                _ => None,
            }
        })
        .collect()
}

#[test]
fn a_second_neighbour_is_asked_for_at_once_not_after_the_first_arp_goes_quiet() {
    // Nobody answers: what matters is what the stack sends. smoltcp on its own sends no
    // ARP request for a second after any other one, whatever address it was for.
    let (end_a, end_b) = wire();
    let cidr = Ipv4Cidr::new(Ipv4Address::new(10, 0, 0, 1), 24);
    let mut a = GuestStack::new(end_a, [0x00, 0x16, 0x3e, 0, 0, 1], cidr, None, "a");
    let (first, second) = (Ipv4Address::new(10, 0, 0, 9), Ipv4Address::new(10, 0, 0, 2));
    let short = Duration::from_millis(30);
    a.ping(first, 1, short, short, &mut nap);
    a.ping(second, 1, short, short, &mut nap);
    let asked = arp_targets(&end_b.rx.lock().unwrap());
    assert!(asked.contains(&first), "asked for {asked:?}");
    assert!(asked.contains(&second), "asked for {asked:?}");
}

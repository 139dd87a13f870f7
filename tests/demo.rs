//! The demo end to end, in each mode: guests' frames go through netfront, the shared
//! rings, netback and the switch to the simulated remote host and back.

use xennet::demo::{run, DemoOptions};
use xennet_switch::Mode;

fn opts(mode: Mode, proxy_arp: bool) -> DemoOptions {
    DemoOptions {
        mode,
        proxy_arp,
        count: 3,
        ..DemoOptions::default()
    }
}

#[test]
fn bridge_mode_guests_reach_the_remote_host_and_each_other() {
    let r = run(&opts(Mode::Bridge, true)).unwrap();
    // smoltcp may drop the first echo while it resolves ARP; later ones must arrive.
    assert!(r.remote_pings[0].1 >= 2, "{}", r.text);
    assert!(r.guest_pings.unwrap().1 >= 2, "{}", r.text);
    assert!(r.tcp_echo_ok, "{}", r.text);
    assert!(r.text.contains("xenbr0\t\t8000.feffffffffff"), "{}", r.text);
}

#[test]
fn route_mode_needs_proxy_arp_for_the_remote_host() {
    let on = run(&opts(Mode::Route, true)).unwrap();
    assert!(on.remote_pings[0].1 >= 2, "{}", on.text);
    let off = run(&opts(Mode::Route, false)).unwrap();
    assert_eq!(off.remote_pings[0].1, 0, "{}", off.text);
}

#[test]
fn nat_mode_guests_reach_the_remote_host_from_a_private_subnet() {
    let r = run(&opts(Mode::Nat, true)).unwrap();
    assert!(r.remote_pings[0].1 >= 2, "{}", r.text);
    assert!(r.tcp_echo_ok, "{}", r.text);
}

//! Per-port counters: every frame is either delivered or dropped with a reason.

use core::fmt;

/// Why the fabric dropped a frame. Counted on the port the frame came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than its headers claim, bad IPv4 header checksum, unparsable ARP.
    Malformed,
    /// Source MAC multicast or zero, IPv4 source multicast/broadcast (martian), or an
    /// IPv4 source a vif may not use: not among its addresses (`ip=`; NAT: also
    /// vif-nat's default), as Xen's vif scripts' antispoofing rules drop it.
    BadSource,
    /// Never forwarded by policy: 802.1D link-local groups, frames addressed to the
    /// bridge device itself, IPv4 multicast in route mode.
    Filtered,
    /// Unicast to a MAC learned on the very port it came in on (no hairpin).
    Hairpin,
    /// Flooding found no port other than the ingress one.
    NoEgress,
    /// Route/NAT mode: unicast frame addressed to another host's MAC.
    NotForUs,
    /// Route/NAT mode: neither IPv4 nor ARP.
    Unsupported,
    /// Route/NAT mode: no route to the destination (ICMP unreachable sent).
    NoRoute,
    /// Route/NAT mode: TTL would reach zero (ICMP time exceeded sent).
    TtlExceeded,
    /// Route/NAT mode: `ip_forward` is off.
    ForwardingDisabled,
    /// Route/NAT mode: the next hop never answered ARP (ICMP host unreachable sent).
    ArpTimeout,
    /// Route/NAT mode: the queue of packets waiting for ARP resolution is full.
    QueueFull,
    /// Route/NAT mode: addressed to the router, but nothing there handles it.
    NoListener,
    /// NAT: protocol or packet shape that cannot be translated (fragments, ICMP
    /// other than echo).
    NatUnsupported,
    /// NAT: inbound packet that matches no connection.
    NatNoMapping,
    /// NAT: no free external port/id or the connection table is full.
    NatExhausted,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 16] = [
        DropReason::Malformed,
        DropReason::BadSource,
        DropReason::Filtered,
        DropReason::Hairpin,
        DropReason::NoEgress,
        DropReason::NotForUs,
        DropReason::Unsupported,
        DropReason::NoRoute,
        DropReason::TtlExceeded,
        DropReason::ForwardingDisabled,
        DropReason::ArpTimeout,
        DropReason::QueueFull,
        DropReason::NoListener,
        DropReason::NatUnsupported,
        DropReason::NatNoMapping,
        DropReason::NatExhausted,
    ];

    /// Index of this reason in [`PortCounters::drops`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Short snake_case name, for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::BadSource => "bad_source",
            DropReason::Filtered => "filtered",
            DropReason::Hairpin => "hairpin",
            DropReason::NoEgress => "no_egress",
            DropReason::NotForUs => "not_for_us",
            DropReason::Unsupported => "unsupported",
            DropReason::NoRoute => "no_route",
            DropReason::TtlExceeded => "ttl_exceeded",
            DropReason::ForwardingDisabled => "forwarding_disabled",
            DropReason::ArpTimeout => "arp_timeout",
            DropReason::QueueFull => "queue_full",
            DropReason::NoListener => "no_listener",
            DropReason::NatUnsupported => "nat_unsupported",
            DropReason::NatNoMapping => "nat_no_mapping",
            DropReason::NatExhausted => "nat_exhausted",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counters of one port. "rx" is into the fabric from the port, "tx" out to it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortCounters {
    /// Frames received from the port.
    pub rx_packets: u64,
    /// Bytes received from the port.
    pub rx_bytes: u64,
    /// Frames sent to the port.
    pub tx_packets: u64,
    /// Bytes sent to the port.
    pub tx_bytes: u64,
    /// Frames from this port that were flooded because their unicast destination was
    /// unknown.
    pub unknown_unicast_flooded: u64,
    /// Frames from this port dropped, by [`DropReason::index`].
    pub drops: [u64; DropReason::ALL.len()],
}

impl PortCounters {
    /// Drops for one reason.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// Drops for all reasons.
    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_index_their_own_slot() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r}");
        }
    }
}

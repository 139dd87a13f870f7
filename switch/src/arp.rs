//! The router's neighbour table: an ARP cache per interface, and a bounded queue of
//! packets waiting for a next hop to be resolved.
//!
//! Resolution follows Linux's defaults in spirit: a request is sent at once, repeated
//! every second, and after [`ArpConfig::max_probes`] unanswered requests the waiting
//! packets are given back to the router to be dropped (with ICMP host unreachable).
//! Both the cache and the pending set are bounded, so neither peers nor guests can make
//! the driver domain hoard memory.

use std::collections::{BTreeMap, HashMap, VecDeque};

use xennet_ring::time::{Duration, Instant};

use super::PortId;
use crate::wire::{Ipv4Address, MacAddr};

/// Neighbour-table settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArpConfig {
    /// How long a resolved entry is used before it must be resolved again.
    pub reachable: Duration,
    /// Interval between requests for an unresolved address.
    pub retry: Duration,
    /// Requests sent before giving up.
    pub max_probes: u8,
    /// Packets queued per unresolved address.
    pub queue_per_neighbour: usize,
    /// Most unresolved addresses at once.
    pub max_pending: usize,
    /// Most cache entries.
    pub max_entries: usize,
}

impl Default for ArpConfig {
    fn default() -> Self {
        ArpConfig {
            reachable: Duration::from_secs(60),
            retry: Duration::from_secs(1),
            max_probes: 3,
            queue_per_neighbour: 8,
            max_pending: 256,
            max_entries: 1024,
        }
    }
}

/// A packet waiting for its next hop: the IPv4 packet as it will be sent, and the
/// port it came in on (to count it there if it is dropped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// The IPv4 packet.
    pub packet: Vec<u8>,
    /// Where it entered the fabric, or `None` if the router originated it.
    pub origin: Option<PortId>,
}

#[derive(Debug)]
struct Pending {
    queue: VecDeque<Waiting>,
    probes: u8,
    next_probe: Instant,
}

/// What [`NeighbourTable::enqueue`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Enqueued {
    /// Queued; the caller must send the first ARP request now.
    FirstProbe,
    /// Queued behind an earlier packet; a request is already on its way.
    Queued,
    /// The queue for that address, or the pending set, is full: the packet is returned.
    Full(Waiting),
}

/// What a timer pass produced.
#[derive(Debug, Default)]
pub struct Expired {
    /// Addresses to probe again: (interface, address).
    pub reprobe: Vec<(PortId, Ipv4Address)>,
    /// Packets whose next hop never answered.
    pub failed: Vec<Waiting>,
}

/// The ARP cache and pending queues.
#[derive(Debug, Default)]
pub struct NeighbourTable {
    cfg: ArpConfig,
    cache: HashMap<(PortId, Ipv4Address), (MacAddr, Instant)>,
    pending: BTreeMap<(PortId, Ipv4Address), Pending>,
}

impl NeighbourTable {
    /// An empty table.
    pub fn new(cfg: ArpConfig) -> Self {
        NeighbourTable {
            cfg,
            cache: HashMap::new(),
            pending: BTreeMap::new(),
        }
    }

    /// The MAC of `ip` on interface `port`, if resolved and fresh.
    pub fn lookup(&self, port: PortId, ip: Ipv4Address, now: Instant) -> Option<MacAddr> {
        self.cache
            .get(&(port, ip))
            .filter(|(_, t)| now < *t + self.cfg.reachable)
            .map(|(m, _)| *m)
    }

    /// True if an entry (fresh or stale) exists, which lets any ARP packet refresh it.
    pub fn known(&self, port: PortId, ip: Ipv4Address) -> bool {
        self.cache.contains_key(&(port, ip)) || self.pending.contains_key(&(port, ip))
    }

    /// Records `ip` at `mac` on `port`; returns the packets that were waiting for it.
    pub fn insert(
        &mut self,
        port: PortId,
        ip: Ipv4Address,
        mac: MacAddr,
        now: Instant,
    ) -> Vec<Waiting> {
        if !self.cache.contains_key(&(port, ip)) && self.cache.len() >= self.cfg.max_entries {
            let reachable = self.cfg.reachable;
            self.cache.retain(|_, (_, t)| now < *t + reachable);
        }
        if self.cache.contains_key(&(port, ip)) || self.cache.len() < self.cfg.max_entries {
            self.cache.insert((port, ip), (mac, now));
        }
        self.pending
            .remove(&(port, ip))
            .map(|p| p.queue.into_iter().collect())
            .unwrap_or_default()
    }

    /// Queues a packet for `ip` on `port`.
    pub fn enqueue(&mut self, port: PortId, ip: Ipv4Address, w: Waiting, now: Instant) -> Enqueued {
        if let Some(p) = self.pending.get_mut(&(port, ip)) {
            if p.queue.len() >= self.cfg.queue_per_neighbour {
                return Enqueued::Full(w);
            }
            p.queue.push_back(w);
            return Enqueued::Queued;
        }
        if self.pending.len() >= self.cfg.max_pending {
            return Enqueued::Full(w);
        }
        let mut queue = VecDeque::new();
        queue.push_back(w);
        self.pending.insert(
            (port, ip),
            Pending {
                queue,
                probes: 1,
                next_probe: now + self.cfg.retry,
            },
        );
        Enqueued::FirstProbe
    }

    /// Forgets everything about an interface; returns the packets that were waiting.
    pub fn port_removed(&mut self, port: PortId) -> Vec<Waiting> {
        self.cache.retain(|(p, _), _| *p != port);
        let keys: Vec<_> = self
            .pending
            .keys()
            .filter(|(p, _)| *p == port)
            .copied()
            .collect();
        keys.into_iter()
            .filter_map(|k| self.pending.remove(&k))
            .flat_map(|p| p.queue)
            .collect()
    }

    /// Timer pass: which addresses to probe again, which packets to give up on.
    pub fn poll(&mut self, now: Instant) -> Expired {
        let mut ex = Expired::default();
        let max = self.cfg.max_probes;
        let retry = self.cfg.retry;
        let mut dead = Vec::new();
        for (key, p) in self.pending.iter_mut() {
            if now < p.next_probe {
                continue;
            }
            if p.probes >= max {
                dead.push(*key);
            } else {
                p.probes += 1;
                p.next_probe = now + retry;
                ex.reprobe.push(*key);
            }
        }
        for key in dead {
            if let Some(p) = self.pending.remove(&key) {
                ex.failed.extend(p.queue);
            }
        }
        let reachable = self.cfg.reachable;
        self.cache
            .retain(|_, (_, t)| now < *t + reachable + reachable);
        ex
    }

    /// When the next probe or give-up is due.
    pub fn poll_at(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.next_probe).min()
    }

    /// Number of addresses being resolved.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
    const MAC: MacAddr = MacAddr([0, 0x16, 0x3e, 0, 0, 1]);

    fn w(n: u8) -> Waiting {
        Waiting {
            packet: vec![n],
            origin: None,
        }
    }

    #[test]
    fn first_packet_asks_for_a_probe_and_resolution_releases_the_queue() {
        let mut t = NeighbourTable::new(ArpConfig::default());
        let now = Instant::from_secs(1);
        assert_eq!(t.enqueue(PortId(1), IP, w(1), now), Enqueued::FirstProbe);
        assert_eq!(t.enqueue(PortId(1), IP, w(2), now), Enqueued::Queued);
        let released = t.insert(PortId(1), IP, MAC, now);
        assert_eq!(released, vec![w(1), w(2)]);
        assert_eq!(t.lookup(PortId(1), IP, now), Some(MAC));
        assert_eq!(t.lookup(PortId(2), IP, now), None);
        assert_eq!(t.lookup(PortId(1), IP, now + Duration::from_secs(61)), None);
    }

    #[test]
    fn unanswered_address_is_reprobed_then_given_up() {
        let mut t = NeighbourTable::new(ArpConfig::default());
        let mut now = Instant::from_secs(0);
        t.enqueue(PortId(1), IP, w(1), now);
        for _ in 0..2 {
            now += Duration::from_secs(1);
            let ex = t.poll(now);
            assert_eq!(ex.reprobe, vec![(PortId(1), IP)]);
            assert!(ex.failed.is_empty());
        }
        now += Duration::from_secs(1);
        let ex = t.poll(now);
        assert!(ex.reprobe.is_empty());
        assert_eq!(ex.failed, vec![w(1)]);
        assert_eq!(t.pending_len(), 0);
    }

    #[test]
    fn queue_per_neighbour_is_bounded() {
        let cfg = ArpConfig {
            queue_per_neighbour: 2,
            ..ArpConfig::default()
        };
        let mut t = NeighbourTable::new(cfg);
        let now = Instant::ZERO;
        t.enqueue(PortId(1), IP, w(1), now);
        t.enqueue(PortId(1), IP, w(2), now);
        assert_eq!(t.enqueue(PortId(1), IP, w(3), now), Enqueued::Full(w(3)));
    }
}

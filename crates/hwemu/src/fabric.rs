//! Spike packets crossing a chip fabric: per-hop latency, link serialisation,
//! finite output buffers with queueing, drops, SpiNNaker-style emergency routing,
//! multicast trees. Deterministic: the same packets give the same deliveries.
//!
//! Model (virtual cut-through): a packet's head crosses a hop in
//! `hop_latency_ns`; a link is busy for the serialisation time `packet_bits /
//! bandwidth` per packet; a packet that finds its output link busy waits in that
//! link's buffer, and if `buffer_packets` packets already wait there it is
//! blocked: rerouted around the triangle on a triangular torus with emergency
//! routing, else dropped. A packet is delivered when its tail has arrived:
//! zero-load latency = hops × hop_latency + serialisation.

use crate::router::RouterNet;
use crate::topology::{Chip, Dir, Kind, Topology};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// Timing of the links and routers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkModel {
    /// Head latency per hop (router pipeline and wire), ns: east–west (and the
    /// triangular torus's diagonals).
    pub hop_latency_ns: f64,
    /// The same for north–south hops.
    pub hop_latency_y_ns: f64,
    /// Bits per spike packet.
    pub packet_bits: f64,
    /// Link bandwidth, bits per ns (Gbit/s).
    pub bandwidth_bits_per_ns: f64,
    /// Packets that may wait for one output link.
    pub buffer_packets: u32,
    /// Reroute blocked packets around the triangle (triangular torus only).
    pub emergency_routing: bool,
}

impl LinkModel {
    /// Time one packet occupies a link, ns.
    pub fn serialisation_ns(&self) -> f64 {
        self.packet_bits / self.bandwidth_bits_per_ns
    }

    /// Head latency of a hop in direction `d`, ns.
    pub fn hop_ns(&self, d: Dir) -> f64 {
        if d.is_vertical() {
            self.hop_latency_y_ns
        } else {
            self.hop_latency_ns
        }
    }

    /// Zero-load latency along `route`: its hops' latencies plus serialisation, ns.
    pub fn zero_load_ns(&self, route: &[Dir]) -> f64 {
        route.iter().map(|&d| self.hop_ns(d)).sum::<f64>() + self.serialisation_ns()
    }
}

/// A spike packet: one source chip, one or more destination chips (multicast).
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// Where it is injected.
    pub src: Chip,
    /// Destination chips (sorted, without repeats).
    pub dests: Vec<Chip>,
    /// Injection time, ns.
    pub t_ns: f64,
}

/// One packet reaching one destination chip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Delivery {
    /// Index into the packets given to [`simulate`].
    pub packet: usize,
    /// The destination chip.
    pub dst: Chip,
    /// Arrival of the tail, ns.
    pub t_ns: f64,
    /// Links crossed to get there.
    pub hops: u32,
}

/// What a batch of packets did in the fabric.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Deliveries, in the order they happened (ties by packet, then chip).
    pub deliveries: Vec<Delivery>,
    /// (packet, destination) pairs that were dropped.
    pub dropped: Vec<(usize, Chip)>,
    /// Busy time per link id, ns.
    pub link_busy_ns: Vec<f64>,
    /// Packets per link id.
    pub link_packets: Vec<u64>,
    /// Link traversals in all (energy per hop is charged on these).
    pub traversals: u64,
    /// Packets sent around a blocked link.
    pub emergency_reroutes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Event {
    /// Time in picoseconds (integer: a total order, and exact sums of ns values with
    /// up to three decimals).
    t_ps: i64,
    packet: usize,
    chip: Chip,
    hops: u32,
    /// A forced next direction (second leg of an emergency route).
    forced: Option<Dir>,
    dests: Vec<Chip>,
}

fn ps(ns: f64) -> i64 {
    (ns * 1000.0).round() as i64
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Links {
    free_ps: Vec<i64>,
    starts: Vec<VecDeque<i64>>,
}

impl Links {
    /// Packets waiting for `link` at time `t` (scheduled to start later).
    fn waiting(&mut self, link: usize, t: i64) -> usize {
        let q = &mut self.starts[link];
        while q.front().is_some_and(|&s| s <= t) {
            q.pop_front();
        }
        q.len()
    }

    /// Reserve `link` for a packet whose head is there at `t`; returns when it starts.
    fn reserve(&mut self, link: usize, t: i64, ser: i64, out: &mut Outcome) -> i64 {
        let start = t.max(self.free_ps[link]);
        self.free_ps[link] = start + ser;
        self.starts[link].push_back(start);
        out.link_busy_ns[link] += ser as f64 / 1000.0;
        out.link_packets[link] += 1;
        out.traversals += 1;
        start
    }
}

/// The core-level routers of hierarchical chips (DYNAP-SE): between a chip's
/// mesh router and its cores, one router per chip forwards every (packet, core)
/// delivery to a core other than the sender's, one after the other: each takes the
/// router's latency and occupies it for one serialisation time, so deliveries that
/// meet there queue. Fed in time order (per chip), it keeps its state between
/// batches like [`Fabric`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CoreRouters {
    free_ps: Vec<i64>,
    latency_ps: i64,
    ser_ps: i64,
}

impl CoreRouters {
    /// Idle routers for `chips` chips.
    pub fn new(chips: usize, latency_ns: f64, ser_ns: f64) -> CoreRouters {
        CoreRouters { free_ps: vec![i64::MIN; chips], latency_ps: ps(latency_ns), ser_ps: ps(ser_ns) }
    }

    /// A delivery that reaches `chip`'s core-level router at `t_ns`: when it reaches
    /// the core, ns.
    pub fn pass(&mut self, chip: usize, t_ns: f64) -> f64 {
        let start = ps(t_ns).max(self.free_ps[chip]);
        self.free_ps[chip] = start + self.ser_ps;
        (start + self.latency_ps) as f64 / 1000.0
    }
}

/// The interconnect of a preset: the fast model or the wormhole routers.
#[derive(Debug, Clone)]
pub enum Interconnect {
    /// Virtual cut-through with per-link packet buffers (this module).
    Fast(Fabric),
    /// Virtual-channel wormhole routers with credits ([`crate::router`]).
    Wormhole(Box<RouterNet>),
}

impl Interconnect {
    /// Send a batch (injected no earlier than the previous batch's).
    pub fn send(&mut self, packets: &[Packet]) -> Outcome {
        match self {
            Interconnect::Fast(f) => f.send(packets),
            Interconnect::Wormhole(r) => r.send(packets),
        }
    }

    /// Zero-load latency of one packet along `route`, ns.
    pub fn zero_load_ns(&self, route: &[Dir]) -> f64 {
        match self {
            Interconnect::Fast(f) => f.model.zero_load_ns(route),
            Interconnect::Wormhole(r) => r.model().zero_load_cycles(route) as f64 * r.model().cycle_ns,
        }
    }

    /// Time one packet occupies a link, ns (link capacity is its inverse).
    pub fn packet_time_ns(&self) -> f64 {
        match self {
            Interconnect::Fast(f) => f.model.serialisation_ns(),
            Interconnect::Wormhole(r) => r.model().packet_flits as f64 * r.model().cycle_ns,
        }
    }

    /// Whether a torus target half way round a ring is reached either way (the
    /// wormhole routers split ties by packet; the fast model goes the positive way):
    /// what [`crate::traffic::max_channel_load`] must assume.
    pub fn splits_ties(&self) -> bool {
        matches!(self, Interconnect::Wormhole(_))
    }

    /// `fast` or `wormhole`.
    pub fn name(&self) -> &'static str {
        match self {
            Interconnect::Fast(_) => "fast",
            Interconnect::Wormhole(_) => "wormhole",
        }
    }

    /// Its dynamic state, for checkpoints.
    pub fn save(&self) -> Vec<u8> {
        match self {
            Interconnect::Fast(f) => f.save_links(),
            Interconnect::Wormhole(r) => r.save(),
        }
    }

    /// Restore [`Interconnect::save`] of the same fabric.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        match self {
            Interconnect::Fast(f) => f.restore_links(bytes),
            Interconnect::Wormhole(r) => r.restore(bytes),
        }
    }
}

/// Send `packets` through an idle fabric.
pub fn simulate(topo: &Topology, model: &LinkModel, packets: &[Packet]) -> Outcome {
    Fabric::new(*topo, *model).send(packets)
}

/// A fabric whose links stay busy between batches of packets (for running
/// alongside a simulation, one epoch's spikes at a time, in time order).
#[derive(Debug, Clone)]
pub struct Fabric {
    topo: Topology,
    model: LinkModel,
    links: Links,
}

impl Fabric {
    /// An idle fabric.
    pub fn new(topo: Topology, model: LinkModel) -> Fabric {
        let n_links = topo.link_ids();
        let links = Links { free_ps: vec![i64::MIN; n_links], starts: vec![VecDeque::new(); n_links] };
        Fabric { topo, model, links }
    }

    /// The links' state (busy-until times and queued starts), for checkpoints.
    pub fn save_links(&self) -> Vec<u8> {
        postcard::to_allocvec(&self.links).unwrap_or_default()
    }

    /// Restore the links' state saved by [`Fabric::save_links`] from a fabric of the
    /// same topology.
    pub fn restore_links(&mut self, bytes: &[u8]) -> Result<(), String> {
        let links: Links = postcard::from_bytes(bytes).map_err(|e| format!("fabric state: {e}"))?;
        if links.free_ps.len() != self.links.free_ps.len() || links.starts.len() != self.links.starts.len() {
            return Err("fabric state: saved for a fabric with a different number of links".into());
        }
        self.links = links;
        Ok(())
    }

    /// Send a batch of packets (injected no earlier than the previous batch's).
    pub fn send(&mut self, packets: &[Packet]) -> Outcome {
        send(&self.topo, &self.model, &mut self.links, packets)
    }
}

fn send(topo: &Topology, model: &LinkModel, links: &mut Links, packets: &[Packet]) -> Outcome {
    let n_links = topo.link_ids();
    let mut out = Outcome { link_busy_ns: vec![0.0; n_links], link_packets: vec![0; n_links], ..Default::default() };
    let ser = ps(model.serialisation_ns());
    let hop = |d: Dir| ps(model.hop_ns(d));
    let buffer = model.buffer_packets as usize;
    let emergency = model.emergency_routing && topo.kind == Kind::TriangularTorus;
    let mut queue: BinaryHeap<Reverse<Event>> = packets
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Reverse(Event { t_ps: ps(p.t_ns), packet: i, chip: p.src, hops: 0, forced: None, dests: p.dests.clone() })
        })
        .collect();
    while let Some(Reverse(ev)) = queue.pop() {
        // Split the remaining destinations by the next link (a tree from any source).
        let mut groups: Vec<(Dir, Vec<Chip>)> = Vec::new();
        for &d in &ev.dests {
            let next = match ev.forced {
                Some(f) => f,
                None if d == ev.chip => {
                    let t_ns = (ev.t_ps + ser) as f64 / 1000.0;
                    out.deliveries.push(Delivery { packet: ev.packet, dst: d, t_ns, hops: ev.hops });
                    continue;
                }
                None => topo.route(ev.chip, d)[0],
            };
            match groups.iter_mut().find(|(dir, _)| *dir == next) {
                Some((_, g)) => g.push(d),
                None => groups.push((next, vec![d])),
            }
        }
        for (dir, dests) in groups {
            let link = topo.link(ev.chip, dir);
            let Some(next_chip) = topo.neighbour(ev.chip, dir) else {
                out.dropped.extend(dests.iter().map(|&d| (ev.packet, d)));
                continue;
            };
            if links.waiting(link, ev.t_ps) < buffer {
                let start = links.reserve(link, ev.t_ps, ser, &mut out);
                let (packet, hops) = (ev.packet, ev.hops + 1);
                queue.push(Reverse(Event {
                    t_ps: start + hop(dir),
                    packet,
                    chip: next_chip,
                    hops,
                    forced: None,
                    dests,
                }));
                continue;
            }
            // Blocked.
            let (a, b) = dir.emergency();
            let detour = topo.link(ev.chip, a);
            if emergency && ev.forced.is_none() && links.waiting(detour, ev.t_ps) < buffer {
                if let Some(via) = topo.neighbour(ev.chip, a) {
                    out.emergency_reroutes += 1;
                    let start = links.reserve(detour, ev.t_ps, ser, &mut out);
                    let (packet, hops) = (ev.packet, ev.hops + 1);
                    queue.push(Reverse(Event {
                        t_ps: start + hop(a),
                        packet,
                        chip: via,
                        hops,
                        forced: Some(b),
                        dests,
                    }));
                    continue;
                }
            }
            out.dropped.extend(dests.iter().map(|&d| (ev.packet, d)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> LinkModel {
        LinkModel {
            hop_latency_ns: 4.1,
            hop_latency_y_ns: 4.1,
            packet_bits: 32.0,
            bandwidth_bits_per_ns: 8.0,
            buffer_packets: 16,
            emergency_routing: false,
        }
    }

    #[test]
    fn zero_load_latency_is_hops_times_hop_latency_plus_serialisation() {
        let m = model();
        for kind in [Kind::Mesh, Kind::Torus, Kind::TriangularTorus] {
            let topo = Topology { kind, width: 6, height: 5 };
            for src in 0..topo.chips() {
                for dst in 0..topo.chips() {
                    // One packet alone in the fabric.
                    let out = simulate(&topo, &m, &[Packet { src, dests: vec![dst], t_ns: 10.0 }]);
                    assert_eq!(out.deliveries.len(), 1);
                    let d = out.deliveries[0];
                    let hops = topo.hops(src, dst);
                    assert_eq!(d.hops as usize, hops);
                    let expected = hops as f64 * m.hop_latency_ns + m.serialisation_ns();
                    assert_eq!(ps(m.zero_load_ns(&topo.route(src, dst))), ps(expected));
                    assert_eq!(ps(d.t_ns - 10.0), ps(expected), "{kind:?} {src}->{dst}");
                }
            }
        }
    }

    #[test]
    fn contention_queues_and_full_buffers_drop() {
        let topo = Topology { kind: Kind::Mesh, width: 3, height: 1 };
        let mut m = model();
        m.buffer_packets = 2;
        // Five packets at once over the same first link: one goes, two wait, two drop.
        let packets: Vec<Packet> = (0..5).map(|_| Packet { src: 0, dests: vec![2], t_ns: 0.0 }).collect();
        let out = simulate(&topo, &m, &packets);
        assert_eq!(out.deliveries.len(), 3);
        assert_eq!(out.dropped.len(), 2);
        let ser = m.serialisation_ns();
        let mut t: Vec<f64> = out.deliveries.iter().map(|d| d.t_ns).collect();
        t.sort_by(f64::total_cmp);
        for (k, &tk) in t.iter().enumerate() {
            assert_eq!(ps(tk), ps(2.0 * m.hop_latency_ns + ser + k as f64 * ser), "packet {k}");
        }
    }

    #[test]
    fn emergency_routing_goes_around_the_triangle() {
        let topo = Topology { kind: Kind::TriangularTorus, width: 4, height: 4 };
        let mut m = model();
        m.buffer_packets = 1;
        m.emergency_routing = true;
        let packets: Vec<Packet> = (0..3).map(|_| Packet { src: 0, dests: vec![1], t_ns: 0.0 }).collect();
        let out = simulate(&topo, &m, &packets);
        assert_eq!(out.deliveries.len(), 3, "{out:?}");
        assert_eq!(out.emergency_reroutes, 1);
        assert_eq!(out.deliveries.iter().map(|d| d.hops).max(), Some(2));
        assert!(out.dropped.is_empty());
    }

    #[test]
    fn multicast_shares_the_tree() {
        let topo = Topology { kind: Kind::Mesh, width: 4, height: 4 };
        let m = model();
        let dests: Vec<Chip> = vec![3, 7, 15];
        let out = simulate(&topo, &m, &[Packet { src: 0, dests: dests.clone(), t_ns: 0.0 }]);
        assert_eq!(out.deliveries.len(), 3);
        // XY routes 0->3, 0->7, 0->15 (3, 4 and 6 hops) share the three eastward
        // links and the northward ones: a tree of 6 links instead of 13.
        assert_eq!(out.traversals, 6);
        assert_eq!(out.deliveries.iter().map(|d| d.hops).collect::<Vec<_>>(), vec![3, 4, 6]);
    }
}

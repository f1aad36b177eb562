//! A cycle-level model of input-queued virtual-channel routers with wormhole
//! switching and credit-based flow control (the router of the network-on-chip
//! literature, as BookSim2 models it), for chips whose interconnect is such a
//! network: Loihi's and TrueNorth's meshes, DYNAP-SE's mesh between chips.
//!
//! # Pipeline
//!
//! Time advances in router cycles of `cycle_ns` (the clock period of a clocked
//! router; on an asynchronous fabric, one flit time on a link — the model's
//! quantum). A packet of `F` flits travels from its source node to its
//! destination node like this:
//!
//! 1. **Injection.** The source node keeps an unbounded queue of packets (time
//!    waited there counts in the latency, as in BookSim). It allocates a virtual
//!    channel (VC) of its router's local input port and sends one flit per cycle
//!    while it holds a credit for that VC; each crosses the injection channel in
//!    `injection_cycles`.
//! 2. **Router** (`router_stages` cycles, P): a flit that enters an input VC in
//!    cycle `a` may leave through the crossbar in cycle `a + P` at the earliest —
//!    route computation, VC allocation and switch allocation, switch traversal.
//!    A head flit at the front of its VC computes its output port (dimension
//!    order) and is allocated a free VC of the next router's input port (VC
//!    allocation; on a torus only VCs of its dateline class); every flit then
//!    needs a credit for that VC (a free flit slot downstream) and the crossbar:
//!    each output port passes one flit per cycle, each input port sends one
//!    (separable allocation, output first, round-robin priorities).
//! 3. **Link** (`link_cycles_x` east–west, `link_cycles_y` north–south). When a
//!    flit leaves an input VC a credit returns upstream, arriving
//!    `credit_cycles` later. A VC is free for another packet once its tail flit
//!    has left (BookSim's default, `wait_for_tail_credit = 0`: an input VC may
//!    hold the tail of one packet and the head of the next), or, with
//!    `wait_for_tail_credit`, once its last credit is back as well.
//! 4. **Ejection** (`ejection_cycles`): the destination router's local output
//!    port, into a node that always accepts. The packet is delivered when its
//!    tail reaches the node.
//!
//! Zero-load latency (an idle network, buffers of at least
//! `max(link, injection) + router_stages + credit_cycles` flits so a packet
//! streams one flit per cycle) is therefore, for a route of `H` hops,
//!
//! ```text
//! T0 = injection + (H + 1)·router_stages + Σ link(hop) + ejection + (F − 1)   cycles
//! ```
//!
//! ([`RouterModel::zero_load_cycles`]; a test checks it for every pair).
//! Congestion spreads upstream: a full VC buffer withholds credits, the upstream
//! router stops sending, its buffers fill, and so on back to the source queue.
//! Nothing is dropped.
//!
//! Multicast: the source node sends one unicast packet per destination router,
//! one after the other (as Loihi's cores send a spike message per destination
//! core); the fast model ([`crate::fabric`]) replicates inside the routers.
//!
//! Deadlock freedom: dimension-order routing on a mesh; on a torus (where a
//! target half way round a ring is reached either way, taken by the packet's
//! index bits, balanced as BookSim's coin flip) the VCs are split into two classes and a packet moves to the upper class after crossing
//! the wrap-around link of a dimension (the dateline), back to the lower class
//! when it turns. SpiNNaker's triangular torus is not a wormhole network (its
//! routers drop and re-route single packets): the fast model covers it.

use crate::fabric::{Delivery, Outcome, Packet};
use crate::topology::{Chip, Dir, Kind, Topology};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Ports of a router: the six link directions (unused ones stay empty) and the local port.
const PORTS: usize = 7;
/// The local (injection / ejection) port.
const LOCAL: usize = 6;

/// Parameters of the routers and links, in cycles.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RouterModel {
    /// One cycle, ns.
    pub cycle_ns: f64,
    /// Flits per packet (`ceil(packet_bits / flit_bits)`).
    pub packet_flits: u32,
    /// Router pipeline depth P: cycles from a flit's arrival in an input buffer to
    /// its earliest departure through the crossbar.
    pub router_stages: u32,
    /// Cycles to cross an east–west link (and the diagonals).
    pub link_cycles_x: u32,
    /// Cycles to cross a north–south link.
    pub link_cycles_y: u32,
    /// Cycles to cross the injection channel (source node to router).
    pub injection_cycles: u32,
    /// Cycles from the router's local output to the destination node.
    pub ejection_cycles: u32,
    /// Cycles for a credit to reach the upstream router.
    pub credit_cycles: u32,
    /// Virtual channels per input port.
    pub vcs: u32,
    /// Flit buffer of each virtual channel.
    pub vc_buffer_flits: u32,
    /// A VC is reallocated only once the tail has left and every credit is back
    /// (the downstream buffer is empty; BookSim's `wait_for_tail_credit = 1`),
    /// rather than as soon as the tail has left.
    pub wait_for_tail_credit: bool,
}

impl RouterModel {
    /// Why this model cannot run on `topo`, if it cannot (the field and the fix).
    pub fn check(&self, topo: &Topology) -> Result<(), String> {
        if !(self.cycle_ns.is_finite() && self.cycle_ns > 0.0) {
            return Err(format!("cycle_ns: {} is not a time > 0", self.cycle_ns));
        }
        for (name, v, min) in [
            ("packet flits (packet_bits / flit_bits)", self.packet_flits, 1),
            ("router_stages", self.router_stages, 1),
            ("link_cycles_x", self.link_cycles_x, 1),
            ("link_cycles_y", self.link_cycles_y, 1),
            ("injection_cycles", self.injection_cycles, 1),
            ("ejection_cycles", self.ejection_cycles, 1),
            ("credit_cycles", self.credit_cycles, 1),
            ("vcs", self.vcs, 1),
            ("vc_buffer_flits", self.vc_buffer_flits, 1),
        ] {
            if v < min {
                return Err(format!("{name}: {v}; must be at least {min}"));
            }
        }
        for (name, v) in [
            ("packet flits", self.packet_flits),
            ("router_stages", self.router_stages),
            ("link_cycles_x", self.link_cycles_x),
            ("link_cycles_y", self.link_cycles_y),
            ("injection_cycles", self.injection_cycles),
            ("ejection_cycles", self.ejection_cycles),
            ("credit_cycles", self.credit_cycles),
            ("vcs", self.vcs),
            ("vc_buffer_flits", self.vc_buffer_flits),
        ] {
            if v > 1024 {
                return Err(format!("{name}: {v}; at most 1024 in this model"));
            }
        }
        let vc_count = topo.chips() as u64 * PORTS as u64 * self.vcs as u64;
        if vc_count > 1 << 22 {
            return Err(format!(
                "vcs: {} VCs on each of 7 ports of {} routers is {vc_count} buffers, more than this model keeps \
                 (2^22, about 200 MB); model fewer routers or VCs",
                self.vcs,
                topo.chips()
            ));
        }
        match topo.kind {
            Kind::TriangularTorus => Err("router = \"wormhole\" does not model a triangular_torus (SpiNNaker's routers \
                 forward single packets and drop or re-route blocked ones): use router = \"fast\""
                .into()),
            Kind::Torus if self.vcs < 2 => Err(format!(
                "vcs: {} on a torus; wormhole routing around a ring needs at least 2 virtual channels (dateline classes)",
                self.vcs
            )),
            _ => Ok(()),
        }
    }

    /// Cycles to cross the link leaving in direction `d`.
    pub fn link_cycles(&self, d: Dir) -> u32 {
        if d.is_vertical() {
            self.link_cycles_y
        } else {
            self.link_cycles_x
        }
    }

    /// Zero-load latency of one packet along `route` (creation at the source node
    /// to its tail at the destination node), cycles.
    pub fn zero_load_cycles(&self, route: &[Dir]) -> u64 {
        let links: u64 = route.iter().map(|&d| self.link_cycles(d) as u64).sum();
        self.injection_cycles as u64
            + self.ejection_cycles as u64
            + (route.len() as u64 + 1) * self.router_stages as u64
            + links
            + (self.packet_flits as u64 - 1)
    }
}

/// One flit in a buffer.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Flit {
    /// Index into the live packets.
    packet: u32,
    head: bool,
    tail: bool,
    /// Earliest cycle it may leave the router it is in.
    ready: u64,
}

/// A packet in the network (one unicast copy of a batch packet).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Live {
    /// Index of the batch packet it is a copy of.
    batch: u32,
    /// Index of this copy in its batch.
    copy: u32,
    dst: Chip,
    created: u64,
    hops: u32,
    /// Torus: the dimension it travels in (0 x, 1 y) and whether it has crossed
    /// that dimension's dateline.
    dim: u8,
    wrapped: bool,
}

/// An event due at a cycle.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum Due {
    /// A flit reaches input VC `vc` (global index).
    Flit { vc: u32, flit: Flit },
    /// A credit reaches output VC `vc` (global index) or, with `source`, the
    /// injecting node of a router.
    Credit { vc: u32, source: bool },
    /// A packet's tail reaches its destination node.
    Delivered { packet: u32 },
}

/// Input VC state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct InVc {
    buf: VecDeque<Flit>,
    /// The output port and output VC allocated to the packet at the front.
    out: Option<(u8, u32)>,
}

/// State of a network of such routers that persists between batches of packets
/// (co-simulation feeds one epoch at a time). Deterministic.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouterNet {
    topo: Topology,
    model: RouterModel,
    /// The current cycle.
    cycle: u64,
    /// Neighbour per (router, direction), `u32::MAX` where there is no link.
    next: Vec<u32>,
    /// Input VCs, `(router * PORTS + port) * vcs + vc`; a flit travelling in
    /// direction d enters input port d of the next router.
    inputs: Vec<InVc>,
    /// Output VCs (same indexing; the local port's are unused).
    out_vcs: VcTable,
    /// Source nodes' view of their router's local input VCs, `router * vcs + vc`.
    src_vcs: VcTable,
    /// Round-robin pointer over the local VCs, per source.
    src_rr: Vec<u32>,
    /// Source queues (live packet indices) and the packet being injected
    /// (packet, vc, flits sent).
    src_queue: Vec<VecDeque<u32>>,
    src_current: Vec<Option<(u32, u32, u32)>>,
    /// Round-robin pointers: VC allocation per router, switch allocation per output port.
    va_rr: Vec<u32>,
    sa_rr: Vec<u32>,
    /// Flits buffered per router.
    buffered: Vec<u32>,
    /// Events by cycle, a ring of `ring.len()` cycles.
    ring: Vec<Vec<Due>>,
    pending: usize,
    /// Switch requests of one router in one cycle (scratch, kept for its capacity).
    #[serde(skip)]
    requests: Vec<(u8, u32)>,
    /// Live packets; free slots.
    live: Vec<Live>,
    free: Vec<u32>,
    /// Packets whose injection time had passed when their batch came (the previous
    /// batch was still draining): injected late.
    pub late_injections: u64,
    /// Batches the network could not deliver (a deadlock, which the routing
    /// here excludes): their undelivered copies were counted as dropped and the
    /// network emptied.
    pub deadlocks: u64,
}

/// A sender's view of the VCs it sends into (a router's output port, a source
/// node's injection channel): credits, and which are allocated to a packet.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct VcTable {
    credits: Vec<u32>,
    allocated: Vec<bool>,
    /// With `wait_for_tail_credit`: the tail has left, the VC is freed when its
    /// last credit is back.
    tail_sent: Vec<bool>,
    /// Credits of an empty VC (its buffer's flits).
    full: u32,
}

impl VcTable {
    fn new(n: usize, full: u32) -> VcTable {
        VcTable { credits: vec![full; n], allocated: vec![false; n], tail_sent: vec![false; n], full }
    }

    fn len(&self) -> usize {
        self.credits.len()
    }

    /// Free, and with room for a flit.
    fn is_open(&self, vc: usize) -> bool {
        !self.allocated[vc] && self.credits[vc] > 0
    }

    /// A credit back; a VC whose tail has left is free once all of them are.
    fn credit(&mut self, vc: usize) {
        self.credits[vc] += 1;
        if self.tail_sent[vc] && self.credits[vc] == self.full {
            self.tail_sent[vc] = false;
            self.allocated[vc] = false;
        }
    }

    /// A flit sent into `vc`; after the tail the VC is free now or, with
    /// `wait_for_tail_credit`, on its last credit.
    fn send(&mut self, vc: usize, tail: bool, wait_for_tail_credit: bool) {
        self.credits[vc] -= 1;
        if tail {
            if wait_for_tail_credit {
                self.tail_sent[vc] = true;
            } else {
                self.allocated[vc] = false;
            }
        }
    }
}

/// Counters of one batch (link statistics).
struct Counts {
    link_flits: Vec<u64>,
    link_packets: Vec<u64>,
    traversals: u64,
}

impl RouterNet {
    /// An idle network. Fails (naming the field) where the model cannot run on `topo`.
    pub fn new(topo: Topology, model: RouterModel) -> Result<RouterNet, String> {
        model.check(&topo)?;
        let n = topo.chips() as usize;
        let v = model.vcs as usize;
        let next = (0..n as u32)
            .flat_map(|c| Dir::ALL.iter().map(move |&d| topo.neighbour(c, d).unwrap_or(u32::MAX)))
            .collect();
        let max_delay = [
            model.link_cycles_x,
            model.link_cycles_y,
            model.injection_cycles,
            model.ejection_cycles,
            model.credit_cycles,
        ]
        .into_iter()
        .max()
        .unwrap_or(1) as usize;
        Ok(RouterNet {
            topo,
            model,
            cycle: 0,
            next,
            inputs: vec![InVc::default(); n * PORTS * v],
            out_vcs: VcTable::new(n * PORTS * v, model.vc_buffer_flits),
            src_vcs: VcTable::new(n * v, model.vc_buffer_flits),
            src_rr: vec![0; n],
            src_queue: vec![VecDeque::new(); n],
            src_current: vec![None; n],
            va_rr: vec![0; n],
            sa_rr: vec![0; n * PORTS],
            buffered: vec![0; n],
            ring: vec![Vec::new(); max_delay + 1],
            pending: 0,
            requests: Vec::new(),
            live: Vec::new(),
            free: Vec::new(),
            late_injections: 0,
            deadlocks: 0,
        })
    }

    /// The model.
    pub fn model(&self) -> &RouterModel {
        &self.model
    }

    /// The state as bytes (for checkpoints; between batches the network is empty).
    pub fn save(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Restore [`RouterNet::save`] of a network with the same topology and model.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        let net: RouterNet = postcard::from_bytes(bytes).map_err(|e| format!("router state: {e}"))?;
        if net.topo != self.topo || net.model != self.model {
            return Err("router state: saved for a different fabric".into());
        }
        let sizes = |n: &RouterNet| {
            [
                n.next.len(),
                n.inputs.len(),
                n.out_vcs.len(),
                n.out_vcs.allocated.len(),
                n.out_vcs.tail_sent.len(),
                n.src_vcs.len(),
                n.src_vcs.allocated.len(),
                n.src_vcs.tail_sent.len(),
                n.src_rr.len(),
                n.src_queue.len(),
                n.src_current.len(),
                n.va_rr.len(),
                n.sa_rr.len(),
                n.buffered.len(),
                n.ring.len(),
            ]
        };
        if sizes(&net) != sizes(self) || net.live.len() < net.free.len() {
            return Err("router state: damaged (its tables do not fit the fabric)".into());
        }
        *self = net;
        Ok(())
    }

    fn schedule(&mut self, delay: u32, due: Due) {
        let slot = ((self.cycle + delay as u64) % self.ring.len() as u64) as usize;
        self.ring[slot].push(due);
        self.pending += 1;
    }

    /// Which way a packet goes round a torus ring where both ways are as short
    /// (per dimension; BookSim flips a coin, we take the packet's index bits).
    fn negative_ties(batch: u32) -> [bool; 2] {
        [batch & 1 == 1, batch & 2 == 2]
    }

    /// The direction a packet at `at` takes towards `dst` (`None`: it is there).
    fn next_dir(&self, at: Chip, dst: Chip, batch: u32) -> Option<Dir> {
        if at == dst {
            return None;
        }
        let (dx, dy) = self.topo.offsets(at, dst, Self::negative_ties(batch));
        Some(if dx > 0 {
            Dir::East
        } else if dx < 0 {
            Dir::West
        } else if dy > 0 {
            Dir::North
        } else {
            Dir::South
        })
    }

    /// The range of output VCs a packet may take leaving `at` in direction `d`
    /// (updating its dateline state in `p`).
    fn vc_range(&self, at: Chip, d: Dir, p: &mut Live) -> (u32, u32) {
        let v = self.model.vcs;
        if self.topo.kind != Kind::Torus {
            return (0, v);
        }
        let dim = d.is_vertical() as u8;
        if dim != p.dim {
            p.dim = dim;
            p.wrapped = false;
        }
        let (x, y) = self.topo.xy(at);
        let (w, h) = (self.topo.width as i64, self.topo.height as i64);
        let crossing = match d {
            Dir::East => x == w - 1,
            Dir::West => x == 0,
            Dir::North => y == h - 1,
            Dir::South => y == 0,
            _ => false,
        };
        p.wrapped |= crossing;
        if p.wrapped {
            (v / 2, v)
        } else {
            (0, v / 2)
        }
    }

    /// Send a batch of packets (injected no earlier than the previous batch's) and
    /// run until every one has reached every destination and the credits are
    /// back. Deliveries are sorted by (time, packet, chip).
    pub fn send(&mut self, packets: &[Packet]) -> Outcome {
        let n_links = self.topo.link_ids();
        let mut counts = Counts { link_flits: vec![0; n_links], link_packets: vec![0; n_links], traversals: 0 };
        // One unicast copy per destination, in (creation cycle, packet, chip) order.
        let cyc = self.model.cycle_ns;
        let mut copies: Vec<(u64, u32, Chip, Chip)> = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            // The first clock edge at or after the injection time. Times are kept
            // on a 1 ps grid, so a time within 0.6 ps after an edge is that edge.
            let c = ((p.t_ns - 6e-4) / cyc).ceil().max(0.0) as u64;
            let c = if c < self.cycle {
                self.late_injections += 1;
                self.cycle
            } else {
                c
            };
            for &d in &p.dests {
                copies.push((c, i as u32, p.src, d));
            }
        }
        copies.sort_unstable();
        let mut out = Outcome::default();
        let mut next_copy = 0usize;
        let mut remaining = copies.len();
        let mut delivered = vec![false; copies.len()];
        let mut active: Vec<u32> = Vec::new();
        let mut is_active = vec![false; self.topo.chips() as usize];
        while remaining > 0 || self.pending > 0 {
            // Packets created by now join their source queues.
            while next_copy < copies.len() && copies[next_copy].0 <= self.cycle {
                let (c, batch, src, dst) = copies[next_copy];
                let copy = next_copy as u32;
                let live = Live { batch, copy, dst, created: c, hops: 0, dim: 0, wrapped: false };
                let id = match self.free.pop() {
                    Some(id) => {
                        self.live[id as usize] = live;
                        id
                    }
                    None => {
                        self.live.push(live);
                        (self.live.len() - 1) as u32
                    }
                };
                self.src_queue[src as usize].push_back(id);
                if !is_active[src as usize] {
                    is_active[src as usize] = true;
                    active.push(src);
                }
                next_copy += 1;
            }
            let mut moved = false;
            // Events due now.
            let slot = (self.cycle % self.ring.len() as u64) as usize;
            let due = std::mem::take(&mut self.ring[slot]);
            self.pending -= due.len();
            for d in &due {
                moved = true;
                match *d {
                    Due::Flit { vc, flit } => {
                        let router = vc as usize / (PORTS * self.model.vcs as usize);
                        self.inputs[vc as usize].buf.push_back(flit);
                        self.buffered[router] += 1;
                        if !is_active[router] {
                            is_active[router] = true;
                            active.push(router as u32);
                        }
                    }
                    Due::Credit { vc, source: false } => self.out_vcs.credit(vc as usize),
                    Due::Credit { vc, source: true } => self.src_vcs.credit(vc as usize),
                    Due::Delivered { packet } => {
                        let p = self.live[packet as usize];
                        out.deliveries.push(Delivery {
                            packet: p.batch as usize,
                            dst: p.dst,
                            t_ns: self.cycle as f64 * cyc,
                            hops: p.hops,
                        });
                        self.free.push(packet);
                        delivered[p.copy as usize] = true;
                        remaining -= 1;
                    }
                }
            }
            self.ring[slot] = due;
            self.ring[slot].clear();
            // Routers, then sources.
            let mut next_ready = u64::MAX;
            active.sort_unstable();
            for &r in &active {
                let (m, nr) = self.route_and_switch(r as usize, &mut counts);
                moved |= m;
                next_ready = next_ready.min(nr);
            }
            for &r in &active {
                moved |= self.inject(r as usize);
            }
            active.retain(|&r| {
                let keep = self.buffered[r as usize] > 0
                    || !self.src_queue[r as usize].is_empty()
                    || self.src_current[r as usize].is_some();
                is_active[r as usize] = keep;
                keep
            });
            if remaining == 0 && self.pending == 0 {
                break;
            }
            // Nothing moved: nothing changes before the next event, ready flit or creation.
            let mut next = self.cycle + 1;
            if !moved {
                let mut earliest = next_ready;
                if next_copy < copies.len() {
                    earliest = earliest.min(copies[next_copy].0);
                }
                if self.pending > 0 {
                    let len = self.ring.len() as u64;
                    if let Some(k) = (1..=len).find(|k| !self.ring[((self.cycle + k) % len) as usize].is_empty()) {
                        earliest = earliest.min(self.cycle + k);
                    }
                }
                if earliest == u64::MAX {
                    // No event, no ready flit, no packet to come, yet packets in the
                    // network: a deadlock (the routing functions here have none).
                    debug_assert!(false, "router model deadlocked with {remaining} packets");
                    for (k, &(_, batch, _, dst)) in copies.iter().enumerate() {
                        if !delivered[k] {
                            out.dropped.push((batch as usize, dst));
                        }
                    }
                    let (cycle, late, deadlocks) = (self.cycle, self.late_injections, self.deadlocks + 1);
                    if let Ok(fresh) = RouterNet::new(self.topo, self.model) {
                        *self = fresh;
                    }
                    (self.cycle, self.late_injections, self.deadlocks) = (cycle, late, deadlocks);
                    break;
                }
                next = earliest.max(self.cycle + 1);
            }
            self.cycle = next;
        }
        out.deliveries.sort_by(|a, b| a.t_ns.total_cmp(&b.t_ns).then(a.packet.cmp(&b.packet)).then(a.dst.cmp(&b.dst)));
        out.link_busy_ns = counts.link_flits.iter().map(|&f| f as f64 * cyc).collect();
        out.link_packets = counts.link_packets;
        out.traversals = counts.traversals;
        out
    }

    /// VC and switch allocation and traversal at router `r` this cycle; whether a
    /// flit moved, and the earliest cycle a waiting front flit becomes ready.
    fn route_and_switch(&mut self, r: usize, counts: &mut Counts) -> (bool, u64) {
        let v = self.model.vcs as usize;
        let base = r * PORTS * v;
        let now = self.cycle;
        let mut next_ready = u64::MAX;
        if self.buffered[r] == 0 {
            return (false, next_ready);
        }
        // VC allocation, round-robin over input VCs from this router's pointer;
        // the flits that may leave this cycle (ready, allocated, with a credit)
        // become switch requests.
        let n_in = PORTS * v;
        let start = self.va_rr[r] as usize % n_in;
        // (A buffer kept between calls: this runs for every busy router every cycle.)
        let mut requests = std::mem::take(&mut self.requests);
        requests.clear();
        for k in 0..n_in {
            let i = (start + k) % n_in;
            let ivc = &self.inputs[base + i];
            let Some(&f) = ivc.buf.front() else { continue };
            if f.ready > now {
                next_ready = next_ready.min(f.ready);
                continue;
            }
            if ivc.out.is_none() && f.head {
                let mut p = self.live[f.packet as usize];
                let out = match self.next_dir(r as Chip, p.dst, p.batch) {
                    None => Some((LOCAL as u8, 0)),
                    Some(d) => {
                        let (lo, hi) = self.vc_range(r as Chip, d, &mut p);
                        let ob = base + d.index() * v;
                        (lo..hi).find(|&ov| !self.out_vcs.allocated[ob + ov as usize]).map(|ov| {
                            self.out_vcs.allocated[ob + ov as usize] = true;
                            (d.index() as u8, ov)
                        })
                    }
                };
                if out.is_some() {
                    self.live[f.packet as usize] = p;
                    self.inputs[base + i].out = out;
                    self.va_rr[r] = (i + 1) as u32;
                }
            }
            if let Some((o, ov)) = self.inputs[base + i].out {
                if o as usize == LOCAL || self.out_vcs.credits[base + o as usize * v + ov as usize] > 0 {
                    requests.push((o, i as u32));
                }
            }
        }
        // Switch allocation: each output port grants one request (round-robin from
        // its pointer), each input port sends at most one flit; the output ports
        // take turns going first.
        let mut input_used = [false; PORTS];
        let mut moved = false;
        for k in 0..PORTS {
            let o = (k + now as usize) % PORTS;
            let rr = self.sa_rr[r * PORTS + o] as usize;
            let Some(i) = requests
                .iter()
                .filter(|&&(ro, i)| ro as usize == o && !input_used[i as usize / v])
                .map(|&(_, i)| i as usize)
                .min_by_key(|&i| (i + n_in - rr % n_in) % n_in)
            else {
                continue;
            };
            let in_port = i / v;
            let f = *self.inputs[base + i].buf.front().expect("a request has a flit");
            let (_, ov) = self.inputs[base + i].out.expect("a request has an output");
            let oidx = base + o * v + ov as usize;
            // Granted: the flit leaves.
            input_used[in_port] = true;
            self.sa_rr[r * PORTS + o] = (i + 1) as u32;
            moved = true;
            self.inputs[base + i].buf.pop_front();
            self.buffered[r] -= 1;
            if f.tail {
                self.inputs[base + i].out = None;
            }
            // A credit for the slot it freed goes upstream.
            let credit = self.model.credit_cycles;
            if in_port == LOCAL {
                self.schedule(credit, Due::Credit { vc: (r * v + i % v) as u32, source: true });
            } else {
                let from = Dir::ALL[in_port].opposite();
                let up = self.next[r * 6 + from.index()] as usize;
                let uvc = (up * PORTS + in_port) * v + i % v;
                self.schedule(credit, Due::Credit { vc: uvc as u32, source: false });
            }
            if o == LOCAL {
                if f.tail {
                    self.schedule(self.model.ejection_cycles, Due::Delivered { packet: f.packet });
                }
            } else {
                self.out_vcs.send(oidx, f.tail, self.model.wait_for_tail_credit);
                let d = Dir::ALL[o];
                let link = self.topo.link(r as Chip, d);
                counts.link_flits[link] += 1;
                if f.head {
                    counts.link_packets[link] += 1;
                    counts.traversals += 1;
                    self.live[f.packet as usize].hops += 1;
                }
                let to = self.next[r * 6 + o] as usize;
                let lc = self.model.link_cycles(d);
                let ready = now + lc as u64 + self.model.router_stages as u64;
                let vc = ((to * PORTS + o) * v + ov as usize) as u32;
                self.schedule(lc, Due::Flit { vc, flit: Flit { ready, ..f } });
            }
        }
        self.requests = requests;
        (moved, next_ready)
    }

    /// The source node of router `r` sends one flit if it can; whether it did.
    fn inject(&mut self, r: usize) -> bool {
        let v = self.model.vcs as usize;
        if self.src_current[r].is_none() {
            let Some(&id) = self.src_queue[r].front() else { return false };
            // The next free local VC with room, round-robin (as BookSim's sources).
            let start = self.src_rr[r] as usize;
            let Some(vc) = (0..v).map(|k| (start + k) % v).find(|&k| self.src_vcs.is_open(r * v + k)) else {
                return false;
            };
            self.src_rr[r] = ((vc + 1) % v) as u32;
            self.src_queue[r].pop_front();
            self.src_vcs.allocated[r * v + vc] = true;
            self.src_current[r] = Some((id, vc as u32, 0));
        }
        let Some((id, vc, sent)) = self.src_current[r] else { return false };
        let sv = r * v + vc as usize;
        if self.src_vcs.credits[sv] == 0 {
            return false;
        }
        let f = self.model.packet_flits;
        let (head, tail) = (sent == 0, sent + 1 == f);
        self.src_vcs.send(sv, tail, self.model.wait_for_tail_credit);
        if tail {
            self.src_current[r] = None;
        } else {
            self.src_current[r] = Some((id, vc, sent + 1));
        }
        let l = self.model.injection_cycles;
        let ready = self.cycle + l as u64 + self.model.router_stages as u64;
        let ivc = ((r * PORTS + LOCAL) * v + vc as usize) as u32;
        self.schedule(l, Due::Flit { vc: ivc, flit: Flit { packet: id, head, tail, ready } });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(flits: u32, vcs: u32, buffer: u32) -> RouterModel {
        RouterModel {
            cycle_ns: 1.0,
            packet_flits: flits,
            router_stages: 3,
            link_cycles_x: 2,
            link_cycles_y: 4,
            injection_cycles: 1,
            ejection_cycles: 2,
            credit_cycles: 1,
            vcs,
            vc_buffer_flits: buffer,
            wait_for_tail_credit: false,
        }
    }

    #[test]
    fn a_lone_packet_takes_the_pipeline_formula_on_every_route() {
        for kind in [Kind::Mesh, Kind::Torus, Kind::Hierarchical] {
            let topo = Topology { kind, width: 5, height: 4 };
            for flits in [1, 4] {
                let m = model(flits, 2, 16);
                for src in 0..topo.chips() {
                    for dst in 0..topo.chips() {
                        // Four packets far apart, each alone in the network: packet
                        // indices 0-3 take every way round a torus's half-way ties.
                        let mut net = RouterNet::new(topo, m).unwrap();
                        let packets: Vec<Packet> =
                            (0..4).map(|k| Packet { src, dests: vec![dst], t_ns: 7.0 + 1000.0 * k as f64 }).collect();
                        let out = net.send(&packets);
                        assert_eq!(out.deliveries.len(), 4);
                        for d in &out.deliveries {
                            let route = topo.route(src, dst);
                            let expected = m.zero_load_cycles(&route) as f64;
                            let t0 = packets[d.packet].t_ns;
                            assert_eq!(d.t_ns - t0, expected, "{kind:?} {flits} flits {src}->{dst} #{}", d.packet);
                            assert_eq!(d.hops as usize, route.len());
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn small_buffers_make_bubbles_and_a_busy_link_makes_packets_wait() {
        // Buffers shorter than the credit round trip (link 2 + router 3 + credit 1
        // = 6 cycles): an 8-flit packet cannot stream, it arrives later.
        let topo = Topology { kind: Kind::Mesh, width: 4, height: 1 };
        let p = [Packet { src: 0, dests: vec![3], t_ns: 0.0 }];
        let fast = RouterNet::new(topo, model(8, 1, 8)).unwrap().send(&p).deliveries[0].t_ns;
        let slow = RouterNet::new(topo, model(8, 1, 2)).unwrap().send(&p).deliveries[0].t_ns;
        assert_eq!(fast, model(8, 1, 8).zero_load_cycles(&topo.route(0, 3)) as f64);
        assert!(slow > fast, "{slow} vs {fast}");
        // Two packets from one source: the second follows the first's tail.
        let two = [p[0].clone(), p[0].clone()];
        let out = RouterNet::new(topo, model(8, 1, 8)).unwrap().send(&two);
        assert_eq!(out.deliveries[1].t_ns - out.deliveries[0].t_ns, 8.0);
    }

    #[test]
    fn multicast_sends_one_copy_per_destination_and_state_survives_a_save() {
        let topo = Topology { kind: Kind::Mesh, width: 4, height: 4 };
        let mut net = RouterNet::new(topo, model(1, 2, 4)).unwrap();
        let out = net.send(&[Packet { src: 0, dests: vec![3, 7, 15], t_ns: 0.0 }]);
        assert_eq!(out.deliveries.len(), 3);
        assert_eq!(out.traversals, 3 + 4 + 6);
        let saved = net.save();
        // A packet stamped before the network's clock (which the first batch moved
        // on) goes in late: only a restored clock says when.
        let later = [Packet { src: 5, dests: vec![10], t_ns: 2.0 }];
        let a = net.send(&later);
        assert_eq!(net.late_injections, 1);
        let mut other = RouterNet::new(topo, model(1, 2, 4)).unwrap();
        other.restore(&saved).unwrap();
        assert_eq!(other.send(&later).deliveries, a.deliveries);
        let fresh = RouterNet::new(topo, model(1, 2, 4)).unwrap().send(&later);
        assert_ne!(fresh.deliveries, a.deliveries, "the restore changed nothing");
        assert!(other.restore(&saved[..saved.len() / 2]).is_err());
        let mut wrong = RouterNet::new(topo, model(1, 4, 4)).unwrap();
        assert!(wrong.restore(&saved).is_err());
    }

    #[test]
    fn the_model_refuses_what_it_cannot_route() {
        let tri = Topology { kind: Kind::TriangularTorus, width: 4, height: 4 };
        assert!(RouterNet::new(tri, model(1, 2, 4)).unwrap_err().contains("router = \"fast\""));
        let torus = Topology { kind: Kind::Torus, width: 4, height: 4 };
        assert!(RouterNet::new(torus, model(1, 1, 4)).unwrap_err().starts_with("vcs: 1"));
        let mut m = model(1, 2, 4);
        m.vc_buffer_flits = 0;
        assert!(RouterNet::new(torus, m).unwrap_err().starts_with("vc_buffer_flits: 0"));
    }
}

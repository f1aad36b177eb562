//! Synthetic traffic for latency–load curves: the network-on-chip literature's
//! patterns (uniform random, transpose, bit-complement, hotspot), the ideal
//! throughput each allows under the fabric's routing (the load on its busiest
//! channel), and one measured point of a curve (warm-up, measurement window,
//! drain), for either interconnect model.

use crate::fabric::{Interconnect, Packet};
use crate::mapping::{Connectome, Mapping};
use crate::topology::{Chip, Topology};
use neuropil_sim::rng::Stream;

/// Where each source sends.
#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    /// Every chip equally likely (the source itself included, as BookSim).
    Uniform,
    /// (x, y) → (y, x) (square grids; the diagonal sends to itself).
    Transpose,
    /// (x, y) → (w−1−x, h−1−y): the bit complement of the node index on
    /// power-of-two grids.
    BitComplement,
    /// A `fraction` of packets to one chip, the rest uniform.
    Hotspot {
        /// The hotspot.
        chip: Chip,
        /// Share of the traffic it gets, 0..=1.
        fraction: f64,
    },
    /// Rates between routers: the traffic of a mapped network (a spike goes to
    /// the routers of its targets' cores). Per source, (destination, packets per
    /// unit of offered load); the sum over each source is its rate relative to
    /// the mean sender (mean 1).
    Matrix(Vec<Vec<(Chip, f64)>>),
}

impl Pattern {
    /// Parse `uniform`, `transpose`, `bit_complement` or `hotspot[:CHIP[:FRACTION]]`
    /// (default: the centre chip, 0.2) for `topo`.
    pub fn parse(text: &str, topo: &Topology) -> Result<Pattern, String> {
        let mut parts = text.split(':');
        let p = match parts.next().unwrap_or_default() {
            "uniform" => Pattern::Uniform,
            "transpose" => {
                if topo.width != topo.height {
                    return Err(format!(
                        "--traffic transpose: needs a square grid, not {}x{}",
                        topo.width, topo.height
                    ));
                }
                Pattern::Transpose
            }
            "bit_complement" => Pattern::BitComplement,
            "hotspot" => {
                let centre = topo.chip(topo.width as i64 / 2, topo.height as i64 / 2).unwrap_or(0);
                let chip = match parts.next() {
                    Some(c) => c.parse::<Chip>().ok().filter(|&c| c < topo.chips()).ok_or_else(|| {
                        format!("--traffic {text}: the hotspot chip must be an index below {}", topo.chips())
                    })?,
                    None => centre,
                };
                let fraction =
                    match parts.next() {
                        Some(f) => f.parse::<f64>().ok().filter(|f| (0.0..=1.0).contains(f)).ok_or_else(|| {
                            format!("--traffic {text}: the hotspot fraction must be a number in 0..=1")
                        })?,
                        None => 0.2,
                    };
                Pattern::Hotspot { chip, fraction }
            }
            other => {
                return Err(format!(
                    "--traffic {other}: unknown; use uniform, transpose, bit_complement, hotspot[:CHIP[:FRACTION]] \
                     or experiment (with --experiment)"
                ))
            }
        };
        if parts.next().is_some() {
            return Err(format!("--traffic {text}: too many ':' parts"));
        }
        Ok(p)
    }

    /// The traffic of `net` mapped by `mapping`: each neuron's spikes
    /// (`activity`: spikes per neuron) from its router to the routers of its
    /// targets' cores, one packet per destination router.
    pub fn of_mapped_network(topo: &Topology, net: &Connectome, mapping: &Mapping, activity: &[u64]) -> Pattern {
        let mut m: Vec<std::collections::BTreeMap<Chip, f64>> = vec![Default::default(); topo.chips() as usize];
        for (n, cores) in mapping.destination_cores(net).into_iter().enumerate() {
            let a = activity.get(n).copied().unwrap_or(0) as f64;
            if a == 0.0 {
                continue;
            }
            let mut routers: Vec<Chip> = cores.iter().map(|&(c, _)| mapping.router_of_core[c as usize]).collect();
            routers.sort_unstable();
            routers.dedup();
            for r in routers {
                *m[mapping.router_of(n as u32) as usize].entry(r).or_default() += a;
            }
        }
        let senders = m.iter().filter(|d| !d.is_empty()).count().max(1) as f64;
        let total: f64 = m.iter().flat_map(|d| d.values()).sum();
        let scale = if total > 0.0 { senders / total } else { 0.0 };
        Pattern::Matrix(m.into_iter().map(|d| d.into_iter().map(|(c, w)| (c, w * scale)).collect()).collect())
    }

    /// Its name, as parsed.
    pub fn name(&self) -> String {
        match self {
            Pattern::Uniform => "uniform".into(),
            Pattern::Transpose => "transpose".into(),
            Pattern::BitComplement => "bit_complement".into(),
            Pattern::Hotspot { chip, fraction } => format!("hotspot:{chip}:{fraction}"),
            Pattern::Matrix(_) => "experiment".into(),
        }
    }

    /// Destinations of `src` with their probabilities.
    pub fn destinations(&self, topo: &Topology, src: Chip) -> Vec<(Chip, f64)> {
        let n = topo.chips();
        let (x, y) = topo.xy(src);
        let one = |c: Chip| vec![(c, 1.0)];
        match self {
            Pattern::Uniform => (0..n).map(|d| (d, 1.0 / n as f64)).collect(),
            Pattern::Transpose => one(topo.chip(y, x).unwrap_or(src)),
            Pattern::BitComplement => {
                one(topo.chip(topo.width as i64 - 1 - x, topo.height as i64 - 1 - y).unwrap_or(src))
            }
            Pattern::Hotspot { chip, fraction } => {
                let mut v: Vec<(Chip, f64)> = (0..n).map(|d| (d, (1.0 - fraction) / n as f64)).collect();
                v[*chip as usize].1 += fraction;
                v
            }
            Pattern::Matrix(m) => m.get(src as usize).cloned().unwrap_or_default(),
        }
    }

    /// Whether `src` sends at all (a mapped network's silent routers do not).
    fn sends(&self, src: Chip) -> bool {
        match self {
            Pattern::Matrix(m) => m.get(src as usize).is_some_and(|d| !d.is_empty()),
            _ => true,
        }
    }

    /// Sources that send.
    pub fn senders(&self, topo: &Topology) -> u32 {
        (0..topo.chips()).filter(|&s| self.sends(s)).count() as u32
    }
}

/// The expected load of the busiest channel (links, and each node's injection
/// and ejection channel) when every sender injects one packet per unit time,
/// under the fabric's dimension-order routes: the ideal throughput per sender is
/// its inverse (in packets per link packet-time). Uniform traffic on a k×k mesh:
/// k/4 (the bisection bound 4/k). With `balanced_ties` a torus target half way
/// round a ring is reached either way with equal probability (the wormhole
/// model, as BookSim), else the positive way (the fast model).
pub fn max_channel_load(topo: &Topology, pattern: &Pattern, balanced_ties: bool) -> f64 {
    let n = topo.chips() as usize;
    let mut link = vec![0.0f64; topo.link_ids()];
    let mut eject = vec![0.0f64; n];
    let mut inject = 0.0f64;
    for src in 0..topo.chips() {
        if !pattern.sends(src) {
            continue;
        }
        let dests = pattern.destinations(topo, src);
        inject = inject.max(dests.iter().map(|d| d.1).sum());
        for (dst, p) in dests {
            eject[dst as usize] += p;
            let ties = if balanced_ties { topo.ties(src, dst) } else { [false, false] };
            let ways = |tie: bool| if tie { &[false, true][..] } else { &[false][..] };
            let (xs, ys) = (ways(ties[0]), ways(ties[1]));
            let share = p / (xs.len() * ys.len()) as f64;
            for &nx in xs {
                for &ny in ys {
                    let mut at = src;
                    for d in topo.route_ties(src, dst, [nx, ny]) {
                        link[topo.link(at, d)] += share;
                        at = topo.neighbour(at, d).unwrap_or(at);
                    }
                }
            }
        }
    }
    link.iter().chain(eject.iter()).copied().fold(inject, f64::max)
}

/// Packets of `pattern` from every sender over `[0, duration_ns)`: Bernoulli
/// injection per `slot_ns` with probability `p` (BookSim's process; `p` up to 1)
/// — or, with `slot_ns = 0`, a Poisson process of rate `p` per ns. One random
/// stream per source: deterministic for a seed.
pub fn generate(topo: &Topology, pattern: &Pattern, p: f64, slot_ns: f64, duration_ns: f64, seed: u64) -> Vec<Packet> {
    let mut packets = Vec::new();
    if p.is_nan() || p <= 0.0 {
        return packets;
    }
    for src in 0..topo.chips() {
        if !pattern.sends(src) {
            continue;
        }
        let dests = pattern.destinations(topo, src);
        let mut cdf = Vec::with_capacity(dests.len());
        let mut acc = 0.0;
        for &(d, w) in &dests {
            acc += w;
            cdf.push((acc, d));
        }
        // A mapped network's sources send at their own rates (capped at one
        // packet per slot).
        let p = match pattern {
            Pattern::Matrix(_) if slot_ns > 0.0 => (p * acc).min(1.0),
            Pattern::Matrix(_) => p * acc,
            _ => p,
        };
        let mut rng = Stream::new(seed, &[0x7261_6666, src as u64]);
        // Bernoulli: the first trial is slot 0.
        let mut t = if slot_ns > 0.0 { -slot_ns } else { 0.0 };
        loop {
            if slot_ns > 0.0 {
                // Slots until the next success of a Bernoulli(p) trial.
                let gap = if p >= 1.0 { 1.0 } else { (rng.uniform_open0().ln() / (1.0 - p).ln()).floor() + 1.0 };
                t += gap * slot_ns;
            } else {
                t += -rng.uniform_open0().ln() / p;
            }
            if t >= duration_ns {
                break;
            }
            let u = rng.uniform() * acc;
            let k = cdf.partition_point(|&(c, _)| c <= u).min(cdf.len().saturating_sub(1));
            let dst = cdf.get(k).map_or(src, |&(_, d)| d);
            // Times on a 1 ps grid, as the fabric keeps them.
            packets.push(Packet { src, dests: vec![dst], t_ns: (t * 1000.0).round() / 1000.0 });
        }
    }
    packets
}

/// One point of a latency–load curve.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Point {
    /// Offered load, packets per sender per ns.
    pub offered_per_ns: f64,
    /// Accepted throughput: deliveries during the measurement window per sender per ns.
    pub accepted_per_ns: f64,
    /// Mean latency of the packets created in the window (creation to delivery), ns.
    pub latency_ns: f64,
    /// Their 99th percentile, ns.
    pub latency_p99_ns: f64,
    /// Packets created in the window.
    pub measured: u64,
    /// Packets dropped (fast model with finite buffers), of all sent.
    pub dropped: u64,
    /// Packets sent.
    pub packets: u64,
}

/// A measured point and what the fabric did.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The point.
    pub point: Point,
    /// Every delivery and drop.
    pub outcome: crate::fabric::Outcome,
}

/// Run `packets` through a fresh `fabric` and measure the packets created in
/// `[warmup_ns, warmup_ns + measure_ns)`; `senders` normalises the throughput.
pub fn measure(
    fabric: &mut Interconnect,
    packets: &[Packet],
    senders: u32,
    offered_per_ns: f64,
    warmup_ns: f64,
    measure_ns: f64,
) -> Measured {
    let out = fabric.send(packets);
    let (from, to) = (warmup_ns, warmup_ns + measure_ns);
    let mut lat: Vec<f64> = Vec::new();
    let mut arrived = 0u64;
    for d in &out.deliveries {
        let t0 = packets[d.packet].t_ns;
        if t0 >= from && t0 < to {
            lat.push(d.t_ns - t0);
        }
        if d.t_ns >= from && d.t_ns < to {
            arrived += 1;
        }
    }
    lat.sort_by(f64::total_cmp);
    let mean = if lat.is_empty() { f64::NAN } else { lat.iter().sum::<f64>() / lat.len() as f64 };
    let p99 = if lat.is_empty() { f64::NAN } else { lat[((lat.len() - 1) as f64 * 0.99).round() as usize] };
    let point = Point {
        offered_per_ns,
        accepted_per_ns: arrived as f64 / senders.max(1) as f64 / measure_ns,
        latency_ns: mean,
        latency_p99_ns: p99,
        measured: lat.len() as u64,
        dropped: out.dropped.len() as u64,
        packets: packets.len() as u64,
    };
    Measured { point, outcome: out }
}

/// Mean zero-load latency of `pattern` on the fabric, ns (exact: every pair,
/// weighted by its probability).
pub fn zero_load_ns(fabric: &Interconnect, topo: &Topology, pattern: &Pattern) -> f64 {
    let (mut sum, mut weight) = (0.0, 0.0);
    for src in 0..topo.chips() {
        if !pattern.sends(src) {
            continue;
        }
        for (dst, p) in pattern.destinations(topo, src) {
            sum += p * fabric.zero_load_ns(&topo.route(src, dst));
            weight += p;
        }
    }
    if weight > 0.0 {
        sum / weight
    } else {
        f64::NAN
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::Kind;

    #[test]
    fn channel_loads_match_the_closed_forms() {
        for k in [4u32, 8, 16] {
            let mesh = Topology { kind: Kind::Mesh, width: k, height: k };
            // Uniform on a k×k mesh: k/4 on the centre links (bisection 4/k).
            assert!((max_channel_load(&mesh, &Pattern::Uniform, false) - k as f64 / 4.0).abs() < 1e-12);
            // Uniform on a k×k torus (k even), half-way ties going the positive way:
            // a positive link carries Σ_{d=1}^{k/2} d / k = (k + 2)/8 — unless the
            // injection and ejection channels (1 each) are busier (k = 4).
            let torus = Topology { kind: Kind::Torus, ..mesh };
            let expected = ((k as f64 + 2.0) / 8.0).max(1.0);
            assert!((max_channel_load(&torus, &Pattern::Uniform, false) - expected).abs() < 1e-9);
            // Ties split evenly between both ways: k/8 (bound 8/k).
            let expected = (k as f64 / 8.0).max(1.0);
            assert!((max_channel_load(&torus, &Pattern::Uniform, true) - expected).abs() < 1e-9);
            // Bit-complement on a mesh: every source in a row crosses the middle
            // column, the k/2 of one half over one link each way: k/2.
            assert!((max_channel_load(&mesh, &Pattern::BitComplement, false) - k as f64 / 2.0).abs() < 1e-12);
        }
        // Hotspot: its ejection channel takes fraction × n + (1 − fraction).
        let t = Topology { kind: Kind::Mesh, width: 8, height: 8 };
        let h = Pattern::Hotspot { chip: 27, fraction: 0.2 };
        assert!(max_channel_load(&t, &h, false) >= 0.2 * 64.0 + 0.8 - 1e-9);
    }

    #[test]
    fn patterns_parse_and_generate_their_destinations() {
        let t = Topology { kind: Kind::Mesh, width: 4, height: 4 };
        assert_eq!(Pattern::parse("hotspot:5:0.5", &t), Ok(Pattern::Hotspot { chip: 5, fraction: 0.5 }));
        assert!(Pattern::parse("hotspot:16", &t).unwrap_err().contains("below 16"));
        assert!(Pattern::parse("tornado", &t).unwrap_err().contains("unknown"));
        let oblong = Topology { kind: Kind::Mesh, width: 4, height: 2 };
        assert!(Pattern::parse("transpose", &oblong).unwrap_err().contains("square"));
        let packets = generate(&t, &Pattern::Transpose, 0.5, 1.0, 100.0, 1);
        for p in &packets {
            let (x, y) = t.xy(p.src);
            assert_eq!(p.dests, vec![t.chip(y, x).unwrap()]);
        }
        // Bernoulli at p = 0.5 per 1 ns slot: ~50 per source in 100 ns.
        let per_source = packets.len() as f64 / 16.0;
        assert!((per_source - 50.0).abs() < 10.0, "{per_source}");
        assert_eq!(
            generate(&t, &Pattern::Uniform, 0.3, 0.0, 50.0, 9),
            generate(&t, &Pattern::Uniform, 0.3, 0.0, 50.0, 9)
        );
    }
}

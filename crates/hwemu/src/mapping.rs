//! Placing neurons on cores, within each core's limits.
//!
//! Strategies: `round_robin` (neuron i on core i mod C: every population spread
//! over every core), `population_contiguous` (each population fills cores of its
//! own, in order), and `locality_aware` (population blocks ordered by traffic —
//! the busiest first, then whichever talks most with those already placed — on
//! routers taken from the centre of the fabric outwards, so that the busiest
//! sources sit in the middle of a compact block: shorter multicast trees and
//! paths, lower latency).

use crate::preset::Preset;
use crate::topology::{Chip, Topology};
use serde::{Deserialize, Serialize};

/// The network as the mapper sees it: populations and synapses.
#[derive(Debug, Clone, Default)]
pub struct Connectome {
    /// (name, first neuron id, size) in id order.
    pub populations: Vec<(String, u32, u32)>,
    /// Targets of neuron `s`: `targets[row[s]..row[s + 1]]` (repeats allowed).
    pub row: Vec<u64>,
    /// Target neuron ids.
    pub targets: Vec<u32>,
}

impl Connectome {
    /// Build from (source, target) pairs over `n` neurons.
    pub fn from_edges(populations: Vec<(String, u32, u32)>, n: u32, edges: &[(u32, u32)]) -> Connectome {
        let mut row = vec![0u64; n as usize + 1];
        for &(s, _) in edges {
            row[s as usize + 1] += 1;
        }
        for i in 0..n as usize {
            row[i + 1] += row[i];
        }
        let mut fill = row.clone();
        let mut targets = vec![0u32; edges.len()];
        for &(s, t) in edges {
            targets[fill[s as usize] as usize] = t;
            fill[s as usize] += 1;
        }
        Connectome { populations, row, targets }
    }

    /// The synapses of built shards (every shard of `net`).
    pub fn from_shards(net: &neuropil_sim::Network, shards: &[neuropil_sim::shard::Shard]) -> Connectome {
        let mut edges = Vec::new();
        for s in shards {
            s.for_each_synapse(|src, tgt| edges.push((src, tgt)));
        }
        let pops = net.populations.iter().map(|p| (p.name.clone(), p.first_gid, p.size)).collect();
        Connectome::from_edges(pops, net.total_neurons(), &edges)
    }

    /// Number of neurons.
    pub fn neurons(&self) -> u32 {
        self.row.len().saturating_sub(1) as u32
    }

    /// Targets of one neuron.
    pub fn targets_of(&self, s: u32) -> &[u32] {
        &self.targets[self.row[s as usize] as usize..self.row[s as usize + 1] as usize]
    }

    /// Index of the population of neuron `n`.
    pub fn population_of(&self, n: u32) -> usize {
        self.populations.partition_point(|p| p.1 <= n).saturating_sub(1)
    }
}

/// How to place neurons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Neuron i on core i mod C.
    RoundRobin,
    /// Each population on cores of its own, in id order.
    PopulationContiguous,
    /// Population blocks ordered by traffic, cores along a snake path.
    LocalityAware,
}

impl Strategy {
    /// Every strategy.
    pub const ALL: [Strategy; 3] = [Strategy::RoundRobin, Strategy::PopulationContiguous, Strategy::LocalityAware];

    /// Parse a name.
    pub fn from_name(s: &str) -> Option<Strategy> {
        match s {
            "round_robin" => Some(Strategy::RoundRobin),
            "population_contiguous" => Some(Strategy::PopulationContiguous),
            "locality_aware" => Some(Strategy::LocalityAware),
            _ => None,
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round_robin",
            Strategy::PopulationContiguous => "population_contiguous",
            Strategy::LocalityAware => "locality_aware",
        }
    }
}

/// A per-core (or per-router) limit that a mapping breaks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    /// The preset parameter that sets the limit.
    pub limit: &'static str,
    /// The limit.
    pub allowed: u64,
    /// The worst value the mapping needs.
    pub needed: u64,
    /// Where (e.g. `core 17`, `neuron 402`, `router 5`).
    pub at: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} needs {} but params.{} allows {}", self.at, self.needed, self.limit, self.allowed)
    }
}

/// Why a mapping was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MappingError {
    /// More cores needed than the fabric has.
    #[error("the network needs {needed} cores of at most {per_core} neurons but {preset} has {available}; use a larger topology or fewer neurons")]
    TooFewCores {
        /// Preset name.
        preset: String,
        /// Cores needed.
        needed: u64,
        /// Cores available.
        available: u64,
        /// Neurons per core used.
        per_core: u32,
    },
    /// A per-core limit is broken.
    #[error("mapping {strategy} onto {preset}: {violation}; try another mapping or fewer neurons per core")]
    Limit {
        /// Strategy name.
        strategy: &'static str,
        /// Preset name.
        preset: String,
        /// The first broken limit.
        violation: Violation,
    },
    /// The preset lacks what mapping needs.
    #[error(transparent)]
    Preset(#[from] crate::preset::PresetError),
}

/// Neurons placed on cores.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    /// Strategy used.
    pub strategy: Strategy,
    /// Core of each neuron.
    pub core_of: Vec<u32>,
    /// Router (chip) of each core.
    pub router_of_core: Vec<Chip>,
    /// Cores used.
    pub cores_used: u32,
    /// Limits the mapping breaks (empty when it fits).
    pub violations: Vec<Violation>,
}

impl Mapping {
    /// For every neuron of `net`, the cores holding its targets (ascending) with the
    /// number of its synapses onto each.
    pub fn destination_cores(&self, net: &Connectome) -> Vec<Vec<(u32, u32)>> {
        (0..net.neurons())
            .map(|s| {
                let mut cores: Vec<u32> = net.targets_of(s).iter().map(|&t| self.core_of[t as usize]).collect();
                cores.sort_unstable();
                let mut d: Vec<(u32, u32)> = Vec::new();
                for c in cores {
                    match d.last_mut() {
                        Some((lc, k)) if *lc == c => *k += 1,
                        _ => d.push((c, 1)),
                    }
                }
                d
            })
            .collect()
    }

    /// Router of a neuron.
    pub fn router_of(&self, n: u32) -> Chip {
        self.router_of_core[self.core_of[n as usize] as usize]
    }
}

/// Routers by hop distance from the central router (ties by id).
fn centre_out(topo: &Topology) -> Vec<Chip> {
    let centre = topo.chip(topo.width as i64 / 2, topo.height as i64 / 2).unwrap_or(0);
    let mut out: Vec<Chip> = (0..topo.chips()).collect();
    out.sort_by_key(|&c| (topo.hops(centre, c), c));
    out
}

/// Place `net` on `preset` with at most `neurons_per_core` per core (default: the
/// preset's limit). With `enforce`, a broken limit is an error; otherwise the
/// violations are listed in the mapping (for a report on a network that does not
/// fit as it is).
pub fn map(
    net: &Connectome,
    preset: &Preset,
    strategy: Strategy,
    neurons_per_core: Option<u32>,
    enforce: bool,
    activity: Option<&[u64]>,
) -> Result<Mapping, MappingError> {
    preset.require(crate::preset::Use::Mapping)?;
    let topo = preset.topology();
    let cap = neurons_per_core.unwrap_or(preset.value("neurons_per_core") as u32).max(1);
    let n = net.neurons();
    let cpr = preset.cores_per_router();
    let available = topo.chips() as u64 * cpr as u64;
    let name = preset.file.name.clone();
    let mut core_of = vec![0u32; n as usize];
    let mut next_core = 0u32;
    let order: Vec<usize> = match strategy {
        Strategy::LocalityAware => traffic_order(net, activity),
        _ => (0..net.populations.len()).collect(),
    };
    match strategy {
        Strategy::RoundRobin => {
            let c = n.div_ceil(cap).max(1);
            for (i, slot) in core_of.iter_mut().enumerate() {
                *slot = i as u32 % c;
            }
            next_core = c;
        }
        Strategy::PopulationContiguous | Strategy::LocalityAware => {
            for &p in &order {
                let (_, first, size) = &net.populations[p];
                for k in 0..*size {
                    core_of[(first + k) as usize] = next_core + k / cap;
                }
                next_core += size.div_ceil(cap);
            }
        }
    }
    if next_core as u64 > available {
        return Err(MappingError::TooFewCores { preset: name, needed: next_core as u64, available, per_core: cap });
    }
    let routers: Vec<Chip> = match strategy {
        Strategy::LocalityAware => centre_out(&topo),
        _ => (0..topo.chips()).collect(),
    };
    let router_of_core: Vec<Chip> = (0..next_core).map(|c| routers[(c / cpr) as usize]).collect();
    let mut mapping = Mapping { strategy, core_of, router_of_core, cores_used: next_core, violations: Vec::new() };
    mapping.violations = check(net, preset, &mapping, &topo);
    if enforce {
        if let Some(v) = mapping.violations.first() {
            return Err(MappingError::Limit { strategy: strategy.name(), preset: name, violation: v.clone() });
        }
    }
    Ok(mapping)
}

/// Populations in an order where each is the one with the most traffic to those
/// already placed (starting with the busiest). Traffic is synapses × spikes of
/// the source when `activity` (spikes per neuron) is known, else synapses.
fn traffic_order(net: &Connectome, activity: Option<&[u64]>) -> Vec<usize> {
    let p = net.populations.len();
    let mut w = vec![vec![0u64; p]; p];
    for s in 0..net.neurons() {
        let ps = net.population_of(s);
        let a = activity.map_or(1, |a| a.get(s as usize).copied().unwrap_or(0));
        for &t in net.targets_of(s) {
            let pt = net.population_of(t);
            w[ps][pt] += a;
            w[pt][ps] += a;
        }
    }
    let mut placed: Vec<usize> = Vec::with_capacity(p);
    let mut left: Vec<usize> = (0..p).collect();
    while !left.is_empty() {
        let score = |c: usize| -> u64 {
            if placed.is_empty() {
                w[c].iter().sum()
            } else {
                // Affinity to the most recently placed populations counts most:
                // they sit on the nearest cores.
                placed.iter().rev().enumerate().map(|(age, &q)| w[c][q] >> age.min(8)).sum()
            }
        };
        let best = left.iter().copied().max_by_key(|&c| (score(c), std::cmp::Reverse(c))).unwrap_or(left[0]);
        placed.push(best);
        left.retain(|&c| c != best);
    }
    placed
}

/// The largest number of distinct entries among `lists` (deduplicated in place),
/// and where it is.
fn most_distinct(lists: &mut [Vec<u32>]) -> (u64, usize) {
    let mut worst = (0u64, 0usize);
    for (i, v) in lists.iter_mut().enumerate() {
        v.sort_unstable();
        v.dedup();
        if v.len() as u64 > worst.0 {
            worst = (v.len() as u64, i);
        }
    }
    worst
}

/// Every limit the mapping breaks (the worst case of each).
fn check(net: &Connectome, preset: &Preset, m: &Mapping, topo: &Topology) -> Vec<Violation> {
    let mut out = Vec::new();
    let cores = m.cores_used as usize;
    // Fan-in: distinct presynaptic neurons per core.
    let mut sources: Vec<Vec<u32>> = vec![Vec::new(); cores];
    // Fan-out: distinct destination cores per neuron; routing: per source core, the
    // set of destination routers.
    let mut worst_fanout = (0u64, 0u32);
    let mut dest_routers: Vec<Vec<Chip>> = vec![Vec::new(); cores];
    for s in 0..net.neurons() {
        let mut dcores: Vec<u32> = net.targets_of(s).iter().map(|&t| m.core_of[t as usize]).collect();
        dcores.sort_unstable();
        dcores.dedup();
        if dcores.len() as u64 > worst_fanout.0 {
            worst_fanout = (dcores.len() as u64, s);
        }
        let sc = m.core_of[s as usize] as usize;
        for &c in &dcores {
            sources[c as usize].push(s);
            dest_routers[sc].push(m.router_of_core[c as usize]);
        }
    }
    let worst_fanin = most_distinct(&mut sources);
    let limit = |name: &'static str| preset.value(name) as u64;
    if preset.file.params.contains_key("fanin_per_neuron") {
        // Distinct presynaptic neurons of each neuron.
        let mut pre: Vec<Vec<u32>> = vec![Vec::new(); net.neurons() as usize];
        for s in 0..net.neurons() {
            for &t in net.targets_of(s) {
                pre[t as usize].push(s);
            }
        }
        let worst = most_distinct(&mut pre);
        if worst.0 > limit("fanin_per_neuron") {
            out.push(Violation {
                limit: "fanin_per_neuron",
                allowed: limit("fanin_per_neuron"),
                needed: worst.0,
                at: format!("neuron {} (distinct presynaptic neurons)", worst.1),
            });
        }
    }
    if worst_fanin.0 > limit("fanin_per_core") {
        out.push(Violation {
            limit: "fanin_per_core",
            allowed: limit("fanin_per_core"),
            needed: worst_fanin.0,
            at: format!("core {} (distinct presynaptic neurons)", worst_fanin.1),
        });
    }
    if worst_fanout.0 > limit("fanout_per_neuron") {
        out.push(Violation {
            limit: "fanout_per_neuron",
            allowed: limit("fanout_per_neuron"),
            needed: worst_fanout.0,
            at: format!("neuron {} (destination cores)", worst_fanout.1),
        });
    }
    // Routing entries: one per source core on every router of its multicast tree.
    let mut entries = vec![0u64; topo.chips() as usize];
    for (c, routers) in dest_routers.iter_mut().enumerate() {
        routers.sort_unstable();
        routers.dedup();
        let src = m.router_of_core[c];
        let mut tree: Vec<Chip> = vec![src];
        for &r in routers.iter() {
            let mut at = src;
            for d in topo.route(src, r) {
                at = topo.neighbour(at, d).unwrap_or(at);
                tree.push(at);
            }
        }
        tree.sort_unstable();
        tree.dedup();
        for r in tree {
            entries[r as usize] += 1;
        }
    }
    if let Some((r, &e)) = entries.iter().enumerate().max_by_key(|(_, &e)| e) {
        if e > limit("routing_entries") {
            out.push(Violation {
                limit: "routing_entries",
                allowed: limit("routing_entries"),
                needed: e,
                at: format!("router {r} (source cores routed through it)"),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_pops() -> Connectome {
        // A: 0..100, B: 100..200; A -> B all-to-all for the first 10 of A.
        let mut edges = Vec::new();
        for s in 0..10 {
            for t in 100..200 {
                edges.push((s, t));
            }
        }
        Connectome::from_edges(vec![("A".into(), 0, 100), ("B".into(), 100, 100)], 200, &edges)
    }

    #[test]
    fn strategies_respect_core_capacity() {
        let net = two_pops();
        let preset = Preset::builtin("loihi").unwrap();
        for s in Strategy::ALL {
            let m = map(&net, &preset, s, Some(30), true, None).unwrap();
            let mut count = vec![0u32; m.cores_used as usize];
            m.core_of.iter().for_each(|&c| count[c as usize] += 1);
            assert!(count.iter().all(|&c| c <= 30), "{s:?}: {count:?}");
            if s != Strategy::RoundRobin {
                // Populations do not share cores.
                assert!(m.core_of[99] != m.core_of[100]);
            }
        }
    }

    #[test]
    fn broken_limits_are_refused_with_the_limit() {
        let net = two_pops();
        let preset = Preset::builtin("truenorth").unwrap();
        // On TrueNorth a neuron reaches one core: source 0 reaches every B core.
        let e = map(&net, &preset, Strategy::PopulationContiguous, Some(10), true, None).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("params.fanout_per_neuron allows 1"), "{msg}");
        let m = map(&net, &preset, Strategy::PopulationContiguous, Some(10), false, None).unwrap();
        assert!(!m.violations.is_empty());
        let tiny = Preset::builtin("dynapse").unwrap();
        let many = Connectome::from_edges(vec![("A".into(), 0, 5000)], 5000, &[]);
        let e = map(&many, &tiny, Strategy::RoundRobin, None, true, None).unwrap_err();
        assert!(e.to_string().contains("needs 20 cores"), "{e}");
    }
}

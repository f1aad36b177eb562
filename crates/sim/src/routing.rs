//! Targeted spike routing: which processes of a distributed run need which
//! populations' spikes. A process needs a population's spikes when one of its
//! shards holds a target of a projection from it (the source's row there), the
//! astrocyte of a tripartite projection from it, or a target of a dopamine
//! synapse it modulates; and every spike when it records and digests the run
//! (rank 0) or runs a cerebellar module or the co-simulated fabric. Everything
//! is computed by every process from the network, the layout and the shard
//! assignment alone, so the processes agree without exchanging sets; values
//! (astrocyte currents, module outputs) and fabric delays still go to everyone.
//! The transports apply it (`LocalLink::set_routes`, the cluster's
//! `GrpcTransport`): each peer gets its own selection of the epoch's spikes.
//!
//! With the round-robin layout every population is on every shard and nothing is
//! saved; with areas on shards of their own (`run.layout = "groups"`) a node gets
//! the spikes of the areas that project into its own.

use crate::connectivity::Layout;
use crate::network::{Exchange, Gid, Network};
use crate::plasticity::Plasticity;

/// Per process, per population: whether the process needs its spikes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    needs: Vec<Vec<bool>>,
    /// Each population's end gid (populations in gid order).
    ends: Vec<Gid>,
}

impl Routes {
    /// Routes of `net` split into `n_shards` shards, process `r` holding the
    /// shards `shards_of[r]`, those with `everything[r]` taking every spike.
    pub fn new(net: &Network, shards_of: &[Vec<usize>], n_shards: usize, everything: &[bool]) -> Routes {
        let n_pops = net.populations.len();
        let needs = shards_of
            .iter()
            .enumerate()
            .map(|(r, shards)| {
                if everything.get(r).copied().unwrap_or(false) {
                    return vec![true; n_pops];
                }
                let hosts = hosted(net, shards, n_shards);
                let mut need = vec![false; n_pops];
                for pr in &net.projections {
                    let astrocyte_here = pr.third.is_some_and(|t| hosts[t.population]);
                    if hosts[pr.target] || astrocyte_here {
                        need[pr.source] = true;
                    }
                    if let (true, Some(Plasticity::Dopamine(d))) = (hosts[pr.target], pr.plasticity) {
                        need[d.modulator] = true;
                    }
                }
                need
            })
            .collect();
        Routes { needs, ends: net.populations.iter().map(|p| p.end_gid()).collect() }
    }

    /// Whether process `rank` needs the spikes of population `p`.
    pub fn needs(&self, rank: usize, p: usize) -> bool {
        self.needs.get(rank).and_then(|n| n.get(p)).copied().unwrap_or(true)
    }

    /// Whether some process needs less than every spike (otherwise the one
    /// broadcast message is cheaper than filtering).
    pub fn targeted(&self) -> bool {
        self.needs.iter().any(|n| n.iter().any(|x| !x))
    }

    /// Number of processes.
    pub fn processes(&self) -> usize {
        self.needs.len()
    }

    /// What process `rank` gets of `all` (this process's output of an epoch):
    /// the spikes it needs, every value and delay; into `out` (cleared first).
    pub fn select(&self, rank: usize, all: &Exchange, out: &mut Exchange) {
        out.clear();
        let need = &self.needs[rank];
        let last = self.ends.len().saturating_sub(1);
        let of = |g: Gid| self.ends.partition_point(|&e| e <= g).min(last);
        out.spikes.extend(all.spikes.iter().filter(|s| need.get(of(s.gid)).copied().unwrap_or(true)));
        out.values.extend_from_slice(&all.values);
        out.delays.extend_from_slice(&all.delays);
    }
}

/// Per population: whether one of `shards` (of `n_shards`) holds some of its neurons.
pub fn hosted(net: &Network, shards: &[usize], n_shards: usize) -> Vec<bool> {
    let mut hosts = vec![false; net.populations.len()];
    for &s in shards {
        let layout = Layout::of(net, s as u32, n_shards as u32);
        for (p, pop) in net.populations.iter().enumerate() {
            hosts[p] |= !layout.local_range(pop.first_gid, pop.size).is_empty();
        }
    }
    hosts
}

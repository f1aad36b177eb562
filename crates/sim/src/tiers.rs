//! The two-tier exchange: processes of a distributed run exchange spikes only
//! every few epochs when no spike can cross between them sooner.
//!
//! The epoch is the network's smallest delay (`Network::epoch_steps`): threads of
//! one process meet that often. A spike that goes from one process to another,
//! though, travels over a projection whose source and target sit on different
//! processes, and the smallest delay among those (the cross-process minimum
//! delay) can be much larger — with areas on nodes (`run.layout = "groups"`) it is
//! the smallest inter-area delay. Within `k` epochs of that length no spike of
//! another process can be due, so processes send each other a window of `k`
//! epochs at once; each shard takes the other processes' spikes of the window
//! late (`Shard::absorb`), merged into canonical order before any is due, and the
//! spikes, the digest and every checkpoint are those of the embedded run.
//!
//! The exchange stays one-tier (every epoch) where something needs every epoch's
//! spikes or values across processes: astrocytes (tripartite projections),
//! plastic synapses (their traces and the dopamine history are built in spike
//! order as the spikes come), cerebellar modules and a co-simulated fabric.

use crate::network::Network;
use crate::routing::hosted;

/// Longest window, in steps: spikes are recorded, progress reported and a cancel
/// seen at window ends, and the window's spikes wait in memory.
pub const MAX_WINDOW_STEPS: u64 = 200;

/// Whether `net` may exchange less often than every epoch: no cerebellar
/// modules, no plastic synapses, no astrocytes (a fabric in the loop is the
/// runtime's to rule out).
pub fn allowed(net: &Network) -> bool {
    net.cerebella.is_empty() && net.projections.iter().all(|p| p.plasticity.is_none() && p.third.is_none())
}

/// Epochs per exchange for `net` split into `n_shards` shards, process `r`
/// holding the shards `shards_of[r]` (1: every epoch).
pub fn exchange_epochs(net: &Network, shards_of: &[Vec<usize>], n_shards: usize) -> u64 {
    if !allowed(net) || shards_of.len() < 2 {
        return 1;
    }
    let epoch = net.epoch_steps() as u64;
    match cross_min_delay(net, shards_of, n_shards) {
        Some(d) => (d.min(MAX_WINDOW_STEPS) / epoch).max(1),
        None => (MAX_WINDOW_STEPS / epoch).max(1),
    }
}

/// The smallest delay, in steps, of the projections that join populations on
/// different processes (`None`: no projection crosses).
pub fn cross_min_delay(net: &Network, shards_of: &[Vec<usize>], n_shards: usize) -> Option<u64> {
    let hosts: Vec<Vec<bool>> = shards_of.iter().map(|s| hosted(net, s, n_shards)).collect();
    let crosses = |src: usize, tgt: usize| {
        hosts.iter().enumerate().any(|(a, ha)| ha[src] && hosts.iter().enumerate().any(|(b, hb)| b != a && hb[tgt]))
    };
    net.projections
        .iter()
        .filter(|p| crosses(p.source, p.target))
        .map(|p| net.delay_steps(p.delay_ms.lower()) as u64)
        .min()
}

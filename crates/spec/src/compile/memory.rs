//! The peak-memory estimate a network's run is checked against before anything is allocated.

use super::*;

/// Peak memory estimate: synapses, their row index per shard, neuron state, ring
/// buffers, generator streams, recorded samples, plus the build's cursor array.
pub fn estimate_bytes(net: &Network, shards: u64, samples: f64) -> u64 {
    let n = net.total_neurons() as f64;
    let syn = net.expected_synapses() * BYTES_PER_SYNAPSE;
    let rows = shards as f64 * (n + 1.0) * 8.0 * 2.0;
    let max_delay =
        net.projections.iter().map(|p| (p.delay_ms.upper().min(100.0) / net.dt_ms).max(1.0)).fold(16.0, f64::max);
    let ring = n * 16.0 * (max_delay + 16.0).log2().ceil().exp2();
    let state: f64 = net.populations.iter().map(|p| p.size as f64 * p.model.bytes_per_neuron() as f64).sum();
    let poisson = net.stimuli.len() as f64 * n * 32.0;
    // Cerebellar modules: weights with gradients and moments (16 B per parameter),
    // the fan-in mask, and the mossy-fibre inputs buffered until their feedback.
    let modules: f64 = net
        .cerebella
        .iter()
        .map(|c| {
            let inputs: f64 = c.mossy.iter().map(|&p| net.populations[p].size as f64).sum();
            let mut sizes = vec![inputs];
            sizes.extend(c.granule.iter().map(|&g| g as f64));
            sizes.push(1.0);
            let params: f64 = sizes.windows(2).map(|w| w[0] * w[1] + w[1]).sum();
            let buffered = (c.delay_steps / c.interval_steps.max(1) + 1) as f64 * inputs * 4.0;
            params * 16.0 + inputs * sizes[1] * 4.0 + buffered
        })
        .sum();
    (syn + rows + ring + state + poisson + samples * 24.0 + modules + 64e6) as u64
}

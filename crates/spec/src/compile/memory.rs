//! The peak-memory estimate a network's run is checked against before anything is
//! allocated (and that the cluster's placement divides among nodes), from the
//! kernel's own layout (docs/architecture.md, "The kernel's data layout"):
//!
//! - static synapses: target `u32` + weight `f32` (8 B), plus the `u16` delay each
//!   one carries while its row is sorted (the build's peak); plastic ones keep an
//!   `f64` weight and their rule's per-synapse state;
//! - delay sections: per (source, shard) one section per distinct delay step among
//!   its synapses there (`u16` delay + `u64` start): the expected number of
//!   distinct steps among that many draws of the row's delay distributions; per
//!   (source, shard) a `u32` row entry;
//! - tripartite projections: each covered primary synapse adds a source →
//!   astrocyte synapse and an astrocyte → target SIC link;
//! - neurons: the model's state, the two-channel `f64` input buffer, spike
//!   bookkeeping; Poisson generators: a stream per (generator, target neuron);
//! - samples, cerebellar modules, and the process itself (≈ 10 MB: binary,
//!   runtimes, allocator);
//! - the experiment document while it is parsed: the `toml` crate's spanned tree
//!   costs ≈ 30 bytes per byte of text, and the allocator keeps those pages for
//!   the kernel, so they add to its peak (negligible for the microcircuit's 80
//!   tables; 70 MB for the multi-area model's 8,852, more than its kernel at 1 %).

use super::*;

/// The process before any network: measured 9.4 MiB for a one-neuron run.
const PROCESS_BYTES: f64 = 10e6;

/// Peak bytes per population, stimulus or projection table of the experiment
/// document while it is parsed (≈ 280 bytes of TOML each in the multi-area
/// model; measured with heaptrack: 73.5 MB of heap for its 8,852 tables).
const DOCUMENT_BYTES_PER_TABLE: f64 = 7.5e3;

/// Bytes of one delay section (`u16` delay, `u64` start).
const SECTION_BYTES: f64 = 10.0;

/// The probability of each delay step (steps as the kernel rounds draws to the
/// grid, at least 1) for a delay distribution: `(step, probability)`.
fn step_probabilities(d: &Dist, dt: f64) -> Vec<(u32, f64)> {
    let step = |x: f64| ((x / dt).round().max(1.0)).min(u16::MAX as f64) as u32;
    let grid = |lo: f64, hi: f64, density: &dyn Fn(f64) -> f64| -> Vec<(u32, f64)> {
        let (a, b) = (step(lo), step(hi.max(lo)));
        let mut w: Vec<(u32, f64)> = (a..=b).map(|s| (s, density(s as f64 * dt).max(0.0))).collect();
        let total: f64 = w.iter().map(|x| x.1).sum();
        if total > 0.0 && total.is_finite() {
            w.iter_mut().for_each(|x| x.1 /= total);
            w
        } else {
            vec![(a, 1.0)]
        }
    };
    match *d {
        Dist::Constant(v) => vec![(step(v), 1.0)],
        Dist::Uniform { low, high } => grid(low, high, &|_| 1.0),
        Dist::Normal { mean, std, min, max, .. } => {
            let sd = std.max(1e-12);
            grid(min.max(mean - 6.0 * sd), max.min(mean + 6.0 * sd), &|x| (-0.5 * ((x - mean) / sd).powi(2)).exp())
        }
        Dist::Lognormal { mu, sigma, min, max, .. } => {
            let sg = sigma.max(1e-12);
            let (lo, hi) = (min.max((mu - 6.0 * sg).exp()), max.min((mu + 6.0 * sg).exp()));
            grid(lo, hi, &|x| if x > 0.0 { (-0.5 * ((x.ln() - mu) / sg).powi(2)).exp() / x } else { 0.0 })
        }
    }
}

/// Expected number of distinct delay steps among `m` draws from the mixture
/// `mix` of (weight, distribution): the delay sections of a row with `m`
/// synapses.
fn expected_sections(mix: &[(f64, &Dist)], dt: f64, m: f64) -> f64 {
    let total: f64 = mix.iter().map(|x| x.0).sum();
    if m <= 0.0 || total <= 0.0 {
        return 0.0;
    }
    let mut p: std::collections::BTreeMap<u32, f64> = std::collections::BTreeMap::new();
    for (w, d) in mix {
        for (s, q) in step_probabilities(d, dt) {
            *p.entry(s).or_default() += q * w / total;
        }
    }
    p.values().map(|&q| 1.0 - (m * (1.0 - q).max(0.0).ln()).exp()).sum()
}

/// Peak memory estimate of a run of `net` on `shards` shards recording `samples`
/// sampled values.
pub fn estimate_bytes(net: &Network, shards: u64, samples: f64) -> u64 {
    let shards = shards.max(1) as f64;
    let n = net.total_neurons() as f64;
    let dt = net.dt_ms;
    let mut synapses = 0.0;
    let mut sections = 0.0;
    // Static synapses share their source's row; each plastic projection has a
    // table (rows, sections) of its own.
    let mut static_rows: Vec<Vec<(f64, &Dist)>> = vec![Vec::new(); net.populations.len()];
    for p in &net.projections {
        let pre = net.populations[p.source].size as f64;
        let post = net.populations[p.target].size as f64;
        let k = p.rule.expected_synapses(pre as u64, post as u64);
        if k <= 0.0 || pre <= 0.0 {
            continue;
        }
        match p.plasticity {
            None => {
                synapses += k * (8.0 + 2.0);
                static_rows[p.source].push((k, &p.delay_ms));
            }
            Some(_) => {
                // target u32, f64 weight, the rule's per-synapse state (a trace or
                // eligibility), the sort's delay.
                synapses += k * (4.0 + 8.0 + 8.0 + 2.0);
                sections += pre * shards * expected_sections(&[(k, &p.delay_ms)], dt, k / (pre * shards));
            }
        }
        if let Some(t) = &p.third {
            // The source → astrocyte leg (a static synapse in the source's row)
            // and the astrocyte → target SIC link.
            let legs = k * t.p;
            synapses += legs * (8.0 + 2.0) + legs * 12.0;
            let m = legs / (pre * shards);
            sections += pre * shards * (1.0 - (-m).exp());
        }
    }
    for (src, mix) in static_rows.iter().enumerate() {
        let pre = net.populations[src].size as f64;
        let k: f64 = mix.iter().map(|x| x.0).sum();
        if pre > 0.0 && k > 0.0 {
            sections += pre * shards * expected_sections(mix, dt, k / (pre * shards));
        }
    }
    let rows = n * shards * 4.0;
    let state: f64 = net.populations.iter().map(|p| p.size as f64 * p.model.bytes_per_neuron() as f64).sum();
    let neurons = n * (16.0 + 16.0) + state;
    let poisson: f64 = net
        .stimuli
        .iter()
        .map(|s| match s {
            Stimulus::Poisson { target, .. } => net.populations[*target].size as f64 * 40.0,
            _ => 0.0,
        })
        .sum();
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
    let tables = (net.populations.len() + net.stimuli.len() + net.projections.len()) as f64;
    let document = tables * DOCUMENT_BYTES_PER_TABLE;
    (synapses
        + sections * SECTION_BYTES
        + rows
        + neurons
        + poisson
        + samples * 24.0
        + modules
        + document
        + PROCESS_BYTES) as u64
}

/// Each shard's part of `total` (a run's estimate, [`estimate_bytes`]) under the
/// network's layout: equal parts round-robin; with population groups, in
/// proportion to the neurons and the synapses onto them that each shard holds
/// (synapses live with their targets), so that placement sees an area that is
/// whole on one shard as the size it is.
pub fn shard_bytes(net: &Network, shards: u32, total: u64) -> Vec<u64> {
    let shards = shards.max(1);
    if net.groups.is_none() {
        return vec![total / shards as u64; shards as usize];
    }
    let mut onto = vec![0.0f64; net.populations.len()];
    for p in &net.projections {
        let (pre, post) = (net.populations[p.source].size as u64, net.populations[p.target].size as u64);
        onto[p.target] += p.rule.expected_synapses(pre, post);
    }
    let weight: Vec<f64> = net.populations.iter().zip(&onto).map(|(p, &k)| k * 10.0 + p.size as f64 * 64.0).collect();
    let per_shard: Vec<f64> = (0..shards)
        .map(|s| {
            let layout = neuropil_sim::connectivity::Layout::of(net, s, shards);
            net.populations
                .iter()
                .zip(&weight)
                .map(|(p, w)| w * layout.local_range(p.first_gid, p.size).len() as f64 / p.size.max(1) as f64)
                .sum()
        })
        .collect();
    let sum: f64 = per_shard.iter().sum::<f64>().max(1.0);
    per_shard.iter().map(|w| (total as f64 * w / sum) as u64).collect()
}

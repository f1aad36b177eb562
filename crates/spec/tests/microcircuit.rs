//! The Potjans & Diesmann microcircuit against NEST: rates over several seeds,
//! per-neuron rate distributions, DC compensation, partition independence, and the
//! full-scale model.

mod common;
use common::*;

const SCALE_01: [&str; 2] = ["scaling.neurons=0.1", "scaling.synapses=0.1"];

/// NEST 3.10, scale 0.1, four seeds/thread counts: (low, high) per population
/// (../shared/reference/microcircuit.md), and the mean of the NEST example data.
const NEST_RANGE: [(f64, f64); 8] =
    [(0.47, 0.49), (2.04, 2.21), (3.87, 4.12), (4.95, 5.10), (6.36, 7.00), (7.73, 7.87), (0.79, 0.90), (7.04, 7.06)];
const NEST_DATA_MEAN: [f64; 8] = [0.402, 2.017, 3.880, 4.958, 6.575, 7.726, 0.831, 6.986];

fn per_neuron_rates(c: &neuropil_spec::Compiled, out: &neuropil_sim::embedded::RunOutput, pop: usize) -> Vec<f64> {
    let p = &c.network.populations[pop];
    let secs = (c.steps - c.transient_steps) as f64 * c.network.dt_ms * 1e-3;
    let mut counts = vec![0f64; p.size as usize];
    for s in &out.spikes {
        if s.step >= c.transient_steps && s.gid >= p.first_gid && s.gid < p.end_gid() {
            counts[(s.gid - p.first_gid) as usize] += 1.0;
        }
    }
    counts.iter().map(|k| k / secs).collect()
}

/// Two-sample Kolmogorov–Smirnov statistic.
fn ks(a: &mut [f64], b: &mut [f64]) -> f64 {
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (mut i, mut j, mut d) = (0, 0, 0.0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    d
}

#[test]
#[allow(clippy::needless_range_loop)]
fn rates_agree_with_nest_over_seeds() {
    let seeds = [1u64, 2, 3];
    let mut mean = [0.0f64; 8];
    for seed in seeds {
        let set = [SCALE_01[0], SCALE_01[1], &format!("run.seed={seed}")];
        let c = compile_example("microcircuit.toml", &set);
        assert_eq!(c.network.total_neurons(), 7717, "NEST rounds sizes half-to-even");
        let out = run(&c, 2, 2);
        for pop in 0..8 {
            let mut ours = per_neuron_rates(&c, &out, pop);
            mean[pop] += ours.iter().sum::<f64>() / ours.len() as f64 / seeds.len() as f64;
            let mut nest: Vec<f64> = numbers(&reference(&format!("microcircuit_rates_scale0.1/rate{pop}.dat")))
                .into_iter()
                .map(|r| r[0])
                .collect();
            let (n, m) = (ours.len() as f64, nest.len() as f64);
            let d = ks(&mut ours, &mut nest);
            // Critical value of the two-sample KS test at alpha = 0.001.
            let crit = 1.95 * ((n + m) / (n * m)).sqrt();
            assert!(d < crit, "seed {seed} population {pop}: KS D = {d:.3} >= {crit:.3} against the NEST data");
        }
    }
    for pop in 0..8 {
        let (lo, hi) = NEST_RANGE[pop];
        let (lo, hi) = (lo.min(NEST_DATA_MEAN[pop]) * 0.93, hi.max(NEST_DATA_MEAN[pop]) * 1.07);
        assert!(
            (lo..=hi).contains(&mean[pop]),
            "population {pop}: mean rate over seeds {:.3} Hz outside NEST's [{lo:.3}, {hi:.3}]",
            mean[pop]
        );
    }
}

#[test]
fn dc_compensation_and_weights_match_the_nest_example() {
    let c = compile_example("microcircuit.toml", &SCALE_01);
    let expected = [29.0, 112.4, 113.0, 115.0, 125.4, 151.7, 43.8, 153.7];
    for (p, e) in c.dc_compensation_pa.iter().zip(expected) {
        assert!((p - e).abs() < 0.06, "I_dc {p:.2} vs {e} pA");
    }
    // Mean excitatory weight 87.81 pA / sqrt(0.1) = 277.7 pA.
    let w = c.network.projections[0].weight.nominal_mean();
    assert!((w - 277.7).abs() < 0.05, "w = {w}");
}

#[test]
fn spikes_are_identical_for_any_number_of_shards_and_threads() {
    let set = [SCALE_01[0], SCALE_01[1], "run.duration_ms=300", "run.transient_ms=0"];
    let c = compile_example("microcircuit.toml", &set);
    let reference = run(&c, 1, 1);
    assert!(reference.spikes.len() > 1000, "the network must be active: {} spikes", reference.spikes.len());
    for (threads, shards) in [(1, 2), (2, 2), (2, 3), (2, 7), (1, 7)] {
        let out = run(&c, threads, shards);
        assert_eq!(out.spike_hash, reference.spike_hash, "{threads} threads, {shards} shards");
        assert_eq!(out.spikes, reference.spikes, "{threads} threads, {shards} shards");
        assert_eq!(out.samples, reference.samples, "{threads} threads, {shards} shards");
        assert_eq!(out.stats.synapses, reference.stats.synapses);
    }
    // A different seed gives a different network and different spikes.
    let other = compile_example("microcircuit.toml", &[set[0], set[1], set[2], set[3], "run.seed=2"]);
    assert_ne!(run(&other, 2, 2).spike_hash, reference.spike_hash);
}

/// NEST 3.10 at full scale: the reference's 200 ms run (seed 1) and our own 300 ms
/// run of NEST (bench/nest, seed 55), as (low, high) per population.
const NEST_FULL: [(f64, f64); 8] = [
    (0.842, 0.903),
    (2.921, 2.965),
    (4.414, 4.444),
    (5.875, 5.879),
    (7.569, 7.799),
    (8.633, 8.667),
    (1.105, 1.143),
    (7.817, 7.854),
];

#[test]
fn full_scale_builds_runs_and_matches_nest_rates() {
    let c = compile_example("microcircuit.toml", &["run.duration_ms=600", "run.transient_ms=100", "recorders=[]"]);
    assert_eq!(c.network.total_neurons(), 77_169);
    let out = run(&c, 2, 2);
    assert_eq!(out.stats.synapses, 298_880_968);
    let secs = 0.5;
    for (p, pop) in c.network.populations.iter().enumerate() {
        let rate = out.counted_spikes[p] as f64 / (pop.size as f64 * secs);
        let (lo, hi) = NEST_FULL[p];
        assert!(
            (lo * 0.85..=hi * 1.15).contains(&rate),
            "{}: {rate:.3} Hz outside NEST's [{lo}, {hi}] ± 15 %",
            pop.name
        );
    }
    // Synapse storage: 8 bytes per synapse plus delay sections and the row index.
    let per_synapse = out.stats.synapse_bytes as f64 / out.stats.synapses as f64;
    assert!(per_synapse <= 8.5, "{per_synapse} bytes per synapse");
}

//! The run summary: per-population rates and CVs, sizes, timings, memory, and the
//! spike hash that tells two runs apart at a glance.

use neuropil_sim::embedded::RunOutput;
use neuropil_sim::Network;
use serde::{Deserialize, Serialize};

/// `summary.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// Experiment name.
    pub experiment: String,
    /// Master seed.
    pub seed: u64,
    /// Time step, ms.
    pub dt_ms: f64,
    /// Biological time at which this run started, ms (0, or the checkpoint's time
    /// when resuming).
    #[serde(default)]
    pub start_ms: f64,
    /// Simulated time, ms.
    pub duration_ms: f64,
    /// Left out of rates and CVs, ms.
    pub transient_ms: f64,
    /// Worker threads.
    pub threads: usize,
    /// Shards.
    pub shards: usize,
    /// Per population, in id order.
    pub populations: Vec<PopulationSummary>,
    /// Neurons in total.
    pub neurons: u64,
    /// Synapses in total.
    pub synapses: u64,
    /// Synaptic events delivered.
    pub synaptic_events: u64,
    /// Timings.
    pub timings: Timings,
    /// Peak resident set size of the process, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Bytes of synapse storage per synapse (arrays and row index).
    pub bytes_per_synapse: Option<f64>,
    /// Hex FNV-1a digest of all spikes (neuron id, step) in canonical order, since
    /// the start of the run (across --resume).
    pub spike_hash: String,
    /// The run was stopped early (Ctrl-C); `duration_ms` is what was simulated.
    #[serde(default)]
    pub interrupted: bool,
    /// Hardware co-simulation: preset, mapping and what the fabric did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware: Option<serde_json::Value>,
    /// Cerebellar modules: how their task went.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cerebellum: Vec<ModuleSummary>,
}

/// One cerebellar module's task over the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModuleSummary {
    /// Module name.
    pub name: String,
    /// Samples (communication intervals).
    pub samples: usize,
    /// Mean squared error of the readout over the first tenth of the run.
    pub mse_first_tenth: f64,
    /// Mean squared error of the readout over the last tenth of the run.
    pub mse_last_tenth: f64,
    /// Pearson correlation of the predicted and the true feedback over the samples
    /// with an active module (null: none).
    pub prediction_correlation: Option<f64>,
}

/// Per module: task figures from the samples.
pub fn module_summaries(net: &Network, out: &RunOutput) -> Vec<ModuleSummary> {
    net.cerebella
        .iter()
        .enumerate()
        .map(|(m, spec)| {
            let rows: Vec<_> = out.cerebellum.iter().filter(|s| s.module as usize == m).collect();
            let tenth = (rows.len() / 10).max(1).min(rows.len());
            let mse = |r: &[&neuropil_sim::cerebellum::runtime::ModuleSample]| {
                r.iter().map(|s| s.error * s.error).sum::<f64>() / r.len().max(1) as f64
            };
            let active: Vec<(f64, f64)> = rows
                .iter()
                .filter(|s| spec.remove_at_step.is_none_or(|r| s.step < r))
                .map(|s| (s.predicted, s.error))
                .collect();
            ModuleSummary {
                name: spec.name.clone(),
                samples: rows.len(),
                mse_first_tenth: mse(&rows[..tenth]),
                mse_last_tenth: mse(&rows[rows.len() - tenth..]),
                prediction_correlation: pearson(&active),
            }
        })
        .collect()
}

/// Pearson correlation of pairs (None with fewer than 2 or no variance).
pub fn pearson(pairs: &[(f64, f64)]) -> Option<f64> {
    let n = pairs.len() as f64;
    if n < 2.0 {
        return None;
    }
    let (mx, my) = (pairs.iter().map(|p| p.0).sum::<f64>() / n, pairs.iter().map(|p| p.1).sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for &(x, y) in pairs {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// One population.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PopulationSummary {
    /// Name.
    pub name: String,
    /// Neurons.
    pub size: u32,
    /// Spikes over the whole run.
    pub spikes: u64,
    /// Mean rate after the transient, Hz.
    pub rate_hz: f64,
    /// Mean coefficient of variation of the inter-spike intervals (neurons with ≥ 3
    /// spikes after the transient; null if the population's spikes were not
    /// recorded or none qualifies).
    pub cv_isi: Option<f64>,
    /// DC added by K-scaling compensation, pA.
    pub dc_compensation_pa: f64,
}

/// Wall-clock figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Timings {
    /// Building connectivity and state, s.
    pub build_s: f64,
    /// The simulation loop, s.
    pub simulate_s: f64,
    /// Real-time factor: simulate_s / simulated seconds.
    pub rtf: f64,
    /// Where the simulation loop's thread time went, seconds summed over threads.
    pub profile: Profile,
}

/// Thread time per phase of the simulation loop, seconds summed over threads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    /// Synaptic input delivery.
    pub deliver_s: f64,
    /// Poisson input.
    pub poisson_s: f64,
    /// Neuron updates.
    pub update_s: f64,
    /// Spike exchange: merging all shards' spikes and waiting at the epoch barrier.
    pub exchange_s: f64,
    /// Everything else (sampling, bookkeeping).
    pub other_s: f64,
}

/// Everything the summary needs besides the run output.
pub struct Context<'a> {
    /// Experiment name.
    pub experiment: &'a str,
    /// The network that ran.
    pub net: &'a Network,
    /// First step of this run (0, or the checkpoint's step when resuming).
    pub start_step: u64,
    /// Steps simulated in this run.
    pub steps: u64,
    /// Transient steps (absolute: the run's transient_ms).
    pub transient_steps: u64,
    /// Threads used.
    pub threads: usize,
    /// Shards used.
    pub shards: usize,
    /// DC compensation per population, pA.
    pub dc_pa: &'a [f64],
    /// Peak resident set size of the process that ran it, bytes, if known.
    pub peak_rss_bytes: Option<u64>,
}

/// Build the summary of a finished run.
pub fn summarize(ctx: &Context<'_>, out: &RunOutput) -> Summary {
    let net = ctx.net;
    let end = ctx.start_step + ctx.steps;
    let from = ctx.transient_steps.max(ctx.start_step);
    let measured_s = end.saturating_sub(from) as f64 * net.dt_ms * 1e-3;
    let cvs = cv_isi(net, out, from);
    let populations = net
        .populations
        .iter()
        .enumerate()
        .map(|(i, p)| PopulationSummary {
            name: p.name.clone(),
            size: p.size,
            spikes: out.spike_counts[i],
            rate_hz: if measured_s > 0.0 { out.counted_spikes[i] as f64 / (p.size as f64 * measured_s) } else { 0.0 },
            cv_isi: cvs[i],
            dc_compensation_pa: ctx.dc_pa.get(i).copied().unwrap_or(0.0),
        })
        .collect();
    let bio_s = ctx.steps as f64 * net.dt_ms * 1e-3;
    Summary {
        experiment: ctx.experiment.to_string(),
        seed: net.seed,
        dt_ms: net.dt_ms,
        start_ms: ctx.start_step as f64 * net.dt_ms,
        duration_ms: ctx.steps as f64 * net.dt_ms,
        transient_ms: from.saturating_sub(ctx.start_step) as f64 * net.dt_ms,
        threads: ctx.threads,
        shards: ctx.shards,
        populations,
        neurons: net.total_neurons() as u64,
        synapses: out.stats.synapses,
        synaptic_events: out.stats.synaptic_events,
        timings: Timings {
            build_s: out.stats.build_s,
            simulate_s: out.stats.simulate_s,
            rtf: if bio_s > 0.0 { out.stats.simulate_s / bio_s } else { 0.0 },
            profile: Profile {
                deliver_s: out.stats.phases.deliver_ns as f64 * 1e-9,
                poisson_s: out.stats.phases.poisson_ns as f64 * 1e-9,
                update_s: out.stats.phases.update_ns as f64 * 1e-9,
                exchange_s: out.stats.exchange_ns as f64 * 1e-9,
                other_s: out.stats.phases.other_ns as f64 * 1e-9,
            },
        },
        peak_rss_bytes: ctx.peak_rss_bytes,
        bytes_per_synapse: (out.stats.synapses > 0).then(|| out.stats.synapse_bytes as f64 / out.stats.synapses as f64),
        spike_hash: format!("{:016x}", out.spike_hash),
        interrupted: false,
        hardware: None,
        cerebellum: module_summaries(net, out),
    }
}

fn cv_isi(net: &Network, out: &RunOutput, from_step: u64) -> Vec<Option<f64>> {
    let n = net.total_neurons() as usize;
    let mut last = vec![u64::MAX; n];
    // Per neuron: (count of ISIs, sum, sum of squares).
    let mut acc = vec![(0u32, 0f64, 0f64); n];
    for sp in out.spikes.iter().filter(|s| s.step >= from_step) {
        let g = sp.gid as usize;
        if last[g] != u64::MAX {
            let isi = (sp.step - last[g]) as f64;
            acc[g].0 += 1;
            acc[g].1 += isi;
            acc[g].2 += isi * isi;
        }
        last[g] = sp.step;
    }
    net.populations
        .iter()
        .enumerate()
        .map(|(pi, p)| {
            if !net.record_spikes[pi] {
                return None;
            }
            let mut sum = 0.0;
            let mut k = 0;
            for (c, s, s2) in &acc[p.first_gid as usize..p.end_gid() as usize] {
                if *c >= 2 {
                    let m = s / *c as f64;
                    let var = (s2 / *c as f64 - m * m).max(0.0);
                    sum += var.sqrt() / m;
                    k += 1;
                }
            }
            (k > 0).then(|| sum / k as f64)
        })
        .collect()
}

/// The summary as a table for a terminal.
pub fn render(s: &Summary) -> String {
    let mut t = String::new();
    t.push_str(&format!(
        "{}: {} neurons, {} synapses, {:.0} ms at dt {} ms, seed {}, {} thread(s), {} shard(s)\n",
        s.experiment, s.neurons, s.synapses, s.duration_ms, s.dt_ms, s.seed, s.threads, s.shards
    ));
    t.push_str(&format!("{:<12} {:>9} {:>10} {:>10} {:>8}\n", "population", "size", "spikes", "rate (Hz)", "CV ISI"));
    for p in &s.populations {
        let cv = p.cv_isi.map(|c| format!("{c:.3}")).unwrap_or_else(|| "-".into());
        t.push_str(&format!("{:<12} {:>9} {:>10} {:>10.3} {:>8}\n", p.name, p.size, p.spikes, p.rate_hz, cv));
    }
    t.push_str(&format!(
        "build {:.2} s, simulate {:.2} s, real-time factor {:.3}, {:.3e} synaptic events/s\n",
        s.timings.build_s,
        s.timings.simulate_s,
        s.timings.rtf,
        s.synaptic_events as f64 / s.timings.simulate_s.max(1e-9)
    ));
    let p = &s.timings.profile;
    let total = (p.deliver_s + p.poisson_s + p.update_s + p.exchange_s + p.other_s).max(1e-12);
    t.push_str(&format!(
        "thread time: delivery {:.0}%, Poisson input {:.0}%, neuron update {:.0}%, exchange {:.0}%, other {:.0}%\n",
        100.0 * p.deliver_s / total,
        100.0 * p.poisson_s / total,
        100.0 * p.update_s / total,
        100.0 * p.exchange_s / total,
        100.0 * p.other_s / total
    ));
    if let Some(rss) = s.peak_rss_bytes {
        t.push_str(&format!("peak RSS {:.1} MiB", rss as f64 / (1u64 << 20) as f64));
        if let Some(b) = s.bytes_per_synapse {
            t.push_str(&format!(", {b:.2} B per synapse in the kernel"));
        }
        t.push('\n');
    }
    for m in &s.cerebellum {
        let r = m.prediction_correlation.map_or("-".into(), |r| format!("{r:.3}"));
        t.push_str(&format!(
            "cerebellum {}: readout MSE {:.4} (first tenth) -> {:.4} (last tenth), prediction-feedback correlation {r}\n",
            m.name, m.mse_first_tenth, m.mse_last_tenth
        ));
    }
    t.push_str(&format!("spike hash {}\n", s.spike_hash));
    t
}

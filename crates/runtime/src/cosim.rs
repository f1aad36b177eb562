//! Co-simulation wiring: chip presets, the fabric of an experiment's `[hardware]`
//! section in the loop of a run's shards, and the software-only run that the
//! hardware reports compare with.

use anyhow::{Context as _, Result};
use neuropil_hwemu::mapping::{map, Connectome, Strategy};
use neuropil_hwemu::preset::Preset;
use neuropil_sim::embedded::{self, RunConfig};
use std::path::Path;

/// A preset by file path or built-in name.
pub fn load_preset(name: &str) -> Result<Preset> {
    if Path::new(name).exists() {
        Ok(Preset::load(Path::new(name))?)
    } else {
        Ok(Preset::builtin(name)?)
    }
}

/// A software-only run prepared for the fabric: connectivity, every spike, spikes
/// per neuron.
pub struct SoftwareRun {
    /// Populations and synapses.
    pub connectome: Connectome,
    /// (neuron, time ms) in time order.
    pub spikes: Vec<(u32, f64)>,
    /// Spikes per neuron.
    pub activity: Vec<u64>,
    /// Simulated time, ms.
    pub duration_ms: f64,
    /// The run's output (spikes, counts, digest).
    pub output: embedded::RunOutput,
}

/// Build `net` (recording every population), collect its synapses, and run it.
pub fn software_run(
    net: &neuropil_sim::Network,
    shards: usize,
    threads: usize,
    compiled: &neuropil_spec::Compiled,
) -> SoftwareRun {
    let mut net = net.clone();
    net.record_spikes = vec![true; net.populations.len()];
    let state = embedded::build(&net, shards, threads);
    let connectome = Connectome::from_shards(&net, &state.shards);
    let cfg = RunConfig { threads, shards, steps: compiled.steps, count_from_step: compiled.transient_steps };
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let (output, _) = embedded::run_from(&net, state, cfg, &|_| {}, &cancel);
    let spikes: Vec<(u32, f64)> = output.spikes.iter().map(|s| (s.gid, (s.step + 1) as f64 * net.dt_ms)).collect();
    let mut activity = vec![0u64; connectome.neurons() as usize];
    spikes.iter().for_each(|&(g, _)| activity[g as usize] += 1);
    SoftwareRun { connectome, spikes, activity, duration_ms: compiled.steps as f64 * net.dt_ms, output }
}

/// The fabric of an experiment's `[hardware]` section, in the loop of `state`'s
/// shards (their neurons are told their cores), and what to say of it in the
/// summary.
pub fn fabric_for(
    net: &neuropil_sim::Network,
    state: &mut neuropil_sim::embedded::Checkpoint,
    hw: &neuropil_spec::schema::HardwareSpec,
) -> Result<(neuropil_hwemu::cosim::CoSim, serde_json::Value)> {
    let preset = load_preset(&hw.preset).map_err(|e| anyhow::anyhow!("hardware.preset: {e:#}"))?;
    let name = if hw.mapping.is_empty() { "population_contiguous" } else { hw.mapping.as_str() };
    let strategy = Strategy::from_name(name).with_context(|| format!("hardware.mapping: unknown {name:?}"))?;
    let connectome = Connectome::from_shards(net, &state.shards);
    let npc = (hw.neurons_per_core > 0).then_some(hw.neurons_per_core);
    let mapping =
        map(&connectome, &preset, strategy, npc, false, None).map_err(|e| anyhow::anyhow!("hardware: {e}"))?;
    for s in &mut state.shards {
        s.set_cores(&mapping.core_of);
    }
    let about = serde_json::json!({
        "preset": preset.file.name, "mapping": strategy.name(), "cores_used": mapping.cores_used,
        "violations": mapping.violations.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
    });
    Ok((neuropil_hwemu::cosim::CoSim::new(&connectome, &preset, &mapping, net.dt_ms), about))
}

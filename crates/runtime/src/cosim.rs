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
    let fabric = neuropil_hwemu::cosim::CoSim::new(&connectome, &preset, &mapping, net.dt_ms)
        .map_err(|e| anyhow::anyhow!("hardware.preset: {e}"))?;
    Ok((fabric, about))
}

#[cfg(test)]
mod tests {
    use super::*;
    use neuropil_sim::embedded::{Remote, SpikeFabric};
    use std::sync::atomic::AtomicBool;

    /// The fabric runs on one process of a split run; its delays reach the others
    /// in each epoch's second round: the spikes and the fabric's counts are the
    /// single process's, wherever it runs.
    #[test]
    fn a_fabric_on_any_process_gives_the_embedded_cosimulation() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let set: Vec<String> =
            ["scaling.neurons=0.05", "scaling.synapses=0.05", "run.duration_ms=60", "run.transient_ms=0"]
                .map(String::from)
                .to_vec();
        let exp = neuropil_spec::load(&root.join("examples/microcircuit.toml"), &set).unwrap();
        let compiled = neuropil_spec::compile(&exp, &neuropil_spec::Limits::default()).unwrap();
        let net = &compiled.network;
        let hw =
            neuropil_spec::schema::HardwareSpec { preset: "loihi".into(), mapping: String::new(), neurons_per_core: 0 };
        let (shards, steps) = (3, compiled.steps);
        let cancel = AtomicBool::new(false);
        let cfg = |n| RunConfig { threads: 1, shards: n, steps, count_from_step: 0 };
        let mapped = || {
            let mut all = embedded::build(net, shards, 2);
            let (f, _) = fabric_for(net, &mut all, &hw).unwrap();
            (all, f)
        };
        let (all, mut f) = mapped();
        let software = embedded::run_from(net, all.clone(), cfg(shards), &|_| {}, &cancel).0;
        let (one, _) =
            embedded::run_part(net, all, cfg(shards), None, Some(&mut f as &mut dyn SpikeFabric), &|_| {}, &cancel)
                .unwrap();
        assert_ne!(one.spike_hash, software.spike_hash, "the fabric changes the spikes");
        assert!(f.stats.delayed + f.stats.dropped > 0, "{:?}", f.stats);
        for owner in [0, 2] {
            let links = neuropil_sim::local::links(shards);
            let (hashes, stats): (Vec<u64>, Vec<_>) = std::thread::scope(|scope| {
                let handles: Vec<_> = links
                    .into_iter()
                    .map(|mut link| {
                        let (all, f) = mapped();
                        let cancel = &cancel;
                        scope.spawn(move || {
                            let rank = link.rank();
                            let mut start = all;
                            start.shards.retain(|s| s.index() as usize == rank);
                            let mut fabric = (rank == owner).then_some(f);
                            let remote = Remote { link: &mut link, fabric_in_loop: true, exchange_every: 1 };
                            let on = fabric.as_mut().map(|f| f as &mut dyn SpikeFabric);
                            let (out, _) =
                                embedded::run_part(net, start, cfg(1), Some(remote), on, &|_| {}, cancel).unwrap();
                            (out.spike_hash, fabric.map(|f| f.stats))
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).unzip()
            });
            assert!(hashes.iter().all(|&h| h == one.spike_hash), "fabric on {owner}: {hashes:?} vs {}", one.spike_hash);
            assert_eq!(stats.iter().flatten().collect::<Vec<_>>(), [&f.stats], "fabric on {owner}");
        }
    }
}

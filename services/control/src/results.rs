//! The combined output of a run, written with the same writers as `neuropil run`.

use super::*;

pub(crate) struct Finished {
    pub(crate) spike_hash: u64,
    pub(crate) synapses: u64,
    pub(crate) populations: Vec<PopulationCount>,
    pub(crate) bio_time_ms: f64,
    pub(crate) rtf: f64,
    pub(crate) output_dir: String,
}

/// Write summary.json and the parquet files into `<data_dir>/<id>/`, exactly as
/// `neuropil run` would.
pub(crate) fn write_results(data_dir: &std::path::Path, a: &Assignment, out: RunOutput) -> Result<Finished> {
    let format = neuropil_cluster::format_of(&a.format).map_err(anyhow::Error::msg)?;
    let mut experiment = neuropil_spec::parse(&a.document, format, &a.set)?;
    experiment.run.shards = a.shards;
    let compiled = neuropil_spec::compile(&experiment, &neuropil_spec::Limits { memory_bytes: None })?;
    let threads: usize = a.members.iter().map(|m| m.threads as usize).sum();
    let net = &compiled.network;
    let name = if experiment.name.is_empty() { "experiment" } else { experiment.name.as_str() };
    let ctx = neuropil_output::summary::Context {
        experiment: name,
        net,
        start_step: 0,
        steps: out.stats.steps,
        transient_steps: compiled.transient_steps,
        threads,
        shards: a.shards as usize,
        dc_pa: &compiled.dc_compensation_pa,
        peak_rss_bytes: None, // the control's own memory says nothing about the run
    };
    let mut summary = neuropil_output::summary::summarize(&ctx, &out);
    summary.hardware = out.hardware.as_deref().and_then(|h| serde_json::from_str(h).ok());
    let target = data_dir.join(&a.id);
    let staging = neuropil_output::Staging::new(&target)?;
    neuropil_output::write_results(staging.dir(), net, &out, &summary)?;
    staging.commit()?;
    let bio_time_ms = out.stats.steps as f64 * net.dt_ms;
    Ok(Finished {
        spike_hash: out.spike_hash,
        synapses: out.stats.synapses,
        populations: summary
            .populations
            .iter()
            .map(|p| PopulationCount { population: p.name.clone(), spikes: p.spikes, rate_hz: p.rate_hz })
            .collect(),
        bio_time_ms,
        rtf: if bio_time_ms > 0.0 { out.stats.simulate_s / (bio_time_ms / 1000.0) } else { 0.0 },
        output_dir: target.display().to_string(),
    })
}

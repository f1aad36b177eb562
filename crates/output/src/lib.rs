//! What a run leaves behind: `summary.json` (and its text form), Parquet files of
//! spikes, sampled state and weights, `cerebellum.csv`, and the plots. Shared by
//! `neuropil run` and the cluster's control, so both write the same files.

pub mod chart;
pub mod columnar;
mod draw;
pub mod plot;
pub mod staging;
pub mod summary;

pub use staging::Staging;
pub use summary::Summary;

use anyhow::{Context as _, Result};
use neuropil_sim::embedded::RunOutput;
use neuropil_sim::Network;
use std::path::Path;

/// Write summary.json, spikes.parquet, and state.parquet / weights.parquet when
/// the experiment samples state / records weights.
pub fn write_results(dir: &Path, net: &Network, out: &RunOutput, s: &Summary) -> Result<()> {
    let json = serde_json::to_string_pretty(s)?;
    std::fs::write(dir.join("summary.json"), json + "\n").context("writing summary.json")?;
    columnar::write_spikes(&dir.join("spikes.parquet"), net, &out.spikes)?;
    if !net.samplers.is_empty() {
        columnar::write_samples(&dir.join("state.parquet"), net, &out.samples)?;
    }
    if net.record_weights {
        columnar::write_weights(&dir.join("weights.parquet"), net, &out.weights)?;
    }
    if !net.cerebella.is_empty() {
        let mut csv = String::from("module,step,t_ms,target,output,error,predicted\n");
        for m in &out.cerebellum {
            let name = &net.cerebella[m.module as usize].name;
            csv.push_str(&format!(
                "{name},{},{},{},{},{},{}\n",
                m.step,
                m.step as f64 * net.dt_ms,
                m.target,
                m.output,
                m.error,
                m.predicted
            ));
        }
        std::fs::write(dir.join("cerebellum.csv"), csv).context("writing cerebellum.csv")?;
    }
    Ok(())
}

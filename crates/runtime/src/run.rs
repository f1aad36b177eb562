//! An experiment run in this process: load, validate, build, simulate (from scratch
//! or a checkpoint), with periodic checkpoints.

use crate::driver::{drive, Plan, Stretch, Tree};
use crate::progress::ProgressBar;
use anyhow::{bail, Result};
use neuropil_output::summary::{self, Summary};
use neuropil_sim::embedded::{self, Checkpoint, RunOutput};
use neuropil_spec::{Compiled, Experiment, Limits, SpecError};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

/// What to run and how.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    /// Experiment file.
    pub experiment: PathBuf,
    /// `path=value` overrides.
    pub set: Vec<String>,
    /// Threads (overrides the file).
    pub threads: Option<usize>,
    /// Shards (overrides the file).
    pub shards: Option<usize>,
}

/// A validated experiment with its resolved parallelism.
pub struct Prepared {
    /// The experiment as read (after overrides).
    pub experiment: Experiment,
    /// The compiled network.
    pub compiled: Compiled,
    /// Threads to use.
    pub threads: usize,
    /// Shards to use.
    pub shards: usize,
}

/// Read and validate; every problem is a [`SpecError`] (exit code 2).
pub fn prepare(req: &RunRequest) -> Result<Prepared, SpecError> {
    let mut experiment = neuropil_spec::load(&req.experiment, &req.set)?;
    // Resolve parallelism first: the memory estimate depends on the shard count
    // (every shard keeps a row index over all neurons).
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let threads = req.threads.unwrap_or(experiment.run.threads as usize);
    let threads = if threads == 0 { cores } else { threads };
    let shards = req.shards.unwrap_or(experiment.run.shards as usize);
    let shards = if shards == 0 { threads } else { shards };
    for (name, v, max) in [("--threads", threads, 1024), ("--shards", shards, 65_536)] {
        if v > max {
            return Err(SpecError::Invalid(vec![neuropil_spec::FieldError {
                path: name.into(),
                message: format!("{v} is too many; at most {max}"),
            }]));
        }
    }
    experiment.run.threads = threads as u32;
    experiment.run.shards = shards as u32;
    let limits = Limits { memory_bytes: crate::system::available_memory_bytes() };
    let compiled = neuropil_spec::compile(&experiment, &limits)?;
    if let Some(hw) = &experiment.hardware {
        if let Err(e) = crate::cosim::load_preset(&hw.preset) {
            return Err(SpecError::Invalid(vec![neuropil_spec::FieldError {
                path: "hardware.preset".into(),
                message: format!("{e:#}"),
            }]));
        }
    }
    Ok(Prepared { experiment, compiled, threads, shards })
}

/// Periodic checkpoints during a run.
#[derive(Debug, Clone)]
pub struct Periodic {
    /// Biological time between checkpoints, in steps.
    pub every_steps: u64,
    /// File to (re)write, atomically, after every stretch.
    pub path: PathBuf,
}

/// Simulate a prepared experiment for its duration, from scratch or from a
/// checkpoint, optionally writing a checkpoint file every so often; returns the
/// output, its summary and the checkpoint at the end.
pub fn simulate(
    p: &Prepared,
    show_progress: bool,
    resume: Option<Checkpoint>,
    periodic: Option<&Periodic>,
    cancel: &AtomicBool,
) -> Result<(RunOutput, Summary, Checkpoint)> {
    let net = &p.compiled.network;
    let bar = ProgressBar::new(net.dt_ms, show_progress);
    let total = p.compiled.steps;
    let build_start = std::time::Instant::now();
    let mut state = resume.unwrap_or_else(|| embedded::build(net, p.shards, p.threads));
    let (mut fabric, about) = match &p.experiment.hardware {
        Some(hw) => {
            let (f, about) = crate::cosim::fabric_for(net, &mut state, hw)?;
            (Some(f), Some(about))
        }
        None => (None, None),
    };
    match &mut fabric {
        // Resuming a co-simulation: the links are as busy as when it stopped.
        Some(f) if !state.fabric_state.is_empty() => f.restore_state(&state.fabric_state).map_err(|e| {
            anyhow::anyhow!("--resume: {e}; resume with the same experiment, [hardware] section and overrides")
        })?,
        None if !state.fabric_state.is_empty() => {
            bail!("--resume: the checkpoint was written by a co-simulation; add its [hardware] section again")
        }
        _ => {}
    }
    let start_step = state.step();
    let build_s = build_start.elapsed().as_secs_f64();
    let plan = Plan {
        total_steps: total,
        stretch_steps: periodic.map_or(total, |pc| pc.every_steps.max(1)),
        threads: p.threads,
        count_from_step: p.compiled.transient_steps,
        fabric_in_loop: fabric.is_some(),
        exchange_every: 1,
    };
    let mut on_stretch = |s: Stretch<'_>| -> Result<()> {
        if let Some(pc) = periodic {
            crate::checkpoint::write_atomic(&pc.path, s.state)?;
        }
        Ok(())
    };
    // The actors live on a small runtime of their own; this thread runs the epochs.
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("actors").enable_time().build()?;
    let name = if p.experiment.name.is_empty() { "experiment" } else { p.experiment.name.as_str() };
    let census = crate::actors::Census::default();
    let tree = Tree { rt: rt.handle(), name, census: &census, supervisor: None };
    let (mut out, state, fabric) = drive(
        tree,
        net,
        state,
        plan,
        None,
        fabric,
        &|steps, spikes, _| bar.update(steps, total, spikes),
        cancel,
        &mut on_stretch,
    )?;
    out.stats.build_s = build_s;
    let ctx = summary::Context {
        experiment: name,
        net,
        start_step,
        steps: out.stats.steps.saturating_sub(start_step),
        transient_steps: p.compiled.transient_steps,
        threads: p.threads.min(p.shards),
        shards: p.shards,
        dc_pa: &p.compiled.dc_compensation_pa,
        peak_rss_bytes: crate::system::peak_rss_bytes(),
    };
    let mut s = summary::summarize(&ctx, &out);
    if let (Some(f), Some(mut about)) = (&fabric, about) {
        about["fabric"] = serde_json::to_value(f.stats)?;
        s.hardware = Some(about);
    }
    Ok((out, s, state))
}

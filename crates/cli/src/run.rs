//! `neuropil run`: load, validate, build, simulate embedded, write results.

use crate::progress::ProgressBar;
use crate::summary::{self, Summary};
use anyhow::{bail, Context as _, Result};
use neuropil_sim::embedded::{self, Checkpoint, RunConfig, RunOutput};
use neuropil_spec::{Compiled, Experiment, Limits, SpecError};
use std::path::{Path, PathBuf};
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
        if let Err(e) = crate::hwemu::load_preset(&hw.preset) {
            return Err(SpecError::Invalid(vec![neuropil_spec::FieldError {
                path: "hardware.preset".into(),
                message: format!("{e:#}"),
            }]));
        }
    }
    Ok(Prepared { experiment, compiled, threads, shards })
}

/// Set by SIGINT (Ctrl-C): the run stops at the next epoch boundary, and what was
/// simulated is written out with a checkpoint to resume from.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether the last run was stopped by [`INTERRUPTED`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::Relaxed)
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
) -> Result<(RunOutput, Summary, Checkpoint)> {
    let net = &p.compiled.network;
    let bar = ProgressBar::new(net.dt_ms, show_progress);
    let cancel = &INTERRUPTED;
    let total = p.compiled.steps;
    let build_start = std::time::Instant::now();
    let mut state = resume.unwrap_or_else(|| embedded::build(net, p.shards, p.threads));
    let mut fabric = match &p.experiment.hardware {
        Some(hw) => Some(crate::hwemu::fabric_for(net, &mut state, hw)?),
        None => None,
    };
    match &mut fabric {
        // Resuming a co-simulation: the links are as busy as when it stopped.
        Some((f, _)) if !state.fabric_state.is_empty() => f.restore_state(&state.fabric_state).map_err(|e| {
            anyhow::anyhow!("--resume: {e}; resume with the same experiment, [hardware] section and overrides")
        })?,
        None if !state.fabric_state.is_empty() => {
            bail!("--resume: the checkpoint was written by a co-simulation; add its [hardware] section again")
        }
        _ => {}
    }
    let start_step = state.step();
    let build_s = build_start.elapsed().as_secs_f64();
    let stretch = periodic.map_or(total, |pc| pc.every_steps.max(1));
    let mut out: Option<RunOutput> = None;
    let mut done = 0u64;
    while done < total {
        let steps = stretch.min(total - done);
        let cfg =
            RunConfig { threads: p.threads, shards: p.shards, steps, count_from_step: p.compiled.transient_steps };
        let (spikes_before, offset) = (out.as_ref().map_or(0, |o| o.spikes_seen()), done);
        let hook = fabric.as_mut().map(|(f, _)| f as &mut dyn embedded::SpikeFabric);
        let (part, next) = embedded::run_part(
            net,
            state,
            cfg,
            None,
            hook,
            &|pr| bar.update(offset + pr.steps_done, total, spikes_before + pr.spikes),
            cancel,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        done = next.step() - start_step;
        state = next;
        if let Some((f, _)) = &fabric {
            state.fabric_state = f.save_state();
        }
        out = Some(match out {
            None => part,
            Some(acc) => acc.followed_by(part),
        });
        if cancel.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        if let Some(pc) = periodic {
            let tmp = pc.path.with_extension("bin.partial");
            std::fs::write(&tmp, state.to_bytes()).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &pc.path).with_context(|| format!("writing {}", pc.path.display()))?;
        }
    }
    let mut out = out.unwrap_or_default();
    out.stats.build_s = build_s;
    let name = if p.experiment.name.is_empty() { "experiment" } else { p.experiment.name.as_str() };
    let ctx = summary::Context {
        experiment: name,
        net,
        start_step,
        steps: out.stats.steps.saturating_sub(start_step),
        transient_steps: p.compiled.transient_steps,
        threads: p.threads.min(p.shards),
        shards: p.shards,
        dc_pa: &p.compiled.dc_compensation_pa,
    };
    let mut s = summary::summarize(&ctx, &out);
    if let Some((f, about)) = &fabric {
        let mut about = about.clone();
        about["fabric"] = serde_json::to_value(f.stats)?;
        s.hardware = Some(about);
    }
    Ok((out, s, state))
}

/// Largest checkpoint file read back (a full-scale microcircuit is ~3 GB).
pub const MAX_CHECKPOINT_BYTES: u64 = 16 << 30;

/// Read a checkpoint for `p`'s network; errors name the file and the fix.
pub fn load_checkpoint(path: &Path, p: &Prepared) -> Result<Checkpoint> {
    let len = std::fs::metadata(path).with_context(|| format!("--resume {}", path.display()))?.len();
    if len > MAX_CHECKPOINT_BYTES {
        bail!("--resume {}: {len} bytes is more than the {MAX_CHECKPOINT_BYTES} a checkpoint may have", path.display());
    }
    let bytes = std::fs::read(path).with_context(|| format!("--resume {}", path.display()))?;
    let cp = Checkpoint::from_bytes(&bytes, &p.compiled.network)
        .map_err(|e| anyhow::anyhow!("--resume {}: {e}", path.display()))?;
    if cp.shards.len() != p.shards {
        bail!(
            "--resume {}: the checkpoint has {} shards; resume with --shards {}",
            path.display(),
            cp.shards.len(),
            cp.shards.len()
        );
    }
    Ok(cp)
}

/// An output directory written in full or not at all: files go to a sibling
/// staging directory that replaces the target only when everything is written.
pub struct Staging {
    target: PathBuf,
    staging: PathBuf,
    done: bool,
}

impl Staging {
    /// Create the staging directory (fails early if the location is not writable,
    /// or if `target` exists and is not a neuropil output directory).
    pub fn new(target: &Path) -> Result<Staging> {
        if target.exists() {
            let is_ours = target.join("summary.json").exists()
                || std::fs::read_dir(target).map(|mut d| d.next().is_none()).unwrap_or(false);
            if !target.is_dir() || !is_ours {
                bail!(
                    "--out {}: exists and is not a neuropil output directory (no summary.json); choose another path",
                    target.display()
                );
            }
        }
        let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
        let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir(&staging).with_context(|| format!("creating {}", staging.display()))?;
        Ok(Staging { target: target.to_path_buf(), staging, done: false })
    }

    /// Where to write files.
    pub fn dir(&self) -> &Path {
        &self.staging
    }

    /// Replace the target with the staged files.
    pub fn commit(mut self) -> Result<()> {
        if self.target.exists() {
            std::fs::remove_dir_all(&self.target).with_context(|| format!("replacing {}", self.target.display()))?;
        }
        std::fs::rename(&self.staging, &self.target)
            .with_context(|| format!("moving results into {}", self.target.display()))?;
        self.done = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }
}

/// Write summary.json, spikes.parquet, and state.parquet / weights.parquet when
/// the experiment samples state / records weights.
pub fn write_results(dir: &Path, p: &Prepared, out: &RunOutput, s: &Summary) -> Result<()> {
    let net = &p.compiled.network;
    let json = serde_json::to_string_pretty(s)?;
    std::fs::write(dir.join("summary.json"), json + "\n").context("writing summary.json")?;
    crate::columnar::write_spikes(&dir.join("spikes.parquet"), net, &out.spikes)?;
    if !net.samplers.is_empty() {
        crate::columnar::write_samples(&dir.join("state.parquet"), net, &out.samples)?;
    }
    if net.record_weights {
        crate::columnar::write_weights(&dir.join("weights.parquet"), net, &out.weights)?;
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

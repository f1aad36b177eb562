//! The one stretch driver: runs a network's shards (all of them, or this process's
//! share with a transport to the others) in stretches of biological time, joining
//! the stretches' outputs. `neuropil run` and the cluster's node both run through it;
//! what they do between stretches (a periodic checkpoint; metrics, live spikes and
//! progress) is theirs, in `on_stretch`.

use neuropil_hwemu::cosim::CoSim;
use neuropil_sim::embedded::{self, Checkpoint, RunConfig, RunOutput, SpikeFabric, Transport};
use neuropil_sim::Network;
use std::sync::atomic::{AtomicBool, Ordering};

/// How long to run and in what pieces.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Steps to simulate in all.
    pub total_steps: u64,
    /// Steps per stretch (the last one may be shorter); `on_stretch` runs after each.
    pub stretch_steps: u64,
    /// Worker threads.
    pub threads: usize,
    /// Spikes before this absolute step are left out of the counted rates.
    pub count_from_step: u64,
}

impl Plan {
    /// Stretches of about `ms` of biological time, rounded up to whole epochs (a
    /// stretch boundary is then an epoch boundary, where every node stops together).
    pub fn stretch_steps_for(net: &Network, ms: f64) -> u64 {
        let epoch = net.epoch_steps() as u64;
        ((ms / net.dt_ms).round() as u64).div_ceil(epoch).max(1) * epoch
    }
}

/// What `on_stretch` sees after each stretch.
pub struct Stretch<'a> {
    /// The stretch's output (before it is joined to the run's).
    pub part: &'a RunOutput,
    /// The state after it (a checkpoint of the whole of this process's shards).
    pub state: &'a Checkpoint,
    /// Steps simulated so far in this run.
    pub steps_done: u64,
    /// The run's output so far, including this stretch: spikes seen and per
    /// population.
    pub spikes_seen: u64,
    /// Spikes per population so far.
    pub spike_counts: &'a [u64],
}

/// Progress within a stretch: steps done in the run, spikes in the run, and the
/// per-population counts as of the start of the stretch.
pub type ProgressFn<'a> = dyn Fn(u64, u64, &[u64]) + Sync + 'a;

/// Why a drive stopped before its end, or failed.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    /// The transport to the other nodes failed (a peer vanished, timed out, ...).
    #[error("{0}")]
    Transport(#[from] embedded::TransportError),
    /// What the caller does between stretches failed.
    #[error("{0:#}")]
    Between(anyhow::Error),
}

/// Run `plan.total_steps` from `state`. Stops early when `cancel` is set: alone at
/// the next epoch boundary without a transport, or, with one, after the epoch at
/// which every node stops together (the stop travels in the epoch messages). The
/// fabric's link state is saved into the returned checkpoint after every stretch.
#[allow(clippy::too_many_arguments)]
pub fn drive(
    net: &Network,
    mut state: Checkpoint,
    plan: Plan,
    mut transport: Option<&mut dyn Transport>,
    mut fabric: Option<&mut CoSim>,
    progress: &ProgressFn<'_>,
    cancel: &AtomicBool,
    on_stretch: &mut dyn FnMut(Stretch<'_>) -> anyhow::Result<()>,
) -> Result<(RunOutput, Checkpoint), DriveError> {
    let n_pop = net.populations.len();
    let shards = state.shards.len();
    let alone = transport.is_none();
    let mut out: Option<RunOutput> = None;
    let mut done = 0u64;
    while done < plan.total_steps {
        let steps = plan.stretch_steps.max(1).min(plan.total_steps - done);
        let cfg = RunConfig { threads: plan.threads, shards, steps, count_from_step: plan.count_from_step };
        let counts_before = out.as_ref().map_or_else(|| vec![0; n_pop], |o| o.spike_counts.clone());
        let (spikes_before, offset) = (out.as_ref().map_or(0, |o| o.spikes_seen()), done);
        let step_before = state.step();
        let (part, next) = embedded::run_part(
            net,
            state,
            cfg,
            transport.as_mut().map(|t| &mut **t as &mut dyn Transport),
            fabric.as_mut().map(|f| &mut **f as &mut dyn SpikeFabric),
            &|p| progress(offset + p.steps_done, spikes_before + p.spikes, &counts_before),
            cancel,
        )?;
        let advanced = next.step() - step_before;
        done += advanced;
        state = next;
        if let Some(f) = &fabric {
            state.fabric_state = f.save_state();
        }
        let (spikes_seen, counts) = {
            let mut counts = counts_before;
            counts.iter_mut().zip(&part.spike_counts).for_each(|(c, n)| *c += n);
            (spikes_before + part.spikes_seen(), counts)
        };
        on_stretch(Stretch { part: &part, state: &state, steps_done: done, spikes_seen, spike_counts: &counts })
            .map_err(DriveError::Between)?;
        out = Some(match out {
            None => part,
            Some(acc) => acc.followed_by(part),
        });
        if advanced < steps || (alone && cancel.load(Ordering::Relaxed)) {
            break; // cancelled (with a transport: together with every peer)
        }
    }
    Ok((out.unwrap_or_default(), state))
}

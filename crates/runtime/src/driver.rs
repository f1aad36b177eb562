//! The one stretch driver: runs a network's shards (all of them, or this process's
//! share with a transport to the others) in stretches of biological time, joining
//! the stretches' outputs. `neuropil run` and the cluster's node both run through it;
//! what they do between stretches (a periodic checkpoint; metrics, live spikes and
//! progress) is theirs, in `on_stretch`.
//!
//! The state lives in an actor tree ([`crate::actors`]); the calling thread is the
//! epoch loop's, which runs each stretch the run actor hands it. The transport and
//! the caller's closures stay on this thread.

use crate::actors::run::{Job, JobDone, RunActor, RunArgs};
use crate::actors::Census;
use neuropil_hwemu::cosim::CoSim;
use neuropil_sim::embedded::{self, Checkpoint, Remote, RunConfig, RunOutput, SpikeFabric, StretchError, Transport};
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
    /// An emulated fabric is in the run's loop, here or on another node (with a
    /// transport, its delays then travel in a second round every epoch).
    pub fabric_in_loop: bool,
    /// With a transport: epochs per exchange with the other nodes (the two-tier
    /// exchange, `neuropil_sim::tiers`; 1: every epoch). The same on every node.
    pub exchange_every: u64,
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
    /// The epoch loop failed: the transport to the other nodes (a peer vanished,
    /// timed out, ...), or a shard's or module's code.
    #[error("{0}")]
    Stretch(#[from] StretchError),
    /// What the caller does between stretches failed.
    #[error("{0:#}")]
    Between(anyhow::Error),
    /// An actor of the run failed; its supervisor failed the run.
    #[error("{kind} actor {actor} failed: {message}")]
    Actor {
        /// Its kind (`population_shard`, `astrocyte_shard`, `cerebellar_module`, `fabric`, `run`).
        kind: &'static str,
        /// Its name in the run (`shard-3`).
        actor: String,
        /// Why.
        message: String,
    },
}

/// Where a run's actors live.
#[derive(Clone)]
pub struct Tree<'a> {
    /// The runtime the actors run on (the calling thread must not be one of its
    /// workers: it blocks, running the epochs).
    pub rt: &'a tokio::runtime::Handle,
    /// The run's name (its experiment id on a node).
    pub name: &'a str,
    /// Where the actors are counted.
    pub census: &'a Census,
    /// The run actor's supervisor (a node's node actor), or none (`neuropil run`).
    pub supervisor: Option<ractor::ActorCell>,
}

/// Run `plan.total_steps` from `state`. Stops early when `cancel` is set: alone at
/// the next epoch boundary without a transport, or, with one, after the epoch at
/// which every node stops together (the stop travels in the epoch messages). The
/// fabric's link state is saved into the returned checkpoint after every stretch.
#[allow(clippy::too_many_arguments)]
pub fn drive(
    tree: Tree<'_>,
    net: &Network,
    state: Checkpoint,
    plan: Plan,
    mut transport: Option<&mut dyn Transport>,
    fabric: Option<CoSim>,
    progress: &ProgressFn<'_>,
    cancel: &AtomicBool,
    on_stretch: &mut dyn FnMut(Stretch<'_>) -> anyhow::Result<()>,
) -> Result<(RunOutput, Checkpoint, Option<CoSim>), DriveError> {
    let alone = transport.is_none();
    let (jobs, stretches) = std::sync::mpsc::channel::<Job>();
    let (finished, outcome) = tokio::sync::oneshot::channel();
    let args = RunArgs {
        name: tree.name.to_string(),
        census: tree.census.clone(),
        start: state,
        fabric,
        total_steps: plan.total_steps,
        stretch_steps: plan.stretch_steps,
        populations: net.populations.len(),
        jobs,
        finished,
    };
    let spawned = tree.rt.block_on(async {
        match tree.supervisor.clone() {
            Some(sup) => ractor::Actor::spawn_linked(None, RunActor, args, sup).await,
            None => ractor::Actor::spawn(None, RunActor, args).await,
        }
    });
    let (_run, run_done) = spawned.map_err(|e| DriveError::Actor {
        kind: "run",
        actor: tree.name.to_string(),
        message: format!("cannot start: {e}"),
    })?;
    // The epoch loop: every stretch the run actor hands over, until it is done.
    while let Ok(job) = stretches.recv() {
        let Job { cp, mut fabric, steps, steps_before, spikes_before, counts_before, reply } = job;
        let cfg =
            RunConfig { threads: plan.threads, shards: cp.shards.len(), steps, count_from_step: plan.count_from_step };
        let step_before = cp.step();
        let ran = embedded::run_part(
            net,
            cp,
            cfg,
            transport.as_mut().map(|t| Remote {
                link: &mut **t,
                fabric_in_loop: plan.fabric_in_loop,
                exchange_every: plan.exchange_every,
            }),
            fabric.as_mut().map(|f| f as &mut dyn SpikeFabric),
            &|p| progress(steps_before + p.steps_done, spikes_before + p.spikes, &counts_before),
            cancel,
        );
        let mut advanced = 0;
        let result = ran.map_err(DriveError::from).and_then(|(part, mut next)| {
            advanced = next.step() - step_before;
            if let Some(f) = &fabric {
                next.fabric_state = f.save_state();
            }
            let mut counts = counts_before.clone();
            counts.iter_mut().zip(&part.spike_counts).for_each(|(c, n)| *c += n);
            let stretch = Stretch {
                part: &part,
                state: &next,
                steps_done: steps_before + advanced,
                spikes_seen: spikes_before + part.spikes_seen(),
                spike_counts: &counts,
            };
            on_stretch(stretch).map_err(DriveError::Between)?;
            Ok((part, next))
        });
        let asked = result.as_ref().is_ok_and(|(part, _)| part.stopped);
        let stopped = advanced < steps || asked || (alone && cancel.load(Ordering::Relaxed));
        let _ = reply.send(JobDone { result, fabric, advanced, stopped });
    }
    let outcome = tree.rt.block_on(async {
        let outcome = outcome.await;
        let _ = run_done.await;
        outcome
    });
    outcome.unwrap_or_else(|_| {
        Err(DriveError::Actor { kind: "run", actor: tree.name.to_string(), message: "ended without a result".into() })
    })
}

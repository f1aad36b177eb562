//! The run actor: one per experiment run on a process. It spawns (and supervises)
//! the actors owning the run's state, and runs the experiment stretch by stretch:
//! it borrows the state from its children, hands it to the epoch loop on the
//! driving thread (see [`crate::driver::drive`]), joins the stretch's output and
//! gives the state back, reading its mailbox between stretches.

use super::census::{ActorKind, ActorState, Census};
use super::owner::{Owner, OwnerArgs, OwnerMsg};
use crate::driver::DriveError;
use neuropil_hwemu::cosim::CoSim;
use neuropil_sim::cerebellum::runtime::ModuleRun;
use neuropil_sim::embedded::{Checkpoint, RunOutput, StretchError};
use neuropil_sim::network::Exchange;
use neuropil_sim::shard::Shard;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::oneshot;

/// A stretch for the epoch loop: the whole state of this process's part of the
/// run, and how far to go.
pub(crate) struct Job {
    pub cp: Checkpoint,
    pub fabric: Option<CoSim>,
    /// Steps to run.
    pub steps: u64,
    /// Steps done before it.
    pub steps_before: u64,
    /// Spikes before it, in all and per population.
    pub spikes_before: u64,
    pub counts_before: Vec<u64>,
    pub reply: oneshot::Sender<JobDone>,
}

/// What the epoch loop gives back.
pub(crate) struct JobDone {
    pub result: Result<(RunOutput, Checkpoint), DriveError>,
    pub fabric: Option<CoSim>,
    /// Steps the stretch advanced (fewer than asked when it stopped early).
    pub advanced: u64,
    /// The run was cancelled (this process alone, or with its peers).
    pub stopped: bool,
}

/// How a run ended: its output, the final state, the fabric; or why it failed.
pub(crate) type Outcome = Result<(RunOutput, Checkpoint, Option<CoSim>), DriveError>;

/// What the run actor is told.
pub(crate) enum RunMsg {
    /// Run the next stretch (or finish).
    Stretch,
}

/// The run actor.
pub(crate) struct RunActor;

/// What it starts with.
pub(crate) struct RunArgs {
    pub name: String,
    pub census: Census,
    pub start: Checkpoint,
    pub fabric: Option<CoSim>,
    pub total_steps: u64,
    pub stretch_steps: u64,
    pub populations: usize,
    pub jobs: std::sync::mpsc::Sender<Job>,
    pub finished: oneshot::Sender<Outcome>,
}

/// Its state.
pub(crate) struct RunState {
    name: String,
    census: Census,
    shards: Vec<(u32, ActorRef<OwnerMsg<Shard>>)>,
    /// The modules this process runs, by index (of `module_count` in the network).
    modules: Vec<(usize, ActorRef<OwnerMsg<ModuleRun>>)>,
    module_count: usize,
    fabric: Option<ActorRef<OwnerMsg<CoSim>>>,
    /// Every child: id, kind and name.
    children: Vec<(ActorId, ActorKind, String)>,
    /// The part of the state that is the run's own between stretches.
    network_hash: u64,
    pending: Exchange,
    spike_hash_state: u64,
    fabric_state: Vec<u8>,
    total_steps: u64,
    stretch_steps: u64,
    populations: usize,
    done_steps: u64,
    out: Option<RunOutput>,
    jobs: Option<std::sync::mpsc::Sender<Job>>,
    finished: Option<oneshot::Sender<Outcome>>,
}

impl Actor for RunActor {
    type Msg = RunMsg;
    type State = RunState;
    type Arguments = RunArgs;

    async fn pre_start(&self, me: ActorRef<RunMsg>, a: RunArgs) -> Result<RunState, ActorProcessingErr> {
        a.census.started(ActorKind::Run, "run");
        let census = a.census.clone();
        let started = RunState::start(me, a).await;
        if started.is_err() {
            // ractor stops the children spawned so far without their post_stop:
            // say here that they (and the run) are gone.
            census.end_running(ActorState::Failed);
        }
        started
    }

    async fn handle(&self, me: ActorRef<RunMsg>, msg: RunMsg, s: &mut RunState) -> Result<(), ActorProcessingErr> {
        match msg {
            RunMsg::Stretch => s.stretch(&me).await,
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        me: ActorRef<RunMsg>,
        ev: SupervisionEvent,
        s: &mut RunState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, err) = ev {
            let id = cell.get_id();
            let (kind, name) = s
                .children
                .iter()
                .find(|c| c.0 == id)
                .map_or((ActorKind::Run, format!("actor {id}")), |c| (c.1, c.2.clone()));
            s.census.ended(&name, ActorState::Failed);
            tracing::error!(run = %s.name, actor = %name, kind = kind.label(), error = %err, "actor failed");
            let e = DriveError::Actor { kind: kind.label(), actor: name, message: err.to_string() };
            s.complete(&me, Err(e)).await;
        }
        Ok(())
    }

    async fn post_stop(&self, _me: ActorRef<RunMsg>, s: &mut RunState) -> Result<(), ActorProcessingErr> {
        if s.finished.is_some() {
            // Stopped from outside before the run ended.
            let e = DriveError::Actor { kind: "run", actor: s.name.clone(), message: "stopped before the end".into() };
            if let Some(f) = s.finished.take() {
                let _ = f.send(Err(e));
            }
        }
        Ok(())
    }
}

impl RunState {
    /// Spawn the children that own the state of `a.start` and ask for the first
    /// stretch.
    async fn start(me: ActorRef<RunMsg>, a: RunArgs) -> Result<RunState, ActorProcessingErr> {
        let Checkpoint { network_hash, shards, pending, spike_hash_state, modules, fabric_state } = a.start;
        let mut s = RunState {
            name: a.name,
            census: a.census,
            shards: Vec::with_capacity(shards.len()),
            modules: Vec::with_capacity(modules.len()),
            module_count: modules.len(),
            fabric: None,
            children: Vec::new(),
            network_hash,
            pending,
            spike_hash_state,
            fabric_state,
            total_steps: a.total_steps,
            stretch_steps: a.stretch_steps.max(1),
            populations: a.populations,
            done_steps: 0,
            out: None,
            jobs: Some(a.jobs),
            finished: Some(a.finished),
        };
        for shard in shards {
            let index = shard.index();
            let kind =
                if shard.holds_only_astrocytes() { ActorKind::AstrocyteShard } else { ActorKind::PopulationShard };
            let r = s.spawn_child(&me, kind, format!("shard-{index}"), shard).await?;
            s.shards.push((index, r));
        }
        // Only the modules placed on this process (all of them in `neuropil run`).
        for (i, m) in modules.into_iter().enumerate() {
            let Some(m) = m else { continue };
            let r = s.spawn_child(&me, ActorKind::CerebellarModule, format!("module-{i}"), m).await?;
            s.modules.push((i, r));
        }
        if let Some(f) = a.fabric {
            s.fabric = Some(s.spawn_child(&me, ActorKind::Fabric, "fabric".into(), f).await?);
        }
        me.cast(RunMsg::Stretch)?;
        Ok(s)
    }

    async fn spawn_child<T: Send + 'static>(
        &mut self,
        me: &ActorRef<RunMsg>,
        kind: ActorKind,
        name: String,
        state: T,
    ) -> Result<ActorRef<OwnerMsg<T>>, ActorProcessingErr> {
        let args = OwnerArgs { kind, name: name.clone(), state, census: self.census.clone() };
        let (r, _) = Actor::spawn_linked(None, Owner::<T>::default(), args, me.get_cell()).await?;
        self.children.push((r.get_id(), kind, name));
        Ok(r)
    }

    /// Borrow every child's state: the checkpoint of this process's part.
    async fn gather(&mut self) -> Result<(Checkpoint, Option<CoSim>), DriveError> {
        let lost = |what: &str, e: &dyn std::fmt::Display| DriveError::Actor {
            kind: "run",
            actor: "run".into(),
            message: format!("{what} did not lend its state: {e}"),
        };
        let mut shards = Vec::with_capacity(self.shards.len());
        for (i, r) in &self.shards {
            shards.push(ractor::call!(r, OwnerMsg::Lend).map_err(|e| lost(&format!("shard-{i}"), &e))?);
        }
        let mut modules: Vec<Option<ModuleRun>> = (0..self.module_count).map(|_| None).collect();
        for (i, r) in &self.modules {
            modules[*i] = Some(ractor::call!(r, OwnerMsg::Lend).map_err(|e| lost(&format!("module-{i}"), &e))?);
        }
        let fabric = match &self.fabric {
            Some(r) => Some(ractor::call!(r, OwnerMsg::Lend).map_err(|e| lost("fabric", &e))?),
            None => None,
        };
        let cp = Checkpoint {
            network_hash: self.network_hash,
            shards,
            pending: std::mem::take(&mut self.pending),
            spike_hash_state: self.spike_hash_state,
            modules,
            fabric_state: std::mem::take(&mut self.fabric_state),
        };
        Ok((cp, fabric))
    }

    /// Give the state back to the children after a stretch.
    fn scatter(&mut self, cp: Checkpoint, fabric: Option<CoSim>) {
        let Checkpoint { shards, pending, spike_hash_state, modules, fabric_state, .. } = cp;
        for ((_, r), shard) in self.shards.iter().zip(shards) {
            let _ = r.cast(OwnerMsg::Keep(shard));
        }
        let mut modules = modules;
        for (i, r) in &self.modules {
            if let Some(m) = modules.get_mut(*i).and_then(Option::take) {
                let _ = r.cast(OwnerMsg::Keep(m));
            }
        }
        if let (Some(r), Some(f)) = (&self.fabric, fabric) {
            let _ = r.cast(OwnerMsg::Keep(f));
        }
        (self.pending, self.spike_hash_state, self.fabric_state) = (pending, spike_hash_state, fabric_state);
    }

    async fn stretch(&mut self, me: &ActorRef<RunMsg>) {
        let (cp, fabric) = match self.gather().await {
            Ok(x) => x,
            Err(e) => return self.complete(me, Err(e)).await,
        };
        if self.done_steps >= self.total_steps {
            let out = self.out.take().unwrap_or_default();
            return self.complete(me, Ok((out, cp, fabric))).await;
        }
        let counts_before = self.out.as_ref().map_or_else(|| vec![0; self.populations], |o| o.spike_counts.clone());
        let (reply, done) = oneshot::channel();
        let steps = self.stretch_steps.min(self.total_steps - self.done_steps);
        let job = Job {
            cp,
            fabric,
            steps,
            steps_before: self.done_steps,
            spikes_before: self.out.as_ref().map_or(0, |o| o.spikes_seen()),
            counts_before,
            reply,
        };
        let sent = self.jobs.as_ref().map(|j| j.send(job).is_ok()).unwrap_or(false);
        let lost = || DriveError::Actor { kind: "run", actor: "run".into(), message: "the epoch loop is gone".into() };
        if !sent {
            return self.complete(me, Err(lost())).await;
        }
        let Ok(JobDone { result, fabric, advanced, stopped }) = done.await else {
            return self.complete(me, Err(lost())).await;
        };
        match result {
            Ok((part, next)) => {
                self.done_steps += advanced;
                self.out = Some(match self.out.take() {
                    None => part,
                    Some(acc) => acc.followed_by(part),
                });
                if stopped || advanced < steps || self.done_steps >= self.total_steps {
                    let out = self.out.take().unwrap_or_default();
                    return self.complete(me, Ok((out, next, fabric))).await;
                }
                self.scatter(next, fabric);
                let _ = me.cast(RunMsg::Stretch);
            }
            // The epoch loop caught a shard's or a module's failure: that child fails
            // as itself, and its supervision event (this actor) fails the run.
            Err(DriveError::Stretch(e @ (StretchError::Shard { .. } | StretchError::Module { .. }))) => {
                let told = match &e {
                    StretchError::Shard { shard, .. } => self
                        .shards
                        .iter()
                        .find(|(i, _)| i == shard)
                        .is_some_and(|(_, r)| r.cast(OwnerMsg::Fail(e.to_string())).is_ok()),
                    StretchError::Module { module, .. } => self
                        .modules
                        .iter()
                        .find(|(i, _)| *i == *module as usize)
                        .is_some_and(|(_, r)| r.cast(OwnerMsg::Fail(e.to_string())).is_ok()),
                    StretchError::Transport(_) => false,
                };
                if !told {
                    self.complete(me, Err(e.into())).await;
                }
            }
            Err(e) => self.complete(me, Err(e)).await,
        }
    }

    /// End the run: say how, stop the children and this actor.
    async fn complete(&mut self, me: &ActorRef<RunMsg>, outcome: Outcome) {
        let failed = outcome.is_err();
        if let Some(f) = self.finished.take() {
            let _ = f.send(outcome);
        }
        self.jobs = None; // the epoch loop ends
        me.stop_children_and_wait(None, Some(std::time::Duration::from_secs(10))).await;
        self.census.ended("run", if failed { ActorState::Failed } else { ActorState::Stopped });
        me.stop(None);
    }
}

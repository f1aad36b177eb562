//! Which actors a run has and in what state, for metrics (`neuropil_actors{kind}`)
//! and `neuropil status --json`.

use std::sync::{Arc, Mutex};

/// What an actor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActorKind {
    /// An experiment's run on this process (supervises the others).
    Run,
    /// A shard of the neuron populations (with the astrocytes that share it, when
    /// the layout mixes them: round-robin spreads every population over every shard).
    PopulationShard,
    /// A shard that holds astrocytes only (a grouped layout with the astrocyte
    /// populations in a group of their own): its currents reach the neurons as
    /// state values, like any other shard's.
    AstrocyteShard,
    /// A cerebellar module.
    CerebellarModule,
    /// A co-simulated chip fabric.
    Fabric,
}

impl ActorKind {
    /// Every kind, in the order metrics list them.
    pub const ALL: [ActorKind; 5] = [
        ActorKind::Run,
        ActorKind::PopulationShard,
        ActorKind::AstrocyteShard,
        ActorKind::CerebellarModule,
        ActorKind::Fabric,
    ];

    /// The label used in metrics and JSON.
    pub fn label(self) -> &'static str {
        match self {
            ActorKind::Run => "run",
            ActorKind::PopulationShard => "population_shard",
            ActorKind::AstrocyteShard => "astrocyte_shard",
            ActorKind::CerebellarModule => "cerebellar_module",
            ActorKind::Fabric => "fabric",
        }
    }
}

/// An actor's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorState {
    /// Started and not yet stopped.
    Running,
    /// Stopped after its run ended (or was cancelled).
    Stopped,
    /// Failed; its supervisor failed the run.
    Failed,
}

impl ActorState {
    /// The label used in JSON.
    pub fn label(self) -> &'static str {
        match self {
            ActorState::Running => "running",
            ActorState::Stopped => "stopped",
            ActorState::Failed => "failed",
        }
    }
}

/// One actor as others see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorInfo {
    /// Its kind.
    pub kind: ActorKind,
    /// Its name (unique within the run: `run`, `shard-3`, `module-cerebellum`, `fabric`).
    pub name: String,
    /// Its state.
    pub state: ActorState,
}

/// Called with (kind, +1) when an actor starts and (kind, -1) when it ends.
pub type Observer = Arc<dyn Fn(ActorKind, i64) + Send + Sync>;

/// The actors of one run. Cheap to clone; clones share.
#[derive(Clone, Default)]
pub struct Census {
    inner: Arc<Mutex<Vec<ActorInfo>>>,
    observer: Option<Observer>,
}

impl Census {
    /// A census that also tells `observer` of every start and end (a node keeps
    /// its `neuropil_actors{kind}` gauges with it).
    pub fn observed(observer: Observer) -> Census {
        Census { inner: Arc::default(), observer: Some(observer) }
    }

    /// `name` started.
    pub(crate) fn started(&self, kind: ActorKind, name: &str) {
        self.lock().push(ActorInfo { kind, name: name.to_string(), state: ActorState::Running });
        if let Some(o) = &self.observer {
            o(kind, 1);
        }
    }

    /// `name` ended in `state` (a failure is never turned back into a stop).
    pub(crate) fn ended(&self, name: &str, state: ActorState) {
        let kind = {
            let mut all = self.lock();
            let Some(a) = all.iter_mut().find(|a| a.name == name) else { return };
            let was = a.state;
            if was == ActorState::Failed || (was == ActorState::Stopped && state == ActorState::Stopped) {
                return;
            }
            a.state = state;
            if was != ActorState::Running {
                return; // stopped, then found to have failed: counted once
            }
            a.kind
        };
        if let Some(o) = &self.observer {
            o(kind, -1);
        }
    }

    /// Every actor still running ended in `state` (a run whose start failed: its
    /// children were stopped without a word).
    pub(crate) fn end_running(&self, state: ActorState) {
        let running: Vec<String> =
            self.lock().iter().filter(|a| a.state == ActorState::Running).map(|a| a.name.clone()).collect();
        for name in running {
            self.ended(&name, state);
        }
    }

    /// Every actor the run has had, in the order they started.
    pub fn snapshot(&self) -> Vec<ActorInfo> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ActorInfo>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    #[test]
    fn census_counts_each_actor_in_and_out_once() {
        let live = Arc::new(AtomicI64::new(0));
        let l = live.clone();
        let c = Census::observed(Arc::new(move |_, d| {
            l.fetch_add(d, Ordering::Relaxed);
        }));
        c.started(ActorKind::PopulationShard, "shard-0");
        c.started(ActorKind::PopulationShard, "shard-1");
        assert_eq!(live.load(Ordering::Relaxed), 2);
        c.ended("shard-0", ActorState::Stopped);
        c.ended("shard-0", ActorState::Stopped);
        c.ended("shard-1", ActorState::Failed);
        c.ended("shard-1", ActorState::Stopped);
        assert_eq!(live.load(Ordering::Relaxed), 0);
        let states: Vec<_> = c.snapshot().iter().map(|a| a.state).collect();
        assert_eq!(states, [ActorState::Stopped, ActorState::Failed]);
        c.started(ActorKind::Fabric, "fabric");
        c.ended("fabric", ActorState::Stopped);
        c.ended("fabric", ActorState::Failed); // stopped, then its failure arrives
        assert_eq!(live.load(Ordering::Relaxed), 0);
        assert_eq!(c.snapshot()[2].state, ActorState::Failed);
        // A run that could not start: whatever it had spawned ends with it.
        c.started(ActorKind::Run, "run");
        c.started(ActorKind::PopulationShard, "shard-2");
        c.end_running(ActorState::Failed);
        assert_eq!(live.load(Ordering::Relaxed), 0);
        assert!(c.snapshot()[3..].iter().all(|a| a.state == ActorState::Failed));
    }
}

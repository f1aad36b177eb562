//! The control's actors (ractor):
//!
//! ```text
//! leader actor (one per control replica: campaigns in the election)
//! └── scheduler actor (while this replica leads: pending experiments onto nodes)
//!     └── collector actor (one per run: follows it to its end, through recoveries)
//! ```
//!
//! Each owns its state and reads one message enum. The scheduler ticks every
//! 200 ms (a message it sends itself); a tick that fails (etcd away) fails the
//! scheduler, and its supervisor, the leader actor, steps down and campaigns
//! again. When the leader lease is lost the leader actor kills the scheduler, and
//! ractor kills the collectors with it: a replica that no longer leads follows no
//! run (the next leader adopts them from etcd). A collector that ends — its run
//! is over, or it panicked — reaches the scheduler as a supervision event; a run
//! still RUNNING in etcd without a collector is adopted again at the next tick.

use super::*;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};

/// How often the scheduler looks at the experiments and the nodes.
const TICK: Duration = Duration::from_millis(200);

/// What the leader actor is told.
pub(crate) enum LeaderMsg {
    /// Take a lease and campaign (again), in a task of its own: the mailbox stays
    /// free for a stop while a standby's campaign waits (up to etcd's 10 s).
    Campaign,
    /// The campaign under this lease won; `lost` says when the lease lapses.
    Elected(i64, tokio::sync::watch::Receiver<bool>),
    /// The campaign did not win (another replica leads, or etcd is away): again
    /// in a second.
    Retry,
    /// This lease was lost.
    Lost(i64),
}

/// The leader actor.
pub(crate) struct LeaderActor;

pub(crate) struct LeaderState {
    control: Arc<Control>,
    ttl_s: i64,
    /// Said once that another replica leads; later campaigns log at debug level.
    standing_by: Arc<std::sync::atomic::AtomicBool>,
    /// A campaign task is under way.
    campaigning: bool,
    /// While leading: the lease and the scheduler.
    leading: Option<(i64, ActorRef<SchedulerMsg>)>,
}

impl Actor for LeaderActor {
    type Msg = LeaderMsg;
    type State = LeaderState;
    type Arguments = (Arc<Control>, i64);

    async fn pre_start(
        &self,
        me: ActorRef<LeaderMsg>,
        (control, ttl_s): (Arc<Control>, i64),
    ) -> Result<LeaderState, ActorProcessingErr> {
        me.cast(LeaderMsg::Campaign)?;
        Ok(LeaderState { control, ttl_s, standing_by: Default::default(), campaigning: false, leading: None })
    }

    async fn handle(
        &self,
        me: ActorRef<LeaderMsg>,
        msg: LeaderMsg,
        s: &mut LeaderState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            LeaderMsg::Campaign if s.leading.is_none() && !s.campaigning => {
                s.campaigning = true;
                tokio::spawn(campaign(me.clone(), s.control.clone(), s.ttl_s, s.standing_by.clone()));
            }
            LeaderMsg::Campaign => {}
            LeaderMsg::Elected(lease, mut lost) => {
                s.campaigning = false;
                let id = s.control.id.clone();
                let spawned = Actor::spawn_linked(None, SchedulerActor, s.control.clone(), me.get_cell()).await;
                let scheduler = match spawned {
                    Ok((sch, _)) => sch,
                    Err(e) => {
                        tracing::warn!(control = %id, error = %e, "cannot start the scheduler; campaigning again");
                        s.step_down(&me, lease).await;
                        return Ok(());
                    }
                };
                tracing::info!(control = %id, "elected leader");
                s.control.metrics.leader.set(1);
                s.leading = Some((lease, scheduler));
                let me = me.clone();
                tokio::spawn(async move {
                    let _ = lost.changed().await;
                    let _ = me.cast(LeaderMsg::Lost(lease));
                });
            }
            LeaderMsg::Retry => {
                s.campaigning = false;
                drop(me.send_after(Duration::from_secs(1), || LeaderMsg::Campaign));
            }
            LeaderMsg::Lost(lease) => {
                if s.leading.as_ref().is_some_and(|(l, _)| *l == lease) {
                    tracing::warn!(control = %s.control.id, "lost the leader lease");
                    s.stop_scheduler().await;
                    s.step_down(&me, lease).await;
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        me: ActorRef<LeaderMsg>,
        ev: SupervisionEvent,
        s: &mut LeaderState,
    ) -> Result<(), ActorProcessingErr> {
        let Some((cell, _, why)) = ended(ev) else { return Ok(()) };
        // Only the scheduler of the lease held now (a killed one is gone already).
        let Some((lease, _)) = s.leading.as_ref().filter(|(_, sch)| sch.get_id() == cell.get_id()).cloned() else {
            return Ok(());
        };
        s.leading = None;
        tracing::warn!(control = %s.control.id, error = %why, "scheduler stopped (etcd away?); campaigning again");
        s.step_down(&me, lease).await;
        Ok(())
    }

    async fn post_stop(&self, _me: ActorRef<LeaderMsg>, s: &mut LeaderState) -> Result<(), ActorProcessingErr> {
        // The collectors go before the lease: no other replica may be elected while
        // this one still follows runs.
        if let Some((lease, _)) = s.leading.as_ref().cloned() {
            s.stop_scheduler().await;
            let _ = s.control.etcd.clone().lease_revoke(lease).await;
            s.control.metrics.leader.set(0);
        }
        Ok(())
    }
}

/// One campaign: a lease, then the election (a standby's returns when etcd's
/// request timeout, 10 s, passes: that is waiting, not an error — said once, then
/// only at debug level). Tells the leader actor whether it won. A lease won after
/// the leader actor stopped is given back at once.
async fn campaign(
    me: ActorRef<LeaderMsg>,
    control: Arc<Control>,
    ttl_s: i64,
    standing_by: Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let id = control.id.clone();
    let mut c = control.etcd.clone();
    let (lease, mut lost) = match etcd::lease(&mut c, ttl_s).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(control = %id, error = %format!("{e:#}"), "cannot take an etcd lease; retrying");
            let _ = me.cast(LeaderMsg::Retry);
            return;
        }
    };
    let won = tokio::select! {
        r = c.campaign(LEADER_ELECTION, id.clone(), lease) => Some(r),
        _ = lost.changed() => None,
    };
    match won {
        Some(Ok(_)) => {
            standing_by.store(false, Relaxed);
            if me.cast(LeaderMsg::Elected(lease, lost)).is_err() {
                let _ = c.lease_revoke(lease).await;
            }
            return;
        }
        Some(Err(e)) => {
            if standing_by.swap(true, Relaxed) {
                tracing::debug!(control = %id, error = %e, "still standing by; campaigning again");
            } else {
                tracing::info!(control = %id, error = %e, "standing by: another replica leads (or etcd is slow to answer)");
            }
        }
        None => {}
    }
    let _ = c.lease_revoke(lease).await;
    let _ = me.cast(LeaderMsg::Retry);
}

impl LeaderState {
    /// Kill the scheduler (ractor kills the collectors with it) and wait for it.
    async fn stop_scheduler(&mut self) {
        if let Some((_, scheduler)) = self.leading.take() {
            let _ = scheduler.kill_and_wait(Some(Duration::from_secs(5))).await;
        }
    }

    /// Leave the election: a lease kept alive after the scheduler stopped would hold
    /// the leader key, and no replica (this one included) would lead again.
    async fn step_down(&mut self, me: &ActorRef<LeaderMsg>, lease: i64) {
        let _ = self.control.etcd.clone().lease_revoke(lease).await;
        self.control.metrics.leader.set(0);
        let _ = me.cast(LeaderMsg::Campaign);
    }
}

/// A child that ended: whether it failed, and why (its error, or the reason it
/// was stopped with); `None` for other events.
fn ended(ev: SupervisionEvent) -> Option<(ActorCell, bool, String)> {
    match ev {
        SupervisionEvent::ActorFailed(cell, e) => Some((cell, true, format!("{e:#}"))),
        SupervisionEvent::ActorTerminated(cell, _, why) => Some((cell, false, why.unwrap_or_default())),
        _ => None,
    }
}

/// What the scheduler actor is told.
pub(crate) enum SchedulerMsg {
    /// Look at the experiments and the nodes.
    Tick,
}

/// The scheduler actor: its state is the [`Scheduler`].
pub(crate) struct SchedulerActor;

impl Actor for SchedulerActor {
    type Msg = SchedulerMsg;
    type State = Scheduler;
    type Arguments = Arc<Control>;

    async fn pre_start(
        &self,
        me: ActorRef<SchedulerMsg>,
        control: Arc<Control>,
    ) -> Result<Scheduler, ActorProcessingErr> {
        me.cast(SchedulerMsg::Tick)?;
        Ok(Scheduler { control, collectors: Vec::new() })
    }

    async fn handle(
        &self,
        me: ActorRef<SchedulerMsg>,
        msg: SchedulerMsg,
        s: &mut Scheduler,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SchedulerMsg::Tick => {
                s.tick(&me.get_cell()).await.map_err(|e| format!("{e:#}"))?;
                me.send_after(TICK, || SchedulerMsg::Tick);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _me: ActorRef<SchedulerMsg>,
        ev: SupervisionEvent,
        s: &mut Scheduler,
    ) -> Result<(), ActorProcessingErr> {
        let Some((cell, failed, why)) = ended(ev) else { return Ok(()) };
        let run = s.collectors.iter().position(|(_, c)| c.get_id() == cell.get_id()).map(|i| s.collectors.remove(i).0);
        if let (Some(run), true) = (run, failed) {
            // Adopted again at the next tick if its record still says it runs.
            tracing::error!(control = %s.control.id, run = %run, actor = "collector", error = %why, "collector failed");
        }
        Ok(())
    }
}

/// What a collector actor is told.
pub(crate) enum CollectorMsg {
    /// Follow the run to its end.
    Follow,
}

/// A collector actor: one run, from its assignment to its results.
pub(crate) struct CollectorActor;

impl Actor for CollectorActor {
    type Msg = CollectorMsg;
    type State = Option<(Arc<Control>, Assignment)>;
    type Arguments = (Arc<Control>, Assignment);

    async fn pre_start(
        &self,
        me: ActorRef<CollectorMsg>,
        args: (Arc<Control>, Assignment),
    ) -> Result<Self::State, ActorProcessingErr> {
        me.cast(CollectorMsg::Follow)?;
        Ok(Some(args))
    }

    async fn handle(
        &self,
        me: ActorRef<CollectorMsg>,
        msg: CollectorMsg,
        s: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            // The run's whole life is this one message: nothing else is asked of a
            // collector, and killing it (leadership lost) drops the follow at once.
            CollectorMsg::Follow => {
                if let Some((control, a)) = s.take() {
                    collect(control, a).await;
                }
                me.stop(None);
            }
        }
        Ok(())
    }
}

/// Start a collector for `a` under `scheduler`.
pub(crate) async fn spawn_collector(
    scheduler: &ActorCell,
    control: Arc<Control>,
    a: Assignment,
) -> Result<ActorRef<CollectorMsg>, ractor::SpawnErr> {
    Actor::spawn_linked(None, CollectorActor, (control, a), scheduler.clone()).await.map(|(r, _)| r)
}

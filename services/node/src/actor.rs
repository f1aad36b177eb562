//! The node actor: the root of a node's supervision tree.
//!
//! ```text
//! node actor (one per node process)           assignments, checkpoint requests,
//! └── run actor (one per run on this node)    cancellations, the etcd lease
//!     ├── shard-0 … (population / astrocyte shards)
//!     ├── module-i  (cerebellar modules placed here)
//!     └── fabric    (the co-simulated fabric, if placed here)
//! ```
//!
//! It owns what the control told this node (the keys it watches in etcd arrive as
//! [`NodeMsg::Put`]), the runs it started and the lease it is registered under. It
//! starts each run's share on a thread of its own (the epoch loop blocks); the run
//! actor that drives it is its child, so a run actor that fails reaches it as a
//! supervision event, and the node goes on serving. Queries (a run's handle for
//! WatchRun, the work a draining node still has) are RPCs on its mailbox.

use neuropil_cluster::{experiment_of_run, Assignment, PREFIX, STOP_SUFFIX};
use neuropil_proto::v1::{NodeProgress, SpikeBatch};
use neuropil_runtime::actors::Census;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// Runs whose results are kept for late subscribers.
const KEEP_FINISHED_RUNS: usize = 8;

/// How late a `start` failpoint makes a node start its share of an attempt.
const START_LATE: Duration = Duration::from_secs(3);

/// Cancels remembered for runs not started here yet (the watches of `runs/` and
/// `cancel/` are separate streams: a cancel can come first).
const KEEP_EARLY_CANCELS: usize = 64;

/// A run on this node, as its watchers see it.
pub(crate) struct RunHandle {
    pub progress: watch::Sender<NodeProgress>,
    /// The run's actors (the progress events carry them).
    pub census: Census,
    pub spikes: broadcast::Sender<SpikeBatch>,
    pub result: watch::Sender<Option<Result<Arc<Vec<u8>>, String>>>,
    pub cancel: Arc<AtomicBool>,
    /// Set when the control stops this attempt (a recovery): waits for peers end.
    pub abort: Arc<AtomicBool>,
    /// A checkpoint asked for at this step (u64::MAX: none).
    pub checkpoint_at: Arc<AtomicU64>,
}

impl RunHandle {
    fn new(census: Census) -> Arc<RunHandle> {
        Arc::new(RunHandle {
            progress: watch::channel(NodeProgress { phase: "building".into(), ..Default::default() }).0,
            census,
            spikes: broadcast::channel(256).0,
            result: watch::channel(None).0,
            cancel: Arc::new(AtomicBool::new(false)),
            abort: Arc::new(AtomicBool::new(false)),
            checkpoint_at: Arc::new(AtomicU64::new(u64::MAX)),
        })
    }
}

/// What the node actor is told.
pub(crate) enum NodeMsg {
    /// A key under `runs/`, `checkpoint-at/` or `cancel/` was put (or found on
    /// catching up after etcd was away).
    Put { key: Vec<u8>, value: Vec<u8> },
    /// Start this node's share of an assignment now (after a `start` failpoint).
    Start(Box<Assignment>),
    /// The node is registered under this lease now.
    Lease(i64),
    /// The handle of a run on this node, if it is here.
    Find(String, RpcReplyPort<Option<Arc<RunHandle>>>),
    /// What this node has to do.
    Work(RpcReplyPort<Work>),
    /// A run's thread is over.
    Ended(String),
}

/// What a node has to do, as its node actor knows it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Work {
    /// A run is going on here.
    pub busy: bool,
    /// The runs that ended here (of those still remembered).
    pub ended: Vec<String>,
    /// The lease the node is registered under.
    pub lease: i64,
}

/// Starts this node's share of an assignment (the rank given) on a thread of its
/// own; the thread casts [`NodeMsg::Ended`] to the node actor when it is over, and
/// spawns the run actor linked to the node actor.
pub(crate) type Starter = Arc<dyn Fn(Assignment, usize, Arc<RunHandle>, ActorRef<NodeMsg>) + Send + Sync>;

/// What the node actor starts with.
pub(crate) struct NodeArgs {
    pub id: String,
    /// Where each new run counts its actors.
    pub census: Arc<dyn Fn() -> Census + Send + Sync>,
    pub start: Starter,
}

/// The node actor.
pub(crate) struct NodeActor;

struct Run {
    id: String,
    handle: Arc<RunHandle>,
    ended: bool,
}

/// Its state.
pub(crate) struct NodeState {
    id: String,
    lease: i64,
    runs: Vec<Run>,
    /// `cancel/` keys (past the prefix) that named no run here when they came.
    early_cancels: std::collections::VecDeque<String>,
    census: Arc<dyn Fn() -> Census + Send + Sync>,
    start: Starter,
}

impl Actor for NodeActor {
    type Msg = NodeMsg;
    type State = NodeState;
    type Arguments = NodeArgs;

    async fn pre_start(&self, _me: ActorRef<NodeMsg>, a: NodeArgs) -> Result<NodeState, ActorProcessingErr> {
        Ok(NodeState {
            id: a.id,
            lease: 0,
            runs: Vec::new(),
            early_cancels: Default::default(),
            census: a.census,
            start: a.start,
        })
    }

    async fn handle(&self, me: ActorRef<NodeMsg>, msg: NodeMsg, s: &mut NodeState) -> Result<(), ActorProcessingErr> {
        match msg {
            NodeMsg::Put { key, value } => s.put(&me, &key, &value),
            NodeMsg::Start(a) => s.start(&me, *a),
            NodeMsg::Lease(id) => s.lease = id,
            NodeMsg::Find(run, reply) => {
                let _ = reply.send(s.run(&run).map(|r| r.handle.clone()));
            }
            NodeMsg::Work(reply) => {
                let _ = reply.send(Work {
                    busy: s.runs.iter().any(|r| !r.ended),
                    ended: s.runs.iter().filter(|r| r.ended).map(|r| r.id.clone()).collect(),
                    lease: s.lease,
                });
            }
            NodeMsg::Ended(run) => {
                if let Some(r) = s.runs.iter_mut().find(|r| r.id == run) {
                    r.ended = true;
                }
                s.forget_old();
            }
        }
        Ok(())
    }

    /// A run actor that fails or ends leaves the node serving (ractor's default
    /// would stop the supervisor with it); its run thread reports the outcome.
    async fn handle_supervisor_evt(
        &self,
        _me: ActorRef<NodeMsg>,
        ev: SupervisionEvent,
        s: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        match ev {
            SupervisionEvent::ActorFailed(cell, err) => {
                tracing::error!(node = %s.id, actor = %cell.get_id(), kind = "run", error = %err, "run actor failed");
            }
            SupervisionEvent::ActorTerminated(cell, _, why) => {
                tracing::debug!(node = %s.id, actor = %cell.get_id(), kind = "run", why = ?why, "run actor stopped");
            }
            _ => {}
        }
        Ok(())
    }
}

impl NodeState {
    fn run(&self, id: &str) -> Option<&Run> {
        self.runs.iter().find(|r| r.id == id)
    }

    /// What a key under runs/, checkpoint-at/ or cancel/ tells this node to do.
    fn put(&mut self, me: &ActorRef<NodeMsg>, key: &[u8], value: &[u8]) {
        let key = String::from_utf8_lossy(key);
        let Some(rest) = key.strip_prefix(PREFIX) else { return };
        if rest.starts_with("runs/") {
            match serde_json::from_slice::<Assignment>(value) {
                Ok(a) if self.start_late(&a) => {
                    let me = me.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(START_LATE).await;
                        let _ = me.cast(NodeMsg::Start(Box::new(a)));
                    });
                }
                Ok(a) => self.start(me, a),
                Err(e) => tracing::warn!(node = %self.id, error = %e, "ignoring an undecodable assignment"),
            }
        } else if let Some(run) = rest.strip_prefix("checkpoint-at/") {
            let step = String::from_utf8_lossy(value).parse::<u64>();
            if let (Some(r), Ok(step)) = (self.run(run), step) {
                r.handle.checkpoint_at.store(step, Ordering::Relaxed);
            }
        } else if let Some(id) = rest.strip_prefix("cancel/") {
            let mut hit = false;
            for r in &self.runs {
                hit |= cancel(id, &r.id, &r.handle);
            }
            // An attempt that is assigned but not started here yet (its assignment
            // still on the way, or held by a `start` failpoint): cancelled as it starts.
            if !hit && !self.early_cancels.iter().any(|c| c == id) {
                if self.early_cancels.len() == KEEP_EARLY_CANCELS {
                    self.early_cancels.pop_front();
                }
                self.early_cancels.push_back(id.to_string());
            }
        }
    }

    /// Whether a `start` failpoint is set for this node's rank in `a` (tests only).
    fn start_late(&self, a: &Assignment) -> bool {
        use neuropil_sim::failpoint::{armed, Site};
        let rank = a.members.iter().position(|m| m.node == self.id);
        rank.is_some_and(|r| armed(Site::Start, r as u32, a.attempt as u64)) && self.run(&a.run_id()).is_none()
    }

    /// Start this node's share of `a`, if it has one and is not running it already.
    fn start(&mut self, me: &ActorRef<NodeMsg>, a: Assignment) {
        let Some(rank) = a.members.iter().position(|m| m.node == self.id) else { return };
        let id = a.run_id();
        if self.run(&id).is_some() {
            return;
        }
        let handle = RunHandle::new((self.census)());
        for key in &self.early_cancels {
            cancel(key, &id, &handle);
        }
        self.runs.push(Run { id, handle: handle.clone(), ended: false });
        self.forget_old();
        (self.start)(a, rank, handle, me.clone());
    }

    /// Forget the oldest finished runs beyond the few kept for late watchers.
    fn forget_old(&mut self) {
        while self.runs.len() > KEEP_FINISHED_RUNS {
            match self.runs.iter().position(|r| r.ended) {
                Some(i) => drop(self.runs.remove(i)),
                None => break,
            }
        }
    }
}

/// Apply the `cancel/` key `key` (past the prefix) to run `run`, if it names it:
/// `<experiment>` stops each of its attempts; `<run>@stop` (a recovery) that
/// attempt only, and its waits for peers too. Whether it named the run.
fn cancel(key: &str, run: &str, h: &RunHandle) -> bool {
    let only = key.strip_suffix(STOP_SUFFIX);
    let hit = match only {
        Some(one) => run == one,
        None => experiment_of_run(run) == key,
    };
    if hit {
        h.cancel.store(true, Ordering::Relaxed);
        if only.is_some() {
            h.abort.store(true, Ordering::Relaxed);
        }
    }
    hit
}

#[cfg(test)]
mod tests {
    use super::*;
    use neuropil_cluster::Member;
    use std::sync::Mutex;

    fn member(node: &str) -> Member {
        Member {
            node: node.into(),
            addr: "http://h:1".into(),
            exchange_addr: "http://h:2".into(),
            exchange_socket: None,
            host: "h".into(),
            shards: vec![0],
            threads: 1,
        }
    }

    fn assignment(id: &str, attempt: u32, nodes: &[&str]) -> Assignment {
        Assignment {
            id: id.into(),
            document: String::new(),
            format: "toml".into(),
            set: Vec::new(),
            shards: nodes.len() as u32,
            network_hash: 0,
            members: nodes.iter().map(|n| member(n)).collect(),
            attempt,
            checkpoint_steps: 0,
            resume: None,
            placement: Default::default(),
            shard_bytes: Vec::new(),
        }
    }

    fn put(key: &str, value: &[u8]) -> NodeMsg {
        NodeMsg::Put { key: format!("{PREFIX}{key}").into_bytes(), value: value.to_vec() }
    }

    /// A child that fails on its first message, as a run actor whose code panics.
    struct Failing;
    impl Actor for Failing {
        type Msg = ();
        type State = ();
        type Arguments = ();
        async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
            Ok(())
        }
        async fn handle(&self, _: ActorRef<()>, _: (), _: &mut ()) -> Result<(), ActorProcessingErr> {
            panic!("a model's code panicked")
        }
    }

    /// The node actor starts its share of each assignment once, routes cancels and
    /// checkpoint requests to the runs they name, outlives a failing child, and
    /// knows what is still to do.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_node_actor_runs_what_is_assigned_to_it_and_outlives_a_failing_run_actor() {
        type Started = Vec<(String, usize, Arc<RunHandle>)>;
        let started: Arc<Mutex<Started>> = Arc::default();
        let (log, children) = (started.clone(), Arc::new(Mutex::new(Vec::new())));
        let kids = children.clone();
        let start: Starter = Arc::new(move |a: Assignment, rank, h, node: ActorRef<NodeMsg>| {
            log.lock().unwrap().push((a.run_id(), rank, h));
            // The run's thread spawns its run actor under the node actor; this one fails.
            let kids = kids.clone();
            tokio::spawn(async move {
                let (child, done) = Actor::spawn_linked(None, Failing, (), node.get_cell()).await.unwrap();
                let _ = child.cast(());
                let _ = done.await;
                let _ = node.cast(NodeMsg::Ended(a.run_id()));
                kids.lock().unwrap().push(a.run_id());
            });
        });
        let args = NodeArgs { id: "node-1".into(), census: Arc::new(Census::default), start };
        let (node, _) = Actor::spawn(None, NodeActor, args).await.unwrap();
        let a = serde_json::to_vec(&assignment("exp-1", 0, &["node-0", "node-1"])).unwrap();
        node.cast(put("runs/exp-1", &a)).unwrap();
        node.cast(put("runs/exp-1", &a)).unwrap(); // seen again on catching up
        let elsewhere = serde_json::to_vec(&assignment("exp-2", 0, &["node-0", "node-2"])).unwrap();
        node.cast(put("runs/exp-2", &elsewhere)).unwrap();
        node.cast(put("runs/exp-3", b"not json")).unwrap();
        let retry = serde_json::to_vec(&assignment("exp-1", 1, &["node-1"])).unwrap();
        node.cast(put("runs/exp-1.r1", &retry)).unwrap();
        let work = ractor::call!(node, NodeMsg::Work).unwrap();
        let runs: Vec<(String, usize)> = started.lock().unwrap().iter().map(|(r, k, _)| (r.clone(), *k)).collect();
        assert_eq!(runs, [("exp-1".to_string(), 1), ("exp-1.r1".to_string(), 0)]);
        let handle = |i: usize| started.lock().unwrap()[i].2.clone();
        // A checkpoint request reaches the run it names; a recovery's stop only its attempt.
        node.cast(put("checkpoint-at/exp-1.r1", b"1200")).unwrap();
        node.cast(put(&format!("cancel/exp-1{STOP_SUFFIX}"), b"")).unwrap();
        let _ = ractor::call!(node, NodeMsg::Work).unwrap();
        assert_eq!(handle(1).checkpoint_at.load(Ordering::Relaxed), 1200);
        assert_eq!(handle(0).checkpoint_at.load(Ordering::Relaxed), u64::MAX);
        assert!(handle(0).cancel.load(Ordering::Relaxed) && handle(0).abort.load(Ordering::Relaxed));
        assert!(!handle(1).cancel.load(Ordering::Relaxed));
        // Cancelling the experiment stops every attempt, without an abort.
        node.cast(put("cancel/exp-1", b"")).unwrap();
        let _ = ractor::call!(node, NodeMsg::Work).unwrap();
        assert!(handle(1).cancel.load(Ordering::Relaxed) && !handle(1).abort.load(Ordering::Relaxed));
        // A cancel that comes before its run's assignment (separate watch streams)
        // still stops it when it starts.
        node.cast(put("cancel/exp-4", b"")).unwrap();
        let early = serde_json::to_vec(&assignment("exp-4", 0, &["node-1"])).unwrap();
        node.cast(put("runs/exp-4", &early)).unwrap();
        let _ = ractor::call!(node, NodeMsg::Work).unwrap();
        assert!(handle(2).cancel.load(Ordering::Relaxed) && !handle(2).abort.load(Ordering::Relaxed));
        let found = ractor::call!(node, NodeMsg::Find, "exp-1.r1".to_string()).unwrap();
        assert!(found.is_some_and(|h| Arc::ptr_eq(&h, &handle(1))));
        assert!(ractor::call!(node, NodeMsg::Find, "exp-2".to_string()).unwrap().is_none());
        // Every run actor failed; the node actor is still there and knows they ended.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while children.lock().unwrap().len() < 3 {
            assert!(std::time::Instant::now() < deadline, "the run actors did not end");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        node.cast(NodeMsg::Lease(42)).unwrap();
        let mut after = ractor::call!(node, NodeMsg::Work).unwrap();
        after.ended.sort();
        assert!(work.busy);
        let ended = ["exp-1", "exp-1.r1", "exp-4"].map(String::from).to_vec();
        assert_eq!(after, Work { busy: false, ended, lease: 42 });
        node.stop(None);
    }
}

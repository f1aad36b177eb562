//! `neuropil node`: registers in etcd under a lease, watches for shard
//! assignments, builds its own shards (target side), runs them with the kernel,
//! exchanging every epoch's spikes with its peers directly over gRPC, and reports
//! progress, live spikes and its results to whoever watches the run.

mod actor;
pub mod config;
pub mod error;
pub mod metrics;

use actor::{NodeActor, NodeArgs, NodeMsg, RunHandle, Starter, Work};
use anyhow::{Context as _, Result};
pub use config::NodeConfig;
pub use error::{NodeError, RunError};
use etcd_client::{EventType, WatchOptions};
use metrics::NodeMetrics;
use neuropil_cluster::auth::ClusterToken;
use neuropil_cluster::transport::{ExchangePort, GrpcTransport, Peer};
use neuropil_cluster::{etcd, Assignment, Manifest, Member, NodeRecord, PREFIX};
use neuropil_proto::v1::node_service_server::{NodeService, NodeServiceServer};
use neuropil_proto::v1::{run_event, CheckpointPart, NodeProgress, RunEvent, SpikeBatch, WatchRunRequest};
use neuropil_runtime::actors::Census;
use neuropil_runtime::driver::{drive, Plan, Stretch, Tree};
use neuropil_sim::cerebellum::runtime::ModuleRun;
use neuropil_sim::embedded::{self, Checkpoint, RunOutput, Transport};
use neuropil_sim::Network;
use ractor::{Actor, ActorCell, ActorRef};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};
use tonic::server::NamedService;
use tonic::{Request, Response, Status};

/// Largest message the node's internal API decodes (epoch messages of a full-scale
/// network are far below; this bounds what a misbehaving peer can make it buffer).
const MAX_NODE_MESSAGE_BYTES: usize = 64 << 20;

/// Biological time per stretch between live-spike batches, ms.
const STRETCH_MS: f64 = 100.0;

struct NodeState {
    id: String,
    peer_timeout: Duration,
    emulated_latency: Duration,
    metrics: NodeMetrics,
    exchange: ExchangePort,
    host: String,
    tls: neuropil_cluster::tls::Tls,
    /// What members present to this node's ports, and this node to its peers'.
    token: ClusterToken,
    checkpoint_dir: Option<PathBuf>,
}

/// The handle of run `id` on this node, waiting up to `within` for it to start
/// (a watcher may come before the assignment).
async fn find_run(node: &ActorRef<NodeMsg>, id: &str, within: Duration) -> Option<Arc<RunHandle>> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Ok(Some(h)) = ractor::call!(node, NodeMsg::Find, id.to_string()) {
            return Some(h);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[derive(Clone)]
struct NodeSvc {
    id: String,
    node: ActorRef<NodeMsg>,
}

#[tonic::async_trait]
impl NodeService for NodeSvc {
    type WatchRunStream = tokio_stream::wrappers::ReceiverStream<Result<RunEvent, Status>>;

    async fn watch_run(&self, req: Request<WatchRunRequest>) -> Result<Response<Self::WatchRunStream>, Status> {
        let run = req.into_inner().run;
        if run.is_empty() || run.len() > 128 {
            return Err(NodeError::InvalidArgument("run: give the experiment id (1 to 128 characters)".into()).into());
        }
        let Some(handle) = find_run(&self.node, &run, Duration::from_secs(30)).await else {
            return Err(NodeError::NotFound(format!("run {run:?} is not on this node")).into());
        };
        let node = self.id.clone();
        let with_actors = move |mut p: NodeProgress, census: &Census| {
            p.actors = census
                .snapshot()
                .into_iter()
                .map(|a| neuropil_proto::v1::Actor {
                    kind: a.kind.label().into(),
                    name: a.name,
                    node: node.clone(),
                    state: a.state.label().into(),
                })
                .collect();
            p
        };
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let mut progress = handle.progress.subscribe();
            let mut spikes = handle.spikes.subscribe();
            let mut result = handle.result.subscribe();
            loop {
                let done = result.borrow_and_update().clone();
                if let Some(done) = done {
                    // Spikes still queued go first, then the result.
                    while let Ok(b) = spikes.try_recv() {
                        let _ = tx.send(Ok(RunEvent { event: Some(run_event::Event::Spikes(b)) })).await;
                    }
                    let p = with_actors(progress.borrow().clone(), &handle.census);
                    let _ = tx.send(Ok(RunEvent { event: Some(run_event::Event::Progress(p)) })).await;
                    let event = match done {
                        Ok(bytes) => run_event::Event::Result(bytes.as_ref().clone()),
                        Err(e) => run_event::Event::Error(e),
                    };
                    let _ = tx.send(Ok(RunEvent { event: Some(event) })).await;
                    return;
                }
                let event = tokio::select! {
                    r = progress.changed() => match r {
                        Ok(()) => {
                            let p = progress.borrow_and_update().clone();
                            run_event::Event::Progress(with_actors(p, &handle.census))
                        }
                        Err(_) => continue,
                    },
                    s = spikes.recv() => match s {
                        Ok(b) => run_event::Event::Spikes(b),
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => continue,
                    },
                    _ = result.changed() => continue,
                };
                if tx.send(Ok(RunEvent { event: Some(event) })).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }
}

/// Run a node until `shutdown` completes (the binary passes SIGTERM/SIGINT) or its
/// etcd lease is lost.
pub async fn serve(cfg: NodeConfig, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
    let metrics = NodeMetrics::new(&cfg.id)?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("--listen {}: cannot listen", cfg.listen))?;
    let addr = listener.local_addr()?;
    let advertise = cfg.advertise.clone().unwrap_or_else(|| format!("{}://{addr}", cfg.tls.scheme()));
    dialable("--advertise", &advertise)?;
    let mut exchange = ExchangePort::bind(cfg.exchange_listen)
        .with_context(|| format!("--exchange-listen {}: cannot listen", cfg.exchange_listen))?;
    if let Some(path) = &cfg.exchange_socket {
        exchange.bind_socket(path).map_err(|e| anyhow::anyhow!("--exchange-socket {e}"))?;
    }
    let host = neuropil_cluster::transport::host_identity();
    let exchange_port = exchange.local_addr()?.port();
    let exchange_addr = cfg.exchange_advertise.clone().unwrap_or_else(|| with_port(&advertise, exchange_port));
    dialable("--exchange-advertise", &exchange_addr)?;
    let metrics_addr = neuropil_cluster::telemetry::serve(cfg.metrics_listen, metrics.registry.clone()).await?;
    let mut client = etcd::connect(&cfg.etcd, Duration::from_secs(30)).await?;
    let token = ClusterToken::of_cluster(&mut client, cfg.cluster_token.clone()).await?;

    let state = Arc::new(NodeState {
        id: cfg.id.clone(),
        peer_timeout: cfg.peer_timeout,
        emulated_latency: cfg.emulated_latency,
        metrics: metrics.clone(),
        exchange,
        host: host.clone(),
        tls: cfg.tls.clone(),
        token: token.clone(),
        checkpoint_dir: cfg.checkpoint_dir.clone(),
    });
    // The root of the node's supervision tree (actor.rs).
    let gauge = metrics.actors.clone();
    let census: Arc<dyn Fn() -> Census + Send + Sync> = Arc::new(move || {
        let gauge = gauge.clone();
        Census::observed(Arc::new(move |kind, delta| gauge.with_label_values(&[kind.label()]).add(delta)))
    });
    let args = NodeArgs { id: cfg.id.clone(), census, start: starter(state.clone()) };
    let (node, node_done) = Actor::spawn(None, NodeActor, args).await.context("cannot start the node actor")?;
    let svc = NodeServiceServer::new(NodeSvc { id: cfg.id.clone(), node: node.clone() })
        .max_decoding_message_size(MAX_NODE_MESSAGE_BYTES)
        .max_encoding_message_size(usize::MAX);
    let svc = tonic::service::interceptor::InterceptedService::new(svc, move |req| token.check(req));
    let mut builder = tonic::transport::Server::builder();
    if let Some(t) = &cfg.tls.server {
        builder = builder.tls_config(t.clone()).context("--tls-cert/--tls-key")?;
    }
    let builder = builder.tcp_nodelay(true).http2_keepalive_interval(Some(Duration::from_secs(10)));
    let server =
        neuropil_cluster::server::introspection(builder, &[<NodeServiceServer<NodeSvc> as NamedService>::NAME])
            .await?
            .add_service(svc)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)));
    let server = tokio::spawn(server);

    let (first_lease, first_lost) = etcd::lease(&mut client, cfg.lease_ttl_s).await?;
    let record = NodeRecord {
        id: cfg.id.clone(),
        addr: advertise.clone(),
        exchange_addr: exchange_addr.clone(),
        exchange_socket: cfg.exchange_socket.as_ref().map(|p| p.display().to_string()),
        host: host.clone(),
        threads: cfg.threads as u32,
        memory_bytes: cfg.memory_bytes,
        draining: false,
    };
    // Watch before registering, so that no assignment made right after can be missed.
    let first_watches = watch_all(&mut client).await?;
    // One live node per id: a second one would overwrite the first's record and
    // run its shards too.
    let key = neuropil_cluster::node_key(&cfg.id);
    // A record with this node's own addresses is its previous incarnation (no other
    // live process can serve them), restarted within the lease's time to live.
    let mine = etcd::get_json::<NodeRecord>(&mut client, &key)
        .await?
        .filter(|o| o.addr == record.addr && o.exchange_addr == record.exchange_addr)
        .and_then(|o| serde_json::to_vec(&o).ok());
    let replacing = mine.map_or(etcd::Replacing::Nothing, etcd::Replacing::Value);
    if !etcd::claim_json(&mut client, &key, &record, first_lease, replacing).await? {
        let _ = client.lease_revoke(first_lease).await;
        let other = etcd::get_json::<NodeRecord>(&mut client, &key).await.ok().flatten();
        let at = other.map_or_else(String::new, |o| format!(" (at {})", o.addr));
        anyhow::bail!(
            "--id {}: another live node is registered under this id{at}; give each node its own --id",
            cfg.id
        );
    }
    let _ = node.cast(NodeMsg::Lease(first_lease));
    println!(
        "neuropil node {}: grpc={addr} metrics={metrics_addr} exchange={exchange_addr} advertise={advertise}",
        cfg.id
    );

    // The control's word: assignments, checkpoint requests, cancellations. etcd
    // may go away for a while (a rescheduled pod): the run goes on, and once it is
    // back the node watches again and catches up with what was put meanwhile.
    let watcher = {
        let (id, node, mut client) = (cfg.id.clone(), node.clone(), client.clone());
        async move {
            let mut watches = Some(first_watches);
            loop {
                let mut streams = match watches.take() {
                    Some(w) => w,
                    None => match watch_all(&mut client).await {
                        Ok(w) => {
                            catch_up(&mut client, &node).await;
                            tracing::info!(node = %id, "watching etcd again");
                            w
                        }
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            continue;
                        }
                    },
                };
                let [runs, checkpoints, cancels] = &mut streams;
                loop {
                    let msg = tokio::select! {
                        m = runs.message() => m,
                        m = checkpoints.message() => m,
                        m = cancels.message() => m,
                    };
                    let Ok(Some(resp)) = msg else { break };
                    for ev in resp.events() {
                        if let (EventType::Put, Some(kv)) = (ev.event_type(), ev.kv()) {
                            let _ = node.cast(NodeMsg::Put { key: kv.key().to_vec(), value: kv.value().to_vec() });
                        }
                    }
                }
                tracing::warn!(node = %id, "etcd watch ended (etcd away?); the run goes on, watching again");
            }
            #[allow(unreachable_code)]
            "the etcd watcher stopped"
        }
    };
    // A lease can lapse while this process is starved of CPU (or etcd is briefly
    // away): register again under a new one instead of dying, so that a run in
    // progress goes on; give up only when etcd stays unreachable.
    let registration = {
        let (mut client, record, node, ttl) = (client.clone(), record.clone(), node.clone(), cfg.lease_ttl_s);
        let key = neuropil_cluster::node_key(&cfg.id);
        async move {
            let (mut lost, mut old) = (first_lost, first_lease);
            loop {
                if lost.changed().await.is_err() {
                    return "lease keeper stopped".to_string();
                }
                tracing::warn!(node = %record.id, "etcd lease lapsed; registering again");
                let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                loop {
                    // The old lease may still be alive (a keep-alive stream broke, not
                    // the lease): the record on it is ours to take over.
                    let attempt = async {
                        let (id, rx) = etcd::lease(&mut client, ttl).await?;
                        if !etcd::claim_json(&mut client, &key, &record, id, etcd::Replacing::Lease(old)).await? {
                            let _ = client.lease_revoke(id).await;
                            return anyhow::Ok(Err(id));
                        }
                        anyhow::Ok(Ok((id, rx)))
                    };
                    match attempt.await {
                        Ok(Ok((id, rx))) => {
                            let _ = client.lease_revoke(old).await;
                            let _ = node.cast(NodeMsg::Lease(id));
                            (old, lost) = (id, rx);
                            break;
                        }
                        // Someone registered under this id while the lease was out.
                        Ok(Err(_)) => {
                            return format!("--id {}: another node registered under this id while this one's lease had lapsed; stopping", record.id);
                        }
                        Err(e) if tokio::time::Instant::now() >= deadline => {
                            return format!(
                                "etcd unreachable for 60 s ({e:#}); stopping so the control reassigns work"
                            );
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                    }
                }
            }
        }
    };
    tokio::pin!(watcher);
    tokio::pin!(registration);
    let mut server = server;
    let outcome = tokio::select! {
        why = &mut watcher => Err(anyhow::anyhow!(why)),
        why = &mut registration => Err(anyhow::anyhow!(why)),
        r = &mut server => Err(anyhow::anyhow!("gRPC server stopped: {r:?}")),
        _ = shutdown => Ok(()),
    };
    // Drain (a rolling update, a scale-down): with a run in progress and a
    // checkpoint volume, say so in the record; the control has the nodes write a
    // checkpoint, moves this node's shards to the others from it and stops this
    // attempt here. Then leave.
    //
    // A run between two attempts (a move stopped one, the next is not started
    // here yet) is not idle: the work this node has is what etcd assigns it, not
    // only what runs here now, and it is quiet only once both stay empty for a
    // while (the control may be writing the next attempt as the record changes).
    let work = || async { ractor::call!(node, NodeMsg::Work).ok() };
    let busy = work().await.is_some_and(|w| w.busy);
    if outcome.is_ok()
        && state.checkpoint_dir.is_some()
        && (busy || work_in_cluster(&mut client, &cfg.id, work().await.as_ref()).await.is_some())
    {
        tracing::info!(node = %cfg.id, "draining: the run in progress moves to the other nodes at a checkpoint");
        let draining = NodeRecord { draining: true, ..record.clone() };
        let lease = work().await.map_or(first_lease, |w| w.lease);
        if let Err(e) = etcd::put_json(&mut client, &key, &draining, Some(lease)).await {
            tracing::warn!(node = %cfg.id, error = %format!("{e:#}"), "drain: cannot mark the record; leaving now");
        } else {
            let mut c = client.clone();
            let idle = async {
                let mut quiet_since = None;
                loop {
                    let w = work().await;
                    let here = w.as_ref().is_some_and(|w| w.busy)
                        || work_in_cluster(&mut c, &cfg.id, w.as_ref()).await == Some(true);
                    let now = tokio::time::Instant::now();
                    match (here, quiet_since) {
                        (true, _) => quiet_since = None,
                        (false, None) => quiet_since = Some(now),
                        (false, Some(t)) if now - t >= DRAIN_QUIET => break,
                        (false, Some(_)) => {}
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            };
            tokio::select! {
                _ = idle => tracing::info!(node = %cfg.id, "drained: the run moved"),
                _ = tokio::time::sleep(DRAIN_TIMEOUT) => {
                    tracing::warn!(node = %cfg.id, "drain: the run did not move within {} s; leaving", DRAIN_TIMEOUT.as_secs());
                }
                why = &mut watcher => tracing::warn!(node = %cfg.id, why, "drain cut short"),
                why = &mut registration => tracing::warn!(node = %cfg.id, why, "drain cut short"),
            }
        }
    }
    let lease = work().await.map_or(first_lease, |w| w.lease);
    let _ = client.lease_revoke(lease).await;
    node.stop(None);
    let _ = node_done.await;
    outcome
}

/// How long a draining node waits for its run to move before it leaves anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a draining node must have had no work (none running, none assigned
/// to it) before it leaves.
const DRAIN_QUIET: Duration = Duration::from_secs(1);

/// Runs in the cluster as etcd has them: `None` when there are none (or etcd
/// cannot say), `Some(true)` when an attempt names this node and has not ended
/// here, `Some(false)` when every one running is elsewhere or ended here.
async fn work_in_cluster(client: &mut etcd_client::Client, me: &str, here: Option<&Work>) -> Option<bool> {
    let got = client.get(format!("{PREFIX}runs/"), Some(etcd_client::GetOptions::new().with_prefix())).await.ok()?;
    let mut any = false;
    for kv in got.kvs() {
        any = true;
        let Ok(a) = serde_json::from_slice::<Assignment>(kv.value()) else { continue };
        let ended_here = here.is_some_and(|w| w.ended.contains(&a.run_id()));
        if a.members.iter().any(|m| m.node == me) && !ended_here {
            return Some(true);
        }
    }
    any.then_some(false)
}

/// What a node watches in etcd.
const WATCHED: [&str; 3] = ["runs/", "checkpoint-at/", "cancel/"];

/// Watch every key a node acts on.
async fn watch_all(client: &mut etcd_client::Client) -> Result<[etcd_client::WatchStream; 3]> {
    let mut streams = Vec::with_capacity(3);
    for w in WATCHED {
        let s = client
            .watch(format!("{PREFIX}{w}"), Some(WatchOptions::new().with_prefix()))
            .await
            .context("etcd: watch")?;
        streams.push(s);
    }
    streams.try_into().map_err(|_| anyhow::anyhow!("etcd: watch"))
}

/// Act on every watched key as it is now (after the watches were down).
async fn catch_up(client: &mut etcd_client::Client, node: &ActorRef<NodeMsg>) {
    for w in WATCHED {
        let got = client.get(format!("{PREFIX}{w}"), Some(etcd_client::GetOptions::new().with_prefix())).await;
        for kv in got.iter().flat_map(|r| r.kvs()) {
            let _ = node.cast(NodeMsg::Put { key: kv.key().to_vec(), value: kv.value().to_vec() });
        }
    }
}

/// How the node actor starts a run: this node's share on a thread of its own (the
/// epoch loop blocks it), the run actor linked to the node actor, `Ended` when over.
fn starter(state: Arc<NodeState>) -> Starter {
    let rt = tokio::runtime::Handle::current();
    Arc::new(move |a: Assignment, rank: usize, handle: Arc<RunHandle>, node: ActorRef<NodeMsg>| {
        let (state, rt) = (state.clone(), rt.clone());
        let run = a.run_id();
        let (told, ended, id, me) = (handle.clone(), node.clone(), run.clone(), state.id.clone());
        let spawned = std::thread::Builder::new().name(format!("run-{run}")).spawn(move || {
            let supervisor = node.get_cell();
            let outcome =
                with_peak_memory(&state.metrics, &a, rank, || execute(&state, &rt, supervisor, &a, rank, &handle));
            let outcome = outcome.map_err(|e| e.to_string());
            state.metrics.shards.set(0);
            let label = match &outcome {
                Ok((_, true)) => "succeeded",
                // Cancelled, or stopped with the peers when one of them failed.
                Ok((_, false)) => "stopped",
                Err(_) => "failed",
            };
            let outcome = outcome.map(|(bytes, _)| bytes);
            state.metrics.runs.with_label_values(&[label]).inc();
            match &outcome {
                Err(e) => tracing::error!(node = %state.id, run = %run, rank, error = %e, "run failed"),
                Ok(_) => tracing::info!(node = %state.id, run = %run, rank, outcome = label, "run ended"),
            }
            handle.result.send_replace(Some(outcome.map(Arc::new)));
            let _ = node.cast(NodeMsg::Ended(run));
        });
        if let Err(e) = spawned {
            tracing::error!(node = %me, error = %e, "cannot start a thread for a run");
            told.result.send_replace(Some(Err(format!("cannot start a thread for the run: {e}"))));
            let _ = ended.cast(NodeMsg::Ended(id));
        }
    })
}

/// Run `f` (this node's part of `a`) with its peak memory measured afresh and
/// shown next to the estimate it was placed by (`neuropil_run_peak_rss_bytes`,
/// `neuropil_run_estimated_bytes`).
fn with_peak_memory<T>(m: &NodeMetrics, a: &Assignment, rank: usize, f: impl FnOnce() -> T) -> T {
    neuropil_runtime::system::reset_peak_rss();
    let shards = a.members.get(rank).map_or(&[][..], |me| &me.shards[..]);
    let estimate: u64 = shards.iter().filter_map(|&s| a.shard_bytes.get(s as usize)).sum();
    m.run_estimated.set(estimate.min(i64::MAX as u64) as i64);
    m.run_peak_rss.set(0);
    let result = f();
    let rss = neuropil_runtime::system::peak_rss_bytes().unwrap_or(0);
    m.run_peak_rss.set(rss.min(i64::MAX as u64) as i64);
    result
}

/// Build and simulate this node's shards of `a`; the encoded [`RunOutput`], and
/// whether the run went to its end.
fn execute(
    state: &NodeState,
    rt: &tokio::runtime::Handle,
    supervisor: ActorCell,
    a: &Assignment,
    rank: usize,
    handle: &RunHandle,
) -> Result<(Vec<u8>, bool), RunError> {
    let format = neuropil_cluster::format_of(&a.format).map_err(RunError::Assignment)?;
    let mut exp = neuropil_spec::parse(&a.document, format, &a.set)?;
    let me = &a.members[rank];
    exp.run.shards = a.shards;
    exp.run.threads = me.threads;
    let compiled = neuropil_spec::compile(&exp, &neuropil_spec::Limits { memory_bytes: None })?;
    let net = &compiled.network;
    if embedded::network_hash(net) != a.network_hash {
        return Err(RunError::Assignment(
            "this node compiled a different network than the control (mixed neuropil versions?)".into(),
        ));
    }
    let threads = (me.threads as usize).max(1);
    let mine: Vec<usize> = me.shards.iter().map(|&s| s as usize).collect();
    // The single instances placed on this node.
    let placed = &a.placement;
    if placed.modules.len() != net.cerebella.len() || placed.fabric.is_some() != exp.hardware.is_some() {
        return Err(RunError::Assignment(format!(
            "the assignment places {} cerebellar modules{} but the network has {}{} (mixed neuropil versions?)",
            placed.modules.len(),
            if placed.fabric.is_some() { " and a fabric" } else { "" },
            net.cerebella.len(),
            if exp.hardware.is_some() { " and a [hardware] section" } else { "" },
        )));
    }
    let my_module = |i: usize| placed.modules[i].rank as usize == rank;
    let my_fabric = placed.fabric == Some(rank as u32);
    let m = &state.metrics;
    m.shards.set(mine.len() as i64);
    m.build_progress.set(0.0);

    // Build in rounds of `threads` shards so that progress moves.
    let build_start = Instant::now();
    let mut start = embedded::build_some(net, &[], a.shards as usize, 1);
    // After a recovery: this node's shards, and the replicated state, from the
    // parts of the last complete checkpoint (whoever wrote them).
    let mut prefix = None;
    if let Some(manifest) = &a.resume {
        if exp.hardware.is_some() {
            return Err(RunError::Resume("a co-simulated run cannot be resumed from a cluster checkpoint yet".into()));
        }
        let Some(dir) = &state.checkpoint_dir else {
            return Err(RunError::Resume(
                "this node has no --checkpoint-dir, so it cannot resume the run from its checkpoint".into(),
            ));
        };
        let modules_here = (0..net.cerebella.len()).any(my_module);
        let (restored, so_far) =
            restore(dir, manifest, net, &mine, threads, rank == 0, modules_here).map_err(RunError::Resume)?;
        start = restored;
        prefix = Some(so_far);
        m.build_progress.set(1.0);
    }
    // Hardware co-simulation: one node runs the fabric, on every spike; its delays
    // reach the others in each epoch's second round. Every node's shards must know
    // their neurons' cores, and the mapping needs the whole connectome, so each node
    // builds every shard once, maps, and keeps its own (docs/architecture.md).
    let mut fabric = None;
    let mut mapped = false;
    if let Some(hw) = &exp.hardware {
        let mut all = embedded::build(net, a.shards as usize, threads);
        let (cosim, about) =
            neuropil_runtime::cosim::fabric_for(net, &mut all, hw).map_err(|e| RunError::Fabric(format!("{e:#}")))?;
        if my_fabric {
            fabric = Some((cosim, about));
        }
        start.shards = all.shards.into_iter().enumerate().filter(|(i, _)| mine.contains(i)).map(|(_, s)| s).collect();
        mapped = true;
        m.build_progress.set(1.0);
    }
    start.keep_modules(my_module);
    if let Some(i) = (0..net.cerebella.len()).find(|&i| my_module(i) && start.modules[i].is_none()) {
        let name = &net.cerebella[i].name;
        return Err(RunError::Resume(format!(
            "the checkpoint resumed from holds no state of cerebellar module {name:?}"
        )));
    }
    for (i, chunk) in mine.chunks(threads).enumerate().take_while(|_| !mapped && prefix.is_none()) {
        start.shards.extend(embedded::build_some(net, chunk, a.shards as usize, threads).shards);
        m.build_progress.set(((i + 1) * threads).min(mine.len()) as f64 / mine.len().max(1) as f64);
        if handle.cancel.load(Ordering::Relaxed) {
            // Peers are waiting for this node's first message; it carries the stop.
            break;
        }
    }
    let build_s = build_start.elapsed().as_secs_f64();

    let peers = peers(&a.members, &state.host);
    let run = a.run_id();
    let mut transport = GrpcTransport::start(
        &run,
        rank as u32,
        &peers,
        &state.exchange,
        &state.tls,
        &state.token,
        state.peer_timeout,
        m.exchange.clone(),
    )
    .map_err(RunError::Exchange)?;
    transport.abort_on(handle.abort.clone());
    transport.emulate_latency(state.emulated_latency);
    // Targeted spike routing (docs/scaling.md): rank 0 records every spike, the
    // ranks of modules and the fabric see every spike; the others get the spikes
    // of the populations that project onto their shards.
    let shards_of: Vec<Vec<usize>> = a.members.iter().map(|m| m.shards.iter().map(|&s| s as usize).collect()).collect();
    let everything: Vec<bool> = (0..a.members.len())
        .map(|r| r == 0 || placed.fabric == Some(r as u32) || placed.modules.iter().any(|m| m.rank as usize == r))
        .collect();
    transport.set_routes(neuropil_sim::routing::Routes::new(net, &shards_of, a.shards as usize, &everything));
    // The two-tier exchange: as seldom as the delays between nodes allow.
    let exchange_every = match exp.hardware {
        Some(_) => 1,
        None => neuropil_sim::tiers::exchange_epochs(net, &shards_of, a.shards as usize),
    };
    m.exchange_window.set(exchange_every as i64);
    let (cosim, about) = fabric.map_or((None, None), |(f, about)| (Some(f), Some(about)));
    let tree = Tree { rt, name: &run, census: &handle.census, supervisor: Some(supervisor) };
    let parts = match (&state.checkpoint_dir, a.checkpoint_steps) {
        (Some(dir), every) => Some(Parts {
            asked: handle.checkpoint_at.clone(),
            dir,
            experiment: &a.id,
            attempt: a.attempt,
            rank,
            every,
            last_step: start.step(),
            written: 0,
            unsaved: prefix.clone(),
            segments: Vec::new(),
        }),
        _ => None,
    };
    let waiting = transport.waiting();
    let names: Vec<String> = peers.iter().map(|p| p.node.clone()).collect();
    let done = AtomicBool::new(false);
    let simulated = std::thread::scope(|scope| {
        let monitor = scope.spawn(|| report_waits(&waiting, &names, &handle.progress, &done));
        let cosim = (cosim, exp.hardware.is_some());
        let link = (&mut transport, exchange_every);
        let r = simulate(tree, net, &compiled, start, threads, link, cosim, handle, m, rank == 0, parts);
        done.store(true, Ordering::Relaxed);
        monitor.thread().unpark();
        r
    });
    transport.finish();
    let (out, cosim) = simulated?;
    // The output before the checkpoint this attempt resumed from comes first.
    let mut out = match prefix {
        Some(p) => p.followed_by(out),
        None => out,
    };
    if let (Some(f), Some(mut about)) = (cosim, about) {
        // The node that ran the fabric reports it.
        about["fabric"] = serde_json::to_value(f.stats).map_err(|e| RunError::Results(e.to_string()))?;
        out.hardware = Some(about.to_string());
    }
    out.stats.build_s = build_s;
    if rank != 0 {
        // Every node sees every spike; only the recording node reports them. Module
        // samples come from the node that ran each module.
        out.spikes.clear();
    }
    let complete = out.stats.steps >= compiled.steps && !out.stopped;
    let bytes = postcard::to_allocvec(&out).map_err(|e| RunError::Results(e.to_string()))?;
    Ok((bytes, complete))
}

/// Until `done`: say in the progress which peer the simulation has waited for a
/// second or more, and for how long (the simulation thread itself is blocked);
/// the control moves the run off one of two nodes that wait for each other.
fn report_waits(
    waiting: &neuropil_cluster::transport::Waiting,
    names: &[String],
    progress: &watch::Sender<NodeProgress>,
    done: &AtomicBool,
) {
    let mut shown = false;
    while !done.load(Ordering::Relaxed) {
        std::thread::park_timeout(Duration::from_millis(250));
        match waiting.now() {
            Some((peer, d)) if d >= Duration::from_secs(1) => {
                let name = names.get(peer).cloned().unwrap_or_else(|| format!("rank {peer}"));
                progress.send_modify(|p| {
                    p.waiting_on = name;
                    p.waiting_s = d.as_secs_f64();
                });
                shown = true;
            }
            _ if shown => {
                progress.send_modify(|p| {
                    p.waiting_on.clear();
                    p.waiting_s = 0.0;
                });
                shown = false;
            }
            _ => {}
        }
    }
}

/// Simulate in stretches of [`STRETCH_MS`], publishing progress and live spikes.
#[allow(clippy::too_many_arguments)]
fn simulate(
    tree: Tree<'_>,
    net: &Network,
    compiled: &neuropil_spec::Compiled,
    state: Checkpoint,
    threads: usize,
    (transport, exchange_every): (&mut GrpcTransport, u64),
    (fabric, fabric_in_loop): (Option<neuropil_hwemu::cosim::CoSim>, bool),
    handle: &RunHandle,
    m: &NodeMetrics,
    recorder: bool,
    mut parts: Option<Parts<'_>>,
) -> Result<(RunOutput, Option<neuropil_hwemu::cosim::CoSim>), RunError> {
    let total = compiled.steps;
    let wall = Instant::now();
    let last_report_ms = AtomicU64::new(0);
    // This node's part of the last checkpoint it wrote, and when.
    let written: Mutex<Option<(CheckpointPart, Instant)>> = Mutex::new(None);
    m.checkpoint_age.set(0.0);
    let publish = |steps_done: u64, spikes: u64, counts: &[u64], phase: &str| {
        let bio_s = steps_done as f64 * net.dt_ms / 1000.0;
        let wall_s = wall.elapsed().as_secs_f64();
        m.bio_time.set(bio_s);
        if bio_s > 0.0 {
            m.rtf.set(wall_s / bio_s);
        }
        let checkpoint = written.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|(p, at)| {
            m.checkpoint_age.set(at.elapsed().as_secs_f64());
            p.clone()
        });
        handle.progress.send_replace(NodeProgress {
            steps_done,
            steps_total: total,
            spikes,
            population_spikes: counts.to_vec(),
            wall_s,
            phase: phase.into(),
            actors: vec![], // filled in as the events leave (watch_run)
            checkpoint,
            // The simulation moves: it waits for no peer now.
            waiting_on: String::new(),
            waiting_s: 0.0,
        });
    };
    let start_step = state.step();
    // Progress counts from step 0 of the experiment, across recoveries.
    let (spikes_before, counts_before): (u64, Vec<u64>) = match &parts {
        Some(Parts { unsaved: Some(p), .. }) => (p.spikes_seen(), p.spike_counts.clone()),
        _ => (0, vec![0; net.populations.len()]),
    };
    let with_before = |counts: &[u64]| -> Vec<u64> {
        counts.iter().zip(counts_before.iter().chain(std::iter::repeat(&0))).map(|(a, b)| a + b).collect()
    };
    publish(start_step, spikes_before, &counts_before, "running");
    let plan = Plan {
        total_steps: total.saturating_sub(start_step),
        stretch_steps: Plan::stretch_steps_for(net, STRETCH_MS),
        threads,
        count_from_step: compiled.transient_steps,
        fabric_in_loop,
        exchange_every,
    };
    let mut on_stretch = |s: Stretch<'_>| -> anyhow::Result<()> {
        let part = s.part;
        if let Some(p) = &mut parts {
            if let Some(done) = p.take(s.state, part, recorder, total, m) {
                *written.lock().unwrap_or_else(|e| e.into_inner()) = Some((done, Instant::now()));
            }
        }
        for (&n, pop) in part.spike_counts.iter().zip(&net.populations) {
            m.spikes.with_label_values(&[pop.name.as_str()]).inc_by(n);
        }
        m.synaptic_events.inc_by(part.stats.synaptic_events);
        for (i, module) in net.cerebella.iter().enumerate() {
            let rows: Vec<(f64, f64)> =
                part.cerebellum.iter().filter(|s| s.module as usize == i).map(|s| (s.predicted, s.error)).collect();
            if rows.is_empty() {
                continue;
            }
            let mse = rows.iter().map(|r| r.1 * r.1).sum::<f64>() / rows.len() as f64;
            m.module_error.with_label_values(&[module.name.as_str()]).set(mse);
            if let Some(r) = neuropil_output::summary::pearson(&rows) {
                m.module_correlation.with_label_values(&[module.name.as_str()]).set(r);
            }
        }
        if recorder && !part.spikes.is_empty() && handle.spikes.receiver_count() > 0 {
            let _ = handle.spikes.send(spike_batch(net, &part.spikes));
        }
        publish(start_step + s.steps_done, spikes_before + s.spikes_seen, &with_before(s.spike_counts), "running");
        Ok(())
    };
    let (out, end, fabric) = drive(
        tree,
        net,
        state,
        plan,
        Some(transport as &mut dyn Transport),
        fabric,
        &|steps, spikes, counts_before| {
            let ms = wall.elapsed().as_millis() as u64;
            if ms >= last_report_ms.load(Ordering::Relaxed) + 50 {
                last_report_ms.store(ms, Ordering::Relaxed);
                publish(start_step + steps, spikes_before + spikes, &with_before(counts_before), "running");
            }
        },
        &handle.cancel,
        &mut on_stretch,
    )?;
    publish(end.step(), spikes_before + out.spikes_seen(), &with_before(&out.spike_counts), "done");
    Ok((out, fabric))
}

/// Where and how often this node writes its part of the run's coordinated
/// checkpoints, and its share of the output so far (what a part carries).
struct Parts<'a> {
    dir: &'a Path,
    experiment: &'a str,
    attempt: u32,
    rank: usize,
    /// Steps between checkpoints (0: only when asked).
    every: u64,
    /// A checkpoint asked for at this step (u64::MAX: none).
    asked: Arc<AtomicU64>,
    /// The step the last stretch ended at.
    last_step: u64,
    /// Parts written in this attempt.
    written: u64,
    /// This node's share of the output not yet in a segment (after a recovery, the
    /// first one also holds the output before the checkpoint resumed from).
    unsaved: Option<RunOutput>,
    /// The segments written in this attempt, in order.
    segments: Vec<neuropil_runtime::part::SegmentRef>,
}

impl Parts<'_> {
    /// Join a stretch's output; at a checkpoint boundary (not the run's end), write
    /// the part durably and say what was written. Nothing is written if the volume
    /// fails (the run goes on; its last complete checkpoint stays the one before).
    fn take(
        &mut self,
        state: &Checkpoint,
        part: &RunOutput,
        recorder: bool,
        total: u64,
        m: &NodeMetrics,
    ) -> Option<CheckpointPart> {
        // The recording node's part carries the spikes; the others' do not copy
        // them. Module samples are in the part of the node that ran the module.
        let share = if recorder {
            part.clone()
        } else {
            RunOutput {
                spikes: Vec::new(),
                cerebellum: part.cerebellum.clone(),
                spike_counts: part.spike_counts.clone(),
                counted_spikes: part.counted_spikes.clone(),
                spike_hash: part.spike_hash,
                samples: part.samples.clone(),
                weights: part.weights.clone(),
                hardware: part.hardware.clone(),
                stopped: part.stopped,
                stats: part.stats,
            }
        };
        let unsaved = match self.unsaved.take() {
            Some(acc) => acc.followed_by(share),
            None => share,
        };
        let unsaved = self.unsaved.insert(unsaved);
        let step = state.step();
        let before = std::mem::replace(&mut self.last_step, step);
        let periodic = self.every > 0 && step / self.every != before / self.every;
        let at = self.asked.load(Ordering::Relaxed);
        let asked = at != u64::MAX && before < at && at <= step;
        if step >= total || !(periodic || asked) {
            return None;
        }
        let t = Instant::now();
        // What is new since the last checkpoint goes into a segment of its own; the
        // part lists them all. A segment whose part then fails to be written is
        // still whole: the next part lists it.
        unsaved.weights.clear(); // a snapshot, not history: restores start without
        let segment = neuropil_runtime::part::encode_segment(unsaved);
        let seg_rel = format!("{}/out/{step:012}.a{}.r{}.bin", self.experiment, self.attempt, self.rank);
        if let Err(e) = neuropil_runtime::part::write_durably(&self.dir.join(&seg_rel), &segment) {
            tracing::warn!(segment = %seg_rel, error = %e, "cannot write an output segment; the run goes on");
            return None;
        }
        self.unsaved = None;
        self.segments.push(neuropil_runtime::part::SegmentRef {
            path: seg_rel,
            bytes: segment.len() as u64,
            digest: neuropil_runtime::part::digest(&segment),
        });
        let bytes = neuropil_runtime::part::encode(state, &self.segments);
        let rel = format!("{}/{step:012}.a{}/part-{}.bin", self.experiment, self.attempt, self.rank);
        self.written += 1;
        if neuropil_sim::failpoint::armed(neuropil_sim::failpoint::Site::Part, self.rank as u32, self.written) {
            // Test builds only: die as kill -9 would, half a part on the volume.
            let tmp = self.dir.join(&rel).with_extension("partial");
            let _ = std::fs::create_dir_all(tmp.parent().unwrap_or(self.dir));
            let _ = std::fs::write(&tmp, &bytes[..bytes.len() / 2]);
            std::process::abort();
        }
        if let Err(e) = neuropil_runtime::part::write_durably(&self.dir.join(&rel), &bytes) {
            tracing::warn!(part = %rel, error = %e, "cannot write a checkpoint part; the run goes on");
            return None;
        }
        let write_s = t.elapsed().as_secs_f64();
        m.checkpoint_bytes.set((bytes.len() + segment.len()) as i64);
        m.checkpoint_duration.observe(write_s);
        tracing::info!(part = %rel, bytes = bytes.len(), segment_bytes = segment.len(), write_s, "checkpoint part written");
        Some(CheckpointPart {
            step,
            path: rel,
            bytes: bytes.len() as u64,
            digest: neuropil_runtime::part::digest(&bytes),
            write_s,
        })
    }
}

/// Restore this node's shards `mine` of the checkpoint `manifest` from its parts
/// on the volume `dir`, with the state every node holds alike (from rank 0's part),
/// the cerebellar modules (from the parts of the nodes that ran them: a node that
/// runs one now reads every part), and this node's share of the output before it:
/// for the recording node (rank 0) the spikes, every part's samples and module
/// samples; for the others the counts.
fn restore(
    dir: &Path,
    manifest: &Manifest,
    net: &Network,
    mine: &[usize],
    threads: usize,
    recorder: bool,
    modules_here: bool,
) -> Result<(Checkpoint, RunOutput), String> {
    let at = manifest.step as f64 * net.dt_ms;
    let mut parts = manifest.parts.clone();
    parts.sort_by_key(|p| p.rank);
    let (mut base, mut prefix, mut shards, mut samples) = (None, RunOutput::default(), Vec::new(), Vec::new());
    let mut modules: Vec<Option<ModuleRun>> = vec![None; net.cerebella.len()];
    let mut module_samples = Vec::new();
    for p in &parts {
        let holds_mine = p.shards.iter().any(|&s| mine.contains(&(s as usize)));
        if !(p.rank == 0 || holds_mine || recorder || modules_here) {
            continue;
        }
        let rel = Path::new(&p.path);
        if rel.is_absolute() || rel.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            return Err(format!("checkpoint part {:?}: not a path inside the checkpoint volume", p.path));
        }
        let failed = |e: neuropil_runtime::part::PartError| {
            format!("restoring the checkpoint at {at} ms (part of {}): {e}", p.node)
        };
        let (mut cp, segments) =
            neuropil_runtime::part::read(&dir.join(rel), p.bytes, p.digest, net).map_err(failed)?;
        shards.extend(cp.shards.drain(..).filter(|s| mine.contains(&(s.index() as usize))));
        for (slot, m) in modules.iter_mut().zip(cp.modules.iter_mut()) {
            if let Some(m) = m.take() {
                *slot = Some(m);
            }
        }
        // Rank 0's output has what every node counts; the others' only their samples.
        let out = match recorder || p.rank == 0 {
            true => neuropil_runtime::part::read_output(dir, &segments).map_err(failed)?,
            false => RunOutput::default(),
        };
        if recorder {
            samples.extend(out.samples.iter().cloned());
            module_samples.extend(out.cerebellum.iter().cloned());
        }
        if p.rank == 0 {
            prefix = out;
            base = Some(cp);
        }
    }
    let mut start = base.ok_or_else(|| format!("the checkpoint at {at} ms has no part of rank 0"))?;
    if shards.len() != mine.len() {
        return Err(format!(
            "the checkpoint at {at} ms holds {} of this node's {} shards; its parts are incomplete",
            shards.len(),
            mine.len()
        ));
    }
    shards.sort_by_key(|s| mine.iter().position(|&i| i == s.index() as usize));
    start.shards = shards;
    start.modules = modules;
    start.rebuild_statics(net, threads).map_err(|e| format!("restoring the checkpoint at {at} ms: {e}"))?;
    if recorder {
        samples.sort_by_key(|a| (a.step, a.sampler, a.gid, a.var));
        prefix.samples = samples;
        module_samples.sort_by_key(|s| (s.step, s.module));
        prefix.cerebellum = module_samples;
    } else {
        prefix.spikes.clear();
        prefix.cerebellum.clear();
        prefix.samples.clear();
    }
    prefix.weights.clear();
    Ok((start, prefix))
}

/// Spikes as the wire's columns.
pub fn spike_batch(net: &Network, spikes: &[neuropil_sim::Spike]) -> SpikeBatch {
    let mut b = SpikeBatch {
        populations: net.populations.iter().map(|p| p.name.clone()).collect(),
        population: Vec::with_capacity(spikes.len()),
        neuron: Vec::with_capacity(spikes.len()),
        time_ms: Vec::with_capacity(spikes.len()),
    };
    for s in spikes {
        let p = net.population_of(s.gid);
        b.population.push(p as u32);
        b.neuron.push(s.gid - net.populations[p].first_gid);
        b.time_ms.push((s.step + 1) as f64 * net.dt_ms);
    }
    b
}

/// The peers' exchange addresses by rank. A peer on this host (same identity)
/// whose socket path exists here is reached over its Unix socket first.
fn peers(members: &[Member], host: &str) -> Vec<Peer> {
    members
        .iter()
        .map(|m| Peer {
            node: m.node.clone(),
            addr: m.exchange_addr.clone(),
            socket: m
                .exchange_socket
                .as_ref()
                .filter(|_| !host.is_empty() && m.host == host)
                .map(std::path::PathBuf::from)
                .filter(|p| p.exists()),
        })
        .collect()
}

/// Refuse an address that others cannot dial (no scheme, no port, or a wildcard
/// host such as the default `--listen 0.0.0.0:7071` gives).
fn dialable(flag: &str, url: &str) -> Result<()> {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
    let Some((host, port)) = rest.and_then(|r| r.trim_end_matches('/').rsplit_once(':')) else {
        anyhow::bail!("{flag} {url:?}: give http://HOST:PORT (or https://)");
    };
    if port.parse::<u16>().map_or(true, |p| p == 0) {
        anyhow::bail!("{flag} {url:?}: the port must be a number from 1 to 65535");
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_unspecified()) {
        anyhow::bail!(
            "{flag} {url:?}: other nodes and the control cannot dial a wildcard address; set {flag} to this \
             node's reachable address (in Kubernetes, the pod's DNS name) or listen on a specific one"
        );
    }
    Ok(())
}

/// `url` (`http://host:port`) with another port.
fn with_port(url: &str, port: u16) -> String {
    match url.rsplit_once(':') {
        Some((head, tail)) if tail.chars().all(|c| c.is_ascii_digit()) && head.contains("://") => {
            format!("{head}:{port}")
        }
        _ => format!("{}:{port}", url.trim_end_matches('/')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_on_this_host_with_a_reachable_socket_use_it() {
        let dir = std::env::temp_dir().join(format!("neuropil-peers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let there = dir.join("node.sock");
        let _l = std::os::unix::net::UnixListener::bind(&there).unwrap();
        let member = |host: &str, socket: Option<&std::path::Path>| Member {
            node: "n".into(),
            addr: "http://h:1".into(),
            exchange_addr: "http://h:2".into(),
            exchange_socket: socket.map(|p| p.display().to_string()),
            host: host.into(),
            shards: vec![],
            threads: 1,
        };
        let missing = dir.join("missing.sock");
        let ms = [
            member("me", Some(&there)),
            member("other", Some(&there)),
            member("me", Some(&missing)),
            member("me", None),
        ];
        let got: Vec<_> = peers(&ms, "me").into_iter().map(|p| p.socket.is_some()).collect();
        assert_eq!(got, [true, false, false, false]);
        assert!(peers(&ms, "").iter().all(|p| p.socket.is_none()), "an unknown host identity never matches");
        assert_eq!(peers(&ms, "me")[0].addr, "http://h:2");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn exchange_address_takes_the_advertised_host() {
        assert_eq!(super::with_port("http://node-0.neuropil-node:7071", 7072), "http://node-0.neuropil-node:7072");
        assert_eq!(super::with_port("http://127.0.0.1:4000", 5), "http://127.0.0.1:5");
        assert_eq!(super::with_port("http://host", 7072), "http://host:7072");
    }
}

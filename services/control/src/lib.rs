//! `neuropil control`: the ExperimentService. Every replica answers requests from
//! etcd; one replica, elected through etcd, schedules pending experiments onto the
//! live nodes, follows their runs, and writes the results into its data directory.

pub mod config;
pub mod error;
pub mod metrics;
mod placement;

use anyhow::{Context as _, Result};
pub use config::ControlConfig;
pub use error::ControlError;
use etcd_client::{Client, EventType};
use metrics::ControlMetrics;
use placement::{place, wanted_places};
use neuropil_cluster::auth::{BearerAuth, ClusterToken};
use neuropil_cluster::{
    cancel_key, checkpoints_key, etcd, experiment_key, now_unix_ms, run_key, ActorRecord, Assignment, Checkpoints,
    ExperimentRecord, Manifest, NodeRecord, PartRef, PopulationCount, State, MAX_DOCUMENT_BYTES,
    MAX_REQUEST_BYTES, PREFIX,
};
use neuropil_proto::v1::experiment_service_server::{ExperimentService, ExperimentServiceServer};
use neuropil_proto::v1::node_service_client::NodeServiceClient;
use neuropil_proto::v1::{
    run_event, CancelRequest, CheckpointRequest, ExperimentInfo, GetRequest, ListRequest, ListResponse, SpikeBatch,
    StreamSpikesRequest, SubmitRequest, SubmitResponse, WatchRequest, WatchRunRequest,
};
use neuropil_sim::embedded::{self, RunOutput};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tonic::server::NamedService;
use tonic::{Request, Response, Status};

/// The election every control replica campaigns in.
const LEADER_ELECTION: &str = "/neuropil/control/leader";

struct Control {
    id: String,
    etcd: Client,
    metrics: ControlMetrics,
    data_dir: PathBuf,
    node_tls: neuropil_cluster::tls::Tls,
    /// What this replica presents to the nodes' NodeService.
    cluster_token: ClusterToken,
    checkpoint_interval_ms: f64,
    checkpoint_dir: Option<PathBuf>,
    max_recoveries: u32,
    /// How long two nodes may wait for each other before one leaves the run.
    peer_stall: Duration,
}

impl Control {
    async fn record(&self, id: &str) -> Result<ExperimentRecord, ControlError> {
        if id.is_empty() || id.len() > 128 {
            return Err(ControlError::InvalidArgument("id: give an experiment id, as returned by Submit".into()));
        }
        let mut c = self.etcd.clone();
        etcd::get_json::<ExperimentRecord>(&mut c, &experiment_key(id))
            .await
            .map_err(ControlError::etcd)?
            .ok_or_else(|| ControlError::NotFound(format!("id: no experiment {id:?}; List shows the known ones")))
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>, ControlError> {
        let mut c = self.etcd.clone();
        let mut nodes: Vec<NodeRecord> =
            etcd::list_json(&mut c, &format!("{PREFIX}nodes/")).await.map_err(ControlError::etcd)?;
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        // A draining node takes no new work.
        nodes.retain(|n| !n.draining);
        Ok(nodes)
    }

    fn count(&self, method: &str, r: &Result<impl Sized, ControlError>) {
        let code = match r {
            Ok(_) => tonic::Code::Ok,
            Err(e) => e.code(),
        };
        self.metrics.requests.with_label_values(&[method, &format!("{code:?}")]).inc();
    }

    async fn submit(&self, req: SubmitRequest) -> Result<SubmitResponse, ControlError> {
        if req.document.len() > MAX_DOCUMENT_BYTES {
            return Err(ControlError::TooLarge(format!(
                "document: {} bytes is more than the {} bytes an experiment may have",
                req.document.len(),
                MAX_DOCUMENT_BYTES
            )));
        }
        if req.set.len() > 1024 || req.set.iter().any(|s| s.len() > 4096) {
            return Err(ControlError::InvalidArgument("set: at most 1024 overrides of at most 4096 bytes each".into()));
        }
        if req.shards > 65_536 {
            return Err(ControlError::InvalidArgument(format!("shards: {} is too many; at most 65536", req.shards)));
        }
        let format = neuropil_cluster::format_of(&req.format).map_err(ControlError::InvalidArgument)?;
        let exp = neuropil_spec::parse(&req.document, format, &req.set)?;
        if let Some(hw) = &exp.hardware {
            // Nodes build the same fabric from the same preset; a file path would have
            // to exist on every node, so only built-in presets are accepted here.
            if let Err(e) = neuropil_hwemu::preset::Preset::builtin(&hw.preset) {
                return Err(ControlError::InvalidArgument(format!(
                    "hardware.preset: {e}; the cluster runs built-in presets only (neuropil hwemu presets)"
                )));
            }
        }
        let compiled = neuropil_spec::compile(&exp, &neuropil_spec::Limits { memory_bytes: None })?;
        let placement = wanted_places(req.placement, &compiled.network, exp.hardware.is_some())?;
        let nodes = self.nodes().await?;
        let offered: u64 = nodes.iter().map(|n| n.memory_bytes).sum();
        if !nodes.is_empty() && compiled.estimated_bytes > offered {
            return Err(ControlError::TooLarge(format!(
                "the experiment needs about {:.2} GiB but the {} live nodes offer {:.2} GiB; scale it down \
                 (scaling.neurons, scaling.synapses) or add nodes",
                gib(compiled.estimated_bytes),
                nodes.len(),
                gib(offered)
            )));
        }
        let id = new_id();
        let net = &compiled.network;
        let record = ExperimentRecord {
            id: id.clone(),
            name: exp.name.clone(),
            state: State::Pending,
            message: if nodes.is_empty() { "waiting for nodes".into() } else { String::new() },
            document: req.document,
            format: req.format,
            set: req.set,
            shards_requested: req.shards,
            shards: 0,
            nodes: vec![],
            bio_time_ms: 0.0,
            duration_ms: compiled.steps as f64 * net.dt_ms,
            rtf: 0.0,
            spikes: 0,
            populations: vec![],
            neurons: net.populations.iter().map(|p| p.size as u64).sum(),
            synapses: 0,
            spike_hash: None,
            output_dir: String::new(),
            submitted_unix_ms: now_unix_ms(),
            estimated_bytes: compiled.estimated_bytes,
            actors: vec![],
            events: vec![],
            checkpoint_ms: 0.0,
            recoveries: 0,
            placement,
        };
        let mut record = record;
        record.log("submitted");
        let mut c = self.etcd.clone();
        etcd::put_json(&mut c, &experiment_key(&id), &record, None).await.map_err(ControlError::etcd)?;
        Ok(SubmitResponse { id, info: Some(record.to_proto()) })
    }
}

pub(crate) fn gib(b: u64) -> f64 {
    b as f64 / (1u64 << 30) as f64
}

/// `exp-` + milliseconds since the epoch (hex) + 4 random hex digits: sortable by
/// submission time, unique across replicas.
fn new_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_unix_ms());
    format!("exp-{:x}-{:04x}", now_unix_ms(), h.finish() & 0xffff)
}

#[derive(Clone)]
struct ControlSvc(Arc<Control>);

type InfoStream = tokio_stream::wrappers::ReceiverStream<Result<ExperimentInfo, Status>>;
type SpikeStream = tokio_stream::wrappers::ReceiverStream<Result<SpikeBatch, Status>>;

#[tonic::async_trait]
impl ExperimentService for ControlSvc {
    async fn submit(&self, req: Request<SubmitRequest>) -> Result<Response<SubmitResponse>, Status> {
        let r = self.0.submit(req.into_inner()).await;
        self.0.count("Submit", &r);
        r.map(Response::new).map_err(Status::from)
    }

    async fn get(&self, req: Request<GetRequest>) -> Result<Response<ExperimentInfo>, Status> {
        let r = self.0.record(&req.into_inner().id).await.map(|r| r.to_proto());
        self.0.count("Get", &r);
        r.map(Response::new).map_err(Status::from)
    }

    async fn list(&self, _req: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let mut c = self.0.etcd.clone();
        let r = etcd::list_json::<ExperimentRecord>(&mut c, &format!("{PREFIX}experiments/"))
            .await
            .map_err(ControlError::etcd);
        let r = r.map(|mut v| {
            v.sort_by(|a, b| (a.submitted_unix_ms, &a.id).cmp(&(b.submitted_unix_ms, &b.id)));
            ListResponse { experiments: v.iter().map(|r| r.to_proto()).collect() }
        });
        self.0.count("List", &r);
        r.map(Response::new).map_err(Status::from)
    }

    async fn cancel(&self, req: Request<CancelRequest>) -> Result<Response<ExperimentInfo>, Status> {
        let id = req.into_inner().id;
        let r = async {
            let rec = self.0.record(&id).await?;
            if rec.state.is_terminal() {
                return Err(ControlError::WrongState(format!("id: experiment {id} has already {}", rec.state.name())));
            }
            let mut c = self.0.etcd.clone();
            c.put(cancel_key(&id), now_unix_ms().to_string(), None).await.map_err(ControlError::etcd)?;
            Ok(rec.to_proto())
        }
        .await;
        self.0.count("Cancel", &r);
        r.map(Response::new).map_err(Status::from)
    }

    async fn checkpoint(&self, req: Request<CheckpointRequest>) -> Result<Response<ExperimentInfo>, Status> {
        let id = req.into_inner().id;
        let r = async {
            let rec = self.0.record(&id).await?;
            if !matches!(rec.state, State::Running | State::Recovering) {
                return Err(ControlError::WrongState(format!(
                    "id: experiment {id} is {}; only a running experiment can be checkpointed",
                    rec.state.name()
                )));
            }
            let mut c = self.0.etcd.clone();
            let key = neuropil_cluster::checkpoint_request_key(&id);
            c.put(key, now_unix_ms().to_string(), None).await.map_err(ControlError::etcd)?;
            Ok(rec.to_proto())
        }
        .await;
        self.0.count("Checkpoint", &r);
        r.map(Response::new).map_err(Status::from)
    }

    type WatchProgressStream = InfoStream;

    async fn watch_progress(&self, req: Request<WatchRequest>) -> Result<Response<InfoStream>, Status> {
        let id = req.into_inner().id;
        let first = self.0.record(&id).await;
        self.0.count("WatchProgress", &first);
        let first = first?;
        let mut c = self.0.etcd.clone();
        let mut watch = c.watch(experiment_key(&id), None).await.map_err(ControlError::etcd)?;
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let terminal = first.state.is_terminal();
            if tx.send(Ok(first.to_proto())).await.is_err() || terminal {
                return;
            }
            while let Ok(Some(resp)) = watch.message().await {
                for ev in resp.events() {
                    let (EventType::Put, Some(kv)) = (ev.event_type(), ev.kv()) else { continue };
                    let Ok(rec) = serde_json::from_slice::<ExperimentRecord>(kv.value()) else { continue };
                    if tx.send(Ok(rec.to_proto())).await.is_err() || rec.state.is_terminal() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    type StreamSpikesStream = SpikeStream;

    async fn stream_spikes(&self, req: Request<StreamSpikesRequest>) -> Result<Response<SpikeStream>, Status> {
        let req = req.into_inner();
        let r = self.0.spike_source(&req).await;
        self.0.count("StreamSpikes", &r);
        let (addr, id, wanted) = r?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let (tls, token) = (self.0.node_tls.clone(), self.0.cluster_token.clone());
        tokio::spawn(async move {
            let channel = match tls.endpoint(&addr) {
                Ok(e) => e.connect().await.map_err(anyhow::Error::from),
                Err(e) => Err(e),
            };
            let mut client = match channel {
                Ok(c) => NodeServiceClient::new(c).max_decoding_message_size(usize::MAX),
                Err(e) => {
                    let _ = tx
                        .send(Err(ControlError::NodeUnreachable(format!("recording node at {addr}: {e}")).into()))
                        .await;
                    return;
                }
            };
            let mut events = match client.watch_run(token.request(WatchRunRequest { run: id })).await {
                Ok(s) => s.into_inner(),
                Err(s) => {
                    let _ = tx.send(Err(s)).await;
                    return;
                }
            };
            while let Ok(Some(ev)) = events.message().await {
                match ev.event {
                    Some(run_event::Event::Spikes(b)) => {
                        let b = filter_batch(b, &wanted);
                        if !b.time_ms.is_empty() && tx.send(Ok(b)).await.is_err() {
                            return;
                        }
                    }
                    Some(run_event::Event::Result(_)) | Some(run_event::Event::Error(_)) => return,
                    _ => {}
                }
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }
}

impl Control {
    /// The recording node of a running experiment and the population indexes wanted.
    async fn spike_source(&self, req: &StreamSpikesRequest) -> Result<(String, String, Vec<bool>), ControlError> {
        // Wait while the experiment is queued.
        loop {
            let rec = self.record(&req.id).await?;
            if rec.state.is_terminal() {
                return Err(ControlError::WrongState(format!(
                    "id: experiment {} has already {}; its spikes are in {}/spikes.parquet",
                    req.id,
                    rec.state.name(),
                    rec.output_dir
                )));
            }
            let mut c = self.etcd.clone();
            if let Some(a) =
                etcd::get_json::<Assignment>(&mut c, &run_key(&req.id)).await.map_err(ControlError::etcd)?
            {
                let exp = neuropil_spec::parse(
                    &a.document,
                    neuropil_cluster::format_of(&a.format).map_err(ControlError::Internal)?,
                    &a.set,
                )
                .map_err(|e| ControlError::Internal(e.to_string()))?;
                let names: Vec<&str> = exp.populations.iter().map(|p| p.name.as_str()).collect();
                let mut wanted = vec![req.populations.is_empty(); names.len()];
                for p in &req.populations {
                    let i = names.iter().position(|n| n == p).ok_or_else(|| {
                        ControlError::InvalidArgument(format!(
                            "populations: no population {p:?}; the experiment has {}",
                            names.join(", ")
                        ))
                    })?;
                    wanted[i] = true;
                }
                let addr = a.members.first().map(|m| m.addr.clone()).unwrap_or_default();
                return Ok((addr, a.run_id(), wanted));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn filter_batch(b: SpikeBatch, wanted: &[bool]) -> SpikeBatch {
    let mut out = SpikeBatch { populations: b.populations, ..Default::default() };
    for i in 0..b.population.len() {
        if wanted.get(b.population[i] as usize).copied().unwrap_or(false) {
            out.population.push(b.population[i]);
            out.neuron.push(b.neuron[i]);
            out.time_ms.push(b.time_ms[i]);
        }
    }
    out
}

/// Run a control replica until `shutdown` completes (the binary passes SIGTERM/SIGINT).
pub async fn serve(cfg: ControlConfig, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
    let metrics = ControlMetrics::new(&cfg.id)?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("--listen {}: cannot listen", cfg.listen))?;
    let addr = listener.local_addr()?;
    let metrics_addr = neuropil_cluster::telemetry::serve(cfg.metrics_listen, metrics.registry.clone()).await?;
    std::fs::create_dir_all(&cfg.data_dir).with_context(|| format!("--data-dir {}", cfg.data_dir.display()))?;
    let mut client = etcd::connect(&cfg.etcd, Duration::from_secs(30)).await?;
    let cluster_token = ClusterToken::of_cluster(&mut client, cfg.cluster_token.clone()).await?;
    let control = Arc::new(Control {
        id: cfg.id.clone(),
        etcd: client,
        metrics: metrics.clone(),
        data_dir: cfg.data_dir.clone(),
        node_tls: cfg.node_tls.clone(),
        cluster_token,
        checkpoint_interval_ms: cfg.checkpoint_interval_ms.max(0.0),
        checkpoint_dir: cfg.checkpoint_dir.clone(),
        max_recoveries: cfg.max_recoveries,
        peer_stall: cfg.peer_stall,
    });

    let auth = BearerAuth::new(cfg.token.clone());
    let svc = ExperimentServiceServer::new(ControlSvc(control.clone()))
        .max_decoding_message_size(MAX_REQUEST_BYTES)
        .max_encoding_message_size(MAX_REQUEST_BYTES);
    let svc = tonic::service::interceptor::InterceptedService::new(svc, move |req| auth.check(req));
    let mut builder = tonic::transport::Server::builder();
    if let Some(t) = &cfg.tls.server {
        builder = builder.tls_config(t.clone()).context("--tls-cert/--tls-key")?;
    }
    let names = [<ExperimentServiceServer<ControlSvc> as NamedService>::NAME];
    let server = neuropil_cluster::server::introspection(builder, &names)
        .await?
        .add_service(svc)
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)));
    let server = tokio::spawn(server);
    println!("neuropil control {}: grpc={addr} metrics={metrics_addr}", cfg.id);

    let leader = tokio::spawn(lead(control.clone(), cfg.lease_ttl_s));
    tokio::select! {
        r = server => Err(anyhow::anyhow!("gRPC server stopped: {r:?}")),
        r = leader => Err(anyhow::anyhow!("leader election stopped: {r:?}")),
        _ = shutdown => Ok(()),
    }
}

/// Campaign for leadership forever; while leader, schedule.
async fn lead(control: Arc<Control>, ttl_s: i64) -> Result<()> {
    let id = control.id.as_str();
    // A standby's campaign returns when etcd's request timeout (10 s) passes; that
    // is waiting, not an error: said once, then only at debug level.
    let mut standing_by = false;
    loop {
        let mut c = control.etcd.clone();
        let (lease, mut lost) = match etcd::lease(&mut c, ttl_s).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(control = id, error = %format!("{e:#}"), "cannot take an etcd lease; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let campaign = tokio::select! {
            r = c.campaign(LEADER_ELECTION, control.id.clone(), lease) => r,
            _ = lost.changed() => continue,
        };
        if let Err(e) = campaign {
            if standing_by {
                tracing::debug!(control = id, error = %e, "still standing by; campaigning again");
            } else {
                tracing::info!(control = id, error = %e, "standing by: another replica leads (or etcd is slow to answer)");
                standing_by = true;
            }
            let _ = c.lease_revoke(lease).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        standing_by = false;
        tracing::info!(control = id, "elected leader");
        control.metrics.leader.set(1);
        let mut scheduler = Scheduler { control: control.clone(), collectors: Vec::new() };
        tokio::select! {
            r = scheduler.run() => match r {
                Ok(()) => tracing::warn!(control = id, "scheduler stopped"),
                Err(e) => tracing::warn!(control = id, error = %format!("{e:#}"), "scheduler stopped (etcd away?); campaigning again"),
            },
            _ = lost.changed() => tracing::warn!(control = id, "lost the leader lease"),
        }
        // Leave the election: a lease kept alive after the scheduler stopped would
        // hold the leader key, and no replica (this one included) would lead again.
        let _ = c.lease_revoke(lease).await;
        for (_, h) in scheduler.collectors.drain(..) {
            h.abort();
        }
        control.metrics.leader.set(0);
    }
}

struct Scheduler {
    control: Arc<Control>,
    collectors: Vec<(String, tokio::task::JoinHandle<()>)>,
}

impl Scheduler {
    async fn run(&mut self) -> Result<()> {
        let mut c = self.control.etcd.clone();
        loop {
            self.collectors.retain(|(_, h)| !h.is_finished());
            let mut records: Vec<ExperimentRecord> = etcd::list_json(&mut c, &format!("{PREFIX}experiments/")).await?;
            records.sort_by(|a, b| (a.submitted_unix_ms, &a.id).cmp(&(b.submitted_unix_ms, &b.id)));
            let nodes = self.control.nodes().await?;
            let m = &self.control.metrics;
            m.live_nodes.set(nodes.len() as i64);
            for s in State::ALL {
                m.experiments
                    .with_label_values(&[s.name()])
                    .set(records.iter().filter(|r| r.state == s).count() as i64);
            }
            // Runs this leader does not follow yet (started by a previous leader).
            for r in records.iter().filter(|r| matches!(r.state, State::Running | State::Recovering)) {
                if !self.collectors.iter().any(|(id, _)| id == &r.id) {
                    if let Some(a) = etcd::get_json::<Assignment>(&mut c, &run_key(&r.id)).await? {
                        let h = tokio::spawn(collect(self.control.clone(), a));
                        self.collectors.push((r.id.clone(), h));
                    } else {
                        let mut r = r.clone();
                        r.state = State::Failed;
                        r.message = "its assignment disappeared from etcd".into();
                        etcd::put_json(&mut c, &experiment_key(&r.id), &r, None).await?;
                    }
                }
            }
            // Cancelled while queued.
            for r in records.iter().filter(|r| r.state == State::Pending) {
                if c.get(cancel_key(&r.id), None).await?.count() > 0 {
                    let mut r = r.clone();
                    r.state = State::Cancelled;
                    r.message = "cancelled before it started".into();
                    etcd::put_json(&mut c, &experiment_key(&r.id), &r, None).await?;
                    c.delete(cancel_key(&r.id), None).await?;
                }
            }
            // One run at a time over the whole cluster (FIFO).
            let busy = records.iter().any(|r| matches!(r.state, State::Running | State::Recovering));
            if let (false, Some(next)) = (busy, records.iter().find(|r| r.state == State::Pending)) {
                if nodes.is_empty() {
                    if next.message != "waiting for nodes" {
                        let mut r = next.clone();
                        r.message = "waiting for nodes".into();
                        etcd::put_json(&mut c, &experiment_key(&r.id), &r, None).await?;
                    }
                } else {
                    self.start(next.clone(), &nodes).await?;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Assign shards to nodes (balanced by threads, within each node's memory) and
    /// publish the assignment the nodes watch.
    async fn start(&mut self, mut rec: ExperimentRecord, nodes: &[NodeRecord]) -> Result<()> {
        let mut c = self.control.etcd.clone();
        let etcd = self.control.etcd.clone();
        let fail = |mut rec: ExperimentRecord, why: String| {
            let mut c = etcd.clone();
            async move {
                rec.state = State::Failed;
                rec.message = why;
                etcd::put_json(&mut c, &experiment_key(&rec.id), &rec, None).await
            }
        };
        let threads: u32 = nodes.iter().map(|n| n.threads.max(1)).sum();
        let shards = if rec.shards_requested == 0 { threads } else { rec.shards_requested };
        let format = match neuropil_cluster::format_of(&rec.format) {
            Ok(f) => f,
            Err(e) => return fail(rec, e).await,
        };
        let compiled = neuropil_spec::parse(&rec.document, format, &rec.set).and_then(|mut exp| {
            exp.run.shards = shards;
            let cosim = exp.hardware.is_some();
            neuropil_spec::compile(&exp, &neuropil_spec::Limits { memory_bytes: None }).map(|c| (c, cosim))
        });
        let (compiled, cosim) = match compiled {
            Ok(c) => c,
            Err(e) => return fail(rec, e.to_string()).await,
        };
        let members = match place(nodes, shards, compiled.estimated_bytes) {
            Ok(m) => m,
            Err(why) => return fail(rec, why).await,
        };
        let m = &self.control.metrics;
        m.shards_per_node.reset();
        for mem in &members {
            m.shards_per_node.with_label_values(&[mem.node.as_str()]).set(mem.shards.len() as i64);
        }
        let net = &compiled.network;
        let names: Vec<String> = net.cerebella.iter().map(|c| c.name.clone()).collect();
        let (placement, said) = neuropil_cluster::Placement::new(&members, &names, cosim, rec.placement.clone());
        // Coordinated checkpoints, unless off or a co-simulation (whose fabric
        // state a resumed node cannot rebuild yet).
        let checkpoint_steps = if cosim {
            rec.log("no checkpoints: a co-simulated run is not checkpointed in the cluster yet");
            0
        } else {
            (self.control.checkpoint_interval_ms / net.dt_ms).round() as u64
        };
        let a = Assignment {
            id: rec.id.clone(),
            document: rec.document.clone(),
            format: rec.format.clone(),
            set: rec.set.clone(),
            shards,
            network_hash: embedded::network_hash(net),
            members,
            attempt: 0,
            checkpoint_steps,
            resume: None,
            placement,
        };
        rec.state = State::Running;
        rec.message = String::new();
        rec.shards = shards;
        rec.nodes = a.members.iter().map(|m| m.node.clone()).collect();
        rec.log(format!("running on {} ({shards} shards)", rec.nodes.join(", ")));
        if !said.is_empty() {
            rec.log(said.join("; "));
        }
        etcd::put_json(&mut c, &experiment_key(&rec.id), &rec, None).await?;
        etcd::put_json(&mut c, &run_key(&rec.id), &a, None).await?;
        let h = tokio::spawn(collect(self.control.clone(), a));
        self.collectors.push((rec.id.clone(), h));
        Ok(())
    }
}

/// Follow a run on all its nodes: progress into etcd (a few times a second) and
/// metrics, coordinated checkpoints into its manifest; when a node is lost, roll
/// the run back to its last complete checkpoint on the nodes left (or that
/// joined); at the end, combine the nodes' results and write them out.
async fn collect(control: Arc<Control>, mut a: Assignment) {
    let mut recoveries: Vec<std::time::Instant> = Vec::new();
    // Nodes this run lost: their records stay in etcd until their leases lapse,
    // and until then they must not look like nodes that joined.
    let mut gone: Vec<String> = Vec::new();
    let (outcome, actors) = loop {
        let mut actors = vec![Vec::new(); a.members.len()];
        forget_returned(&control, &mut gone).await;
        let outcome = follow(&control, &a, &mut actors, &gone).await;
        match outcome.map_err(|e| e.downcast::<Move>()) {
            Err(Ok(lost)) => {
                if lost.cause == Cause::NodeLost {
                    gone.extend(lost.leave.iter().cloned());
                }
                forget_returned(&control, &mut gone).await;
                match recover(&control, &a, &lost, &mut recoveries, &gone).await {
                    Ok(next) => a = next,
                    Err(why) => break (Err(anyhow::anyhow!("{lost}; {why}")), actors),
                }
            }
            Err(Err(e)) => break (Err(e), actors),
            Ok(done) => break (Ok(done), actors),
        }
    };
    let mut c = control.etcd.clone();
    let Ok(Some(mut rec)) = etcd::get_json::<ExperimentRecord>(&mut c, &experiment_key(&a.id)).await else { return };
    rec.actors = all_actors(&actors, rec.document.len());
    let cancelled = c.get(cancel_key(&a.id), None).await.map(|r| r.count() > 0).unwrap_or(false);
    match outcome {
        Ok(done) => {
            rec.state = if cancelled { State::Cancelled } else { State::Succeeded };
            rec.message =
                if cancelled { "cancelled; results up to the stop were written".into() } else { String::new() };
            rec.spike_hash = Some(done.spike_hash);
            rec.synapses = done.synapses;
            rec.spikes = done.populations.iter().map(|p| p.spikes).sum();
            rec.populations = done.populations;
            rec.bio_time_ms = done.bio_time_ms;
            rec.rtf = done.rtf;
            rec.output_dir = done.output_dir;
        }
        Err(e) => {
            rec.state = State::Failed;
            rec.message = format!("{e:#}");
            // Stop whatever still runs.
            let _ = c.put(cancel_key(&a.id), "failed", None).await;
        }
    }
    rec.log(match rec.state {
        State::Failed => format!("failed: {}", rec.message),
        s => s.name().to_string(),
    });
    // The run is over (its results are written): its checkpoints have served.
    // Gone before the record says so.
    let _ = c.delete(checkpoints_key(&a.id), None).await;
    let _ = c.delete(neuropil_cluster::checkpoint_request_key(&a.id), None).await;
    for attempt in 0..=a.attempt {
        let _ = c.delete(neuropil_cluster::checkpoint_at_key(&neuropil_cluster::run_id(&a.id, attempt)), None).await;
    }
    if let Some(dir) = &control.checkpoint_dir {
        let _ = std::fs::remove_dir_all(dir.join(&a.id));
    }
    let elapsed = now_unix_ms().saturating_sub(rec.submitted_unix_ms) as f64 / 1000.0;
    control.metrics.run_duration.with_label_values(&[rec.state.name()]).observe(elapsed);
    let _ = etcd::put_json(&mut c, &experiment_key(&a.id), &rec, None).await;
    let _ = c.delete(run_key(&a.id), None).await;
    let _ = c.delete(cancel_key(&a.id), None).await;
    for attempt in 0..a.attempt {
        let _ = c.delete(neuropil_cluster::stop_key(&neuropil_cluster::run_id(&a.id, attempt)), None).await;
    }
    control.metrics.shards_per_node.reset();
    control.metrics.checkpoint_bytes.set(0);
}

/// Why an attempt of a run ends so that the run goes on from its last complete
/// checkpoint with other nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
enum Cause {
    /// Nodes were lost: their run streams broke or ended, or their leases lapsed.
    #[default]
    NodeLost,
    /// A node drains (SIGTERM): its shards move at a checkpoint taken for it.
    Drain,
    /// A node joined: the shards spread over it at the next checkpoint.
    Rescale,
}

impl Cause {
    fn label(self) -> &'static str {
        match self {
            Cause::NodeLost => "node_lost",
            Cause::Drain => "drain",
            Cause::Rescale => "rescale",
        }
    }
}

/// An attempt of a run ended and the run moves: from its last complete
/// checkpoint, onto the live nodes but `leave`.
#[derive(Debug, Clone, Default, thiserror::Error)]
#[error("{message}")]
struct Move {
    cause: Cause,
    message: String,
    /// Nodes to leave out of the next placement (lost or draining).
    leave: Vec<String>,
}

/// Roll `a` back to its last complete checkpoint and place it again on the live
/// nodes other than the lost ones: the next attempt's assignment (published), or
/// why the run cannot recover.
async fn recover(
    control: &Control,
    a: &Assignment,
    lost: &Move,
    recoveries: &mut Vec<std::time::Instant>,
    gone: &[String],
) -> Result<Assignment, String> {
    let mut c = control.etcd.clone();
    let etcd_err = |e: anyhow::Error| format!("etcd: {e:#}");
    if c.get(cancel_key(&a.id), None).await.map(|r| r.count() > 0).unwrap_or(false) {
        return Err("it was being cancelled".into());
    }
    let checkpoints: Checkpoints =
        etcd::get_json(&mut c, &checkpoints_key(&a.id)).await.map_err(etcd_err)?.unwrap_or_default();
    let Some(manifest) = checkpoints.complete.last().cloned() else {
        return Err("no complete checkpoint to recover from yet (nodes write them with --checkpoint-dir, every \
                    --checkpoint-interval-ms of the control)"
            .into());
    };
    if lost.cause == Cause::NodeLost {
        recoveries.retain(|t| t.elapsed() < config::RECOVERY_WINDOW);
        if recoveries.len() as u32 >= control.max_recoveries {
            return Err(format!(
                "{} recoveries within {} minutes already (--max-recoveries): giving up",
                recoveries.len(),
                config::RECOVERY_WINDOW.as_secs() / 60
            ));
        }
        recoveries.push(std::time::Instant::now());
    }
    // Whatever is left of this attempt stops (the survivors have mostly stopped
    // already: their exchange with the lost node broke).
    let _ = c.put(neuropil_cluster::stop_key(&a.run_id()), "recovering", None).await;
    let lost_ids = &lost.leave;
    let Some(mut rec) = etcd::get_json::<ExperimentRecord>(&mut c, &experiment_key(&a.id)).await.map_err(etcd_err)?
    else {
        return Err("its record disappeared from etcd".into());
    };
    let at_ms = manifest.step as f64 * dt_of(a);
    rec.state = State::Recovering;
    rec.log(lost.message.clone());
    if lost.cause == Cause::NodeLost {
        rec.recoveries += 1;
        rec.message = format!("{}; rolling back to the checkpoint at {at_ms} ms", lost.message);
        rec.log(format!("recovering: rolling back to the checkpoint at {at_ms} ms"));
    } else {
        rec.message = format!("{}; moving from the checkpoint at {at_ms} ms", lost.message);
    }
    etcd::put_json(&mut c, &experiment_key(&a.id), &rec, None).await.map_err(etcd_err)?;
    control.metrics.recoveries.with_label_values(&[lost.cause.label()]).inc();
    tracing::warn!(experiment = %a.id, attempt = a.attempt, leave = ?lost_ids, at_ms, cause = lost.cause.label(), "moving the run");
    // The live nodes, without the lost ones (whose records stay until their
    // leases lapse); a node that joined meanwhile takes part.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let nodes = loop {
        let nodes: Vec<NodeRecord> = match control.nodes().await {
            Ok(n) => n.into_iter().filter(|n| !lost_ids.contains(&n.id) && !gone.contains(&n.id)).collect(),
            Err(e) => return Err(e.to_string()),
        };
        if !nodes.is_empty() {
            break nodes;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err("no live node to recover on within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let members = place(&nodes, a.shards, rec.estimated_bytes)?;
    let (placement, said) = a.placement.again(&members);
    let next = Assignment { attempt: a.attempt + 1, resume: Some(manifest), members, placement, ..a.clone() };
    rec.state = State::Running;
    rec.message = String::new();
    rec.nodes = next.members.iter().map(|m| m.node.clone()).collect();
    rec.log(format!("resumed from {at_ms} ms on {} (attempt {})", rec.nodes.join(", "), next.attempt + 1));
    if !said.is_empty() {
        rec.log(said.join("; "));
    }
    etcd::put_json(&mut c, &experiment_key(&a.id), &rec, None).await.map_err(etcd_err)?;
    etcd::put_json(&mut c, &run_key(&a.id), &next, None).await.map_err(etcd_err)?;
    let m = &control.metrics;
    m.shards_per_node.reset();
    for mem in &next.members {
        m.shards_per_node.with_label_values(&[mem.node.as_str()]).set(mem.shards.len() as i64);
    }
    Ok(next)
}

/// Forget the lost nodes whose records have left etcd (their leases lapsed): if
/// they register again, they are new nodes.
async fn forget_returned(control: &Control, gone: &mut Vec<String>) {
    if gone.is_empty() {
        return;
    }
    let mut c = control.etcd.clone();
    let Ok(records) = etcd::list_json::<NodeRecord>(&mut c, &format!("{PREFIX}nodes/")).await else { return };
    gone.retain(|id| records.iter().any(|r| &r.id == id));
}

/// The time step of an assignment's experiment, ms.
fn dt_of(a: &Assignment) -> f64 {
    neuropil_cluster::format_of(&a.format)
        .ok()
        .and_then(|f| neuropil_spec::parse(&a.document, f, &a.set).ok())
        .map_or(0.1, |e| e.run.dt_ms)
}

struct Finished {
    spike_hash: u64,
    synapses: u64,
    populations: Vec<PopulationCount>,
    bio_time_ms: f64,
    rtf: f64,
    output_dir: String,
}

/// Bytes of an experiment's record (document included) up to which actors are
/// listed in it: etcd takes requests up to 1.5 MiB, and the record is rewritten a
/// few times a second. Beyond it, `status` lists the first ones, in rank order.
const RECORD_BUDGET_BYTES: usize = 1 << 20;

fn all_actors(per_rank: &[Vec<ActorRecord>], document_bytes: usize) -> Vec<ActorRecord> {
    let mut left = RECORD_BUDGET_BYTES.saturating_sub(document_bytes);
    per_rank
        .iter()
        .flatten()
        .take_while(|a| {
            let size = a.kind.len() + a.name.len() + a.node.len() + a.state.len() + 48; // JSON around them
            left = left.saturating_sub(size);
            left > 0
        })
        .cloned()
        .collect()
}

/// `actors[rank]`: the actors each node last reported.
async fn follow(
    control: &Control,
    a: &Assignment,
    actors: &mut [Vec<ActorRecord>],
    gone: &[String],
) -> Result<Finished> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(usize, Result<run_event::Event, String>)>(256);
    for (rank, m) in a.members.iter().enumerate() {
        let (tx, addr, run, tls) = (tx.clone(), m.addr.clone(), a.run_id(), control.node_tls.clone());
        let token = control.cluster_token.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            let mut stream = loop {
                let attempt = async {
                    let endpoint = tls.endpoint(&addr).map_err(|e| format!("{e:#}"))?;
                    let channel = endpoint.connect().await.map_err(|e| e.to_string())?;
                    let mut client = NodeServiceClient::new(channel).max_decoding_message_size(usize::MAX);
                    let req = token.request(WatchRunRequest { run: run.clone() });
                    client.watch_run(req).await.map_err(|s| s.message().to_string())
                };
                match attempt.await {
                    Ok(s) => break s.into_inner(),
                    Err(e) if tokio::time::Instant::now() >= deadline => {
                        let _ = tx.send((rank, Err(format!("unreachable at {addr}: {e}")))).await;
                        return;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            };
            loop {
                match stream.message().await {
                    Ok(Some(ev)) => {
                        let Some(ev) = ev.event else { continue };
                        let end = matches!(ev, run_event::Event::Result(_) | run_event::Event::Error(_));
                        if tx.send((rank, Ok(ev))).await.is_err() || end {
                            return;
                        }
                    }
                    // The node itself is gone (killed, its host lost) or cut off.
                    Ok(None) => {
                        let _ = tx.send((rank, Err(format!("lost: its run stream at {addr} ended early")))).await;
                        return;
                    }
                    Err(s) => {
                        let why = format!("lost: its run stream at {addr} broke ({})", s.message());
                        let _ = tx.send((rank, Err(why))).await;
                        return;
                    }
                }
            }
        });
    }
    drop(tx);
    let mut results: Vec<Option<Vec<u8>>> = vec![None; a.members.len()];
    let mut c = control.etcd.clone();
    let mut last_write = tokio::time::Instant::now();
    // Parsed once: progress events arrive every 50 ms.
    let (names, dt): (Vec<String>, f64) = {
        let exp = neuropil_spec::parse(
            &a.document,
            neuropil_cluster::format_of(&a.format).map_err(anyhow::Error::msg)?,
            &a.set,
        )?;
        (exp.populations.iter().map(|p| p.name.clone()).collect(), exp.run.dt_ms)
    };
    let n = a.members.len();
    let mut ended = vec![false; n];
    // The first failure, the ranks whose streams broke, and how long to wait for
    // the others to end (they stop at the same epoch, or their exchange breaks).
    let (mut failure, mut lost, mut grace, mut stopping) = (None::<String>, Vec::new(), None, false);
    // Each rank's last checkpoint part, and the last complete checkpoint.
    let mut parts: Vec<Option<neuropil_proto::v1::CheckpointPart>> = vec![None; n];
    // What each rank last said it waits for: (peer node, seconds, when it said so).
    let mut waits: Vec<Option<(String, f64, tokio::time::Instant)>> = vec![None; n];
    let mut last_complete = a.resume.as_ref().map_or(0, |m| m.step);
    // How far the run is (absolute step) and its wall time per step; a checkpoint
    // asked for (drain, a user's request) at a step, and the draining nodes.
    let (mut latest_step, mut wall_per_step) = (a.resume.as_ref().map_or(0, |m| m.step), 0.0f64);
    let (mut asked, mut drain_at, mut draining) = (None::<u64>, None::<u64>, Vec::<String>::new());
    let ask = |latest: u64, wall_per_step: f64| {
        // Far enough ahead that every node hears of it before it gets there: 300
        // ms of biological time, and at least half a second of wall time.
        let bio = (300.0 / dt).ceil() as u64;
        let wall = if wall_per_step > 0.0 { (0.5 / wall_per_step).ceil() as u64 } else { 0 };
        latest + bio.max(wall)
    };
    // A node that stops answering (frozen, cut off) keeps its stream open: its
    // lease lapsing in etcd is what says it is gone.
    let mut heartbeat = tokio::time::interval(Duration::from_secs(1));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let far = tokio::time::Instant::now() + Duration::from_secs(3600);
        let next = tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => Some(ev),
                None => break,
            },
            _ = heartbeat.tick() => None,
            _ = tokio::time::sleep_until(grace.unwrap_or(far)), if grace.is_some() => break,
        };
        match next {
            // A node already given up for lost (its lease lapsed) that speaks again.
            Some((rank, _)) if lost.contains(&rank) => continue,
            Some((rank, ev)) => {
                let node = &a.members[rank].node;
                match ev {
                    Err(e) => {
                        ended[rank] = true;
                        lost.push(rank);
                        failure.get_or_insert(format!("{node} (rank {rank}) {e}"));
                    }
                    Ok(run_event::Event::Error(e)) => {
                        ended[rank] = true;
                        failure.get_or_insert(format!("{node} (rank {rank}): {e}"));
                    }
                    Ok(run_event::Event::Result(bytes)) => {
                        ended[rank] = true;
                        results[rank] = Some(bytes);
                    }
                    Ok(run_event::Event::Progress(p)) => {
                        waits[rank] = (!p.waiting_on.is_empty())
                            .then(|| (p.waiting_on.clone(), p.waiting_s, tokio::time::Instant::now()));
                        if let Some(part) = &p.checkpoint {
                            if parts[rank].as_ref().is_none_or(|old| old.step < part.step) {
                                parts[rank] = Some(part.clone());
                            }
                            let step = part.step;
                            if step > last_complete && parts.iter().all(|x| x.as_ref().is_some_and(|x| x.step == step))
                            {
                                // etcd away: tried again with the next progress event.
                                if let Err(e) = checkpointed(control, a, manifest_of(a, &parts), dt).await {
                                    tracing::warn!(experiment = %a.id, error = %format!("{e:#}"), "cannot record a checkpoint");
                                    continue;
                                }
                                last_complete = step;
                                if asked.is_some_and(|x| step >= x) {
                                    asked = None;
                                    let _ = c.delete(neuropil_cluster::checkpoint_at_key(&a.run_id()), None).await;
                                }
                                if let Some(mv) = moves_after(control, a, step, drain_at, &draining, gone).await {
                                    let _ =
                                        c.put(neuropil_cluster::stop_key(&a.run_id()), mv.cause.label(), None).await;
                                    return Err(mv.into());
                                }
                            }
                        }
                        actors[rank] = p.actors.iter().map(ActorRecord::from_proto).collect();
                        if rank == 0 && p.steps_done > latest_step {
                            let start = a.resume.as_ref().map_or(0, |m| m.step);
                            latest_step = p.steps_done;
                            wall_per_step = p.wall_s / (latest_step - start).max(1) as f64;
                        }
                        if rank == 0 && failure.is_none() {
                            // etcd away: progress is written again when it is back.
                            let r = follow_progress(control, a, &mut c, &mut last_write, &names, dt, &p, actors).await;
                            if let Err(e) = r {
                                tracing::debug!(experiment = %a.id, error = %format!("{e:#}"), "cannot write progress");
                            }
                        }
                    }
                    Ok(_) => {}
                }
            }
            None => {
                // A user's request for a checkpoint now.
                let request = neuropil_cluster::checkpoint_request_key(&a.id);
                let wanted = c.get(request.clone(), None).await.map(|r| r.count() > 0).unwrap_or(false);
                // A checkpoint asked for that some node passed before it heard of it.
                let missed = asked.is_some_and(|x| last_complete < x && latest_step > x + (300.0 / dt) as u64);
                if (wanted && asked.is_none()) || missed {
                    let x = ask(latest_step, wall_per_step);
                    if c.put(neuropil_cluster::checkpoint_at_key(&a.run_id()), x.to_string(), None).await.is_ok() {
                        asked = Some(x);
                        if drain_at.is_some() {
                            drain_at = Some(x);
                        }
                    }
                }
                if wanted {
                    let _ = c.delete(request, None).await;
                }
                for (rank, m) in a.members.iter().enumerate() {
                    if ended[rank] {
                        continue;
                    }
                    // etcd itself away is not a lost node.
                    let Ok(record) = etcd::get_json::<NodeRecord>(&mut c, &neuropil_cluster::node_key(&m.node)).await
                    else {
                        continue;
                    };
                    if record.as_ref().is_none_or(|r| r.addr != m.addr) {
                        ended[rank] = true;
                        lost.push(rank);
                        failure.get_or_insert(format!(
                            "{} (rank {rank}) lost: its etcd lease lapsed (it stopped answering)",
                            m.node
                        ));
                    } else if record.is_some_and(|r| r.draining) && !draining.contains(&m.node) {
                        // Shutting down: a checkpoint for it, then its shards move.
                        draining.push(m.node.clone());
                        let x = match asked {
                            Some(x) => x,
                            None => ask(latest_step, wall_per_step),
                        };
                        if c.put(neuropil_cluster::checkpoint_at_key(&a.run_id()), x.to_string(), None).await.is_ok() {
                            asked = Some(x);
                            drain_at = Some(x);
                        }
                    }
                }
                if lost.is_empty() && failure.is_none() {
                    if let Some((victim, other, s)) = partitioned(a, &waits, control.peer_stall) {
                        ended[victim] = true;
                        lost.push(victim);
                        failure.get_or_insert(format!(
                            "{} (rank {victim}) lost: it and {} (rank {other}) cannot reach each other (each has \
                             waited {s:.0} s for the other's epoch message while both still reach etcd)",
                            a.members[victim].node, a.members[other].node
                        ));
                    }
                }
            }
        }
        if !lost.is_empty() && !stopping {
            // The attempt cannot finish: the others stop now instead of waiting
            // for the lost node until their exchange times out.
            stopping = true;
            let _ = c.put(neuropil_cluster::stop_key(&a.run_id()), "a node was lost", None).await;
        }
        if ended.iter().all(|e| *e) {
            break;
        }
        if failure.is_some() && grace.is_none() {
            grace = Some(tokio::time::Instant::now() + Duration::from_secs(5));
        }
    }
    if let Some(first) = failure {
        if !lost.is_empty() {
            // The lost node's own words where they came first: "node-1 (rank 1) lost: ...".
            let message = if first.contains(" lost: ") || first.contains(" unreachable ") {
                first
            } else {
                let names: Vec<String> = lost.iter().map(|&r| format!("{} (rank {r})", a.members[r].node)).collect();
                format!("{} lost ({first})", names.join(", "))
            };
            let leave = lost.iter().map(|&r| a.members[r].node.clone()).collect();
            return Err(Move { cause: Cause::NodeLost, message, leave }.into());
        }
        anyhow::bail!(first);
    }
    if !results.iter().all(Option::is_some) {
        anyhow::bail!("a node's run stream ended without results");
    }
    let parts: Vec<RunOutput> = results
        .into_iter()
        .enumerate()
        .map(|(rank, b)| {
            postcard::from_bytes(&b.unwrap_or_default())
                .with_context(|| format!("decoding the results of {}", a.members[rank].node))
        })
        .collect::<Result<_>>()?;
    let out = embedded::combine_parts(parts);
    let data_dir = control.data_dir.clone();
    let a2 = a.clone();
    // Writing parquet is blocking work.
    tokio::task::spawn_blocking(move || write_results(&data_dir, &a2, out)).await?
}

/// After the checkpoint at `step` completed: whether the run moves now — off
/// draining nodes (once the checkpoint asked for them is there), or onto nodes
/// that joined (when they would get shards).
async fn moves_after(
    control: &Control,
    a: &Assignment,
    step: u64,
    drain_at: Option<u64>,
    draining: &[String],
    gone: &[String],
) -> Option<Move> {
    if drain_at.is_some_and(|x| step >= x) && !draining.is_empty() {
        return Some(Move {
            cause: Cause::Drain,
            message: format!("{} drains (SIGTERM): its shards move to the other nodes", draining.join(", ")),
            leave: draining.to_vec(),
        });
    }
    let mut nodes = control.nodes().await.ok()?;
    nodes.retain(|n| !gone.contains(&n.id));
    let members: Vec<&str> = a.members.iter().map(|m| m.node.as_str()).collect();
    let joined: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).filter(|n| !members.contains(n)).collect();
    if joined.is_empty() {
        return None;
    }
    let mut c = control.etcd.clone();
    let rec = etcd::get_json::<ExperimentRecord>(&mut c, &experiment_key(&a.id)).await.ok()??;
    let placed = place(&nodes, a.shards, rec.estimated_bytes).ok()?;
    let mut now: Vec<&str> = placed.iter().map(|m| m.node.as_str()).collect();
    let mut before = members.clone();
    now.sort();
    before.sort();
    (now != before).then(|| Move {
        cause: Cause::Rescale,
        message: format!("{} joined: the shards spread over {} nodes", joined.join(", "), now.len()),
        leave: vec![],
    })
}

/// The manifest of the checkpoint whose parts are `parts` (one per rank, all at
/// the same step).
fn manifest_of(a: &Assignment, parts: &[Option<neuropil_proto::v1::CheckpointPart>]) -> Manifest {
    Manifest {
        step: parts.iter().flatten().next().map_or(0, |p| p.step),
        attempt: a.attempt,
        parts: parts
            .iter()
            .flatten()
            .zip(&a.members)
            .enumerate()
            .map(|(r, (x, m))| PartRef {
                rank: r as u32,
                node: m.node.clone(),
                shards: m.shards.clone(),
                path: x.path.clone(),
                bytes: x.bytes,
                digest: x.digest,
            })
            .collect(),
    }
}

/// Two ranks that have each waited `stall` or longer for the other's epoch message
/// (each has sent its own: the exchange sends before it receives) cannot reach
/// each other. The one of the pair more ranks wait for leaves the run (the
/// higher rank on a tie); returns (it, the other, the shorter wait in s).
fn partitioned(
    a: &Assignment,
    waits: &[Option<(String, f64, tokio::time::Instant)>],
    stall: Duration,
) -> Option<(usize, usize, f64)> {
    let rank_of = |node: &str| a.members.iter().position(|m| m.node == node);
    let stalled: Vec<Option<(usize, f64)>> = waits
        .iter()
        .map(|w| {
            let (peer, s, at) = w.as_ref()?;
            let s = s + at.elapsed().as_secs_f64();
            (s >= stall.as_secs_f64()).then_some((rank_of(peer)?, s))
        })
        .collect();
    let waited_for = |r: usize| stalled.iter().flatten().filter(|(p, _)| *p == r).count();
    for (x, w) in stalled.iter().enumerate() {
        let Some((y, sx)) = *w else { continue };
        if let Some(Some((back, sy))) = stalled.get(y) {
            if *back == x {
                let victim = match waited_for(x).cmp(&waited_for(y)) {
                    std::cmp::Ordering::Greater => x,
                    std::cmp::Ordering::Less => y,
                    std::cmp::Ordering::Equal => x.max(y),
                };
                let other = if victim == x { y } else { x };
                return Some((victim, other, sx.min(*sy)));
            }
        }
    }
    None
}

/// The recording node's progress: metrics, and a few times a second the record.
#[allow(clippy::too_many_arguments)]
async fn follow_progress(
    control: &Control,
    a: &Assignment,
    c: &mut Client,
    last_write: &mut tokio::time::Instant,
    names: &[String],
    dt: f64,
    p: &neuropil_proto::v1::NodeProgress,
    actors: &[Vec<ActorRecord>],
) -> Result<()> {
    let m = &control.metrics;
    let bio_s = p.steps_done as f64 * dt / 1000.0;
    m.bio_time.set(bio_s);
    if bio_s > 0.0 {
        m.rtf.set(p.wall_s / bio_s);
    }
    for (name, n) in names.iter().zip(&p.population_spikes) {
        m.spikes.with_label_values(&[name.as_str()]).set(*n as i64);
    }
    if last_write.elapsed() >= Duration::from_millis(250) {
        *last_write = tokio::time::Instant::now();
        if let Some(mut rec) = etcd::get_json::<ExperimentRecord>(c, &experiment_key(&a.id)).await? {
            rec.bio_time_ms = bio_s * 1000.0;
            rec.rtf = if bio_s > 0.0 { p.wall_s / bio_s } else { 0.0 };
            rec.spikes = p.spikes;
            rec.populations = names
                .iter()
                .zip(&p.population_spikes)
                .map(|(n, &s)| PopulationCount { population: n.clone(), spikes: s, rate_hz: 0.0 })
                .collect();
            rec.message = p.phase.clone();
            rec.actors = all_actors(actors, rec.document.len());
            etcd::put_json(c, &experiment_key(&a.id), &rec, None).await?;
        }
    }
    Ok(())
}

/// Every rank's part of the checkpoint at `manifest.step` is durable: record it
/// as the run's last complete checkpoint, keep the last two, delete older ones.
async fn checkpointed(control: &Control, a: &Assignment, manifest: Manifest, dt: f64) -> Result<()> {
    let mut c = control.etcd.clone();
    let key = checkpoints_key(&a.id);
    let mut all: Checkpoints = etcd::get_json(&mut c, &key).await?.unwrap_or_default();
    let (step, bytes) = (manifest.step, manifest.bytes());
    all.complete.push(manifest);
    let gone: Vec<Manifest> = all.complete.drain(..all.complete.len().saturating_sub(2)).collect();
    etcd::put_json(&mut c, &key, &all, None).await?;
    if let Some(dir) = &control.checkpoint_dir {
        for part in gone.iter().flat_map(|m| &m.parts) {
            let rel = std::path::Path::new(&part.path);
            // Only a path inside the volume (it came from a node).
            if rel.components().all(|c| matches!(c, std::path::Component::Normal(_))) {
                if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
                    let _ = std::fs::remove_dir_all(dir.join(parent));
                }
            }
        }
    }
    control.metrics.checkpoint_bytes.set(bytes as i64);
    if let Some(mut rec) = etcd::get_json::<ExperimentRecord>(&mut c, &experiment_key(&a.id)).await? {
        let first = rec.checkpoint_ms == 0.0;
        rec.checkpoint_ms = step as f64 * dt;
        if first {
            rec.log(format!("first complete checkpoint at {} ms ({bytes} bytes)", rec.checkpoint_ms));
        }
        etcd::put_json(&mut c, &experiment_key(&a.id), &rec, None).await?;
    }
    Ok(())
}

/// Write summary.json and the parquet files into `<data_dir>/<id>/`, exactly as
/// `neuropil run` would.
fn write_results(data_dir: &std::path::Path, a: &Assignment, out: RunOutput) -> Result<Finished> {
    let format = neuropil_cluster::format_of(&a.format).map_err(anyhow::Error::msg)?;
    let mut experiment = neuropil_spec::parse(&a.document, format, &a.set)?;
    experiment.run.shards = a.shards;
    let compiled = neuropil_spec::compile(&experiment, &neuropil_spec::Limits { memory_bytes: None })?;
    let threads: usize = a.members.iter().map(|m| m.threads as usize).sum();
    let net = &compiled.network;
    let name = if experiment.name.is_empty() { "experiment" } else { experiment.name.as_str() };
    let ctx = neuropil_output::summary::Context {
        experiment: name,
        net,
        start_step: 0,
        steps: out.stats.steps,
        transient_steps: compiled.transient_steps,
        threads,
        shards: a.shards as usize,
        dc_pa: &compiled.dc_compensation_pa,
        peak_rss_bytes: None, // the control's own memory says nothing about the run
    };
    let mut summary = neuropil_output::summary::summarize(&ctx, &out);
    summary.hardware = out.hardware.as_deref().and_then(|h| serde_json::from_str(h).ok());
    let target = data_dir.join(&a.id);
    let staging = neuropil_output::Staging::new(&target)?;
    neuropil_output::write_results(staging.dir(), net, &out, &summary)?;
    staging.commit()?;
    let bio_time_ms = out.stats.steps as f64 * net.dt_ms;
    Ok(Finished {
        spike_hash: out.spike_hash,
        synapses: out.stats.synapses,
        populations: summary
            .populations
            .iter()
            .map(|p| PopulationCount { population: p.name.clone(), spikes: p.spikes, rate_hz: p.rate_hz })
            .collect(),
        bio_time_ms,
        rtf: if bio_time_ms > 0.0 { out.stats.simulate_s / (bio_time_ms / 1000.0) } else { 0.0 },
        output_dir: target.display().to_string(),
    })
}

//! `neuropil control`: the ExperimentService. Every replica answers requests from
//! etcd; one replica, elected through etcd, schedules pending experiments onto the
//! live nodes, follows their runs, and writes the results into its data directory.

mod actors;
mod api;
mod collect;
pub mod config;
pub mod error;
mod follow;
pub mod metrics;
mod placement;
mod results;
mod scheduler;

use anyhow::{Context as _, Result};
use api::*;
use collect::*;
pub use config::ControlConfig;
pub use error::ControlError;
use etcd_client::{Client, EventType};
use follow::*;
use metrics::ControlMetrics;
use neuropil_cluster::auth::{BearerAuth, ClusterToken};
use neuropil_cluster::{
    cancel_key, checkpoints_key, etcd, experiment_key, now_unix_ms, run_key, ActorRecord, Assignment, Checkpoints,
    ExperimentRecord, Manifest, NodeRecord, PartRef, PopulationCount, State, MAX_DOCUMENT_BYTES, MAX_REQUEST_BYTES,
    PREFIX,
};
use neuropil_proto::v1::experiment_service_server::{ExperimentService, ExperimentServiceServer};
use neuropil_proto::v1::node_service_client::NodeServiceClient;
use neuropil_proto::v1::{
    run_event, CancelRequest, CheckpointRequest, ExperimentInfo, GetRequest, GetResultsRequest, ListRequest,
    ListResponse, ResultChunk, SpikeBatch, StreamSpikesRequest, SubmitRequest, SubmitResponse, WatchRequest,
    WatchRunRequest,
};
use neuropil_sim::embedded::{self, RunOutput};
use placement::{place, shard_bytes_of, wanted_places};
use results::*;
use scheduler::*;
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
        // Areas whole on one shard each must fit a node (the shard count as the
        // scheduler will pick it: asked for, or one per live thread).
        if !nodes.is_empty() {
            let shards = if req.shards == 0 { nodes.iter().map(|n| n.threads.max(1)).sum() } else { req.shards };
            let bytes = neuropil_spec::compile::shard_bytes(&compiled.network, shards, compiled.estimated_bytes);
            if let Some(why) = placement::groups_too_large(&exp, &compiled.network, &bytes, &nodes) {
                return Err(ControlError::TooLarge(why));
            }
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

    // Campaign for leadership for as long as this replica serves; while leader,
    // schedule and follow the runs (actors.rs).
    let (leader, mut leader_done) = ractor::Actor::spawn(None, actors::LeaderActor, (control.clone(), cfg.lease_ttl_s))
        .await
        .context("cannot start the leader actor")?;
    let outcome = tokio::select! {
        r = server => Err(anyhow::anyhow!("gRPC server stopped: {r:?}")),
        r = &mut leader_done => Err(anyhow::anyhow!("leader election stopped: {r:?}")),
        _ = shutdown => Ok(()),
    };
    // Leave the election (the leader actor revokes its lease as it stops).
    leader.stop(None);
    if !leader_done.is_finished() && tokio::time::timeout(Duration::from_secs(10), &mut leader_done).await.is_err() {
        leader.kill();
    }
    outcome
}

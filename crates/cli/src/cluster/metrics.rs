//! Prometheus metrics of node and control processes, served over HTTP at
//! `/metrics` (text exposition format; `promtool check metrics` passes on it).

use anyhow::{Context as _, Result};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::net::SocketAddr;

/// Latency buckets for per-epoch figures: 10 µs to 1 s.
const EPOCH_BUCKETS: &[f64] =
    &[1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0];

/// Metrics of a node process.
#[derive(Clone)]
pub struct NodeMetrics {
    /// Registry they live in.
    pub registry: Registry,
    /// Biological time simulated by the current (or last) run, s.
    pub bio_time: prometheus::Gauge,
    /// Wall time per biological time of the current run.
    pub rtf: prometheus::Gauge,
    /// Spikes per population, as seen by this node (every node sees all spikes).
    pub spikes: IntCounterVec,
    /// Synaptic events delivered by this node's shards.
    pub synaptic_events: IntCounter,
    /// Wall time of one epoch's exchange call, including waiting for peers.
    pub epoch_exchange: Histogram,
    /// Time spent waiting for the peers' messages of an epoch.
    pub exchange_wait: Histogram,
    /// Bytes of epoch messages, by direction (sent, received).
    pub exchange_bytes: IntCounterVec,
    /// Exchange streams this node opened to peers, by transport (tcp, unix).
    pub exchange_streams: IntCounterVec,
    /// Shards hosted now.
    pub shards: IntGauge,
    /// Fraction of this node's shards built, 0..1.
    pub build_progress: prometheus::Gauge,
    /// Runs ended, by outcome.
    pub runs: IntCounterVec,
    /// Cerebellar modules: mean squared task error over the last stretch, by module.
    pub module_error: prometheus::GaugeVec,
    /// Cerebellar modules: correlation of predicted and true feedback over the last
    /// stretch, by module.
    pub module_correlation: prometheus::GaugeVec,
}

impl NodeMetrics {
    /// Register every node metric (and the process collector) in a fresh registry.
    pub fn new(node: &str) -> Result<NodeMetrics> {
        let registry =
            Registry::new_custom(Some("neuropil".into()), Some([("node".to_string(), node.to_string())].into()))?;
        let m = NodeMetrics {
            bio_time: prometheus::Gauge::new("bio_time_seconds", "Biological time simulated by the current run")?,
            rtf: prometheus::Gauge::new("real_time_factor", "Wall-clock time per biological time of the current run")?,
            spikes: IntCounterVec::new(Opts::new("spikes_total", "Spikes, by population"), &["population"])?,
            synaptic_events: IntCounter::new("synaptic_events_total", "Synaptic events delivered by this node")?,
            epoch_exchange: Histogram::with_opts(
                HistogramOpts::new(
                    "epoch_exchange_duration_seconds",
                    "Wall time from sending an epoch's spikes to having every peer's (Poisson draws overlap it)",
                )
                .buckets(EPOCH_BUCKETS.to_vec()),
            )?,
            exchange_wait: Histogram::with_opts(
                HistogramOpts::new("exchange_wait_seconds", "Time waiting for the peers' messages of an epoch")
                    .buckets(EPOCH_BUCKETS.to_vec()),
            )?,
            exchange_bytes: IntCounterVec::new(
                Opts::new("exchange_bytes_total", "Bytes of epoch messages exchanged with peers"),
                &["direction"],
            )?,
            exchange_streams: IntCounterVec::new(
                Opts::new("exchange_streams_opened_total", "Spike exchange streams this node opened, by transport"),
                &["transport"],
            )?,
            shards: IntGauge::new("shards", "Shards hosted by this node")?,
            build_progress: prometheus::Gauge::new("build_progress_ratio", "Fraction of this node's shards built")?,
            runs: IntCounterVec::new(Opts::new("runs_total", "Runs ended on this node, by outcome"), &["outcome"])?,
            module_error: prometheus::GaugeVec::new(
                Opts::new(
                    "cerebellum_task_error",
                    "Mean squared task error of a cerebellar module over the last stretch",
                ),
                &["module"],
            )?,
            module_correlation: prometheus::GaugeVec::new(
                Opts::new(
                    "cerebellum_prediction_correlation",
                    "Correlation of a cerebellar module's predicted and true feedback over the last stretch",
                ),
                &["module"],
            )?,
            registry,
        };
        let r = &m.registry;
        r.register(Box::new(m.bio_time.clone()))?;
        r.register(Box::new(m.rtf.clone()))?;
        r.register(Box::new(m.spikes.clone()))?;
        r.register(Box::new(m.synaptic_events.clone()))?;
        r.register(Box::new(m.epoch_exchange.clone()))?;
        r.register(Box::new(m.exchange_wait.clone()))?;
        r.register(Box::new(m.exchange_bytes.clone()))?;
        r.register(Box::new(m.exchange_streams.clone()))?;
        r.register(Box::new(m.shards.clone()))?;
        r.register(Box::new(m.build_progress.clone()))?;
        r.register(Box::new(m.runs.clone()))?;
        r.register(Box::new(m.module_error.clone()))?;
        r.register(Box::new(m.module_correlation.clone()))?;
        register_process(r);
        Ok(m)
    }
}

/// Metrics of a control replica.
#[derive(Clone)]
pub struct ControlMetrics {
    /// Registry they live in.
    pub registry: Registry,
    /// Live nodes registered in etcd.
    pub live_nodes: IntGauge,
    /// Shards assigned per node in the running experiment.
    pub shards_per_node: IntGaugeVec,
    /// Experiments by state.
    pub experiments: IntGaugeVec,
    /// 1 on the elected leader.
    pub leader: IntGauge,
    /// Requests answered, by method and gRPC code.
    pub requests: IntCounterVec,
    /// Biological time of the running experiment, s.
    pub bio_time: prometheus::Gauge,
    /// Wall time per biological time of the running experiment.
    pub rtf: prometheus::Gauge,
    /// Spikes of the running experiment, by population.
    pub spikes: IntGaugeVec,
    /// Time from submission to the end of a run.
    pub run_duration: HistogramVec,
}

impl ControlMetrics {
    /// Register every control metric in a fresh registry.
    pub fn new(replica: &str) -> Result<ControlMetrics> {
        let registry =
            Registry::new_custom(Some("neuropil".into()), Some([("replica".to_string(), replica.to_string())].into()))?;
        let m = ControlMetrics {
            live_nodes: IntGauge::new("live_nodes", "Nodes registered in etcd under a live lease")?,
            shards_per_node: IntGaugeVec::new(
                Opts::new("assigned_shards", "Shards assigned to each node by the running experiment"),
                &["node_id"],
            )?,
            experiments: IntGaugeVec::new(Opts::new("experiments", "Experiments by state"), &["state"])?,
            leader: IntGauge::new("control_leader", "1 if this replica is the elected leader")?,
            requests: IntCounterVec::new(
                Opts::new("grpc_requests_total", "ExperimentService requests, by method and code"),
                &["method", "code"],
            )?,
            bio_time: prometheus::Gauge::new(
                "experiment_bio_time_seconds",
                "Biological time of the running experiment",
            )?,
            rtf: prometheus::Gauge::new(
                "experiment_real_time_factor",
                "Wall time per biological time of the running experiment",
            )?,
            spikes: IntGaugeVec::new(
                Opts::new("experiment_spikes", "Spikes of the running experiment so far, by population"),
                &["population"],
            )?,
            run_duration: HistogramVec::new(
                HistogramOpts::new("experiment_duration_seconds", "Wall time from submission to the end of a run")
                    .buckets(prometheus::exponential_buckets(0.5, 2.0, 14)?),
                &["state"],
            )?,
            registry,
        };
        let r = &m.registry;
        r.register(Box::new(m.live_nodes.clone()))?;
        r.register(Box::new(m.shards_per_node.clone()))?;
        r.register(Box::new(m.experiments.clone()))?;
        r.register(Box::new(m.leader.clone()))?;
        r.register(Box::new(m.requests.clone()))?;
        r.register(Box::new(m.bio_time.clone()))?;
        r.register(Box::new(m.rtf.clone()))?;
        r.register(Box::new(m.spikes.clone()))?;
        r.register(Box::new(m.run_duration.clone()))?;
        register_process(r);
        Ok(m)
    }
}

fn register_process(r: &Registry) {
    #[cfg(target_os = "linux")]
    {
        let _ = r.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()));
    }
    #[cfg(not(target_os = "linux"))]
    let _ = r;
}

/// The text exposition of a registry.
pub fn render(registry: &Registry) -> String {
    let mut buf = Vec::new();
    let _ = TextEncoder::new().encode(&registry.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

/// Serve `/metrics` (and `/healthz`) on `addr` in the background; returns the bound
/// address (port 0 picks a free one).
pub async fn serve(addr: SocketAddr, registry: Registry) -> Result<SocketAddr> {
    use axum::routing::get;
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("--metrics {addr}: cannot listen"))?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                        render(&registry),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(bound)
}

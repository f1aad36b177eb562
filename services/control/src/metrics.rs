//! Prometheus metrics of a control replica (`/metrics`).

use anyhow::Result;
use neuropil_cluster::telemetry::register_process;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Metrics of a control replica.
#[derive(Clone)]
pub struct ControlMetrics {
    /// Registry they live in.
    pub registry: Registry,
    /// Recoveries of runs, by cause (`node_lost`).
    pub recoveries: IntCounterVec,
    /// Bytes of the last complete checkpoint of the running experiment (all parts).
    pub checkpoint_bytes: IntGauge,
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
    /// Neurons per population of the running experiment.
    pub population_neurons: IntGaugeVec,
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
            population_neurons: IntGaugeVec::new(
                Opts::new(
                    "experiment_population_neurons",
                    "Neurons of each population of the running experiment (after scaling): divides experiment_spikes' rate into Hz",
                ),
                &["population"],
            )?,
            recoveries: IntCounterVec::new(
                Opts::new("recoveries_total", "Runs rolled back to a checkpoint and placed again, by cause"),
                &["cause"],
            )?,
            checkpoint_bytes: IntGauge::new(
                "checkpoint_bytes",
                "Bytes of the running experiment's last complete checkpoint (all parts)",
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
        r.register(Box::new(m.population_neurons.clone()))?;
        r.register(Box::new(m.run_duration.clone()))?;
        r.register(Box::new(m.recoveries.clone()))?;
        r.register(Box::new(m.checkpoint_bytes.clone()))?;
        register_process(r);
        Ok(m)
    }
}

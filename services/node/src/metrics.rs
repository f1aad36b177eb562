//! Prometheus metrics of a node process (`/metrics`).

use anyhow::Result;
use neuropil_cluster::telemetry::{register_process, ExchangeMetrics};
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Metrics of a node process.
#[derive(Clone)]
pub struct NodeMetrics {
    /// Registry they live in.
    pub registry: Registry,
    /// Bytes of this node's part of the last checkpoint it wrote.
    pub checkpoint_bytes: IntGauge,
    /// Time to encode and write (durably) a checkpoint part, s.
    pub checkpoint_duration: Histogram,
    /// Wall time since this node last wrote a checkpoint part, s
    /// (updated as the run goes; 0 before the first).
    pub checkpoint_age: prometheus::Gauge,
    /// Biological time simulated by the current (or last) run, s.
    pub bio_time: prometheus::Gauge,
    /// Wall time per biological time of the current run.
    pub rtf: prometheus::Gauge,
    /// Spikes per population, as seen by this node: all of them on rank 0 (and
    /// wherever every node needs every spike); with targeted routing the others
    /// see their own and those their shards need.
    pub spikes: IntCounterVec,
    /// Synaptic events delivered by this node's shards.
    pub synaptic_events: IntCounter,
    /// The spike exchange's metrics (the transport updates them).
    pub exchange: ExchangeMetrics,
    /// Shards hosted now.
    pub shards: IntGauge,
    /// Epochs per spike exchange with the peers in the current run (1: every
    /// epoch; more: the two-tier exchange, docs/scaling.md).
    pub exchange_window: IntGauge,
    /// Actors alive now, by kind (`run`, `population_shard`, `astrocyte_shard`, `cerebellar_module`, `fabric`).
    pub actors: IntGaugeVec,
    /// Fraction of this node's shards built, 0..1.
    pub build_progress: prometheus::Gauge,
    /// Peak resident memory of this node process during its last run (VmHWM,
    /// reset when the run began; runs at the same time share it), bytes.
    pub run_peak_rss: IntGauge,
    /// The control's memory estimate for this node's shards of its last run, bytes.
    pub run_estimated: IntGauge,
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
            checkpoint_bytes: IntGauge::new("checkpoint_bytes", "Bytes of this node's part of its last checkpoint")?,
            checkpoint_duration: Histogram::with_opts(
                HistogramOpts::new("checkpoint_duration_seconds", "Time to write a checkpoint part durably")
                    .buckets(prometheus::exponential_buckets(0.001, 4.0, 10)?),
            )?,
            checkpoint_age: prometheus::Gauge::new(
                "checkpoint_age_seconds",
                "Wall time since this node last wrote a checkpoint part of the current run",
            )?,
            bio_time: prometheus::Gauge::new("bio_time_seconds", "Biological time simulated by the current run")?,
            rtf: prometheus::Gauge::new("real_time_factor", "Wall-clock time per biological time of the current run")?,
            spikes: IntCounterVec::new(Opts::new("spikes_total", "Spikes, by population"), &["population"])?,
            synaptic_events: IntCounter::new("synaptic_events_total", "Synaptic events delivered by this node")?,
            exchange: ExchangeMetrics::new()?,
            shards: IntGauge::new("shards", "Shards hosted by this node")?,
            exchange_window: IntGauge::new(
                "exchange_window_epochs",
                "Epochs per spike exchange with the peers in the current run (1: every epoch; more: two-tier)",
            )?,
            actors: IntGaugeVec::new(Opts::new("actors", "Actors alive on this node, by kind"), &["kind"])?,
            build_progress: prometheus::Gauge::new("build_progress_ratio", "Fraction of this node's shards built")?,
            run_peak_rss: IntGauge::new(
                "run_peak_rss_bytes",
                "Peak resident memory of this node process during its last run (reset when it began)",
            )?,
            run_estimated: IntGauge::new(
                "run_estimated_bytes",
                "The control's memory estimate for this node's shards of its last run",
            )?,
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
        r.register(Box::new(m.checkpoint_bytes.clone()))?;
        r.register(Box::new(m.checkpoint_duration.clone()))?;
        r.register(Box::new(m.checkpoint_age.clone()))?;
        r.register(Box::new(m.rtf.clone()))?;
        r.register(Box::new(m.spikes.clone()))?;
        r.register(Box::new(m.synaptic_events.clone()))?;
        m.exchange.register(r)?;
        r.register(Box::new(m.shards.clone()))?;
        r.register(Box::new(m.exchange_window.clone()))?;
        r.register(Box::new(m.actors.clone()))?;
        for kind in neuropil_runtime::actors::ActorKind::ALL {
            m.actors.with_label_values(&[kind.label()]).set(0);
        }
        r.register(Box::new(m.build_progress.clone()))?;
        r.register(Box::new(m.run_peak_rss.clone()))?;
        r.register(Box::new(m.run_estimated.clone()))?;
        r.register(Box::new(m.runs.clone()))?;
        r.register(Box::new(m.module_error.clone()))?;
        r.register(Box::new(m.module_correlation.clone()))?;
        register_process(r);
        Ok(m)
    }
}

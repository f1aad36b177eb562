//! Prometheus metrics of the HardwareService (`/metrics`).

use anyhow::Result;
use neuropil_cluster::telemetry::register_process;
use prometheus::{Gauge, IntCounter, IntCounterVec, Opts, Registry};
use tonic::Status;

/// Metrics of the HardwareService.
#[derive(Clone)]
pub struct Metrics {
    /// Registry they live in.
    pub registry: Registry,
    /// Requests, by method and gRPC code.
    pub requests: IntCounterVec,
    /// Spike packets sent through emulated fabrics.
    pub packets: IntCounter,
    /// Packet deliveries dropped in full buffers.
    pub dropped: IntCounter,
    /// Energy of the last report's run, J.
    pub energy: Gauge,
    /// The busiest link's utilisation in the last run.
    pub utilisation: Gauge,
}

impl Metrics {
    /// Register every metric (and the process collector) in a fresh registry.
    pub fn new() -> Result<Metrics> {
        let registry = Registry::new_custom(Some("neuropil_hwemu".into()), None)?;
        let m = Metrics {
            requests: IntCounterVec::new(
                Opts::new("requests_total", "HardwareService requests, by method and code"),
                &["method", "code"],
            )?,
            packets: IntCounter::new("packets_total", "Spike packets sent through emulated fabrics")?,
            dropped: IntCounter::new("dropped_packets_total", "Packet deliveries dropped in full buffers")?,
            energy: Gauge::new("last_report_energy_joules", "Energy of the last report's run")?,
            utilisation: Gauge::new("last_link_utilisation_max_ratio", "Busiest link's utilisation in the last run")?,
            registry,
        };
        let r = &m.registry;
        r.register(Box::new(m.requests.clone()))?;
        r.register(Box::new(m.packets.clone()))?;
        r.register(Box::new(m.dropped.clone()))?;
        r.register(Box::new(m.energy.clone()))?;
        r.register(Box::new(m.utilisation.clone()))?;
        register_process(r);
        Ok(m)
    }

    /// Count a finished request by its outcome's code.
    pub fn count<T>(&self, method: &str, r: &Result<T, Status>) {
        let code = r.as_ref().err().map_or(tonic::Code::Ok, |s| s.code());
        self.requests.with_label_values(&[method, &format!("{code:?}")]).inc();
    }
}

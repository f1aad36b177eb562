//! `neuropil hwemu serve`: the HardwareService over gRPC, with Prometheus metrics.

pub mod config;
pub mod error;
pub mod metrics;

use anyhow::{Context as _, Result};
pub use config::HwemuConfig;
pub use error::HwemuError;
use metrics::Metrics;
use neuropil_hwemu::mapping::{map, Strategy};
use neuropil_hwemu::preset::{Preset, BUILTIN};
use neuropil_hwemu::report::evaluate;
use neuropil_hwemu::traffic::{generate, max_channel_load, measure, Pattern};
use neuropil_proto::v1::hardware_service_server::{HardwareService, HardwareServiceServer};
use neuropil_proto::v1::{
    EvaluateMappingRequest, HardwareReport, HardwareReportRequest, ListPresetsRequest, ListPresetsResponse,
    MappingSummary, PresetInfo, PresetRef, RunTrafficRequest, TrafficReport,
};
use std::time::Duration;
use tonic::server::NamedService;
use tonic::{Request, Response, Status};

/// Largest experiment document or preset text a request may carry.
const MAX_TEXT_BYTES: usize = 1 << 20;
/// Largest network a Report or EvaluateMapping request may simulate or map.
const MAX_NEURONS: u64 = 100_000;
/// Largest expected synapse count.
const MAX_SYNAPSES: f64 = 2e7;
/// Largest traffic run: packets offered (rate × duration × routers).
const MAX_PACKETS: f64 = 2e6;

/// A refused mapping: the chip's limits (FAILED_PRECONDITION), or a preset that
/// lacks what mapping needs (INVALID_ARGUMENT).
fn mapping_error(e: neuropil_hwemu::mapping::MappingError) -> HwemuError {
    match e {
        neuropil_hwemu::mapping::MappingError::Preset(p) => HwemuError::InvalidArgument(format!("preset: {p}")),
        other => HwemuError::Unmappable(other.to_string()),
    }
}

fn preset_of(p: Option<&PresetRef>) -> Result<Preset, HwemuError> {
    let p =
        p.ok_or_else(|| HwemuError::InvalidArgument("preset: give a built-in name or a preset file's TOML".into()))?;
    match (p.name.is_empty(), p.toml.is_empty()) {
        (false, true) => Preset::builtin(&p.name).map_err(|e| HwemuError::InvalidArgument(format!("preset.name: {e}"))),
        (true, false) => {
            if p.toml.len() > MAX_TEXT_BYTES {
                return Err(HwemuError::TooLarge(format!(
                    "preset.toml: {} bytes; a preset has at most {MAX_TEXT_BYTES}",
                    p.toml.len()
                )));
            }
            Preset::parse(&p.toml).map_err(|e| HwemuError::InvalidArgument(format!("preset.toml: {e}")))
        }
        _ => Err(HwemuError::InvalidArgument("preset: give exactly one of name and toml".into())),
    }
}

fn strategy_of(name: &str) -> Result<Strategy, HwemuError> {
    if name.is_empty() {
        return Ok(Strategy::PopulationContiguous);
    }
    Strategy::from_name(name).ok_or_else(|| {
        HwemuError::InvalidArgument(format!(
            "mapping: unknown {name:?}; use round_robin, population_contiguous or locality_aware"
        ))
    })
}

/// Compile an experiment from a request, refusing what is too big to run here.
fn compile(document: &str, format: &str, set: &[String]) -> Result<neuropil_spec::Compiled, HwemuError> {
    if document.len() > MAX_TEXT_BYTES {
        return Err(HwemuError::TooLarge(format!(
            "document: {} bytes; an experiment has at most {MAX_TEXT_BYTES}",
            document.len()
        )));
    }
    let format = neuropil_cluster::format_of(format).map_err(HwemuError::InvalidArgument)?;
    let mut exp = neuropil_spec::parse(document, format, set)?;
    exp.run.threads = 1;
    exp.run.shards = 1;
    let c = neuropil_spec::compile(
        &exp,
        &neuropil_spec::Limits { memory_bytes: neuropil_runtime::system::available_memory_bytes() },
    )?;
    let neurons = c.network.total_neurons() as u64;
    if neurons > MAX_NEURONS || c.expected_synapses > MAX_SYNAPSES {
        return Err(HwemuError::TooLarge(format!(
            "the network has {neurons} neurons and ~{:.2e} synapses; this service maps and runs at most {MAX_NEURONS} and {MAX_SYNAPSES:.0e} (scale it down, or use `neuropil hwemu report` locally)",
            c.expected_synapses
        )));
    }
    Ok(c)
}

struct Svc {
    metrics: Metrics,
}

impl Svc {
    /// Run `work` on the blocking pool (mapping, simulating), count the outcome under
    /// `method`, and answer with it.
    async fn blocking<T: Send + 'static>(
        &self,
        method: &str,
        work: impl FnOnce() -> Result<T, HwemuError> + Send + 'static,
    ) -> Result<Response<T>, Status> {
        let r = tokio::task::spawn_blocking(work)
            .await
            .unwrap_or_else(|e| Err(HwemuError::Internal(format!("worker: {e}"))))
            .map_err(Status::from);
        self.metrics.count(method, &r);
        r.map(Response::new)
    }
}

#[tonic::async_trait]
impl HardwareService for Svc {
    async fn list_presets(&self, _r: Request<ListPresetsRequest>) -> Result<Response<ListPresetsResponse>, Status> {
        let r = BUILTIN
            .iter()
            .map(|(n, _)| {
                let p = Preset::builtin(n).map_err(|e| HwemuError::Internal(e.to_string()))?;
                Ok(PresetInfo { name: p.file.name.clone(), description: p.file.description.clone(), cores: p.cores() })
            })
            .collect::<Result<Vec<_>, HwemuError>>()
            .map(|presets| ListPresetsResponse { presets })
            .map_err(Status::from);
        self.metrics.count("ListPresets", &r);
        r.map(Response::new)
    }

    async fn evaluate_mapping(&self, req: Request<EvaluateMappingRequest>) -> Result<Response<MappingSummary>, Status> {
        let req = req.into_inner();
        self.blocking("EvaluateMapping", move || {
            let preset = preset_of(req.preset.as_ref())?;
            let strategy = strategy_of(&req.mapping)?;
            let c = compile(&req.document, &req.format, &req.set)?;
            let sw = {
                // Connectivity only: build, no run.
                let state = neuropil_sim::embedded::build(&c.network, 1, 1);
                neuropil_hwemu::mapping::Connectome::from_shards(&c.network, &state.shards)
            };
            let npc = (req.neurons_per_core > 0).then_some(req.neurons_per_core);
            let m = map(&sw, &preset, strategy, npc, false, None).map_err(mapping_error)?;
            Ok(MappingSummary {
                cores_used: m.cores_used,
                cores_available: preset.cores(),
                violations: m.violations.iter().map(|v| v.to_string()).collect(),
                neurons: sw.neurons() as u64,
                synapses: sw.targets.len() as u64,
            })
        })
        .await
    }

    async fn run_traffic(&self, req: Request<RunTrafficRequest>) -> Result<Response<TrafficReport>, Status> {
        let req = req.into_inner();
        let metrics = self.metrics.clone();
        self.blocking("RunTraffic", move || {
            let preset = preset_of(req.preset.as_ref())?;
            let (rate, duration) = (req.rate_per_chip_per_ns, req.duration_ns);
            if !(rate.is_finite() && rate > 0.0) {
                return Err(HwemuError::InvalidArgument(format!("rate_per_chip_per_ns: {rate} is not a rate > 0")));
            }
            if !(duration.is_finite() && duration > 0.0) {
                return Err(HwemuError::InvalidArgument(format!("duration_ns: {duration} is not a time > 0")));
            }
            let topo = preset.topology();
            let offered = rate * duration * topo.chips() as f64;
            if offered > MAX_PACKETS {
                return Err(HwemuError::TooLarge(format!(
                    "rate × duration × routers = {offered:.3e} packets; at most {MAX_PACKETS:.0e} per request"
                )));
            }
            let mut fabric = preset.interconnect().map_err(|e| HwemuError::InvalidArgument(format!("preset: {e}")))?;
            let packet_ns = fabric.packet_time_ns();
            let packets = generate(&topo, &Pattern::Uniform, rate, 0.0, duration, req.seed);
            let (from, window) = (0.2 * duration, 0.6 * duration);
            let point = measure(&mut fabric, &packets, topo.chips(), rate, from, window);
            let out = point.outcome;
            let util = out.link_busy_ns.iter().copied().fold(0.0, f64::max) / duration;
            metrics.packets.inc_by(packets.len() as u64);
            metrics.dropped.inc_by(out.dropped.len() as u64);
            metrics.utilisation.set(util);
            let hops: u64 = out.deliveries.iter().map(|d| d.hops as u64).sum();
            let lat = point.point.latency_ns;
            Ok(TrafficReport {
                packets: packets.len() as u64,
                delivered: out.deliveries.len() as u64,
                dropped: out.dropped.len() as u64,
                mean_latency_ns: if lat.is_finite() { lat } else { 0.0 },
                accepted_per_chip_per_ns: point.point.accepted_per_ns,
                // The ideal throughput of uniform traffic under the routing: on a
                // mesh, the bisection bound.
                bisection_bound_per_chip_per_ns: 1.0
                    / (max_channel_load(&topo, &Pattern::Uniform, fabric.splits_ties()) * packet_ns),
                mean_hops: if out.deliveries.is_empty() { 0.0 } else { hops as f64 / out.deliveries.len() as f64 },
                link_utilisation_max: util,
                emergency_reroutes: out.emergency_reroutes,
            })
        })
        .await
    }

    async fn report(&self, req: Request<HardwareReportRequest>) -> Result<Response<HardwareReport>, Status> {
        let req = req.into_inner();
        let metrics = self.metrics.clone();
        self.blocking("Report", move || {
            let preset = preset_of(req.preset.as_ref())?;
            let strategy = strategy_of(&req.mapping)?;
            let c = compile(&req.document, &req.format, &req.set)?;
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
            let sw = neuropil_runtime::cosim::software_run(&c.network, threads, threads, &c);
            let npc = (req.neurons_per_core > 0).then_some(req.neurons_per_core);
            let m = map(&sw.connectome, &preset, strategy, npc, false, Some(&sw.activity)).map_err(mapping_error)?;
            let (r, _) = evaluate(&sw.connectome, &preset, &m, &sw.spikes, sw.duration_ms)
                .map_err(|e| HwemuError::InvalidArgument(format!("preset: {e}")))?;
            metrics.packets.inc_by(r.spikes);
            metrics.dropped.inc_by(r.expected_receptions - r.receptions);
            metrics.energy.set(r.energy.total_j);
            metrics.utilisation.set(r.link_utilisation_max);
            Ok(HardwareReport {
                json: serde_json::to_string_pretty(&r).map_err(|e| HwemuError::Internal(e.to_string()))?,
                energy_j: r.energy.total_j,
                loss: r.loss,
                mean_latency_ns: r.latency_ns.mean,
            })
        })
        .await
    }
}

/// Serve until `shutdown` completes (the binary passes SIGTERM/SIGINT).
pub async fn serve(cfg: HwemuConfig, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
    let HwemuConfig { listen, metrics_listen, token } = cfg;
    let metrics = Metrics::new()?;
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("--listen {listen}: cannot listen"))?;
    let addr = listener.local_addr()?;
    let metrics_addr = neuropil_cluster::telemetry::serve(metrics_listen, metrics.registry.clone()).await?;
    println!("neuropil hwemu: grpc={addr} metrics={metrics_addr}");
    let builder = tonic::transport::Server::builder().timeout(Duration::from_secs(600));
    let server =
        neuropil_cluster::server::introspection(builder, &[<HardwareServiceServer<Svc> as NamedService>::NAME])
            .await?
            .add_service(tonic::service::interceptor::InterceptedService::new(
                HardwareServiceServer::new(Svc { metrics }).max_decoding_message_size(4 * MAX_TEXT_BYTES),
                {
                    let auth = neuropil_cluster::auth::BearerAuth::new(token);
                    move |req| auth.check(req)
                },
            ))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)));
    tokio::select! {
        r = server => r.context("gRPC server"),
        _ = shutdown => Ok(()),
    }
}

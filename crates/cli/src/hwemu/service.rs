//! `neuropil hwemu serve`: the HardwareService over gRPC, with Prometheus metrics.

use crate::cluster::metrics::render;
use anyhow::{Context as _, Result};
use neuropil_hwemu::fabric::{latency_and_throughput, simulate, uniform_traffic};
use neuropil_hwemu::mapping::{map, Strategy};
use neuropil_hwemu::preset::{Preset, BUILTIN};
use neuropil_hwemu::report::evaluate;
use neuropil_proto::v1::hardware_service_server::{HardwareService, HardwareServiceServer};
use neuropil_proto::v1::{
    EvaluateMappingRequest, HardwareReport, HardwareReportRequest, ListPresetsRequest, ListPresetsResponse,
    MappingSummary, PresetInfo, PresetRef, RunTrafficRequest, TrafficReport,
};
use prometheus::{Gauge, IntCounter, IntCounterVec, Opts, Registry};
use std::net::SocketAddr;
use std::time::Duration;
use tonic::{Request, Response, Status};

/// Largest experiment document or preset text a request may carry.
const MAX_TEXT_BYTES: usize = 1 << 20;
/// Largest network a Report or EvaluateMapping request may simulate or map.
const MAX_NEURONS: u64 = 100_000;
/// Largest expected synapse count.
const MAX_SYNAPSES: f64 = 2e7;
/// Largest traffic run: packets offered (rate × duration × routers).
const MAX_PACKETS: f64 = 2e6;

#[derive(Clone)]
struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    packets: IntCounter,
    dropped: IntCounter,
    energy: Gauge,
    utilisation: Gauge,
}

impl Metrics {
    fn new() -> Result<Metrics> {
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
        #[cfg(target_os = "linux")]
        let _ = r.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()));
        Ok(m)
    }

    fn count<T>(&self, method: &str, r: &Result<T, Status>) {
        let code = r.as_ref().err().map_or(tonic::Code::Ok, |s| s.code());
        self.requests.with_label_values(&[method, &format!("{code:?}")]).inc();
    }
}

fn preset_of(p: Option<&PresetRef>) -> Result<Preset, Status> {
    let p = p.ok_or_else(|| Status::invalid_argument("preset: give a built-in name or a preset file's TOML"))?;
    match (p.name.is_empty(), p.toml.is_empty()) {
        (false, true) => Preset::builtin(&p.name).map_err(|e| Status::invalid_argument(format!("preset.name: {e}"))),
        (true, false) => {
            if p.toml.len() > MAX_TEXT_BYTES {
                return Err(Status::resource_exhausted(format!(
                    "preset.toml: {} bytes; a preset has at most {MAX_TEXT_BYTES}",
                    p.toml.len()
                )));
            }
            Preset::parse(&p.toml).map_err(|e| Status::invalid_argument(format!("preset.toml: {e}")))
        }
        _ => Err(Status::invalid_argument("preset: give exactly one of name and toml")),
    }
}

fn strategy_of(name: &str) -> Result<Strategy, Status> {
    if name.is_empty() {
        return Ok(Strategy::PopulationContiguous);
    }
    Strategy::from_name(name).ok_or_else(|| {
        Status::invalid_argument(format!(
            "mapping: unknown {name:?}; use round_robin, population_contiguous or locality_aware"
        ))
    })
}

/// Compile an experiment from a request, refusing what is too big to run here.
fn compile(document: &str, format: &str, set: &[String]) -> Result<neuropil_spec::Compiled, Status> {
    if document.len() > MAX_TEXT_BYTES {
        return Err(Status::resource_exhausted(format!(
            "document: {} bytes; an experiment has at most {MAX_TEXT_BYTES}",
            document.len()
        )));
    }
    let format = crate::cluster::format_of(format).map_err(Status::invalid_argument)?;
    let mut exp = neuropil_spec::parse(document, format, set).map_err(|e| neuropil_proto::spec_status(&e))?;
    exp.run.threads = 1;
    exp.run.shards = 1;
    let c =
        neuropil_spec::compile(&exp, &neuropil_spec::Limits { memory_bytes: crate::system::available_memory_bytes() })
            .map_err(|e| neuropil_proto::spec_status(&e))?;
    let neurons = c.network.total_neurons() as u64;
    if neurons > MAX_NEURONS || c.expected_synapses > MAX_SYNAPSES {
        return Err(Status::resource_exhausted(format!(
            "the network has {neurons} neurons and ~{:.2e} synapses; this service maps and runs at most {MAX_NEURONS} and {MAX_SYNAPSES:.0e} (scale it down, or use `neuropil hwemu report` locally)",
            c.expected_synapses
        )));
    }
    Ok(c)
}

struct Svc {
    metrics: Metrics,
}

#[tonic::async_trait]
impl HardwareService for Svc {
    async fn list_presets(&self, _r: Request<ListPresetsRequest>) -> Result<Response<ListPresetsResponse>, Status> {
        let r = BUILTIN
            .iter()
            .map(|(n, _)| {
                let p = Preset::builtin(n).map_err(|e| Status::internal(e.to_string()))?;
                Ok(PresetInfo { name: p.file.name.clone(), description: p.file.description.clone(), cores: p.cores() })
            })
            .collect::<Result<Vec<_>, Status>>()
            .map(|presets| ListPresetsResponse { presets });
        self.metrics.count("ListPresets", &r);
        r.map(Response::new)
    }

    async fn evaluate_mapping(&self, req: Request<EvaluateMappingRequest>) -> Result<Response<MappingSummary>, Status> {
        let req = req.into_inner();
        let r = tokio::task::spawn_blocking(move || {
            let preset = preset_of(req.preset.as_ref())?;
            let strategy = strategy_of(&req.mapping)?;
            let c = compile(&req.document, &req.format, &req.set)?;
            let sw = {
                // Connectivity only: build, no run.
                let state = neuropil_sim::embedded::build(&c.network, 1, 1);
                neuropil_hwemu::mapping::Connectome::from_shards(&c.network, &state.shards)
            };
            let npc = (req.neurons_per_core > 0).then_some(req.neurons_per_core);
            let m = map(&sw, &preset, strategy, npc, false, None)
                .map_err(|e| Status::failed_precondition(e.to_string()))?;
            Ok(MappingSummary {
                cores_used: m.cores_used,
                cores_available: preset.cores(),
                violations: m.violations.iter().map(|v| v.to_string()).collect(),
                neurons: sw.neurons() as u64,
                synapses: sw.targets.len() as u64,
            })
        })
        .await
        .unwrap_or_else(|e| Err(Status::internal(e.to_string())));
        self.metrics.count("EvaluateMapping", &r);
        r.map(Response::new)
    }

    async fn run_traffic(&self, req: Request<RunTrafficRequest>) -> Result<Response<TrafficReport>, Status> {
        let req = req.into_inner();
        let metrics = self.metrics.clone();
        let r = tokio::task::spawn_blocking(move || {
            let preset = preset_of(req.preset.as_ref())?;
            let (rate, duration) = (req.rate_per_chip_per_ns, req.duration_ns);
            if !(rate.is_finite() && rate > 0.0) {
                return Err(Status::invalid_argument(format!("rate_per_chip_per_ns: {rate} is not a rate > 0")));
            }
            if !(duration.is_finite() && duration > 0.0) {
                return Err(Status::invalid_argument(format!("duration_ns: {duration} is not a time > 0")));
            }
            let topo = preset.topology();
            let offered = rate * duration * topo.chips() as f64;
            if offered > MAX_PACKETS {
                return Err(Status::resource_exhausted(format!(
                    "rate × duration × routers = {offered:.3e} packets; at most {MAX_PACKETS:.0e} per request"
                )));
            }
            let model = preset.link_model();
            let packets = uniform_traffic(&topo, rate, duration, req.seed);
            let out = simulate(&topo, &model, &packets);
            let (lat, thr) = latency_and_throughput(&topo, &packets, &out, 0.2 * duration, 0.8 * duration);
            let util = out.link_busy_ns.iter().copied().fold(0.0, f64::max) / duration;
            metrics.packets.inc_by(packets.len() as u64);
            metrics.dropped.inc_by(out.dropped.len() as u64);
            metrics.utilisation.set(util);
            let hops: u64 = out.deliveries.iter().map(|d| d.hops as u64).sum();
            Ok(TrafficReport {
                packets: packets.len() as u64,
                delivered: out.deliveries.len() as u64,
                dropped: out.dropped.len() as u64,
                mean_latency_ns: if lat.is_finite() { lat } else { 0.0 },
                accepted_per_chip_per_ns: thr,
                bisection_bound_per_chip_per_ns: 4.0 * topo.bisection_links() as f64
                    / (topo.chips() as f64 * model.serialisation_ns()),
                mean_hops: if out.deliveries.is_empty() { 0.0 } else { hops as f64 / out.deliveries.len() as f64 },
                link_utilisation_max: util,
                emergency_reroutes: out.emergency_reroutes,
            })
        })
        .await
        .unwrap_or_else(|e| Err(Status::internal(e.to_string())));
        self.metrics.count("RunTraffic", &r);
        r.map(Response::new)
    }

    async fn report(&self, req: Request<HardwareReportRequest>) -> Result<Response<HardwareReport>, Status> {
        let req = req.into_inner();
        let metrics = self.metrics.clone();
        let r = tokio::task::spawn_blocking(move || {
            let preset = preset_of(req.preset.as_ref())?;
            let strategy = strategy_of(&req.mapping)?;
            let c = compile(&req.document, &req.format, &req.set)?;
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
            let sw = super::software_run(&c.network, threads, threads, &c);
            let npc = (req.neurons_per_core > 0).then_some(req.neurons_per_core);
            let m = map(&sw.connectome, &preset, strategy, npc, false, Some(&sw.activity))
                .map_err(|e| Status::failed_precondition(e.to_string()))?;
            let (r, _) = evaluate(&sw.connectome, &preset, &m, &sw.spikes, sw.duration_ms);
            metrics.packets.inc_by(r.spikes);
            metrics.dropped.inc_by(r.expected_receptions - r.receptions);
            metrics.energy.set(r.energy.total_j);
            metrics.utilisation.set(r.link_utilisation_max);
            Ok(HardwareReport {
                json: serde_json::to_string_pretty(&r).map_err(|e| Status::internal(e.to_string()))?,
                energy_j: r.energy.total_j,
                loss: r.loss,
                mean_latency_ns: r.latency_ns.mean,
            })
        })
        .await
        .unwrap_or_else(|e| Err(Status::internal(e.to_string())));
        self.metrics.count("Report", &r);
        r.map(Response::new)
    }
}

/// Serve until SIGTERM/SIGINT.
pub async fn serve(listen: SocketAddr, metrics_listen: SocketAddr) -> Result<()> {
    let metrics = Metrics::new()?;
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("--listen {listen}: cannot listen"))?;
    let addr = listener.local_addr()?;
    let registry = metrics.registry.clone();
    let metrics_addr = {
        use axum::routing::get;
        let l = tokio::net::TcpListener::bind(metrics_listen)
            .await
            .with_context(|| format!("--metrics {metrics_listen}: cannot listen"))?;
        let bound = l.local_addr()?;
        let app = axum::Router::new().route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move { render(&registry) }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        bound
    };
    let (health, health_svc) = tonic_health::server::health_reporter();
    health.set_serving::<HardwareServiceServer<Svc>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(neuropil_proto::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    println!("neuropil hwemu: grpc={addr} metrics={metrics_addr}");
    let server = tonic::transport::Server::builder()
        .timeout(Duration::from_secs(600))
        .add_service(health_svc)
        .add_service(reflection)
        .add_service(HardwareServiceServer::new(Svc { metrics }).max_decoding_message_size(4 * MAX_TEXT_BYTES))
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)));
    tokio::select! {
        r = server => r.context("gRPC server"),
        _ = crate::cluster::node::shutdown_signal() => Ok(()),
    }
}

//! `neuropil hwemu`: chip presets, the interconnect's latency–load curve, and the
//! report of an experiment's spikes on a chip fabric.

use anyhow::{bail, Context as _, Result};
use clap::{Args, Subcommand};
use neuropil_hwemu::fabric::{latency_and_throughput, simulate, uniform_traffic};
use neuropil_hwemu::mapping::{map, Strategy};
use neuropil_hwemu::preset::{Preset, BUILTIN, PARAMS};
use neuropil_hwemu::report::evaluate;
use neuropil_hwemu::topology::{Kind, Topology};
use neuropil_output::chart::{heatmap, line_chart, Series};
use neuropil_runtime::cosim::{load_preset, software_run};
use neuropil_runtime::run::{self, RunRequest};
use neuropil_sim::embedded::{self, RunConfig};
use std::path::PathBuf;

/// `neuropil hwemu ...`.
#[derive(Subcommand)]
pub enum HwCommand {
    /// List the built-in presets, or show one with every parameter's source and confidence mark.
    Presets {
        /// Preset name or file.
        preset: Option<String>,
    },
    /// Latency against offered load under uniform random traffic on a k×k mesh (with a preset's links).
    Sweep(SweepArgs),
    /// Run an experiment (software only), map it onto presets and report what the fabric does to its spikes.
    Report(ReportArgs),
    /// Run an experiment twice, software only and with a preset's fabric in the loop (delays and drops fed
    /// back, deterministically), and compare rates and population activity.
    Cosim(CosimArgs),
    /// Serve the HardwareService over gRPC (with health, reflection and Prometheus /metrics).
    Serve {
        /// gRPC listen address (port 0: any free port).
        #[arg(long, default_value = "0.0.0.0:7073")]
        listen: std::net::SocketAddr,
        /// Prometheus /metrics listen address.
        #[arg(long, default_value = "0.0.0.0:9093")]
        metrics: std::net::SocketAddr,
        /// Require this bearer token (file content) from clients (health and
        /// reflection stay open, as the control's).
        #[arg(long, env = "NEUROPIL_TOKEN_FILE")]
        token_file: Option<std::path::PathBuf>,
    },
}

impl HwCommand {
    /// Whether this is the long-running gRPC service.
    pub fn is_service(&self) -> bool {
        matches!(self, HwCommand::Serve { .. })
    }
}

/// Options of `hwemu sweep`.
#[derive(Args)]
pub struct SweepArgs {
    /// Mesh side.
    #[arg(long, default_value_t = 8)]
    k: u32,
    /// Preset whose link timing to use.
    #[arg(long, default_value = "loihi")]
    preset: String,
    /// PNG to write (and a CSV beside it).
    #[arg(long, default_value = "docs/img/hw_saturation.png")]
    out: PathBuf,
}

/// Options of `hwemu cosim`.
#[derive(Args)]
pub struct CosimArgs {
    /// Experiment file.
    experiment: PathBuf,
    /// Override a field, as for run.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    set: Vec<String>,
    /// Preset (name or file).
    #[arg(long, default_value = "spinnaker1")]
    preset: String,
    /// Mapping: round_robin, population_contiguous or locality_aware.
    #[arg(long, default_value = "population_contiguous")]
    mapping: String,
    /// At most this many neurons per core.
    #[arg(long)]
    neurons_per_core: Option<u32>,
    /// Shards (results do not depend on it).
    #[arg(long)]
    shards: Option<usize>,
    /// Write cosim.json here.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Options of `hwemu report`.
#[derive(Args)]
pub struct ReportArgs {
    /// Experiment file.
    experiment: PathBuf,
    /// Override a field, as for run.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    set: Vec<String>,
    /// Presets (names or files), comma-separated, or "all".
    #[arg(long, default_value = "all", value_delimiter = ',')]
    preset: Vec<String>,
    /// Mappings, comma-separated: round_robin, population_contiguous, locality_aware, or "all".
    #[arg(long, default_value = "all", value_delimiter = ',')]
    mapping: Vec<String>,
    /// At most this many neurons per core (default: each preset's limit).
    #[arg(long)]
    neurons_per_core: Option<u32>,
    /// Override the presets' router grid, WIDTHxHEIGHT (e.g. 4x2 for two DYNAP-SE boards side by side).
    #[arg(long, value_name = "WxH")]
    grid: Option<String>,
    /// Refuse mappings that break a per-core limit (default: report the violations and go on).
    #[arg(long)]
    enforce_limits: bool,
    /// Output directory (default: out/hwemu/<experiment name>).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Run a `neuropil hwemu` command.
pub fn run(cmd: &HwCommand) -> Result<()> {
    match cmd {
        HwCommand::Presets { preset: None } => {
            for (name, _) in BUILTIN {
                let p = Preset::builtin(name)?;
                println!("{name:<12} {}", p.file.description);
            }
            Ok(())
        }
        HwCommand::Presets { preset: Some(name) } => {
            let p = load_preset(name)?;
            println!("{}: {}\n", p.file.name, p.file.description);
            let t = &p.file.topology;
            println!(
                "topology  {:?} {}x{}, {} cores per router [{:?}] {}",
                t.kind, t.width, t.height, t.cores_per_router, t.conf, t.source
            );
            println!("timing    {:?}\n", p.file.timing);
            for (param, unit, _, _) in PARAMS {
                if let Some(v) = p.file.params.get(*param) {
                    println!("{param:<22} {:>14} {unit:<12} [{:?}] {}", v.value, v.conf, v.source);
                }
            }
            Ok(())
        }
        HwCommand::Sweep(a) => sweep(a),
        HwCommand::Report(a) => report(a),
        HwCommand::Cosim(a) => cosim(a),
        HwCommand::Serve { listen, metrics, token_file } => {
            let token =
                token_file.as_deref().map(|p| neuropil_cluster::auth::read_token("--token-file", p)).transpose()?;
            tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(neuropil_hwemu_service::serve(
                neuropil_hwemu_service::HwemuConfig { listen: *listen, metrics_listen: *metrics, token },
                neuropil_cluster::server::shutdown_signal(),
            ))
        }
    }
}

fn sweep(a: &SweepArgs) -> Result<()> {
    if a.k == 0 || a.k > 64 {
        bail!("--k {}: choose a mesh side in 1..=64", a.k);
    }
    let preset = load_preset(&a.preset)?;
    let mut model = preset.link_model();
    model.buffer_packets = u32::MAX; // queues grow instead of dropping: latency shows saturation
    let topo = Topology { kind: Kind::Mesh, width: a.k, height: a.k };
    let ser = model.serialisation_ns();
    let bound = 4.0 * topo.bisection_links() as f64 / (topo.chips() as f64 * ser);
    let mean_hops = 2.0 * ((a.k * a.k) as f64 - 1.0) / (3.0 * a.k as f64);
    let zero_load = mean_hops * model.hop_latency_ns + ser;
    let duration = 4000.0 * ser;
    println!(
        "{}x{} mesh, XY routing, {} links: hop {} ns, {} bit packets at {} bit/ns (serialisation {:.3} ns)",
        a.k, a.k, preset.file.name, model.hop_latency_ns, model.packet_bits, model.bandwidth_bits_per_ns, ser
    );
    println!(
        "bisection bound {:.5} packets/ns per chip; zero-load latency {:.2} ns (mean hops {:.3})",
        bound, zero_load, mean_hops
    );
    println!("{:>8} {:>14} {:>14} {:>12}", "load", "offered/chip", "accepted/chip", "latency_ns");
    let mut csv = String::from("load_fraction,offered_per_chip_per_ns,accepted_per_chip_per_ns,mean_latency_ns\n");
    let (mut lat_pts, mut thr_pts) = (Vec::new(), Vec::new());
    for i in 1..=16 {
        let frac = i as f64 * 0.1;
        let packets = uniform_traffic(&topo, frac * bound, duration, 7);
        let out = simulate(&topo, &model, &packets);
        let (lat, thr) = latency_and_throughput(&topo, &packets, &out, 0.2 * duration, 0.8 * duration);
        println!("{frac:>8.1} {:>14.5} {:>14.5} {:>12.2}", frac * bound, thr, lat);
        csv.push_str(&format!("{frac},{},{thr},{lat}\n", frac * bound));
        lat_pts.push((frac, lat));
        thr_pts.push((frac, thr / bound));
    }
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(a.out.with_extension("csv"), csv)?;
    line_chart(
        &format!("{k}x{k} mesh, uniform traffic, {} links: mean latency vs offered load", preset.file.name, k = a.k),
        "offered load / bisection bound",
        "mean latency (ns, log scale)",
        &[Series { name: "mean latency".into(), points: lat_pts }],
        &[(1.0, "bisection bound".into())],
        true,
        &a.out,
    )?;
    let thr_png = a.out.with_file_name(format!(
        "{}_throughput.png",
        a.out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
    ));
    line_chart(
        "accepted throughput / bisection bound",
        "offered load / bisection bound",
        "accepted / bound",
        &[Series { name: "accepted".into(), points: thr_pts }],
        &[(1.0, "bisection bound".into())],
        false,
        &thr_png,
    )?;
    println!("wrote {}, {} and {}", a.out.display(), thr_png.display(), a.out.with_extension("csv").display());
    Ok(())
}

fn report(a: &ReportArgs) -> Result<()> {
    let presets: Vec<Preset> = if a.preset.iter().any(|p| p == "all") {
        BUILTIN.iter().map(|(n, _)| Preset::builtin(n)).collect::<Result<_, _>>()?
    } else {
        a.preset.iter().map(|p| load_preset(p)).collect::<Result<_>>()?
    };
    let strategies: Vec<Strategy> = if a.mapping.iter().any(|m| m == "all") {
        Strategy::ALL.to_vec()
    } else {
        a.mapping
            .iter()
            .map(|m| {
                Strategy::from_name(m).with_context(|| {
                    format!("--mapping {m}: unknown; use round_robin, population_contiguous, locality_aware or all")
                })
            })
            .collect::<Result<_>>()?
    };
    let mut presets = presets;
    if let Some(g) = &a.grid {
        let (w, h) = g
            .split_once('x')
            .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
            .filter(|&(w, h)| w > 0 && h > 0 && w * h <= 1 << 16)
            .with_context(|| format!("--grid {g}: expected WIDTHxHEIGHT, e.g. 4x2, at most 65536 routers"))?;
        for p in &mut presets {
            p.file.topology.width = w;
            p.file.topology.height = h;
            p.file.topology.source = format!("--grid {g} (overrides the preset: {})", p.file.topology.source);
            p.file.topology.conf = neuropil_hwemu::preset::Conf::U;
        }
    }
    let prepared =
        run::prepare(&RunRequest { experiment: a.experiment.clone(), set: a.set.clone(), ..Default::default() })
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let net = &prepared.compiled.network;
    let name =
        if prepared.experiment.name.is_empty() { "experiment".to_string() } else { prepared.experiment.name.clone() };
    let out_dir = a.out.clone().unwrap_or_else(|| PathBuf::from("out/hwemu").join(&name));
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;

    let sw = software_run(net, prepared.shards, prepared.threads, &prepared.compiled);
    let (connectome, spikes, activity, duration_ms) = (&sw.connectome, &sw.spikes, &sw.activity, sw.duration_ms);
    let output_hash = sw.output.spike_hash;
    println!(
        "{name}: {} neurons, {} synapses, {} spikes in {duration_ms} ms (software only, spike hash {:016x})",
        connectome.neurons(),
        connectome.targets.len(),
        spikes.len(),
        output_hash
    );
    println!(
        "{:<11} {:<22} {:>5} {:>8} {:>9} {:>9} {:>9} {:>8} {:>9} {:>7} {:>9} {:>10}  limits",
        "preset",
        "mapping",
        "cores",
        "hops/spk",
        "lat_mean",
        "lat_p99",
        "lat_max",
        "loss",
        "disorder",
        "late",
        "util_max",
        "energy_J"
    );
    let mut all = Vec::new();
    for preset in &presets {
        for &strategy in &strategies {
            let mapping = match map(connectome, preset, strategy, a.neurons_per_core, a.enforce_limits, Some(activity))
            {
                Ok(m) => m,
                Err(e) => {
                    println!("{:<11} {:<22} refused: {e}", preset.file.name, strategy.name());
                    continue;
                }
            };
            let (r, load) = evaluate(connectome, preset, &mapping, spikes, duration_ms);
            println!(
                "{:<11} {:<22} {:>5} {:>8.2} {:>9.1} {:>9.1} {:>9.1} {:>8.5} {:>9} {:>7} {:>9.5} {:>10.3e}  {}",
                r.preset,
                r.mapping,
                r.cores_used,
                r.hops_per_spike,
                r.latency_ns.mean,
                r.latency_ns.p99,
                r.latency_ns.max,
                r.loss,
                r.disorder,
                r.late,
                r.link_utilisation_max,
                r.energy.total_j,
                if r.violations.is_empty() { "fit".to_string() } else { r.violations.join("; ") }
            );
            let topo = preset.topology();
            let stem = format!("{}-{}", r.preset, r.mapping);
            heatmap(
                &format!("{name} on {} ({}): busiest-link utilisation per router", r.preset, r.mapping),
                &load,
                topo.width as usize,
                topo.height as usize,
                &out_dir.join(format!("links-{stem}.png")),
            )?;
            all.push(r);
        }
    }
    let json = serde_json::to_string_pretty(&all)?;
    std::fs::write(out_dir.join("report.json"), json + "\n")?;
    println!("wrote {}/report.json and links-*.png", out_dir.display());
    Ok(())
}

/// Population activity in `bin_ms` bins per population: spikes per bin.
fn activity_bins(
    net: &neuropil_sim::Network,
    spikes: &[neuropil_sim::Spike],
    steps: u64,
    bin_ms: f64,
) -> Vec<Vec<f64>> {
    let bin_steps = ((bin_ms / net.dt_ms).round() as u64).max(1);
    let bins = steps.div_ceil(bin_steps) as usize;
    let mut out = vec![vec![0.0; bins]; net.populations.len()];
    for s in spikes {
        let b = (s.step / bin_steps) as usize;
        if b < bins {
            out[net.population_of(s.gid)][b] += 1.0;
        }
    }
    out
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len()) as f64;
    if n < 2.0 {
        return f64::NAN;
    }
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    sab / (saa * sbb).sqrt()
}

fn cosim(a: &CosimArgs) -> Result<()> {
    let preset = load_preset(&a.preset)?;
    let strategy = Strategy::from_name(&a.mapping).with_context(|| {
        format!("--mapping {}: unknown; use round_robin, population_contiguous or locality_aware", a.mapping)
    })?;
    let prepared = run::prepare(&RunRequest {
        experiment: a.experiment.clone(),
        set: a.set.clone(),
        shards: a.shards,
        ..Default::default()
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut net = prepared.compiled.network.clone();
    net.record_spikes = vec![true; net.populations.len()];
    let steps = prepared.compiled.steps;
    let cfg = RunConfig {
        threads: prepared.threads,
        shards: prepared.shards,
        steps,
        count_from_step: prepared.compiled.transient_steps,
    };
    let cancel = std::sync::atomic::AtomicBool::new(false);

    // Software only: the reference, its connectivity and activity.
    let sw = software_run(&net, prepared.shards, prepared.threads, &prepared.compiled);
    let software = &sw.output;

    // With the fabric in the loop.
    let mapping = map(&sw.connectome, &preset, strategy, a.neurons_per_core, false, Some(&sw.activity))?;
    let mut state = embedded::build(&net, prepared.shards, prepared.threads);
    for s in &mut state.shards {
        s.set_cores(&mapping.core_of);
    }
    let mut fabric = neuropil_hwemu::cosim::CoSim::new(&sw.connectome, &preset, &mapping, net.dt_ms);
    let (hardware, _) = embedded::run_part(&net, state, cfg, None, Some(&mut fabric), &|_| {}, &cancel)
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    let duration_s = steps as f64 * net.dt_ms / 1000.0;
    let counted_s = (steps - prepared.compiled.transient_steps.min(steps)) as f64 * net.dt_ms / 1000.0;
    let bins_sw = activity_bins(&net, &software.spikes, steps, 5.0);
    let bins_hw = activity_bins(&net, &hardware.spikes, steps, 5.0);
    let st = fabric.stats;
    println!(
        "{} on {} ({}): {} cores; {} spikes routed, {} of {} receptions delayed (mean {:.2} steps, max {}), {} dropped",
        prepared.experiment.name,
        preset.file.name,
        strategy.name(),
        mapping.cores_used,
        st.spikes,
        st.delayed,
        st.receptions,
        if st.delayed > 0 { st.extra_steps as f64 / st.delayed as f64 } else { 0.0 },
        st.max_extra_steps,
        st.dropped
    );
    println!("spike hash: software {:016x}, hardware {:016x}", software.spike_hash, hardware.spike_hash);
    println!(
        "{:<10} {:>12} {:>12} {:>9} {:>14}",
        "population", "software_hz", "hardware_hz", "diff_%", "activity_corr"
    );
    let mut rows = Vec::new();
    for (p, pop) in net.populations.iter().enumerate() {
        let n = pop.size as f64 * counted_s;
        let (r_sw, r_hw) = (software.counted_spikes[p] as f64 / n, hardware.counted_spikes[p] as f64 / n);
        let diff = if r_sw > 0.0 { 100.0 * (r_hw - r_sw) / r_sw } else { f64::NAN };
        let corr = pearson(&bins_sw[p], &bins_hw[p]);
        println!("{:<10} {:>12.3} {:>12.3} {:>9.2} {:>14.3}", pop.name, r_sw, r_hw, diff, corr);
        rows.push(serde_json::json!({
            "population": pop.name, "software_hz": r_sw, "hardware_hz": r_hw, "difference_percent": diff,
            "activity_correlation_5ms": corr,
        }));
    }
    let json = serde_json::json!({
        "experiment": prepared.experiment.name, "preset": preset.file.name, "mapping": strategy.name(),
        "duration_s": duration_s, "cores_used": mapping.cores_used,
        "violations": mapping.violations.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
        "fabric": st, "software_spike_hash": format!("{:016x}", software.spike_hash),
        "hardware_spike_hash": format!("{:016x}", hardware.spike_hash), "populations": rows,
    });
    if let Some(out) = &a.out {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        std::fs::write(out.join("cosim.json"), serde_json::to_string_pretty(&json)? + "\n")?;
        println!("wrote {}", out.join("cosim.json").display());
    }
    Ok(())
}

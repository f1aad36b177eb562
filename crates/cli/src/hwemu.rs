//! `neuropil hwemu`: chip presets, the interconnect's latency–load curve, and the
//! report of an experiment's spikes on a chip fabric.

use anyhow::{bail, Context as _, Result};
use clap::{Args, Subcommand};
use neuropil_hwemu::mapping::{map, Strategy};
use neuropil_hwemu::preset::{Preset, RouterKind, BUILTIN, PARAMS};
use neuropil_hwemu::report::evaluate;
use neuropil_hwemu::topology::Kind;
use neuropil_hwemu::traffic::{generate, max_channel_load, measure, zero_load_ns, Pattern};
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
    /// Latency and accepted throughput against offered load on a k×k mesh or torus under a traffic pattern.
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
    /// Preset whose routers and links to use (name or file; a sweep needs no neuron or energy values).
    #[arg(long, default_value = "loihi")]
    preset: String,
    /// Interconnect model: wormhole (routers with VCs and credits) or fast (default: the preset's).
    #[arg(long)]
    router: Option<String>,
    /// Grid: mesh or torus.
    #[arg(long, default_value = "mesh")]
    topology: String,
    /// Grid side (k×k).
    #[arg(long, default_value_t = 8)]
    k: u32,
    /// Traffic: uniform, transpose, bit_complement, hotspot[:CHIP[:FRACTION]] (comma-separated: one curve each),
    /// or experiment (with --experiment).
    #[arg(long, default_value = "uniform")]
    traffic: String,
    /// Experiment whose mapped network's traffic to use (--traffic experiment; its neurons on the preset's grid).
    #[arg(long)]
    experiment: Option<PathBuf>,
    /// Override a field of the experiment, as for run.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    set: Vec<String>,
    /// Mapping of the experiment's neurons.
    #[arg(long, default_value = "population_contiguous")]
    mapping: String,
    /// Offered loads, as fractions of the ideal throughput (the busiest channel's bound for this traffic).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0.05,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.85,0.9,0.95,1.0,1.1,1.2"
    )]
    loads: Vec<f64>,
    /// Warm-up before measuring: a time with a unit (ns, us, cycles), default 2000 packet times.
    #[arg(long)]
    warmup: Option<String>,
    /// Measurement window (packets created in it are measured), default 10000 packet times.
    #[arg(long)]
    measure: Option<String>,
    /// Injection lasts this long (at least warm-up + window; default warm-up + 1.2 windows); then the network drains.
    #[arg(long)]
    duration: Option<String>,
    /// Seed of the traffic.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Flits per packet (wormhole; sets packet_bits = N × flit_bits).
    #[arg(long)]
    packet_flits: Option<u32>,
    /// Override a preset parameter, NAME=VALUE (e.g. vcs=16, vc_buffer_flits=8); repeatable.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Injection process: bernoulli (one trial per cycle, or per packet time on the fast model) or poisson.
    #[arg(long, default_value = "bernoulli")]
    injection: String,
    /// PNG to write, with .csv and .json beside it (default: out/hwemu/sweep-<preset>-<router>-<grid>-<traffic>.png).
    #[arg(long)]
    out: Option<PathBuf>,
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
            let cores = t.cores_per_router.map_or("(no)".to_string(), |c| c.to_string());
            println!(
                "topology  {:?} {}x{}, {cores} cores per router [{:?}] {}",
                t.kind, t.width, t.height, t.conf, t.source
            );
            println!("timing    {}", p.file.timing.map_or("(not stated: sweeps only)".into(), |t| format!("{t:?}")));
            println!("router    {:?}", p.file.router);
            if let Ok(m) = p.router_model() {
                let ns = |c: u32| c as f64 * m.cycle_ns;
                println!(
                    "          hop {} + {} = {} cycles east-west ({:.2} ns), {} + {} = {} north-south ({:.2} ns); \
                     a packet is {} flit(s)",
                    m.router_stages,
                    m.link_cycles_x,
                    m.router_stages + m.link_cycles_x,
                    ns(m.router_stages + m.link_cycles_x),
                    m.router_stages,
                    m.link_cycles_y,
                    m.router_stages + m.link_cycles_y,
                    ns(m.router_stages + m.link_cycles_y),
                    m.packet_flits
                );
            }
            println!();
            for (param, unit, _, _) in PARAMS {
                if let Some(v) = p.file.params.get(*param) {
                    let unit = match v.cycles {
                        Some(c) => format!("{unit} ({c} cycles)"),
                        None => unit.to_string(),
                    };
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

/// A time with a unit (`500ns`, `2us`, `2000cycles`; no unit: ns), ns.
fn parse_time(flag: &str, text: &str, cycle_ns: Option<f64>) -> Result<f64> {
    let t = text.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num
        .trim()
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)
        .with_context(|| format!("{flag} {text}: expected a time such as 500ns, 2us or 2000cycles"))?;
    Ok(match unit.trim() {
        "" | "ns" => v,
        "us" => v * 1e3,
        "ms" => v * 1e6,
        "cycles" | "cycle" => match cycle_ns {
            Some(c) => v * c,
            None => bail!("{flag} {text}: cycles apply to router = wormhole; give ns or us for the fast model"),
        },
        u => bail!("{flag} {text}: unknown unit {u:?}; use ns, us, ms or cycles"),
    })
}

fn sweep(a: &SweepArgs) -> Result<()> {
    if a.k == 0 || a.k > 64 {
        bail!("--k {}: choose a grid side in 1..=64", a.k);
    }
    let kind = match a.topology.as_str() {
        "mesh" => Kind::Mesh,
        "torus" => Kind::Torus,
        t => bail!("--topology {t}: use mesh or torus"),
    };
    let mut preset = load_preset(&a.preset)?;
    if let Some(r) = &a.router {
        let kind = RouterKind::from_name(r).with_context(|| format!("--router {r}: use wormhole or fast"))?;
        preset = preset.with_router(kind).with_context(|| format!("--router {r}"))?;
    }
    let mut overrides = Vec::new();
    for p in &a.params {
        let (name, value) = p
            .split_once('=')
            .and_then(|(n, v)| Some((n.trim().to_string(), v.trim().parse::<f64>().ok()?)))
            .with_context(|| format!("--param {p}: expected NAME=VALUE with a number, e.g. vcs=16"))?;
        overrides.push((name, value));
    }
    if let Some(f) = a.packet_flits {
        if preset.file.router != RouterKind::Wormhole {
            bail!("--packet-flits: flits belong to router = wormhole (this sweep uses the fast model; set --param packet_bits=...)");
        }
        if f == 0 || f > 1024 {
            bail!("--packet-flits {f}: choose 1..=1024");
        }
        overrides.push(("packet_bits".into(), f as f64 * preset.value("flit_bits")));
    }
    preset.file.topology.kind = kind;
    preset.file.topology.width = a.k;
    preset.file.topology.height = a.k;
    preset.file.topology.source = format!("--topology {} --k {} (sweep)", a.topology, a.k);
    preset.file.emergency_routing = false;
    let preset = preset.with_params(&overrides).map_err(|e| anyhow::anyhow!("{e}"))?;
    let topo = preset.topology();
    let fabric = preset.interconnect()?;
    let wormhole = preset.file.router == RouterKind::Wormhole;
    let cycle_ns = wormhole.then(|| preset.value("cycle_ns"));
    let packet_ns = fabric.packet_time_ns();

    let patterns: Vec<Pattern> = if a.traffic == "experiment" {
        let exp = a.experiment.as_ref().context("--traffic experiment needs --experiment FILE")?;
        let strategy = Strategy::from_name(&a.mapping).with_context(|| {
            format!("--mapping {}: unknown; use round_robin, population_contiguous or locality_aware", a.mapping)
        })?;
        let prepared = run::prepare(&RunRequest { experiment: exp.clone(), set: a.set.clone(), ..Default::default() })
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let sw = software_run(&prepared.compiled.network, prepared.shards, prepared.threads, &prepared.compiled);
        let mapping = map(&sw.connectome, &preset, strategy, None, false, Some(&sw.activity))?;
        println!(
            "traffic of {} ({} spikes in {} ms) mapped {} onto {} cores",
            exp.display(),
            sw.spikes.len(),
            sw.duration_ms,
            strategy.name(),
            mapping.cores_used
        );
        vec![Pattern::of_mapped_network(&topo, &sw.connectome, &mapping, &sw.activity)]
    } else {
        if a.experiment.is_some() {
            bail!("--experiment: give it with --traffic experiment");
        }
        a.traffic
            .split(',')
            .map(|t| Pattern::parse(t.trim(), &topo).map_err(|e| anyhow::anyhow!(e)))
            .collect::<Result<_>>()?
    };
    let warmup = a.warmup.as_deref().map_or(Ok(2000.0 * packet_ns), |t| parse_time("--warmup", t, cycle_ns))?;
    let window = a.measure.as_deref().map_or(Ok(10000.0 * packet_ns), |t| parse_time("--measure", t, cycle_ns))?;
    // Injection goes on a fifth of a window past it, so the last measured packets
    // meet the same load as the first (as BookSim keeps injecting while it drains).
    let duration =
        a.duration.as_deref().map_or(Ok(warmup + 1.2 * window), |t| parse_time("--duration", t, cycle_ns))?;
    if window <= 0.0 {
        bail!("--measure: the window must be longer than 0");
    }
    if duration < warmup + window {
        bail!("--duration: {duration} ns is shorter than warm-up + window ({} ns)", warmup + window);
    }
    if let Some(bad) = a.loads.iter().find(|l| !(l.is_finite() && **l > 0.0 && **l <= 4.0)) {
        bail!("--loads: {bad} is not a fraction of the ideal throughput in (0, 4]");
    }
    let slot = match a.injection.as_str() {
        "bernoulli" => cycle_ns.unwrap_or(packet_ns),
        "poisson" => 0.0,
        i => bail!("--injection {i}: use bernoulli or poisson"),
    };
    let traffic_name = if patterns.len() == 1 { patterns[0].name().replace(':', "_") } else { "patterns".into() };
    let out = a.out.clone().unwrap_or_else(|| {
        PathBuf::from("out/hwemu").join(format!(
            "sweep-{}-{}-{}{}-{traffic_name}.png",
            preset.file.name,
            fabric.name(),
            a.topology,
            a.k
        ))
    });
    match &fabric {
        neuropil_hwemu::fabric::Interconnect::Wormhole(r) => {
            let m = r.model();
            println!(
                "{k}x{k} {}, dimension order, {} routers (wormhole): {} VCs x {} flits, {} flit(s) per packet, \
                 {} router stages, links {}/{} cycles (x/y), injection {}, ejection {}, credit {}{}; cycle {} ns",
                a.topology,
                preset.file.name,
                m.vcs,
                m.vc_buffer_flits,
                m.packet_flits,
                m.router_stages,
                m.link_cycles_x,
                m.link_cycles_y,
                m.injection_cycles,
                m.ejection_cycles,
                m.credit_cycles,
                if m.wait_for_tail_credit { ", VCs freed on the tail's last credit" } else { "" },
                m.cycle_ns,
                k = a.k
            );
        }
        neuropil_hwemu::fabric::Interconnect::Fast(_) => {
            let m = preset.link_model();
            println!(
                "{k}x{k} {}, dimension order, {} links (fast model): hop {}/{} ns (x/y), {} bit packets at {} bit/ns, \
                 {} packet buffers",
                a.topology,
                preset.file.name,
                m.hop_latency_ns,
                m.hop_latency_y_ns,
                m.packet_bits,
                m.bandwidth_bits_per_ns,
                m.buffer_packets,
                k = a.k
            );
        }
    }
    println!(
        "warm-up {warmup:.1} ns, window {window:.1} ns, injection for {duration:.1} ns ({}), seed {}",
        a.injection, a.seed
    );
    // Flits per cycle from packets per ns (wormhole).
    let per_cycle = |per_ns: f64| cycle_ns.map(|_| per_ns * packet_ns);
    let mut csv = String::from(
        "traffic,load_fraction,offered_per_sender_per_ns,accepted_per_sender_per_ns,mean_latency_ns,p99_latency_ns,measured,dropped,packets\n",
    );
    let (mut lat_series, mut thr_series, mut runs) = (Vec::new(), Vec::new(), Vec::new());
    for pattern in &patterns {
        let senders = pattern.senders(&topo);
        if senders == 0 {
            bail!("--traffic {}: no router sends anything", pattern.name());
        }
        // Ideal throughput: the busiest channel carries one packet per packet time.
        let load = max_channel_load(&topo, pattern, fabric.splits_ties());
        let bound = 1.0 / (load * packet_ns);
        let zero = zero_load_ns(&fabric, &topo, pattern);
        let worst = a.loads.iter().copied().fold(0.0, f64::max) * bound * duration * senders as f64;
        if worst > 2e7 {
            bail!("{worst:.2e} packets at the highest load: shorten --duration or the window (at most 2e7)");
        }
        println!(
            "\ntraffic {}: ideal throughput {:.5} packets/ns per sender{} (busiest channel load {:.4}); \
             zero-load latency {:.3} ns{}",
            pattern.name(),
            bound,
            per_cycle(bound).map_or(String::new(), |f| format!(" = {f:.4} flits/cycle")),
            load,
            zero,
            cycle_ns.map_or(String::new(), |c| format!(" = {:.2} cycles", zero / c)),
        );
        println!(
            "{:>6} {:>12} {:>12} {:>12} {:>12} {:>9} {:>9}",
            "load", "offered/ns", "accepted/ns", "latency_ns", "p99_ns", "measured", "dropped"
        );
        let (mut lat_pts, mut thr_pts, mut rows) = (Vec::new(), Vec::new(), Vec::new());
        for &frac in &a.loads {
            let rate = frac * bound;
            let p = if slot > 0.0 { rate * slot } else { rate };
            let packets = generate(&topo, pattern, p, slot, duration, a.seed);
            let mut f = preset.interconnect()?;
            let pt = measure(&mut f, &packets, senders, rate, warmup, window).point;
            // One line per load as it finishes: the sweep's progress.
            println!(
                "{frac:>6.2} {:>12.5} {:>12.5} {:>12.2} {:>12.2} {:>9} {:>9}",
                rate, pt.accepted_per_ns, pt.latency_ns, pt.latency_p99_ns, pt.measured, pt.dropped
            );
            csv.push_str(&format!(
                "{},{frac},{rate},{},{},{},{},{},{}\n",
                pattern.name(),
                pt.accepted_per_ns,
                pt.latency_ns,
                pt.latency_p99_ns,
                pt.measured,
                pt.dropped,
                pt.packets
            ));
            lat_pts.push((frac, pt.latency_ns));
            thr_pts.push((frac, pt.accepted_per_ns / bound));
            rows.push(serde_json::json!({"load_fraction": frac, "point": pt}));
        }
        let saturation = thr_pts.iter().map(|p| p.1).fold(0.0, f64::max);
        println!(
            "highest accepted throughput: {:.3} of the ideal ({:.5} packets/ns per sender{})",
            saturation,
            saturation * bound,
            per_cycle(saturation * bound).map_or(String::new(), |f| format!(", {f:.4} flits/cycle"))
        );
        let label = format!("{} (zero-load {:.1} ns)", pattern.name(), zero);
        lat_series.push(Series { name: label.clone(), points: lat_pts });
        thr_series.push(Series { name: label, points: thr_pts });
        runs.push(serde_json::json!({
            "traffic": pattern.name(), "senders": senders, "ideal_per_sender_per_ns": bound,
            "busiest_channel_load": load, "zero_load_ns": zero, "highest_accepted_fraction": saturation,
            "points": rows,
        }));
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(out.with_extension("csv"), csv)?;
    let json = serde_json::json!({
        "preset": preset.file.name, "router": fabric.name(), "topology": a.topology, "k": a.k,
        "cycle_ns": cycle_ns, "packet_time_ns": packet_ns, "warmup_ns": warmup, "window_ns": window,
        "duration_ns": duration, "seed": a.seed, "injection": a.injection, "runs": runs,
    });
    std::fs::write(out.with_extension("json"), serde_json::to_string_pretty(&json)? + "\n")?;
    let title = format!(
        "{k}x{k} {}, {} ({}): mean latency vs offered load",
        a.topology,
        preset.file.name,
        fabric.name(),
        k = a.k
    );
    line_chart(
        &title,
        "offered load / ideal throughput of the traffic",
        "mean latency (ns, log scale)",
        &lat_series,
        &[(1.0, "ideal throughput".into())],
        true,
        &out,
    )?;
    let thr_png = out.with_file_name(format!(
        "{}_throughput.png",
        out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
    ));
    line_chart(
        &format!("{k}x{k} {}, {}: accepted throughput / ideal", a.topology, preset.file.name, k = a.k),
        "offered load / ideal throughput of the traffic",
        "accepted / ideal",
        &thr_series,
        &[(1.0, "ideal throughput".into())],
        false,
        &thr_png,
    )?;
    println!(
        "wrote {}, {}, {} and {}",
        out.display(),
        thr_png.display(),
        out.with_extension("csv").display(),
        out.with_extension("json").display()
    );
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
            let (r, load) = evaluate(connectome, preset, &mapping, spikes, duration_ms)?;
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
    let mut fabric = neuropil_hwemu::cosim::CoSim::new(&sw.connectome, &preset, &mapping, net.dt_ms)?;
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

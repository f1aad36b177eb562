//! `neuropil`: the one binary. `run` simulates an experiment embedded (no etcd, no
//! network), `validate` checks a file, `plot` draws a raster, `bench` measures;
//! `node` and `control` are the cluster's processes, and `submit`, `status`,
//! `cancel` and `spikes` talk to a control.

mod bench;
mod client;
mod dni;
mod hwemu;

use clap::{Parser, Subcommand};
use neuropil_output::{plot, summary};
use neuropil_runtime::{run, system};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "neuropil", version, about = "A partition-independent spiking network simulator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an experiment embedded and write summary.json, spikes.parquet (state.parquet, weights.parquet when recorded).
    Run {
        /// Experiment file (.toml, .json or .yaml).
        experiment: PathBuf,
        /// Output directory (default: out/<experiment name>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Worker threads (default: the file's run.threads, else one per core).
        #[arg(long)]
        threads: Option<usize>,
        /// Shards (default: the file's run.shards, else one per thread). Results do not depend on it.
        #[arg(long)]
        shards: Option<usize>,
        /// Override a field: --set scaling.neurons=0.1 --set populations.E.size=100
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<String>,
        /// Also render raster.png into the output directory.
        #[arg(long)]
        plot: bool,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
        /// Write checkpoint.bin (the state of every shard) into the output directory
        /// at the end, to continue later with --resume.
        #[arg(long)]
        checkpoint: bool,
        /// Continue from a checkpoint for another run.duration_ms (same experiment,
        /// overrides and --shards as when it was written); spikes are the same as in
        /// one uninterrupted run.
        #[arg(long, value_name = "CHECKPOINT")]
        resume: Option<PathBuf>,
        /// During the run, rewrite a checkpoint every this many ms of biological time
        /// (to OUT.checkpoint.bin beside the output directory, or --checkpoint-path),
        /// so that a long run can be resumed after a crash.
        #[arg(long, value_name = "MS")]
        checkpoint_every_ms: Option<f64>,
        /// Where periodic checkpoints go.
        #[arg(long, value_name = "FILE")]
        checkpoint_path: Option<PathBuf>,
    },
    /// Check an experiment file without running it.
    Validate {
        /// Experiment file (.toml, .json or .yaml).
        experiment: PathBuf,
        /// Override a field, as for run.
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<String>,
    },
    /// Render raster.png (raster, population activity, rate histograms) from a run's output directory.
    Plot {
        /// Output directory of a run.
        dir: PathBuf,
        /// PNG to write (default: DIR/raster.png).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run the microcircuit without recording and print performance figures.
    Bench(bench::BenchArgs),
    /// The cortico-cerebellar DNI experiment: line drawing learnt by truncated BPTT with and without a cerebellar module (curves, table, plots).
    Dni(dni::DniArgs),
    /// List the neuron and synapse models, or one model's parameters (NEST names, defaults, units) and state variables.
    Models {
        /// A model name, e.g. iaf_psc_exp.
        model: Option<String>,
    },
    /// Neuromorphic hardware emulation: presets, interconnect sweeps, reports of an experiment on chip fabrics.
    #[command(subcommand)]
    Hwemu(hwemu::HwCommand),
    /// Cluster node: registers in etcd, hosts the shards the control assigns, exchanges spikes with peers.
    Node(NodeArgs),
    /// Cluster control: serves the ExperimentService; one replica, elected through etcd, schedules runs.
    Control(ControlArgs),
    /// Submit an experiment file to a control; prints its id (with --wait, follows it to the end).
    Submit {
        /// Experiment file (.toml, .json or .yaml).
        experiment: PathBuf,
        #[command(flatten)]
        target: TargetArgs,
        /// Override a field, as for run.
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<String>,
        /// Shards (default: one per node thread). Results do not depend on it.
        #[arg(long, default_value_t = 0)]
        shards: u32,
        /// Run a cerebellar module (cerebellum.NAME) or the co-simulated fabric
        /// (hardware) on this node, while it is a member of the run. Results do not
        /// depend on it.
        #[arg(long = "place", value_name = "WHAT=NODE")]
        place: Vec<String>,
        /// Follow the run with a progress bar and print the result.
        #[arg(long)]
        wait: bool,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Show all experiments, or one.
    Status {
        /// Experiment id.
        id: Option<String>,
        #[command(flatten)]
        target: TargetArgs,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Cancel an experiment (running ones stop at an epoch boundary; results so far are written).
    Cancel {
        /// Experiment id.
        id: String,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Ask for a coordinated checkpoint of a running experiment now (status shows checkpoint_ms move).
    Checkpoint {
        /// Experiment id.
        id: String,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Print spikes of a running experiment as they come (time_ms, population, neuron).
    Spikes {
        /// Experiment id.
        id: String,
        #[command(flatten)]
        target: TargetArgs,
        /// Only these populations (repeatable; default: all recorded).
        #[arg(long = "population")]
        populations: Vec<String>,
    },
    /// Download the result files of a finished experiment (summary.json, spikes.parquet, ...).
    Results {
        /// Experiment id.
        id: String,
        #[command(flatten)]
        target: TargetArgs,
        /// Where to write them (default: out/<id>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Only these files (repeatable; default: all).
        #[arg(long = "file")]
        files: Vec<String>,
    },
}

/// Where the control is.
#[derive(clap::Args, Clone)]
struct TargetArgs {
    /// Control address.
    #[arg(long, env = "NEUROPIL_CONTROL", default_value = "http://127.0.0.1:7070")]
    control: String,
    /// File holding the bearer token the control requires.
    #[arg(long, env = "NEUROPIL_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// CA certificate (PEM) that signed the control's certificate (for https:// addresses).
    #[arg(long, env = "NEUROPIL_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Wait this long for a control that is not listening yet (just started, restarting).
    #[arg(long, default_value_t = 15.0, value_name = "SECONDS")]
    connect_timeout_s: f64,
}

/// Options shared by node and control.
#[derive(clap::Args, Clone)]
struct ServiceArgs {
    /// etcd endpoints, comma-separated.
    #[arg(long, env = "NEUROPIL_ETCD", value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    etcd: Vec<String>,
    /// Prometheus /metrics listen address (port 0: any free port; default 9090 for control, 9091 for node).
    #[arg(long, env = "NEUROPIL_METRICS")]
    metrics: Option<std::net::SocketAddr>,
    /// Process id in the cluster (default: host name and listen port).
    #[arg(long, env = "NEUROPIL_ID")]
    id: Option<String>,
    /// etcd lease time to live, s: after this long without keep-alives the process
    /// counts as gone (default: 10 for a node, whose lapse makes it lost; 4 for a
    /// control replica, after which a standby takes over as leader).
    #[arg(long)]
    lease_ttl_s: Option<i64>,
    /// This process's TLS certificate (PEM): the control serves its API over TLS; nodes use it for mutual TLS.
    #[arg(long, env = "NEUROPIL_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "NEUROPIL_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// CA (PEM) that signs every node's certificate: node-to-node and control-to-node traffic is mutual TLS.
    #[arg(long, env = "NEUROPIL_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// File holding the cluster token that nodes and control replicas present to
    /// nodes' internal ports (NodeService, SpikeExchange); the same file on every
    /// member (a Kubernetes Secret). Without it, the token kept in etcd under
    /// /neuropil/cluster-token is used (created by the first member to start).
    #[arg(long, env = "NEUROPIL_CLUSTER_TOKEN_FILE")]
    cluster_token_file: Option<PathBuf>,
}

#[derive(clap::Args)]
struct NodeArgs {
    /// gRPC listen address (port 0: any free port).
    #[arg(long, env = "NEUROPIL_LISTEN", default_value = "0.0.0.0:7071")]
    listen: std::net::SocketAddr,
    /// Address the control and peers dial (default: http://<listen>); in Kubernetes the pod's stable DNS name.
    #[arg(long, env = "NEUROPIL_ADVERTISE")]
    advertise: Option<String>,
    /// Spike exchange listen address (port 0: any free port); peers dial the advertised host at this port.
    #[arg(long, env = "NEUROPIL_EXCHANGE_LISTEN", default_value = "0.0.0.0:7072")]
    exchange_listen: std::net::SocketAddr,
    /// Address peers dial for the spike exchange (default: the advertised host at the exchange port).
    #[arg(long, env = "NEUROPIL_EXCHANGE_ADVERTISE")]
    exchange_advertise: Option<String>,
    /// Also serve the spike exchange on this Unix socket: peers on the same host
    /// (same host name and boot id) reach it there instead of over TCP, which is
    /// cheaper per epoch (several node processes per machine, e.g. one per socket).
    #[arg(long, env = "NEUROPIL_EXCHANGE_SOCKET")]
    exchange_socket: Option<std::path::PathBuf>,
    /// Worker threads (default: one per core).
    #[arg(long, env = "NEUROPIL_THREADS")]
    threads: Option<usize>,
    /// Memory offered to runs, MiB (default: what the system has available).
    #[arg(long, env = "NEUROPIL_MEMORY_MIB")]
    memory_mib: Option<u64>,
    /// Seconds to wait for a peer's epoch message (or its connection) before failing the run.
    #[arg(long, default_value_t = 120)]
    peer_timeout_s: u64,
    /// For tests and benchmarks only: hold every spike message from a peer until
    /// this many µs after it was sent, emulating the one-way latency of a link
    /// between hosts (every node of the cluster must use the same; 0: off).
    #[arg(long, default_value_t = 0)]
    emulate_link_latency_us: u64,
    /// The checkpoint volume shared by all nodes and the control (a ReadWriteMany
    /// volume in Kubernetes): the node writes its part of each coordinated
    /// checkpoint there and reads the others' when a run recovers from a lost node.
    /// Without it the node neither checkpoints nor recovers.
    #[arg(long, env = "NEUROPIL_CHECKPOINT_DIR")]
    checkpoint_dir: Option<PathBuf>,
    #[command(flatten)]
    service: ServiceArgs,
}

#[derive(clap::Args)]
struct ControlArgs {
    /// gRPC listen address (port 0: any free port).
    #[arg(long, env = "NEUROPIL_LISTEN", default_value = "0.0.0.0:7070")]
    listen: std::net::SocketAddr,
    /// Where results go (<data-dir>/<experiment id>/).
    #[arg(long, env = "NEUROPIL_DATA_DIR", default_value = "out/cluster")]
    data_dir: PathBuf,
    /// Require this bearer token (file content) from clients.
    #[arg(long, env = "NEUROPIL_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Biological time between coordinated checkpoints of a cluster run, ms (0: none).
    /// Nodes write them to their --checkpoint-dir; a run that loses a node rolls
    /// back to the last complete one and goes on with the nodes left.
    #[arg(long, env = "NEUROPIL_CHECKPOINT_INTERVAL_MS", default_value_t = 1000.0)]
    checkpoint_interval_ms: f64,
    /// The checkpoint volume as this replica sees it (the nodes' --checkpoint-dir):
    /// checkpoints older than the last two are deleted from it. Without it they are
    /// left for the volume's owner to clean up.
    #[arg(long, env = "NEUROPIL_CHECKPOINT_DIR")]
    checkpoint_dir: Option<PathBuf>,
    /// Recoveries from lost nodes a run may make within 10 minutes before it fails.
    #[arg(long, default_value_t = 3)]
    max_recoveries: u32,
    /// Seconds two nodes may each wait for the other's epoch message (both alive,
    /// the link between them cut) before one of them leaves the run and it recovers.
    #[arg(long, default_value_t = 10)]
    peer_stall_s: u64,
    #[command(flatten)]
    service: ServiceArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Like other Unix tools, end quietly when the reader of stdout goes away
    // (`neuropil run ... | head`) instead of panicking on the failed write. Not
    // for the services: with the default disposition a client that hangs up at the
    // wrong moment killed a node by SIGPIPE (seen in the TLS test; writev, unlike
    // send, cannot ask for MSG_NOSIGNAL); they keep Rust's "ignore" and see EPIPE.
    let long_running = matches!(cli.command, Command::Node(_) | Command::Control(_))
        || matches!(&cli.command, Command::Hwemu(h) if h.is_service());
    #[cfg(unix)]
    if !long_running {
        // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    logs();
    // Ctrl-C stops a run at the next epoch boundary and keeps what was simulated.
    #[cfg(unix)]
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
    }
    match cli.command {
        Command::Run {
            experiment,
            out,
            threads,
            shards,
            set,
            plot,
            quiet,
            checkpoint,
            resume,
            checkpoint_every_ms,
            checkpoint_path,
        } => {
            let req = run::RunRequest { experiment, set, threads, shards };
            let opts = RunOpts { plot, quiet, checkpoint, resume, checkpoint_every_ms, checkpoint_path };
            cmd_run(req, out, opts)
        }
        Command::Validate { experiment, set } => {
            let req = run::RunRequest { experiment, set, ..Default::default() };
            match run::prepare(&req) {
                Ok(p) => {
                    let c = &p.compiled;
                    let bytes = c.estimated_bytes as f64;
                    let memory = if bytes >= (1u64 << 30) as f64 {
                        format!("{:.2} GiB", bytes / (1u64 << 30) as f64)
                    } else {
                        format!("{:.1} MiB", bytes / (1u64 << 20) as f64)
                    };
                    println!(
                        "ok: {} populations, {} neurons, ~{:.3e} synapses, {} steps, estimated peak memory {memory}",
                        c.network.populations.len(),
                        c.network.total_neurons(),
                        c.expected_synapses,
                        c.steps,
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => spec_error(&e),
            }
        }
        Command::Plot { dir, out } => {
            let png = out.unwrap_or_else(|| dir.join("raster.png"));
            match plot::render_dir(&dir, &png) {
                Ok(()) => {
                    println!("wrote {}", png.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Models { model } => models(model.as_deref()),
        Command::Hwemu(cmd) => match hwemu::run(&cmd) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Node(args) => service(cmd_node(args)),
        Command::Control(args) => service(cmd_control(args)),
        Command::Submit { experiment, target, set, shards, place, wait, quiet } => {
            let how = client::Submission { set, shards, place, wait, quiet };
            client(&target, |t| async move { client::submit(&t, &experiment, &how).await })
        }
        Command::Status { id, target, json } => {
            client(&target, |t| async move { client::status(&t, id.as_deref(), json).await.map(|()| true) })
        }
        Command::Cancel { id, target } => {
            client(&target, |t| async move { client::cancel(&t, &id).await.map(|()| true) })
        }
        Command::Checkpoint { id, target } => {
            client(&target, |t| async move { client::checkpoint(&t, &id).await.map(|()| true) })
        }
        Command::Spikes { id, target, populations } => {
            client(&target, |t| async move { client::spikes(&t, &id, &populations).await.map(|()| true) })
        }
        Command::Results { id, target, out, files } => {
            let out = out.unwrap_or_else(|| PathBuf::from("out").join(&id));
            client(&target, |t| async move { client::results(&t, &id, &out, &files).await.map(|()| true) })
        }
        Command::Dni(args) => match dni::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Bench(args) => match bench::run(&args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Structured logs (`tracing`) to stderr, at the level `NEUROPIL_LOG` names
/// (`error`, `warn`, `info`, `debug`, `trace`; `info` by default).
fn logs() {
    let level = std::env::var("NEUROPIL_LOG").ok().and_then(|v| v.parse().ok());
    let level = level.unwrap_or(tracing_subscriber::filter::LevelFilter::INFO);
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_max_level(level).with_target(false).init();
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()
}

/// Run a long-lived service to its end; configuration errors exit 2.
fn service(f: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    match runtime().map_err(anyhow::Error::from).and_then(|rt| rt.block_on(f)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Run a client command: exit 0 on success, 1 when the experiment did not succeed,
/// 2 on errors.
fn client<F, Fut>(target: &TargetArgs, f: F) -> ExitCode
where
    F: FnOnce(client::Target) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let token =
        match target.token_file.as_deref().map(|p| neuropil_cluster::auth::read_token("--token-file", p)).transpose() {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::from(2);
            }
        };
    let tls = match neuropil_cluster::tls::Tls::load(None, None, target.tls_ca.as_deref(), false) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    if !(target.connect_timeout_s.is_finite() && (0.0..=3600.0).contains(&target.connect_timeout_s)) {
        eprintln!("error: --connect-timeout-s {}: give seconds in 0..=3600", target.connect_timeout_s);
        return ExitCode::from(2);
    }
    let t = client::Target {
        control: target.control.clone(),
        token,
        tls,
        connect_timeout: std::time::Duration::from_secs_f64(target.connect_timeout_s),
    };
    match runtime().map_err(anyhow::Error::from).and_then(|rt| rt.block_on(f(t))) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn default_id(role: &str, listen: std::net::SocketAddr) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    let host = if host.is_empty() { role.to_string() } else { host };
    format!("{host}-{}", listen.port())
}

async fn cmd_node(a: NodeArgs) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let memory_bytes = match a.memory_mib {
        Some(m) => m << 20,
        None => system::available_memory_bytes().unwrap_or(1 << 30),
    };
    let s = a.service;
    let tls = neuropil_cluster::tls::Tls::load(s.tls_cert.as_deref(), s.tls_key.as_deref(), s.tls_ca.as_deref(), true)?;
    let cluster_token = cluster_token(&s)?;
    let cfg = neuropil_node::NodeConfig {
        id: s.id.unwrap_or_else(|| default_id("node", a.listen)),
        listen: a.listen,
        advertise: a.advertise,
        exchange_listen: a.exchange_listen,
        exchange_advertise: a.exchange_advertise,
        exchange_socket: a.exchange_socket,
        etcd: s.etcd,
        threads: a.threads.unwrap_or(cores).max(1),
        metrics_listen: s.metrics.unwrap_or(([0, 0, 0, 0], 9091).into()),
        memory_bytes,
        lease_ttl_s: s.lease_ttl_s.unwrap_or(10).max(2),
        peer_timeout: std::time::Duration::from_secs(a.peer_timeout_s.max(1)),
        emulated_latency: std::time::Duration::from_micros(a.emulate_link_latency_us.min(10_000_000)),
        tls,
        cluster_token,
        checkpoint_dir: a.checkpoint_dir,
    };
    neuropil_node::serve(cfg, neuropil_cluster::server::shutdown_signal()).await
}

/// The `--cluster-token-file`'s token, if one is given.
fn cluster_token(s: &ServiceArgs) -> anyhow::Result<Option<String>> {
    let path = s.cluster_token_file.as_deref();
    path.map(|p| neuropil_cluster::auth::read_token("--cluster-token-file", p)).transpose()
}

async fn cmd_control(a: ControlArgs) -> anyhow::Result<()> {
    let token = a.token_file.as_deref().map(|p| neuropil_cluster::auth::read_token("--token-file", p)).transpose()?;
    let s = a.service;
    let cluster_token = cluster_token(&s)?;
    let (cert, key, ca) = (s.tls_cert.as_deref(), s.tls_key.as_deref(), s.tls_ca.as_deref());
    let tls = neuropil_cluster::tls::Tls::load(cert, key, None, false)?;
    // Mutual TLS towards the nodes only when they have a CA to check us against.
    let node_tls = neuropil_cluster::tls::Tls::load(ca.and(cert), ca.and(key), ca, true)?;
    let cfg = neuropil_control::ControlConfig {
        id: s.id.unwrap_or_else(|| default_id("control", a.listen)),
        listen: a.listen,
        etcd: s.etcd,
        metrics_listen: s.metrics.unwrap_or(([0, 0, 0, 0], 9090).into()),
        data_dir: a.data_dir,
        token,
        lease_ttl_s: s.lease_ttl_s.unwrap_or(4).max(2),
        tls,
        node_tls,
        cluster_token,
        checkpoint_interval_ms: a.checkpoint_interval_ms,
        checkpoint_dir: a.checkpoint_dir,
        max_recoveries: a.max_recoveries,
        peer_stall: std::time::Duration::from_secs(a.peer_stall_s.max(1)),
    };
    neuropil_control::serve(cfg, neuropil_cluster::server::shutdown_signal()).await
}

fn models(name: Option<&str>) -> ExitCode {
    use neuropil_sim::ModelKind;
    let synapses = neuropil_spec::synapse::MODELS;
    let Some(name) = name else {
        println!("neuron models:");
        for m in ModelKind::ALL {
            println!("  {}", m.name());
        }
        println!("synapse models:");
        for (m, _) in synapses {
            println!("  {m}");
        }
        return ExitCode::SUCCESS;
    };
    if let Some((m, params)) = synapses.iter().find(|(m, _)| *m == name) {
        println!("{m}\n\nparameters (syn.params):");
        for (p, default, unit, doc) in params.iter() {
            println!("  {p:<14} {default:>10} {unit:<9} {doc}");
        }
        return ExitCode::SUCCESS;
    }
    let Some(m) = ModelKind::from_name(name) else {
        let all: Vec<&str> = ModelKind::names().into_iter().chain(synapses.iter().map(|(m, _)| *m)).collect();
        eprintln!("error: unknown model \"{name}\"; available: {}", all.join(", "));
        return ExitCode::from(2);
    };
    println!("{}\n\nparameters:", m.name());
    for p in m.params() {
        println!("  {:<14} {:>10} {:<6} {}", p.name, p.default, p.unit, p.doc);
    }
    println!("\nstate variables:");
    for v in m.state() {
        println!("  {:<14} {}", v.name, v.unit);
    }
    ExitCode::SUCCESS
}

fn spec_error(e: &neuropil_spec::SpecError) -> ExitCode {
    for line in e.to_string().lines() {
        eprintln!("error: {line}");
    }
    ExitCode::from(2)
}

/// Set by SIGINT (Ctrl-C): the run stops at the next epoch boundary, and what was
/// simulated is written out with a checkpoint to resume from.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[cfg(unix)]
extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Options of `neuropil run` beyond what to run.
struct RunOpts {
    plot: bool,
    quiet: bool,
    checkpoint: bool,
    resume: Option<PathBuf>,
    checkpoint_every_ms: Option<f64>,
    checkpoint_path: Option<PathBuf>,
}

fn cmd_run(req: run::RunRequest, out: Option<PathBuf>, opts: RunOpts) -> ExitCode {
    let RunOpts { plot, quiet, checkpoint, resume, checkpoint_every_ms, checkpoint_path } = opts;
    let prepared = match run::prepare(&req) {
        Ok(p) => p,
        Err(e) => return spec_error(&e),
    };
    let resume = match resume.map(|path| neuropil_runtime::load_checkpoint(&path, &prepared)).transpose() {
        Ok(cp) => cp,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let name = if prepared.experiment.name.is_empty() {
        req.experiment.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "experiment".into())
    } else {
        prepared.experiment.name.clone()
    };
    let out_dir = out.unwrap_or_else(|| PathBuf::from("out").join(&name));
    let staging = match neuropil_output::Staging::new(&out_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let dt = prepared.compiled.network.dt_ms;
    let periodic = match checkpoint_every_ms {
        None => None,
        Some(ms) if ms.is_finite() && ms >= dt => Some(run::Periodic {
            every_steps: (ms / dt).round() as u64,
            path: checkpoint_path.unwrap_or_else(|| {
                let mut p = out_dir.clone().into_os_string();
                p.push(".checkpoint.bin");
                PathBuf::from(p)
            }),
        }),
        Some(ms) => {
            eprintln!("error: --checkpoint-every-ms: {ms} is not a time >= dt ({dt} ms)");
            return ExitCode::from(2);
        }
    };
    let (output, mut summary, state) = match run::simulate(&prepared, !quiet, resume, periodic.as_ref(), &INTERRUPTED) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let interrupted = INTERRUPTED.load(std::sync::atomic::Ordering::Relaxed);
    summary.interrupted = interrupted;
    // An interrupted run always leaves a checkpoint to continue from.
    let checkpoint = checkpoint || interrupted;
    let result =
        neuropil_output::write_results(staging.dir(), &prepared.compiled.network, &output, &summary).and_then(|()| {
            if checkpoint {
                std::fs::write(staging.dir().join("checkpoint.bin"), state.to_bytes())?;
            }
            if plot {
                plot::render(&summary, &columnar_spikes(&output, &prepared), &staging.dir().join("raster.png"))?;
                neuropil_output::chart::plot_modules(&prepared.compiled.network, &output.cerebellum, staging.dir())?;
            }
            staging.commit()
        });
    match result {
        Ok(()) => {
            print!("{}", summary::render(&summary));
            println!("results in {}", out_dir.display());
            if interrupted {
                eprintln!(
                    "interrupted after {:.1} ms; continue with --resume {} (and run.duration_ms set to what is left)",
                    summary.duration_ms,
                    out_dir.join("checkpoint.bin").display()
                );
                return ExitCode::from(130);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn columnar_spikes(out: &neuropil_sim::embedded::RunOutput, p: &run::Prepared) -> Vec<(u32, f64)> {
    let dt = p.compiled.network.dt_ms;
    out.spikes.iter().map(|s| (s.gid, (s.step + 1) as f64 * dt)).collect()
}

//! `neuropil`: the one binary. `run` simulates an experiment embedded (no etcd, no
//! network), `validate` checks a file, `plot` draws a raster, `bench` measures.

mod bench;
mod columnar;
mod plot;
mod progress;
mod run;
mod summary;
mod system;

use clap::{Parser, Subcommand};
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
    /// List the neuron and synapse models, or one model's parameters (NEST names, defaults, units) and state variables.
    Models {
        /// A model name, e.g. iaf_psc_exp.
        model: Option<String>,
    },
}

fn main() -> ExitCode {
    // Like other Unix tools, end quietly when the reader of stdout goes away
    // (`neuropil run ... | head`) instead of panicking on the failed write.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // Ctrl-C stops a run at the next epoch boundary and keeps what was simulated.
    #[cfg(unix)]
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
    }
    let cli = Cli::parse();
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
                    println!(
                        "ok: {} populations, {} neurons, ~{:.3e} synapses, {} steps, estimated memory {:.2} GiB",
                        c.network.populations.len(),
                        c.network.total_neurons(),
                        c.expected_synapses,
                        c.steps,
                        c.estimated_bytes as f64 / (1u64 << 30) as f64
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
        Command::Bench(args) => match bench::run(&args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
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

#[cfg(unix)]
extern "C" fn on_sigint(_: libc::c_int) {
    run::INTERRUPTED.store(true, std::sync::atomic::Ordering::Relaxed);
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
    let resume = match resume.map(|path| run::load_checkpoint(&path, &prepared)).transpose() {
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
    let staging = match run::Staging::new(&out_dir) {
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
    let (output, mut summary, state) = match run::simulate(&prepared, !quiet, resume, periodic.as_ref()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let interrupted = run::interrupted();
    summary.interrupted = interrupted;
    // An interrupted run always leaves a checkpoint to continue from.
    let checkpoint = checkpoint || interrupted;
    let result = run::write_results(staging.dir(), &prepared, &output, &summary).and_then(|()| {
        if checkpoint {
            std::fs::write(staging.dir().join("checkpoint.bin"), state.to_bytes())?;
        }
        if plot {
            plot::render(&summary, &columnar_spikes(&output, &prepared), &staging.dir().join("raster.png"))?;
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

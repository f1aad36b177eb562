//! `neuropil bench`: the microcircuit at a chosen scale, without spike recording,
//! printing the figures the field compares (build time, RTF, memory, bytes per
//! synapse, synaptic events per second, rates); `--memory` and `--exchange`
//! measure the machine.

use anyhow::{Context as _, Result};
use clap::Args;
use neuropil_runtime::run::{self, RunRequest};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The benchmark's model in the checkout.
const MICROCIRCUIT: &str = "examples/microcircuit.toml";
/// The same file, built in.
const BUILT_IN_MICROCIRCUIT: &str = include_str!("../../../examples/microcircuit.toml");

/// Options of `neuropil bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Experiment to measure (default: examples/microcircuit.toml of the working
    /// directory, else the copy built into the binary, so an installed neuropil
    /// benchmarks anywhere).
    #[arg(long)]
    experiment: Option<PathBuf>,
    /// Scale of neurons and synapses (sets scaling.neurons and scaling.synapses).
    #[arg(long, default_value_t = 0.1)]
    scale: f64,
    /// Biological time to simulate, ms, including the file's transient (default: the file's duration).
    #[arg(long)]
    duration_ms: Option<f64>,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Further overrides.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    set: Vec<String>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// Instead: measure this machine's memory bandwidth (STREAM-like triad over
    /// 512 MiB per thread) to set the figures in perspective.
    #[arg(long)]
    memory: bool,
    /// Instead: measure what one epoch's spike exchange costs between two threads,
    /// from bare TCP and Unix sockets through HTTP/2 to the nodes' gRPC transport.
    #[arg(long)]
    exchange: bool,
    /// Epochs for --exchange.
    #[arg(long, default_value_t = 20_000)]
    epochs: usize,
}

/// Triad a[i] = b[i] + s * c[i] over `n` f64 per thread, best of 5; bytes per
/// second counting 3 × 8 bytes per element (read b, read c, write a).
fn memory_bandwidth(threads: usize) -> f64 {
    let n = 22_000_000; // three arrays of 176 MB per thread
    let mut best = f64::INFINITY;
    let mut arrays: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> =
        (0..threads).map(|_| (vec![0.0; n], vec![1.0; n], vec![2.0; n])).collect();
    for _ in 0..5 {
        let start = std::time::Instant::now();
        std::thread::scope(|sc| {
            for (a, b, c) in arrays.iter_mut() {
                sc.spawn(move || {
                    for i in 0..a.len() {
                        a[i] = b[i] + 3.0 * c[i];
                    }
                    std::hint::black_box(&a[..]);
                });
            }
        });
        best = best.min(start.elapsed().as_secs_f64());
    }
    (threads * n * 24) as f64 / best
}

/// Run the benchmark.
pub fn run(a: &BenchArgs) -> Result<ExitCode> {
    if a.memory {
        for t in [1, a.threads.max(1)] {
            println!("memory bandwidth (triad), {t} thread(s): {:.1} GB/s", memory_bandwidth(t) / 1e9);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if a.exchange {
        neuropil_cluster::floor::run(a.epochs)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut set = vec![
        format!("scaling.neurons={}", a.scale),
        format!("scaling.synapses={}", a.scale),
        "recorders=[]".to_string(),
    ];
    if let Some(d) = a.duration_ms {
        set.push(format!("run.duration_ms={d}"));
    }
    set.extend(a.set.iter().cloned());
    let experiment = match &a.experiment {
        Some(p) => p.clone(),
        None if Path::new(MICROCIRCUIT).exists() => PathBuf::from(MICROCIRCUIT),
        None => {
            let p = std::env::temp_dir().join(format!("neuropil-bench-microcircuit-{}.toml", std::process::id()));
            std::fs::write(&p, BUILT_IN_MICROCIRCUIT).with_context(|| format!("writing {}", p.display()))?;
            p
        }
    };
    let req = RunRequest { experiment: experiment.clone(), set, threads: Some(a.threads), shards: None };
    let prepared = run::prepare(&req);
    if a.experiment.is_none() && experiment.starts_with(std::env::temp_dir()) {
        let _ = std::fs::remove_file(&experiment);
    }
    let prepared = match prepared {
        Ok(p) => p,
        Err(e) => {
            for line in e.to_string().lines() {
                eprintln!("error: {line}");
            }
            return Ok(ExitCode::from(2));
        }
    };
    let (_, s, _) = run::simulate(&prepared, true, None, None, &std::sync::atomic::AtomicBool::new(false))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{}", neuropil_output::summary::render(&s));
        if let Some(rss) = s.peak_rss_bytes {
            println!("peak RSS per synapse {:.1} B", rss as f64 / s.synapses.max(1) as f64);
        }
    }
    Ok(ExitCode::SUCCESS)
}

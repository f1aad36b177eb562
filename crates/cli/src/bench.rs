//! `neuropil bench`: the microcircuit at a chosen scale, without spike recording,
//! printing the figures the field compares (build time, RTF, memory, bytes per
//! synapse, synaptic events per second, rates).

use crate::run::{self, RunRequest};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// Options of `neuropil bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Experiment to measure.
    #[arg(long, default_value = "examples/microcircuit.toml")]
    experiment: PathBuf,
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
}

/// Run the benchmark.
pub fn run(a: &BenchArgs) -> Result<ExitCode> {
    let mut set = vec![
        format!("scaling.neurons={}", a.scale),
        format!("scaling.synapses={}", a.scale),
        "recorders=[]".to_string(),
    ];
    if let Some(d) = a.duration_ms {
        set.push(format!("run.duration_ms={d}"));
    }
    set.extend(a.set.iter().cloned());
    let req = RunRequest { experiment: a.experiment.clone(), set, threads: Some(a.threads), shards: None };
    let prepared = match run::prepare(&req) {
        Ok(p) => p,
        Err(e) => {
            for line in e.to_string().lines() {
                eprintln!("error: {line}");
            }
            return Ok(ExitCode::from(2));
        }
    };
    let (_, s) = run::simulate(&prepared, true);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{}", crate::summary::render(&s));
        if let Some(rss) = s.peak_rss_bytes {
            println!("peak RSS per synapse {:.1} B", rss as f64 / s.synapses.max(1) as f64);
        }
    }
    Ok(ExitCode::SUCCESS)
}

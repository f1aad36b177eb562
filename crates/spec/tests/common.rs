//! Helpers shared by the reference tests.
#![allow(dead_code)]

use neuropil_sim::embedded::{self, RunConfig, RunOutput};
use neuropil_sim::network::Exchange;
use neuropil_spec::{Compiled, Format, Limits};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `../shared/reference` beside the repository.
pub fn reference(rel: &str) -> PathBuf {
    root().join("../shared/reference").join(rel)
}

/// Load and compile an example with overrides.
pub fn compile_example(name: &str, set: &[&str]) -> Compiled {
    let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
    let exp = neuropil_spec::load(&root().join("examples").join(name), &set).expect("example loads");
    neuropil_spec::compile(&exp, &Limits::default()).expect("example compiles")
}

/// Parse and compile an experiment given as TOML text, with overrides.
pub fn compile_text(text: &str, set: &[&str]) -> Compiled {
    let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
    let exp = neuropil_spec::parse(text, Format::Toml, &set).expect("parses");
    neuropil_spec::compile(&exp, &Limits::default()).expect("compiles")
}

/// Run `c` on 2, 3 and 7 shards (2 threads) and check that spikes and samples are
/// those of `one`; returns the runs for further checks.
pub fn assert_same_on_shards(c: &Compiled, one: &RunOutput) -> Vec<RunOutput> {
    [2, 3, 7]
        .into_iter()
        .map(|shards| {
            let other = run(c, 2, shards);
            assert_eq!(other.spike_hash, one.spike_hash, "{shards} shards");
            assert_eq!(other.samples, one.samples, "{shards} shards");
            other
        })
        .collect()
}

/// Run compiled network on `threads` threads and `shards` shards.
pub fn run(c: &Compiled, threads: usize, shards: usize) -> RunOutput {
    let cfg = RunConfig { threads, shards, steps: c.steps, count_from_step: c.transient_steps };
    embedded::run(&c.network, cfg, &|_| {}, &AtomicBool::new(false))
}

/// Numbers of a whitespace-separated text file, skipping `#` comments.
pub fn numbers(path: &PathBuf) -> Vec<Vec<f64>> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(|x| x.parse::<f64>().expect("number")).collect())
        .collect()
}

/// Overrides that make brunel.toml a small network with homeostatic synaptic
/// scaling on E (static weights change during the run); add a duration.
pub const HOMEOSTATIC_BRUNEL: [&str; 8] = [
    "populations.E.size=800",
    "populations.I.size=200",
    "populations.E.homeostasis={ target_rate_hz = 10.0, tau_rate_ms = 100.0, threshold_rate = 1.0, scaling_rate = 0.05, scaling_interval_ms = 20.0 }",
    "projections[0].conn.indegree=80",
    "projections[1].conn.indegree=20",
    "projections[2].conn.indegree=80",
    "projections[3].conn.indegree=20",
    "stimuli[0].indegree=1000",
];

/// Run `c` split over `processes` in-process "nodes" (shard i on process
/// i mod processes, one thread each), linked by [`neuropil_sim::local`], with
/// cerebellar module m run by process `module_on[m]` only; the outputs combined as
/// the cluster's control combines its nodes'.
pub fn run_split(c: &Compiled, shards: usize, processes: usize, module_on: &[usize]) -> RunOutput {
    run_split_with(c, shards, processes, module_on, false).0
}

/// [`run_split`], with targeted spike routing when `routed` (rank 0 and the
/// modules' processes take every spike, as on a cluster); also the spikes each
/// process received from its peers.
pub fn run_split_with(
    c: &Compiled,
    shards: usize,
    processes: usize,
    module_on: &[usize],
    routed: bool,
) -> (RunOutput, Vec<u64>) {
    let (out, received, _) = split(c, shards, processes, module_on, routed, false);
    let received = received.iter().map(|r| r.0).collect();
    (out, received)
}

/// [`run_split`] with targeted routing and the two-tier exchange
/// (`neuropil_sim::tiers`), as a cluster runs it: the output, the exchanges each
/// process took part in, and the recorder's input of the next epoch (what its
/// checkpoint would hold).
pub fn run_split_tiered(c: &Compiled, shards: usize, processes: usize) -> (RunOutput, Vec<u64>, Exchange) {
    let (out, counts, pending) = split(c, shards, processes, &[], true, true);
    (out, counts.iter().map(|c| c.1).collect(), pending)
}

fn split(
    c: &Compiled,
    shards: usize,
    processes: usize,
    module_on: &[usize],
    routed: bool,
    tiered: bool,
) -> (RunOutput, Vec<(u64, u64)>, Exchange) {
    let net = &c.network;
    let links = neuropil_sim::local::links(processes);
    let shards_of: Vec<Vec<usize>> =
        (0..processes).map(|r| (0..shards).filter(|s| s % processes == r).collect()).collect();
    let everything: Vec<bool> = (0..processes).map(|r| r == 0 || module_on.contains(&r)).collect();
    let routes = neuropil_sim::routing::Routes::new(net, &shards_of, shards, &everything);
    let parts: Vec<(RunOutput, (u64, u64), Exchange)> = std::thread::scope(|scope| {
        let handles: Vec<_> = links
            .into_iter()
            .map(|mut link| {
                let (routes, shards_of) = (routes.clone(), &shards_of);
                scope.spawn(move || {
                    let rank = link.rank();
                    if routed {
                        link.set_routes(routes);
                    }
                    let mine: Vec<usize> = (0..shards).filter(|s| s % processes == rank).collect();
                    let mut start = embedded::build_some(net, &mine, shards, 1);
                    start.keep_modules(|m| module_on[m] == rank);
                    let cfg = RunConfig {
                        threads: 1,
                        shards: mine.len(),
                        steps: c.steps,
                        count_from_step: c.transient_steps,
                    };
                    let exchange_every =
                        if tiered { neuropil_sim::tiers::exchange_epochs(net, shards_of, shards) } else { 1 };
                    let remote = embedded::Remote { link: &mut link, fabric_in_loop: false, exchange_every };
                    let cancel = AtomicBool::new(false);
                    let (mut out, end) =
                        embedded::run_part(net, start, cfg, Some(remote), None, &|_| {}, &cancel).expect("runs");
                    if rank != 0 {
                        out.spikes.clear();
                    }
                    (out, (link.received(), link.exchanges()), end.pending)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("process")).collect()
    });
    let counts = parts.iter().map(|p| p.1).collect();
    let pending = parts.first().map(|p| p.2.clone()).unwrap_or_default();
    (embedded::combine_parts(parts.into_iter().map(|p| p.0).collect()), counts, pending)
}

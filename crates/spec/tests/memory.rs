//! The memory estimate that `neuropil validate`, the CLI's refusal and the
//! cluster's placement use, against the peak RSS measured for the same runs
//! (`neuropil run FILE -q`, summary.json `peak_rss_bytes`, 2 threads = 2 shards,
//! the 2-core AMD EPYC VM of docs/benchmarks.md, "Memory estimates"). The
//! allocator and the binary move the measured figures by a few per cent between
//! machines; the estimate must stay within 10 % of them, or 4 MiB for runs of a
//! few MiB (outputs' buffers and the runtimes' threads, which it leaves out).

mod common;
use common::*;

fn estimate(file: &str, set: &[&str]) -> f64 {
    let mut set = set.to_vec();
    set.push("run.threads=2");
    compile_example(file, &set).estimated_bytes as f64
}

#[test]
fn estimates_are_within_10_percent_or_4_mib_of_the_measured_peaks() {
    const MIB: f64 = (1u64 << 20) as f64;
    let cases: [(&str, &[&str], f64); 7] = [
        ("microcircuit.toml", &[], 2.87 * 1024.0 * MIB),
        ("microcircuit.toml", &["scaling.neurons=0.1", "scaling.synapses=0.1"], 41.5 * MIB),
        ("brunel.toml", &[], 160.7 * MIB),
        ("single_neuron.toml", &[], 9.4 * MIB),
        ("cerebellar_dni.toml", &[], 11.9 * MIB),
        // The multi-area model: 8,344 projections with long inter-area delays (many
        // delay sections per row); at 1 % its document outweighs its kernel.
        ("multi_area/ground.toml", &["scaling.neurons=0.01", "scaling.synapses=0.01"], 113.8 * MIB),
        ("multi_area/ground.toml", &["scaling.neurons=0.1", "scaling.synapses=0.1"], 2.709 * 1024.0 * MIB),
    ];
    for (file, set, measured) in cases {
        let e = estimate(file, set);
        let off = (e - measured).abs();
        assert!(
            off <= (0.1 * measured).max(4.0 * MIB),
            "{file} {set:?}: estimated {:.1} MiB, measured {:.1} MiB",
            e / MIB,
            measured / MIB
        );
    }
}

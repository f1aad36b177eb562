//! Cerebellar modules in the simulator: shard- and checkpoint-independent, the
//! delayed-feedback task learnt with a module and not without, bad specs refused.

mod common;
use common::*;
use neuropil_sim::embedded::{self, Checkpoint, RunConfig};
use std::sync::atomic::AtomicBool;

const CURRENT: [&str; 5] = [
    "run.duration_ms=800",
    "cerebellum[0].output=current",
    "cerebellum[0].output_population=cortex",
    "cerebellum[0].output_scale=400",
    "cerebellum[0].freeze_at_ms=500",
];

/// With a current output the module changes the spikes; spikes and the module's
/// trace are the same on 1, 2, 3 and 7 shards and across a checkpoint.
#[test]
fn module_is_independent_of_shards_and_resumes_bit_for_bit() {
    let c = compile_example("cerebellar_dni.toml", &CURRENT);
    let one = run(&c, 1, 1);
    assert_eq!(one.cerebellum.len(), 800, "one sample per ms");
    assert!(one.cerebellum.iter().any(|s| s.predicted != 0.0));
    for other in assert_same_on_shards(&c, &one) {
        assert_eq!(other.cerebellum, one.cerebellum);
    }
    let mut set = CURRENT.to_vec();
    set.push("cerebellum[0].remove_at_ms=0");
    let silent = run(&compile_example("cerebellar_dni.toml", &set), 1, 1);
    assert_ne!(silent.spike_hash, one.spike_hash, "the module's current reaches the cortex");
    assert!(silent.cerebellum.iter().all(|s| s.predicted == 0.0));

    let net = &c.network;
    let cancel = AtomicBool::new(false);
    let cfg = |steps| RunConfig { threads: 2, shards: 3, steps, count_from_step: 0 };
    let (first, cp) = embedded::run_from(net, embedded::build(net, 3, 2), cfg(c.steps / 2), &|_| {}, &cancel);
    let restored = Checkpoint::from_bytes(&cp.to_bytes(), net).expect("restores");
    let (second, _) = embedded::run_from(net, restored, cfg(c.steps - c.steps / 2), &|_| {}, &cancel);
    let joined = first.followed_by(second);
    assert_eq!(joined.spike_hash, one.spike_hash);
    assert_eq!(joined.cerebellum, one.cerebellum, "module state survives the checkpoint");
}

/// One instance of each module, anywhere: split over 3 processes with the module
/// on each of them in turn (its output reaches the others in the epoch's second
/// round), the spikes and the module's samples are the single process's. Also for
/// the dopamine output, and with two modules on different processes.
#[test]
fn a_module_placed_on_any_process_gives_the_embedded_run() {
    let c = compile_example("cerebellar_dni.toml", &CURRENT);
    let one = run(&c, 1, 1);
    for on in 0..3 {
        let split = run_split(&c, 3, 3, &[on]);
        assert_eq!(split.spike_hash, one.spike_hash, "module on process {on}");
        assert_eq!(split.cerebellum, one.cerebellum, "module on process {on}");
    }
    let c = compile_example("cerebellar_dopamine.toml", &["run.duration_ms=300"]);
    let one = run(&c, 1, 1);
    let split = run_split(&c, 4, 2, &[1]);
    assert_eq!((split.spike_hash, &split.cerebellum), (one.spike_hash, &one.cerebellum), "dopamine");
    assert_eq!(split.weights, one.weights, "dopamine-modulated weights");
    // Two modules on two processes (the second a copy of the first under
    // another name, sampling at another interval).
    let two = std::fs::read_to_string(root().join("examples/cerebellar_dni.toml")).unwrap();
    let block = two.find("[[cerebellum]]").expect("a module");
    let module = two[block..].split("\n\n").next().unwrap();
    let module =
        module.replacen("name = \"cb\"", "name = \"cb2\"", 1).replacen("interval_ms = 1.0", "interval_ms = 3.0", 1);
    let text = format!("{two}\n{module}\n");
    let c = compile_text(&text, &CURRENT);
    assert_eq!(c.network.cerebella.len(), 2);
    let one = run(&c, 1, 1);
    let split = run_split(&c, 3, 3, &[2, 1]);
    assert_eq!((split.spike_hash, &split.cerebellum), (one.spike_hash, &one.cerebellum), "two modules");
}

fn late_mse(out: &embedded::RunOutput) -> f64 {
    let tail = &out.cerebellum[out.cerebellum.len() * 9 / 10..];
    tail.iter().map(|s| s.error * s.error).sum::<f64>() / tail.len() as f64
}

/// The example's task: a readout whose feedback arrives 50 ms late learns it with
/// the module (third factor) and fails with its eligibility trace alone; the
/// module's predictions correlate with the feedback that arrives later.
#[test]
fn module_rescues_learning_from_delayed_feedback() {
    let with = run(&compile_example("cerebellar_dni.toml", &[]), 2, 2);
    let without = run(&compile_example("cerebellar_dni.toml", &["cerebellum[0].remove_at_ms=0"]), 2, 2);
    let first = &with.cerebellum[..with.cerebellum.len() / 10];
    let early = first.iter().map(|s| s.error * s.error).sum::<f64>() / first.len() as f64;
    let (w, wo) = (late_mse(&with), late_mse(&without));
    assert!(w < 0.25 * early, "with the module the error falls: {early} -> {w}");
    assert!(w < 0.5 * wo, "with the module {w}, without {wo}");
    let pairs: Vec<(f64, f64)> = with.cerebellum.iter().map(|s| (s.predicted, s.error)).collect();
    let n = pairs.len() as f64;
    let (mx, my) = (pairs.iter().map(|p| p.0).sum::<f64>() / n, pairs.iter().map(|p| p.1).sum::<f64>() / n);
    let cov: f64 = pairs.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let vx: f64 = pairs.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let vy: f64 = pairs.iter().map(|p| (p.1 - my).powi(2)).sum();
    let r = cov / (vx * vy).sqrt();
    assert!(r > 0.4, "prediction-feedback correlation {r}");
}

/// The module as the dopamine of real stdp_dopamine_synapse synapses: the same on
/// 1 and 3 shards (every shard applies the same dopamine impulses), and the output
/// rate follows its target better than with the late true feedback as dopamine.
#[test]
fn module_as_dopamine_drives_plastic_synapses_identically_on_any_shards() {
    let c = compile_example("cerebellar_dopamine.toml", &[]);
    let one = run(&c, 1, 1);
    let three = run(&c, 2, 3);
    assert_eq!(one.spike_hash, three.spike_hash);
    assert_eq!(one.cerebellum, three.cerebellum);
    let without = run(&compile_example("cerebellar_dopamine.toml", &["cerebellum[0].remove_at_ms=0"]), 2, 2);
    assert_ne!(without.spike_hash, one.spike_hash, "the dopamine reaches the synapses");
    let (w, wo) = (late_mse(&one), late_mse(&without));
    assert!(w < 0.6 * wo, "with the module {w}, with late dopamine {wo}");
}

fn errors(set: &[&str]) -> Vec<(String, String)> {
    let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
    let exp = neuropil_spec::load(&root().join("examples/cerebellar_dni.toml"), &set).expect("loads");
    match neuropil_spec::compile(&exp, &neuropil_spec::Limits::default()) {
        Ok(_) => panic!("{set:?} compiled"),
        Err(e) => e.fields().into_iter().map(|f| (f.path, f.message)).collect(),
    }
}

#[test]
fn bad_module_specs_are_refused_naming_the_field() {
    let cases: [(&[&str], &str, &str); 10] = [
        (&["cerebellum[0].mossy_fibres=[\"cortx\"]"], "cerebellum[0].mossy_fibres[0]", "no population named \"cortx\""),
        (&["cerebellum[0].readout=\"thalamus\""], "cerebellum[0].readout", "no population named \"thalamus\""),
        (&["cerebellum[0].granule=[200, 0]"], "cerebellum[0].granule[1]", "between 1 and 100000"),
        (&["cerebellum[0].granule=[]"], "cerebellum[0].granule", "at least one granule layer"),
        (&["cerebellum[0].feedback_delay_ms=-5"], "cerebellum[0].feedback_delay_ms", "≥ 0 ms"),
        (&["cerebellum[0].fan_in=500"], "cerebellum[0].fan_in", "more than the 200 mossy fibres"),
        (&["cerebellum[0].output=\"current\""], "cerebellum[0].output_population", "needs a target population"),
        (
            &["cerebellum[0].output=\"dopamine\"", "cerebellum[0].output_population=\"cortex\""],
            "cerebellum[0].output_population",
            "no stdp_dopamine_synapse projection targets \"cortex\"",
        ),
        (&["cerebellum[0].readout_kind=\"rate\""], "cerebellum[0].readout_kind", "use output = \"dopamine\""),
        (&["cerebellum[0].output=\"serotonin\""], "cerebellum[0].output", "use third_factor, current or dopamine"),
    ];
    for (set, path, message) in cases {
        let errs = errors(set);
        assert!(
            errs.iter().any(|(p, m)| p == path && m.contains(message)),
            "{set:?}: expected {path}: …{message}…, got {errs:?}"
        );
    }
    let errs = errors(&["cerebellum[0].feedback_delay_ms=5000"]);
    assert!(errs.iter().any(|(p, m)| p == "cerebellum[0].feedback_delay_ms" && m.contains("longer than the run")));
    // A module too big for the memory on offer is refused before anything is built.
    let set = vec!["cerebellum[0].granule=[100000, 100000]".to_string()];
    let exp = neuropil_spec::load(&root().join("examples/cerebellar_dni.toml"), &set).expect("loads");
    let limits = neuropil_spec::Limits { memory_bytes: Some(8 << 30) };
    let e = match neuropil_spec::compile(&exp, &limits) {
        Ok(_) => panic!("a 1e10-weight module fits in 8 GiB?"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("GiB"), "{e}");
    let errs = errors(&["cerebellum[0].remove_at_ms=-1", "cerebellum[0].tau_ms=0"]);
    assert!(errs.iter().any(|(p, _)| p == "cerebellum[0].remove_at_ms"), "{errs:?}");
    assert!(errs.iter().any(|(p, _)| p == "cerebellum[0].tau_ms"), "{errs:?}");
}

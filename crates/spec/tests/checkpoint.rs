//! Checkpoints: a run stopped, serialised, restored and continued gives exactly the
//! spikes, samples and weights of the run that never stopped.

mod common;
use common::*;
use neuropil_sim::embedded::{self, Checkpoint, RunConfig};
use std::sync::atomic::AtomicBool;

fn check_resume(c: &neuropil_spec::Compiled, shards: usize) {
    let net = &c.network;
    let whole = run(c, 2, shards);
    let half = c.steps / 2;
    let cancel = AtomicBool::new(false);
    let cfg = |steps| RunConfig { threads: 2, shards, steps, count_from_step: c.transient_steps };
    let start = embedded::build(net, shards, 2);
    let (first, cp) = embedded::run_from(net, start, cfg(half), &|_| {}, &cancel);
    let bytes = cp.to_bytes();
    let restored = Checkpoint::from_bytes(&bytes, net).expect("restores");
    assert_eq!(restored.step(), half);
    let (second, _) = embedded::run_from(net, restored, cfg(c.steps - half), &|_| {}, &cancel);
    let mut spikes = first.spikes.clone();
    spikes.extend(second.spikes.iter().copied());
    assert_eq!(spikes, whole.spikes, "spikes across the checkpoint");
    let mut samples = first.samples.clone();
    samples.extend(second.samples.iter().copied());
    assert_eq!(samples, whole.samples, "samples across the checkpoint");
    assert_eq!(second.weights, whole.weights, "final plastic weights");
}

#[test]
fn microcircuit_resumes_bit_for_bit() {
    let c = compile_example(
        "microcircuit.toml",
        &["scaling.neurons=0.1", "scaling.synapses=0.1", "run.duration_ms=300", "run.transient_ms=0"],
    );
    check_resume(&c, 3);
}

#[test]
fn plastic_astrocyte_network_resumes_bit_for_bit() {
    let c = compile_example(
        "astrocyte_brunel.toml",
        &[
            "populations.E.size=400",
            "populations.I.size=100",
            "populations.A.size=500",
            "populations.A.params.IP3_0=1.0",
            "populations.A.initial={ IP3 = 1.0, Ca_astro = 0.5 }",
            "projections[0].third.gliotransmission=1.0",
            "run.duration_ms=200",
            "run.transient_ms=0",
        ],
    );
    check_resume(&c, 2);
    // The STDP example has plastic weights and post histories in flight.
    let stdp = compile_example("stdp_pair.toml", &[]);
    check_resume(&stdp, 2);
}

#[test]
fn checkpoints_refuse_another_network() {
    let a = compile_example("brunel.toml", &["populations.E.size=100", "populations.I.size=25"]);
    let b = compile_example("brunel.toml", &["populations.E.size=100", "populations.I.size=25", "run.seed=99"]);
    let cp = embedded::build(&a.network, 2, 1);
    let err = Checkpoint::from_bytes(&cp.to_bytes(), &b.network).unwrap_err();
    assert!(err.to_string().contains("different network"), "{err}");
    let err = Checkpoint::from_bytes(b"garbage", &a.network).unwrap_err();
    assert!(err.to_string().contains("not a neuropil checkpoint"), "{err}");
}

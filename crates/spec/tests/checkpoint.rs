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

/// A grouped layout (areas on shards of their own) restores its layout from the
/// network, not from the checkpoint's bytes, and resumes bit for bit.
#[test]
fn areas_on_their_own_shards_resume_bit_for_bit() {
    let set = [
        "scaling.neurons=0.01",
        "scaling.synapses=0.01",
        "run.duration_ms=60",
        "run.transient_ms=0",
        "run.layout=groups",
    ];
    let c = compile_example("multi_area/ground.toml", &set);
    check_resume(&c, 5);
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

/// Homeostatic synaptic scaling changes the static weights: they then travel in
/// the checkpoint (the rest of the static connectivity is rebuilt).
#[test]
fn homeostatic_scaling_resumes_bit_for_bit() {
    let set: Vec<&str> =
        HOMEOSTATIC_BRUNEL.iter().copied().chain(["run.duration_ms=300", "run.transient_ms=0"]).collect();
    check_resume(&compile_example("brunel.toml", &set), 3);
}

/// A checkpoint holds the dynamic state only: for Brunel's network (12,500
/// neurons, 15.6 M static synapses) a few per cent of the synapses' memory, where
/// it held all of it before.
#[test]
fn checkpoints_leave_the_static_connectivity_out() {
    let c = compile_example("brunel.toml", &["run.duration_ms=20", "run.transient_ms=0"]);
    let net = &c.network;
    let cancel = AtomicBool::new(false);
    let cfg = RunConfig { threads: 2, shards: 2, steps: c.steps, count_from_step: 0 };
    let (out, cp) = embedded::run_from(net, embedded::build(net, 2, 2), cfg, &|_| {}, &cancel);
    let bytes = cp.to_bytes().len() as f64;
    let synapses = out.stats.synapse_bytes as f64;
    assert!(out.stats.synapses > 15_000_000, "{}", out.stats.synapses);
    assert!(bytes < 0.05 * synapses, "checkpoint {bytes} B for {synapses} B of synapses");
}

#[test]
fn damaged_checkpoints_are_refused_with_a_reason() {
    let c = compile_example("brunel.toml", &["populations.E.size=100", "populations.I.size=25"]);
    let bytes = embedded::build(&c.network, 2, 1).to_bytes();
    let mut flipped = bytes.clone();
    let at = flipped.len() / 2;
    flipped[at] ^= 0x10;
    let err = Checkpoint::from_bytes(&flipped, &c.network).unwrap_err();
    assert!(err.to_string().contains("damaged") && err.to_string().contains("checksum"), "{err}");
    let err = Checkpoint::from_bytes(&bytes[..bytes.len() - 7], &c.network).unwrap_err();
    assert!(err.to_string().contains("damaged"), "{err}");
    let mut newer = bytes.clone();
    newer[7] = 0x63;
    let err = Checkpoint::from_bytes(&newer, &c.network).unwrap_err();
    assert!(err.to_string().contains("format version"), "{err}");
    assert!(Checkpoint::from_bytes(&bytes, &c.network).is_ok());
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

//! Homeostasis: intrinsic plasticity settles a neuron at the target rate with the
//! threshold the LIF rate formula predicts; synaptic scaling brings a driven neuron
//! to its target; both keep networks partition independent.

mod common;
use common::*;

fn rate_after(out: &neuropil_sim::embedded::RunOutput, gid: u32, from_step: u64, steps: u64) -> f64 {
    let n = out.spikes.iter().filter(|s| s.gid == gid && s.step >= from_step).count();
    n as f64 / ((steps - from_step) as f64 * 1e-4)
}

#[test]
fn intrinsic_plasticity_finds_the_threshold_for_the_target_rate() {
    // iaf_psc_exp with I_e = 500 pA fires at 63 Hz; the threshold must rise until
    // 20 Hz: theta* = R I (1 - exp(-(1/r - t_ref) / tau_m)) above E_L.
    let c = compile_text(
        r#"
[run]
duration_ms = 100000.0
[[populations]]
name = "n"
size = 1
model = "iaf_psc_exp"
params = { C_m = 250.0, tau_m = 10.0, t_ref = 2.0, E_L = -65.0, V_th = -50.0, V_reset = -65.0, I_e = 500.0 }
initial = { V_m = -65.0 }
homeostasis = { target_rate_hz = 20.0, tau_rate_ms = 1000.0, threshold_rate = 0.05 }
[[recorders]]
kind = "spike_recorder"
[[recorders]]
kind = "multimeter"
population = "n"
variables = ["V_th"]
interval_ms = 100.0
"#,
        &[],
    );
    let out = run(&c, 1, 1);
    let rate = rate_after(&out, 0, 800_000, c.steps);
    assert!((rate - 20.0).abs() < 0.5, "rate over the last 20 s: {rate} Hz");
    let theta_star = -65.0 + 20.0 * (1.0 - (-(50.0 - 2.0) / 10.0f64).exp());
    let late: Vec<f64> = out.samples.iter().filter(|s| s.step >= 800_000).map(|s| s.value).collect();
    let mean = late.iter().sum::<f64>() / late.len() as f64;
    assert!((mean - theta_star).abs() < 0.1, "V_th {mean:.3} mV vs analytic {theta_star:.3} mV");
}

#[test]
fn synaptic_scaling_brings_a_driven_neuron_to_its_target() {
    let text = |scaling: f64| {
        format!(
            r#"
[run]
duration_ms = 60000.0
seed = 2
[[populations]]
name = "in"
size = 200
model = "parrot_neuron"
[[populations]]
name = "n"
size = 2
model = "iaf_psc_exp"
homeostasis = {{ target_rate_hz = 5.0, tau_rate_ms = 1000.0, scaling_rate = {scaling}, scaling_interval_ms = 100.0 }}
[[stimuli]]
kind = "poisson_generator"
target = "in"
rate_hz = 10.0
[[projections]]
source = "in"
target = "n"
conn = {{ rule = "all_to_all" }}
syn = {{ weight = 120.0, delay_ms = 1.0 }}
[[recorders]]
kind = "spike_recorder"
populations = ["n"]
"#
        )
    };
    let free = run(&compile_text(&text(0.0), &[]), 1, 1);
    let c = compile_text(&text(0.02), &[]);
    let scaled = run(&c, 1, 1);
    for gid in [200, 201] {
        let before = rate_after(&free, gid, 400_000, c.steps);
        let after = rate_after(&scaled, gid, 400_000, c.steps);
        assert!(before > 15.0, "the unscaled neuron fires at {before} Hz");
        assert!((after - 5.0).abs() < 1.5, "with scaling: {after} Hz (target 5 Hz, {before} Hz without)");
    }
}

#[test]
fn homeostatic_network_is_partition_independent() {
    let text = std::fs::read_to_string(root().join("examples/brunel.toml")).unwrap();
    let set: Vec<&str> = HOMEOSTATIC_BRUNEL.iter().copied().chain(["run.duration_ms=400"]).collect();
    let c = compile_text(&text, &set);
    let one = run(&c, 1, 1);
    assert!(one.spike_counts[0] > 1000, "{:?}", one.spike_counts);
    assert_same_on_shards(&c, &one);
}

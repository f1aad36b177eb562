//! `astrocyte_lr_1994` against NEST's reference data and the reference figures of
//! ../shared/reference/astrocyte/README.md.

mod common;
use common::*;

fn run_astrocyte(
    extra: &str,
    duration_ms: f64,
    interval_ms: f64,
    set: &[&str],
) -> (neuropil_spec::Compiled, neuropil_sim::embedded::RunOutput) {
    let text = format!(
        r#"
[run]
duration_ms = {duration_ms}
[[populations]]
name = "astro"
size = 1
model = "astrocyte_lr_1994"
{extra}
[[recorders]]
kind = "multimeter"
population = "astro"
variables = ["IP3", "Ca_astro", "h_IP3R", "SIC"]
interval_ms = {interval_ms}
"#
    );
    let c = compile_text(&text, set);
    let out = run(&c, 1, 1);
    (c, out)
}

/// Values of variable `var` in step order.
fn series(out: &neuropil_sim::embedded::RunOutput, var: u16) -> Vec<(u64, f64)> {
    out.samples.iter().filter(|s| s.var == var).map(|s| (s.step, s.value)).collect()
}

#[test]
fn reproduces_nest_reference_trace() {
    // Initial IP3 = Ca = h = 1; one spike of weight 1 arriving in the step ending at 10 ms.
    let extra = r#"initial = { IP3 = 1.0, Ca_astro = 1.0, h_IP3R = 1.0 }
[[stimuli]]
kind = "spike_generator"
target = "astro"
spike_times_ms = [9.9]
weight = 1.0
delay_ms = 0.1"#;
    let (_, out) = run_astrocyte(extra, 100.0, 0.1, &[]);
    let reference = numbers(&reference("astrocyte/test_astrocyte.dat"));
    assert_eq!(reference.len(), 999);
    let cols = [series(&out, 0), series(&out, 1), series(&out, 2)];
    let mut worst = 0.0f64;
    for (k, row) in reference.iter().enumerate() {
        let step = (row[0] / 0.1).round() as u64 - 1;
        for (c, col) in cols.iter().enumerate() {
            let (s, v) = col[k];
            assert_eq!(s, step);
            let rel = ((v - row[c + 1]) / row[c + 1]).abs();
            worst = worst.max(rel);
            assert!(rel < 1e-6, "t = {} ms, column {}: {v} vs NEST {}", row[0], c + 1, row[c + 1]);
        }
    }
    eprintln!("max relative deviation from NEST's reference: {worst:.2e}");
}

#[test]
fn rests_at_the_reference_state() {
    let (_, out) = run_astrocyte("", 200_000.0, 1000.0, &[]);
    let last = |v| series(&out, v).last().unwrap().1;
    assert!((last(0) - 0.160).abs() < 5e-4, "IP3 {}", last(0));
    assert!((last(1) - 0.0722).abs() < 5e-4, "Ca {}", last(1));
    assert!((last(2) - 0.7924).abs() < 5e-4, "h {}", last(2));
    assert_eq!(last(3), 0.0);
}

/// With IP3 held fixed, Ca oscillates for IP3 ≈ 0.4–0.6 µM (period ≈ 12.8 s at
/// 0.4, ≈ 11.5 s at 0.5, ≈ 11.0 s at 0.6) and settles to a steady state at 0.3 and
/// 0.8 µM.
#[test]
fn calcium_oscillates_only_inside_the_ip3_window() {
    for (ip3, period) in [(0.3, None), (0.4, Some(12.8)), (0.5, Some(11.5)), (0.6, Some(11.0)), (0.8, None)] {
        let extra = format!("params = {{ IP3_0 = {ip3} }}\ninitial = {{ IP3 = {ip3} }}");
        // 200 s; look at the last 60 s (damped oscillations outside the window have
        // settled by then).
        let (_, out) = run_astrocyte(&extra, 200_000.0, 10.0, &[]);
        let ca: Vec<(u64, f64)> = series(&out, 1).into_iter().filter(|(s, _)| *s >= 1_400_000).collect();
        let (lo, hi) = ca.iter().fold((f64::MAX, f64::MIN), |(a, b), (_, v)| (a.min(*v), b.max(*v)));
        match period {
            None => assert!(hi - lo < 1e-3, "IP3 {ip3}: Ca should be steady, range {lo}..{hi}"),
            Some(p) => {
                assert!(hi - lo > 0.1, "IP3 {ip3}: Ca should oscillate, range {lo}..{hi}");
                // Period from upward crossings of the mid level.
                let mid = 0.5 * (lo + hi);
                let ups: Vec<f64> =
                    ca.windows(2).filter(|w| w[0].1 < mid && w[1].1 >= mid).map(|w| w[1].0 as f64 * 1e-4).collect();
                let measured = (ups[ups.len() - 1] - ups[0]) / (ups.len() - 1) as f64;
                assert!((measured - p).abs() / p < 0.05, "IP3 {ip3}: period {measured:.2} s vs {p} s");
                if ip3 == 0.4 {
                    assert!((lo - 0.105).abs() < 0.01 && (hi - 0.313).abs() < 0.01, "range {lo}..{hi}");
                }
            }
        }
    }
}

/// NEST's SIC transfer test: an astrocyte at Ca = 0.2 µM feeds one
/// aeif_cond_alpha_astro through a 1 ms delay; I_SIC(t) = ln(1000·Ca(t − 1 ms) − 196.69)
/// where the argument exceeds 1, else 0.
#[test]
fn slow_inward_current_reaches_the_neuron_after_the_delay() {
    let text = r#"
[run]
duration_ms = 1000.0
[[populations]]
name = "astro"
size = 1
model = "astrocyte_lr_1994"
initial = { Ca_astro = 0.2 }
[[populations]]
name = "neuron"
size = 1
model = "aeif_cond_alpha_astro"
[[projections]]
source = "astro"
target = "neuron"
conn = { rule = "all_to_all" }
syn = { model = "sic_connection", weight = 1.0, delay_ms = 1.0 }
[[recorders]]
kind = "multimeter"
population = "astro"
variables = ["Ca_astro"]
[[recorders]]
kind = "multimeter"
population = "neuron"
variables = ["I_SIC"]
"#;
    for shards in [1, 2] {
        let c = compile_text(text, &[]);
        let out = run(&c, 2, shards);
        let ca: Vec<f64> = out.samples.iter().filter(|s| s.gid == 0).map(|s| s.value).collect();
        let sic: Vec<f64> = out.samples.iter().filter(|s| s.gid == 1).map(|s| s.value).collect();
        assert_eq!(ca.len(), 10_000);
        let mut nonzero = 0;
        for k in 10..sic.len() {
            let x = 1000.0 * ca[k - 10] - 196.69;
            let expected = if x > 1.0 { x.ln() } else { 0.0 };
            assert!((sic[k] - expected).abs() < 1e-9, "step {k}: I_SIC {} vs {expected}", sic[k]);
            nonzero += usize::from(expected > 0.0);
        }
        assert!(nonzero > 100, "the SIC must be on for a while: {nonzero} steps");
        assert!(sic[..10].iter().all(|&v| v == 0.0));
    }
}

/// Neurons, astrocytes and SIC feedback: the same spikes and traces on any number
/// of shards.
#[test]
fn neuron_astrocyte_network_is_partition_independent() {
    let text = r#"
[run]
duration_ms = 300.0
seed = 4
[[populations]]
name = "E"
size = 200
model = "aeif_cond_alpha_astro"
params = { t_ref = 2.0 }
[[populations]]
name = "A"
size = 100
model = "astrocyte_lr_1994"
params = { delta_IP3 = 0.5 }
initial = { Ca_astro = { dist = "uniform", low = 0.1, high = 0.3 } }
[[stimuli]]
kind = "poisson_generator"
target = "E"
rate_hz = 6000.0
weight = 4.0
[[projections]]
source = "E"
target = "E"
conn = { rule = "pairwise_bernoulli", p = 0.1 }
syn = { weight = 1.0, delay_ms = 1.5 }
[[projections]]
source = "E"
target = "A"
conn = { rule = "pairwise_bernoulli", p = 0.1 }
syn = { weight = 1.0, delay_ms = 1.0 }
[[projections]]
source = "A"
target = "E"
conn = { rule = "fixed_indegree", indegree = 2 }
syn = { model = "sic_connection", weight = 5.0, delay_ms = 1.0 }
[[recorders]]
kind = "spike_recorder"
[[recorders]]
kind = "multimeter"
population = "A"
neurons = [0, 7, 55]
variables = ["IP3", "Ca_astro", "SIC"]
interval_ms = 1.0
[[recorders]]
kind = "multimeter"
population = "E"
neurons = [3, 150]
variables = ["V_m", "I_SIC"]
interval_ms = 1.0
"#;
    let c = compile_text(text, &[]);
    let one = run(&c, 1, 1);
    assert!(one.spike_counts[0] > 100, "{:?}", one.spike_counts);
    assert!(one.samples.iter().any(|s| s.var == 4 && s.value > 0.0), "some SIC must reach the neurons");
    assert_same_on_shards(&c, &one);
}

/// A tripartite network (neurons, astrocytes joining excitatory synapses, SIC
/// feedback): the same spikes and traces on any number of shards.
#[test]
fn tripartite_network_is_partition_independent() {
    let text = std::fs::read_to_string(root().join("examples/astrocyte_brunel.toml")).unwrap();
    let set = [
        "populations.E.size=400",
        "populations.I.size=100",
        "populations.A.size=500",
        "populations.A.params.delta_IP3=0.5",
        "run.duration_ms=200",
    ];
    let c = compile_text(&text, &set);
    let one = run(&c, 1, 1);
    assert!(one.spike_counts[0] > 100, "{:?}", one.spike_counts);
    assert!(one.samples.iter().any(|s| s.gid >= 500 && s.var == 0 && s.value > 0.2), "spikes must raise some IP3");
    for other in assert_same_on_shards(&c, &one) {
        assert_eq!(other.stats.synapses, one.stats.synapses);
    }
}

/// Gliotransmission: the primary synapses covered by astrocytes with raised calcium
/// act more strongly (the targets fire more), and the network stays partition
/// independent.
#[test]
fn gliotransmission_scales_covered_synapses() {
    let text = std::fs::read_to_string(root().join("examples/astrocyte_brunel.toml")).unwrap();
    let base = [
        "populations.E.size=400",
        "populations.I.size=100",
        "populations.A.size=500",
        // Calcium held high: IP3 clamped inside the oscillation window's upper side.
        "populations.A.params.IP3_0=1.0",
        "populations.A.initial={ IP3 = 1.0, Ca_astro = 0.5 }",
        "run.duration_ms=300",
    ];
    let compile = |gain: f64| {
        let g0 = format!("projections[0].third.gliotransmission={gain}");
        let g1 = format!("projections[1].third.gliotransmission={gain}");
        let mut set: Vec<&str> = base.to_vec();
        set.extend([g0.as_str(), g1.as_str()]);
        compile_text(&text, &set)
    };
    let off = run(&compile(0.0), 1, 1);
    let c = compile(2.0);
    let on = run(&c, 1, 1);
    assert!(
        on.spike_counts[0] as f64 > 1.2 * off.spike_counts[0] as f64,
        "gliotransmission should raise E's activity: {:?} vs {:?}",
        on.spike_counts,
        off.spike_counts
    );
    assert_same_on_shards(&c, &on);
}

//! STDP windows measured by a pairing protocol against the analytic curves of each
//! rule (to 1e-9 relative), and plastic networks staying partition independent.

mod common;
use neuropil_sim::embedded::RunOutput;

const D_MS: f64 = 1.0; // synaptic (dendritic) delay
const W0: f64 = 1.0;
const WMAX: f64 = 2.0;
const TAU: f64 = 20.0;

/// One pair per Δ: pre parrot i spikes at 100 ms and again at 1100 ms (the trigger
/// that applies pending potentiation; its own depression is e^-47 small); post
/// neuron i is forced to spike at 100 ms + Δ. STDP synapse pre i → post i.
fn pairing_experiment(model: &str, mu: f64, deltas: &[f64], extra_post: Option<f64>) -> String {
    let n = deltas.len();
    let mut t = format!(
        r#"
[run]
duration_ms = 1200.0
seed = 1
[[populations]]
name = "pre"
size = {n}
model = "parrot_neuron"
[[populations]]
name = "post"
size = {n}
model = "iaf_psc_delta"
params = {{ E_L = -70.0, V_reset = -70.0, V_th = -55.0, t_ref = 0.1 }}
[[projections]]
source = "pre"
target = "post"
conn = {{ rule = "one_to_one" }}
syn = {{ model = "{model}", weight = {W0}, delay_ms = {D_MS}, params = {{ tau_plus = {TAU}, tau_minus = {TAU}, lambda = 0.01, alpha = 1.0, mu_plus = {mu}, mu_minus = {mu}, Wmax = {WMAX} }} }}
[[recorders]]
kind = "spike_recorder"
[[recorders]]
kind = "weight_recorder"
"#
    );
    for (i, d) in deltas.iter().enumerate() {
        t += &format!(
            "[[stimuli]]\nkind = \"spike_generator\"\ntarget = \"pre\"\nneurons = [{i}]\nspike_times_ms = [100.0, 1100.0]\ndelay_ms = 0.1\n"
        );
        let mut times = vec![100.0 + d];
        if let Some(e) = extra_post {
            times.push(100.0 + d + e);
        }
        let times: Vec<String> = times.iter().map(|x| format!("{x:.1}")).collect();
        t += &format!(
            "[[stimuli]]\nkind = \"spike_generator\"\ntarget = \"post\"\nneurons = [{i}]\nspike_times_ms = [{}]\nweight = 100.0\ndelay_ms = 0.1\n",
            times.join(", ")
        );
    }
    t
}

fn run_text(text: &str, shards: usize) -> (neuropil_spec::Compiled, RunOutput) {
    let c = common::compile_text(text, &[]);
    let out = common::run(&c, 2, shards);
    (c, out)
}

/// The same spikes and final weights as `one` on 2, 3 and 7 shards.
fn assert_same_on_any_partition(text: &str, one: &RunOutput) {
    for shards in [2, 3, 7] {
        let (_, other) = run_text(text, shards);
        assert_eq!(other.spike_hash, one.spike_hash, "{shards} shards");
        assert_eq!(other.weights, one.weights, "{shards} shards");
    }
}

/// (Δt as the rule sees it = t_post + d − t_pre, final weight) per pair.
fn measured(c: &neuropil_spec::Compiled, out: &RunOutput) -> Vec<(f64, f64)> {
    let n = c.network.populations[0].size;
    let dt = c.network.dt_ms;
    let first_spike =
        |gid: u32| out.spikes.iter().find(|s| s.gid == gid).map(|s| (s.step + 1) as f64 * dt).expect("neuron spiked");
    (0..n)
        .map(|i| {
            let t_pre = first_spike(i);
            let t_post = first_spike(n + i);
            let w = out.weights.iter().find(|w| w.source == i).expect("weight").weight;
            (t_post + D_MS - t_pre, w)
        })
        .collect()
}

fn check(model: &str, mu: f64, expected_dw: impl Fn(f64) -> f64) {
    let deltas: Vec<f64> = (-60..=60).map(|k| k as f64 * 1.0).collect();
    let (c, out) = run_text(&pairing_experiment(model, mu, &deltas, None), 2);
    let pairs = measured(&c, &out);
    assert_eq!(pairs.len(), deltas.len());
    let mut seen_pos = false;
    let mut seen_neg = false;
    for (dt, w) in pairs {
        let dw = w - W0;
        let e = expected_dw(dt);
        if e == 0.0 {
            assert!(dw.abs() < 1e-15, "{model} Δt={dt}: Δw {dw} should be 0");
        } else {
            assert!(((dw - e) / e).abs() < 1e-9, "{model} μ={mu} Δt={dt}: Δw {dw} vs analytic {e}");
        }
        seen_pos |= dt > 0.0;
        seen_neg |= dt < 0.0;
    }
    assert!(seen_pos && seen_neg);
}

#[test]
fn additive_window_matches_analytic_curve() {
    // Δw = λ Wmax e^{-Δt/τ+} (Δt > 0), −α λ Wmax e^{Δt/τ−} (Δt < 0).
    check("stdp_synapse", 0.0, |dt| {
        if dt > 0.0 {
            0.01 * WMAX * (-dt / TAU).exp()
        } else if dt < 0.0 {
            -0.01 * WMAX * (dt / TAU).exp()
        } else {
            0.0
        }
    });
}

#[test]
fn multiplicative_window_matches_analytic_curve() {
    // Gütig et al. 2003 with μ = 1: Δw = λ (Wmax − w) e^{-Δt/τ+}, −α λ w e^{Δt/τ−}.
    check("stdp_synapse", 1.0, |dt| {
        if dt > 0.0 {
            0.01 * (WMAX - W0) * (-dt / TAU).exp()
        } else if dt < 0.0 {
            -0.01 * W0 * (dt / TAU).exp()
        } else {
            0.0
        }
    });
}

#[test]
fn nearest_pairing_window_matches_analytic_curve() {
    check("stdp_nn_symm_synapse", 0.0, |dt| {
        if dt > 0.0 {
            0.01 * WMAX * (-dt / TAU).exp()
        } else if dt < 0.0 {
            -0.01 * WMAX * (dt / TAU).exp()
        } else {
            0.0
        }
    });
}

#[test]
fn symmetric_window_potentiates_both_orders() {
    check("stdp_symmetric_synapse", 0.0, |dt| if dt == 0.0 { 0.0 } else { 0.01 * WMAX * (-dt.abs() / TAU).exp() });
}

/// Two post spikes before a pre spike: all-to-all depression sums both, nearest
/// pairing uses the later one only.
#[test]
fn pairing_schemes_differ_as_defined() {
    for (model, both) in [("stdp_synapse", true), ("stdp_nn_symm_synapse", false)] {
        // Post at 100 − 20 and 100 − 20 + 10 ms; pre at 100 ms.
        let (c, out) = run_text(&pairing_experiment(model, 0.0, &[-20.0], Some(10.0)), 1);
        let dt = c.network.dt_ms;
        let post: Vec<f64> = out.spikes.iter().filter(|s| s.gid == 1).map(|s| (s.step + 1) as f64 * dt).collect();
        let t_pre = out.spikes.iter().find(|s| s.gid == 0).map(|s| (s.step + 1) as f64 * dt).unwrap();
        let k: f64 = post
            .iter()
            .filter(|&&tp| tp + D_MS < t_pre)
            .map(|&tp| (-(t_pre - D_MS - tp) / TAU).exp())
            .fold(0.0, |acc, x| if both { acc + x } else { x });
        let expected = -0.01 * WMAX * k;
        let dw = out.weights[0].weight - W0;
        assert!(((dw - expected) / expected).abs() < 1e-9, "{model}: Δw {dw} vs {expected}");
    }
}

/// A recurrent network with STDP gives the same spikes and final weights on any
/// number of shards.
#[test]
fn plastic_network_is_partition_independent() {
    let text = r#"
[run]
duration_ms = 400.0
seed = 9
[[populations]]
name = "E"
size = 400
model = "iaf_psc_delta"
params = { C_m = 1.0, tau_m = 20.0, t_ref = 2.0, E_L = 0.0, V_reset = 10.0, V_th = 20.0 }
initial = { V_m = { dist = "uniform", low = 0.0, high = 20.0 } }
[[populations]]
name = "I"
size = 100
model = "iaf_psc_delta"
params = { C_m = 1.0, tau_m = 20.0, t_ref = 2.0, E_L = 0.0, V_reset = 10.0, V_th = 20.0 }
[[stimuli]]
kind = "poisson_generator"
target = "E"
rate_hz = 30000.0
weight = 0.1
[[stimuli]]
kind = "poisson_generator"
target = "I"
rate_hz = 30000.0
weight = 0.1
[[projections]]
source = "E"
target = "E"
conn = { rule = "fixed_indegree", indegree = 40 }
syn = { model = "stdp_synapse", weight = { dist = "uniform", low = 0.1, high = 0.3 }, delay_ms = { dist = "uniform", low = 0.5, high = 3.0 }, params = { Wmax = 0.5, lambda = 0.05 } }
[[projections]]
source = "E"
target = "I"
conn = { rule = "fixed_indegree", indegree = 40 }
syn = { model = "tsodyks2_synapse", weight = 0.4, delay_ms = 1.0, params = { U = 0.2, tau_fac = 100.0 } }
[[projections]]
source = "I"
target = "E"
conn = { rule = "fixed_indegree", indegree = 10 }
syn = { weight = -1.0, delay_ms = 1.5 }
[[recorders]]
kind = "weight_recorder"
"#;
    let (_, one) = run_text(text, 1);
    assert!(one.spike_counts.iter().sum::<u64>() > 1000, "{:?}", one.spike_counts);
    // The same network without learning keeps the initial weights: STDP moved most.
    let (_, frozen) = run_text(&text.replace("lambda = 0.05", "lambda = 0.0"), 1);
    let stdp: Vec<_> = one.weights.iter().zip(&frozen.weights).filter(|(w, _)| w.projection == 0).collect();
    assert_eq!(stdp.len(), 400 * 40);
    let changed = stdp.iter().filter(|(a, b)| (a.weight - b.weight).abs() > 1e-6).count();
    assert!(changed > stdp.len() / 2, "only {changed} of {} STDP weights changed", stdp.len());
    assert_same_on_any_partition(text, &one);
}

/// Dopamine-modulated STDP, one pairing and one dopamine spike: the weight change is
/// the integral of c(t)(n(t) − b) with c(t) = A+ e^{-(t_post+d−t_pre)/τ+} e^{-(t−t_a)/τc}
/// from the pairing's arrival t_a and n(t) = e^{-(t−t_d)/τn}/τn from the dopamine
/// spike t_d, up to the trigger spike t4 (NEST's stdp_dopamine_synapse equations).
#[test]
fn dopamine_modulated_stdp_matches_the_integral() {
    for b in [0.0, 0.002] {
        let text = format!(
            r#"
[run]
duration_ms = 1200.0
[[populations]]
name = "pre"
size = 1
model = "parrot_neuron"
[[populations]]
name = "post"
size = 1
model = "iaf_psc_delta"
params = {{ E_L = -70.0, V_reset = -70.0, V_th = -55.0, t_ref = 0.1 }}
[[populations]]
name = "dopa"
size = 1
model = "parrot_neuron"
[[projections]]
source = "pre"
target = "post"
conn = {{ rule = "one_to_one" }}
syn = {{ model = "stdp_dopamine_synapse", modulator = "dopa", weight = 1.0, delay_ms = {D_MS}, params = {{ tau_plus = 20.0, tau_minus = 20.0, tau_c = 1000.0, tau_n = 200.0, A_plus = 1.0, A_minus = 1.5, b = {b}, Wmin = -100.0, Wmax = 100.0 }} }}
[[stimuli]]
kind = "spike_generator"
target = "pre"
spike_times_ms = [100.0, 1100.0]
delay_ms = 0.1
[[stimuli]]
kind = "spike_generator"
target = "post"
spike_times_ms = [110.0]
weight = 100.0
delay_ms = 0.1
[[stimuli]]
kind = "spike_generator"
target = "dopa"
spike_times_ms = [300.0]
delay_ms = 0.1
[[recorders]]
kind = "spike_recorder"
[[recorders]]
kind = "weight_recorder"
"#
        );
        let (c, out) = run_text(&text, 2);
        let dt = c.network.dt_ms;
        let times = |gid: u32| -> Vec<f64> {
            out.spikes.iter().filter(|s| s.gid == gid).map(|s| (s.step + 1) as f64 * dt).collect()
        };
        let (pre, post, dopa) = (times(0), times(1), times(2));
        assert_eq!((pre.len(), post.len(), dopa.len()), (2, 1, 1));
        let (t_pre, t4, t_a, t_d) = (pre[0], pre[1], post[0] + D_MS, dopa[0]);
        let (tau_c, tau_n, tau_plus) = (1000.0f64, 200.0f64, 20.0f64);
        let tau_s = 1.0 / (1.0 / tau_c + 1.0 / tau_n);
        let c_a = (-(t_a - t_pre) / tau_plus).exp();
        let dopamine_part = c_a * (-(t_d - t_a) / tau_c).exp() / tau_n * tau_s * (1.0 - (-(t4 - t_d) / tau_s).exp());
        let baseline_part = b * c_a * tau_c * (1.0 - (-(t4 - t_a) / tau_c).exp());
        let expected = dopamine_part - baseline_part;
        let dw = out.weights[0].weight - 1.0;
        assert!(((dw - expected) / expected).abs() < 1e-9, "b = {b}: Δw {dw} vs {expected}");
    }
}

#[test]
fn dopamine_network_is_partition_independent() {
    let text = r#"
[run]
duration_ms = 400.0
seed = 21
[[populations]]
name = "E"
size = 300
model = "iaf_psc_delta"
params = { C_m = 1.0, tau_m = 20.0, t_ref = 2.0, E_L = 0.0, V_reset = 10.0, V_th = 20.0 }
initial = { V_m = { dist = "uniform", low = 0.0, high = 20.0 } }
[[populations]]
name = "D"
size = 10
model = "parrot_neuron"
[[stimuli]]
kind = "poisson_generator"
target = "E"
rate_hz = 28000.0
weight = 0.1
[[stimuli]]
kind = "poisson_generator"
target = "D"
rate_hz = 20.0
[[projections]]
source = "E"
target = "E"
conn = { rule = "fixed_indegree", indegree = 30 }
syn = { model = "stdp_dopamine_synapse", modulator = "D", weight = { dist = "uniform", low = 0.05, high = 0.2 }, delay_ms = { dist = "uniform", low = 1.0, high = 3.0 }, params = { Wmax = 0.5, A_plus = 0.01, A_minus = 0.015, tau_c = 100.0 } }
[[recorders]]
kind = "weight_recorder"
"#;
    let (_, one) = run_text(text, 1);
    assert!(one.spike_counts[0] > 1000, "{:?}", one.spike_counts);
    let (_, frozen) = run_text(&text.replace("rate_hz = 20.0", "rate_hz = 0.0"), 1);
    let changed = one.weights.iter().zip(&frozen.weights).filter(|(a, b)| (a.weight - b.weight).abs() > 1e-9).count();
    assert!(changed > one.weights.len() / 2, "dopamine must move weights: {changed} of {}", one.weights.len());
    assert_same_on_any_partition(text, &one);
}

//! Synapse models in experiment files: names, parameters (NEST names and
//! defaults), validation, and the kernel's plasticity rules.

use crate::error::Errors;
use crate::schema::SynSpec;
use neuropil_sim::plasticity::{DopamineParams, Pairing, Plasticity, StdpParams, TsodyksParams};

/// One parameter of a synapse model: (NEST name, default, unit, meaning).
pub type SynParam = (&'static str, f64, &'static str, &'static str);

/// Synapse models and their parameters.
pub const MODELS: &[(&str, &[SynParam])] = &[
    ("static_synapse", &[]),
    ("sic_connection", &[]),
    ("stdp_synapse", STDP),
    ("stdp_nn_symm_synapse", STDP),
    ("stdp_symmetric_synapse", STDP),
    (
        "stdp_dopamine_synapse",
        &[
            ("tau_plus", 20.0, "ms", "presynaptic trace time constant"),
            ("tau_minus", 20.0, "ms", "postsynaptic trace time constant (shared per target population)"),
            ("tau_c", 1000.0, "ms", "eligibility trace time constant"),
            ("tau_n", 200.0, "ms", "dopamine time constant"),
            ("A_plus", 1.0, "1", "eligibility increase per pre-before-post pairing"),
            ("A_minus", 1.5, "1", "eligibility decrease per post-before-pre pairing"),
            ("b", 0.0, "1/ms", "baseline dopamine concentration"),
            ("Wmin", 0.0, "as weight", "minimum weight"),
            ("Wmax", 200.0, "as weight", "maximum weight"),
        ],
    ),
    (
        "tsodyks2_synapse",
        &[
            ("U", 0.5, "1", "utilisation increment per spike"),
            ("u", 0.5, "1", "initial utilisation"),
            ("x", 1.0, "1", "initial fraction of available resources"),
            ("tau_rec", 800.0, "ms", "recovery time constant"),
            ("tau_fac", 0.0, "ms", "facilitation time constant (0: none)"),
        ],
    ),
];

const STDP: &[SynParam] = &[
    ("tau_plus", 20.0, "ms", "presynaptic trace time constant"),
    ("tau_minus", 20.0, "ms", "postsynaptic trace time constant (shared per target population)"),
    ("lambda", 0.01, "1", "learning rate"),
    ("alpha", 1.0, "1", "depression / potentiation ratio"),
    ("mu_plus", 1.0, "1", "weight dependence of potentiation (0 additive, 1 multiplicative)"),
    ("mu_minus", 1.0, "1", "weight dependence of depression (0 additive, 1 multiplicative)"),
    ("Wmax", 100.0, "as weight", "maximum weight"),
];

/// The plasticity rule of `syn` (`Ok(None)` for static synapses), or errors under `path`.
pub(crate) fn compile(syn: &SynSpec, path: &str, errs: &mut Errors) -> Result<Option<Plasticity>, ()> {
    let Some((_, params)) = MODELS.iter().find(|(n, _)| *n == syn.model) else {
        let names: Vec<_> = MODELS.iter().map(|m| m.0).collect();
        errs.add(
            format!("{path}.model"),
            format!("unknown synapse model \"{}\"; available: {}", syn.model, names.join(", ")),
        );
        return Err(());
    };
    let n0 = errs.0.len();
    let mut values: Vec<f64> = params.iter().map(|p| p.1).collect();
    for (name, v) in &syn.params {
        match params.iter().position(|p| p.0 == name) {
            Some(k) => {
                errs.finite(format!("{path}.params.{name}"), *v);
                values[k] = *v;
            }
            None => {
                let names: Vec<_> = params.iter().map(|p| p.0).collect();
                errs.add(
                    format!("{path}.params.{name}"),
                    format!(
                        "unknown parameter of {}; its parameters are {}",
                        syn.model,
                        if names.is_empty() { "none".to_string() } else { names.join(", ") }
                    ),
                );
            }
        }
    }
    if errs.0.len() > n0 {
        return Err(());
    }
    let mut need = |cond: bool, name: &str, what: &str, v: f64| {
        if !cond {
            errs.add(format!("{path}.params.{name}"), format!("must be {what}, got {v}"));
        }
    };
    let rule = match syn.model.as_str() {
        "static_synapse" | "sic_connection" => return Ok(None),
        "stdp_dopamine_synapse" => {
            let [tau_plus, tau_minus, tau_c, tau_n, a_plus, a_minus, b, w_min, w_max] = values[..] else {
                unreachable!()
            };
            for (name, v) in [("tau_plus", tau_plus), ("tau_minus", tau_minus), ("tau_c", tau_c), ("tau_n", tau_n)] {
                need(v > 0.0, name, "> 0 ms", v);
            }
            need(a_plus >= 0.0, "A_plus", ">= 0", a_plus);
            need(a_minus >= 0.0, "A_minus", ">= 0", a_minus);
            need(b >= 0.0, "b", ">= 0", b);
            need(w_max > w_min, "Wmax", "above Wmin", w_max);
            // The modulator population is resolved by the projection compiler.
            Plasticity::Dopamine(DopamineParams {
                tau_plus,
                tau_minus,
                tau_c,
                tau_n,
                a_plus,
                a_minus,
                b,
                w_min,
                w_max,
                modulator: usize::MAX,
            })
        }
        "tsodyks2_synapse" => {
            let [u_inc, u0, x0, tau_rec, tau_fac] = values[..] else { unreachable!() };
            need(u_inc > 0.0 && u_inc <= 1.0, "U", "in (0, 1]", u_inc);
            need((0.0..=1.0).contains(&u0), "u", "in [0, 1]", u0);
            need((0.0..=1.0).contains(&x0), "x", "in [0, 1]", x0);
            need(tau_rec > 0.0, "tau_rec", "> 0 ms", tau_rec);
            need(tau_fac >= 0.0, "tau_fac", ">= 0 ms", tau_fac);
            Plasticity::Tsodyks(TsodyksParams { u_inc, u0, x0, tau_rec, tau_fac })
        }
        model => {
            let [tau_plus, tau_minus, lambda, alpha, mu_plus, mu_minus, w_max] = values[..] else { unreachable!() };
            need(tau_plus > 0.0, "tau_plus", "> 0 ms", tau_plus);
            need(tau_minus > 0.0, "tau_minus", "> 0 ms", tau_minus);
            need(lambda >= 0.0, "lambda", ">= 0", lambda);
            need(alpha >= 0.0, "alpha", ">= 0", alpha);
            need(mu_plus >= 0.0, "mu_plus", ">= 0", mu_plus);
            need(mu_minus >= 0.0, "mu_minus", ">= 0", mu_minus);
            need(w_max > 0.0, "Wmax", "> 0", w_max);
            Plasticity::Stdp(StdpParams {
                tau_plus,
                tau_minus,
                lambda,
                alpha,
                mu_plus,
                mu_minus,
                w_max,
                pairing: if model == "stdp_nn_symm_synapse" { Pairing::Nearest } else { Pairing::AllToAll },
                symmetric: model == "stdp_symmetric_synapse",
            })
        }
    };
    if errs.0.len() > n0 {
        return Err(());
    }
    if syn.receptor == "inhibitory" {
        errs.add(
            format!("{path}.receptor"),
            format!("{} synapses are excitatory here; use receptor = \"auto\"", syn.model),
        );
        return Err(());
    }
    Ok(Some(rule))
}

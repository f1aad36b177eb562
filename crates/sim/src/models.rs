//! Neuron models: parameter catalogues (NEST names and units) and the per-population
//! state groups the shards update.
//!
//! A [`Group`] holds one population's neurons on one shard as structure-of-arrays.
//! Dispatch on the model happens once per group and step, never per neuron.

pub mod aeif_cond_alpha_astro;
pub mod aeif_cond_exp;
pub mod astrocyte_lr_1994;
pub mod iaf_psc_alpha;
pub mod iaf_psc_delta;
pub mod iaf_psc_exp;
pub mod izhikevich;
pub mod parrot;
mod rkf45;

/// One model parameter: NEST's name, default, unit and meaning.
#[derive(Debug, Clone, Copy)]
pub struct ParamInfo {
    /// Name as in NEST (`C_m`, `tau_m`, ...).
    pub name: &'static str,
    /// Default value (NEST's default where NEST has the model).
    pub default: f64,
    /// Unit (`pF`, `ms`, `mV`, `pA`, `nS`, or `1` for dimensionless).
    pub unit: &'static str,
    /// What it is.
    pub doc: &'static str,
}

/// One state variable that can be initialised and recorded.
#[derive(Debug, Clone, Copy)]
pub struct StateInfo {
    /// Name as in NEST (`V_m`, `I_syn_ex`, ...).
    pub name: &'static str,
    /// Unit.
    pub unit: &'static str,
}

/// A parameter value that the model cannot use.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamError {
    /// The offending parameter.
    pub param: &'static str,
    /// What is wrong and what would be right.
    pub message: String,
}

/// The neuron models the kernel implements.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// Leaky integrate-and-fire, exponential PSCs, exact integration (Rotter & Diesmann 1999).
    IafPscExp,
    /// Leaky integrate-and-fire, alpha PSCs, exact integration.
    IafPscAlpha,
    /// Leaky integrate-and-fire, delta synapses (voltage jumps), exact integration.
    IafPscDelta,
    /// Izhikevich (2003), forward Euler as NEST's `consistent_integration`.
    Izhikevich,
    /// Adaptive exponential integrate-and-fire, conductance-based exponential synapses.
    AeifCondExp,
    /// Repeats every incoming spike.
    Parrot,
    /// Astrocyte IP3/calcium dynamics (Li & Rinzel 1994), NEST's model.
    AstrocyteLr1994,
    /// AdEx, alpha conductances, slow inward current from astrocytes.
    AeifCondAlphaAstro,
}

impl ModelKind {
    /// All models, in documentation order.
    pub const ALL: [ModelKind; 8] = [
        ModelKind::IafPscExp,
        ModelKind::IafPscAlpha,
        ModelKind::IafPscDelta,
        ModelKind::Izhikevich,
        ModelKind::AeifCondExp,
        ModelKind::Parrot,
        ModelKind::AstrocyteLr1994,
        ModelKind::AeifCondAlphaAstro,
    ];

    /// The model's name in experiment files (NEST's name).
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::IafPscExp => "iaf_psc_exp",
            ModelKind::IafPscAlpha => "iaf_psc_alpha",
            ModelKind::IafPscDelta => "iaf_psc_delta",
            ModelKind::Izhikevich => "izhikevich",
            ModelKind::AeifCondExp => "aeif_cond_exp",
            ModelKind::Parrot => "parrot_neuron",
            ModelKind::AstrocyteLr1994 => "astrocyte_lr_1994",
            ModelKind::AeifCondAlphaAstro => "aeif_cond_alpha_astro",
        }
    }

    /// Look a model up by name (`parrot` is accepted for `parrot_neuron`).
    pub fn from_name(name: &str) -> Option<Self> {
        if name == "parrot" {
            return Some(ModelKind::Parrot);
        }
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Names of all models, for error messages.
    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|m| m.name()).collect()
    }

    /// The model's parameters.
    pub fn params(self) -> &'static [ParamInfo] {
        match self {
            ModelKind::IafPscExp => iaf_psc_exp::PARAMS,
            ModelKind::IafPscAlpha => iaf_psc_alpha::PARAMS,
            ModelKind::IafPscDelta => iaf_psc_delta::PARAMS,
            ModelKind::Izhikevich => izhikevich::PARAMS,
            ModelKind::AeifCondExp => aeif_cond_exp::PARAMS,
            ModelKind::Parrot => &[],
            ModelKind::AstrocyteLr1994 => astrocyte_lr_1994::PARAMS,
            ModelKind::AeifCondAlphaAstro => aeif_cond_alpha_astro::PARAMS,
        }
    }

    /// The model's state variables.
    pub fn state(self) -> &'static [StateInfo] {
        match self {
            ModelKind::IafPscExp => iaf_psc_exp::STATE,
            ModelKind::IafPscAlpha => iaf_psc_alpha::STATE,
            ModelKind::IafPscDelta => iaf_psc_delta::STATE,
            ModelKind::Izhikevich => izhikevich::STATE,
            ModelKind::AeifCondExp => aeif_cond_exp::STATE,
            ModelKind::Parrot => &[],
            ModelKind::AstrocyteLr1994 => astrocyte_lr_1994::STATE,
            ModelKind::AeifCondAlphaAstro => aeif_cond_alpha_astro::STATE,
        }
    }

    /// Index of a parameter by name.
    pub fn param_index(self, name: &str) -> Option<usize> {
        self.params().iter().position(|p| p.name == name)
    }

    /// Index of a state variable by name.
    pub fn state_index(self, name: &str) -> Option<usize> {
        self.state().iter().position(|s| s.name == name)
    }

    /// Default parameter values, in [`ModelKind::params`] order.
    pub fn default_params(self) -> Vec<f64> {
        self.params().iter().map(|p| p.default).collect()
    }

    /// Check a full parameter vector for values the model cannot use.
    pub fn check(self, p: &[f64], dt_ms: f64) -> Result<(), ParamError> {
        for (info, v) in self.params().iter().zip(p) {
            if !(v.is_finite() || (info.name == "V_min" && *v == f64::NEG_INFINITY)) {
                return Err(ParamError { param: info.name, message: format!("must be a finite number, got {v}") });
            }
        }
        match self {
            ModelKind::IafPscExp => iaf_psc_exp::check(p, dt_ms),
            ModelKind::IafPscAlpha => iaf_psc_alpha::check(p, dt_ms),
            ModelKind::IafPscDelta => iaf_psc_delta::check(p, dt_ms),
            ModelKind::Izhikevich => izhikevich::check(p),
            ModelKind::AeifCondExp => aeif_cond_exp::check(p, dt_ms),
            ModelKind::Parrot => Ok(()),
            ModelKind::AstrocyteLr1994 => astrocyte_lr_1994::check(p),
            ModelKind::AeifCondAlphaAstro => aeif_cond_alpha_astro::check(p, dt_ms),
        }
    }

    /// Bytes of state per neuron (for memory estimates).
    pub fn bytes_per_neuron(self) -> usize {
        8 * (self.state().len() + 1) + 4
    }
}

/// `param > 0` or an error naming it.
pub(crate) fn positive(p: &[f64], idx: usize, info: &'static [ParamInfo]) -> Result<(), ParamError> {
    if p[idx] > 0.0 {
        Ok(())
    } else {
        Err(ParamError { param: info[idx].name, message: format!("must be > 0 {}, got {}", info[idx].unit, p[idx]) })
    }
}

/// `param >= 0` or an error naming it.
pub(crate) fn non_negative(p: &[f64], idx: usize, info: &'static [ParamInfo]) -> Result<(), ParamError> {
    if p[idx] >= 0.0 {
        Ok(())
    } else {
        Err(ParamError { param: info[idx].name, message: format!("must be >= 0 {}, got {}", info[idx].unit, p[idx]) })
    }
}

/// Input of one step to a group: `syn` holds, per neuron, the summed weights of the
/// spikes arriving this step on the excitatory (`[2i]`, weight >= 0) and inhibitory
/// (`[2i+1]`, weight < 0) channel; the group reads them and must zero them.
pub struct StepInput<'a> {
    /// Arriving synaptic input, two channels per neuron; zeroed by the update.
    pub syn: &'a mut [f64],
    /// Population-wide injected current this step (DC generators), pA.
    pub i_stim_pa: f64,
    /// Per-neuron current arriving this step (slow inward currents from
    /// astrocytes), pA; empty when none. Read-only: the shard clears it.
    pub current: &'a [f64],
}

/// One population's neurons on one shard.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Group {
    /// See [`iaf_psc_exp::IafPscExp`].
    IafPscExp(iaf_psc_exp::IafPscExp),
    /// See [`iaf_psc_alpha::IafPscAlpha`].
    IafPscAlpha(iaf_psc_alpha::IafPscAlpha),
    /// See [`iaf_psc_delta::IafPscDelta`].
    IafPscDelta(iaf_psc_delta::IafPscDelta),
    /// See [`izhikevich::Izhikevich`].
    Izhikevich(izhikevich::Izhikevich),
    /// See [`aeif_cond_exp::AeifCondExp`].
    AeifCondExp(aeif_cond_exp::AeifCondExp),
    /// See [`parrot::Parrot`].
    Parrot(parrot::Parrot),
    /// See [`astrocyte_lr_1994::AstrocyteLr1994`].
    AstrocyteLr1994(astrocyte_lr_1994::AstrocyteLr1994),
    /// See [`aeif_cond_alpha_astro::AeifCondAlphaAstro`].
    AeifCondAlphaAstro(aeif_cond_alpha_astro::AeifCondAlphaAstro),
}

impl Group {
    /// `n` neurons of `kind` with parameters `p` (in [`ModelKind::params`] order),
    /// state at its defaults.
    pub fn new(kind: ModelKind, p: &[f64], n: usize, dt_ms: f64) -> Self {
        match kind {
            ModelKind::IafPscExp => Group::IafPscExp(iaf_psc_exp::IafPscExp::new(p, n, dt_ms)),
            ModelKind::IafPscAlpha => Group::IafPscAlpha(iaf_psc_alpha::IafPscAlpha::new(p, n, dt_ms)),
            ModelKind::IafPscDelta => Group::IafPscDelta(iaf_psc_delta::IafPscDelta::new(p, n, dt_ms)),
            ModelKind::Izhikevich => Group::Izhikevich(izhikevich::Izhikevich::new(p, n, dt_ms)),
            ModelKind::AeifCondExp => Group::AeifCondExp(aeif_cond_exp::AeifCondExp::new(p, n, dt_ms)),
            ModelKind::Parrot => Group::Parrot(parrot::Parrot::new(n)),
            ModelKind::AstrocyteLr1994 => Group::AstrocyteLr1994(astrocyte_lr_1994::AstrocyteLr1994::new(p, n, dt_ms)),
            ModelKind::AeifCondAlphaAstro => {
                Group::AeifCondAlphaAstro(aeif_cond_alpha_astro::AeifCondAlphaAstro::new(p, n, dt_ms))
            }
        }
    }

    /// Advance every neuron by one step; push the local indices that spiked.
    #[inline]
    pub fn update(&mut self, input: StepInput<'_>, spikes: &mut Vec<u32>) {
        match self {
            Group::IafPscExp(g) => g.update(input, spikes),
            Group::IafPscAlpha(g) => g.update(input, spikes),
            Group::IafPscDelta(g) => g.update(input, spikes),
            Group::Izhikevich(g) => g.update(input, spikes),
            Group::AeifCondExp(g) => g.update(input, spikes),
            Group::Parrot(g) => g.update(input, spikes),
            Group::AstrocyteLr1994(g) => g.update(input, spikes),
            Group::AeifCondAlphaAstro(g) => g.update(input, spikes),
        }
    }

    /// Value of state variable `var` (index into [`ModelKind::state`]) of neuron `i`.
    pub fn state(&self, var: usize, i: usize) -> f64 {
        match self {
            Group::IafPscExp(g) => g.state(var, i),
            Group::IafPscAlpha(g) => g.state(var, i),
            Group::IafPscDelta(g) => g.state(var, i),
            Group::Izhikevich(g) => g.state(var, i),
            Group::AeifCondExp(g) => g.state(var, i),
            Group::Parrot(_) => 0.0,
            Group::AstrocyteLr1994(g) => g.state(var, i),
            Group::AeifCondAlphaAstro(g) => g.state(var, i),
        }
    }

    /// Whether the model's threshold can move (intrinsic plasticity).
    pub fn has_adaptive_threshold(kind: ModelKind) -> bool {
        matches!(kind, ModelKind::IafPscExp | ModelKind::IafPscAlpha | ModelKind::IafPscDelta)
    }

    /// Move neuron `i`'s threshold by `delta_mv` (models without one ignore it).
    pub fn shift_threshold(&mut self, i: usize, delta_mv: f64) {
        match self {
            Group::IafPscExp(g) => g.shift_threshold(i, delta_mv),
            Group::IafPscAlpha(g) => g.shift_threshold(i, delta_mv),
            Group::IafPscDelta(g) => g.shift_threshold(i, delta_mv),
            _ => {}
        }
    }

    /// Set state variable `var` of neuron `i`.
    pub fn set_state(&mut self, var: usize, i: usize, value: f64) {
        match self {
            Group::IafPscExp(g) => g.set_state(var, i, value),
            Group::IafPscAlpha(g) => g.set_state(var, i, value),
            Group::IafPscDelta(g) => g.set_state(var, i, value),
            Group::Izhikevich(g) => g.set_state(var, i, value),
            Group::AeifCondExp(g) => g.set_state(var, i, value),
            Group::Parrot(_) => {}
            Group::AstrocyteLr1994(g) => g.set_state(var, i, value),
            Group::AeifCondAlphaAstro(g) => g.set_state(var, i, value),
        }
    }
}

/// Refractory period in steps, as NEST rounds it.
pub(crate) fn refractory_steps(t_ref_ms: f64, dt_ms: f64) -> u32 {
    (t_ref_ms / dt_ms).round() as u32
}

/// Voltage response at time `h` to a unit exponential current of time constant
/// `tau_s` in a membrane of `tau_m`, `c_m`: the P21 propagator of iaf_psc_exp.
pub(crate) fn propagator_exp(tau_s: f64, tau_m: f64, c_m: f64, h: f64) -> f64 {
    let c = 1.0 / tau_s - 1.0 / tau_m;
    if c.abs() * h < 1e-9 {
        // Degenerate case tau_s == tau_m: limit of the formula.
        return h / c_m * (-h / tau_m).exp();
    }
    // (e^{-h/tau_m} - e^{-h/tau_s}) / (c_m * c), written with expm1 for accuracy.
    -(-h / tau_m).exp() * (-c * h).exp_m1() / (c_m * c)
}

/// Voltage response at time `h` to the alpha-shaped current `t e^{-t/tau_s}`
/// (P31 of iaf_psc_alpha).
pub(crate) fn propagator_alpha(tau_s: f64, tau_m: f64, c_m: f64, h: f64) -> f64 {
    let c = 1.0 / tau_s - 1.0 / tau_m;
    if c.abs() * h < 1e-6 {
        return h * h / (2.0 * c_m) * (-h / tau_m).exp();
    }
    // e^{-h/tau_m} (1 - e^{-ch}(1 + ch)) / (c_m c^2)
    let ech = (-c * h).exp();
    (-h / tau_m).exp() * (-(-c * h).exp_m1() - ech * c * h) / (c_m * c * c)
}

/// Single-neuron traces from NEST 3.10 (tests/data/nest-<model>.json, written by
/// bench/nest/reference_traces.py: dt = 0.1 ms, spike times and V_m every 1 ms).
#[cfg(test)]
pub(crate) mod nest_reference {
    use serde_json::Value;

    /// The reference of `model`.
    pub fn load(model: &str) -> Value {
        let path = format!("{}/../../tests/data/nest-{model}.json", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
    }

    /// Run `step` (one 0.1 ms step: whether the neuron spiked, and V_m after it)
    /// for the reference's duration; the spike times must equal NEST's (to 1e-9
    /// ms) and V_m every ms be within `vm_tol` mV of NEST's. The spike times.
    pub fn assert_matches(nest: &Value, mut step: impl FnMut() -> (bool, f64), vm_tol: f64) -> Vec<f64> {
        let steps = (nest["duration_ms"].as_f64().unwrap() / 0.1).round() as u32;
        let (mut times, mut vm) = (Vec::new(), Vec::new());
        for k in 1..=steps {
            let (spiked, v) = step();
            if spiked {
                times.push(k as f64 * 0.1);
            }
            if k % 10 == 0 {
                vm.push(v);
            }
        }
        let theirs: Vec<f64> = nest["spikes_ms"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        assert_eq!(times.len(), theirs.len(), "{times:?} vs NEST {theirs:?}");
        for (a, b) in times.iter().zip(&theirs) {
            assert!((a - b).abs() < 1e-9, "spike at {a} vs NEST {b}");
        }
        let samples = nest["V_m"].as_array().unwrap();
        assert!(samples.len() >= 999, "{} samples", samples.len());
        let worst = samples
            .iter()
            .map(|s| {
                // The sample at t ms is the state after the step ending at t.
                let k = s[0].as_f64().unwrap().round() as usize - 1;
                (s[1].as_f64().unwrap() - vm[k]).abs()
            })
            .fold(0.0, f64::max);
        assert!(worst < vm_tol, "max |V_m - NEST| = {worst} mV");
        times
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in ModelKind::ALL {
            assert_eq!(ModelKind::from_name(m.name()), Some(m));
        }
        assert_eq!(ModelKind::from_name("lif"), None);
    }

    #[test]
    fn propagators_match_numeric_integration() {
        // Integrate dV/dt = -V/tau_m + I(t)/C with a fine Euler grid.
        let (tau_s, tau_m, c, h) = (0.5, 10.0, 250.0, 0.1);
        let n = 200_000;
        let dt = h / n as f64;
        let (mut v_exp, mut v_alpha) = (0.0, 0.0);
        for k in 0..n {
            let t = (k as f64 + 0.5) * dt;
            v_exp += dt * (-v_exp / tau_m + (-t / tau_s).exp() / c);
            v_alpha += dt * (-v_alpha / tau_m + t * (-t / tau_s).exp() / c);
        }
        assert!((propagator_exp(tau_s, tau_m, c, h) - v_exp).abs() / v_exp < 1e-5);
        assert!((propagator_alpha(tau_s, tau_m, c, h) - v_alpha).abs() / v_alpha < 1e-5);
        // Degenerate case is continuous.
        let near = propagator_exp(10.0 + 1e-7, 10.0, c, h);
        let at = propagator_exp(10.0, 10.0, c, h);
        assert!((near - at).abs() / at < 1e-6);
    }
}

//! `iaf_psc_alpha`: leaky integrate-and-fire with alpha-shaped synaptic currents,
//! integrated exactly with NEST's propagators and update order. A spike of weight
//! `w` (pA) produces a current whose peak is `w`, reached `tau_syn` after arrival.

use super::{propagator_alpha, propagator_exp, refractory_steps, ParamError, ParamInfo, StateInfo, StepInput};

/// Parameters, NEST names and defaults.
pub const PARAMS: &[ParamInfo] = &[
    ParamInfo { name: "C_m", default: 250.0, unit: "pF", doc: "membrane capacitance" },
    ParamInfo { name: "tau_m", default: 10.0, unit: "ms", doc: "membrane time constant" },
    ParamInfo { name: "tau_syn_ex", default: 2.0, unit: "ms", doc: "rise time of the excitatory alpha current" },
    ParamInfo { name: "tau_syn_in", default: 2.0, unit: "ms", doc: "rise time of the inhibitory alpha current" },
    ParamInfo { name: "t_ref", default: 2.0, unit: "ms", doc: "absolute refractory period" },
    ParamInfo { name: "E_L", default: -70.0, unit: "mV", doc: "resting potential" },
    ParamInfo { name: "V_reset", default: -70.0, unit: "mV", doc: "reset potential" },
    ParamInfo { name: "V_th", default: -55.0, unit: "mV", doc: "spike threshold" },
    ParamInfo { name: "I_e", default: 0.0, unit: "pA", doc: "constant input current" },
];

/// State variables (as `iaf_psc_exp`).
pub const STATE: &[StateInfo] = super::iaf_psc_exp::STATE;

const C_M: usize = 0;
const TAU_M: usize = 1;
const TAU_EX: usize = 2;
const TAU_IN: usize = 3;
const T_REF: usize = 4;
const E_L: usize = 5;
const V_RESET: usize = 6;
const V_TH: usize = 7;
const I_E: usize = 8;

/// Check parameters (the same constraints as `iaf_psc_exp`).
pub fn check(p: &[f64], dt_ms: f64) -> Result<(), ParamError> {
    super::iaf_psc_exp::check(p, dt_ms)
}

/// Propagators of one synaptic channel.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy)]
struct Channel {
    p11: f64,
    p21: f64,
    p31: f64,
    p32: f64,
    jump: f64,
}

impl Channel {
    fn new(tau_s: f64, tau_m: f64, c: f64, h: f64) -> Self {
        let p11 = (-h / tau_s).exp();
        Channel {
            p11,
            p21: h * p11,
            p31: propagator_alpha(tau_s, tau_m, c, h),
            p32: propagator_exp(tau_s, tau_m, c, h),
            jump: std::f64::consts::E / tau_s,
        }
    }
}

/// Neurons of one population on one shard.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct IafPscAlpha {
    v: Vec<f64>,
    i_ex: Vec<f64>,
    di_ex: Vec<f64>,
    i_in: Vec<f64>,
    di_in: Vec<f64>,
    refr: Vec<u32>,
    e_l: f64,
    /// Threshold relative to E_L, per neuron (intrinsic plasticity moves it).
    theta: Vec<f64>,
    v_reset: f64,
    i_e: f64,
    ref_steps: u32,
    ex: Channel,
    inh: Channel,
    p30: f64,
    expm1_tau_m: f64,
}

impl IafPscAlpha {
    /// `n` neurons at rest.
    pub fn new(p: &[f64], n: usize, h: f64) -> Self {
        let (c, tau) = (p[C_M], p[TAU_M]);
        IafPscAlpha {
            v: vec![0.0; n],
            i_ex: vec![0.0; n],
            di_ex: vec![0.0; n],
            i_in: vec![0.0; n],
            di_in: vec![0.0; n],
            refr: vec![0; n],
            e_l: p[E_L],
            theta: vec![p[V_TH] - p[E_L]; n],
            v_reset: p[V_RESET] - p[E_L],
            i_e: p[I_E],
            ref_steps: refractory_steps(p[T_REF], h),
            ex: Channel::new(p[TAU_EX], tau, c, h),
            inh: Channel::new(p[TAU_IN], tau, c, h),
            p30: -tau / c * (-h / tau).exp_m1(),
            expm1_tau_m: (-h / tau).exp_m1(),
        }
    }

    /// One step for all neurons.
    #[inline]
    pub fn update(&mut self, input: StepInput<'_>, spikes: &mut Vec<u32>) {
        let i_ext = self.i_e + input.i_stim_pa;
        let (ex, inh) = (self.ex, self.inh);
        let n = self.v.len();
        let syn = &mut input.syn[..2 * n];
        for i in 0..n {
            let mut v = self.v[i];
            if self.refr[i] == 0 {
                v = self.p30 * i_ext
                    + ex.p31 * self.di_ex[i]
                    + ex.p32 * self.i_ex[i]
                    + inh.p31 * self.di_in[i]
                    + inh.p32 * self.i_in[i]
                    + self.expm1_tau_m * v
                    + v;
            } else {
                self.refr[i] -= 1;
            }
            self.i_ex[i] = ex.p21 * self.di_ex[i] + ex.p11 * self.i_ex[i];
            self.di_ex[i] = self.di_ex[i] * ex.p11 + ex.jump * syn[2 * i];
            self.i_in[i] = inh.p21 * self.di_in[i] + inh.p11 * self.i_in[i];
            self.di_in[i] = self.di_in[i] * inh.p11 + inh.jump * syn[2 * i + 1];
            syn[2 * i] = 0.0;
            syn[2 * i + 1] = 0.0;
            if v >= self.theta[i] {
                self.refr[i] = self.ref_steps;
                v = self.v_reset;
                spikes.push(i as u32);
            }
            self.v[i] = v;
        }
    }

    /// Move neuron `i`'s threshold by `delta_mv`.
    pub fn shift_threshold(&mut self, i: usize, delta_mv: f64) {
        self.theta[i] += delta_mv;
    }

    /// State variable `var` of neuron `i`.
    pub fn state(&self, var: usize, i: usize) -> f64 {
        match var {
            0 => self.v[i] + self.e_l,
            1 => self.i_ex[i],
            2 => self.i_in[i],
            _ => self.theta[i] + self.e_l,
        }
    }

    /// Set state variable `var` of neuron `i`.
    pub fn set_state(&mut self, var: usize, i: usize, value: f64) {
        match var {
            0 => self.v[i] = value - self.e_l,
            1 => self.i_ex[i] = value,
            2 => self.i_in[i] = value,
            _ => self.theta[i] = value - self.e_l,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::ModelKind;

    /// The synaptic current of one 100 pA spike is an alpha function that peaks at
    /// the weight, tau_syn after the spike.
    #[test]
    fn alpha_current_peaks_at_weight_after_tau_syn() {
        let p = ModelKind::IafPscAlpha.default_params();
        let mut g = IafPscAlpha::new(&p, 1, 0.1);
        let mut syn = vec![100.0, 0.0];
        let mut spikes = Vec::new();
        let mut peak = (0.0f64, 0usize);
        for step in 0..200 {
            g.update(StepInput { syn: &mut syn, i_stim_pa: 0.0, current: &[] }, &mut spikes);
            if g.state(1, 0) > peak.0 {
                peak = (g.state(1, 0), step);
            }
        }
        // Arrives at step 0, peak tau_syn = 2 ms = 20 steps later.
        assert_eq!(peak.1, 20);
        assert!((peak.0 - 100.0).abs() < 1e-9, "peak {}", peak.0);
        assert!(spikes.is_empty());
    }

    /// The membrane's response to that current is the analytic alpha PSP, step for
    /// step: with a = 1/τs − 1/τm, V(t) − E_L = w e/(τs C) · e^(−t/τm) ·
    /// (1 − e^(−a t)(1 + a t)) / a², t from the spike (the end of the step it
    /// arrives in), to the precision of exact integration.
    #[test]
    fn the_membrane_follows_the_analytic_alpha_psp() {
        let p = ModelKind::IafPscAlpha.default_params();
        let dt = 0.1;
        let mut g = IafPscAlpha::new(&p, 1, dt);
        let (w, tau_s, tau_m, c, e_l) = (100.0, 2.0, 10.0, 250.0, -70.0);
        let a = 1.0 / tau_s - 1.0 / tau_m;
        let psp = |t: f64| {
            w * std::f64::consts::E / (tau_s * c) * (-t / tau_m).exp() * (1.0 - (-a * t).exp() * (1.0 + a * t))
                / (a * a)
        };
        let mut syn = vec![w, 0.0];
        let mut spikes = Vec::new();
        let mut peak: f64 = 0.0;
        for k in 0..600 {
            g.update(StepInput { syn: &mut syn, i_stim_pa: 0.0, current: &[] }, &mut spikes);
            syn.iter_mut().for_each(|x| *x = 0.0);
            let v = g.state(0, 0) - e_l;
            let want = psp(k as f64 * dt);
            assert!((v - want).abs() < 1e-12, "step {k}: V − E_L = {v} mV, analytic {want} mV");
            peak = peak.max(v);
        }
        assert!(peak > 0.1, "a visible PSP: {peak} mV");
    }
}

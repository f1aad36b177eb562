//! `iaf_psc_exp`: leaky integrate-and-fire with exponentially decaying synaptic
//! currents, integrated exactly (Rotter & Diesmann 1999) with NEST's update order:
//! propagate V with the currents of the step's start, then add the arriving spikes
//! to the currents, then test the threshold. V is kept relative to `E_L` as in NEST,
//! so the arithmetic (and so V_m to the last bits) matches NEST 3.10.

use super::{non_negative, positive, propagator_exp, refractory_steps, ParamError, ParamInfo, StateInfo, StepInput};

/// Parameters, NEST names and defaults.
pub const PARAMS: &[ParamInfo] = &[
    ParamInfo { name: "C_m", default: 250.0, unit: "pF", doc: "membrane capacitance" },
    ParamInfo { name: "tau_m", default: 10.0, unit: "ms", doc: "membrane time constant" },
    ParamInfo { name: "tau_syn_ex", default: 2.0, unit: "ms", doc: "excitatory synaptic time constant" },
    ParamInfo { name: "tau_syn_in", default: 2.0, unit: "ms", doc: "inhibitory synaptic time constant" },
    ParamInfo { name: "t_ref", default: 2.0, unit: "ms", doc: "absolute refractory period" },
    ParamInfo { name: "E_L", default: -70.0, unit: "mV", doc: "resting potential" },
    ParamInfo { name: "V_reset", default: -70.0, unit: "mV", doc: "reset potential" },
    ParamInfo { name: "V_th", default: -55.0, unit: "mV", doc: "spike threshold" },
    ParamInfo { name: "I_e", default: 0.0, unit: "pA", doc: "constant input current" },
];

/// State variables.
pub const STATE: &[StateInfo] = &[
    StateInfo { name: "V_m", unit: "mV" },
    StateInfo { name: "I_syn_ex", unit: "pA" },
    StateInfo { name: "I_syn_in", unit: "pA" },
    StateInfo { name: "V_th", unit: "mV" },
];

const C_M: usize = 0;
const TAU_M: usize = 1;
const TAU_EX: usize = 2;
const TAU_IN: usize = 3;
const T_REF: usize = 4;
const E_L: usize = 5;
const V_RESET: usize = 6;
const V_TH: usize = 7;
const I_E: usize = 8;

/// Check parameters.
pub fn check(p: &[f64], _dt_ms: f64) -> Result<(), ParamError> {
    for i in [C_M, TAU_M, TAU_EX, TAU_IN] {
        positive(p, i, PARAMS)?;
    }
    non_negative(p, T_REF, PARAMS)?;
    if p[V_RESET] >= p[V_TH] {
        return Err(ParamError {
            param: "V_reset",
            message: format!("must be below V_th ({} mV), got {} mV", p[V_TH], p[V_RESET]),
        });
    }
    Ok(())
}

/// Neurons of one population on one shard.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct IafPscExp {
    v: Vec<f64>,
    i_ex: Vec<f64>,
    i_in: Vec<f64>,
    refr: Vec<u32>,
    e_l: f64,
    /// Threshold relative to E_L, per neuron (intrinsic plasticity moves it).
    theta: Vec<f64>,
    v_reset: f64,
    i_e: f64,
    ref_steps: u32,
    p11_ex: f64,
    p11_in: f64,
    p21_ex: f64,
    p21_in: f64,
    p20: f64,
    p22: f64,
}

impl IafPscExp {
    /// `n` neurons at rest.
    pub fn new(p: &[f64], n: usize, h: f64) -> Self {
        let (c, tau) = (p[C_M], p[TAU_M]);
        IafPscExp {
            v: vec![0.0; n],
            i_ex: vec![0.0; n],
            i_in: vec![0.0; n],
            refr: vec![0; n],
            e_l: p[E_L],
            theta: vec![p[V_TH] - p[E_L]; n],
            v_reset: p[V_RESET] - p[E_L],
            i_e: p[I_E],
            ref_steps: refractory_steps(p[T_REF], h),
            p11_ex: (-h / p[TAU_EX]).exp(),
            p11_in: (-h / p[TAU_IN]).exp(),
            p21_ex: propagator_exp(p[TAU_EX], tau, c, h),
            p21_in: propagator_exp(p[TAU_IN], tau, c, h),
            p20: -tau / c * (-h / tau).exp_m1(),
            p22: (-h / tau).exp(),
        }
    }

    /// One step for all neurons.
    #[inline]
    pub fn update(&mut self, input: StepInput<'_>, spikes: &mut Vec<u32>) {
        let i_ext = self.i_e + input.i_stim_pa;
        let n = self.v.len();
        let syn = &mut input.syn[..2 * n];
        for i in 0..n {
            let mut v = self.v[i];
            let (i_ex, i_in) = (self.i_ex[i], self.i_in[i]);
            if self.refr[i] == 0 {
                v = v * self.p22 + i_ex * self.p21_ex + i_in * self.p21_in + i_ext * self.p20;
            } else {
                self.refr[i] -= 1;
            }
            self.i_ex[i] = i_ex * self.p11_ex + syn[2 * i];
            self.i_in[i] = i_in * self.p11_in + syn[2 * i + 1];
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

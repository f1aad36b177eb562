//! `iaf_psc_delta`: leaky integrate-and-fire whose membrane potential jumps by the
//! weight (mV) of each arriving spike, integrated exactly with NEST's update order.
//! Spikes arriving during the refractory period are discarded (NEST's default
//! `refractory_input = false`).

use super::{non_negative, positive, refractory_steps, ParamError, ParamInfo, StateInfo, StepInput};

/// Parameters, NEST names and defaults.
pub const PARAMS: &[ParamInfo] = &[
    ParamInfo { name: "C_m", default: 250.0, unit: "pF", doc: "membrane capacitance" },
    ParamInfo { name: "tau_m", default: 10.0, unit: "ms", doc: "membrane time constant" },
    ParamInfo { name: "t_ref", default: 2.0, unit: "ms", doc: "absolute refractory period" },
    ParamInfo { name: "E_L", default: -70.0, unit: "mV", doc: "resting potential" },
    ParamInfo { name: "V_reset", default: -70.0, unit: "mV", doc: "reset potential" },
    ParamInfo { name: "V_th", default: -55.0, unit: "mV", doc: "spike threshold" },
    ParamInfo { name: "V_min", default: f64::NEG_INFINITY, unit: "mV", doc: "lower bound of V_m" },
    ParamInfo { name: "I_e", default: 0.0, unit: "pA", doc: "constant input current" },
];

/// State variables.
pub const STATE: &[StateInfo] = &[StateInfo { name: "V_m", unit: "mV" }, StateInfo { name: "V_th", unit: "mV" }];

/// Check parameters.
pub fn check(p: &[f64], _dt_ms: f64) -> Result<(), ParamError> {
    positive(p, 0, PARAMS)?;
    positive(p, 1, PARAMS)?;
    non_negative(p, 2, PARAMS)?;
    if p[4] >= p[5] {
        return Err(ParamError {
            param: "V_reset",
            message: format!("must be below V_th ({} mV), got {} mV", p[5], p[4]),
        });
    }
    Ok(())
}

/// Neurons of one population on one shard.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct IafPscDelta {
    v: Vec<f64>,
    refr: Vec<u32>,
    e_l: f64,
    /// Threshold relative to E_L, per neuron (intrinsic plasticity moves it).
    theta: Vec<f64>,
    v_reset: f64,
    v_min: f64,
    i_e: f64,
    ref_steps: u32,
    p30: f64,
    p33: f64,
}

impl IafPscDelta {
    /// `n` neurons at rest.
    pub fn new(p: &[f64], n: usize, h: f64) -> Self {
        let (c, tau) = (p[0], p[1]);
        IafPscDelta {
            v: vec![0.0; n],
            refr: vec![0; n],
            e_l: p[3],
            theta: vec![p[5] - p[3]; n],
            v_reset: p[4] - p[3],
            v_min: p[6] - p[3],
            i_e: p[7],
            ref_steps: refractory_steps(p[2], h),
            p30: -tau / c * (-h / tau).exp_m1(),
            p33: (-h / tau).exp(),
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
            let jump = syn[2 * i] + syn[2 * i + 1];
            syn[2 * i] = 0.0;
            syn[2 * i + 1] = 0.0;
            if self.refr[i] == 0 {
                v = self.p30 * i_ext + self.p33 * v + jump;
                v = v.max(self.v_min);
            } else {
                self.refr[i] -= 1;
            }
            if v >= self.theta[i] {
                self.refr[i] = self.ref_steps;
                v = self.v_reset;
                spikes.push(i as u32);
            }
            self.v[i] = v;
        }
    }

    /// State variable `var` of neuron `i`.
    pub fn state(&self, var: usize, i: usize) -> f64 {
        if var == 0 {
            self.v[i] + self.e_l
        } else {
            self.theta[i] + self.e_l
        }
    }

    /// Move neuron `i`'s threshold by `delta_mv`.
    pub fn shift_threshold(&mut self, i: usize, delta_mv: f64) {
        self.theta[i] += delta_mv;
    }

    /// Set state variable `var` of neuron `i`.
    pub fn set_state(&mut self, var: usize, i: usize, value: f64) {
        if var == 0 {
            self.v[i] = value - self.e_l;
        } else {
            self.theta[i] = value - self.e_l;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::ModelKind;

    /// Free relaxation from V0 follows E_L + (V0 - E_L) e^{-t/tau_m} exactly; a spike
    /// of weight w moves V by w.
    #[test]
    fn relaxes_exponentially_and_jumps_by_weight() {
        let p = ModelKind::IafPscDelta.default_params();
        let mut g = IafPscDelta::new(&p, 1, 0.1);
        g.set_state(0, 0, -60.0);
        let mut syn = vec![0.0; 2];
        let mut s = Vec::new();
        for k in 1..=100 {
            g.update(StepInput { syn: &mut syn, i_stim_pa: 0.0, current: &[] }, &mut s);
            let exact = -70.0 + 10.0 * (-(k as f64) * 0.1 / 10.0).exp();
            assert!((g.state(0, 0) - exact).abs() < 1e-12);
        }
        let before = g.state(0, 0);
        syn[0] = 0.5;
        g.update(StepInput { syn: &mut syn, i_stim_pa: 0.0, current: &[] }, &mut s);
        let expected = -70.0 + (before + 70.0) * (-0.01f64).exp() + 0.5;
        assert!((g.state(0, 0) - expected).abs() < 1e-12);
    }
}

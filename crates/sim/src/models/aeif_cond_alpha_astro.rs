//! `aeif_cond_alpha_astro`: AdEx with alpha-shaped conductances and the slow inward
//! current (I_SIC) that astrocytes send (NEST's model). Same parameters and numerics
//! as [`super::aeif_cond_exp`]; a spike of weight w adds w·e/tau_syn to the
//! conductance's derivative, so the conductance peaks at w after tau_syn. The SIC
//! arriving in a step (weight × astrocyte SIC, pA) is recorded as `I_SIC` and drives
//! the next step, as the DC input does.

use super::aeif_cond_exp::{self, P};
use super::{refractory_steps, ParamError, ParamInfo, StateInfo, StepInput};

/// Parameters: those of `aeif_cond_exp` (NEST's aeif_cond_alpha defaults are the same).
pub const PARAMS: &[ParamInfo] = aeif_cond_exp::PARAMS;

/// State variables.
pub const STATE: &[StateInfo] = &[
    StateInfo { name: "V_m", unit: "mV" },
    StateInfo { name: "g_ex", unit: "nS" },
    StateInfo { name: "g_in", unit: "nS" },
    StateInfo { name: "w", unit: "pA" },
    StateInfo { name: "I_SIC", unit: "pA" },
];

/// Check parameters.
pub fn check(p: &[f64], dt_ms: f64) -> Result<(), ParamError> {
    aeif_cond_exp::check(p, dt_ms)
}

/// Neurons of one population on one shard. State per neuron:
/// [V, dg_ex, g_ex, dg_in, g_in, w].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AeifCondAlphaAstro {
    y: Vec<[f64; 6]>,
    i_sic: Vec<f64>,
    h_int: Vec<f64>,
    refr: Vec<u32>,
    p: P,
    ref_steps: u32,
    h: f64,
}

#[inline]
fn deriv(p: &P, y: &[f64; 6], refractory: bool, i_ext: f64) -> [f64; 6] {
    let v = if refractory { p.v_reset } else { y[0].min(p.v_peak) };
    let i_ex = y[2] * (v - p.e_ex);
    let i_in = y[4] * (v - p.e_in);
    let i_spike = if p.delta_t == 0.0 { 0.0 } else { p.g_l * p.delta_t * ((v - p.v_th) / p.delta_t).exp() };
    let dv =
        if refractory { 0.0 } else { (-p.g_l * (v - p.e_l) + i_spike - i_ex - i_in - y[5] + p.i_e + i_ext) / p.c_m };
    [
        dv,
        -y[1] / p.tau_ex,
        y[1] - y[2] / p.tau_ex,
        -y[3] / p.tau_in,
        y[3] - y[4] / p.tau_in,
        (p.a * (v - p.e_l) - y[5]) / p.tau_w,
    ]
}

impl AeifCondAlphaAstro {
    /// `n` neurons at rest.
    pub fn new(p: &[f64], n: usize, h: f64) -> Self {
        let pp = P::from_params(p);
        AeifCondAlphaAstro {
            y: vec![[pp.e_l, 0.0, 0.0, 0.0, 0.0, 0.0]; n],
            i_sic: vec![0.0; n],
            h_int: vec![h; n],
            refr: vec![0; n],
            p: pp,
            ref_steps: refractory_steps(p[9], h),
            h,
        }
    }

    /// One step for all neurons.
    pub fn update(&mut self, input: StepInput<'_>, spikes: &mut Vec<u32>) {
        let p = self.p;
        let (g0_ex, g0_in) = (std::f64::consts::E / p.tau_ex, std::f64::consts::E / p.tau_in);
        for i in 0..self.y.len() {
            let i_ext = input.i_stim_pa + self.i_sic[i];
            let spiked = aeif_cond_exp::adex_step(
                &mut self.y[i],
                &mut self.refr[i],
                &mut self.h_int[i],
                self.h,
                &p,
                self.ref_steps,
                5,
                |r, y| deriv(&p, y, r, i_ext),
            );
            let y = &mut self.y[i];
            y[1] += input.syn[2 * i] * g0_ex;
            y[3] -= input.syn[2 * i + 1] * g0_in;
            input.syn[2 * i] = 0.0;
            input.syn[2 * i + 1] = 0.0;
            self.i_sic[i] = input.current.get(i).copied().unwrap_or(0.0);
            if spiked {
                spikes.push(i as u32);
            }
        }
    }

    /// State variable `var` of neuron `i`.
    pub fn state(&self, var: usize, i: usize) -> f64 {
        match var {
            0 => self.y[i][0],
            1 => self.y[i][2],
            2 => self.y[i][4],
            3 => self.y[i][5],
            _ => self.i_sic[i],
        }
    }

    /// Set state variable `var` of neuron `i`.
    pub fn set_state(&mut self, var: usize, i: usize, value: f64) {
        match var {
            0 => self.y[i][0] = value,
            1 => self.y[i][2] = value,
            2 => self.y[i][4] = value,
            3 => self.y[i][5] = value,
            _ => self.i_sic[i] = value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::ModelKind;

    /// One excitatory spike of weight w: the conductance peaks at w, tau_syn later.
    #[test]
    fn alpha_conductance_peaks_at_weight() {
        let p = ModelKind::AeifCondAlphaAstro.default_params();
        let mut g = AeifCondAlphaAstro::new(&p, 1, 0.01);
        let mut syn = vec![5.0, 0.0];
        let mut s = Vec::new();
        let mut peak = (0.0f64, 0usize);
        for step in 0..200 {
            g.update(StepInput { syn: &mut syn, i_stim_pa: 0.0, current: &[] }, &mut s);
            if g.state(1, 0) > peak.0 {
                peak = (g.state(1, 0), step);
            }
        }
        // Arrives at the end of step 0; tau_syn_ex = 0.2 ms = 20 steps of 0.01 ms.
        assert_eq!(peak.1, 20);
        assert!((peak.0 - 5.0).abs() < 1e-6, "peak {}", peak.0);
    }
}

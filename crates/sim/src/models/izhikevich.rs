//! `izhikevich`: the Izhikevich (2003) model, integrated by forward Euler with the
//! full step for both variables (NEST's `consistent_integration = true`). Incoming
//! spikes make V jump by their weight (mV).

use super::{ParamError, ParamInfo, StateInfo, StepInput};

/// Parameters, NEST names and defaults.
pub const PARAMS: &[ParamInfo] = &[
    ParamInfo { name: "a", default: 0.02, unit: "1/ms", doc: "time scale of the recovery variable" },
    ParamInfo { name: "b", default: 0.2, unit: "1/ms", doc: "sensitivity of the recovery variable" },
    ParamInfo { name: "c", default: -65.0, unit: "mV", doc: "after-spike reset value of V_m" },
    ParamInfo { name: "d", default: 8.0, unit: "mV/ms", doc: "after-spike increment of U_m" },
    ParamInfo { name: "V_th", default: 30.0, unit: "mV", doc: "spike cut-off" },
    ParamInfo { name: "V_min", default: f64::NEG_INFINITY, unit: "mV", doc: "lower bound of V_m" },
    ParamInfo { name: "I_e", default: 0.0, unit: "pA", doc: "constant input current" },
];

/// State variables (U_m starts at b * V_m = -13 by default).
pub const STATE: &[StateInfo] = &[StateInfo { name: "V_m", unit: "mV" }, StateInfo { name: "U_m", unit: "mV/ms" }];

/// Check parameters.
pub fn check(p: &[f64]) -> Result<(), ParamError> {
    if p[2] >= p[4] {
        return Err(ParamError { param: "c", message: format!("must be below V_th ({} mV), got {} mV", p[4], p[2]) });
    }
    Ok(())
}

/// Neurons of one population on one shard.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Izhikevich {
    v: Vec<f64>,
    u: Vec<f64>,
    a: f64,
    b: f64,
    c: f64,
    d: f64,
    v_th: f64,
    v_min: f64,
    i_e: f64,
    h: f64,
}

impl Izhikevich {
    /// `n` neurons at V_m = -65 mV, U_m = b V_m.
    pub fn new(p: &[f64], n: usize, h: f64) -> Self {
        Izhikevich {
            v: vec![-65.0; n],
            u: vec![p[1] * -65.0; n],
            a: p[0],
            b: p[1],
            c: p[2],
            d: p[3],
            v_th: p[4],
            v_min: p[5],
            i_e: p[6],
            h,
        }
    }

    /// One step for all neurons.
    #[inline]
    pub fn update(&mut self, input: StepInput<'_>, spikes: &mut Vec<u32>) {
        let i_ext = self.i_e + input.i_stim_pa;
        let h = self.h;
        let n = self.v.len();
        let syn = &mut input.syn[..2 * n];
        for i in 0..n {
            let (v_old, u_old) = (self.v[i], self.u[i]);
            let mut v =
                v_old + h * (0.04 * v_old * v_old + 5.0 * v_old + 140.0 - u_old + i_ext) + syn[2 * i] + syn[2 * i + 1];
            let mut u = u_old + h * self.a * (self.b * v_old - u_old);
            syn[2 * i] = 0.0;
            syn[2 * i + 1] = 0.0;
            v = v.max(self.v_min);
            if v >= self.v_th {
                v = self.c;
                u += self.d;
                spikes.push(i as u32);
            }
            self.v[i] = v;
            self.u[i] = u;
        }
    }

    /// State variable `var` of neuron `i`.
    pub fn state(&self, var: usize, i: usize) -> f64 {
        if var == 0 {
            self.v[i]
        } else {
            self.u[i]
        }
    }

    /// Set state variable `var` of neuron `i`.
    pub fn set_state(&mut self, var: usize, i: usize, value: f64) {
        if var == 0 {
            self.v[i] = value
        } else {
            self.u[i] = value
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::ModelKind;

    /// Regular spiking (a=0.02, b=0.2, c=-65, d=8) under I=10 fires tonically with
    /// adapting intervals, the canonical behaviour of Izhikevich (2003), Fig. 2.
    #[test]
    fn regular_spiking_adapts() {
        let mut p = ModelKind::Izhikevich.default_params();
        p[6] = 10.0;
        let mut g = Izhikevich::new(&p, 1, 0.1);
        let mut syn = vec![0.0; 2];
        let mut times = Vec::new();
        for step in 0..10_000 {
            let mut s = Vec::new();
            g.update(StepInput { syn: &mut syn, i_stim_pa: 0.0, current: &[] }, &mut s);
            if !s.is_empty() {
                times.push(step as f64 * 0.1);
            }
        }
        assert!(times.len() > 5, "{times:?}");
        let isi: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(isi[0] < isi[isi.len() - 1], "intervals should lengthen: {isi:?}");
    }

    /// Against NEST 3.10's `izhikevich` (its defaults, I_e = 10, dt = 0.1 ms,
    /// `consistent_integration`: tests/data/nest-izhikevich.json from
    /// bench/nest/reference_traces.py): the same explicit scheme, so every spike
    /// time and V_m every millisecond to round-off.
    #[test]
    fn regular_spiking_matches_nest() {
        let nest = crate::models::nest_reference::load("izhikevich");
        let mut p = ModelKind::Izhikevich.default_params();
        p[6] = nest["params"]["I_e"].as_f64().unwrap();
        for (k, name) in ["a", "b", "c", "d", "V_th"].iter().enumerate() {
            assert_eq!(p[k], nest["defaults"][name].as_f64().unwrap(), "default {name}");
        }
        let mut g = Izhikevich::new(&p, 1, 0.1);
        assert_eq!(
            (g.v[0], g.u[0]),
            (nest["defaults"]["V_m"].as_f64().unwrap(), nest["defaults"]["U_m"].as_f64().unwrap())
        );
        let mut syn = vec![0.0; 2];
        let step = || {
            let mut s = Vec::new();
            g.update(StepInput { syn: &mut syn, i_stim_pa: 0.0, current: &[] }, &mut s);
            (!s.is_empty(), g.v[0])
        };
        crate::models::nest_reference::assert_matches(&nest, step, 1e-9);
    }
}

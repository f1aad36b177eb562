//! `astrocyte_lr_1994`: IP3 / calcium dynamics of an astrocyte (Li & Rinzel 1994,
//! De Young & Keizer 1992), NEST's equations, parameters and update order
//! (../shared/reference/astrocyte/README.md). Presynaptic spikes raise IP3 by
//! `delta_IP3 × weight`; the slow inward current it would send to neurons (`SIC`)
//! is computed as a state variable.
//!
//! Numerics (documented choice): one classical RK4 step of length dt per step,
//! which reproduces NEST's reference solution (SciPy odeint) to 2e-7 relative;
//! NEST itself uses adaptive RKF45 with absolute tolerance 1e-3. Order per step:
//! integrate, clamp Ca to [0, Ca_tot], add spike input to IP3, compute SIC; the
//! injected current of the step (DC generators) is J_noise of the next step.

use super::{positive, ParamError, ParamInfo, StateInfo, StepInput};

/// Parameters, NEST names and defaults (delta_IP3 as in NEST ≥ 3.9).
pub const PARAMS: &[ParamInfo] = &[
    ParamInfo { name: "Ca_tot", default: 2.0, unit: "uM", doc: "total free calcium per cytosolic volume" },
    ParamInfo { name: "IP3_0", default: 0.16, unit: "uM", doc: "baseline IP3" },
    ParamInfo { name: "Kd_IP3_1", default: 0.13, unit: "uM", doc: "first IP3 dissociation constant of the IP3R" },
    ParamInfo { name: "Kd_IP3_2", default: 0.9434, unit: "uM", doc: "second IP3 dissociation constant of the IP3R" },
    ParamInfo { name: "Kd_act", default: 0.08234, unit: "uM", doc: "Ca activation dissociation constant of the IP3R" },
    ParamInfo { name: "Kd_inh", default: 1.049, unit: "uM", doc: "Ca inactivation dissociation constant of the IP3R" },
    ParamInfo { name: "Km_SERCA", default: 0.1, unit: "uM", doc: "half-activation of the SERCA pump" },
    ParamInfo { name: "SIC_scale", default: 1.0, unit: "1", doc: "scale of the slow inward current" },
    ParamInfo { name: "SIC_th", default: 0.19669, unit: "uM", doc: "Ca threshold of the slow inward current" },
    ParamInfo { name: "delta_IP3", default: 0.0002, unit: "uM", doc: "IP3 increase per unit of presynaptic weight" },
    ParamInfo { name: "k_IP3R", default: 0.0002, unit: "1/(uM ms)", doc: "IP3R inactivation binding rate" },
    ParamInfo { name: "rate_IP3R", default: 0.006, unit: "1/ms", doc: "maximal IP3R flux rate" },
    ParamInfo { name: "rate_L", default: 0.00011, unit: "1/ms", doc: "ER leak rate" },
    ParamInfo { name: "rate_SERCA", default: 0.0009, unit: "uM/ms", doc: "maximal SERCA uptake rate" },
    ParamInfo { name: "ratio_ER_cyt", default: 0.185, unit: "1", doc: "ER to cytosol volume ratio" },
    ParamInfo { name: "tau_IP3", default: 7142.0, unit: "ms", doc: "IP3 decay time constant" },
];

/// Index of the cytosolic calcium among the state variables.
pub const CA_VAR: usize = 1;

/// Index of the slow inward current among the state variables.
pub const SIC_VAR: usize = 3;

/// State variables (initial IP3 0.16, Ca 0.073, h 0.793).
pub const STATE: &[StateInfo] = &[
    StateInfo { name: "IP3", unit: "uM" },
    StateInfo { name: "Ca_astro", unit: "uM" },
    StateInfo { name: "h_IP3R", unit: "1" },
    StateInfo { name: "SIC", unit: "pA" },
];

/// Check parameters.
pub fn check(p: &[f64]) -> Result<(), ParamError> {
    for i in 0..PARAMS.len() {
        if i == 7 || i == 8 || i == 9 {
            continue;
        }
        positive(p, i, PARAMS)?;
    }
    if p[9] < 0.0 {
        return Err(ParamError { param: "delta_IP3", message: format!("must be >= 0 uM, got {}", p[9]) });
    }
    Ok(())
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy)]
struct P {
    ca_tot: f64,
    ip3_0: f64,
    kd_ip3_1: f64,
    kd_ip3_2: f64,
    kd_act: f64,
    kd_inh: f64,
    km_serca: f64,
    sic_scale: f64,
    sic_th: f64,
    delta_ip3: f64,
    k_ip3r: f64,
    rate_ip3r: f64,
    rate_l: f64,
    rate_serca: f64,
    ratio: f64,
    tau_ip3: f64,
}

/// Astrocytes of one population on one shard.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AstrocyteLr1994 {
    /// (IP3, Ca, h) per astrocyte.
    y: Vec<[f64; 3]>,
    sic: Vec<f64>,
    j_noise: f64,
    p: P,
    h: f64,
}

#[inline]
fn deriv(p: &P, y: &[f64; 3], j_noise: f64) -> [f64; 3] {
    let (ip3, h) = (y[0], y[2]);
    let c = y[1].clamp(0.0, p.ca_tot);
    let ca_er = (p.ca_tot - c) / p.ratio;
    let m_inf = ip3 / (ip3 + p.kd_ip3_1);
    let n_inf = c / (c + p.kd_act);
    let j_channel = p.ratio * p.rate_ip3r * (m_inf * n_inf * h).powi(3) * (ca_er - c);
    let j_pump = p.rate_serca * c * c / (p.km_serca * p.km_serca + c * c);
    let j_leak = p.ratio * p.rate_l * (ca_er - c);
    let alpha_h = p.k_ip3r * p.kd_inh * (ip3 + p.kd_ip3_1) / (ip3 + p.kd_ip3_2);
    let beta_h = p.k_ip3r * c;
    [(p.ip3_0 - ip3) / p.tau_ip3, j_channel - j_pump + j_leak + j_noise, alpha_h * (1.0 - h) - beta_h * h]
}

impl AstrocyteLr1994 {
    /// `n` astrocytes at NEST's initial state.
    pub fn new(p: &[f64], n: usize, h: f64) -> Self {
        let pp = P {
            ca_tot: p[0],
            ip3_0: p[1],
            kd_ip3_1: p[2],
            kd_ip3_2: p[3],
            kd_act: p[4],
            kd_inh: p[5],
            km_serca: p[6],
            sic_scale: p[7],
            sic_th: p[8],
            delta_ip3: p[9],
            k_ip3r: p[10],
            rate_ip3r: p[11],
            rate_l: p[12],
            rate_serca: p[13],
            ratio: p[14],
            tau_ip3: p[15],
        };
        AstrocyteLr1994 { y: vec![[0.16, 0.073, 0.793]; n], sic: vec![0.0; n], j_noise: 0.0, p: pp, h }
    }

    /// One step for all astrocytes (they never spike).
    pub fn update(&mut self, input: StepInput<'_>, _spikes: &mut Vec<u32>) {
        let (p, h, jn) = (self.p, self.h, self.j_noise);
        for i in 0..self.y.len() {
            let y = self.y[i];
            let add = |a: &[f64; 3], k: &[f64; 3], s: f64| [a[0] + s * k[0], a[1] + s * k[1], a[2] + s * k[2]];
            let k1 = deriv(&p, &y, jn);
            let k2 = deriv(&p, &add(&y, &k1, h / 2.0), jn);
            let k3 = deriv(&p, &add(&y, &k2, h / 2.0), jn);
            let k4 = deriv(&p, &add(&y, &k3, h), jn);
            let mut n = [0.0; 3];
            for j in 0..3 {
                n[j] = y[j] + h / 6.0 * (k1[j] + 2.0 * k2[j] + 2.0 * k3[j] + k4[j]);
            }
            n[1] = n[1].clamp(0.0, p.ca_tot);
            // Weights into astrocytes are >= 0 (validated): only the first channel.
            n[0] += p.delta_ip3 * (input.syn[2 * i] + input.syn[2 * i + 1]);
            input.syn[2 * i] = 0.0;
            input.syn[2 * i + 1] = 0.0;
            let x = 1000.0 * (n[1] - p.sic_th);
            self.sic[i] = if x > 1.0 { p.sic_scale * x.ln() } else { 0.0 };
            self.y[i] = n;
        }
        self.j_noise = input.i_stim_pa;
    }

    /// State variable `var` of astrocyte `i`.
    pub fn state(&self, var: usize, i: usize) -> f64 {
        if var < 3 {
            self.y[i][var]
        } else {
            self.sic[i]
        }
    }

    /// Set state variable `var` of astrocyte `i`.
    pub fn set_state(&mut self, var: usize, i: usize, value: f64) {
        if var < 3 {
            self.y[i][var] = value;
        } else {
            self.sic[i] = value;
        }
    }
}

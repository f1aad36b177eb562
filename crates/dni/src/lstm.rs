//! The cortex: a one-layer LSTM (PyTorch's gate layout and initialisation) with a
//! linear readout, stepped and backpropagated by hand over a batch.

use neuropil_sim::cerebellum::{linear_backward, linear_forward, Params};
use neuropil_sim::rng::Stream;

/// An LSTM layer and its readout.
#[derive(Debug, Clone)]
pub struct Cortex {
    /// Inputs per step.
    pub n_in: usize,
    /// Hidden units.
    pub n_hid: usize,
    /// Readout outputs.
    pub n_out: usize,
    /// LSTM weights `W_ih, W_hh, b_ih, b_hh` (gates i, f, g, o).
    pub lstm: Params,
    /// Readout `W, b`.
    pub readout: Params,
}

/// What one step keeps for backpropagation (rows of the batch).
#[derive(Debug, Clone, Default)]
pub struct StepCache {
    x: Vec<f32>,
    h_prev: Vec<f32>,
    c_prev: Vec<f32>,
    /// Gate activations `[b][i f g o]`.
    gates: Vec<f32>,
    /// tanh of the new cell state.
    tanh_c: Vec<f32>,
    /// The new hidden and cell states.
    pub h: Vec<f32>,
    /// New cell state.
    pub c: Vec<f32>,
    /// Readout output.
    pub y: Vec<f32>,
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl Cortex {
    /// A cortex with weights uniform in ±1/√n_hid (LSTM) and ±1/√n_hid (readout).
    pub fn new(n_in: usize, n_hid: usize, n_out: usize, rng: &mut Stream) -> Cortex {
        let bound = 1.0 / (n_hid as f64).sqrt();
        let mut draw = || ((2.0 * rng.uniform() - 1.0) * bound) as f32;
        let mut lstm = Params::default();
        lstm.alloc(4 * n_hid * n_in, &mut draw);
        lstm.alloc(4 * n_hid * n_hid, &mut draw);
        lstm.alloc(4 * n_hid, &mut draw);
        lstm.alloc(4 * n_hid, &mut draw);
        let mut readout = Params::default();
        readout.alloc(n_out * n_hid, &mut draw);
        readout.alloc(n_out, &mut draw);
        Cortex { n_in, n_hid, n_out, lstm, readout }
    }

    fn offsets(&self) -> [usize; 4] {
        let (i, h) = (self.n_in, self.n_hid);
        let w_hh = 4 * h * i;
        let b_ih = w_hh + 4 * h * h;
        [0, w_hh, b_ih, b_ih + 4 * h]
    }

    /// One step from (`h`, `c`) with input `x` (all `batch` rows) into `cache`.
    pub fn step(&self, x: &[f32], h: &[f32], c: &[f32], batch: usize, cache: &mut StepCache) {
        let (n_in, n_hid) = (self.n_in, self.n_hid);
        let [w_ih, w_hh, b_ih, b_hh] = self.offsets();
        let p = &self.lstm.value;
        let g4 = 4 * n_hid;
        cache.x.clear();
        cache.x.extend_from_slice(x);
        cache.h_prev.clear();
        cache.h_prev.extend_from_slice(h);
        cache.c_prev.clear();
        cache.c_prev.extend_from_slice(c);
        let mut pre = vec![0.0f32; batch * g4];
        let mut rec = vec![0.0f32; batch * g4];
        linear_forward(&p[w_ih..w_hh], &p[b_ih..b_hh], x, n_in, &mut pre);
        linear_forward(&p[w_hh..b_ih], &p[b_hh..b_hh + g4], h, n_hid, &mut rec);
        cache.gates.clear();
        cache.gates.resize(batch * g4, 0.0);
        cache.c.clear();
        cache.c.resize(batch * n_hid, 0.0);
        cache.h.clear();
        cache.h.resize(batch * n_hid, 0.0);
        cache.tanh_c.clear();
        cache.tanh_c.resize(batch * n_hid, 0.0);
        for b in 0..batch {
            let z = |k: usize| pre[b * g4 + k] + rec[b * g4 + k];
            for j in 0..n_hid {
                let i_g = sigmoid(z(j));
                let f_g = sigmoid(z(n_hid + j));
                let g_g = z(2 * n_hid + j).tanh();
                let o_g = sigmoid(z(3 * n_hid + j));
                let gates = &mut cache.gates[b * g4..(b + 1) * g4];
                gates[j] = i_g;
                gates[n_hid + j] = f_g;
                gates[2 * n_hid + j] = g_g;
                gates[3 * n_hid + j] = o_g;
                let c_new = f_g * c[b * n_hid + j] + i_g * g_g;
                let t = c_new.tanh();
                cache.c[b * n_hid + j] = c_new;
                cache.tanh_c[b * n_hid + j] = t;
                cache.h[b * n_hid + j] = o_g * t;
            }
        }
        let r = &self.readout.value;
        let w_end = self.n_out * n_hid;
        cache.y.clear();
        cache.y.resize(batch * self.n_out, 0.0);
        linear_forward(&r[..w_end], &r[w_end..], &cache.h, n_hid, &mut cache.y);
    }

    /// Backpropagate one step: `dy` into the readout output, `dh`/`dc` into the new
    /// states (overwritten with the gradients for the previous states). Parameter
    /// gradients accumulate.
    pub fn step_backward(&mut self, cache: &StepCache, dy: Option<&[f32]>, dh: &mut [f32], dc: &mut [f32]) {
        let (n_in, n_hid) = (self.n_in, self.n_hid);
        let batch = dh.len() / n_hid;
        if let Some(dy) = dy {
            let w_end = self.n_out * n_hid;
            let (value, grad) = (&self.readout.value, &mut self.readout.grad);
            let (gw, gb) = grad.split_at_mut(w_end);
            linear_backward(&value[..w_end], &cache.h, dy, n_hid, gw, gb, Some(dh));
        }
        let g4 = 4 * n_hid;
        let mut dpre = vec![0.0f32; batch * g4];
        for b in 0..batch {
            let gates = &cache.gates[b * g4..(b + 1) * g4];
            for j in 0..n_hid {
                let k = b * n_hid + j;
                let (i_g, f_g, g_g, o_g) = (gates[j], gates[n_hid + j], gates[2 * n_hid + j], gates[3 * n_hid + j]);
                let t = cache.tanh_c[k];
                let dc_total = dc[k] + dh[k] * o_g * (1.0 - t * t);
                let d = &mut dpre[b * g4..(b + 1) * g4];
                d[j] = dc_total * g_g * i_g * (1.0 - i_g);
                d[n_hid + j] = dc_total * cache.c_prev[k] * f_g * (1.0 - f_g);
                d[2 * n_hid + j] = dc_total * i_g * (1.0 - g_g * g_g);
                d[3 * n_hid + j] = dh[k] * t * o_g * (1.0 - o_g);
                dc[k] = dc_total * f_g;
            }
        }
        let [w_ih, w_hh, b_ih, b_hh] = self.offsets();
        let (value, grad) = (&self.lstm.value, &mut self.lstm.grad);
        let (g_ih, rest) = grad.split_at_mut(w_hh);
        let (g_hh, rest) = rest.split_at_mut(b_ih - w_hh);
        let (g_bih, g_bhh) = rest.split_at_mut(b_hh - b_ih);
        linear_backward(&value[w_ih..w_hh], &cache.x, &dpre, n_in, g_ih, g_bih, None);
        dh.fill(0.0);
        linear_backward(&value[w_hh..b_ih], &cache.h_prev, &dpre, n_hid, g_hh, g_bhh, Some(dh));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loss Σ_t (y_t · u_t) + (h_T · a) + (c_T · a') over a 3-step roll-out.
    fn rollout_loss(cx: &Cortex, xs: &[Vec<f32>], u: &[f32], a: &[f32]) -> f64 {
        let batch = 2;
        let mut h = vec![0.1f32; batch * cx.n_hid];
        let mut c = vec![-0.2f32; batch * cx.n_hid];
        let mut cache = StepCache::default();
        let mut loss = 0.0f64;
        for x in xs {
            cx.step(x, &h, &c, batch, &mut cache);
            loss += cache.y.iter().zip(u).map(|(&y, &w)| (y * w) as f64).sum::<f64>();
            h = cache.h.clone();
            c = cache.c.clone();
        }
        loss += h.iter().chain(&c).zip(a).map(|(&v, &w)| (v * w) as f64).sum::<f64>();
        loss
    }

    /// Backpropagation through time agrees with central finite differences for
    /// every LSTM and readout parameter.
    #[test]
    fn bptt_matches_finite_differences() {
        let mut cx = Cortex::new(2, 5, 2, &mut Stream::new(1, &[]));
        let batch = 2;
        let xs: Vec<Vec<f32>> =
            (0..3).map(|t| (0..batch * 2).map(|k| ((t * 3 + k) % 5) as f32 * 0.3 - 0.6).collect()).collect();
        let u: Vec<f32> = (0..batch * 2).map(|k| 0.5 - 0.3 * k as f32).collect();
        let a: Vec<f32> = (0..2 * batch * 5).map(|k| ((k * 7) % 11) as f32 * 0.1 - 0.5).collect();
        // Analytic.
        let mut caches = Vec::new();
        let mut h = vec![0.1f32; batch * 5];
        let mut c = vec![-0.2f32; batch * 5];
        for x in &xs {
            let mut cache = StepCache::default();
            cx.step(x, &h, &c, batch, &mut cache);
            h = cache.h.clone();
            c = cache.c.clone();
            caches.push(cache);
        }
        let mut dh = a[..batch * 5].to_vec();
        let mut dc = a[batch * 5..].to_vec();
        for cache in caches.iter().rev() {
            cx.step_backward(cache, Some(&u), &mut dh, &mut dc);
        }
        for which in 0..2 {
            let n = if which == 0 { cx.lstm.len() } else { cx.readout.len() };
            let set = |cx: &mut Cortex, i: usize, v: f32| {
                if which == 0 {
                    cx.lstm.value[i] = v
                } else {
                    cx.readout.value[i] = v
                }
            };
            for i in 0..n {
                let v = if which == 0 { cx.lstm.value[i] } else { cx.readout.value[i] };
                let h = 1e-2f32;
                set(&mut cx, i, v + h);
                let up = rollout_loss(&cx, &xs, &u, &a);
                set(&mut cx, i, v - h);
                let down = rollout_loss(&cx, &xs, &u, &a);
                set(&mut cx, i, v);
                let numeric = (up - down) / (2.0 * h as f64);
                let analytic = if which == 0 { cx.lstm.grad[i] } else { cx.readout.grad[i] } as f64;
                assert!(
                    (numeric - analytic).abs() < 2e-3 + 1e-2 * numeric.abs(),
                    "set {which} param {i}: numeric {numeric}, bptt {analytic}"
                );
            }
        }
    }
}

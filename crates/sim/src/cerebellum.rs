//! Cerebellar modules as decoupled neural interfaces (Pemberton, Boven, Apps &
//! Costa, NeurIPS 2021): a module reads a cortical state (mossy fibres), expands it
//! in a granule layer of rectified units with sparse random fan-in, and a linear
//! Purkinje / deep-nuclei readout predicts the feedback the cortex will receive. It
//! learns when the true feedback arrives (the climbing-fibre signal) by descending
//! the squared error of its earlier prediction; for the linear readout this is the
//! Marr–Albus–Ito LMS rule. The same type serves the rate-based DNI experiment
//! (`neuropil-dni`, predicting BPTT gradients) and the spiking simulator (a module
//! between populations, [`crate::network::CerebellarSpec`]).
//!
//! Arithmetic is `f32` in a fixed order (eight running sums per dot product, no
//! fused multiply-add), so a module's outputs are bit-identical on every machine,
//! shard count and node count.

use crate::rng::Stream;

pub mod runtime;

/// Trainable parameters of one model in one flat vector, with their gradients and
/// Adam moments (same layout).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Params {
    /// Parameter values.
    pub value: Vec<f32>,
    /// Accumulated gradients (zeroed by [`Params::zero_grad`]).
    pub grad: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Params {
    /// Whether `other` holds as many values (and gradients and moments) as this.
    pub fn same_len(&self, other: &Params) -> bool {
        let lens = |p: &Params| [p.value.len(), p.grad.len(), p.m.len(), p.v.len()];
        lens(self) == lens(other)
    }

    /// Reserve `n` parameters, initialised by `init`; returns their offset.
    pub fn alloc(&mut self, n: usize, mut init: impl FnMut() -> f32) -> usize {
        let at = self.value.len();
        self.value.extend((0..n).map(|_| init()));
        self.grad.resize(at + n, 0.0);
        self.m.resize(at + n, 0.0);
        self.v.resize(at + n, 0.0);
        at
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.value.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }

    /// Zero the gradients.
    pub fn zero_grad(&mut self) {
        self.grad.fill(0.0);
    }

    /// Sum of squared gradients (for clipping by global norm).
    pub fn grad_sq(&self) -> f64 {
        self.grad.iter().map(|&g| g as f64 * g as f64).sum()
    }
}

/// Adam with PyTorch's conventions (bias-corrected moments, `eps` outside the root).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Adam {
    /// Learning rate.
    pub lr: f32,
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Denominator guard.
    pub eps: f32,
}

impl Adam {
    /// Adam with the given rate and betas, `eps` = 1e-8.
    pub fn new(lr: f32, beta1: f32, beta2: f32) -> Adam {
        Adam { lr, beta1, beta2, eps: 1e-8 }
    }

    /// Step `t` (1-based) on every set. With `clip_norm`, gradients are first scaled
    /// so that their global norm over all sets is at most `clip_norm`.
    pub fn step(&self, t: u32, sets: &mut [&mut Params], clip_norm: Option<f32>) {
        let mut scale = 1.0f32;
        if let Some(max) = clip_norm {
            let norm = sets.iter().map(|s| s.grad_sq()).sum::<f64>().sqrt();
            if norm > max as f64 {
                scale = (max as f64 / (norm + 1e-6)) as f32;
            }
        }
        let bc1 = 1.0 - self.beta1.powi(t as i32);
        let bc2 = 1.0 - self.beta2.powi(t as i32);
        let step = self.lr / bc1;
        for s in sets.iter_mut() {
            let Params { value, grad, m, v } = &mut **s;
            for i in 0..value.len() {
                let g = grad[i] * scale;
                m[i] = self.beta1 * m[i] + (1.0 - self.beta1) * g;
                v[i] = self.beta2 * v[i] + (1.0 - self.beta2) * g * g;
                value[i] -= step * m[i] / ((v[i] / bc2).sqrt() + self.eps);
            }
        }
    }
}

/// Dot product with eight running sums (a fixed order the compiler vectorises).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// `y += alpha · x`.
#[inline]
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

/// `y[b, o] = Σ_i x[b, i] · w[o, i] + bias[o]` for a batch of rows.
pub fn linear_forward(w: &[f32], bias: &[f32], x: &[f32], n_in: usize, y: &mut [f32]) {
    let n_out = bias.len();
    for (xr, yr) in x.chunks_exact(n_in).zip(y.chunks_exact_mut(n_out)) {
        for o in 0..n_out {
            yr[o] = dot(&w[o * n_in..(o + 1) * n_in], xr) + bias[o];
        }
    }
}

/// Gradients of [`linear_forward`]: adds `dy ⊗ x` to `gw`, `dy` to `gb`, and (when
/// asked) `dy · w` to `dx`. Zero entries of `dy` (rectified units) are skipped.
pub fn linear_backward(
    w: &[f32],
    x: &[f32],
    dy: &[f32],
    n_in: usize,
    gw: &mut [f32],
    gb: &mut [f32],
    mut dx: Option<&mut [f32]>,
) {
    let n_out = gb.len();
    for (b, (xr, dyr)) in x.chunks_exact(n_in).zip(dy.chunks_exact(n_out)).enumerate() {
        for (o, &d) in dyr.iter().enumerate() {
            if d == 0.0 {
                continue;
            }
            gb[o] += d;
            axpy(d, xr, &mut gw[o * n_in..(o + 1) * n_in]);
            if let Some(dx) = dx.as_deref_mut() {
                axpy(d, &w[o * n_in..(o + 1) * n_in], &mut dx[b * n_in..(b + 1) * n_in]);
            }
        }
    }
}

/// The shape of a cerebellar module.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModuleShape {
    /// Mossy-fibre inputs.
    pub inputs: usize,
    /// Sizes of the granule layers (rectified), input side first; at least one.
    pub granule: Vec<usize>,
    /// Inputs each unit of the first granule layer keeps (sparse random fan-in);
    /// `None`: all.
    pub fan_in: Option<usize>,
    /// Purkinje / deep-nuclei outputs.
    pub outputs: usize,
}

/// Why a module cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// A layer has no units.
    #[error("{0} must be at least 1")]
    Empty(&'static str),
    /// The fan-in is impossible.
    #[error("fan_in {fan_in} must be between 1 and the number of mossy-fibre inputs ({inputs})")]
    FanIn {
        /// Asked fan-in.
        fan_in: usize,
        /// Inputs available.
        inputs: usize,
    },
}

impl ModuleShape {
    /// Check the shape.
    pub fn check(&self) -> Result<(), ShapeError> {
        if self.inputs == 0 {
            return Err(ShapeError::Empty("inputs (mossy fibres)"));
        }
        if self.granule.is_empty() || self.granule.contains(&0) {
            return Err(ShapeError::Empty("granule layer size"));
        }
        if self.outputs == 0 {
            return Err(ShapeError::Empty("outputs"));
        }
        if let Some(k) = self.fan_in {
            if k == 0 || k > self.inputs {
                return Err(ShapeError::FanIn { fan_in: k, inputs: self.inputs });
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq)]
struct Layer {
    w: usize,
    b: usize,
    n_in: usize,
    n_out: usize,
}

/// A cerebellar module: granule layers and a Purkinje readout that starts at zero
/// (a new module predicts no feedback), trained by climbing-fibre errors.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct CerebellarModule {
    shape: ModuleShape,
    /// Weights and biases, layer by layer.
    pub params: Params,
    layers: Vec<Layer>,
    /// Sparse fan-in of the first granule layer: 1 where a connection exists
    /// (empty: dense).
    mask: Vec<f32>,
}

/// Activations of one forward pass, kept for the learning step.
#[derive(Debug, Clone, Default)]
pub struct Tape {
    batch: usize,
    /// `acts[0]`: input; `acts[l + 1]`: output of layer `l`.
    acts: Vec<Vec<f32>>,
    grads: Vec<Vec<f32>>,
}

impl Tape {
    /// The module's output of the last forward pass (`batch × outputs`).
    pub fn output(&self) -> &[f32] {
        self.acts.last().map_or(&[][..], |a| &a[..])
    }

    /// Rows in the last forward pass.
    pub fn batch(&self) -> usize {
        self.batch
    }
}

impl CerebellarModule {
    /// Whether `other` has this module's shape: its layers, parameter and mask
    /// sizes (a module restored from a checkpoint must have, before it runs).
    pub fn same_shape(&self, other: &CerebellarModule) -> bool {
        self.shape == other.shape
            && self.layers == other.layers
            && self.mask.len() == other.mask.len()
            && self.params.same_len(&other.params)
    }

    /// A module of `shape`; granule weights drawn like PyTorch's `Linear`
    /// (uniform ±1/√fan-in) from `rng`, fan-in drawn without replacement, readout zero.
    pub fn new(shape: ModuleShape, rng: &mut Stream) -> Result<CerebellarModule, ShapeError> {
        shape.check()?;
        let mut params = Params::default();
        let mut layers = Vec::new();
        let mut mask = Vec::new();
        let mut n_in = shape.inputs;
        for (l, &n_out) in shape.granule.iter().chain(std::iter::once(&shape.outputs)).enumerate() {
            let readout = l == shape.granule.len();
            let sparse = if l == 0 { shape.fan_in.filter(|&k| k < n_in) } else { None };
            let bound = 1.0 / (sparse.unwrap_or(n_in) as f64).sqrt();
            let mut draw = || if readout { 0.0 } else { ((2.0 * rng.uniform() - 1.0) * bound) as f32 };
            let w = params.alloc(n_in * n_out, &mut draw);
            let b = params.alloc(n_out, &mut draw);
            if let Some(k) = sparse {
                mask = vec![0.0; n_in * n_out];
                let mut pool: Vec<usize> = (0..n_in).collect();
                for o in 0..n_out {
                    for j in 0..k {
                        let pick = j + rng.below((n_in - j) as u64) as usize;
                        pool.swap(j, pick);
                        mask[o * n_in + pool[j]] = 1.0;
                    }
                }
                for (v, m) in params.value[w..w + n_in * n_out].iter_mut().zip(&mask) {
                    *v *= m;
                }
            }
            layers.push(Layer { w, b, n_in, n_out });
            n_in = n_out;
        }
        Ok(CerebellarModule { shape, params, layers, mask })
    }

    /// The module's shape.
    pub fn shape(&self) -> &ModuleShape {
        &self.shape
    }

    /// Predict from `x` (`batch × inputs`, row-major); the output is `tape.output()`.
    pub fn forward(&self, x: &[f32], batch: usize, tape: &mut Tape) {
        debug_assert_eq!(x.len(), batch * self.shape.inputs);
        tape.batch = batch;
        tape.acts.resize_with(self.layers.len() + 1, Vec::new);
        tape.acts[0].clear();
        tape.acts[0].extend_from_slice(x);
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let (before, after) = tape.acts.split_at_mut(l + 1);
            let y = &mut after[0];
            y.clear();
            y.resize(batch * layer.n_out, 0.0);
            let p = &self.params.value;
            linear_forward(
                &p[layer.w..layer.w + layer.n_in * layer.n_out],
                &p[layer.b..layer.b + layer.n_out],
                &before[l],
                layer.n_in,
                y,
            );
            if l < last {
                y.iter_mut().for_each(|v| *v = v.max(0.0));
            }
        }
    }

    /// Accumulate the parameter gradients of `Σ dout · output` for the pass in `tape`.
    pub fn backward(&mut self, tape: &mut Tape, dout: &[f32]) {
        let n = self.layers.len();
        tape.grads.resize_with(n + 1, Vec::new);
        tape.grads[n].clear();
        tape.grads[n].extend_from_slice(dout);
        for l in (0..n).rev() {
            let layer = self.layers[l];
            let (lower, upper) = tape.grads.split_at_mut(l + 1);
            let dy = &mut upper[0];
            if l + 1 < n {
                // Through the rectifier.
                for (d, &a) in dy.iter_mut().zip(&tape.acts[l + 1]) {
                    if a <= 0.0 {
                        *d = 0.0;
                    }
                }
            }
            let dx = &mut lower[l];
            let want_dx = l > 0;
            if want_dx {
                dx.clear();
                dx.resize(tape.batch * layer.n_in, 0.0);
            }
            let (value, grad) = (&self.params.value, &mut self.params.grad);
            let (gw, gb) = grad[layer.w..layer.b + layer.n_out].split_at_mut(layer.n_in * layer.n_out);
            linear_backward(
                &value[layer.w..layer.w + layer.n_in * layer.n_out],
                &tape.acts[l],
                dy,
                layer.n_in,
                gw,
                gb,
                if want_dx { Some(&mut dx[..]) } else { None },
            );
        }
        if !self.mask.is_empty() {
            let l = self.layers[0];
            for (g, m) in self.params.grad[l.w..l.w + l.n_in * l.n_out].iter_mut().zip(&self.mask) {
                *g *= m;
            }
        }
    }

    /// The climbing-fibre step: accumulate the gradient of the mean squared error
    /// between the prediction in `tape` and the feedback that arrived (`target`,
    /// same layout); returns that error.
    pub fn learn(&mut self, tape: &mut Tape, target: &[f32]) -> f32 {
        let out = tape.output();
        debug_assert_eq!(out.len(), target.len());
        let n = out.len().max(1) as f32;
        let mut loss = 0.0f32;
        let dout: Vec<f32> = out
            .iter()
            .zip(target)
            .map(|(&p, &t)| {
                loss += (p - t) * (p - t);
                2.0 * (p - t) / n
            })
            .collect();
        self.backward(tape, &dout);
        loss / n
    }

    /// One plain gradient-descent step of size `rate` on the accumulated gradients,
    /// then zero them (the online rule of the spiking module; the DNI experiment
    /// uses [`Adam`]).
    pub fn descend(&mut self, rate: f32) {
        let Params { value, grad, .. } = &mut self.params;
        for (v, g) in value.iter_mut().zip(grad.iter_mut()) {
            *v -= rate * *g;
            *g = 0.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(fan_in: Option<usize>) -> CerebellarModule {
        let shape = ModuleShape { inputs: 6, granule: vec![9, 7], fan_in, outputs: 3 };
        let mut m = CerebellarModule::new(shape, &mut Stream::new(3, &[1])).unwrap();
        // A nonzero readout, so that gradients reach the granule layers.
        let mut rng = Stream::new(4, &[2]);
        let l = *m.layers.last().unwrap();
        for v in &mut m.params.value[l.w..] {
            *v = (rng.uniform() - 0.5) as f32;
        }
        m
    }

    fn loss(m: &CerebellarModule, x: &[f32], target: &[f32]) -> f64 {
        let mut tape = Tape::default();
        m.forward(x, 2, &mut tape);
        let out = tape.output();
        out.iter().zip(target).map(|(&p, &t)| ((p - t) as f64).powi(2)).sum::<f64>() / out.len() as f64
    }

    /// Backpropagation agrees with central finite differences of the loss.
    #[test]
    fn gradients_match_finite_differences() {
        for fan_in in [None, Some(2)] {
            let mut m = module(fan_in);
            let x: Vec<f32> = (0..12).map(|i| ((i * 7 % 5) as f32 - 2.0) * 0.4).collect();
            let target: Vec<f32> = (0..6).map(|i| (i as f32 - 2.5) * 0.3).collect();
            let mut tape = Tape::default();
            m.forward(&x, 2, &mut tape);
            m.learn(&mut tape, &target);
            let analytic = m.params.grad.clone();
            let (mut checked, mut kinks) = (0, 0);
            for (i, &backprop) in analytic.iter().enumerate() {
                if !m.mask.is_empty() && i < m.mask.len() && m.mask[i] == 0.0 {
                    assert_eq!(backprop, 0.0, "masked weight {i} gets no gradient");
                    continue;
                }
                let numeric = |m: &mut CerebellarModule, h: f32| {
                    let v = m.params.value[i];
                    m.params.value[i] = v + h;
                    let up = loss(m, &x, &target);
                    m.params.value[i] = v - h;
                    let down = loss(m, &x, &target);
                    m.params.value[i] = v;
                    (up - down) / (2.0 * h as f64)
                };
                let (coarse, fine) = (numeric(&mut m, 1e-2), numeric(&mut m, 5e-3));
                if (coarse - fine).abs() > 1e-3 + 1e-2 * fine.abs() {
                    kinks += 1; // the step crosses a rectifier's kink
                    continue;
                }
                assert!(
                    (fine - backprop as f64).abs() < 2e-3 + 2e-2 * fine.abs(),
                    "param {i}: numeric {fine}, backprop {backprop}"
                );
                checked += 1;
            }
            assert!(checked > 100 && kinks * 20 < checked, "checked {checked}, kinks {kinks}");
        }
    }

    /// The readout starts at zero, the fan-in is exact, and LMS learning on a
    /// linear target drives the error down.
    #[test]
    fn starts_silent_and_learns_a_mapping() {
        let shape = ModuleShape { inputs: 4, granule: vec![64], fan_in: Some(2), outputs: 1 };
        let mut m = CerebellarModule::new(shape.clone(), &mut Stream::new(9, &[0])).unwrap();
        let per_unit: Vec<f32> = m.mask.chunks(4).map(|r| r.iter().sum()).collect();
        assert!(per_unit.iter().all(|&k| k == 2.0));
        let mut tape = Tape::default();
        let mut rng = Stream::new(1, &[]);
        let mut errors = Vec::new();
        for step in 0..3000 {
            let x: Vec<f32> = (0..4).map(|_| rng.uniform() as f32).collect();
            let target = [x[0] - 0.5 * x[3] + 0.2];
            m.forward(&x, 1, &mut tape);
            if step == 0 {
                assert_eq!(tape.output(), &[0.0]);
            }
            errors.push(m.learn(&mut tape, &target));
            m.descend(0.02);
        }
        let early: f32 = errors[..200].iter().sum::<f32>() / 200.0;
        let late: f32 = errors[2800..].iter().sum::<f32>() / 200.0;
        assert!(late < 0.1 * early, "early {early}, late {late}");
        assert!(CerebellarModule::new(ModuleShape { granule: vec![0], ..shape.clone() }, &mut rng).is_err());
        assert_eq!(
            CerebellarModule::new(ModuleShape { fan_in: Some(5), ..shape }, &mut rng).unwrap_err().to_string(),
            "fan_in 5 must be between 1 and the number of mossy-fibre inputs (4)"
        );
    }
}

//! Training the cortex by truncated BPTT, with or without a cerebellar module that
//! predicts the gradient arriving at the end of each window (the algorithm of the
//! reference code, `../shared/reference/cerebellar_dni.md`).

use crate::lstm::{Cortex, StepCache};
use crate::task::{dataset, has_target, Sequence, OUT, STEPS};
use neuropil_sim::cerebellum::{Adam, CerebellarModule, ModuleShape, Tape};
use neuropil_sim::rng::Stream;

/// Which lesion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LesionKind {
    /// The module is removed: no more predictions.
    Cerebellum,
    /// The inferior olive is lesioned: no climbing-fibre teaching, so the module
    /// keeps predicting with frozen weights.
    InferiorOlive,
}

/// A lesion from the start of an epoch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lesion {
    /// What is lesioned.
    pub kind: LesionKind,
    /// First epoch (1-based) trained with the lesion.
    pub epoch: usize,
}

/// One training run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Config {
    /// LSTM hidden units.
    pub hidden: usize,
    /// Granule layer sizes of the cerebellar module; `None`: no module.
    pub cerebellum: Option<Vec<usize>>,
    /// Sparse mossy-fibre fan-in of the first granule layer (`None`: dense).
    pub fan_in: Option<usize>,
    /// Truncation window K in steps; ≥ 10 is full BPTT.
    pub truncation: usize,
    /// Adam learning rate.
    pub lr: f32,
    /// Adam betas.
    pub betas: (f32, f32),
    /// Sequences per batch.
    pub batch: usize,
    /// Epochs.
    pub epochs: usize,
    /// Sequences in the data set (train + validation).
    pub sequences: usize,
    /// Fraction used for training.
    pub train_fraction: f64,
    /// Scale of the predicted gradient injected at a window's end.
    pub synthetic_scale: f32,
    /// Global gradient-norm clip.
    pub clip: f32,
    /// Lesion, if any.
    pub lesion: Option<Lesion>,
    /// Seed of the weights, the data and the shuffles.
    pub seed: u64,
}

impl Config {
    /// The reference hyperparameters for the simple line-drawing task: LSTM 50,
    /// cerebellum 2 × 400, Adam 1e-3 (0.9, 0.98), batch 50, 100 epochs, 1000
    /// sequences (80/20), K = 1, synthetic gradients scaled by 0.1, clip 1.0.
    pub fn reference(seed: u64) -> Config {
        Config {
            hidden: 50,
            cerebellum: Some(vec![400, 400]),
            fan_in: None,
            truncation: 1,
            lr: 1e-3,
            betas: (0.9, 0.98),
            batch: 50,
            epochs: 100,
            sequences: 1000,
            train_fraction: 0.8,
            synthetic_scale: 0.1,
            clip: 1.0,
            lesion: None,
            seed,
        }
    }
}

/// Figures of one epoch.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Epoch {
    /// Epoch (0: before training).
    pub epoch: usize,
    /// Mean training loss over the epoch's batches (MSE at target steps).
    pub train_mse: f64,
    /// Validation MSE at the target steps after the epoch.
    pub validation_mse: f64,
    /// Pearson correlation between the module's predicted gradients and the true
    /// (bootstrapped) gradients at window starts over the epoch (NaN without
    /// an active module).
    pub correlation: f64,
    /// Mean squared error of those predictions (NaN without an active module).
    pub module_mse: f64,
}

/// Running sums for a Pearson correlation.
#[derive(Default)]
struct Pearson {
    n: f64,
    sx: f64,
    sy: f64,
    sxx: f64,
    syy: f64,
    sxy: f64,
}

impl Pearson {
    fn add(&mut self, x: &[f32], y: &[f32]) {
        for (&a, &b) in x.iter().zip(y) {
            let (a, b) = (a as f64, b as f64);
            self.n += 1.0;
            self.sx += a;
            self.sy += b;
            self.sxx += a * a;
            self.syy += b * b;
            self.sxy += a * b;
        }
    }

    fn value(&self) -> f64 {
        if self.n < 2.0 {
            return f64::NAN;
        }
        let cov = self.sxy - self.sx * self.sy / self.n;
        let vx = self.sxx - self.sx * self.sx / self.n;
        let vy = self.syy - self.sy * self.sy / self.n;
        if vx <= 0.0 || vy <= 0.0 {
            return 0.0;
        }
        cov / (vx * vy).sqrt()
    }
}

/// `[h, c]` per row: the mossy-fibre input of the module.
fn state(h: &[f32], c: &[f32], n_hid: usize, out: &mut Vec<f32>) {
    out.clear();
    for (hr, cr) in h.chunks_exact(n_hid).zip(c.chunks_exact(n_hid)) {
        out.extend_from_slice(hr);
        out.extend_from_slice(cr);
    }
}

/// Validation MSE over the target steps of `set` (one batch).
fn validate(cortex: &Cortex, set: &[Sequence]) -> f64 {
    let b = set.len();
    let n_hid = cortex.n_hid;
    let (mut h, mut c) = (vec![0.0; b * n_hid], vec![0.0; b * n_hid]);
    let mut cache = StepCache::default();
    let (mut sum, mut n) = (0.0f64, 0usize);
    for t in 0..STEPS {
        let x: Vec<f32> = set.iter().map(|s| s.input(t)).collect();
        cortex.step(&x, &h, &c, b, &mut cache);
        if has_target(t) {
            for (s, y) in set.iter().zip(cache.y.chunks_exact(OUT)) {
                let target = s.target(t);
                for k in 0..OUT {
                    sum += ((y[k] - target[k]) as f64).powi(2);
                    n += 1;
                }
            }
        }
        std::mem::swap(&mut h, &mut cache.h);
        std::mem::swap(&mut c, &mut cache.c);
    }
    sum / n.max(1) as f64
}

/// Train per `cfg`; `progress` sees every epoch (0 first: before training).
pub fn train(cfg: &Config, progress: &mut dyn FnMut(&Epoch)) -> Vec<Epoch> {
    train_model(cfg, progress).0
}

/// What a trained cortex draws for `class`: its output at each of the 10 steps.
pub fn draw(cortex: &Cortex, class: usize) -> Vec<[f32; OUT]> {
    let seq = Sequence { class };
    let n_hid = cortex.n_hid;
    let (mut h, mut c) = (vec![0.0; n_hid], vec![0.0; n_hid]);
    let mut cache = StepCache::default();
    (0..STEPS)
        .map(|t| {
            cortex.step(&[seq.input(t)], &h, &c, 1, &mut cache);
            std::mem::swap(&mut h, &mut cache.h);
            std::mem::swap(&mut c, &mut cache.c);
            [cache.y[0], cache.y[1]]
        })
        .collect()
}

/// [`train`], also returning the trained cortex.
pub fn train_model(cfg: &Config, progress: &mut dyn FnMut(&Epoch)) -> (Vec<Epoch>, Cortex) {
    let (train_set, val_set) = dataset(cfg.sequences, cfg.train_fraction, cfg.seed);
    let mut cortex = Cortex::new(1, cfg.hidden, OUT, &mut Stream::new(cfg.seed, &[1]));
    let n_hid = cfg.hidden;
    let mut module = cfg.cerebellum.as_ref().map(|granule| {
        let shape = ModuleShape { inputs: 2 * n_hid, granule: granule.clone(), fan_in: cfg.fan_in, outputs: 2 * n_hid };
        CerebellarModule::new(shape, &mut Stream::new(cfg.seed, &[2])).expect("the experiment's module shape is valid")
    });
    let adam = Adam::new(cfg.lr, cfg.betas.0, cfg.betas.1);
    let k = cfg.truncation.clamp(1, STEPS);
    let targets_per_sequence = (0..STEPS).filter(|&t| has_target(t)).count();
    let mut history = Vec::with_capacity(cfg.epochs + 1);
    let first = Epoch {
        epoch: 0,
        train_mse: f64::NAN,
        validation_mse: validate(&cortex, &val_set),
        correlation: f64::NAN,
        module_mse: f64::NAN,
    };
    progress(&first);
    history.push(first);
    let mut order: Vec<usize> = (0..train_set.len()).collect();
    let mut adam_t = 0u32;
    let (mut tape_start, mut tape_end) = (Tape::default(), Tape::default());
    let mut caches: Vec<StepCache> = (0..STEPS).map(|_| StepCache::default()).collect();
    let mut mossy = Vec::new();
    for epoch in 1..=cfg.epochs {
        let lesioned = |kind| cfg.lesion.is_some_and(|l| l.kind == kind && epoch >= l.epoch);
        let active = module.is_some() && !lesioned(LesionKind::Cerebellum);
        let teaching = active && !lesioned(LesionKind::InferiorOlive);
        // Shuffle (Fisher–Yates from a stream keyed by the epoch).
        let mut rng = Stream::new(cfg.seed, &[3, epoch as u64]);
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let mut corr = Pearson::default();
        let (mut module_sq, mut module_n) = (0.0f64, 0usize);
        let (mut loss_sum, mut batches) = (0.0f64, 0usize);
        for chunk in order.chunks(cfg.batch) {
            let batch: Vec<Sequence> = chunk.iter().map(|&i| train_set[i]).collect();
            let b = batch.len();
            cortex.lstm.zero_grad();
            cortex.readout.zero_grad();
            if let Some(m) = &mut module {
                m.params.zero_grad();
            }
            let (mut h, mut c) = (vec![0.0f32; b * n_hid], vec![0.0f32; b * n_hid]);
            if let (true, Some(m)) = (active, &module) {
                state(&h, &c, n_hid, &mut mossy);
                m.forward(&mossy, b, &mut tape_start);
            }
            let mut batch_loss = 0.0f64;
            let mut s = 0;
            while s < STEPS {
                let e = (s + k).min(STEPS);
                for t in s..e {
                    let x: Vec<f32> = batch.iter().map(|q| q.input(t)).collect();
                    let (hp, cp) = if t == s { (&h, &c) } else { (&caches[t - 1].h, &caches[t - 1].c) };
                    let (hp, cp) = (hp.clone(), cp.clone());
                    cortex.step(&x, &hp, &cp, b, &mut caches[t]);
                }
                let n_targets = (s..e).filter(|&t| has_target(t)).count();
                // The predicted future feedback at the window's end.
                let (mut dh, mut dc) = (vec![0.0f32; b * n_hid], vec![0.0f32; b * n_hid]);
                if let (true, Some(m)) = (active && e < STEPS, &module) {
                    state(&caches[e - 1].h, &caches[e - 1].c, n_hid, &mut mossy);
                    m.forward(&mossy, b, &mut tape_end);
                    for (row, pred) in tape_end.output().chunks_exact(2 * n_hid).enumerate() {
                        for j in 0..n_hid {
                            dh[row * n_hid + j] = cfg.synthetic_scale * pred[j];
                            dc[row * n_hid + j] = cfg.synthetic_scale * pred[n_hid + j];
                        }
                    }
                }
                for t in (s..e).rev() {
                    let dy = has_target(t).then(|| {
                        let norm = 2.0 / (b * OUT * n_targets) as f32;
                        let mut dy = vec![0.0f32; b * OUT];
                        for (r, q) in batch.iter().enumerate() {
                            let target = q.target(t);
                            for o in 0..OUT {
                                let err = caches[t].y[r * OUT + o] - target[o];
                                batch_loss += (err as f64).powi(2) / (b * OUT * targets_per_sequence) as f64;
                                dy[r * OUT + o] = norm * err;
                            }
                        }
                        dy
                    });
                    cortex.step_backward(&caches[t], dy.as_deref(), &mut dh, &mut dc);
                }
                // dh, dc: the bootstrapped true gradient at the window start — the
                // climbing-fibre signal for the prediction made there.
                if let (true, Some(m)) = (active, &mut module) {
                    let mut truth = Vec::with_capacity(b * 2 * n_hid);
                    state(&dh, &dc, n_hid, &mut truth);
                    if s > 0 {
                        corr.add(tape_start.output(), &truth);
                        module_sq += tape_start
                            .output()
                            .iter()
                            .zip(&truth)
                            .map(|(&p, &g)| ((p - g) as f64).powi(2))
                            .sum::<f64>();
                        module_n += truth.len();
                    }
                    if teaching {
                        m.learn(&mut tape_start, &truth);
                    }
                }
                h.clone_from(&caches[e - 1].h);
                c.clone_from(&caches[e - 1].c);
                std::mem::swap(&mut tape_start, &mut tape_end);
                s = e;
            }
            adam_t += 1;
            let mut sets = vec![&mut cortex.lstm, &mut cortex.readout];
            if let (true, Some(m)) = (teaching, &mut module) {
                sets.push(&mut m.params);
            }
            adam.step(adam_t, &mut sets, Some(cfg.clip));
            loss_sum += batch_loss;
            batches += 1;
        }
        let ep = Epoch {
            epoch,
            train_mse: loss_sum / batches.max(1) as f64,
            validation_mse: validate(&cortex, &val_set),
            correlation: if active { corr.value() } else { f64::NAN },
            module_mse: if active && module_n > 0 { module_sq / module_n as f64 } else { f64::NAN },
        };
        progress(&ep);
        history.push(ep);
    }
    (history, cortex)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(seed: u64) -> Config {
        Config { hidden: 16, cerebellum: Some(vec![64]), epochs: 3, sequences: 200, ..Config::reference(seed) }
    }

    /// Same seed, same history; the module's predictions start at zero and come to
    /// correlate with the true gradients.
    #[test]
    fn deterministic_and_the_module_learns_to_predict() {
        let cfg = Config { epochs: 30, sequences: 400, ..small(5) };
        let a = train(&cfg, &mut |_| {});
        let b = train(&cfg, &mut |_| {});
        assert_eq!(format!("{a:?}"), format!("{b:?}"), "same seed, same history (NaN included)");
        assert!(a[0].validation_mse > 15.0, "an untrained cortex draws nothing (≈ 18.9): {}", a[0].validation_mse);
        let mean = |r: &[Epoch]| r.iter().map(|e| e.correlation).sum::<f64>() / r.len() as f64;
        let (early, late) = (mean(&a[1..6]), mean(&a[26..31]));
        assert!(late > 0.1 && late > 2.0 * early, "prediction-truth correlation {early} -> {late}");
        let none = train(&Config { cerebellum: None, ..cfg.clone() }, &mut |_| {});
        assert!(none.iter().skip(1).all(|e| e.correlation.is_nan()));
    }

    /// The published effect at K = 1, on a smaller module and 40 epochs (the full
    /// protocol is `neuropil dni`, docs/cerebellum.md): with the module the cortex
    /// ends far below the cortex alone, and its predictions track the true gradients.
    #[test]
    fn at_k1_the_module_rescues_learning() {
        let cfg = Config { cerebellum: Some(vec![128]), epochs: 40, ..Config::reference(1) };
        let with = train(&cfg, &mut |_| {});
        let without = train(&Config { cerebellum: None, ..cfg }, &mut |_| {});
        let (w, wo) = (with.last().unwrap(), without.last().unwrap());
        assert!(w.validation_mse < 0.5 * wo.validation_mse, "with {w:?}, without {wo:?}");
        assert!(w.correlation > 0.3, "{w:?}");
    }

    /// A removed module stops predicting; a frozen one keeps predicting but no
    /// longer learns, so its history differs from the intact module's.
    #[test]
    fn lesions_take_effect_at_their_epoch() {
        let intact = train(&small(2), &mut |_| {});
        let removed = Lesion { kind: LesionKind::Cerebellum, epoch: 2 };
        let r = train(&Config { lesion: Some(removed), ..small(2) }, &mut |_| {});
        assert_eq!(r[1], intact[1]);
        assert!(r[2].correlation.is_nan() && r[3].correlation.is_nan());
        let frozen = Lesion { kind: LesionKind::InferiorOlive, epoch: 2 };
        let f = train(&Config { lesion: Some(frozen), ..small(2) }, &mut |_| {});
        assert_eq!(f[1], intact[1]);
        assert!(f[2].correlation.is_finite() && f[2] != intact[2]);
    }
}

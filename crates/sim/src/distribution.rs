//! Parameter distributions for weights, delays and initial state.

use crate::rng::Stream;
use rand_distr::{Distribution as _, StandardNormal};

/// What to do with a draw outside `[min, max]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Bound {
    /// Draw again (NEST's `redraw`); the distribution is truncated.
    Redraw,
    /// Clamp to the bound (NEST's `clip`).
    Clip,
}

/// A distribution of real values, sampled from a [`Stream`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Dist {
    /// Always `value`.
    Constant(f64),
    /// Uniform on `[low, high)`.
    Uniform { low: f64, high: f64 },
    /// Normal(mean, std), restricted to `[min, max]` by `bound`.
    Normal { mean: f64, std: f64, min: f64, max: f64, bound: Bound },
    /// exp(Normal(mu, sigma)), restricted to `[min, max]` by `bound`.
    Lognormal { mu: f64, sigma: f64, min: f64, max: f64, bound: Bound },
}

/// Redraws before a truncated distribution falls back to clipping; validation
/// refuses bounds whose acceptance probability would make this reachable.
const MAX_REDRAWS: u32 = 10_000;

impl Dist {
    /// One value.
    #[inline]
    pub fn sample(&self, rng: &mut Stream) -> f64 {
        match *self {
            Dist::Constant(v) => v,
            Dist::Uniform { low, high } => low + (high - low) * rng.uniform(),
            Dist::Normal { mean, std, min, max, bound } => bounded(min, max, bound, || {
                let z: f64 = StandardNormal.sample(rng);
                mean + std * z
            }),
            Dist::Lognormal { mu, sigma, min, max, bound } => bounded(min, max, bound, || {
                let z: f64 = StandardNormal.sample(rng);
                (mu + sigma * z).exp()
            }),
        }
    }

    /// Smallest value the distribution can produce.
    pub fn lower(&self) -> f64 {
        match *self {
            Dist::Constant(v) => v,
            Dist::Uniform { low, .. } => low,
            Dist::Normal { min, .. } => min,
            Dist::Lognormal { min, .. } => min.max(0.0),
        }
    }

    /// Largest value the distribution can produce.
    pub fn upper(&self) -> f64 {
        match *self {
            Dist::Constant(v) => v,
            Dist::Uniform { high, .. } => high,
            Dist::Normal { max, .. } | Dist::Lognormal { max, .. } => max,
        }
    }

    /// Mean, ignoring truncation (used for estimates and DC compensation).
    pub fn nominal_mean(&self) -> f64 {
        match *self {
            Dist::Constant(v) => v,
            Dist::Uniform { low, high } => 0.5 * (low + high),
            Dist::Normal { mean, .. } => mean,
            Dist::Lognormal { mu, sigma, .. } => (mu + 0.5 * sigma * sigma).exp(),
        }
    }

    /// Probability that an untruncated draw lands in `[min, max]`.
    pub fn acceptance(&self) -> f64 {
        match *self {
            Dist::Constant(_) | Dist::Uniform { .. } => 1.0,
            Dist::Normal { mean, std, min, max, .. } => {
                if std == 0.0 {
                    return if (min..=max).contains(&mean) { 1.0 } else { 0.0 };
                }
                phi((max - mean) / std) - phi((min - mean) / std)
            }
            Dist::Lognormal { mu, sigma, min, max, .. } => {
                let lo = if min > 0.0 { (min.ln() - mu) / sigma } else { f64::NEG_INFINITY };
                let hi = if max > 0.0 { (max.ln() - mu) / sigma } else { f64::NEG_INFINITY };
                phi(hi) - phi(lo)
            }
        }
    }

    /// The same distribution with no value below `floor`: bounded distributions
    /// take it as their `min` (a redrawn normal stays a truncated normal), a
    /// uniform starts there (or becomes the constant `floor` when it lies below
    /// it), a constant is raised to it. `None` for a bounded distribution whose
    /// `max` is under `floor` (nothing is left to draw).
    pub fn at_least(&self, floor: f64) -> Option<Dist> {
        if matches!(self, Dist::Normal { .. } | Dist::Lognormal { .. }) && self.upper() < floor {
            return None;
        }
        Some(match *self {
            Dist::Constant(v) => Dist::Constant(v.max(floor)),
            Dist::Uniform { low, high } if low < floor => {
                if high > floor {
                    Dist::Uniform { low: floor, high }
                } else {
                    Dist::Constant(floor)
                }
            }
            Dist::Uniform { low, high } => Dist::Uniform { low, high },
            Dist::Normal { mean, std, min, max, bound } => Dist::Normal { mean, std, min: min.max(floor), max, bound },
            Dist::Lognormal { mu, sigma, min, max, bound } => {
                Dist::Lognormal { mu, sigma, min: min.max(floor), max, bound }
            }
        })
    }

    /// Scale every value by `factor` (> 0), as for weight scaling.
    pub fn scaled(&self, factor: f64) -> Dist {
        match *self {
            Dist::Constant(v) => Dist::Constant(v * factor),
            Dist::Uniform { low, high } => Dist::Uniform { low: low * factor, high: high * factor },
            Dist::Normal { mean, std, min, max, bound } => {
                Dist::Normal { mean: mean * factor, std: std * factor, min: min * factor, max: max * factor, bound }
            }
            Dist::Lognormal { mu, sigma, min, max, bound } => {
                Dist::Lognormal { mu: mu + factor.ln(), sigma, min: min * factor, max: max * factor, bound }
            }
        }
    }
}

#[inline]
fn bounded(min: f64, max: f64, bound: Bound, mut draw: impl FnMut() -> f64) -> f64 {
    let mut x = draw();
    match bound {
        Bound::Clip => x.clamp(min, max),
        Bound::Redraw => {
            let mut tries = 0;
            while !(min..=max).contains(&x) {
                tries += 1;
                if tries >= MAX_REDRAWS {
                    return x.clamp(min, max);
                }
                x = draw();
            }
            x
        }
    }
}

/// Standard normal CDF.
fn phi(x: f64) -> f64 {
    if x == f64::INFINITY {
        return 1.0;
    }
    if x == f64::NEG_INFINITY {
        return 0.0;
    }
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// Complementary error function (Numerical Recipes' Chebyshev fit, |rel err| < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_normal_respects_bounds_and_mean() {
        let d = Dist::Normal { mean: 1.5, std: 0.75, min: 0.05, max: f64::INFINITY, bound: Bound::Redraw };
        let mut r = Stream::new(1, &[]);
        let xs: Vec<f64> = (0..100_000).map(|_| d.sample(&mut r)).collect();
        assert!(xs.iter().all(|&x| x >= 0.05));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        // Truncation at -1.93 sd raises the mean by std*pdf(a)/(1-cdf(a)) = 0.0467.
        assert!((mean - 1.5467).abs() < 0.01, "mean {mean}");
    }

    #[test]
    fn clip_clamps() {
        // Clipping puts the mass outside the bounds on them: P(|z| > 0.1) =
        // 2(1 − Φ(0.1)) = 0.920344 of the draws land exactly on ±0.1, half each
        // (a redraw would put none there). Bounds: 5 binomial standard errors.
        let d = Dist::Normal { mean: 0.0, std: 1.0, min: -0.1, max: 0.1, bound: Bound::Clip };
        let mut r = Stream::new(2, &[]);
        let n = 20_000;
        let xs: Vec<f64> = (0..n).map(|_| d.sample(&mut r)).collect();
        assert!(xs.iter().all(|x| (-0.1..=0.1).contains(x)));
        let at = |b: f64| xs.iter().filter(|&&x| x == b).count() as f64 / n as f64;
        let p: f64 = 0.920_344;
        let se = |q: f64| 5.0 * (q * (1.0 - q) / n as f64).sqrt();
        assert!((at(0.1) + at(-0.1) - p).abs() < se(p), "{} on the bounds", at(0.1) + at(-0.1));
        assert!((at(0.1) - p / 2.0).abs() < se(p / 2.0), "{} on the upper bound", at(0.1));
    }

    #[test]
    fn acceptance_of_half_normal() {
        let d = Dist::Normal { mean: 0.0, std: 2.0, min: 0.0, max: f64::INFINITY, bound: Bound::Redraw };
        assert!((d.acceptance() - 0.5).abs() < 1e-6);
        assert!((phi(1.0) - 0.841_344_746).abs() < 1e-6);
    }

    #[test]
    fn lognormal_mean() {
        let d = Dist::Lognormal { mu: 0.0, sigma: 0.5, min: 0.0, max: f64::INFINITY, bound: Bound::Redraw };
        let mut r = Stream::new(3, &[]);
        let n = 200_000;
        // exp(μ + σ²/2) = e^0.125 and (e^σ² − 1) e^(2μ + σ²), written out (not the
        // code's nominal_mean); bounds: 5 standard errors of 200,000 draws
        // (mean: 0.6038 / √n → 0.0068; variance: its SE is about 0.0025).
        let xs: Vec<f64> = (0..n).map(|_| d.sample(&mut r)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        assert!((mean - 1.133_148_5).abs() < 0.0068, "mean {mean}");
        assert!((var - 0.364_695).abs() < 0.0125, "variance {var}");
    }

    #[test]
    fn a_floor_truncates_from_below_and_refuses_what_lies_under_it() {
        let n = Dist::Normal { mean: 2.0, std: 1.0, min: 0.1, max: f64::INFINITY, bound: Bound::Redraw };
        let floored = n.at_least(2.0).unwrap();
        // Half the normal's mass is above its mean: a redraw keeps that half.
        assert!((floored.acceptance() - 0.5).abs() < 1e-6);
        let mut r = Stream::new(4, &[]);
        assert!((0..10_000).all(|_| floored.sample(&mut r) >= 2.0));
        assert_eq!(Dist::Constant(0.5).at_least(1.0), Some(Dist::Constant(1.0)));
        assert_eq!(Dist::Constant(1.5).at_least(1.0), Some(Dist::Constant(1.5)));
        assert_eq!(Dist::Uniform { low: 0.5, high: 3.0 }.at_least(1.0), Some(Dist::Uniform { low: 1.0, high: 3.0 }));
        let capped = Dist::Normal { mean: 2.0, std: 1.0, min: 0.1, max: 1.5, bound: Bound::Redraw };
        assert_eq!(capped.at_least(2.0), None);
    }
}

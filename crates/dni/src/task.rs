//! The simple line-drawing task of the reference code: at t = 0 the input is
//! p ∈ {−3, …, 3} · 0.1, then zeros; the target is a straight line drawn over 10
//! steps from the origin to one of six points on a circle of radius 10 (p = 0:
//! stay at the origin); feedback (targets) only every second step.

use neuropil_sim::rng::Stream;

/// Steps per sequence.
pub const STEPS: usize = 10;
/// Output dimensions (x, y).
pub const OUT: usize = 2;
/// Classes.
pub const CLASSES: usize = 7;
/// Radius of the circle of end points.
pub const RADIUS: f32 = 10.0;

/// Steps with a target: every second one (1, 3, 5, 7, 9).
pub fn has_target(t: usize) -> bool {
    t % 2 == 1
}

/// One labelled sequence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sequence {
    /// Class 0..7 (3: stay at the origin).
    pub class: usize,
}

impl Sequence {
    /// Input at step `t`.
    pub fn input(&self, t: usize) -> f32 {
        if t == 0 {
            (self.class as f32 - 3.0) * 0.1
        } else {
            0.0
        }
    }

    /// Target (x, y) at step `t`: a fraction (t + 1)/10 of the way to the end point.
    pub fn target(&self, t: usize) -> [f32; OUT] {
        if self.class == 3 {
            return [0.0, 0.0];
        }
        let j = if self.class < 3 { self.class } else { self.class - 1 };
        let angle = std::f32::consts::TAU * j as f32 / 6.0;
        let f = (t + 1) as f32 / STEPS as f32;
        [RADIUS * angle.cos() * f, RADIUS * angle.sin() * f]
    }
}

/// `n` sequences with classes drawn uniformly from `seed`; the first
/// `train_fraction` are for training, the rest for validation.
pub fn dataset(n: usize, train_fraction: f64, seed: u64) -> (Vec<Sequence>, Vec<Sequence>) {
    let mut rng = Stream::new(seed, &[0xDA7A]);
    let all: Vec<Sequence> = (0..n).map(|_| Sequence { class: rng.below(CLASSES as u64) as usize }).collect();
    let cut = ((n as f64) * train_fraction).round() as usize;
    (all[..cut].to_vec(), all[cut..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_end_on_the_circle_and_start_near_the_origin() {
        for class in 0..CLASSES {
            let s = Sequence { class };
            let end = s.target(STEPS - 1);
            let r = (end[0] * end[0] + end[1] * end[1]).sqrt();
            assert!((r - if class == 3 { 0.0 } else { RADIUS }).abs() < 1e-4, "class {class}: r {r}");
            let first = s.target(0);
            assert!((first[0] - end[0] / 10.0).abs() < 1e-5);
        }
        let (train, val) = dataset(1000, 0.8, 1);
        assert_eq!((train.len(), val.len()), (800, 200));
        let mut seen = [0; CLASSES];
        train.iter().for_each(|s| seen[s.class] += 1);
        assert!(seen.iter().all(|&n| n > 80), "{seen:?}");
    }
}

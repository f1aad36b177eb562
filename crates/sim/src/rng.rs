//! Counter-keyed random streams.
//!
//! Every random decision in the kernel draws from a stream keyed by *what* it is
//! for (seed, purpose, projection, neuron id, ...), never by *where* it runs. That is
//! what makes a run partition independent: shard 3 of 7 and shard 0 of 1 draw the
//! same numbers for neuron 4711.

use rand::RngCore;

/// Purposes a stream can be keyed by; the first key word after the seed.
pub mod purpose {
    /// Which sources connect to a target (structure only).
    pub const CONN_STRUCTURE: u64 = 1;
    /// Weights and delays of the synapses onto a target.
    pub const CONN_VALUES: u64 = 2;
    /// Per-target synapse counts of a fixed_total_number projection.
    pub const CONN_COUNTS: u64 = 3;
    /// Initial state of a neuron.
    pub const INITIAL_STATE: u64 = 4;
    /// Poisson input to one neuron from one generator.
    pub const POISSON: u64 = 5;
    /// Tripartite: whether and which astrocyte joins each synapse onto a target.
    pub const TRIPARTITE: u64 = 7;
    /// Tripartite: a target's random astrocyte pool.
    pub const ASTRO_POOL: u64 = 8;
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline]
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(GOLDEN);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256++ generator whose state is derived from a seed and a key path.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Stream {
    s: [u64; 4],
}

impl Stream {
    /// The stream for `seed` and the key path `key` (e.g. `[purpose, projection, gid]`).
    pub fn new(seed: u64, key: &[u64]) -> Self {
        let mut h = seed ^ 0x6E65_7572_6F70_696C; // "neuropil"
        let mut acc = splitmix64(&mut h);
        for (i, k) in key.iter().enumerate() {
            let mut x = acc ^ k.wrapping_mul(GOLDEN).rotate_left(i as u32 * 7 + 1);
            acc = splitmix64(&mut x) ^ splitmix64(&mut h);
        }
        let mut st = acc;
        let s = [splitmix64(&mut st), splitmix64(&mut st), splitmix64(&mut st), splitmix64(&mut st)];
        Stream { s }
    }

    /// Next 64 random bits.
    #[inline]
    pub fn bits(&mut self) -> u64 {
        let s = &mut self.s;
        let result = (s[0].wrapping_add(s[3])).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 53 random bits.
    #[inline]
    pub fn uniform(&mut self) -> f64 {
        (self.bits() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in (0, 1], safe for `ln`.
    #[inline]
    pub fn uniform_open0(&mut self) -> f64 {
        ((self.bits() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in [0, n) (Lemire's multiply-shift with rejection). `n > 0`.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let mut m = (self.bits() as u128) * (n as u128);
        let mut lo = m as u64;
        if lo < n {
            let threshold = n.wrapping_neg() % n;
            while lo < threshold {
                m = (self.bits() as u128) * (n as u128);
                lo = m as u64;
            }
        }
        (m >> 64) as u64
    }
}

/// Poisson sampler by inversion against a precomputed CDF table: one uniform and a
/// few comparisons per draw, no arithmetic in the loop. Used for the small per-step
/// means of Poisson generators (rate × dt).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PoissonTable {
    cdf: Vec<f64>,
    /// Number of leading entries (8 or 16, 0 = none) holding nearly all the mass,
    /// so that a branch-free count of `u > cdf[k]` over them answers almost every
    /// draw (a data-dependent loop exit mispredicts about once per draw).
    branchless: usize,
}

const BRANCHLESS: usize = 16;

impl PoissonTable {
    /// Largest count the table can return.
    pub const MAX_COUNT: usize = 1000;

    /// Table for mean `lambda` (meant for lambda up to ~20; the CDF is built by the
    /// recurrence p_k = p_{k-1} λ / k from p_0 = e^-λ).
    pub fn new(lambda: f64) -> Self {
        let mut cdf = Vec::new();
        let mut p = (-lambda).exp();
        let mut c = p;
        cdf.push(c);
        for k in 1..=Self::MAX_COUNT {
            p *= lambda / k as f64;
            c += p;
            cdf.push(c);
            if p == 0.0 && k > lambda as usize {
                break;
            }
        }
        // Past a truncation the CDF is constant: padding keeps the semantics.
        while cdf.len() < BRANCHLESS + 1 {
            cdf.push(c);
        }
        let branchless = if 1.0 - cdf[7] < 1e-6 {
            8
        } else if 1.0 - cdf[15] < 1e-6 {
            16
        } else {
            0
        };
        PoissonTable { cdf, branchless }
    }

    #[inline]
    fn count_below<const K: usize>(&self, u: f64) -> usize {
        let head: &[f64; K] = self.cdf[..K].try_into().expect("table has at least 16 entries");
        head.iter().map(|&c| usize::from(u > c)).sum()
    }

    /// One count: the smallest k with u <= CDF(k).
    #[inline]
    pub fn sample(&self, rng: &mut Stream) -> u32 {
        self.sample_with(rng.uniform())
    }

    /// The count for a given uniform `u` in [0, 1).
    #[inline]
    pub fn sample_with(&self, u: f64) -> u32 {
        let mut k = 0;
        // The CDF is monotone, so #{k < K : u > cdf[k]} is the answer when < K.
        let count = match self.branchless {
            8 => self.count_below::<8>(u),
            16 => self.count_below::<16>(u),
            _ => usize::MAX,
        };
        if count < self.branchless {
            return count as u32;
        }
        if self.branchless > 0 {
            k = self.branchless;
        }
        self.search_from(k, u)
    }

    /// One count conditioned on being at least 1 (zero-truncated Poisson), by
    /// inversion of u uniform on (P(0), 1].
    #[inline]
    pub fn sample_nonzero(&self, rng: &mut Stream) -> u32 {
        let p0 = self.cdf[0];
        let u = p0 + (1.0 - p0) * rng.uniform_open0();
        self.search_from(1, u)
    }

    /// The smallest k' >= k with u <= CDF(k'), or MAX_COUNT past the table.
    #[inline]
    fn search_from(&self, mut k: usize, u: f64) -> u32 {
        let last = self.cdf.len() - 1;
        while k < last && u > self.cdf[k] {
            k += 1;
        }
        if k == last && u > self.cdf[k] {
            k = Self::MAX_COUNT;
        }
        k as u32
    }
}

/// Steps until the next step with a nonzero Poisson count, for per-step mean
/// `lambda`: floor(Exp(lambda)), i.e. 0 with probability 1 - e^-lambda. Skipping
/// the empty steps makes sparse input cost per input spike, not per step.
#[inline]
pub fn poisson_gap(rng: &mut Stream, lambda: f64) -> u64 {
    use rand_distr::Distribution;
    // Ziggurat exponential: a few ns, where -ln(U) costs a libm logarithm.
    let e: f64 = rand_distr::Exp1.sample(rng);
    let g = e / lambda;
    if g >= 1e15 {
        u64::MAX / 2
    } else {
        g as u64
    }
}

impl RngCore for Stream {
    fn next_u32(&mut self) -> u32 {
        (self.bits() >> 32) as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.bits()
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for chunk in dst.chunks_mut(8) {
            let v = self.bits().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_differ_by_key_and_repeat_by_key() {
        let a: Vec<u64> = (0..4).map(|_| Stream::new(1, &[1, 2]).bits()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(Stream::new(1, &[1, 2]).bits(), Stream::new(1, &[2, 1]).bits());
        assert_ne!(Stream::new(1, &[1, 2]).bits(), Stream::new(2, &[1, 2]).bits());
        assert_ne!(Stream::new(1, &[1]).bits(), Stream::new(1, &[1, 0]).bits());
    }

    #[test]
    fn uniform_moments() {
        let mut r = Stream::new(7, &[]);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| r.uniform()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.005, "mean {mean}");
        assert!((var - 1.0 / 12.0).abs() < 0.002, "var {var}");
    }

    #[test]
    fn poisson_mean_and_variance() {
        let mut r = Stream::new(3, &[9]);
        let lambda: f64 = 1.6;
        let table = PoissonTable::new(lambda);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| table.sample(&mut r) as f64).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!((mean - lambda).abs() < 0.02, "mean {mean}");
        assert!((var - lambda).abs() < 0.04, "var {var}");
    }

    #[test]
    fn sparse_poisson_by_gaps_has_poisson_counts() {
        // Counts per step built from gaps + zero-truncated draws must be Poisson.
        let lambda = 0.16;
        let table = PoissonTable::new(lambda);
        let mut r = Stream::new(11, &[]);
        let steps = 400_000u64;
        let mut counts = vec![0u32; steps as usize];
        let mut next = poisson_gap(&mut r, lambda);
        while next < steps {
            counts[next as usize] = table.sample_nonzero(&mut r);
            next += 1 + poisson_gap(&mut r, lambda);
        }
        let n = steps as f64;
        let mean = counts.iter().map(|&c| c as f64).sum::<f64>() / n;
        let var = counts.iter().map(|&c| (c as f64 - mean).powi(2)).sum::<f64>() / n;
        let p0 = counts.iter().filter(|&&c| c == 0).count() as f64 / n;
        let p2 = counts.iter().filter(|&&c| c == 2).count() as f64 / n;
        assert!((mean - lambda).abs() < 0.003, "mean {mean}");
        assert!((var - lambda).abs() < 0.004, "var {var}");
        assert!((p0 - (-lambda).exp()).abs() < 0.002, "P(0) {p0}");
        assert!((p2 - (-lambda).exp() * lambda * lambda / 2.0).abs() < 0.001, "P(2) {p2}");
    }

    #[test]
    fn below_is_in_range_and_uniform() {
        let mut r = Stream::new(5, &[]);
        let mut counts = [0u32; 7];
        for _ in 0..70_000 {
            counts[r.below(7) as usize] += 1;
        }
        for c in counts {
            assert!((9_400..10_600).contains(&c), "{counts:?}");
        }
    }
}

//! Plastic synapses: pair-based STDP (NEST's `stdp_synapse` arithmetic, all-to-all
//! or nearest-spike pairing, asymmetric or symmetric window) and Tsodyks–Markram
//! short-term plasticity (NEST's `tsodyks2_synapse`).
//!
//! Plastic weights live with the target shard, beside the synapse. Updates happen
//! when a presynaptic spike is delivered, from the postsynaptic spike history of
//! the target neuron (NEST's scheme). All of the delay is dendritic, as NEST's
//! default: a postsynaptic spike at t_post pairs with a presynaptic spike emitted at
//! t_pre with Δt = t_post + d − t_pre. Times are kept in integer steps (spike
//! stamps, `step + 1`), so window edges are exact.

use std::collections::VecDeque;

/// How pre and post spikes are paired.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy, PartialEq, Eq)]
pub enum Pairing {
    /// Every pre spike with every post spike (traces accumulate).
    AllToAll,
    /// Each spike with the nearest preceding spike of the other neuron only
    /// (NEST's `stdp_nn_symm_synapse`).
    Nearest,
}

/// Pair-based STDP, NEST's parameter names.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy, PartialEq)]
pub struct StdpParams {
    /// Time constant of the presynaptic trace, ms.
    pub tau_plus: f64,
    /// Time constant of the postsynaptic trace, ms (NEST keeps it on the neuron;
    /// here every plastic projection onto a population must use the same value).
    pub tau_minus: f64,
    /// Learning rate (step of the normalised weight).
    pub lambda: f64,
    /// Ratio of depression to potentiation.
    pub alpha: f64,
    /// Weight dependence of potentiation: 0 additive, 1 multiplicative (Gütig).
    pub mu_plus: f64,
    /// Weight dependence of depression: 0 additive, 1 multiplicative.
    pub mu_minus: f64,
    /// Maximum weight (> 0); weights stay in [0, Wmax].
    pub w_max: f64,
    /// Pairing scheme.
    pub pairing: Pairing,
    /// Both orders potentiate (post-before-pre uses the potentiation rule with
    /// the tau_minus window instead of depression).
    pub symmetric: bool,
}

impl StdpParams {
    /// NEST's `facilitate_`: w/Wmax + λ (1 − w/Wmax)^μ+ k, capped at 1, times Wmax.
    #[inline]
    pub fn facilitate(&self, w: f64, k: f64) -> f64 {
        let norm = w / self.w_max + self.lambda * (1.0 - w / self.w_max).powf(self.mu_plus) * k;
        norm.min(1.0) * self.w_max
    }

    /// NEST's `depress_`: w/Wmax − α λ (w/Wmax)^μ− k, floored at 0, times Wmax.
    #[inline]
    pub fn depress(&self, w: f64, k: f64) -> f64 {
        let norm = w / self.w_max - self.alpha * self.lambda * (w / self.w_max).powf(self.mu_minus) * k;
        norm.max(0.0) * self.w_max
    }
}

/// Tsodyks–Markram short-term plasticity (NEST's `tsodyks2_synapse`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy, PartialEq)]
pub struct TsodyksParams {
    /// Utilisation increment per spike.
    pub u_inc: f64,
    /// Initial utilisation.
    pub u0: f64,
    /// Initial fraction of available resources.
    pub x0: f64,
    /// Recovery time constant, ms.
    pub tau_rec: f64,
    /// Facilitation time constant, ms (0: no facilitation).
    pub tau_fac: f64,
}

/// Dopamine-modulated (third-factor) STDP (Izhikevich 2007; NEST's
/// `stdp_dopamine_synapse` equations): pairings feed an eligibility trace c instead
/// of the weight; the weight follows dw/dt = c (n − b), where n is the dopamine
/// concentration, raised by 1/tau_n at every spike of the modulator population.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy, PartialEq)]
pub struct DopamineParams {
    /// Presynaptic trace time constant, ms.
    pub tau_plus: f64,
    /// Postsynaptic trace time constant, ms (shared per target population).
    pub tau_minus: f64,
    /// Eligibility trace time constant, ms.
    pub tau_c: f64,
    /// Dopamine time constant, ms.
    pub tau_n: f64,
    /// Eligibility increase per pairing (pre before post).
    pub a_plus: f64,
    /// Eligibility decrease per pairing (post before pre).
    pub a_minus: f64,
    /// Baseline dopamine concentration (1/ms).
    pub b: f64,
    /// Weight bounds.
    pub w_min: f64,
    /// Weight bounds.
    pub w_max: f64,
    /// Modulator population index.
    pub modulator: usize,
}

/// The rule of a plastic projection.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy, PartialEq)]
pub enum Plasticity {
    /// Spike-timing-dependent plasticity.
    Stdp(StdpParams),
    /// Short-term depression/facilitation.
    Tsodyks(TsodyksParams),
    /// Dopamine-modulated STDP.
    Dopamine(DopamineParams),
    /// Static weights whose efficacy follows the calcium of the astrocyte that
    /// joins each synapse (tripartite projections with gliotransmission):
    /// w × (1 + gain × Ca).
    Gliotransmission {
        /// Efficacy gain per µM of calcium.
        gain: f64,
    },
}

impl Plasticity {
    /// The postsynaptic trace time constant, for rules that pair with post spikes.
    pub fn tau_minus(&self) -> Option<f64> {
        match self {
            Plasticity::Stdp(p) => Some(p.tau_minus),
            Plasticity::Dopamine(p) => Some(p.tau_minus),
            Plasticity::Tsodyks(_) | Plasticity::Gliotransmission { .. } => None,
        }
    }
}

/// The dopamine concentration over time: the stamps of the modulator's spikes and
/// the concentration right after each. Every shard sees every spike, so every shard
/// holds the same history.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Default)]
pub struct DopamineHistory {
    spikes: Vec<(u64, f64)>,
}

impl DopamineHistory {
    /// Record a modulator spike at `stamp` (in order).
    pub fn push(&mut self, stamp: u64, tau_n: f64, dt_ms: f64) {
        self.add(stamp, 1.0 / tau_n, tau_n, dt_ms);
    }

    /// Add `amount` (1/ms, may be negative: a signed teaching signal) to the
    /// concentration at `stamp` (in order).
    pub fn add(&mut self, stamp: u64, amount: f64, tau_n: f64, dt_ms: f64) {
        let n = self.at(stamp as i64, tau_n, dt_ms) + amount;
        self.spikes.push((stamp, n));
    }

    /// Concentration at time `t` (stamp units), counting spikes with stamp <= t.
    pub fn at(&self, t: i64, tau_n: f64, dt_ms: f64) -> f64 {
        let k = self.spikes.partition_point(|s| (s.0 as i64) <= t);
        if k == 0 {
            return 0.0;
        }
        let (s, n) = self.spikes[k - 1];
        n * (-((t - s as i64) as f64 * dt_ms) / tau_n).exp()
    }

    /// Stamps of the modulator spikes in (t0, t1].
    pub fn between(&self, t0: i64, t1: i64) -> impl Iterator<Item = u64> + '_ {
        let a = self.spikes.partition_point(|s| (s.0 as i64) <= t0);
        self.spikes[a..].iter().map(|s| s.0).take_while(move |&s| (s as i64) <= t1)
    }
}

/// Update one dopamine-modulated synapse of delay `d` for a presynaptic spike at
/// `stamp`: integrate the weight exactly from the previous presynaptic spike, with
/// the eligibility jumps of the post spikes and the dopamine jumps in between, then
/// apply the depression of this pairing to the eligibility. Returns the new weight;
/// `c` is the synapse's eligibility at the previous presynaptic spike, updated.
#[allow(clippy::too_many_arguments)]
pub fn dopamine_update(
    p: &DopamineParams,
    w: f64,
    c: &mut f64,
    before: &PreState,
    stamp: u64,
    d: u64,
    post: &mut PostHistory,
    dopa: &DopamineHistory,
    dt_ms: f64,
) -> f64 {
    let d = d as i64;
    let (t0, t1) = (before.last as i64, stamp as i64);
    // Events in (t0, t1]: post spikes seen at the synapse (t_post + d) and dopamine.
    let mut events: Vec<(i64, bool)> = Vec::new();
    post.read_window(t0 - d, t1 - d, |t_post| events.push((t_post as i64 + d, true)));
    events.extend(dopa.between(t0, t1).map(|t| (t as i64, false)));
    events.sort_by_key(|e| (e.0, e.1));
    let tau_s = 1.0 / (1.0 / p.tau_c + 1.0 / p.tau_n);
    let mut w = w;
    let mut t = t0;
    let mut cc = *c;
    let integrate = |w: &mut f64, cc: f64, from: i64, to: i64| {
        if to <= from {
            return;
        }
        let n0 = dopa.at(from, p.tau_n, dt_ms);
        let h = (to - from) as f64 * dt_ms;
        let dw = cc * (n0 * tau_s * -(-h / tau_s).exp_m1() - p.b * p.tau_c * -(-h / p.tau_c).exp_m1());
        *w = (*w + dw).clamp(p.w_min, p.w_max);
    };
    for (te, is_post) in events {
        integrate(&mut w, cc, t, te);
        cc *= (-((te - t) as f64 * dt_ms) / p.tau_c).exp();
        t = te;
        if is_post && before.last > 0 {
            // Pair with the presynaptic trace at the post spike's arrival.
            let kplus = before.a * (-((te - t0) as f64 * dt_ms) / p.tau_plus).exp();
            cc += p.a_plus * kplus;
        }
    }
    integrate(&mut w, cc, t, t1);
    cc *= (-((t1 - t) as f64 * dt_ms) / p.tau_c).exp();
    cc -= p.a_minus * post.trace(t1 - d, p.tau_minus, dt_ms, Pairing::AllToAll);
    *c = cc;
    w
}

/// Presynaptic state of one source for one projection: the last spike and the
/// trace (STDP) or resources and utilisation (Tsodyks). It depends on the source's
/// spike train only, so all its synapses share it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy, PartialEq)]
pub struct PreState {
    /// Stamp (step + 1) of the last spike, 0 before the first.
    pub last: u64,
    /// STDP: presynaptic trace right after the last spike. Tsodyks: x.
    pub a: f64,
    /// Tsodyks: u.
    pub b: f64,
}

impl PreState {
    /// Initial state for `rule`.
    pub fn new(rule: &Plasticity) -> Self {
        match rule {
            Plasticity::Stdp(_) | Plasticity::Dopamine(_) | Plasticity::Gliotransmission { .. } => {
                PreState { last: 0, a: 0.0, b: 0.0 }
            }
            Plasticity::Tsodyks(p) => PreState { last: 0, a: p.x0, b: p.u0 },
        }
    }

    /// Advance to a spike at `stamp`; returns the state before it (what the
    /// synapses use for their update) and, for Tsodyks, the efficacy factor x·u.
    pub fn on_spike(&mut self, rule: &Plasticity, stamp: u64, dt_ms: f64) -> (PreState, f64) {
        let before = *self;
        let h = (stamp - self.last) as f64 * dt_ms;
        let factor = match rule {
            Plasticity::Stdp(p) => {
                self.a = match p.pairing {
                    Pairing::AllToAll => self.a * (-h / p.tau_plus).exp() + 1.0,
                    Pairing::Nearest => 1.0,
                };
                1.0
            }
            Plasticity::Dopamine(p) => {
                self.a = self.a * (-h / p.tau_plus).exp() + 1.0;
                1.0
            }
            Plasticity::Gliotransmission { .. } => 1.0,
            Plasticity::Tsodyks(p) => {
                let x_decay = (-h / p.tau_rec).exp();
                let u_decay = if p.tau_fac < 1e-10 { 0.0 } else { (-h / p.tau_fac).exp() };
                self.a = 1.0 + (self.a - self.a * self.b - 1.0) * x_decay;
                self.b = p.u_inc + self.b * (1.0 - p.u_inc) * u_decay;
                self.a * self.b
            }
        };
        self.last = stamp;
        (before, factor)
    }
}

/// One postsynaptic spike in a neuron's history.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy)]
struct PostSpike {
    stamp: u64,
    /// Postsynaptic trace right after this spike (all-to-all).
    k: f64,
    /// Number of incoming plastic synapses that have read it.
    reads: u32,
}

/// A neuron's postsynaptic spike history (NEST's ArchivingNode): spikes are kept
/// until every incoming STDP synapse has read them; the last removed one stays as
/// the base of the trace.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Default)]
pub struct PostHistory {
    spikes: VecDeque<PostSpike>,
    base: Option<(u64, f64)>,
    /// Incoming STDP synapses.
    pub incoming: u32,
}

impl PostHistory {
    /// Record a spike at `stamp` (trace time constant `tau_minus`).
    pub fn push(&mut self, stamp: u64, tau_minus: f64, dt_ms: f64) {
        let prev = self.spikes.back().map(|s| (s.stamp, s.k)).or(self.base);
        let k = match prev {
            Some((t, k)) => k * (-((stamp - t) as f64 * dt_ms) / tau_minus).exp() + 1.0,
            None => 1.0,
        };
        self.spikes.push_back(PostSpike { stamp, k, reads: 0 });
    }

    /// Stamps of the spikes in (t1, t2], marking them read.
    pub fn read_window(&mut self, t1: i64, t2: i64, mut f: impl FnMut(u64)) {
        for s in self.spikes.iter_mut() {
            let t = s.stamp as i64;
            if t > t2 {
                break;
            }
            if t > t1 {
                s.reads += 1;
                f(s.stamp);
            }
        }
        while let Some(front) = self.spikes.front() {
            if front.reads >= self.incoming {
                self.base = Some((front.stamp, front.k));
                self.spikes.pop_front();
            } else {
                break;
            }
        }
    }

    /// The postsynaptic trace just before `t` (spikes with stamp < t): the sum over
    /// them (all-to-all) or the last one only (nearest).
    pub fn trace(&self, t: i64, tau_minus: f64, dt_ms: f64, pairing: Pairing) -> f64 {
        let last = self
            .spikes
            .iter()
            .rev()
            .find(|s| (s.stamp as i64) < t)
            .map(|s| (s.stamp, s.k))
            .or_else(|| self.base.filter(|(stamp, _)| (*stamp as i64) < t));
        match last {
            None => 0.0,
            Some((stamp, k)) => {
                let decay = (-((t - stamp as i64) as f64 * dt_ms) / tau_minus).exp();
                match pairing {
                    Pairing::AllToAll => k * decay,
                    Pairing::Nearest => decay,
                }
            }
        }
    }
}

/// Update one STDP synapse of delay `d` (steps) onto a neuron with history `post`
/// for a presynaptic spike at `stamp`, given the presynaptic state `before` it.
#[allow(clippy::too_many_arguments)]
pub fn stdp_update(
    p: &StdpParams,
    w: f64,
    before: &PreState,
    stamp: u64,
    d: u64,
    post: &mut PostHistory,
    dt_ms: f64,
) -> f64 {
    let mut w = w;
    let d = d as i64;
    let (t_last, t_spike) = (before.last as i64, stamp as i64);
    // Post spikes since the previous pre spike: pair them with it (potentiation).
    let kplus = before.a;
    post.read_window(t_last - d, t_spike - d, |t_post| {
        if before.last > 0 {
            let minus_dt = (t_last - (t_post as i64 + d)) as f64 * dt_ms;
            w = p.facilitate(w, kplus * (minus_dt / p.tau_plus).exp());
        }
    });
    // Post spikes before this pre spike: depression (or potentiation if symmetric).
    let k = post.trace(t_spike - d, p.tau_minus, dt_ms, p.pairing);
    if p.symmetric {
        p.facilitate(w, k)
    } else {
        p.depress(w, k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(mu: f64) -> StdpParams {
        StdpParams {
            tau_plus: 20.0,
            tau_minus: 20.0,
            lambda: 0.01,
            alpha: 1.0,
            mu_plus: mu,
            mu_minus: mu,
            w_max: 100.0,
            pairing: Pairing::AllToAll,
            symmetric: false,
        }
    }

    #[test]
    fn additive_and_multiplicative_steps() {
        let p = params(0.0);
        assert!((p.facilitate(50.0, 1.0) - 51.0).abs() < 1e-12);
        assert!((p.depress(50.0, 1.0) - 49.0).abs() < 1e-12);
        let p = params(1.0);
        assert!((p.facilitate(50.0, 1.0) - 50.5).abs() < 1e-12);
        assert!((p.depress(50.0, 1.0) - 49.5).abs() < 1e-12);
        assert_eq!(params(0.0).facilitate(99.9, 100.0), 100.0);
        assert_eq!(params(0.0).depress(0.1, 100.0), 0.0);
    }

    #[test]
    fn tsodyks_depresses_then_recovers() {
        let rule = Plasticity::Tsodyks(TsodyksParams { u_inc: 0.5, u0: 0.5, x0: 1.0, tau_rec: 800.0, tau_fac: 0.0 });
        let mut s = PreState::new(&rule);
        // NEST: first spike at 10 ms after t = 0 with x = 1, u = 0.5.
        let f1 = s.on_spike(&rule, 100, 0.1).1;
        let f2 = s.on_spike(&rule, 200, 0.1).1;
        let f_late = s.on_spike(&rule, 200 + 100_000, 0.1).1;
        assert!(f2 < f1, "{f1} {f2}");
        assert!(f_late > f2 && f_late <= 0.5 + 1e-12);
    }

    /// The efficacies x·u of NEST's tsodyks2_synapse for two spike trains, a
    /// depressing and a facilitating synapse, against values of NEST's recursion
    /// (`send`: x ← 1 + (x − x u − 1) e^(−h/τrec), u ← U + u (1 − U) e^(−h/τfac),
    /// from x0, u0 at t = 0) evaluated separately (Python, double precision).
    #[test]
    fn tsodyks_follows_nests_recursion_depressing_and_facilitating() {
        let cases: [(TsodyksParams, &[u64], &[f64]); 2] = [
            (
                TsodyksParams { u_inc: 0.5, u0: 0.5, x0: 1.0, tau_rec: 800.0, tau_fac: 0.0 },
                &[10, 20, 30, 40, 50, 1050],
                &[
                    0.25310554987653,
                    0.131191810872988,
                    0.0709921597654367,
                    0.0412662402497894,
                    0.0265879111433288,
                    0.360556383610433,
                ],
            ),
            (
                TsodyksParams { u_inc: 0.1, u0: 0.1, x0: 1.0, tau_rec: 100.0, tau_fac: 1000.0 },
                &[10, 30, 50, 70, 90],
                &[0.171993603639397, 0.209483958267959, 0.218854823199559, 0.212323297502106, 0.200605703442333],
            ),
        ];
        for (p, times_ms, want) in cases {
            let rule = Plasticity::Tsodyks(p);
            let mut s = PreState::new(&rule);
            for (&t, &w) in times_ms.iter().zip(want) {
                // Stamps are steps of 0.1 ms.
                let f = s.on_spike(&rule, t * 10, 0.1).1;
                assert!((f - w).abs() < 1e-12, "tau_fac {}: at {t} ms x·u = {f}, NEST {w}", p.tau_fac);
            }
        }
    }
}

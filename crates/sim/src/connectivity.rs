//! Target-side connectivity generation.
//!
//! Every shard generates only the synapses onto its own neurons. The random
//! decisions about a target neuron come from streams keyed by (seed, projection,
//! target gid) — structure and values in separate streams, so that the counting
//! pass can skip the values — never by the shard, which makes the network the same
//! whatever the partition. Two rules are not naturally target-side:
//!
//! - `fixed_outdegree`: each source's stream draws its targets; every shard replays
//!   all sources and keeps the synapses onto its own neurons (cost: all synapses per
//!   shard, documented in docs/architecture.md);
//! - `fixed_total_number`: the per-target counts are a multinomial split of `n`,
//!   drawn as conditional binomials from one stream keyed by the projection (every
//!   shard draws all counts: one binomial per target); the sources of each target
//!   then come from the target's own stream. Same distribution as NEST's
//!   per-process split, without depending on the number of processes.

use crate::network::{Gid, Network, Pool, Rule};
use crate::rng::{purpose, Stream};
use rand_distr::{Binomial, Distribution};

/// Which neurons a shard owns. By default round-robin over global ids (gid % count
/// == index), which spreads every population evenly over all shards. A network
/// with population groups ([`Network::groups`]: the areas of a multi-area model)
/// gives each group a range of shards instead, round-robin within it, so that a
/// group's neurons — and the synapses among them — stay on few shards (and, with
/// shards placed on nodes, on one node).
///
/// Either way a shard's local indices run over its neurons in gid order, each
/// population's a contiguous range, which is all the kernel relies on; what a
/// neuron does never depends on where it is (its streams are keyed by its gid).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Layout {
    /// This shard's index.
    pub index: u32,
    /// Number of shards.
    pub count: u32,
    /// Per population, where it lives: empty for round-robin over all shards.
    spans: Vec<Span>,
}

/// Where one population lives under a grouped layout, seen from one shard.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
struct Span {
    /// The population's gids: `first..end`.
    first: Gid,
    end: Gid,
    /// Its shards: `lo..lo + n`, round-robin within.
    lo: u32,
    n: u32,
    /// This shard's local indices of it: `local..local + owned`.
    local: u32,
    owned: u32,
}

impl Layout {
    /// Round-robin over all `count` shards (every population on every shard).
    pub fn round_robin(index: u32, count: u32) -> Layout {
        Layout { index, count, spans: Vec::new() }
    }

    /// Shard `index` of `count` for `net`: grouped when the network has groups.
    pub fn of(net: &Network, index: u32, count: u32) -> Layout {
        let Some(groups) = &net.groups else { return Layout::round_robin(index, count) };
        let ranges = group_shards(net, groups, count.max(1));
        let mut local = 0u32;
        let spans = net
            .populations
            .iter()
            .zip(groups)
            .map(|(p, &g)| {
                let (lo, n) = ranges[g as usize];
                let owned = if (lo..lo + n).contains(&index) {
                    let k = index - lo;
                    if p.size > k {
                        (p.size - k).div_ceil(n)
                    } else {
                        0
                    }
                } else {
                    0
                };
                let span = Span { first: p.first_gid, end: p.end_gid(), lo, n, local, owned };
                local += owned;
                span
            })
            .collect();
        Layout { index, count, spans }
    }

    /// The span of the population holding `gid`.
    #[inline]
    fn span_of(&self, gid: Gid) -> &Span {
        let i = self.spans.partition_point(|s| s.end <= gid).min(self.spans.len() - 1);
        &self.spans[i]
    }

    /// Whether this shard owns `gid`.
    #[inline]
    pub fn owns(&self, gid: Gid) -> bool {
        if self.spans.is_empty() {
            return gid % self.count == self.index;
        }
        let s = self.span_of(gid);
        s.owned > 0 && (gid - s.first) % s.n == self.index - s.lo
    }

    /// Local index of an owned gid.
    #[inline]
    pub fn local(&self, gid: Gid) -> u32 {
        if self.spans.is_empty() {
            return gid / self.count;
        }
        let s = self.span_of(gid);
        s.local + (gid - s.first) / s.n
    }

    /// Global id of local index `l`.
    #[inline]
    pub fn gid(&self, l: u32) -> Gid {
        if self.spans.is_empty() {
            return l * self.count + self.index;
        }
        let i = self.spans.partition_point(|s| s.local + s.owned <= l).min(self.spans.len() - 1);
        let s = &self.spans[i];
        s.first + (l - s.local) * s.n + (self.index - s.lo)
    }

    /// Number of owned neurons among gids `0..total` (all of the network's).
    pub fn n_local(&self, total: u32) -> u32 {
        if self.spans.is_empty() {
            return if total > self.index { (total - self.index).div_ceil(self.count) } else { 0 };
        }
        self.spans.iter().map(|s| s.owned).sum()
    }

    /// Local index range of the owned gids in `[first, first + size)`, a
    /// population's gids.
    pub fn local_range(&self, first: Gid, size: u32) -> std::ops::Range<u32> {
        if self.spans.is_empty() {
            let r = first % self.count;
            let lo = first as u64 + ((self.index + self.count - r) % self.count) as u64;
            let end = first as u64 + size as u64;
            let lo_l = (lo / self.count as u64) as u32;
            let n = if lo < end { ((end - 1 - lo) / self.count as u64 + 1) as u32 } else { 0 };
            return lo_l..lo_l + n;
        }
        match self.spans.iter().find(|s| s.first == first) {
            Some(s) if size > 0 => {
                debug_assert_eq!(s.end - s.first, size, "local_range takes a population's gids");
                s.local..s.local + s.owned
            }
            _ => 0..0,
        }
    }

    /// Whether this layout groups populations (not round-robin over all shards).
    pub fn grouped(&self) -> bool {
        !self.spans.is_empty()
    }
}

/// The shards of each population group (`lo`, `n`): with no more shards than
/// groups, each group whole on one shard, the largest first onto the least
/// loaded (ties to the lower index); with more shards than groups, contiguous
/// ranges in group order, in proportion to the groups' neurons (largest
/// remainders), at least one each. A pure function of the network and `count`.
pub fn group_shards(net: &Network, groups: &[u32], count: u32) -> Vec<(u32, u32)> {
    let n_groups = groups.iter().map(|&g| g as usize + 1).max().unwrap_or(0);
    let mut size = vec![0u64; n_groups];
    for (p, &g) in net.populations.iter().zip(groups) {
        size[g as usize] += p.size as u64;
    }
    let mut ranges = vec![(0u32, 1u32); n_groups];
    if n_groups == 0 {
        return ranges;
    }
    if count as usize <= n_groups {
        let mut order: Vec<usize> = (0..n_groups).collect();
        order.sort_by_key(|&g| (std::cmp::Reverse(size[g]), g));
        let mut load = vec![0u64; count as usize];
        for g in order {
            let s = (0..count as usize).min_by_key(|&s| (load[s], s)).unwrap_or(0);
            load[s] += size[g];
            ranges[g] = (s as u32, 1);
        }
    } else {
        let total: u64 = size.iter().sum::<u64>().max(1);
        let spare = (count as usize - n_groups) as u64;
        // One shard each, the spare ones by largest remainder of the quota.
        let quota: Vec<(u64, u64)> = size.iter().map(|&z| ((spare * z) / total, (spare * z) % total)).collect();
        let mut n: Vec<u64> = quota.iter().map(|q| 1 + q.0).collect();
        let left = spare - quota.iter().map(|q| q.0).sum::<u64>();
        let mut by_rem: Vec<usize> = (0..n_groups).collect();
        by_rem.sort_by_key(|&g| (std::cmp::Reverse(quota[g].1), g));
        for &g in by_rem.iter().take(left as usize) {
            n[g] += 1;
        }
        let mut lo = 0u32;
        for g in 0..n_groups {
            ranges[g] = (lo, n[g] as u32);
            lo += n[g] as u32;
        }
    }
    ranges
}

/// Visit every synapse of projection `pi` whose target this shard owns, calling
/// `f(source gid, local target, weight, delay steps)`. With `values == false` the
/// weight and delay are not drawn (0 is passed), which keeps the counting pass cheap.
/// Per target (and per source for `fixed_outdegree`), synapses come in a fixed order.
pub fn visit_projection(
    net: &Network,
    pi: usize,
    layout: &Layout,
    values: bool,
    f: &mut impl FnMut(Gid, u32, f32, u16),
) {
    let proj = &net.projections[pi];
    let pre = &net.populations[proj.source];
    let post = &net.populations[proj.target];
    let seed = net.seed;
    let key = pi as u64;
    let draw = |v: &mut Stream| -> (f32, u16) {
        let w = proj.weight.sample(v);
        let d = net.delay_steps(proj.delay_ms.sample(v));
        (w as f32, d)
    };
    // Index of the target itself among the sources, if autapses must be skipped.
    let self_index = |g: Gid| -> Option<u32> {
        (!proj.autapses && g >= pre.first_gid && g < pre.end_gid()).then(|| g - pre.first_gid)
    };
    let mut mark = Vec::new();
    let mut chosen = Vec::new();

    match proj.rule {
        Rule::FixedOutdegree { k } => {
            mark.resize(post.size as usize, false);
            for s in pre.first_gid..pre.end_gid() {
                let mut srng = Stream::new(seed, &[purpose::CONN_STRUCTURE, key, s as u64]);
                let mut vrng = Stream::new(seed, &[purpose::CONN_VALUES, key, s as u64]);
                let excluded =
                    (!proj.autapses && s >= post.first_gid && s < post.end_gid()).then(|| s - post.first_gid);
                choose(&mut srng, post.size, k, excluded, proj.multapses, &mut mark, &mut chosen);
                for &t in &chosen {
                    let g = post.first_gid + t;
                    let (w, d) = if values { draw(&mut vrng) } else { (0.0, 0) };
                    if layout.owns(g) {
                        f(s, layout.local(g), w, d);
                    }
                }
            }
        }
        Rule::FixedTotalNumber { n } => {
            let mut crng = Stream::new(seed, &[purpose::CONN_COUNTS, key]);
            let mut remaining = n;
            for i in 0..post.size {
                let left = (post.size - i) as f64;
                let c = if remaining == 0 {
                    0
                } else if i + 1 == post.size {
                    remaining
                } else {
                    Binomial::new(remaining, 1.0 / left).map(|b| b.sample(&mut crng)).unwrap_or(0)
                };
                remaining -= c;
                let g = post.first_gid + i;
                if c == 0 || !layout.owns(g) {
                    continue;
                }
                let mut srng = Stream::new(seed, &[purpose::CONN_STRUCTURE, key, g as u64]);
                let mut vrng = Stream::new(seed, &[purpose::CONN_VALUES, key, g as u64]);
                let excluded = self_index(g);
                let l = layout.local(g);
                for _ in 0..c {
                    let s = draw_index(&mut srng, pre.size, excluded);
                    let (w, d) = if values { draw(&mut vrng) } else { (0.0, 0) };
                    f(pre.first_gid + s, l, w, d);
                }
            }
        }
        rule => {
            if let Rule::FixedIndegree { .. } = rule {
                mark.resize(pre.size as usize, false);
            }
            let range = layout.local_range(post.first_gid, post.size);
            for l in range {
                let g = layout.gid(l);
                let mut srng = Stream::new(seed, &[purpose::CONN_STRUCTURE, key, g as u64]);
                let mut vrng = Stream::new(seed, &[purpose::CONN_VALUES, key, g as u64]);
                let excluded = self_index(g);
                let mut emit = |s: u32, vrng: &mut Stream| {
                    let (w, d) = if values { draw(vrng) } else { (0.0, 0) };
                    f(pre.first_gid + s, l, w, d);
                };
                match rule {
                    Rule::OneToOne => {
                        let s = g - post.first_gid;
                        if excluded != Some(s) {
                            emit(s, &mut vrng);
                        }
                    }
                    Rule::AllToAll => {
                        for s in 0..pre.size {
                            if excluded != Some(s) {
                                emit(s, &mut vrng);
                            }
                        }
                    }
                    Rule::PairwiseBernoulli { p } => {
                        if p >= 1.0 {
                            for s in 0..pre.size {
                                if excluded != Some(s) {
                                    emit(s, &mut vrng);
                                }
                            }
                        } else if p > 0.0 {
                            // Geometric skipping: O(connections), not O(sources).
                            let log_q = (-p).ln_1p();
                            let mut j: f64 = -1.0;
                            loop {
                                j += 1.0 + (srng.uniform_open0().ln() / log_q).floor();
                                if j >= pre.size as f64 {
                                    break;
                                }
                                let s = j as u32;
                                if excluded != Some(s) {
                                    emit(s, &mut vrng);
                                }
                            }
                        }
                    }
                    Rule::FixedIndegree { k } => {
                        choose(&mut srng, pre.size, k, excluded, proj.multapses, &mut mark, &mut chosen);
                        for &s in &chosen {
                            emit(s, &mut vrng);
                        }
                    }
                    Rule::FixedOutdegree { .. } | Rule::FixedTotalNumber { .. } => unreachable!(),
                }
            }
        }
    }
}

/// For every primary synapse (s → t) of tripartite projection `pi` that an
/// astrocyte joins, call `f(s, t, a)`. Visits the synapses onto *all* targets (every
/// shard replays them: the astrocyte leg s → a may belong to any shard), in a fixed
/// order; the choices for target t come from t's own streams, so they are the same
/// on every partition.
pub fn visit_tripartite(net: &Network, pi: usize, f: &mut impl FnMut(Gid, Gid, Gid)) {
    let Some(mut chooser) = AstrocyteChooser::new(net, pi) else { return };
    visit_projection(net, pi, &Layout::round_robin(0, 1), false, &mut |s, t, _, _| {
        if let Some(a) = chooser.choose(t) {
            f(s, t, a);
        }
    });
}

/// Visit the primary synapses of tripartite projection `pi` onto this shard's
/// targets with their weights and delays, and the astrocyte that joins each (if
/// any): the same choices as [`visit_tripartite`] makes, because both consume each
/// target's streams in that target's synapse order.
pub fn visit_tripartite_primary(
    net: &Network,
    pi: usize,
    layout: &Layout,
    f: &mut impl FnMut(Gid, u32, f32, u16, Option<Gid>),
) {
    let Some(mut chooser) = AstrocyteChooser::new(net, pi) else { return };
    visit_projection(net, pi, layout, true, &mut |s, l, w, d| {
        let a = chooser.choose(layout.gid(l));
        f(s, l, w, d, a);
    });
}

/// Decides, synapse by synapse onto each target, whether and which astrocyte from
/// the target's pool joins a tripartite synapse.
struct AstrocyteChooser {
    third: crate::network::ThirdParty,
    pi: u64,
    seed: u64,
    post_first: Gid,
    n_t: u32,
    astro_first: Gid,
    n_a: u32,
    streams: Vec<Option<Stream>>,
    pools: Vec<Vec<u32>>,
    mark: Vec<bool>,
    chosen: Vec<u32>,
}

impl AstrocyteChooser {
    fn new(net: &Network, pi: usize) -> Option<Self> {
        let proj = &net.projections[pi];
        let third = proj.third?;
        let post = &net.populations[proj.target];
        let astro = &net.populations[third.population];
        Some(AstrocyteChooser {
            third,
            pi: pi as u64,
            seed: net.seed,
            post_first: post.first_gid,
            n_t: post.size,
            astro_first: astro.first_gid,
            n_a: astro.size,
            streams: vec![None; post.size as usize],
            pools: vec![Vec::new(); post.size as usize],
            mark: vec![false; astro.size as usize],
            chosen: Vec::new(),
        })
    }

    /// The astrocyte (gid) joining the next synapse onto target `t`, if any.
    fn choose(&mut self, t: Gid) -> Option<Gid> {
        let ti = (t - self.post_first) as usize;
        let (seed, pi) = (self.seed, self.pi);
        let rng = self.streams[ti].get_or_insert_with(|| Stream::new(seed, &[purpose::TRIPARTITE, pi, t as u64]));
        if rng.uniform() >= self.third.p {
            return None;
        }
        let a = match self.third.pool {
            Pool::Random { size } => {
                if self.pools[ti].is_empty() {
                    let mut prng = Stream::new(seed, &[purpose::ASTRO_POOL, pi, t as u64]);
                    choose(&mut prng, self.n_a, size, None, false, &mut self.mark, &mut self.chosen);
                    self.pools[ti] = self.chosen.clone();
                }
                self.pools[ti][rng.below(size as u64) as usize]
            }
            Pool::Block { size: 1 } => ti as u32 / (self.n_t / self.n_a),
            Pool::Block { size } => ti as u32 * size + rng.below(size as u64) as u32,
        };
        Some(self.astro_first + a)
    }
}

/// Uniform index in `[0, n)` other than `excluded`.
#[inline]
fn draw_index(rng: &mut Stream, n: u32, excluded: Option<u32>) -> u32 {
    match excluded {
        None => rng.below(n as u64) as u32,
        Some(x) => {
            debug_assert!(n > 1);
            let r = rng.below(n as u64 - 1) as u32;
            if r >= x {
                r + 1
            } else {
                r
            }
        }
    }
}

/// `k` indices from `[0, n)` minus `excluded`, with or without repetition, into
/// `chosen` (sorted when drawn without repetition). `mark` is scratch of length ≥ n,
/// all false on entry and on return.
fn choose(
    rng: &mut Stream,
    n: u32,
    k: u32,
    excluded: Option<u32>,
    multapses: bool,
    mark: &mut [bool],
    chosen: &mut Vec<u32>,
) {
    chosen.clear();
    let candidates = n - excluded.map_or(0, |_| 1);
    if candidates == 0 {
        return;
    }
    if multapses {
        for _ in 0..k {
            chosen.push(draw_index(rng, n, excluded));
        }
        return;
    }
    // Floyd's algorithm over the candidate set, then map past the excluded index.
    let k = k.min(candidates);
    for j in (candidates - k)..candidates {
        let r = rng.below(j as u64 + 1) as u32;
        let pick = if mark[r as usize] { j } else { r };
        mark[pick as usize] = true;
        chosen.push(pick);
    }
    for &c in chosen.iter() {
        mark[c as usize] = false;
    }
    chosen.sort_unstable();
    if let Some(x) = excluded {
        for c in chosen.iter_mut() {
            if *c >= x {
                *c += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distribution::Dist;
    use crate::models::ModelKind;
    use crate::network::{Population, Projection};

    /// A population of `size` parrot neurons from gid `first`.
    fn parrots(name: &str, first: Gid, size: u32) -> Population {
        Population {
            name: name.into(),
            size,
            first_gid: first,
            model: ModelKind::Parrot,
            params: vec![],
            initial: vec![],
            homeostasis: None,
        }
    }

    fn net(rule: Rule, n_pre: u32, n_post: u32, same: bool, autapses: bool, multapses: bool) -> Network {
        let pop = parrots;
        let mut populations = vec![pop("a", 0, n_pre)];
        if !same {
            populations.push(pop("b", n_pre, n_post));
        }
        Network {
            dt_ms: 0.1,
            seed: 42,
            projections: vec![Projection {
                source: 0,
                target: if same { 0 } else { 1 },
                rule,
                weight: Dist::Uniform { low: 1.0, high: 2.0 },
                delay_ms: Dist::Uniform { low: 0.1, high: 3.0 },
                autapses,
                multapses,
                plasticity: None,
                sic: false,
                third: None,
            }],
            record_weights: false,
            cerebella: Vec::new(),
            groups: None,
            record_spikes: vec![true; populations.len()],
            populations,
            stimuli: vec![],
            samplers: vec![],
        }
    }

    /// All synapses as (source, target gid, weight bits, delay), sorted.
    fn synapses(net: &Network, shards: u32) -> Vec<(u32, u32, u32, u16)> {
        let mut all = Vec::new();
        for index in 0..shards {
            let layout = Layout::round_robin(index, shards);
            visit_projection(net, 0, &layout, true, &mut |s, l, w, d| all.push((s, layout.gid(l), w.to_bits(), d)));
        }
        all.sort_unstable();
        all
    }

    #[test]
    fn every_rule_is_partition_independent() {
        let rules = [
            Rule::OneToOne,
            Rule::AllToAll,
            Rule::PairwiseBernoulli { p: 0.1 },
            Rule::FixedIndegree { k: 7 },
            Rule::FixedOutdegree { k: 9 },
            Rule::FixedTotalNumber { n: 1234 },
        ];
        for rule in rules {
            for (auto, multi) in [(true, true), (false, false)] {
                if matches!(rule, Rule::FixedTotalNumber { .. }) && !multi {
                    continue;
                }
                let n = net(rule, 60, 60, true, auto, multi);
                let one = synapses(&n, 1);
                assert!(!one.is_empty() || (rule == Rule::OneToOne && !auto), "{rule:?}");
                for shards in [2, 3, 7] {
                    assert_eq!(one, synapses(&n, shards), "{rule:?} autapses={auto} shards={shards}");
                }
            }
        }
    }

    #[test]
    fn counts_and_switches_hold() {
        let count = |rule, auto, multi| synapses(&net(rule, 50, 50, true, auto, multi), 3);
        assert_eq!(count(Rule::AllToAll, false, true).len(), 50 * 49);
        assert_eq!(count(Rule::AllToAll, true, true).len(), 50 * 50);
        assert!(count(Rule::OneToOne, false, true).is_empty());
        assert_eq!(count(Rule::FixedIndegree { k: 10 }, true, true).len(), 500);
        assert_eq!(count(Rule::FixedOutdegree { k: 10 }, true, true).len(), 500);
        assert_eq!(count(Rule::FixedTotalNumber { n: 777 }, true, true).len(), 777);
        // Without autapses and multapses: no self connection, no repeated pair.
        for rule in [Rule::FixedIndegree { k: 49 }, Rule::FixedOutdegree { k: 49 }, Rule::PairwiseBernoulli { p: 0.5 }]
        {
            let syn = count(rule, false, false);
            assert!(syn.iter().all(|s| s.0 != s.1), "{rule:?}");
            let mut pairs: Vec<_> = syn.iter().map(|s| (s.0, s.1)).collect();
            pairs.dedup();
            assert_eq!(pairs.len(), syn.len(), "{rule:?}");
        }
        // In-degree 49 of 49 candidates: complete graph without self loops.
        assert_eq!(count(Rule::FixedIndegree { k: 49 }, false, false).len(), 50 * 49);
    }

    #[test]
    fn pairwise_bernoulli_has_binomial_count() {
        let syn = synapses(&net(Rule::PairwiseBernoulli { p: 0.1 }, 400, 300, false, true, true), 2);
        let mean = 0.1 * 400.0 * 300.0;
        let sd = (mean * 0.9f64).sqrt();
        assert!((syn.len() as f64 - mean).abs() < 4.0 * sd, "{} vs {mean}", syn.len());
        // Sources spread over the whole population.
        let first_half = syn.iter().filter(|s| s.0 < 200).count() as f64;
        assert!((first_half / syn.len() as f64 - 0.5).abs() < 0.02);
    }

    #[test]
    fn fixed_total_number_spreads_uniformly() {
        let syn = synapses(&net(Rule::FixedTotalNumber { n: 100_000 }, 100, 100, false, true, true), 3);
        assert_eq!(syn.len(), 100_000);
        let mut indeg = [0u32; 100];
        for s in &syn {
            indeg[(s.1 - 100) as usize] += 1;
        }
        // Multinomial: each count ~ Binomial(1e5, 0.01): sd ≈ 31.5.
        assert!(indeg.iter().all(|&c| (850..1150).contains(&c)), "{indeg:?}");
    }

    #[test]
    fn tripartite_choices_follow_pools_and_probability() {
        use crate::network::{Pool, ThirdParty};
        let mut n = net(Rule::PairwiseBernoulli { p: 0.2 }, 300, 200, false, true, true);
        n.populations.push(Population {
            name: "A".into(),
            size: 100,
            first_gid: 500,
            model: ModelKind::Parrot,
            params: vec![],
            initial: vec![],
            homeostasis: None,
        });
        for pool in [Pool::Random { size: 10 }, Pool::Block { size: 1 }] {
            n.projections[0].third = Some(ThirdParty {
                population: 2,
                p: 0.5,
                pool,
                to_astrocyte_weight: 1.0,
                to_astrocyte_delay_steps: 1,
                sic_weight: 1.0,
                sic_delay_steps: 1,
                gliotransmission: 0.0,
            });
            let primary = synapses(&n, 1).len() as f64;
            let mut picks = Vec::new();
            visit_tripartite(&n, 0, &mut |s, t, a| picks.push((s, t, a)));
            let mean = 0.5 * primary;
            assert!((picks.len() as f64 - mean).abs() < 4.0 * (mean * 0.5).sqrt(), "{} of {primary}", picks.len());
            let mut per_target: std::collections::BTreeMap<u32, std::collections::BTreeSet<u32>> = Default::default();
            for &(_, t, a) in &picks {
                assert!((500..600).contains(&a));
                per_target.entry(t).or_default().insert(a);
            }
            for (t, set) in per_target {
                match pool {
                    Pool::Random { size } => assert!(set.len() as u32 <= size, "target {t}: {set:?}"),
                    Pool::Block { .. } => assert_eq!(set.into_iter().collect::<Vec<_>>(), vec![500 + (t - 300) / 2]),
                }
            }
            // The same choices on every run (they depend on seed and ids only).
            let mut again = Vec::new();
            visit_tripartite(&n, 0, &mut |s, t, a| again.push((s, t, a)));
            assert_eq!(picks, again);
        }
    }

    /// Populations of `sizes` in groups `groups` (parrots, no projections).
    fn grouped(sizes: &[u32], groups: &[u32]) -> Network {
        let mut n = net(Rule::OneToOne, 1, 1, true, true, true);
        n.projections.clear();
        let mut first = 0;
        n.populations = sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| {
                first += size;
                parrots(&format!("p{i}"), first - size, size)
            })
            .collect();
        n.record_spikes = vec![true; sizes.len()];
        n.groups = Some(groups.to_vec());
        n
    }

    /// A grouped layout is a layout: every neuron on exactly one shard, local
    /// indices in gid order with each population's a contiguous range, `gid`
    /// and `local` inverse; and each group on the shards `group_shards` gave it
    /// (one shard per group when there are no more shards than groups).
    #[test]
    fn grouped_layouts_partition_and_keep_groups_together() {
        let sizes = [13, 50, 37, 5, 21, 1, 64];
        let groups = [0, 0, 1, 2, 1, 3, 2];
        let n = grouped(&sizes, &groups);
        let total = n.total_neurons();
        for count in [1, 2, 3, 4, 5, 7, 9, 16] {
            let ranges = group_shards(&n, &groups, count);
            let mut owner = vec![u32::MAX; total as usize];
            for index in 0..count {
                let layout = Layout::of(&n, index, count);
                assert!(layout.grouped());
                let mut next = 0;
                for p in &n.populations {
                    let r = layout.local_range(p.first_gid, p.size);
                    assert_eq!(r.start, next, "{count} shards, shard {index}: ranges follow each other");
                    next = r.end;
                    let mut last = None;
                    for l in r {
                        let g = layout.gid(l);
                        assert!(g >= p.first_gid && g < p.end_gid() && last < Some(g));
                        assert!(layout.owns(g) && layout.local(g) == l);
                        assert_eq!(owner[g as usize], u32::MAX, "gid {g} on two shards");
                        owner[g as usize] = index;
                        last = Some(g);
                    }
                }
                assert_eq!(layout.n_local(total), next);
                assert_eq!(layout.n_local(total), (0..total).filter(|&g| layout.owns(g)).count() as u32);
            }
            assert!(owner.iter().all(|&o| o != u32::MAX), "{count} shards: every neuron placed");
            for (p, &g) in n.populations.iter().zip(&groups) {
                let (lo, k) = ranges[g as usize];
                let on: std::collections::BTreeSet<u32> =
                    (p.first_gid..p.end_gid()).map(|x| owner[x as usize]).collect();
                assert!(on.iter().all(|s| (lo..lo + k).contains(s)), "{count} shards: {} outside its group's", p.name);
                if count <= 4 {
                    assert_eq!(k, 1, "{count} shards for 4 groups: each group on one shard");
                }
            }
            if count > 4 {
                let covered: u32 = ranges.iter().map(|r| r.1).sum();
                assert_eq!(covered, count, "every shard holds a group");
            }
        }
        // Largest group first onto the least-loaded shard: groups of 63, 58, 69 and
        // 1 neurons on 2 shards: 69 → 0, 63 → 1, 58 → 1 (63 < 69), 1 → 0 (69 < 121).
        assert_eq!(group_shards(&n, &groups, 2), [(1, 1), (1, 1), (0, 1), (0, 1)]);
        // More shards than groups: 3 spare shards by the groups' shares (63, 58,
        // 69, 1 of 191: quotas 0.99, 0.91, 1.08, 0.02): one each to g2 (1 whole),
        // then by remainder g0 and g1.
        assert_eq!(group_shards(&n, &groups, 7), [(0, 2), (2, 2), (4, 2), (6, 1)]);
    }

    #[test]
    fn layout_ranges_partition_populations() {
        for count in [1, 2, 3, 7] {
            let mut seen = vec![0u32; 100];
            for index in 0..count {
                let layout = Layout::round_robin(index, count);
                for (first, size) in [(0, 13), (13, 50), (63, 37)] {
                    for l in layout.local_range(first, size) {
                        let g = layout.gid(l);
                        assert!(g >= first && g < first + size);
                        seen[g as usize] += 1;
                    }
                }
                assert_eq!(layout.n_local(100), (0..100).filter(|g| layout.owns(*g)).count() as u32);
            }
            assert!(seen.iter().all(|&c| c == 1));
        }
    }
}

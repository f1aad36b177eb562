//! A shard: a set of neurons, the synapses onto them, local input devices and
//! samplers. [`Shard::advance`] runs one epoch; it is pure and deterministic and
//! knows nothing of threads, actors or networks.
//!
//! Spike delivery happens at *arrival* time: the synapses of every source are sorted
//! by delay into sections, and a spike stays pending until its last section has been
//! delivered. In each step the sections whose delay has just elapsed add into one
//! input buffer of two channels per neuron — a buffer small enough to stay in cache,
//! where a ring buffer over all delays (NEST's scheme) would be scattered over
//! max_delay × neurons × 16 bytes. The additions into a neuron happen in the same
//! canonical order (spike step, source gid, synapse order) as a ring buffer would
//! receive them, whatever the partition.

use crate::connectivity::{visit_projection, visit_tripartite, visit_tripartite_primary, Layout};
use crate::models::{Group, StepInput};
use crate::network::{
    Exchange, Gid, Homeostasis, Network, PlasticWeight, Spike, SpikeDelay, StateValue, Stimulus, ValueKind,
};
use crate::plasticity::{dopamine_update, stdp_update, DopamineHistory, Plasticity, PostHistory, PreState};
use crate::rng::{poisson_gap, purpose, PoissonTable, Stream};
use rand_distr::Distribution;
use std::ops::Range;
use std::time::Instant;

mod build;
mod statics;
pub use statics::Mismatch as StaticsMismatch;

/// Where a shard's time went, in nanoseconds of wall-clock time on its thread.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy, Default, PartialEq, Eq)]
pub struct PhaseTimes {
    /// Delivering synaptic input (pending sections and spike generators).
    pub deliver_ns: u64,
    /// Drawing Poisson input.
    pub poisson_ns: u64,
    /// Updating neurons (including DC input).
    pub update_ns: u64,
    /// Sampling state variables and taking in incoming spikes.
    pub other_ns: u64,
}

impl PhaseTimes {
    /// Element-wise sum.
    pub fn add(&mut self, o: &PhaseTimes) {
        self.deliver_ns += o.deliver_ns;
        self.poisson_ns += o.poisson_ns;
        self.update_ns += o.update_ns;
        self.other_ns += o.other_ns;
    }
}

/// One sampled value of a state variable.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy, PartialEq)]
pub struct Sample {
    /// Step after whose update the value was read (time `(step + 1) * dt`).
    pub step: u64,
    /// Neuron.
    pub gid: Gid,
    /// Index of the sampler in the network.
    pub sampler: u16,
    /// State variable index (into the model's state list).
    pub var: u16,
    /// Value.
    pub value: f64,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct GroupSlot {
    local: Range<u32>,
    group: Group,
    /// Postsynaptic trace time constant if STDP synapses end on this population.
    tau_minus: Option<f64>,
    /// Homeostasis and the per-neuron rate estimates (Hz).
    homeo: Option<(Homeostasis, Vec<f64>)>,
    /// DC inputs: (amplitude pA, first step on, first step off).
    dc: Vec<(f64, u64, u64)>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
enum Draw {
    /// Mostly empty steps (lambda < 0.5): per neuron, the step of the next nonzero
    /// count, found by geometric skipping; counts there are zero-truncated Poisson.
    Sparse { table: PoissonTable, lambda: f64, streams: Vec<Stream>, next: Vec<u64> },
    /// A count every step, by inversion against a CDF table.
    Dense { table: PoissonTable, streams: Vec<Stream> },
    /// rand_distr's PTRS sampler for large means (lambda > 20).
    Large { poisson: rand_distr::Poisson<f64>, streams: Vec<Stream> },
}

/// The synapses of one plastic projection onto this shard, with their own rows and
/// delay sections (same layout as the static ones, weights in f64 and mutable).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct PlasticTable {
    projection: u32,
    rule: Plasticity,
    /// First gid and size of the source population.
    src_first: Gid,
    src_size: u32,
    #[serde(skip)]
    row_sec: Vec<u32>,
    #[serde(skip)]
    sec_delay: Vec<u16>,
    #[serde(skip)]
    sec_start: Vec<u64>,
    #[serde(skip)]
    target: Vec<u32>,
    weight: Vec<f64>,
    /// Presynaptic state per source neuron.
    pre: Vec<PreState>,
    pending: Vec<PlasticPending>,
    /// Dopamine-modulated rule: eligibility per synapse, the modulator population's
    /// gid range [first, end), and its spike history.
    eligibility: Vec<f64>,
    modulator: (Gid, Gid),
    dopamine: DopamineHistory,
    /// Gliotransmission: the astrocyte (gid) joining each synapse, u32::MAX if none.
    #[serde(skip)]
    astro: Vec<u32>,
}

/// The fabric's verdicts on spike `sp`, one per affected core, from the epoch's
/// (step, gid, core)-ordered list.
fn delays_of<'a>(delays: &'a [SpikeDelay], sp: &Spike) -> &'a [SpikeDelay] {
    let from = delays.partition_point(|d| (d.step, d.gid) < (sp.step, sp.gid));
    let to = from + delays[from..].partition_point(|d| (d.step, d.gid) == (sp.step, sp.gid));
    &delays[from..to]
}

/// Extra steps the fabric adds on the way to `core` ([`SpikeDelay::DROPPED`]:
/// never arrives; 0: on time) given one spike's verdicts.
fn extra_steps(mine: &[SpikeDelay], core: u32) -> u32 {
    mine.binary_search_by_key(&core, |d| d.core).map_or(0, |i| mine[i].extra_steps)
}

/// A plastic synapse's event delayed by an emulated fabric: applied when it
/// arrives, with the rule's update for the synapse's own delay (the spike's
/// timing as emitted), so the weight is the software run's unless the fabric
/// reorders the synapse's events.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy)]
struct LatePlastic {
    before: PreState,
    factor: f64,
    delay: u64,
}

/// The weight a plastic synapse `k` of `table` transmits for a presynaptic spike
/// stamped `stamp` seen after `d` steps, updating it (and its eligibility) by the
/// table's rule.
#[allow(clippy::too_many_arguments)]
fn plastic_weight(
    table: &mut PlasticTable,
    k: usize,
    before: &PreState,
    factor: f64,
    stamp: u64,
    d: u64,
    post: &mut [PostHistory],
    astro_ca: &[f64],
    dt_ms: f64,
) -> f64 {
    let tg = table.target[k] as usize;
    match &table.rule {
        Plasticity::Stdp(sp) => {
            let w = stdp_update(sp, table.weight[k], before, stamp, d, &mut post[tg], dt_ms);
            table.weight[k] = w;
            w
        }
        Plasticity::Tsodyks(_) => table.weight[k] * factor,
        Plasticity::Gliotransmission { gain } => {
            let a = table.astro[k];
            let ca = if a == u32::MAX { 0.0 } else { astro_ca[a as usize] };
            table.weight[k] * (1.0 + gain * ca)
        }
        Plasticity::Dopamine(dp) => {
            let w = dopamine_update(
                dp,
                table.weight[k],
                &mut table.eligibility[k],
                before,
                stamp,
                d,
                &mut post[tg],
                &table.dopamine,
                dt_ms,
            );
            table.weight[k] = w;
            w
        }
    }
}

/// A spike pending on a plastic projection, with the presynaptic state before it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy)]
struct PlasticPending {
    at: Pending,
    before: PreState,
    factor: f64,
}

/// A spike whose synapses have not all been delivered yet.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy)]
struct Pending {
    /// Step at which the next section arrives.
    arrival: u64,
    /// Step in which the spike was emitted.
    emitted: u64,
    /// Next section to deliver.
    next: u32,
    /// One past the source's last section.
    end: u32,
}

impl Pending {
    /// Move on to the next section after delivering the current one; true when the
    /// spike has no section left.
    #[inline]
    fn next_section(&mut self, sec_delay: &[u16]) -> bool {
        self.next += 1;
        if self.next < self.end {
            self.arrival = self.emitted + sec_delay[self.next as usize] as u64;
            false
        } else {
            true
        }
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct PoissonSource {
    local: Range<u32>,
    draw: Draw,
    weight: f64,
    channel: usize,
    /// Steps in which its spikes arrive: [start + delay, stop + delay).
    active: Range<u64>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct LocalSampler {
    index: u16,
    group: usize,
    /// (local index within the group, gid).
    neurons: Vec<(u32, Gid)>,
    variables: Vec<u16>,
    interval: u64,
}

/// A set of neurons and everything that acts on them.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    layout: Layout,
    step: u64,
    epoch_steps: u32,
    n_local: usize,
    groups: Vec<GroupSlot>,
    // Static connectivity is not in checkpoints: `statics::rebuild` makes it again
    // from the network (it is a function of the spec and the shard's gids).
    /// Sections of source `s`: `row_sec[s]..row_sec[s+1]`; ascending delays.
    #[serde(skip)]
    row_sec: Vec<u32>,
    /// Delay (steps) of each section.
    #[serde(skip)]
    sec_delay: Vec<u16>,
    /// Synapses of section `j`: `sec_start[j]..sec_start[j+1]` (one sentinel at the end).
    #[serde(skip)]
    sec_start: Vec<u64>,
    #[serde(skip)]
    syn_target: Vec<u32>,
    /// Static weights: in checkpoints only once homeostatic scaling changed them.
    syn_weight: statics::Weights,
    /// Spikes with undelivered sections, in canonical (step, gid) order.
    pending: Vec<Pending>,
    /// Input of the current step: `[local neuron][channel]`.
    input: Vec<f64>,
    /// Plastic projections, in projection order.
    plastic: Vec<PlasticTable>,
    /// Postsynaptic spike history per local neuron (empty without STDP).
    post: Vec<PostHistory>,
    /// SIC connections, CSR by source gid: (local target, weight, delay steps).
    #[serde(skip)]
    sic_row: Vec<u64>,
    #[serde(skip)]
    sic_syn: Vec<(u32, f32, u16)>,
    /// Current ring buffer `[slot][local neuron]` for SIC input (empty without SIC).
    current: Vec<f64>,
    current_mask: u64,
    /// Groups whose SIC values other shards need.
    sic_sources: Vec<usize>,
    /// Groups whose calcium other shards need (gliotransmission), and the latest
    /// calcium of every astrocyte by gid (empty without gliotransmission).
    ca_sources: Vec<usize>,
    astro_ca: Vec<f64>,
    dt_ms: f64,
    poisson: Vec<PoissonSource>,
    /// Spike-generator events (arrival step, local target, weight), by arrival.
    #[serde(skip)]
    trains: Vec<(u64, u32, f64)>,
    train_cursor: usize,
    samplers: Vec<LocalSampler>,
    samples: Vec<Sample>,
    fired: Vec<u32>,
    events: u64,
    times: PhaseTimes,
    /// Poisson input of the coming epoch, drawn ahead by [`Shard::predraw_poisson`].
    predrawn: Option<Predrawn>,
    /// The last epoch's predrawn buffers, kept for the next (no reallocation of
    /// a growing vector every epoch).
    #[serde(skip)]
    predraw_spare: Option<Predrawn>,
    /// Hardware co-simulation: the core of each local neuron (empty without it).
    #[serde(default)]
    core_of_local: Vec<u32>,
    /// Synaptic events an emulated fabric delayed: (arrival, emitted, source,
    /// synapse index) -> (local target, weight), delivered in key order.
    #[serde(default)]
    late: std::collections::BTreeMap<(u64, u64, Gid, u64), (u32, f32)>,
    /// Plastic synapses' events an emulated fabric delayed: (arrival, emitted,
    /// source, table, synapse) -> the presynaptic state and the synapse's delay.
    #[serde(default)]
    late_plastic: std::collections::BTreeMap<(u64, u64, Gid, u32, u64), LatePlastic>,
    /// Cerebellar modules with a current output: per module, the local group it
    /// drives (`usize::MAX`: none here) and its latest current, pA.
    #[serde(default)]
    module_group: Vec<usize>,
    #[serde(default)]
    module_pa: Vec<f64>,
    /// Cerebellar modules with a dopamine output: (module, plastic table) pairs.
    #[serde(default)]
    module_dopamine: Vec<(u32, usize)>,
}

/// Poisson input drawn ahead of its epoch: for each step, (input index, value)
/// in the order the draws add them, so that applying it later is the same
/// arithmetic as drawing in place.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Default)]
struct Predrawn {
    first_step: u64,
    /// `values[bounds[k]..bounds[k + 1]]` belong to step `first_step + k`.
    bounds: Vec<usize>,
    values: Vec<(u32, f64)>,
}

/// Draw every Poisson source's input of step `t`, calling `add(index, value)` in
/// a fixed order (sources, then neurons).
fn draw_poisson(sources: &mut [PoissonSource], t: u64, mut add: impl FnMut(usize, f64)) {
    for src in sources {
        if !src.active.contains(&t) {
            continue;
        }
        let lo = 2 * src.local.start as usize;
        let (ch, w) = (src.channel, src.weight);
        match &mut src.draw {
            Draw::Sparse { table, lambda, streams, next } => {
                for (k, (rng, nx)) in streams.iter_mut().zip(next.iter_mut()).enumerate() {
                    if *nx == t {
                        add(lo + 2 * k + ch, table.sample_nonzero(rng) as f64 * w);
                        *nx = t + 1 + poisson_gap(rng, *lambda);
                    }
                }
            }
            Draw::Dense { table, streams } => {
                // No branch on n > 0: at these means it would mispredict often,
                // and adding 0.0 leaves the input unchanged.
                for (k, rng) in streams.iter_mut().enumerate() {
                    add(lo + 2 * k + ch, table.sample(rng) as f64 * w);
                }
            }
            Draw::Large { poisson: p, streams } => {
                for (k, rng) in streams.iter_mut().enumerate() {
                    let n = p.sample(rng);
                    if n > 0.0 {
                        add(lo + 2 * k + ch, n * w);
                    }
                }
            }
        }
    }
}

impl Shard {
    /// Draw the Poisson input of the coming epoch now, while this process waits for
    /// the other processes' spikes (it does not depend on them); `advance` then
    /// adds it exactly as it would have drawn it. The random streams are per
    /// neuron, so the spikes do not change.
    pub fn predraw_poisson(&mut self) {
        if self.poisson.is_empty() || self.predrawn.is_some() {
            return;
        }
        let start = Instant::now();
        let mut pre = self.predraw_spare.take().unwrap_or_default();
        pre.first_step = self.step;
        pre.values.clear();
        pre.bounds.clear();
        pre.bounds.push(0);
        for t in self.step..self.step + self.epoch_steps as u64 {
            draw_poisson(&mut self.poisson, t, |i, v| pre.values.push((i as u32, v)));
            pre.bounds.push(pre.values.len());
        }
        self.predrawn = Some(pre);
        self.times.poisson_ns += start.elapsed().as_nanos() as u64;
    }

    /// Take spikes of earlier epochs that reach this shard late: in the two-tier
    /// exchange ([`crate::tiers`]) other processes' spikes come every few epochs,
    /// all of them due no earlier than the current step. They join the pending
    /// spikes in canonical (step, gid) order, so each neuron's input adds up in the
    /// order it would have had they come every epoch. Static synapses only (the
    /// two-tier exchange is off with plastic ones or a fabric in the loop).
    pub fn absorb(&mut self, spikes: &[Spike]) {
        debug_assert!(self.plastic.is_empty() && self.core_of_local.is_empty());
        let from = self.pending.len();
        for sp in spikes {
            let (next, end) = (self.row_sec[sp.gid as usize], self.row_sec[sp.gid as usize + 1]);
            if next < end {
                let arrival = sp.step + self.sec_delay[next as usize] as u64;
                debug_assert!(arrival >= self.step, "spike {sp:?} due at {arrival}, before step {}", self.step);
                self.pending.push(Pending { arrival, emitted: sp.step, next, end });
            }
        }
        if from == self.pending.len() {
            return;
        }
        // Sections of one source lie in `row_sec[gid]..row_sec[gid + 1]`, so `end`
        // orders sources as their gids do. Pending was in order, and so are the new
        // ones: a stable sort of the two runs from where they overlap is a merge.
        let key = |p: &Pending| (p.emitted, p.end);
        let first = key(&self.pending[from]);
        let lo = self.pending[..from].partition_point(|p| key(p) < first);
        self.pending[lo..].sort_by_key(key);
        // (Sums of a few f32 weights in f64 are exact, so a wrong order seldom shows
        // in the spikes; this check keeps the order itself.)
        debug_assert!(self.pending.windows(2).all(|w| key(&w[0]) < key(&w[1])), "pending out of order");
    }

    /// Take `input` (everything all shards sent in the previous epoch, in canonical
    /// order), then advance one epoch, appending this shard's spikes and state values
    /// to `output` in canonical order.
    pub fn advance(&mut self, input: &Exchange, output: &mut Exchange) {
        let incoming = &input.spikes[..];
        let out = &mut output.spikes;
        if !self.astro_ca.is_empty() {
            for v in input.values.iter().filter(|v| v.kind == ValueKind::Calcium) {
                self.astro_ca[v.gid as usize] = v.value;
            }
        }
        debug_assert!(incoming.windows(2).all(|w| w[0] < w[1]));
        for v in input.values.iter().filter(|v| v.kind == ValueKind::ModuleCurrent) {
            if let Some(pa) = self.module_pa.get_mut(v.gid as usize) {
                *pa = v.value;
            }
        }
        if !self.sic_syn.is_empty() {
            let n = self.n_local;
            for v in input.values.iter().filter(|v| v.kind == ValueKind::Sic) {
                let row = self.sic_row[v.gid as usize] as usize..self.sic_row[v.gid as usize + 1] as usize;
                for &(tg, w, d) in &self.sic_syn[row] {
                    let slot = ((v.step + d as u64) & self.current_mask) as usize;
                    self.current[slot * n + tg as usize] += w as f64 * v.value;
                }
            }
        }
        let mut clock = Instant::now();
        let mut lap = |into: &mut u64| {
            let now = Instant::now();
            *into += (now - clock).as_nanos() as u64;
            clock = now;
        };
        let mut times = self.times;
        let mut cursor = 0;
        for sp in incoming {
            let (next, end) = (self.row_sec[sp.gid as usize], self.row_sec[sp.gid as usize + 1]);
            // What an emulated fabric does to this spike, core by core.
            let delays = &input.delays;
            while cursor < delays.len() && (delays[cursor].step, delays[cursor].gid) < (sp.step, sp.gid) {
                cursor += 1;
            }
            let mut upto = cursor;
            while upto < delays.len() && (delays[upto].step, delays[upto].gid) == (sp.step, sp.gid) {
                upto += 1;
            }
            if upto > cursor && !self.core_of_local.is_empty() && next < end {
                let mine = &delays[cursor..upto];
                for j in next as usize..end as usize {
                    let delay = self.sec_delay[j] as u64;
                    for k in self.sec_start[j] as usize..self.sec_start[j + 1] as usize {
                        let tg = self.syn_target[k];
                        let core = self.core_of_local[tg as usize];
                        let extra = extra_steps(mine, core);
                        if extra == SpikeDelay::DROPPED {
                            continue;
                        }
                        let arrival = sp.step + delay + extra as u64;
                        self.late.insert((arrival, sp.step, sp.gid, k as u64), (tg, self.syn_weight[k]));
                    }
                }
                continue;
            }
            if next < end {
                let arrival = sp.step + self.sec_delay[next as usize] as u64;
                self.pending.push(Pending { arrival, emitted: sp.step, next, end });
            }
        }
        for (ti, table) in self.plastic.iter_mut().enumerate() {
            if let Plasticity::Dopamine(dp) = table.rule {
                let m = table.modulator;
                for sp in incoming.iter().filter(|sp| sp.gid >= m.0 && sp.gid < m.1) {
                    table.dopamine.push(sp.step + 1, dp.tau_n, self.dt_ms);
                }
            }
            for sp in incoming {
                if sp.gid < table.src_first || sp.gid >= table.src_first + table.src_size {
                    continue;
                }
                let src = (sp.gid - table.src_first) as usize;
                // Every shard advances the source's state, whether or not it holds
                // synapses of it: the state depends on the spike train alone.
                let (before, factor) = table.pre[src].on_spike(&table.rule, sp.step + 1, self.dt_ms);
                let (next, end) = (table.row_sec[src], table.row_sec[src + 1]);
                // What an emulated fabric does to this spike, core by core: each
                // synapse's event then arrives on its own.
                let mine =
                    if self.core_of_local.is_empty() || next >= end { &[][..] } else { delays_of(&input.delays, sp) };
                if !mine.is_empty() {
                    for j in next as usize..end as usize {
                        let d = table.sec_delay[j] as u64;
                        for k in table.sec_start[j] as usize..table.sec_start[j + 1] as usize {
                            let core = self.core_of_local[table.target[k] as usize];
                            let extra = extra_steps(mine, core);
                            if extra == SpikeDelay::DROPPED {
                                continue;
                            }
                            // The current arrives late; the rule pairs with the spike's own
                            // timing (a time-stamped event), so the post-spike windows of
                            // a synapse still tile its spike train exactly.
                            let key = (sp.step + d + extra as u64, sp.step, sp.gid, ti as u32, k as u64);
                            self.late_plastic.insert(key, LatePlastic { before, factor, delay: d });
                        }
                    }
                    continue;
                }
                if next < end {
                    let arrival = sp.step + table.sec_delay[next as usize] as u64;
                    let at = Pending { arrival, emitted: sp.step, next, end };
                    table.pending.push(PlasticPending { at, before, factor });
                }
            }
        }
        // Cerebellar dopamine, after the modulator spikes of the last epoch (stamps in order).
        for v in input.values.iter().filter(|v| v.kind == ValueKind::ModuleDopamine) {
            for &(m, ti) in &self.module_dopamine {
                if m == v.gid {
                    if let Plasticity::Dopamine(dp) = self.plastic[ti].rule {
                        self.plastic[ti].dopamine.add(v.step, v.value, dp.tau_n, self.dt_ms);
                    }
                }
            }
        }
        let end = self.step + self.epoch_steps as u64;
        for t in self.step..end {
            lap(&mut times.other_ns);
            self.deliver(t);
            if !self.plastic.is_empty() {
                self.deliver_plastic(t);
            }
            while self.late.first_key_value().is_some_and(|(k, _)| k.0 <= t) {
                if let Some((_, (tg, w))) = self.late.pop_first() {
                    self.input[2 * tg as usize + usize::from(w < 0.0)] += w as f64;
                    self.events += 1;
                }
            }
            while let Some(&(arrival, l, w)) = self.trains.get(self.train_cursor) {
                if arrival > t {
                    break;
                }
                self.input[2 * l as usize + usize::from(w < 0.0)] += w;
                self.train_cursor += 1;
            }
            lap(&mut times.deliver_ns);
            debug_assert!(self.predrawn.as_ref().is_none_or(|p| p.first_step == self.step));
            if let Some(pre) = &self.predrawn {
                let k = (t - self.step) as usize;
                for &(i, v) in &pre.values[pre.bounds[k]..pre.bounds[k + 1]] {
                    self.input[i as usize] += v;
                }
            } else {
                let input = &mut self.input;
                draw_poisson(&mut self.poisson, t, |i, v| input[i] += v);
            }
            lap(&mut times.poisson_ns);
            let cur_base = (t & self.current_mask) as usize * self.n_local;
            for (gi, slot) in self.groups.iter_mut().enumerate() {
                let mut i_stim_pa: f64 = slot.dc.iter().filter(|d| (d.1..d.2).contains(&t)).map(|d| d.0).sum();
                for (m, &g) in self.module_group.iter().enumerate() {
                    if g == gi {
                        i_stim_pa += self.module_pa[m];
                    }
                }
                let (lo, hi) = (slot.local.start as usize, slot.local.end as usize);
                let syn = &mut self.input[2 * lo..2 * hi];
                let current =
                    if self.current.is_empty() { &[][..] } else { &self.current[cur_base + lo..cur_base + hi] };
                slot.group.update(StepInput { syn, i_stim_pa, current }, &mut self.fired);
                for &f in &self.fired {
                    out.push(Spike { step: t, gid: self.layout.gid(slot.local.start + f) });
                }
                if let Some((h, rate)) = &mut slot.homeo {
                    let decay = (-self.dt_ms / h.tau_rate_ms).exp();
                    rate.iter_mut().for_each(|r| *r *= decay);
                    for &f in &self.fired {
                        rate[f as usize] += 1000.0 / h.tau_rate_ms;
                    }
                    if h.threshold_rate != 0.0 {
                        let k = h.threshold_rate * self.dt_ms * 1e-3;
                        for (i, r) in rate.iter().enumerate() {
                            slot.group.shift_threshold(i, k * (r - h.target_rate_hz));
                        }
                    }
                }
                if let Some(tau_minus) = slot.tau_minus {
                    for &f in &self.fired {
                        let h = &mut self.post[(slot.local.start + f) as usize];
                        if h.incoming > 0 {
                            h.push(t + 1, tau_minus, self.dt_ms);
                        }
                    }
                }
                self.fired.clear();
            }
            if !self.current.is_empty() {
                self.current[cur_base..cur_base + self.n_local].fill(0.0);
            }
            self.synaptic_scaling(t);
            for &gi in &self.sic_sources {
                let slot = &self.groups[gi];
                let var = crate::models::astrocyte_lr_1994::SIC_VAR;
                // Only nonzero currents travel: adding zero would change nothing, and an
                // astrocyte's SIC is zero unless its calcium is above threshold.
                for l in slot.local.clone() {
                    let value = slot.group.state(var, (l - slot.local.start) as usize);
                    if value != 0.0 {
                        output.values.push(StateValue {
                            step: t,
                            gid: self.layout.gid(l),
                            kind: ValueKind::Sic,
                            value,
                        });
                    }
                }
            }
            if t + 1 == end {
                for &gi in &self.ca_sources {
                    let slot = &self.groups[gi];
                    for l in slot.local.clone() {
                        let value =
                            slot.group.state(crate::models::astrocyte_lr_1994::CA_VAR, (l - slot.local.start) as usize);
                        output.values.push(StateValue {
                            step: t,
                            gid: self.layout.gid(l),
                            kind: ValueKind::Calcium,
                            value,
                        });
                    }
                }
            }
            lap(&mut times.update_ns);
            for s in &self.samplers {
                if (t + 1) % s.interval != 0 {
                    continue;
                }
                let group = &self.groups[s.group].group;
                for &(l, gid) in &s.neurons {
                    for &var in &s.variables {
                        self.samples.push(Sample {
                            step: t,
                            gid,
                            sampler: s.index,
                            var,
                            value: group.state(var as usize, l as usize),
                        });
                    }
                }
            }
        }
        lap(&mut times.other_ns);
        self.times = times;
        self.step = end;
        self.predraw_spare = self.predrawn.take();
    }

    /// Where this shard's time went so far.
    pub fn phase_times(&self) -> PhaseTimes {
        self.times
    }

    /// Deliver the plastic sections arriving at step `t`: update each synapse (STDP)
    /// or scale it (short-term plasticity), then add it to the input buffer.
    fn deliver_plastic(&mut self, t: u64) {
        for table in &mut self.plastic {
            let mut any_done = false;
            for pi in 0..table.pending.len() {
                let p = table.pending[pi];
                if p.at.arrival != t {
                    continue;
                }
                let j = p.at.next as usize;
                let d = table.sec_delay[j] as u64;
                let range = table.sec_start[j] as usize..table.sec_start[j + 1] as usize;
                self.events += range.len() as u64;
                for k in range {
                    let tg = table.target[k] as usize;
                    let (before, factor, stamp) = (p.before, p.factor, p.at.emitted + 1);
                    let ca = &self.astro_ca;
                    let w = plastic_weight(table, k, &before, factor, stamp, d, &mut self.post, ca, self.dt_ms);
                    self.input[2 * tg + usize::from(w < 0.0)] += w;
                }
                let sec_delay = &table.sec_delay;
                any_done |= table.pending[pi].at.next_section(sec_delay);
            }
            if any_done {
                table.pending.retain(|p| p.at.next < p.at.end);
            }
        }
        // Events an emulated fabric delayed, in (arrival, emission, source, table,
        // synapse) order.
        while self.late_plastic.first_key_value().is_some_and(|(key, _)| key.0 <= t) {
            let Some(((_, emitted, _, ti, k), late)) = self.late_plastic.pop_first() else { break };
            let table = &mut self.plastic[ti as usize];
            let k = k as usize;
            let tg = table.target[k] as usize;
            let (ca, dt) = (&self.astro_ca, self.dt_ms);
            let w =
                plastic_weight(table, k, &late.before, late.factor, emitted + 1, late.delay, &mut self.post, ca, dt);
            self.input[2 * tg + usize::from(w < 0.0)] += w;
            self.events += 1;
        }
    }

    /// Scale the excitatory weights onto neurons whose population has synaptic
    /// scaling due at the end of step `t`.
    fn synaptic_scaling(&mut self, t: u64) {
        let mut factor: Vec<f64> = Vec::new();
        for slot in &self.groups {
            let Some((h, rate)) = &slot.homeo else { continue };
            if h.scaling_rate == 0.0 || !(t + 1).is_multiple_of(h.scaling_interval_steps as u64) {
                continue;
            }
            if factor.is_empty() {
                factor = vec![1.0; self.n_local];
            }
            let k = h.scaling_rate * h.scaling_interval_steps as f64 * self.dt_ms * 1e-3;
            for (i, r) in rate.iter().enumerate() {
                factor[slot.local.start as usize + i] = (1.0 + k * (h.target_rate_hz - r)).max(0.0);
            }
        }
        if factor.is_empty() {
            return;
        }
        self.syn_weight.scaled = true;
        for (w, &tg) in self.syn_weight.iter_mut().zip(&self.syn_target) {
            if *w > 0.0 {
                *w = (*w as f64 * factor[tg as usize]) as f32;
            }
        }
        for table in &mut self.plastic {
            for (w, &tg) in table.weight.iter_mut().zip(&table.target) {
                if *w > 0.0 {
                    *w *= factor[tg as usize];
                }
            }
        }
    }

    /// Current weights of the plastic synapses on this shard.
    pub fn plastic_weights(&self) -> Vec<PlasticWeight> {
        let mut out = Vec::new();
        for table in &self.plastic {
            for src in 0..table.src_size as usize {
                for j in table.row_sec[src] as usize..table.row_sec[src + 1] as usize {
                    for k in table.sec_start[j] as usize..table.sec_start[j + 1] as usize {
                        out.push(PlasticWeight {
                            projection: table.projection,
                            source: table.src_first + src as u32,
                            target: self.layout.gid(table.target[k]),
                            delay_steps: table.sec_delay[j],
                            weight: table.weight[k],
                        });
                    }
                }
            }
        }
        out
    }

    /// Add every pending section that arrives at step `t` into the input buffer, in
    /// pending (canonical) order, and drop spikes that are fully delivered.
    #[inline]
    fn deliver(&mut self, t: u64) {
        let mut any_done = false;
        for p in self.pending.iter_mut() {
            if p.arrival != t {
                continue;
            }
            let j = p.next as usize;
            let range = self.sec_start[j] as usize..self.sec_start[j + 1] as usize;
            self.events += range.len() as u64;
            let targets = &self.syn_target[range.clone()];
            let weights = &self.syn_weight[range];
            for (&tg, &w) in targets.iter().zip(weights) {
                self.input[2 * tg as usize + usize::from(w < 0.0)] += w as f64;
            }
            any_done |= p.next_section(&self.sec_delay);
        }
        if any_done {
            self.pending.retain(|p| p.next < p.end);
        }
    }

    /// This shard's index among all shards of the run.
    pub fn index(&self) -> u32 {
        self.layout.index
    }

    /// The next step this shard will compute.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Take the samples recorded so far.
    pub fn take_samples(&mut self) -> Vec<Sample> {
        std::mem::take(&mut self.samples)
    }

    /// Every synapse onto this shard as (source gid, target gid), static then
    /// plastic: for analyses such as mapping onto hardware, not the hot path.
    pub fn for_each_synapse(&self, mut f: impl FnMut(Gid, Gid)) {
        for s in 0..self.row_sec.len().saturating_sub(1) {
            for j in self.row_sec[s] as usize..self.row_sec[s + 1] as usize {
                for k in self.sec_start[j] as usize..self.sec_start[j + 1] as usize {
                    f(s as Gid, self.layout.gid(self.syn_target[k]));
                }
            }
        }
        for t in &self.plastic {
            for s in 0..t.row_sec.len().saturating_sub(1) {
                for j in t.row_sec[s] as usize..t.row_sec[s + 1] as usize {
                    for k in t.sec_start[j] as usize..t.sec_start[j + 1] as usize {
                        f(t.src_first + s as Gid, self.layout.gid(t.target[k]));
                    }
                }
            }
        }
    }

    /// Hardware co-simulation: give every neuron its core on the emulated chip
    /// (`core_of[gid]`); spikes then follow the `delays` of their [`Exchange`].
    pub fn set_cores(&mut self, core_of: &[u32]) {
        self.core_of_local = (0..self.n_local as u32).map(|l| core_of[self.layout.gid(l) as usize]).collect();
    }

    /// Number of synapses stored on this shard (static and plastic).
    pub fn n_synapses(&self) -> u64 {
        (self.syn_target.len() + self.plastic.iter().map(|t| t.target.len()).sum::<usize>()) as u64
    }

    /// Bytes of synapse storage: per-synapse arrays, the delay sections and the row index.
    pub fn synapse_bytes(&self) -> u64 {
        (self.syn_target.len() * 4
            + self.syn_weight.len() * 4
            + self.sec_delay.len() * 2
            + self.sec_start.len() * 8
            + self.row_sec.len() * 4) as u64
    }

    /// Synaptic events delivered so far (spike × synapse).
    pub fn synaptic_events(&self) -> u64 {
        self.events
    }

    /// Number of neurons on this shard.
    pub fn n_neurons(&self) -> usize {
        self.n_local
    }

    /// Whether every population with members on this shard is an astrocyte
    /// population (and it has some): a shard of astrocytes, an actor of its own kind.
    pub fn holds_only_astrocytes(&self) -> bool {
        let mut here = self.groups.iter().filter(|g| !g.local.is_empty()).peekable();
        here.peek().is_some() && here.all(|g| matches!(g.group, Group::AstrocyteLr1994(_)))
    }
}

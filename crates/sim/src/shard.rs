//! A shard: a set of neurons, the synapses onto them, their ring buffers, local
//! input devices and samplers. [`Shard::advance`] runs one epoch; it is pure and
//! deterministic and knows nothing of threads, actors or networks.

use crate::connectivity::{visit_projection, Layout};
use crate::models::{Group, StepInput};
use crate::network::{Gid, Network, Spike, Stimulus};
use crate::rng::{purpose, Stream};
use rand_distr::Distribution;
use std::ops::Range;

/// One sampled value of a state variable.
#[derive(Debug, Clone, Copy, PartialEq)]
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

#[derive(Debug, Clone)]
struct GroupSlot {
    local: Range<u32>,
    group: Group,
    /// DC inputs: (amplitude pA, first step on, first step off).
    dc: Vec<(f64, u64, u64)>,
}

#[derive(Debug, Clone)]
enum Draw {
    /// Inversion with e^-lambda precomputed.
    Small { lambda: f64, exp_neg: f64 },
    /// rand_distr's PTRS sampler for large means.
    Large(rand_distr::Poisson<f64>),
}

#[derive(Debug, Clone)]
struct PoissonSource {
    local: Range<u32>,
    streams: Vec<Stream>,
    draw: Draw,
    weight: f64,
    channel: usize,
    /// Steps in which its spikes arrive: [start + delay, stop + delay).
    active: Range<u64>,
}

#[derive(Debug, Clone)]
struct LocalSampler {
    index: u16,
    group: usize,
    /// (local index within the group, gid).
    neurons: Vec<(u32, Gid)>,
    variables: Vec<u16>,
    interval: u64,
}

/// A set of neurons and everything that acts on them.
#[derive(Debug, Clone)]
pub struct Shard {
    layout: Layout,
    step: u64,
    epoch_steps: u32,
    n_local: usize,
    groups: Vec<GroupSlot>,
    /// CSR by source gid: the synapses of source `s` are `row_start[s]..row_start[s+1]`.
    row_start: Vec<u64>,
    syn_target: Vec<u32>,
    syn_weight: Vec<f32>,
    syn_delay: Vec<u16>,
    /// Ring buffer: `[slot][local neuron][channel]`, slot = step & ring_mask.
    ring: Vec<f64>,
    ring_mask: u64,
    poisson: Vec<PoissonSource>,
    /// Spike-generator events (arrival step, local target, weight), by arrival.
    trains: Vec<(u64, u32, f64)>,
    train_cursor: usize,
    samplers: Vec<LocalSampler>,
    samples: Vec<Sample>,
    fired: Vec<u32>,
    events: u64,
}

impl Shard {
    /// Build the part of `net` that `layout` assigns to this shard.
    pub fn build(net: &Network, layout: Layout) -> Shard {
        let total = net.total_neurons();
        let n_local = layout.n_local(total) as usize;
        let mut groups = Vec::new();
        let mut group_of_pop = vec![usize::MAX; net.populations.len()];
        for (pi, pop) in net.populations.iter().enumerate() {
            let local = layout.local_range(pop.first_gid, pop.size);
            if local.is_empty() {
                continue;
            }
            let mut group = Group::new(pop.model, &pop.params, local.len(), net.dt_ms);
            if !pop.initial.is_empty() {
                for l in local.clone() {
                    let g = layout.gid(l);
                    let mut rng = Stream::new(net.seed, &[purpose::INITIAL_STATE, g as u64]);
                    for (var, dist) in &pop.initial {
                        group.set_state(*var, (l - local.start) as usize, dist.sample(&mut rng));
                    }
                }
            }
            group_of_pop[pi] = groups.len();
            groups.push(GroupSlot { local, group, dc: Vec::new() });
        }

        // Synapses: count per source, then fill (the generator is replayed).
        let mut row_start = vec![0u64; total as usize + 1];
        for pi in 0..net.projections.len() {
            visit_projection(net, pi, layout, false, &mut |s, _, _, _| row_start[s as usize + 1] += 1);
        }
        for i in 0..total as usize {
            row_start[i + 1] += row_start[i];
        }
        let n_syn = row_start[total as usize] as usize;
        let mut syn_target = vec![0u32; n_syn];
        let mut syn_weight = vec![0f32; n_syn];
        let mut syn_delay = vec![0u16; n_syn];
        let mut cursor = row_start.clone();
        for pi in 0..net.projections.len() {
            visit_projection(net, pi, layout, true, &mut |s, l, w, d| {
                let c = cursor[s as usize] as usize;
                syn_target[c] = l;
                syn_weight[c] = w;
                syn_delay[c] = d;
                cursor[s as usize] += 1;
            });
        }
        drop(cursor);
        let mut max_delay = syn_delay.iter().copied().max().unwrap_or(1) as u64;

        // Devices.
        let mut poisson = Vec::new();
        let mut trains = Vec::new();
        for (si, stim) in net.stimuli.iter().enumerate() {
            match stim {
                Stimulus::Poisson { target, rate_hz, weight, delay_steps, start_step, stop_step } => {
                    let gi = group_of_pop[*target];
                    if gi == usize::MAX {
                        continue;
                    }
                    let local = groups[gi].local.clone();
                    let streams = local
                        .clone()
                        .map(|l| Stream::new(net.seed, &[purpose::POISSON, si as u64, layout.gid(l) as u64]))
                        .collect();
                    let lambda = rate_hz * net.dt_ms * 1e-3;
                    let draw = if lambda <= 20.0 {
                        Draw::Small { lambda, exp_neg: (-lambda).exp() }
                    } else {
                        match rand_distr::Poisson::new(lambda) {
                            Ok(p) => Draw::Large(p),
                            Err(_) => Draw::Small { lambda: 0.0, exp_neg: 1.0 },
                        }
                    };
                    let d = *delay_steps as u64;
                    max_delay = max_delay.max(d);
                    poisson.push(PoissonSource {
                        local,
                        streams,
                        draw,
                        weight: *weight,
                        channel: usize::from(*weight < 0.0),
                        active: start_step + d..stop_step.saturating_add(d),
                    });
                }
                Stimulus::Dc { target, amplitude_pa, start_step, stop_step } => {
                    let gi = group_of_pop[*target];
                    if gi != usize::MAX {
                        groups[gi].dc.push((*amplitude_pa, *start_step, *stop_step));
                    }
                }
                Stimulus::SpikeTrain { target, neurons, steps, weight, delay_steps } => {
                    let pop = &net.populations[*target];
                    let d = *delay_steps as u64;
                    max_delay = max_delay.max(d);
                    let targets: Vec<u32> = match neurons {
                        Some(list) => list.clone(),
                        None => (0..pop.size).collect(),
                    };
                    for &e in steps {
                        for &i in &targets {
                            let g = pop.first_gid + i;
                            if layout.owns(g) {
                                trains.push((e + d, layout.local(g), *weight));
                            }
                        }
                    }
                }
            }
        }
        trains.sort_by_key(|t| t.0);

        let samplers = net
            .samplers
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let gi = group_of_pop[s.population];
                if gi == usize::MAX {
                    return None;
                }
                let pop = &net.populations[s.population];
                let lo = groups[gi].local.start;
                let neurons: Vec<(u32, Gid)> = s
                    .neurons
                    .iter()
                    .map(|&i| pop.first_gid + i)
                    .filter(|&g| layout.owns(g))
                    .map(|g| (layout.local(g) - lo, g))
                    .collect();
                (!neurons.is_empty()).then(|| LocalSampler {
                    index: i as u16,
                    group: gi,
                    neurons,
                    variables: s.variables.iter().map(|&v| v as u16).collect(),
                    interval: s.interval_steps.max(1) as u64,
                })
            })
            .collect();

        let epoch_steps = net.epoch_steps();
        let slots = (max_delay + epoch_steps as u64 + 1).next_power_of_two();
        Shard {
            layout,
            step: 0,
            epoch_steps,
            n_local,
            groups,
            row_start,
            syn_target,
            syn_weight,
            syn_delay,
            ring: vec![0.0; slots as usize * n_local * 2],
            ring_mask: slots - 1,
            poisson,
            trains,
            train_cursor: 0,
            samplers,
            samples: Vec::new(),
            fired: Vec::new(),
            events: 0,
        }
    }

    /// Deliver `incoming` (all spikes of the previous epoch, in canonical order),
    /// then advance one epoch, appending this shard's spikes to `out` in canonical
    /// order.
    pub fn advance(&mut self, incoming: &[Spike], out: &mut Vec<Spike>) {
        debug_assert!(incoming.windows(2).all(|w| w[0] < w[1]));
        let n2 = 2 * self.n_local;
        let mask = self.ring_mask;
        for sp in incoming {
            let row = self.row_start[sp.gid as usize] as usize..self.row_start[sp.gid as usize + 1] as usize;
            self.events += row.len() as u64;
            let targets = &self.syn_target[row.clone()];
            let weights = &self.syn_weight[row.clone()];
            let delays = &self.syn_delay[row];
            for ((&t, &w), &d) in targets.iter().zip(weights).zip(delays) {
                let slot = ((sp.step + d as u64) & mask) as usize;
                let idx = slot * n2 + 2 * t as usize + usize::from(w < 0.0);
                self.ring[idx] += w as f64;
            }
        }
        let end = self.step + self.epoch_steps as u64;
        while let Some(&(arrival, l, w)) = self.trains.get(self.train_cursor) {
            if arrival >= end {
                break;
            }
            let slot = (arrival & mask) as usize;
            self.ring[slot * n2 + 2 * l as usize + usize::from(w < 0.0)] += w;
            self.train_cursor += 1;
        }
        for t in self.step..end {
            let base = (t & mask) as usize * n2;
            for src in &mut self.poisson {
                if !src.active.contains(&t) {
                    continue;
                }
                let lo = src.local.start as usize;
                for (k, rng) in src.streams.iter_mut().enumerate() {
                    let n = match &src.draw {
                        Draw::Small { lambda, exp_neg } => rng.poisson_small(*lambda, *exp_neg) as f64,
                        Draw::Large(p) => p.sample(rng),
                    };
                    if n > 0.0 {
                        self.ring[base + 2 * (lo + k) + src.channel] += n * src.weight;
                    }
                }
            }
            for slot in &mut self.groups {
                let i_stim_pa: f64 = slot.dc.iter().filter(|d| (d.1..d.2).contains(&t)).map(|d| d.0).sum();
                let (lo, hi) = (slot.local.start as usize, slot.local.end as usize);
                let syn = &mut self.ring[base + 2 * lo..base + 2 * hi];
                slot.group.update(StepInput { syn, i_stim_pa }, &mut self.fired);
                for &f in &self.fired {
                    out.push(Spike { step: t, gid: self.layout.gid(slot.local.start + f) });
                }
                self.fired.clear();
            }
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
        self.step = end;
    }

    /// The next step this shard will compute.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Take the samples recorded so far.
    pub fn take_samples(&mut self) -> Vec<Sample> {
        std::mem::take(&mut self.samples)
    }

    /// Number of synapses stored on this shard.
    pub fn n_synapses(&self) -> u64 {
        self.syn_target.len() as u64
    }

    /// Bytes of synapse storage: per-synapse arrays plus the row index.
    pub fn synapse_bytes(&self) -> u64 {
        (self.syn_target.len() * 4 + self.syn_weight.len() * 4 + self.syn_delay.len() * 2 + self.row_start.len() * 8)
            as u64
    }

    /// Synaptic events delivered so far (spike × synapse).
    pub fn synaptic_events(&self) -> u64 {
        self.events
    }

    /// Number of neurons on this shard.
    pub fn n_neurons(&self) -> usize {
        self.n_local
    }
}

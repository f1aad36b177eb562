//! Building a shard from the network: its neurons, the synapses onto them
//! (generated on the target side, placed into source rows and sorted by delay),
//! its generators and samplers.

use super::*;

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
            let tau_minus = net
                .projections
                .iter()
                .filter(|p| p.target == pi)
                .find_map(|p| p.plasticity.and_then(|r| r.tau_minus()));
            let homeo = pop.homeostasis.map(|h| (h, vec![h.target_rate_hz; local.len()]));
            groups.push(GroupSlot { local, group, dc: Vec::new(), tau_minus, homeo });
        }

        // Synapses: count per source, then fill (the generator is replayed), then sort
        // each source's row by delay (stable) into sections.
        let glio = |p: &crate::network::Projection| p.third.is_some_and(|t| t.gliotransmission != 0.0);
        let statics: Vec<usize> = (0..net.projections.len())
            .filter(|&p| {
                let proj = &net.projections[p];
                proj.plasticity.is_none() && !proj.sic && !glio(proj)
            })
            .collect();
        let triparts: Vec<usize> = (0..net.projections.len()).filter(|&p| net.projections[p].third.is_some()).collect();
        // Static spike synapses: the static projections, then the astrocyte legs
        // (s → a) of tripartite projections whose astrocyte is on this shard.
        let each_static = |values: bool, f: &mut dyn FnMut(Gid, u32, f32, u16)| {
            for &pi in &statics {
                visit_projection(net, pi, &layout, values, &mut |s, l, w, d| f(s, l, w, d));
            }
            for &pi in &triparts {
                let third = net.projections[pi].third.expect("tripartite");
                let (w, d) = (third.to_astrocyte_weight as f32, third.to_astrocyte_delay_steps);
                visit_tripartite(net, pi, &mut |s, _, a| {
                    if layout.owns(a) {
                        f(s, layout.local(a), w, d);
                    }
                });
            }
        };
        let mut row_start = vec![0u64; total as usize + 1];
        each_static(false, &mut |s, _, _, _| row_start[s as usize + 1] += 1);
        for i in 0..total as usize {
            row_start[i + 1] += row_start[i];
        }
        let n_syn = row_start[total as usize] as usize;
        let mut placer = Placer::new(row_start.clone(), n_syn);
        each_static(true, &mut |s, l, w, d| placer.push(s, l, w, d));
        let (mut syn_target, mut syn_weight, syn_delay) = placer.finish();
        let (row_sec, sec_delay, sec_start) =
            sort_rows_by_delay(&row_start, &mut syn_target, &mut syn_weight, &syn_delay);
        drop(syn_delay);

        // Plastic projections: their own tables, and spike histories of their targets.
        let mut plastic = Vec::new();
        let mut post: Vec<PostHistory> = Vec::new();
        for (pi, proj) in net.projections.iter().enumerate() {
            let rule = match (proj.plasticity, proj.third) {
                (Some(rule), _) => rule,
                (None, Some(t)) if t.gliotransmission != 0.0 => {
                    Plasticity::Gliotransmission { gain: t.gliotransmission }
                }
                _ => continue,
            };
            let pre_pop = &net.populations[proj.source];
            // (source index, delay, local target, weight, astrocyte gid or u32::MAX)
            let mut edges: Vec<(u32, u16, u32, f64, u32)> = Vec::new();
            if let Plasticity::Gliotransmission { .. } = rule {
                visit_tripartite_primary(net, pi, &layout, &mut |s, l, w, d, a| {
                    edges.push((s - pre_pop.first_gid, d, l, w as f64, a.unwrap_or(u32::MAX)));
                });
            } else {
                visit_projection(net, pi, &layout, true, &mut |s, l, w, d| {
                    edges.push((s - pre_pop.first_gid, d, l, w as f64, u32::MAX));
                });
            }
            // Stable: generation order within (source, delay).
            edges.sort_by_key(|e| (e.0, e.1));
            if rule.tau_minus().is_some() {
                if post.is_empty() {
                    post = vec![PostHistory::default(); n_local];
                }
                for e in &edges {
                    post[e.2 as usize].incoming += 1;
                }
            }
            let mut row_sec = Vec::with_capacity(pre_pop.size as usize + 1);
            let (mut sec_delay, mut sec_start) = (Vec::new(), Vec::new());
            let mut k = 0usize;
            for src in 0..pre_pop.size {
                row_sec.push(sec_delay.len() as u32);
                while k < edges.len() && edges[k].0 == src {
                    let d = edges[k].1;
                    sec_delay.push(d);
                    sec_start.push(k as u64);
                    while k < edges.len() && edges[k].0 == src && edges[k].1 == d {
                        k += 1;
                    }
                }
            }
            row_sec.push(sec_delay.len() as u32);
            sec_start.push(edges.len() as u64);
            plastic.push(PlasticTable {
                projection: pi as u32,
                rule,
                src_first: pre_pop.first_gid,
                src_size: pre_pop.size,
                row_sec,
                sec_delay,
                sec_start,
                target: edges.iter().map(|e| e.2).collect(),
                weight: edges.iter().map(|e| e.3).collect(),
                pre: vec![PreState::new(&rule); pre_pop.size as usize],
                pending: Vec::new(),
                eligibility: if matches!(rule, Plasticity::Dopamine(_)) { vec![0.0; edges.len()] } else { Vec::new() },
                modulator: match rule {
                    Plasticity::Dopamine(dp) => {
                        let m = &net.populations[dp.modulator];
                        (m.first_gid, m.end_gid())
                    }
                    _ => (0, 0),
                },
                dopamine: DopamineHistory::default(),
                astro: if matches!(rule, Plasticity::Gliotransmission { .. }) {
                    edges.iter().map(|e| e.4).collect()
                } else {
                    Vec::new()
                },
            });
        }

        // SIC connections: a CSR by source gid, delivered into a current ring buffer.
        let mut sic_row = Vec::new();
        let mut sic_syn = Vec::new();
        let mut max_sic_delay = 0u64;
        if net.projections.iter().any(|p| p.sic || p.third.is_some()) {
            let mut edges: Vec<(u32, u32, f32, u16)> = Vec::new();
            for (pi, proj) in net.projections.iter().enumerate() {
                if proj.sic {
                    visit_projection(net, pi, &layout, true, &mut |s, l, w, d| edges.push((s, l, w, d)));
                }
                if let Some(third) = proj.third {
                    let (w, d) = (third.sic_weight as f32, third.sic_delay_steps);
                    visit_tripartite(net, pi, &mut |_, t, a| {
                        if layout.owns(t) {
                            edges.push((a, layout.local(t), w, d));
                        }
                    });
                }
            }
            edges.sort_by_key(|e| e.0);
            sic_row = vec![0u64; total as usize + 1];
            for e in &edges {
                sic_row[e.0 as usize + 1] += 1;
                max_sic_delay = max_sic_delay.max(e.3 as u64);
            }
            for i in 0..total as usize {
                sic_row[i + 1] += sic_row[i];
            }
            sic_syn = edges.iter().map(|e| (e.1, e.2, e.3)).collect();
        }
        let sic_sources: Vec<usize> = net
            .projections
            .iter()
            .filter_map(|p| match (p.sic, p.third) {
                (true, _) => Some(p.source),
                (_, Some(t)) => Some(t.population),
                _ => None,
            })
            .filter_map(|pop| (group_of_pop[pop] != usize::MAX).then_some(group_of_pop[pop]))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let ca_sources: Vec<usize> = net
            .projections
            .iter()
            .filter_map(|p| p.third.filter(|t| t.gliotransmission != 0.0).map(|t| t.population))
            .filter_map(|pop| (group_of_pop[pop] != usize::MAX).then_some(group_of_pop[pop]))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let any_glio = net.projections.iter().any(glio);
        let current_slots =
            if sic_syn.is_empty() { 0 } else { (max_sic_delay + net.epoch_steps() as u64 + 1).next_power_of_two() };

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
                    let mut streams: Vec<Stream> = local
                        .clone()
                        .map(|l| Stream::new(net.seed, &[purpose::POISSON, si as u64, layout.gid(l) as u64]))
                        .collect();
                    let lambda = rate_hz * net.dt_ms * 1e-3;
                    let d = *delay_steps as u64;
                    let large = rand_distr::Poisson::new(lambda).ok().filter(|_| lambda > 20.0);
                    let draw = if lambda > 0.0 && lambda < 0.5 {
                        let first = start_step + d;
                        let next = streams.iter_mut().map(|r| first.saturating_add(poisson_gap(r, lambda))).collect();
                        Draw::Sparse { table: PoissonTable::new(lambda), lambda, streams, next }
                    } else if let Some(poisson) = large {
                        Draw::Large { poisson, streams }
                    } else {
                        Draw::Dense { table: PoissonTable::new(lambda.min(20.0)), streams }
                    };
                    poisson.push(PoissonSource {
                        local,
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
        // Modules whose output is the dopamine of the plastic projections onto a population.
        let mut module_dopamine = Vec::new();
        for (m, c) in net.cerebella.iter().enumerate() {
            if let crate::network::ModuleOutput::Dopamine { population, .. } = c.output {
                for (ti, t) in plastic.iter().enumerate() {
                    let target = net.projections[t.projection as usize].target;
                    if target == population && matches!(t.rule, Plasticity::Dopamine(_)) {
                        module_dopamine.push((m as u32, ti));
                    }
                }
            }
        }
        Shard {
            layout,
            step: 0,
            epoch_steps,
            n_local,
            groups,
            row_sec,
            sec_delay,
            sec_start,
            syn_target,
            syn_weight: statics::Weights::new(syn_weight),
            pending: Vec::new(),
            input: vec![0.0; n_local * 2],
            plastic,
            post,
            sic_row,
            sic_syn,
            current: vec![0.0; current_slots as usize * n_local],
            current_mask: current_slots.saturating_sub(1),
            sic_sources,
            ca_sources,
            astro_ca: if any_glio { vec![0.0; total as usize] } else { Vec::new() },
            dt_ms: net.dt_ms,
            poisson,
            trains,
            train_cursor: 0,
            samplers,
            samples: Vec::new(),
            fired: Vec::new(),
            events: 0,
            times: PhaseTimes::default(),
            predrawn: None,
            predraw_spare: None,
            core_of_local: Vec::new(),
            late: std::collections::BTreeMap::new(),
            late_plastic: std::collections::BTreeMap::new(),
            module_group: net
                .cerebella
                .iter()
                .map(|c| match c.output {
                    crate::network::ModuleOutput::Current { population, .. } => group_of_pop[population],
                    _ => usize::MAX,
                })
                .collect(),
            module_pa: vec![0.0; net.cerebella.len()],
            module_dopamine,
        }
    }
}

/// Places generated synapses (target-major order) into their source rows.
///
/// Writing each synapse straight to `cursor[source]` scatters over the whole
/// synapse arrays (gigabytes at full scale: a cache and TLB miss per synapse).
/// Instead synapses are buffered in chunks, counting-sorted by source inside the
/// chunk (stable), and copied out as one run per source in ascending address order.
/// The result is the same layout: per row, generation order.
struct Placer {
    cursor: Vec<u64>,
    target: Vec<u32>,
    weight: Vec<f32>,
    delay: Vec<u16>,
    buf: Vec<(u32, u32, f32, u16)>,
    sorted: Vec<(u32, f32, u16)>,
    counts: Vec<u32>,
    chunk: usize,
}

impl Placer {
    const CHUNK: usize = 1 << 20;

    fn new(row_start: Vec<u64>, n_syn: usize) -> Self {
        let n_src = row_start.len() - 1;
        // Chunks of 1/64 of the synapses (64 sweeps over the arrays), within
        // [64 Ki, 1 Mi] entries: small networks keep small buffers.
        let chunk = (n_syn / 64).clamp(1 << 16, Self::CHUNK);
        Placer {
            cursor: row_start,
            target: vec![0; n_syn],
            weight: vec![0.0; n_syn],
            delay: vec![0; n_syn],
            buf: Vec::with_capacity(chunk),
            sorted: Vec::with_capacity(chunk),
            counts: vec![0; n_src + 1],
            chunk,
        }
    }

    #[inline]
    fn push(&mut self, s: Gid, l: u32, w: f32, d: u16) {
        self.buf.push((s, l, w, d));
        if self.buf.len() == self.chunk {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        self.counts.fill(0);
        for e in &self.buf {
            self.counts[e.0 as usize + 1] += 1;
        }
        for i in 1..self.counts.len() {
            self.counts[i] += self.counts[i - 1];
        }
        self.sorted.clear();
        self.sorted.resize(self.buf.len(), (0, 0.0, 0));
        for e in &self.buf {
            let p = &mut self.counts[e.0 as usize];
            self.sorted[*p as usize] = (e.1, e.2, e.3);
            *p += 1;
        }
        // counts[s] is now the end of source s's run in `sorted`.
        let mut start = 0usize;
        for s in 0..self.counts.len() - 1 {
            let end = self.counts[s] as usize;
            if end > start {
                let c = self.cursor[s] as usize;
                for (k, &(l, w, d)) in self.sorted[start..end].iter().enumerate() {
                    self.target[c + k] = l;
                    self.weight[c + k] = w;
                    self.delay[c + k] = d;
                }
                self.cursor[s] += (end - start) as u64;
            }
            start = end;
        }
        self.buf.clear();
    }

    fn finish(mut self) -> (Vec<u32>, Vec<f32>, Vec<u16>) {
        self.flush();
        (self.target, self.weight, self.delay)
    }
}

/// Sort every row (stably) by delay and cut it into sections of equal delay.
/// Returns (sections per row, section delays, section starts with a sentinel).
fn sort_rows_by_delay(
    row_start: &[u64],
    target: &mut [u32],
    weight: &mut [f32],
    delay: &[u16],
) -> (Vec<u32>, Vec<u16>, Vec<u64>) {
    let n_rows = row_start.len() - 1;
    let mut row_sec = Vec::with_capacity(row_start.len());
    let mut sec_delay = Vec::new();
    let mut sec_start = Vec::new();
    let mut hist: Vec<u32> = Vec::new();
    let (mut tmp_t, mut tmp_w) = (Vec::new(), Vec::new());
    for r in 0..n_rows {
        row_sec.push(sec_delay.len() as u32);
        let (a, b) = (row_start[r] as usize, row_start[r + 1] as usize);
        if a == b {
            continue;
        }
        let d = &delay[a..b];
        let max = *d.iter().max().unwrap_or(&0) as usize;
        hist.clear();
        hist.resize(max + 2, 0);
        for &x in d {
            hist[x as usize + 1] += 1;
        }
        for x in 0..=max {
            if hist[x + 1] > 0 {
                sec_delay.push(x as u16);
                sec_start.push((a as u64) + hist[x] as u64);
            }
            hist[x + 1] += hist[x];
        }
        // Already sorted (the common case for constant delays): nothing to move.
        if d.windows(2).all(|w| w[0] <= w[1]) {
            continue;
        }
        tmp_t.clear();
        tmp_t.resize(b - a, 0u32);
        tmp_w.clear();
        tmp_w.resize(b - a, 0f32);
        for (i, &x) in d.iter().enumerate() {
            let pos = hist[x as usize] as usize;
            hist[x as usize] += 1;
            tmp_t[pos] = target[a + i];
            tmp_w[pos] = weight[a + i];
        }
        target[a..b].copy_from_slice(&tmp_t);
        weight[a..b].copy_from_slice(&tmp_w);
    }
    row_sec.push(sec_delay.len() as u32);
    sec_start.push(row_start[n_rows]);
    (row_sec, sec_delay, sec_start)
}

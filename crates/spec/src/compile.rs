//! Validation and compilation of an [`Experiment`] into the kernel's [`Network`].
//!
//! Every problem is reported with its field path and what would be valid; all of
//! them are collected before returning, so a user fixes a file in one pass.

use crate::error::{Errors, SpecError};
use crate::schema::{ConnSpec, Experiment, StimulusSpec};
use neuropil_sim::models::ModelKind;
use neuropil_sim::network::{
    Cerebellar, ModuleOutput, Pool, Population, Projection, Rule, Sampler, Stimulus, ThirdParty,
};
use neuropil_sim::{Dist, Network};
use std::collections::HashMap;

mod cerebella;
mod memory;
mod projection;
mod stimulus;

use cerebella::compile_cerebella;
pub use memory::{estimate_bytes, shard_bytes};
use projection::{
    check_delay, check_group_floor, compile_homeostasis, compile_rule, compile_third, floor_between_groups,
};
use stimulus::compile_stimulus;

/// Largest number of neurons in one network (gids are u32; kept below 2^31).
pub const MAX_NEURONS: u64 = 1 << 31;
/// Largest number of sampled values a run may record.
pub const MAX_SAMPLES: f64 = 2e8;
/// Bytes per synapse in the kernel (target u32, weight f32, delay u16).
pub const BYTES_PER_SYNAPSE: f64 = 10.0;

/// What the machine allows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Memory available for the run, bytes (`None`: do not check).
    pub memory_bytes: Option<u64>,
}

/// A validated experiment, ready to run.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The network for the kernel.
    pub network: Network,
    /// Steps to simulate.
    pub steps: u64,
    /// Steps left out of summary statistics.
    pub transient_steps: u64,
    /// DC current added to each population's I_e by K-scaling compensation, pA.
    pub dc_compensation_pa: Vec<f64>,
    /// Estimated peak memory, bytes.
    pub estimated_bytes: u64,
    /// Expected number of synapses.
    pub expected_synapses: f64,
}

fn rule_names() -> &'static str {
    "one_to_one, all_to_all, pairwise_bernoulli, fixed_indegree, fixed_outdegree, fixed_total_number"
}

/// Validate `exp` and build its network.
pub fn compile(exp: &Experiment, limits: &Limits) -> Result<Compiled, SpecError> {
    let mut errs = Errors::default();
    let run = &exp.run;

    // Run settings.
    let dt = run.dt_ms;
    if !(dt.is_finite() && dt > 0.0 && dt <= 10.0) {
        errs.add("run.dt_ms", format!("must be in (0, 10] ms, got {dt}"));
        return Err(SpecError::Invalid(errs.0));
    }
    let mut steps = 0;
    if !(run.duration_ms.is_finite() && run.duration_ms > 0.0) {
        errs.add("run.duration_ms", format!("must be a positive number of ms, got {}", run.duration_ms));
    } else {
        let s = (run.duration_ms / dt).round();
        if s > 1e11 {
            errs.add("run.duration_ms", format!("{} ms at dt {dt} ms is more than 1e11 steps", run.duration_ms));
        }
        steps = (s as u64).max(1);
    }
    if !(run.transient_ms.is_finite() && run.transient_ms >= 0.0 && run.transient_ms < run.duration_ms) {
        errs.add(
            "run.transient_ms",
            format!("must be in [0, duration_ms = {}) ms, got {}", run.duration_ms, run.transient_ms),
        );
    }
    let transient_steps = (run.transient_ms / dt).round() as u64;
    if let Some(hw) = &exp.hardware {
        if hw.preset.trim().is_empty() {
            errs.add(
                "hardware.preset",
                "empty; name a preset (spinnaker1, spinnaker2, loihi, truenorth, dynapse) or a preset file",
            );
        }
        if !["", "round_robin", "population_contiguous", "locality_aware"].contains(&hw.mapping.as_str()) {
            errs.add(
                "hardware.mapping",
                format!("unknown {:?}; use round_robin, population_contiguous or locality_aware", hw.mapping),
            );
        }
    }
    if run.threads > 1024 {
        errs.add("run.threads", format!("must be at most 1024, got {}", run.threads));
    }
    if run.shards > 65_536 {
        errs.add("run.shards", format!("must be at most 65536, got {}", run.shards));
    }

    // Scaling.
    let sc = &exp.scaling;
    for (name, v) in [("neurons", sc.neurons), ("synapses", sc.synapses)] {
        if !(v.is_finite() && v > 0.0) {
            errs.add(format!("scaling.{name}"), format!("must be a positive factor, got {v}"));
        }
    }
    let k_scale = scale_factor(sc.synapses);
    let n_scale = scale_factor(sc.neurons);
    let w_scale = 1.0 / k_scale.sqrt();

    // Populations.
    let mut populations = Vec::new();
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    let mut first_gid: u64 = 0;
    for (i, p) in exp.populations.iter().enumerate() {
        let path = format!("populations[{i}]");
        if p.name.is_empty() {
            errs.add(format!("{path}.name"), "must not be empty");
        } else if by_name.insert(p.name.as_str(), i).is_some() {
            errs.add(
                format!("{path}.name"),
                format!("\"{}\" is used by an earlier population; names must be unique", p.name),
            );
        }
        let size = scaled_size(p.size, n_scale);
        if p.size == 0 || size < 1.0 {
            errs.add(
                format!("{path}.size"),
                format!("must be at least 1 neuron after scaling ({} × {n_scale} = {size})", p.size),
            );
        }
        if size >= MAX_NEURONS as f64 {
            errs.add(
                format!("{path}.size"),
                format!("{size} neurons is more than the {MAX_NEURONS} a network can hold"),
            );
        }
        let Some(model) = ModelKind::from_name(&p.model) else {
            errs.add(
                format!("{path}.model"),
                format!("unknown model \"{}\"; available: {}", p.model, ModelKind::names().join(", ")),
            );
            populations.push(None);
            continue;
        };
        let mut params = model.default_params();
        let mut params_ok = true;
        for (name, v) in &p.params {
            match model.param_index(name) {
                Some(k) => {
                    params_ok &= errs.finite(format!("{path}.params.{name}"), *v);
                    params[k] = *v;
                }
                None => {
                    params_ok = false;
                    let names: Vec<_> = model.params().iter().map(|x| x.name).collect();
                    errs.add(
                        format!("{path}.params.{name}"),
                        format!(
                            "unknown parameter of {}; its parameters are {}",
                            model.name(),
                            if names.is_empty() { "none".to_string() } else { names.join(", ") }
                        ),
                    );
                }
            }
        }
        if params_ok {
            if let Err(e) = model.check(&params, dt) {
                errs.add(format!("{path}.params.{}", e.param), e.message);
            }
        }
        let mut initial = Vec::new();
        for (name, d) in &p.initial {
            match model.state_index(name) {
                Some(k) => {
                    if let Some(dist) = d.compile(&format!("{path}.initial.{name}"), &mut errs) {
                        initial.push((k, dist));
                    }
                }
                None => {
                    let names: Vec<_> = model.state().iter().map(|x| x.name).collect();
                    errs.add(
                        format!("{path}.initial.{name}"),
                        format!(
                            "unknown state variable of {}; it has {}",
                            model.name(),
                            if names.is_empty() { "none".to_string() } else { names.join(", ") }
                        ),
                    );
                }
            }
        }
        if let Some(r) = p.full_scale_rate_hz {
            if !(r.is_finite() && r >= 0.0) {
                errs.add(format!("{path}.full_scale_rate_hz"), format!("must be a rate >= 0 Hz, got {r}"));
            }
        }
        let homeostasis = p
            .homeostasis
            .as_ref()
            .and_then(|h| compile_homeostasis(h, &format!("{path}.homeostasis"), model, dt, &mut errs));
        let size_u = size.clamp(0.0, MAX_NEURONS as f64) as u32;
        populations.push(Some(Population {
            name: p.name.clone(),
            size: size_u,
            first_gid: first_gid.min(u32::MAX as u64) as u32,
            model,
            params,
            initial,
            homeostasis,
        }));
        first_gid += size_u as u64;
    }
    if exp.populations.is_empty() {
        errs.add("populations", "at least one population is required");
    }
    if first_gid >= MAX_NEURONS {
        errs.add("populations", format!("{first_gid} neurons in total; a network holds fewer than {MAX_NEURONS}"));
    }
    check_group_floor(exp, dt, &mut errs);
    let valid: Vec<bool> = populations.iter().map(|p| p.is_some()).collect();
    let resolve = |name: &str, path: String, errs: &mut Errors| -> Option<usize> {
        match by_name.get(name) {
            Some(&i) if valid[i] => Some(i),
            Some(_) => None,
            None => {
                let names: Vec<_> = exp.populations.iter().map(|p| p.name.as_str()).collect();
                errs.add(path, format!("no population named \"{name}\"; populations are {}", names.join(", ")));
                None
            }
        }
    };

    // Projections. Input at full scale (for DC compensation): (target, mean weight × in-degree × rate).
    let mut projections = Vec::new();
    let mut full_input: Vec<Vec<(f64, Option<usize>)>> = vec![Vec::new(); exp.populations.len()];
    let mut stdp_tau_minus: HashMap<usize, (f64, String)> = HashMap::new();
    for (i, pr) in exp.projections.iter().enumerate() {
        let path = format!("projections[{i}]");
        let src = resolve(&pr.source, format!("{path}.source"), &mut errs);
        let tgt = resolve(&pr.target, format!("{path}.target"), &mut errs);
        let weight = pr.syn.weight.compile(&format!("{path}.syn.weight"), &mut errs);
        let delay = pr.syn.delay_ms.compile(&format!("{path}.syn.delay_ms"), &mut errs);
        let delay = match (delay, src.zip(tgt)) {
            (Some(d), Some((s, t))) => floor_between_groups(exp, s, t, d, &path, &mut errs),
            (d, _) => d,
        };
        let plasticity = crate::synapse::compile(&pr.syn, &format!("{path}.syn"), &mut errs);
        if let Some(d) = &delay {
            check_delay(d, dt, &format!("{path}.syn.delay_ms"), &mut errs);
        }
        if let Some(w) = &weight {
            match pr.syn.receptor.as_str() {
                "auto" => {}
                "excitatory" if w.lower() < 0.0 => errs.add(
                    format!("{path}.syn.weight"),
                    format!("receptor \"excitatory\" needs weights >= 0, but they can reach {}", w.lower()),
                ),
                "inhibitory" if w.upper() > 0.0 => errs.add(
                    format!("{path}.syn.weight"),
                    format!("receptor \"inhibitory\" needs weights <= 0, but they can reach {}", w.upper()),
                ),
                "excitatory" | "inhibitory" => {}
                other => errs.add(
                    format!("{path}.syn.receptor"),
                    format!("unknown receptor \"{other}\"; use auto, excitatory or inhibitory"),
                ),
            }
        }
        let (Some(s), Some(t), Some(weight), Some(delay)) = (src, tgt, weight, delay) else {
            continue;
        };
        let (pre, post) = (populations[s].as_ref(), populations[t].as_ref());
        let (Some(pre), Some(post)) = (pre, post) else { continue };
        if post.model == ModelKind::Parrot && weight != Dist::Constant(1.0) {
            errs.add(format!("{path}.syn.weight"), "connections into a parrot_neuron must have weight 1");
        }
        if post.model == ModelKind::AstrocyteLr1994 && weight.lower() < 0.0 {
            errs.add(
                format!("{path}.syn.weight"),
                format!("weights into an astrocyte raise IP3 and must be >= 0, but they can reach {}", weight.lower()),
            );
        }
        let sic = pr.syn.model == "sic_connection";
        if sic {
            if pre.model != ModelKind::AstrocyteLr1994 {
                errs.add(
                    format!("{path}.source"),
                    format!("a sic_connection starts at an astrocyte_lr_1994 population, not {}", pre.model.name()),
                );
            }
            if post.model != ModelKind::AeifCondAlphaAstro {
                errs.add(
                    format!("{path}.target"),
                    format!("a sic_connection ends at an aeif_cond_alpha_astro population, not {}", post.model.name()),
                );
            }
        } else if pre.model == ModelKind::AstrocyteLr1994 {
            errs.add(
                format!("{path}.syn.model"),
                "astrocytes do not spike; connect them to neurons with model = \"sic_connection\"",
            );
        }
        let Some((rule, full_indegree)) = compile_rule(
            &pr.conn,
            pre,
            post,
            exp.populations[s].size as f64,
            exp.populations[t].size as f64,
            n_scale,
            k_scale,
            s == t,
            &format!("{path}.conn"),
            &mut errs,
        ) else {
            continue;
        };
        let Ok(mut plasticity) = plasticity else { continue };
        if let Some(neuropil_sim::plasticity::Plasticity::Dopamine(dp)) = &mut plasticity {
            match pr.syn.modulator.as_deref() {
                None => errs.add(
                    format!("{path}.syn.modulator"),
                    "stdp_dopamine_synapse needs the name of the dopamine-releasing population",
                ),
                Some(m) => match resolve(m, format!("{path}.syn.modulator"), &mut errs) {
                    Some(mi) => dp.modulator = mi,
                    None => continue,
                },
            }
            if weight.lower() < dp.w_min || weight.upper() > dp.w_max {
                errs.add(
                    format!("{path}.syn.weight"),
                    format!(
                        "weights must lie in [Wmin = {}, Wmax = {}], but they can reach [{}, {}]",
                        dp.w_min,
                        dp.w_max,
                        weight.lower(),
                        weight.upper()
                    ),
                );
            }
        } else if pr.syn.modulator.is_some() {
            errs.add(
                format!("{path}.syn.modulator"),
                format!("only stdp_dopamine_synapse takes a modulator, not {}", pr.syn.model),
            );
        }
        let third = match &pr.third {
            None => None,
            Some(th) => {
                if plasticity.is_some() || sic {
                    errs.add(format!("{path}.third"), "tripartite projections need static primary synapses");
                }
                compile_third(th, &format!("{path}.third"), post, dt, &populations, &by_name, &mut errs)
            }
        };
        if let Some(neuropil_sim::plasticity::Plasticity::Stdp(sp)) = &plasticity {
            if weight.lower() < 0.0 || weight.upper() > sp.w_max {
                errs.add(
                    format!("{path}.syn.weight"),
                    format!(
                        "STDP weights must lie in [0, Wmax = {}], but they can reach [{}, {}]",
                        sp.w_max,
                        weight.lower(),
                        weight.upper()
                    ),
                );
            }
        }
        if let Some(tau_minus) = plasticity.and_then(|r| r.tau_minus()) {
            match stdp_tau_minus.get(&t) {
                Some((tm, first)) if *tm != tau_minus => errs.add(
                    format!("{path}.syn.params.tau_minus"),
                    format!("{tau_minus} differs from {tm} of {first}: STDP projections onto one population share the postsynaptic trace"),
                ),
                Some(_) => {}
                None => {
                    stdp_tau_minus.insert(t, (tau_minus, path.clone()));
                }
            }
        }
        full_input[t].push((weight.nominal_mean() * full_indegree, Some(s)));
        projections.push(Projection {
            source: s,
            target: t,
            rule,
            weight: weight.scaled(w_scale),
            delay_ms: delay,
            autapses: pr.conn.allow_autapses,
            multapses: pr.conn.allow_multapses,
            plasticity,
            sic,
            third,
        });
    }

    // Stimuli.
    let mut stimuli = Vec::new();
    for (i, st) in exp.stimuli.iter().enumerate() {
        let path = format!("stimuli[{i}]");
        let Some(t) = resolve(&st.target, format!("{path}.target"), &mut errs) else { continue };
        let Some(post) = populations[t].as_ref() else { continue };
        if let Some((stim, full)) = compile_stimulus(st, &path, t, post, dt, k_scale, w_scale, &mut errs) {
            if let Some(x) = full {
                full_input[t].push((x, None));
            }
            stimuli.push(stim);
        }
    }

    // DC compensation of K scaling.
    let mut dc = vec![0.0; exp.populations.len()];
    if k_scale != 1.0 && sc.dc_compensation {
        for (t, inputs) in full_input.iter().enumerate() {
            let Some(post) = populations[t].as_ref() else { continue };
            let mut sum = 0.0;
            let mut ok = true;
            for (x, src) in inputs {
                let rate = match src {
                    None => 1.0,
                    Some(s) => match exp.populations[*s].full_scale_rate_hz {
                        Some(r) => r,
                        None => {
                            ok = false;
                            errs.add(
                                format!("populations[{s}].full_scale_rate_hz"),
                                "required when scaling.synapses != 1 with dc_compensation (the mean input to restore); or set scaling.dc_compensation = false",
                            );
                            0.0
                        }
                    },
                };
                sum += x * rate;
            }
            if !ok || inputs.is_empty() {
                continue;
            }
            let Some(tau_k) = post.model.param_index("tau_syn_ex") else {
                errs.add(
                    format!("populations[{t}].model"),
                    format!(
                        "{} has no tau_syn_ex, so DC compensation is undefined; set scaling.dc_compensation = false",
                        post.model.name()
                    ),
                );
                continue;
            };
            let amp = 1e-3 * post.params[tau_k] * (1.0 - k_scale.sqrt()) * sum;
            dc[t] = amp;
        }
        dedup_errors(&mut errs);
    }
    let mut pops: Vec<Population> = Vec::new();
    for (i, p) in populations.into_iter().enumerate() {
        if let Some(mut p) = p {
            if dc[i] != 0.0 {
                if let Some(k) = p.model.param_index("I_e") {
                    p.params[k] += dc[i];
                }
            }
            pops.push(p);
        }
    }

    // Recorders.
    let mut record_spikes = vec![false; exp.populations.len()];
    let mut record_weights = false;
    let mut samplers = Vec::new();
    let mut sample_count = 0.0;
    for (i, r) in exp.recorders.iter().enumerate() {
        let path = format!("recorders[{i}]");
        match r.kind.as_str() {
            "spike_recorder" => {
                if r.populations.is_empty() {
                    record_spikes.iter_mut().for_each(|x| *x = true);
                }
                for (k, name) in r.populations.iter().enumerate() {
                    if let Some(p) = resolve(name, format!("{path}.populations[{k}]"), &mut errs) {
                        record_spikes[p] = true;
                    }
                }
            }
            "multimeter" => {
                let Some(name) = &r.population else {
                    errs.add(format!("{path}.population"), "required for a multimeter");
                    continue;
                };
                let Some(p) = resolve(name, format!("{path}.population"), &mut errs) else { continue };
                let Some(pop) = pops.iter().find(|x| x.name == *name) else { continue };
                let neurons = r.neurons.clone().unwrap_or_else(|| vec![0]);
                for (k, &n) in neurons.iter().enumerate() {
                    if n >= pop.size {
                        errs.add(
                            format!("{path}.neurons[{k}]"),
                            format!("index {n} is outside population \"{name}\" (size {} after scaling)", pop.size),
                        );
                    }
                }
                if r.variables.is_empty() {
                    errs.add(format!("{path}.variables"), "name at least one state variable, e.g. [\"V_m\"]");
                }
                let mut variables = Vec::new();
                for (k, v) in r.variables.iter().enumerate() {
                    match pop.model.state_index(v) {
                        Some(x) => variables.push(x),
                        None => {
                            let names: Vec<_> = pop.model.state().iter().map(|s| s.name).collect();
                            errs.add(
                                format!("{path}.variables[{k}]"),
                                format!(
                                    "{} has no state variable \"{v}\"; it has {}",
                                    pop.model.name(),
                                    if names.is_empty() { "none".into() } else { names.join(", ") }
                                ),
                            );
                        }
                    }
                }
                let interval = r.interval_ms.unwrap_or(dt);
                let interval_steps = (interval / dt).round();
                if !(interval.is_finite()
                    && interval_steps >= 1.0
                    && ((interval_steps * dt) - interval).abs() < 1e-9 * interval.max(1.0))
                {
                    errs.add(
                        format!("{path}.interval_ms"),
                        format!("must be a positive multiple of dt ({dt} ms), got {interval}"),
                    );
                    continue;
                }
                sample_count += (steps as f64 / interval_steps) * (neurons.len() * variables.len()) as f64;
                samplers.push(Sampler { population: p, neurons, variables, interval_steps: interval_steps as u32 });
            }
            "weight_recorder" => record_weights = true,
            other => errs.add(
                format!("{path}.kind"),
                format!("unknown recorder \"{other}\"; use spike_recorder, multimeter or weight_recorder"),
            ),
        }
    }
    if sample_count > MAX_SAMPLES {
        errs.add("recorders", format!("the multimeters would record {sample_count:.3e} values (limit {MAX_SAMPLES:.0e}); sample fewer neurons or a longer interval_ms"));
    }

    let sizes: Vec<u64> = pops.iter().map(|p| p.size as u64).collect();
    let dopamine_targets: Vec<usize> = projections
        .iter()
        .filter(|p| matches!(p.plasticity, Some(neuropil_sim::plasticity::Plasticity::Dopamine(_))))
        .map(|p| p.target)
        .collect();
    let cerebella = compile_cerebella(exp, dt, steps, &sizes, &dopamine_targets, &resolve, &mut errs);

    let groups = compile_layout(exp, &mut errs);
    if !errs.0.is_empty() {
        return Err(SpecError::Invalid(errs.0));
    }
    // Population indices shift if any failed; none did here, so indices are stable.
    let network = Network {
        dt_ms: dt,
        seed: run.seed,
        populations: pops,
        projections,
        stimuli,
        record_spikes,
        samplers,
        record_weights,
        cerebella,
        groups,
    };
    let expected_synapses = network.expected_synapses();
    let estimated_bytes = estimate_bytes(&network, run.shards.max(run.threads).max(1) as u64, sample_count);
    if let Some(avail) = limits.memory_bytes {
        if estimated_bytes > avail {
            let gib = |b: f64| b / (1u64 << 30) as f64;
            return Err(SpecError::Invalid(vec![crate::error::FieldError {
                path: "populations".into(),
                message: format!(
                    "the network needs an estimated {:.1} GiB ({} neurons, {:.3e} synapses at {BYTES_PER_SYNAPSE} B) but {:.1} GiB are available; lower scaling.neurons / scaling.synapses or the population sizes",
                    gib(estimated_bytes as f64),
                    network.total_neurons(),
                    expected_synapses,
                    gib(avail as f64)
                ),
            }]));
        }
    }
    Ok(Compiled { network, steps, transient_steps, dc_compensation_pa: dc, estimated_bytes, expected_synapses })
}

/// `run.layout` and the populations' `group`s: each population's group index
/// (numbered in order of first appearance) for `groups`, `None` for round-robin.
fn compile_layout(exp: &Experiment, errs: &mut Errors) -> Option<Vec<u32>> {
    match exp.run.layout.as_deref() {
        None | Some("round_robin") => None,
        Some("groups") => {
            let mut names: Vec<&str> = Vec::new();
            let mut groups = Vec::with_capacity(exp.populations.len());
            for (i, p) in exp.populations.iter().enumerate() {
                let Some(g) = p.group.as_deref() else {
                    errs.add(
                        format!("populations[{i}].group"),
                        "required with run.layout = \"groups\" (the group, e.g. an area, it is placed with)",
                    );
                    continue;
                };
                if g.is_empty() || g.len() > 128 {
                    errs.add(format!("populations[{i}].group"), "must be 1 to 128 characters");
                    continue;
                }
                let k = names.iter().position(|n| *n == g).unwrap_or_else(|| {
                    names.push(g);
                    names.len() - 1
                });
                groups.push(k as u32);
            }
            (groups.len() == exp.populations.len()).then_some(groups)
        }
        Some(other) => {
            errs.add("run.layout", format!("unknown layout \"{other}\"; use round_robin or groups"));
            None
        }
    }
}

fn dedup_errors(errs: &mut Errors) {
    let mut seen = std::collections::HashSet::new();
    errs.0.retain(|e| seen.insert(e.to_string()));
}

/// A `scaling` factor: a value that does not validate counts as 1 (its
/// error is reported on its own).
fn scale_factor(n: f64) -> f64 {
    if n.is_finite() && n > 0.0 {
        n
    } else {
        1.0
    }
}

/// The neurons of a population of `size` at `scaling.neurons` = `n_scale`, as
/// `compile` builds it (rounded half to even; below 1 the spec is refused).
pub fn scaled_size(size: u64, n_scale: f64) -> f64 {
    (size as f64 * n_scale).round_ties_even()
}

/// The neurons of each population of `exp` after its scaling (a scale that does
/// not validate counts as 1), in declaration order.
pub fn population_sizes(exp: &Experiment) -> Vec<u64> {
    let n_scale = scale_factor(exp.scaling.neurons);
    exp.populations.iter().map(|p| scaled_size(p.size, n_scale).max(0.0) as u64).collect()
}

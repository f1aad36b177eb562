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
    let k_scale = if sc.synapses.is_finite() && sc.synapses > 0.0 { sc.synapses } else { 1.0 };
    let n_scale = if sc.neurons.is_finite() && sc.neurons > 0.0 { sc.neurons } else { 1.0 };
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
        let size = (p.size as f64 * n_scale).round_ties_even();
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

fn dedup_errors(errs: &mut Errors) {
    let mut seen = std::collections::HashSet::new();
    errs.0.retain(|e| seen.insert(e.to_string()));
}

/// Peak memory estimate: synapses, their row index per shard, neuron state, ring
/// buffers, generator streams, recorded samples, plus the build's cursor array.
pub fn estimate_bytes(net: &Network, shards: u64, samples: f64) -> u64 {
    let n = net.total_neurons() as f64;
    let syn = net.expected_synapses() * BYTES_PER_SYNAPSE;
    let rows = shards as f64 * (n + 1.0) * 8.0 * 2.0;
    let max_delay =
        net.projections.iter().map(|p| (p.delay_ms.upper().min(100.0) / net.dt_ms).max(1.0)).fold(16.0, f64::max);
    let ring = n * 16.0 * (max_delay + 16.0).log2().ceil().exp2();
    let state: f64 = net.populations.iter().map(|p| p.size as f64 * p.model.bytes_per_neuron() as f64).sum();
    let poisson = net.stimuli.len() as f64 * n * 32.0;
    // Cerebellar modules: weights with gradients and moments (16 B per parameter),
    // the fan-in mask, and the mossy-fibre inputs buffered until their feedback.
    let modules: f64 = net
        .cerebella
        .iter()
        .map(|c| {
            let inputs: f64 = c.mossy.iter().map(|&p| net.populations[p].size as f64).sum();
            let mut sizes = vec![inputs];
            sizes.extend(c.granule.iter().map(|&g| g as f64));
            sizes.push(1.0);
            let params: f64 = sizes.windows(2).map(|w| w[0] * w[1] + w[1]).sum();
            let buffered = (c.delay_steps / c.interval_steps.max(1) + 1) as f64 * inputs * 4.0;
            params * 16.0 + inputs * sizes[1] * 4.0 + buffered
        })
        .sum();
    (syn + rows + ring + state + poisson + samples * 24.0 + modules + 64e6) as u64
}

fn compile_homeostasis(
    h: &crate::schema::HomeostasisSpec,
    path: &str,
    model: ModelKind,
    dt: f64,
    errs: &mut Errors,
) -> Option<neuropil_sim::network::Homeostasis> {
    let n0 = errs.0.len();
    if !(h.target_rate_hz.is_finite() && h.target_rate_hz >= 0.0) {
        errs.add(format!("{path}.target_rate_hz"), format!("must be a rate >= 0 Hz, got {}", h.target_rate_hz));
    }
    if !(h.tau_rate_ms.is_finite() && h.tau_rate_ms >= dt) {
        errs.add(format!("{path}.tau_rate_ms"), format!("must be >= dt ({dt} ms), got {}", h.tau_rate_ms));
    }
    for (name, v) in [("threshold_rate", h.threshold_rate), ("scaling_rate", h.scaling_rate)] {
        if !(v.is_finite() && v >= 0.0) {
            errs.add(format!("{path}.{name}"), format!("must be >= 0 (0 switches it off), got {v}"));
        }
    }
    if h.threshold_rate > 0.0 && !neuropil_sim::models::Group::has_adaptive_threshold(model) {
        errs.add(
            format!("{path}.threshold_rate"),
            format!("{} has no adaptive threshold; intrinsic plasticity works with iaf_psc_exp, iaf_psc_alpha, iaf_psc_delta", model.name()),
        );
    }
    let steps = (h.scaling_interval_ms / dt).round();
    if !(h.scaling_interval_ms.is_finite() && steps >= 1.0 && steps <= u32::MAX as f64) {
        errs.add(
            format!("{path}.scaling_interval_ms"),
            format!("must be >= dt ({dt} ms), got {}", h.scaling_interval_ms),
        );
    }
    (errs.0.len() == n0).then_some(neuropil_sim::network::Homeostasis {
        target_rate_hz: h.target_rate_hz,
        tau_rate_ms: h.tau_rate_ms,
        threshold_rate: h.threshold_rate,
        scaling_rate: h.scaling_rate,
        scaling_interval_steps: steps as u32,
    })
}

fn compile_third(
    th: &crate::schema::ThirdSpec,
    path: &str,
    post: &Population,
    dt: f64,
    populations: &[Option<Population>],
    by_name: &HashMap<&str, usize>,
    errs: &mut Errors,
) -> Option<ThirdParty> {
    let n0 = errs.0.len();
    let Some(&ai) = by_name.get(th.population.as_str()) else {
        errs.add(format!("{path}.population"), format!("no population named \"{}\"", th.population));
        return None;
    };
    let astro = populations[ai].as_ref()?;
    if astro.model != ModelKind::AstrocyteLr1994 {
        errs.add(
            format!("{path}.population"),
            format!(
                "\"{}\" is {}; the third party must be an astrocyte_lr_1994 population",
                th.population,
                astro.model.name()
            ),
        );
    }
    if post.model != ModelKind::AeifCondAlphaAstro {
        errs.add(
            format!("{path}.population"),
            format!("the slow inward current needs targets of model aeif_cond_alpha_astro, not {}", post.model.name()),
        );
    }
    if !(0.0..=1.0).contains(&th.p) {
        errs.add(format!("{path}.p"), format!("must be a probability in [0, 1], got {}", th.p));
    }
    let (n_t, n_a, k) = (post.size, astro.size, th.pool_size);
    if k == 0 || k > n_a {
        errs.add(
            format!("{path}.pool_size"),
            format!("must be in [1, {n_a}] (the astrocyte population's size), got {k}"),
        );
    }
    let pool = match th.pool_type.as_str() {
        "random" => Pool::Random { size: k },
        "block" => {
            if k == 1 && n_t % n_a != 0 {
                errs.add(
                    format!("{path}.pool_size"),
                    format!(
                        "block pools of 1 need the target size ({n_t}) to be a multiple of the astrocyte count ({n_a})"
                    ),
                );
            } else if k > 1 && (n_t as u64) * (k as u64) != n_a as u64 {
                errs.add(
                    format!("{path}.pool_size"),
                    format!("block pools of {k} need targets × pool_size = astrocytes, but {n_t} × {k} != {n_a}"),
                );
            }
            Pool::Block { size: k }
        }
        other => {
            errs.add(format!("{path}.pool_type"), format!("unknown pool type \"{other}\"; use random or block"));
            Pool::Random { size: k }
        }
    };
    if !(th.to_astrocyte_weight.is_finite() && th.to_astrocyte_weight >= 0.0) {
        errs.add(
            format!("{path}.to_astrocyte_weight"),
            format!("weights into an astrocyte raise IP3 and must be >= 0, got {}", th.to_astrocyte_weight),
        );
    }
    errs.finite(format!("{path}.sic_weight"), th.sic_weight);
    if !(th.gliotransmission.is_finite() && th.gliotransmission >= 0.0) {
        errs.add(
            format!("{path}.gliotransmission"),
            format!("must be >= 0 (0 switches it off), got {}", th.gliotransmission),
        );
    }
    let delay = |name: &str, v: Option<f64>, errs: &mut Errors| -> u16 {
        let d = v.unwrap_or(dt);
        if !(d.is_finite() && d >= dt - 1e-12 && d / dt <= u16::MAX as f64) {
            errs.add(format!("{path}.{name}"), format!("{d} ms is not a delay >= dt ({dt} ms)"));
            return 1;
        }
        (d / dt).round() as u16
    };
    let to_astrocyte_delay_steps = delay("to_astrocyte_delay_ms", th.to_astrocyte_delay_ms, errs);
    let sic_delay_steps = delay("sic_delay_ms", th.sic_delay_ms, errs);
    (errs.0.len() == n0).then_some(ThirdParty {
        population: ai,
        p: th.p,
        pool,
        to_astrocyte_weight: th.to_astrocyte_weight,
        to_astrocyte_delay_steps,
        sic_weight: th.sic_weight,
        sic_delay_steps,
        gliotransmission: th.gliotransmission,
    })
}

fn check_delay(d: &Dist, dt: f64, path: &str, errs: &mut Errors) {
    let (lo, hi) = (d.lower(), d.upper());
    if let Dist::Constant(v) = d {
        if *v < dt - 1e-12 {
            errs.add(path, format!("{v} ms is below dt ({dt} ms); delays must be >= dt"));
        }
    } else if lo < dt / 2.0 {
        errs.add(
            path,
            format!("can produce {lo} ms, which rounds below dt ({dt} ms); bound it with min = {} or more", dt / 2.0),
        );
    }
    if hi.is_finite() && hi / dt > u16::MAX as f64 {
        errs.add(path, format!("can produce {hi} ms = {} steps; at most {} steps are supported", hi / dt, u16::MAX));
    }
}

#[allow(clippy::too_many_arguments)]
fn compile_rule(
    c: &ConnSpec,
    pre: &Population,
    post: &Population,
    full_pre: f64,
    full_post: f64,
    n_scale: f64,
    k_scale: f64,
    same: bool,
    path: &str,
    errs: &mut Errors,
) -> Option<(Rule, f64)> {
    let given: [(&str, bool); 4] = [
        ("p", c.p.is_some()),
        ("indegree", c.indegree.is_some()),
        ("outdegree", c.outdegree.is_some()),
        ("n", c.n.is_some()),
    ];
    let wants: &[&str] = match c.rule.as_str() {
        "one_to_one" | "all_to_all" => &[],
        "pairwise_bernoulli" => &["p"],
        "fixed_indegree" => &["indegree"],
        "fixed_outdegree" => &["outdegree"],
        "fixed_total_number" => &["n"],
        other => {
            errs.add(format!("{path}.rule"), format!("unknown rule \"{other}\"; use {}", rule_names()));
            return None;
        }
    };
    let n0 = errs.0.len();
    for (name, is) in given {
        if is && !wants.contains(&name) {
            errs.add(format!("{path}.{name}"), format!("not a parameter of rule {}", c.rule));
        }
    }
    for name in wants {
        if !given.iter().any(|(g, is)| g == name && *is) {
            errs.add(format!("{path}.{name}"), format!("required for rule {}", c.rule));
        }
    }
    if errs.0.len() > n0 {
        return None;
    }
    let self_excluded = same && !c.allow_autapses;
    let candidates = |n: u32| if self_excluded { n.saturating_sub(1) } else { n };
    let scaled = |k: u64, name: &str, errs: &mut Errors| -> u32 {
        let v = (k as f64 * k_scale).round();
        if v > u32::MAX as f64 {
            errs.add(format!("{path}.{name}"), format!("{v} after scaling is too large"));
        }
        v as u32
    };
    let r = match c.rule.as_str() {
        "one_to_one" => {
            if pre.size != post.size {
                errs.add(
                    format!("{path}.rule"),
                    format!(
                        "one_to_one needs equal sizes, but source has {} and target {} neurons",
                        pre.size, post.size
                    ),
                );
                return None;
            }
            (Rule::OneToOne, 1.0)
        }
        "all_to_all" => (Rule::AllToAll, full_pre),
        "pairwise_bernoulli" => {
            let p = c.p.unwrap_or(0.0);
            if !(0.0..=1.0).contains(&p) {
                errs.add(format!("{path}.p"), format!("must be a probability in [0, 1], got {p}"));
                return None;
            }
            let ps = p * k_scale;
            if ps > 1.0 {
                errs.add(format!("{path}.p"), format!("{p} × scaling.synapses {k_scale} = {ps} is above 1"));
                return None;
            }
            (Rule::PairwiseBernoulli { p: ps }, p * full_pre)
        }
        "fixed_indegree" => {
            let k = c.indegree.unwrap_or(0);
            let ks = scaled(k, "indegree", errs);
            if !c.allow_multapses && ks > candidates(pre.size) {
                errs.add(
                    format!("{path}.indegree"),
                    format!("{ks} distinct sources requested but the source has only {} candidates; allow multapses or lower it", candidates(pre.size)),
                );
                return None;
            }
            if ks > 0 && candidates(pre.size) == 0 {
                errs.add(format!("{path}.conn.allow_autapses"), "the only source is the target itself; allow autapses");
                return None;
            }
            (Rule::FixedIndegree { k: ks }, k as f64)
        }
        "fixed_outdegree" => {
            let k = c.outdegree.unwrap_or(0);
            let ks = scaled(k, "outdegree", errs);
            if !c.allow_multapses && ks > candidates(post.size) {
                errs.add(
                    format!("{path}.outdegree"),
                    format!("{ks} distinct targets requested but the target has only {} candidates; allow multapses or lower it", candidates(post.size)),
                );
                return None;
            }
            (Rule::FixedOutdegree { k: ks }, k as f64 * full_pre / full_post)
        }
        _ => {
            let n = c.n.unwrap_or(0);
            if !c.allow_multapses {
                errs.add(
                    format!("{path}.allow_multapses"),
                    "fixed_total_number draws pairs independently; set allow_multapses = true",
                );
                return None;
            }
            if n > 0 && same && !c.allow_autapses && pre.size < 2 {
                errs.add(format!("{path}.allow_autapses"), "the only source is the target itself; allow autapses");
                return None;
            }
            let ns = (n as f64 * n_scale * k_scale).round_ties_even();
            if ns > 4e10 {
                errs.add(format!("{path}.n"), format!("{ns:.3e} synapses after scaling is too many"));
                return None;
            }
            (Rule::FixedTotalNumber { n: ns as u64 }, n as f64 / full_post)
        }
    };
    Some(r)
}

#[allow(clippy::too_many_arguments)]
fn compile_stimulus(
    st: &StimulusSpec,
    path: &str,
    target: usize,
    post: &Population,
    dt: f64,
    k_scale: f64,
    w_scale: f64,
    errs: &mut Errors,
) -> Option<(Stimulus, Option<f64>)> {
    let n0 = errs.0.len();
    let to_step = |ms: f64| (ms / dt).round() as u64;
    let start = st.start_ms.unwrap_or(0.0);
    let stop = st.stop_ms;
    if !(start.is_finite() && start >= 0.0) {
        errs.add(format!("{path}.start_ms"), format!("must be >= 0 ms, got {start}"));
    }
    if let Some(s) = stop {
        if !(s.is_finite() && s >= start) {
            errs.add(format!("{path}.stop_ms"), format!("must be >= start_ms ({start} ms), got {s}"));
        }
    }
    let stop_step = stop.map(to_step).unwrap_or(u64::MAX);
    let delay = st.delay_ms.unwrap_or(dt);
    let delay_ok = |errs: &mut Errors| {
        if !(delay.is_finite() && delay >= dt - 1e-12) {
            errs.add(format!("{path}.delay_ms"), format!("{delay} ms is below dt ({dt} ms); delays must be >= dt"));
        } else if delay / dt > u16::MAX as f64 {
            errs.add(format!("{path}.delay_ms"), format!("{delay} ms is more than {} steps", u16::MAX));
        }
    };
    let unused = |names: &[(&str, bool)], errs: &mut Errors| {
        for (n, is) in names {
            if *is {
                errs.add(format!("{path}.{n}"), format!("not a parameter of {}", st.kind));
            }
        }
    };
    let out = match st.kind.as_str() {
        "poisson_generator" => {
            unused(
                &[
                    ("amplitude_pa", st.amplitude_pa.is_some()),
                    ("spike_times_ms", !st.spike_times_ms.is_empty()),
                    ("neurons", st.neurons.is_some()),
                ],
                errs,
            );
            let rate = st.rate_hz.unwrap_or(f64::NAN);
            if st.rate_hz.is_none() {
                errs.add(format!("{path}.rate_hz"), "required for a poisson_generator");
            } else if !(rate.is_finite() && rate >= 0.0) {
                errs.add(format!("{path}.rate_hz"), format!("must be a rate >= 0 Hz, got {rate}"));
            }
            let indegree = st.indegree.unwrap_or(1.0);
            if !(indegree.is_finite() && indegree >= 0.0) {
                errs.add(format!("{path}.indegree"), format!("must be >= 0, got {indegree}"));
            }
            let weight = st.weight.unwrap_or(1.0);
            errs.finite(format!("{path}.weight"), weight);
            delay_ok(errs);
            if post.model == ModelKind::Parrot && weight != 1.0 {
                errs.add(format!("{path}.weight"), "connections into a parrot_neuron must have weight 1");
            }
            let total_rate = rate * indegree * k_scale;
            if total_rate * dt * 1e-3 > 1e6 {
                errs.add(
                    format!("{path}.rate_hz"),
                    format!("{total_rate} Hz per neuron is more than 1e6 spikes per step"),
                );
            }
            (
                Stimulus::Poisson {
                    target,
                    rate_hz: total_rate,
                    weight: weight * w_scale,
                    delay_steps: (delay / dt).round().max(1.0) as u32,
                    start_step: to_step(start),
                    stop_step,
                },
                Some(rate * indegree * weight),
            )
        }
        "dc_generator" => {
            unused(
                &[
                    ("rate_hz", st.rate_hz.is_some()),
                    ("indegree", st.indegree.is_some()),
                    ("weight", st.weight.is_some()),
                    ("delay_ms", st.delay_ms.is_some()),
                    ("spike_times_ms", !st.spike_times_ms.is_empty()),
                    ("neurons", st.neurons.is_some()),
                ],
                errs,
            );
            let amp = st.amplitude_pa.unwrap_or(f64::NAN);
            if st.amplitude_pa.is_none() {
                errs.add(format!("{path}.amplitude_pa"), "required for a dc_generator");
            } else {
                errs.finite(format!("{path}.amplitude_pa"), amp);
            }
            (Stimulus::Dc { target, amplitude_pa: amp, start_step: to_step(start), stop_step }, None)
        }
        "spike_generator" => {
            unused(
                &[
                    ("rate_hz", st.rate_hz.is_some()),
                    ("indegree", st.indegree.is_some()),
                    ("amplitude_pa", st.amplitude_pa.is_some()),
                ],
                errs,
            );
            let weight = st.weight.unwrap_or(1.0);
            errs.finite(format!("{path}.weight"), weight);
            if post.model == ModelKind::Parrot && weight != 1.0 {
                errs.add(format!("{path}.weight"), "connections into a parrot_neuron must have weight 1");
            }
            delay_ok(errs);
            let mut emit = Vec::new();
            for (k, &t) in st.spike_times_ms.iter().enumerate() {
                let s = (t / dt).round();
                if !(t.is_finite() && s >= 1.0) {
                    errs.add(format!("{path}.spike_times_ms[{k}]"), format!("must be a time >= dt ({dt} ms), got {t}"));
                    continue;
                }
                if ((s * dt) - t).abs() > 1e-6 * dt {
                    errs.add(format!("{path}.spike_times_ms[{k}]"), format!("{t} ms is not on the dt grid ({dt} ms)"));
                    continue;
                }
                // Kept even past the run's end: a run resumed from a checkpoint reaches them.
                emit.push(s as u64 - 1);
            }
            emit.sort_unstable();
            if let Some(list) = &st.neurons {
                for (k, &n) in list.iter().enumerate() {
                    if n >= post.size {
                        errs.add(
                            format!("{path}.neurons[{k}]"),
                            format!("index {n} is outside population \"{}\" (size {})", post.name, post.size),
                        );
                    }
                }
            }
            (
                Stimulus::SpikeTrain {
                    target,
                    neurons: st.neurons.clone(),
                    steps: emit,
                    weight,
                    delay_steps: (delay / dt).round().max(1.0) as u32,
                },
                None,
            )
        }
        other => {
            errs.add(
                format!("{path}.kind"),
                format!("unknown stimulus \"{other}\"; use poisson_generator, dc_generator or spike_generator"),
            );
            return None;
        }
    };
    (errs.0.len() == n0).then_some(out)
}

/// The `[[cerebellum]]` modules, checked.
fn compile_cerebella(
    exp: &Experiment,
    dt: f64,
    steps: u64,
    sizes: &[u64],
    dopamine_targets: &[usize],
    resolve: &dyn Fn(&str, String, &mut Errors) -> Option<usize>,
    errs: &mut Errors,
) -> Vec<Cerebellar> {
    let mut out = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, c) in exp.cerebellum.iter().enumerate() {
        let path = format!("cerebellum[{i}]");
        let before = errs.0.len();
        if c.name.trim().is_empty() {
            errs.add(format!("{path}.name"), "empty; give the module a name");
        } else if !names.insert(c.name.as_str()) {
            errs.add(
                format!("{path}.name"),
                format!("\"{}\" is used by an earlier module; names must be unique", c.name),
            );
        }
        if c.mossy_fibres.is_empty() {
            errs.add(format!("{path}.mossy_fibres"), "empty; name the populations the module reads");
        }
        let mossy: Vec<Option<usize>> = c
            .mossy_fibres
            .iter()
            .enumerate()
            .map(|(k, name)| resolve(name, format!("{path}.mossy_fibres[{k}]"), errs))
            .collect();
        let readout = resolve(&c.readout, format!("{path}.readout"), errs);
        let positive = |v: f64, field: &str, unit: &str, errs: &mut Errors| {
            if !(v.is_finite() && v > 0.0) {
                errs.add(format!("{path}.{field}"), format!("must be a positive number{unit}, got {v}"));
            }
        };
        let tau_ms = c.tau_ms.unwrap_or(20.0);
        positive(tau_ms, "tau_ms", " of ms", errs);
        let rate_norm_hz = c.rate_norm_hz.unwrap_or(10.0);
        positive(rate_norm_hz, "rate_norm_hz", " of Hz", errs);
        let interval_ms = c.interval_ms.unwrap_or(1.0);
        positive(interval_ms, "interval_ms", " of ms", errs);
        let learning_rate = c.learning_rate.unwrap_or(0.01);
        let readout_learning_rate = c.readout_learning_rate.unwrap_or(1e-3);
        for (field, v) in [("learning_rate", learning_rate), ("readout_learning_rate", readout_learning_rate)] {
            if !(v.is_finite() && v >= 0.0) {
                errs.add(format!("{path}.{field}"), format!("must be a non-negative number, got {v}"));
            }
        }
        let eligibility_tau_ms = c.eligibility_tau_ms.unwrap_or(10.0);
        positive(eligibility_tau_ms, "eligibility_tau_ms", " of ms", errs);
        positive(c.target_period_ms, "target_period_ms", " of ms", errs);
        for (field, v) in [("target_amplitude", c.target_amplitude), ("target_offset", c.target_offset)] {
            if !v.is_finite() {
                errs.add(format!("{path}.{field}"), format!("must be a finite number, got {v}"));
            }
        }
        if !(c.feedback_delay_ms.is_finite() && c.feedback_delay_ms >= 0.0) {
            errs.add(
                format!("{path}.feedback_delay_ms"),
                format!(
                    "must be a delay ≥ 0 ms, got {} (the feedback arrives after the prediction)",
                    c.feedback_delay_ms
                ),
            );
        } else if c.feedback_delay_ms > exp.run.duration_ms {
            errs.add(
                format!("{path}.feedback_delay_ms"),
                format!(
                    "{} ms is longer than the run ({} ms): no feedback would ever arrive; shorten it or run longer",
                    c.feedback_delay_ms, exp.run.duration_ms
                ),
            );
        }
        if c.granule.is_empty() {
            errs.add(format!("{path}.granule"), "empty; give at least one granule layer size, e.g. granule = [200]");
        }
        for (k, &g) in c.granule.iter().enumerate() {
            if g == 0 || g > 100_000 {
                errs.add(
                    format!("{path}.granule[{k}]"),
                    format!("must be between 1 and 100000 granule cells, got {g}"),
                );
            }
        }
        let inputs: u64 =
            mossy.iter().flatten().map(|&p| sizes.get(p).copied().unwrap_or(0)).sum::<u64>().min(u64::from(u32::MAX));
        if c.fan_in as u64 > inputs && mossy.iter().all(Option::is_some) {
            errs.add(
                format!("{path}.fan_in"),
                format!("{} is more than the {inputs} mossy fibres; use 0 (all) or at most {inputs}", c.fan_in),
            );
        }
        if inputs * c.granule.first().copied().unwrap_or(0) > 50_000_000 {
            errs.add(
                format!("{path}.granule"),
                format!("{inputs} mossy fibres × {} granule cells is over 5e7 weights; use fewer", c.granule[0]),
            );
        }
        let output = match c.output.as_str() {
            "" | "third_factor" => {
                if c.output_population.is_some() {
                    errs.add(format!("{path}.output_population"), "only for output = \"current\" or \"dopamine\"");
                }
                if c.readout_kind == "rate" {
                    errs.add(
                        format!("{path}.readout_kind"),
                        "\"rate\" has no readout synapses for a third_factor output; use output = \"dopamine\" or \"current\"",
                    );
                }
                Some(ModuleOutput::ThirdFactor)
            }
            mode @ ("current" | "dopamine") => {
                let population = match &c.output_population {
                    None => {
                        errs.add(
                            format!("{path}.output_population"),
                            format!("output = \"{mode}\" needs a target population"),
                        );
                        None
                    }
                    Some(name) => resolve(name, format!("{path}.output_population"), errs),
                };
                let unit = if mode == "current" { "number of pA" } else { "concentration (1/ms) per unit" };
                if population.is_some() && !c.output_scale.is_finite() {
                    errs.add(format!("{path}.output_scale"), format!("must be a finite {unit}"));
                }
                match population {
                    Some(population) if mode == "current" => {
                        Some(ModuleOutput::Current { population, scale_pa: c.output_scale })
                    }
                    Some(population) if dopamine_targets.contains(&population) => {
                        Some(ModuleOutput::Dopamine { population, scale: c.output_scale })
                    }
                    Some(_) => {
                        let name = c.output_population.as_deref().unwrap_or_default();
                        errs.add(
                            format!("{path}.output_population"),
                            format!("no stdp_dopamine_synapse projection targets \"{name}\"; the dopamine would modulate nothing"),
                        );
                        None
                    }
                    None => None,
                }
            }
            other => {
                errs.add(format!("{path}.output"), format!("unknown {other:?}; use third_factor, current or dopamine"));
                None
            }
        };
        let readout_rate = match c.readout_kind.as_str() {
            "" | "linear" => false,
            "rate" => true,
            other => {
                errs.add(format!("{path}.readout_kind"), format!("unknown {other:?}; use linear or rate"));
                false
            }
        };
        let at = |v: Option<f64>, field: &str, errs: &mut Errors| -> Option<u64> {
            let v = v?;
            if !(v.is_finite() && v >= 0.0) {
                errs.add(format!("{path}.{field}"), format!("must be a time ≥ 0 ms, got {v}"));
                return None;
            }
            Some(((v / dt).round() as u64).min(steps.saturating_add(1)))
        };
        let remove_at_step = at(c.remove_at_ms, "remove_at_ms", errs);
        let freeze_at_step = at(c.freeze_at_ms, "freeze_at_ms", errs);
        if errs.0.len() > before {
            continue;
        }
        let (Some(readout), Some(output)) = (readout, output) else { continue };
        out.push(Cerebellar {
            name: c.name.clone(),
            mossy: mossy.into_iter().flatten().collect(),
            tau_ms,
            rate_norm_hz,
            interval_steps: ((interval_ms / dt).round() as u64).max(1),
            granule: c.granule.iter().map(|&g| g as u32).collect(),
            fan_in: (c.fan_in > 0).then_some(c.fan_in),
            learning_rate,
            readout,
            delay_steps: (c.feedback_delay_ms / dt).round() as u64,
            target_amplitude: c.target_amplitude,
            target_period_ms: c.target_period_ms,
            target_offset: c.target_offset,
            readout_learning_rate,
            eligibility_tau_ms,
            output,
            remove_at_step,
            freeze_at_step,
            readout_rate,
        });
    }
    out
}

//! Projections: connection rules, delays, tripartite (astrocyte) partners, and
//! homeostasis of their target populations.

use super::*;

pub(super) fn compile_homeostasis(
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

pub(super) fn compile_third(
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

/// `scaling.min_delay_between_groups_ms`: a delay floor > 0, and every population
/// in a group (the floor applies between groups).
pub(super) fn check_group_floor(exp: &Experiment, dt: f64, errs: &mut Errors) {
    let Some(floor) = exp.scaling.min_delay_between_groups_ms else { return };
    if !(floor.is_finite() && floor >= dt) {
        errs.add("scaling.min_delay_between_groups_ms", format!("must be a delay >= dt ({dt} ms), got {floor}"));
    }
    for (i, p) in exp.populations.iter().enumerate() {
        if p.group.is_none() {
            errs.add(
                format!("populations[{i}].group"),
                "required with scaling.min_delay_between_groups_ms (the floor applies between groups)",
            );
        }
    }
}

/// The delays of projection `path` from population `s` to `t`: with
/// `scaling.min_delay_between_groups_ms`, none below it when the two are in
/// different groups.
pub(super) fn floor_between_groups(
    exp: &Experiment,
    s: usize,
    t: usize,
    d: Dist,
    path: &str,
    errs: &mut Errors,
) -> Option<Dist> {
    let Some(floor) = exp.scaling.min_delay_between_groups_ms.filter(|f| f.is_finite()) else { return Some(d) };
    let (gs, gt) = (&exp.populations[s].group, &exp.populations[t].group);
    if gs.is_none() || gs == gt {
        return Some(d);
    }
    let Some(floored) = d.at_least(floor) else {
        errs.add(
            format!("{path}.syn.delay_ms"),
            format!(
                "at most {} ms (max), below scaling.min_delay_between_groups_ms = {floor}; raise max or lower the floor",
                d.upper()
            ),
        );
        return None;
    };
    if floored.acceptance() < 1e-3 {
        errs.add(
            format!("{path}.syn.delay_ms"),
            format!(
                "scaling.min_delay_between_groups_ms = {floor} leaves {:.1e} of its draws; lower the floor",
                floored.acceptance()
            ),
        );
        return None;
    }
    Some(floored)
}

pub(super) fn check_delay(d: &Dist, dt: f64, path: &str, errs: &mut Errors) {
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
pub(super) fn compile_rule(
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

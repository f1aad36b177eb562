//! Cerebellar modules (`[[cerebellum]]`).

use super::*;

/// The `[[cerebellum]]` modules, checked.
pub(super) fn compile_cerebella(
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

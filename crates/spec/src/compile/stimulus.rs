//! Stimuli: Poisson, DC and spike generators.

use super::*;

#[allow(clippy::too_many_arguments)]
pub(super) fn compile_stimulus(
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

//! A cerebellar module inside a spiking simulation. One process runs each module
//! (in a cluster, the node the control placed it on) at the epoch boundaries, fed
//! with the epoch's spikes in canonical order; at its sample boundaries
//! ([`samples_at`], a pure function of the network, so every process knows when an
//! output is due) its output reaches the other processes in a second exchange
//! round of that epoch. The module's arithmetic is fixed-order `f32` without FMA,
//! so it gives the same numbers on whichever node it runs.
//!
//! The task whose feedback the module predicts: a linear readout of a population's
//! filtered spike trains (the cortex's plastic output synapses) should follow a
//! sine; its error reaches the synapses and the module only `delay_steps` later
//! (the climbing fibre). Without a module the readout pairs the late error with an
//! eligibility trace of its inputs, which has decayed when the delay is long; with
//! one (third-factor output) it learns at once from the module's prediction of the
//! error, and the module learns from the true error when it arrives, paired with
//! the mossy-fibre input it predicted from.

use super::{CerebellarModule, ModuleShape, Tape};
use crate::network::{Cerebellar, ModuleOutput, Network, Spike, StateValue, ValueKind};
use crate::rng::Stream;
use std::collections::VecDeque;

/// Stream key of module weights (`[MODULE_KEY, module index]`).
const MODULE_KEY: u64 = 0xCE2E_BE11;

/// One sample of a module's task, for learning curves.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModuleSample {
    /// Module index.
    pub module: u32,
    /// Step of the sample (an epoch boundary).
    pub step: u64,
    /// Target of the readout.
    pub target: f64,
    /// Readout output.
    pub output: f64,
    /// True feedback: target − output (reaches the module `delay_steps` later).
    pub error: f64,
    /// The module's prediction of that feedback (0 without an active module).
    pub predicted: f64,
}

/// Whether the module `spec` samples (predicts, learns, outputs) at the epoch
/// boundary `boundary` (a multiple of `epoch_steps`): at the first boundary of the
/// run, then every `interval_steps` rounded up to whole epochs. [`ModuleRun::epoch`]
/// keeps this schedule; processes that do not hold the module read it here.
pub fn samples_at(spec: &Cerebellar, boundary: u64, epoch_steps: u64) -> bool {
    let e = epoch_steps.max(1);
    let period = spec.interval_steps.max(1).div_ceil(e) * e;
    boundary >= e && (boundary - e).is_multiple_of(period)
}

/// The state of one module and its task.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ModuleRun {
    index: u32,
    spec: Cerebellar,
    /// Populations whose rates are filtered: (index, first gid, rates in Hz).
    rates: Vec<(usize, u32, Vec<f32>)>,
    readout_w: Vec<f32>,
    readout_b: f32,
    eligibility: Vec<f32>,
    module: CerebellarModule,
    /// Errors on their way: (arrival step, sample step, error).
    feedback: VecDeque<(u64, u64, f32)>,
    /// Mossy-fibre inputs awaiting their feedback: (sample step, input).
    inputs: VecDeque<(u64, Vec<f32>)>,
    next_sample: u64,
    #[serde(skip)]
    tape: Tape,
}

impl ModuleRun {
    /// The initial state of module `index` of `net` (weights from the network seed).
    pub fn new(net: &Network, index: usize) -> ModuleRun {
        let spec = net.cerebella[index].clone();
        let mut pops: Vec<usize> = spec.mossy.clone();
        if !pops.contains(&spec.readout) {
            pops.push(spec.readout);
        }
        let rates = pops
            .iter()
            .map(|&p| (p, net.populations[p].first_gid, vec![0.0; net.populations[p].size as usize]))
            .collect();
        let inputs: usize = spec.mossy.iter().map(|&p| net.populations[p].size as usize).sum();
        let shape = ModuleShape {
            inputs,
            granule: spec.granule.iter().map(|&g| g as usize).collect(),
            fan_in: spec.fan_in.map(|k| k as usize),
            outputs: 1,
        };
        let mut rng = Stream::new(net.seed, &[MODULE_KEY, index as u64]);
        // The spec compiler checks shapes; a bad one here is a kernel bug.
        let module = CerebellarModule::new(shape, &mut rng).unwrap_or_else(|e| panic!("cerebellum[{index}]: {e}"));
        let n_readout = net.populations[spec.readout].size as usize;
        ModuleRun {
            index: index as u32,
            spec,
            rates,
            readout_w: vec![0.0; n_readout],
            readout_b: 0.0,
            eligibility: vec![0.0; n_readout],
            module,
            feedback: VecDeque::new(),
            inputs: VecDeque::new(),
            next_sample: 0,
            tape: Tape::default(),
        }
    }

    /// Whether this module (restored from a checkpoint) is module `index` of
    /// `net` in every size its code relies on; what is wrong if not.
    pub fn fits(&self, net: &Network, index: usize) -> Result<(), String> {
        let at = |what: &str| format!("cerebellar module {index}: {what} differs from the network's");
        if self.index as usize != index || index >= net.cerebella.len() {
            return Err(format!("cerebellar module {index}: the network has {} modules", net.cerebella.len()));
        }
        let fresh = ModuleRun::new(net, index);
        if self.spec != fresh.spec {
            return Err(at("its specification"));
        }
        let rates = |m: &ModuleRun| m.rates.iter().map(|(p, g, r)| (*p, *g, r.len())).collect::<Vec<_>>();
        if rates(self) != rates(&fresh) {
            return Err(at("its rate filters"));
        }
        if self.readout_w.len() != fresh.readout_w.len() || self.eligibility.len() != fresh.eligibility.len() {
            return Err(at("its readout"));
        }
        if !self.module.same_shape(&fresh.module) {
            return Err(at("its layers"));
        }
        let inputs: usize = self.spec.mossy.iter().map(|&p| net.populations[p].size as usize).sum();
        if self.inputs.iter().any(|(_, x)| x.len() != inputs) {
            return Err(at("a queued mossy-fibre input"));
        }
        Ok(())
    }

    fn rates_of(&self, pop: usize) -> &[f32] {
        self.rates.iter().find(|r| r.0 == pop).map_or(&[][..], |r| &r.2[..])
    }

    /// Take in one epoch's spikes (all of them, canonical order) ending before step
    /// `boundary`; at a sample boundary predict and learn. Returns the sample and,
    /// for `current` and `dopamine` outputs, the value for the shards.
    pub fn epoch(
        &mut self,
        net: &Network,
        spikes: &[Spike],
        boundary: u64,
        epoch_steps: u64,
    ) -> Option<(Option<StateValue>, ModuleSample)> {
        let dt = net.dt_ms;
        let tau = self.spec.tau_ms;
        let decay = (-(epoch_steps as f64 * dt) / tau).exp() as f32;
        let jump = (1000.0 / tau) as f32;
        for (_, first, r) in &mut self.rates {
            r.iter_mut().for_each(|v| *v *= decay);
            let end = *first + r.len() as u32;
            for sp in spikes.iter().filter(|sp| sp.gid >= *first && sp.gid < end) {
                r[(sp.gid - *first) as usize] += jump;
            }
        }
        if boundary < self.next_sample {
            debug_assert!(!samples_at(&self.spec, boundary, epoch_steps));
            return None;
        }
        debug_assert!(samples_at(&self.spec, boundary, epoch_steps), "sample schedule at {boundary}");
        let s = boundary;
        self.next_sample = s + self.spec.interval_steps.max(1);
        let norm = self.spec.rate_norm_hz as f32;
        let x: Vec<f32> =
            self.spec.mossy.iter().flat_map(|&p| self.rates_of(p).iter().map(move |&r| r / norm)).collect();
        let xr: Vec<f32> = self.rates_of(self.spec.readout).iter().map(|&r| r / norm).collect();
        let y = if self.spec.readout_rate {
            xr.iter().sum::<f32>() / xr.len().max(1) as f32
        } else {
            super::dot(&self.readout_w, &xr) + self.readout_b
        };
        let t_ms = s as f64 * dt;
        let target = self.spec.target_offset
            + self.spec.target_amplitude * (std::f64::consts::TAU * t_ms / self.spec.target_period_ms).sin();
        let error = target as f32 - y;
        let active = self.spec.remove_at_step.is_none_or(|r| s < r);
        let learning = active && self.spec.freeze_at_step.is_none_or(|f| s < f);
        let third_factor = active && self.spec.output == ModuleOutput::ThirdFactor;
        let mut predicted = 0.0f32;
        if active {
            self.module.forward(&x, 1, &mut self.tape);
            predicted = self.tape.output()[0];
            self.inputs.push_back((s, x));
        } else {
            self.inputs.clear();
        }
        self.feedback.push_back((s + self.spec.delay_steps, s, error));
        let eta = if self.spec.readout_rate { 0.0 } else { self.spec.readout_learning_rate as f32 };
        let mut arrived = 0.0f32;
        while self.feedback.front().is_some_and(|f| f.0 <= s) {
            let Some((_, sampled, e)) = self.feedback.pop_front() else { break };
            arrived += e;
            // The climbing fibre: the true feedback meets the input it belongs to.
            while self.inputs.front().is_some_and(|i| i.0 < sampled) {
                self.inputs.pop_front();
            }
            if learning && self.inputs.front().is_some_and(|i| i.0 == sampled) {
                if let Some((_, old)) = self.inputs.pop_front() {
                    self.module.forward(&old, 1, &mut self.tape);
                    self.module.learn(&mut self.tape, &[e]);
                    self.module.descend(self.spec.learning_rate as f32);
                }
            }
            if !third_factor {
                super::axpy(eta * e, &self.eligibility, &mut self.readout_w);
                self.readout_b += eta * e;
            }
        }
        if third_factor {
            super::axpy(eta * predicted, &xr, &mut self.readout_w);
            self.readout_b += eta * predicted;
        }
        let k = (-(self.spec.interval_steps.max(1) as f64 * dt) / self.spec.eligibility_tau_ms).exp() as f32;
        for (el, &v) in self.eligibility.iter_mut().zip(&xr) {
            *el = k * *el + (1.0 - k) * v;
        }
        let sample = ModuleSample {
            module: self.index,
            step: s,
            target,
            output: y as f64,
            error: error as f64,
            predicted: predicted as f64,
        };
        let value = |kind, value| Some(StateValue { step: s, gid: self.index, kind, value });
        let out = match self.spec.output {
            ModuleOutput::ThirdFactor => None,
            ModuleOutput::Current { scale_pa, .. } => value(ValueKind::ModuleCurrent, predicted as f64 * scale_pa),
            // The third factor: the prediction now, or without a module the true
            // feedback when it arrives.
            ModuleOutput::Dopamine { scale, .. } => {
                value(ValueKind::ModuleDopamine, scale * if active { predicted } else { arrived } as f64)
            }
        };
        Some((out, sample))
    }
}

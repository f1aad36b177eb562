//! The experiment schema. Field for field the same as the messages in
//! `proto/neuropil/v1/experiment.proto` (a test checks that); experiment files in
//! TOML or JSON are these structures.

use crate::dist::DistSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A whole experiment: network, inputs, recorders and run settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Short name, used in outputs.
    #[serde(default)]
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Duration, resolution, seed, parallelism.
    pub run: RunSpec,
    /// Down-scaling of sizes and in-degrees for small runs.
    #[serde(default)]
    pub scaling: ScalingSpec,
    /// Neuron populations, in id order.
    pub populations: Vec<PopulationSpec>,
    /// Input devices.
    #[serde(default)]
    pub stimuli: Vec<StimulusSpec>,
    /// Synaptic projections.
    #[serde(default)]
    pub projections: Vec<ProjectionSpec>,
    /// What to record.
    #[serde(default)]
    pub recorders: Vec<RecorderSpec>,
    /// Run with an emulated chip fabric in the loop (absent: software only).
    #[serde(default)]
    pub hardware: Option<HardwareSpec>,
    /// Cerebellar modules (decoupled neural interfaces), `[[cerebellum]]` in TOML.
    #[serde(default)]
    pub cerebellum: Vec<CerebellumSpec>,
}

/// A cerebellar module: mossy fibres from populations, a granule expansion, a
/// Purkinje readout predicting the feedback of a readout task (a plastic linear
/// readout of `readout` learning a sine), climbing-fibre learning from the true
/// feedback `feedback_delay_ms` later, output as third factor or current, lesions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CerebellumSpec {
    /// Name, used in outputs.
    pub name: String,
    /// Mossy-fibre source populations.
    pub mossy_fibres: Vec<String>,
    /// Rate filter time constant, ms (default 20).
    #[serde(default)]
    pub tau_ms: Option<f64>,
    /// Rates are divided by this before entering the module, Hz (default 10).
    #[serde(default)]
    pub rate_norm_hz: Option<f64>,
    /// Communication interval: sample, predict and learn every this many ms
    /// (default 1; rounded up to whole epochs).
    #[serde(default)]
    pub interval_ms: Option<f64>,
    /// Granule layer sizes (one or more layers).
    pub granule: Vec<u64>,
    /// Mossy fibres per granule cell of the first layer (0: all).
    #[serde(default)]
    pub fan_in: u32,
    /// Climbing-fibre learning rate of the module (default 0.01).
    #[serde(default)]
    pub learning_rate: Option<f64>,
    /// Population whose plastic linear readout is the task.
    pub readout: String,
    /// Delay of the feedback (the feedback horizon), ms.
    pub feedback_delay_ms: f64,
    /// Target of the readout: offset + amplitude · sin(2π t / period).
    pub target_amplitude: f64,
    /// Period of the target, ms.
    pub target_period_ms: f64,
    /// Offset of the target.
    #[serde(default)]
    pub target_offset: f64,
    /// Learning rate of the readout (default 1e-3).
    #[serde(default)]
    pub readout_learning_rate: Option<f64>,
    /// Eligibility trace of the readout synapses, ms (default 10).
    #[serde(default)]
    pub eligibility_tau_ms: Option<f64>,
    /// `third_factor` (default: the readout's plastic synapses), `current` or
    /// `dopamine` (the third factor of the `stdp_dopamine_synapse` projections onto
    /// `output_population`).
    #[serde(default)]
    pub output: String,
    /// `current`, `dopamine`: the target population.
    #[serde(default)]
    pub output_population: Option<String>,
    /// `current`: pA per unit of predicted feedback; `dopamine`: concentration
    /// (1/ms) per unit.
    #[serde(default)]
    pub output_scale: f64,
    /// Cerebellar lesion: remove the module from this time on, ms.
    #[serde(default)]
    pub remove_at_ms: Option<f64>,
    /// Inferior-olive lesion: freeze the module's learning from this time on, ms.
    #[serde(default)]
    pub freeze_at_ms: Option<f64>,
    /// The task's output: `linear` (default: a plastic linear readout of the
    /// readout population's rates) or `rate` (its mean rate / rate_norm_hz, shaped
    /// by the network itself, e.g. by dopamine-modulated synapses).
    #[serde(default)]
    pub readout_kind: String,
}

/// Hardware co-simulation settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareSpec {
    /// Built-in preset name or a preset file's path.
    pub preset: String,
    /// `round_robin`, `population_contiguous` (default) or `locality_aware`.
    #[serde(default)]
    pub mapping: String,
    /// At most this many neurons per core (0: the preset's limit).
    #[serde(default)]
    pub neurons_per_core: u32,
}

/// Run settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// Biological time to simulate, ms.
    pub duration_ms: f64,
    /// Time step, ms.
    #[serde(default = "default_dt")]
    pub dt_ms: f64,
    /// Master seed: same seed, same spikes, on any number of shards.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Worker threads (0 = one per core).
    #[serde(default)]
    pub threads: u32,
    /// Shards (0 = one per thread); results do not depend on it.
    #[serde(default)]
    pub shards: u32,
    /// Initial period left out of rates and CVs in the summary, ms.
    #[serde(default)]
    pub transient_ms: f64,
    /// Where neurons go: `round_robin` (default: every population over every
    /// shard) or `groups` (each population `group`, an area, on a range of
    /// shards of its own, so that its synapses and most of its spikes stay
    /// there). Results do not depend on it.
    #[serde(default)]
    pub layout: Option<String>,
}

impl Default for RunSpec {
    fn default() -> Self {
        RunSpec { duration_ms: 1000.0, dt_ms: 0.1, seed: 1, threads: 0, shards: 0, transient_ms: 0.0, layout: None }
    }
}

fn default_dt() -> f64 {
    0.1
}
fn default_seed() -> u64 {
    1
}
fn default_one() -> f64 {
    1.0
}
fn default_true() -> bool {
    true
}

/// Scaling as in the Potjans & Diesmann example: `neurons` multiplies population
/// sizes; `synapses` multiplies in-degrees (and Poisson in-degrees), divides weights
/// by √synapses and, with `dc_compensation`, adds to every population the DC
/// current that restores its mean input at full scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalingSpec {
    /// Factor on population sizes.
    #[serde(default = "default_one")]
    pub neurons: f64,
    /// Factor on in-degrees.
    #[serde(default = "default_one")]
    pub synapses: f64,
    /// Compensate the lost mean input with a DC current (needs `full_scale_rate_hz`
    /// on every population).
    #[serde(default = "default_true")]
    pub dc_compensation: bool,
    /// A model variant: projections between populations of different `group`s
    /// (areas) draw no delay below this, ms (normal and lognormal delays are
    /// redrawn below it, uniform ones start at it, constants are raised to it).
    /// Nodes that hold whole areas then exchange spikes only that often (the
    /// two-tier exchange); the dynamics are the variant's, not the model's.
    #[serde(default)]
    pub min_delay_between_groups_ms: Option<f64>,
}

impl Default for ScalingSpec {
    fn default() -> Self {
        ScalingSpec { neurons: 1.0, synapses: 1.0, dc_compensation: true, min_delay_between_groups_ms: None }
    }
}

/// A population of identical neurons.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PopulationSpec {
    /// Unique name.
    pub name: String,
    /// Number of neurons at scaling 1.
    pub size: u64,
    /// Model name (`iaf_psc_exp`, `iaf_psc_alpha`, `izhikevich`, `aeif_cond_exp`, `parrot_neuron`).
    pub model: String,
    /// Parameters by NEST name; unspecified ones take the model's defaults.
    #[serde(default)]
    pub params: BTreeMap<String, f64>,
    /// Initial values of state variables, by name: a number or a distribution.
    #[serde(default)]
    pub initial: BTreeMap<String, DistSpec>,
    /// Mean rate at full scale, Hz (for DC compensation when synapses are scaled).
    #[serde(default)]
    pub full_scale_rate_hz: Option<f64>,
    /// Homeostatic regulation toward a target rate.
    #[serde(default)]
    pub homeostasis: Option<HomeostasisSpec>,
    /// The group (an area) this population is placed with under `run.layout =
    /// "groups"`.
    #[serde(default)]
    pub group: Option<String>,
}

/// Homeostasis: intrinsic plasticity of the threshold and synaptic scaling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HomeostasisSpec {
    /// Target rate, Hz.
    pub target_rate_hz: f64,
    /// Time constant of each neuron's rate estimate, ms.
    #[serde(default = "default_tau_rate")]
    pub tau_rate_ms: f64,
    /// Intrinsic plasticity: threshold change, mV per Hz of rate error per second (0: off).
    #[serde(default)]
    pub threshold_rate: f64,
    /// Synaptic scaling: relative change of excitatory weights per Hz of rate error
    /// per second (0: off).
    #[serde(default)]
    pub scaling_rate: f64,
    /// Synaptic scaling interval, ms.
    #[serde(default = "default_scaling_interval")]
    pub scaling_interval_ms: f64,
}

impl Default for HomeostasisSpec {
    fn default() -> Self {
        HomeostasisSpec {
            target_rate_hz: 0.0,
            tau_rate_ms: default_tau_rate(),
            threshold_rate: 0.0,
            scaling_rate: 0.0,
            scaling_interval_ms: default_scaling_interval(),
        }
    }
}

fn default_tau_rate() -> f64 {
    1000.0
}
fn default_scaling_interval() -> f64 {
    100.0
}

/// An input device.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StimulusSpec {
    /// `poisson_generator`, `dc_generator` or `spike_generator`.
    pub kind: String,
    /// Target population name.
    pub target: String,
    /// Poisson: rate of each independent source, Hz.
    #[serde(default)]
    pub rate_hz: Option<f64>,
    /// Poisson: independent sources per target neuron, merged into one train
    /// (scaled by `scaling.synapses`). Default 1.
    #[serde(default)]
    pub indegree: Option<f64>,
    /// Poisson and spike generator: weight of each spike.
    #[serde(default)]
    pub weight: Option<f64>,
    /// Poisson and spike generator: delay, ms (default dt).
    #[serde(default)]
    pub delay_ms: Option<f64>,
    /// DC: amplitude, pA.
    #[serde(default)]
    pub amplitude_pa: Option<f64>,
    /// Start of activity, ms (default 0).
    #[serde(default)]
    pub start_ms: Option<f64>,
    /// End of activity, ms (default: end of run).
    #[serde(default)]
    pub stop_ms: Option<f64>,
    /// Spike generator: spike times, ms (on the dt grid, ≥ dt).
    #[serde(default)]
    pub spike_times_ms: Vec<f64>,
    /// Spike generator: indices within the target population (default all).
    #[serde(default)]
    pub neurons: Option<Vec<u32>>,
}

/// Connections from one population to another.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectionSpec {
    /// Source population name.
    pub source: String,
    /// Target population name.
    pub target: String,
    /// Connection rule and its parameters.
    pub conn: ConnSpec,
    /// Synapse model, weight, delay, receptor.
    pub syn: SynSpec,
    /// Tripartite: astrocytes joining some of the synapses (NEST's
    /// `third_factor_bernoulli_with_pool`).
    #[serde(default)]
    pub third: Option<ThirdSpec>,
}

/// The astrocyte part of a tripartite projection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThirdSpec {
    /// Astrocyte population (model astrocyte_lr_1994).
    pub population: String,
    /// Probability that a primary synapse gets an astrocyte.
    pub p: f64,
    /// `random` or `block`.
    #[serde(default = "default_pool")]
    pub pool_type: String,
    /// Astrocytes per target's pool.
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
    /// Weight of source → astrocyte (≥ 0: spikes raise IP3 by delta_IP3 × weight).
    #[serde(default = "default_one")]
    pub to_astrocyte_weight: f64,
    /// Delay of source → astrocyte, ms (default dt).
    #[serde(default)]
    pub to_astrocyte_delay_ms: Option<f64>,
    /// Weight of astrocyte → target (scales the slow inward current).
    #[serde(default = "default_one")]
    pub sic_weight: f64,
    /// Delay of astrocyte → target, ms (default dt).
    #[serde(default)]
    pub sic_delay_ms: Option<f64>,
    /// Gliotransmission: a covered primary synapse's efficacy is multiplied by
    /// 1 + gliotransmission × Ca of its astrocyte (µM, as of the last epoch
    /// boundary). Default 0 (off).
    #[serde(default)]
    pub gliotransmission: f64,
}

impl Default for ThirdSpec {
    fn default() -> Self {
        ThirdSpec {
            population: String::new(),
            p: 0.0,
            pool_type: default_pool(),
            pool_size: 1,
            to_astrocyte_weight: 1.0,
            to_astrocyte_delay_ms: None,
            sic_weight: 1.0,
            sic_delay_ms: None,
            gliotransmission: 0.0,
        }
    }
}

fn default_pool() -> String {
    "random".into()
}
fn default_pool_size() -> u32 {
    1
}

/// Connection rule (NEST's conn_spec).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnSpec {
    /// `one_to_one`, `all_to_all`, `pairwise_bernoulli`, `fixed_indegree`,
    /// `fixed_outdegree` or `fixed_total_number`.
    pub rule: String,
    /// pairwise_bernoulli: probability in [0, 1].
    #[serde(default)]
    pub p: Option<f64>,
    /// fixed_indegree: sources per target.
    #[serde(default)]
    pub indegree: Option<u64>,
    /// fixed_outdegree: targets per source.
    #[serde(default)]
    pub outdegree: Option<u64>,
    /// fixed_total_number: synapses in total (at scaling 1).
    #[serde(default)]
    pub n: Option<u64>,
    /// Allow a neuron to connect to itself.
    #[serde(default = "default_true")]
    pub allow_autapses: bool,
    /// Allow a pair to be connected more than once.
    #[serde(default = "default_true")]
    pub allow_multapses: bool,
}

impl Default for ConnSpec {
    fn default() -> Self {
        ConnSpec {
            rule: "all_to_all".into(),
            p: None,
            indegree: None,
            outdegree: None,
            n: None,
            allow_autapses: true,
            allow_multapses: true,
        }
    }
}

/// Synapse specification (NEST's syn_spec).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynSpec {
    /// Synapse model: `static_synapse`, `stdp_synapse` (all-to-all pairing),
    /// `stdp_nn_symm_synapse` (nearest-spike pairing), `stdp_symmetric_synapse`
    /// (both orders potentiate) or `tsodyks2_synapse` (short-term plasticity).
    #[serde(default = "default_synapse")]
    pub model: String,
    /// Parameters of a plastic synapse model, by NEST name (see `neuropil models`).
    #[serde(default)]
    pub params: BTreeMap<String, f64>,
    /// stdp_dopamine_synapse: the population whose spikes release dopamine (drive it
    /// with a spike_generator through parrot neurons for an external signal).
    #[serde(default)]
    pub modulator: Option<String>,
    /// Weight: pA (current-based), nS (conductance-based), mV (izhikevich).
    pub weight: DistSpec,
    /// Delay, ms; values are rounded to the dt grid.
    pub delay_ms: DistSpec,
    /// `auto` (the weight's sign picks the channel, as in NEST), `excitatory`
    /// (weights must be ≥ 0) or `inhibitory` (weights must be ≤ 0).
    #[serde(default = "default_receptor")]
    pub receptor: String,
}

impl Default for SynSpec {
    fn default() -> Self {
        SynSpec {
            model: default_synapse(),
            params: BTreeMap::new(),
            modulator: None,
            weight: DistSpec::constant(1.0),
            delay_ms: DistSpec::constant(1.0),
            receptor: default_receptor(),
        }
    }
}

fn default_synapse() -> String {
    "static_synapse".into()
}
fn default_receptor() -> String {
    "auto".into()
}

/// A recorder.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecorderSpec {
    /// `spike_recorder`, `multimeter` or `weight_recorder` (final weights of all
    /// plastic synapses).
    pub kind: String,
    /// spike_recorder: populations to record (empty = all).
    #[serde(default)]
    pub populations: Vec<String>,
    /// multimeter: population to sample.
    #[serde(default)]
    pub population: Option<String>,
    /// multimeter: neuron indices within the population (default: the first one).
    #[serde(default)]
    pub neurons: Option<Vec<u32>>,
    /// multimeter: state variables by name.
    #[serde(default)]
    pub variables: Vec<String>,
    /// multimeter: sampling interval, ms (default dt).
    #[serde(default)]
    pub interval_ms: Option<f64>,
}

//! The kernel's description of a network: what to build, in the kernel's units
//! (steps, pA, global neuron ids). Produced by `neuropil-spec` from an experiment
//! file; read by every shard, which builds only its own part.

use crate::distribution::Dist;
use crate::models::ModelKind;
use crate::plasticity::Plasticity;

/// Global neuron id: populations are numbered consecutively in spec order.
pub type Gid = u32;

/// A spike: the step in which neuron `gid` crossed threshold. Ordered by step, then
/// gid — the canonical order in which every shard delivers spikes.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Spike {
    /// Step index (the spike's time is `(step + 1) * dt`, as NEST stamps it).
    pub step: u64,
    /// Global id of the neuron.
    pub gid: Gid,
}

/// What a [`StateValue`] carries.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ValueKind {
    /// An astrocyte's slow inward current in one step (pA per unit weight).
    Sic,
    /// An astrocyte's calcium at the end of an epoch (µM), for gliotransmission.
    Calcium,
    /// A cerebellar module's output current (pA; `gid` is the module's index),
    /// held until the next value.
    ModuleCurrent,
    /// A cerebellar module's dopamine impulse (1/ms; `gid` is the module's index).
    ModuleDopamine,
}

impl ValueKind {
    /// The kind with wire number `n` (`kind as u32`).
    pub fn from_u32(n: u32) -> Option<ValueKind> {
        match n {
            0 => Some(ValueKind::Sic),
            1 => Some(ValueKind::Calcium),
            2 => Some(ValueKind::ModuleCurrent),
            3 => Some(ValueKind::ModuleDopamine),
            _ => None,
        }
    }
}

/// A continuous value one shard sends to others at an epoch boundary. Ordered like
/// spikes by (step, gid), then kind.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy, PartialEq)]
pub struct StateValue {
    /// Step after whose update the value holds.
    pub step: u64,
    /// The sending neuron (astrocyte).
    pub gid: Gid,
    /// What the value is.
    pub kind: ValueKind,
    /// The value.
    pub value: f64,
}

/// What shards exchange at an epoch boundary: spikes, and state values for
/// continuous couplings (astrocytes' slow inward currents). Both in canonical
/// (step, gid) order.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Default, PartialEq)]
pub struct Exchange {
    /// Spikes.
    pub spikes: Vec<Spike>,
    /// State values.
    pub values: Vec<StateValue>,
    /// Hardware co-simulation: the spikes an emulated chip fabric delays or drops
    /// on their way to a core, in (step, gid, core) order (empty without one).
    #[serde(default)]
    pub delays: Vec<SpikeDelay>,
}

/// What an emulated fabric does to one spike on its way to one core.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct SpikeDelay {
    /// The spike's step.
    pub step: u64,
    /// The spike's neuron.
    pub gid: Gid,
    /// The receiving core (see `Shard::set_cores`).
    pub core: u32,
    /// Extra delay in steps, or [`SpikeDelay::DROPPED`].
    pub extra_steps: u32,
}

impl SpikeDelay {
    /// The spike never reaches the core.
    pub const DROPPED: u32 = u32::MAX;
}

impl Exchange {
    /// Empty every list.
    pub fn clear(&mut self) {
        self.spikes.clear();
        self.values.clear();
        self.delays.clear();
    }
}

/// A population of identical model neurons.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Population {
    /// Name from the spec.
    pub name: String,
    /// Number of neurons.
    pub size: u32,
    /// Global id of the first neuron.
    pub first_gid: Gid,
    /// Neuron model.
    pub model: ModelKind,
    /// Parameter values in [`ModelKind::params`] order.
    pub params: Vec<f64>,
    /// Initial state: (state variable index, distribution), drawn per neuron.
    pub initial: Vec<(usize, Dist)>,
    /// Homeostatic regulation of the population's rate, if any.
    pub homeostasis: Option<Homeostasis>,
}

/// Homeostasis toward a target rate: each neuron estimates its rate with an
/// exponential trace (initialised at the target) and
/// - intrinsic plasticity moves its threshold by `threshold_rate · (r − r_target) · dt`
///   (mV; models with a threshold state `V_th`);
/// - synaptic scaling multiplies its excitatory incoming weights every interval by
///   `1 + scaling_rate · (r_target − r) · interval` (floored at 0).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy, PartialEq)]
pub struct Homeostasis {
    /// Target rate, Hz.
    pub target_rate_hz: f64,
    /// Time constant of the rate estimate, ms.
    pub tau_rate_ms: f64,
    /// Threshold change, mV per Hz of rate error per second (0: off).
    pub threshold_rate: f64,
    /// Relative weight change per Hz of rate error per second (0: off).
    pub scaling_rate: f64,
    /// Steps between two scalings.
    pub scaling_interval_steps: u32,
}

impl Population {
    /// One past the last global id.
    pub fn end_gid(&self) -> Gid {
        self.first_gid + self.size
    }
}

/// How sources are chosen for targets.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy, PartialEq)]
pub enum Rule {
    /// Source i to target i.
    OneToOne,
    /// Every source to every target.
    AllToAll,
    /// Each pair independently with probability `p`.
    PairwiseBernoulli {
        /// Connection probability.
        p: f64,
    },
    /// Each target draws `k` sources.
    FixedIndegree {
        /// In-degree.
        k: u32,
    },
    /// Each source draws `k` targets.
    FixedOutdegree {
        /// Out-degree.
        k: u32,
    },
    /// `n` (source, target) pairs drawn uniformly.
    FixedTotalNumber {
        /// Total number of synapses.
        n: u64,
    },
}

impl Rule {
    /// Expected number of synapses (for memory estimates).
    pub fn expected_synapses(&self, n_pre: u64, n_post: u64) -> f64 {
        match *self {
            Rule::OneToOne => n_post as f64,
            Rule::AllToAll => (n_pre * n_post) as f64,
            Rule::PairwiseBernoulli { p } => p * (n_pre * n_post) as f64,
            Rule::FixedIndegree { k } => k as f64 * n_post as f64,
            Rule::FixedOutdegree { k } => k as f64 * n_pre as f64,
            Rule::FixedTotalNumber { n } => n as f64,
        }
    }
}

/// Static synapses from one population onto another.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Projection {
    /// Source population index.
    pub source: usize,
    /// Target population index.
    pub target: usize,
    /// Connection rule.
    pub rule: Rule,
    /// Weight distribution (pA for current synapses, nS for conductance, mV for
    /// izhikevich); the sign picks the excitatory or inhibitory channel, as in NEST.
    pub weight: Dist,
    /// Delay distribution in ms; drawn values are rounded to the dt grid (≥ 1 step).
    pub delay_ms: Dist,
    /// Whether a neuron may connect to itself.
    pub autapses: bool,
    /// Whether a pair may be connected more than once.
    pub multapses: bool,
    /// `None`: static synapses; otherwise the plasticity rule.
    pub plasticity: Option<Plasticity>,
    /// A slow-inward-current connection: the source is an astrocyte population and
    /// each target receives weight × the astrocyte's SIC as a current after the delay.
    pub sic: bool,
    /// Tripartite: astrocytes that join some of this projection's synapses.
    pub third: Option<ThirdParty>,
}

/// How each target's pool of candidate astrocytes is formed (NEST ≥ 3.9).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy, PartialEq, Eq)]
pub enum Pool {
    /// `size` astrocytes drawn without replacement per target.
    Random {
        /// Pool size.
        size: u32,
    },
    /// Contiguous blocks: size 1 → target k gets astrocyte ⌊k / (N_T/N_A)⌋;
    /// size > 1 (N_T · size = N_A) → target k gets [k·size, (k+1)·size).
    Block {
        /// Pool size.
        size: u32,
    },
}

/// The astrocyte part of a tripartite projection: for each primary synapse
/// (s → t), with probability `p` an astrocyte a from t's pool is chosen and the
/// synapses s → a (spikes raise IP3) and a → t (slow inward current) are created.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy, PartialEq)]
pub struct ThirdParty {
    /// Astrocyte population index.
    pub population: usize,
    /// Probability that a primary synapse gets an astrocyte.
    pub p: f64,
    /// Pools.
    pub pool: Pool,
    /// Weight of s → a.
    pub to_astrocyte_weight: f64,
    /// Delay of s → a, steps.
    pub to_astrocyte_delay_steps: u16,
    /// Weight of a → t (scales the SIC).
    pub sic_weight: f64,
    /// Delay of a → t, steps.
    pub sic_delay_steps: u16,
    /// Gliotransmission: the primary synapse's efficacy is multiplied by
    /// 1 + gliotransmission × Ca of its astrocyte (µM, as of the last epoch boundary);
    /// 0 switches it off.
    pub gliotransmission: f64,
}

/// The final weight of one plastic synapse.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy, PartialEq)]
pub struct PlasticWeight {
    /// Projection index.
    pub projection: u32,
    /// Source neuron.
    pub source: Gid,
    /// Target neuron.
    pub target: Gid,
    /// Delay, steps.
    pub delay_steps: u16,
    /// Weight.
    pub weight: f64,
}

/// An input device.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Stimulus {
    /// Independent Poisson spike trains, one per target neuron.
    Poisson {
        /// Target population index.
        target: usize,
        /// Total rate per target neuron, Hz.
        rate_hz: f64,
        /// Weight of each spike.
        weight: f64,
        /// Delay in steps (≥ 1).
        delay_steps: u32,
        /// First emission step.
        start_step: u64,
        /// One past the last emission step.
        stop_step: u64,
    },
    /// A constant current to every neuron of a population.
    Dc {
        /// Target population index.
        target: usize,
        /// Amplitude, pA.
        amplitude_pa: f64,
        /// First step with the current on.
        start_step: u64,
        /// First step with the current off again.
        stop_step: u64,
    },
    /// Spikes at given times to every chosen neuron of a population.
    SpikeTrain {
        /// Target population index.
        target: usize,
        /// Indices within the population; `None` = all.
        neurons: Option<Vec<u32>>,
        /// Emission steps (a spike at time T ms is emitted in step T/dt - 1).
        steps: Vec<u64>,
        /// Weight.
        weight: f64,
        /// Delay in steps (≥ 1).
        delay_steps: u32,
    },
}

/// Periodic samples of state variables of chosen neurons.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Sampler {
    /// Population index.
    pub population: usize,
    /// Indices within the population.
    pub neurons: Vec<u32>,
    /// State variable indices.
    pub variables: Vec<usize>,
    /// Sampling interval in steps.
    pub interval_steps: u32,
}

/// A whole network plus its inputs and what to record.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Network {
    /// Time step, ms.
    pub dt_ms: f64,
    /// Master seed.
    pub seed: u64,
    /// Populations in gid order.
    pub populations: Vec<Population>,
    /// Projections; their index keys their random streams.
    pub projections: Vec<Projection>,
    /// Input devices.
    pub stimuli: Vec<Stimulus>,
    /// Per population: record its spikes.
    pub record_spikes: Vec<bool>,
    /// State samplers.
    pub samplers: Vec<Sampler>,
    /// Report the final weights of plastic synapses.
    pub record_weights: bool,
    /// Cerebellar modules (decoupled neural interfaces), in spec order.
    #[serde(default)]
    pub cerebella: Vec<Cerebellar>,
    /// Population groups placed together (areas): each population's group index,
    /// groups numbered from 0 in order of first appearance. `None`: every
    /// population round-robin over all shards ([`crate::connectivity::Layout`]).
    #[serde(default)]
    pub groups: Option<Vec<u32>>,
}

/// Where a cerebellar module's output goes.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq)]
pub enum ModuleOutput {
    /// The predicted feedback is the third factor of the readout's plastic
    /// synapses: they learn from it at once instead of from the delayed feedback.
    ThirdFactor,
    /// The predicted feedback, times `scale_pa`, is a current into every neuron of
    /// `population` (the readout learns from the delayed feedback).
    Current {
        /// Target population index.
        population: usize,
        /// pA per unit of predicted feedback.
        scale_pa: f64,
    },
    /// The third factor of the `stdp_dopamine_synapse` projections onto
    /// `population`: each sample adds `scale` × the predicted feedback to their
    /// dopamine concentration (without an active module: × the true feedback that
    /// arrived, late).
    Dopamine {
        /// Target population index.
        population: usize,
        /// Concentration (1/ms) per unit of feedback.
        scale: f64,
    },
}

/// A cerebellar module between populations: mossy fibres carry the filtered spike
/// trains of `mossy` (rates / `rate_norm_hz`), sampled every `interval_steps`; the
/// module predicts the feedback (error) of a task — a linear readout of
/// `readout`'s rates learning a sine target — that reaches it only after
/// `delay_steps` through the climbing fibre. See [`crate::cerebellum::runtime`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Cerebellar {
    /// Name from the spec.
    pub name: String,
    /// Mossy-fibre source populations.
    pub mossy: Vec<usize>,
    /// Time constant of the rate filter, ms.
    pub tau_ms: f64,
    /// Rates are divided by this before entering the module, Hz.
    pub rate_norm_hz: f64,
    /// Steps between two samples (predictions and learning steps); rounded up to
    /// whole epochs by the runtime.
    pub interval_steps: u64,
    /// Granule layer sizes.
    pub granule: Vec<u32>,
    /// Sparse fan-in of the first granule layer (`None`: every mossy fibre).
    pub fan_in: Option<u32>,
    /// Gradient-descent step of the module's climbing-fibre learning.
    pub learning_rate: f64,
    /// Population read out by the task's plastic linear readout.
    pub readout: usize,
    /// Climbing-fibre (feedback) delay, steps.
    pub delay_steps: u64,
    /// Target `offset + amplitude · sin(2π t / period)`.
    pub target_amplitude: f64,
    /// Period of the target, ms.
    pub target_period_ms: f64,
    /// Offset of the target.
    pub target_offset: f64,
    /// Learning rate of the readout.
    pub readout_learning_rate: f64,
    /// Eligibility trace of the readout synapses, ms (pairs delayed feedback with
    /// past activity when no module predicts it).
    pub eligibility_tau_ms: f64,
    /// Output.
    pub output: ModuleOutput,
    /// Cerebellar lesion: no module from this step on.
    pub remove_at_step: Option<u64>,
    /// Inferior-olive lesion: the module stops learning from this step on.
    pub freeze_at_step: Option<u64>,
    /// The task's output is the readout population's mean rate (/ rate_norm_hz)
    /// instead of a plastic linear readout of it.
    #[serde(default)]
    pub readout_rate: bool,
}

impl Network {
    /// Total number of neurons.
    pub fn total_neurons(&self) -> u32 {
        self.populations.last().map_or(0, |p| p.end_gid())
    }

    /// A delay in ms as steps on the dt grid (at least one step).
    #[inline]
    pub fn delay_steps(&self, delay_ms: f64) -> u16 {
        // Round half up by truncation (delays are positive; avoids a libm call per
        // synapse); saturating casts map NaN and huge values into range.
        ((delay_ms / self.dt_ms + 0.5) as u32).clamp(1, u16::MAX as u32) as u16
    }

    /// Steps per epoch: the smallest delay any projection can produce. Within an
    /// epoch no spike can reach another neuron, so shards advance independently.
    /// Capped at 1 ms worth of steps (progress and exchange granularity) and 1 step
    /// at least.
    pub fn epoch_steps(&self) -> u32 {
        let cap = ((1.0 / self.dt_ms).round() as u32).max(1);
        let third = self
            .projections
            .iter()
            .filter_map(|p| p.third)
            .flat_map(|t| [t.to_astrocyte_delay_steps as u32, t.sic_delay_steps as u32]);
        self.projections
            .iter()
            .map(|p| self.delay_steps(p.delay_ms.lower()) as u32)
            .chain(third)
            .min()
            .unwrap_or(cap)
            .clamp(1, cap)
    }

    /// Index of the population that holds `gid`.
    pub fn population_of(&self, gid: Gid) -> usize {
        self.populations.partition_point(|p| p.end_gid() <= gid)
    }

    /// Expected number of synapses of every projection.
    pub fn expected_synapses(&self) -> f64 {
        self.projections
            .iter()
            .map(|p| {
                let pre = self.populations[p.source].size as u64;
                let post = self.populations[p.target].size as u64;
                p.rule.expected_synapses(pre, post)
            })
            .sum()
    }
}

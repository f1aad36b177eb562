//! The embedded runtime: shards on local threads, exchanging spikes through shared
//! memory once per epoch. The cluster runtime runs the same shards in actors.
//!
//! Each thread owns a fixed set of shards. Per epoch a thread merges every shard's
//! spikes of the previous epoch into the canonical order, advances its shards, and
//! publishes their spikes into a double-buffered outbox; one barrier per epoch
//! separates publishing from reading (a thread can only overwrite an outbox slot two
//! epochs later, after everyone has passed the next barrier).

use crate::cerebellum::runtime::{samples_at, ModuleRun, ModuleSample};
use crate::connectivity::Layout;
use crate::network::{Exchange, Network, PlasticWeight, Spike};
use crate::shard::{PhaseTimes, Sample, Shard};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// How to run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy)]
pub struct RunConfig {
    /// Worker threads (at most `shards` are used).
    pub threads: usize,
    /// Number of shards; results do not depend on it.
    pub shards: usize,
    /// Steps to simulate (rounded up to whole epochs).
    pub steps: u64,
    /// Spikes from this step on count in [`RunOutput::counted_spikes`] (the
    /// transient before it is left out of rates).
    pub count_from_step: u64,
}

/// What a run produced.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Default)]
pub struct RunOutput {
    /// Spikes of the recorded populations, in canonical order.
    pub spikes: Vec<Spike>,
    /// Spike counts per population (all populations, recorded or not).
    pub spike_counts: Vec<u64>,
    /// Spike counts per population from `count_from_step` on.
    pub counted_spikes: Vec<u64>,
    /// [`SpikeHasher`] digest of all spikes of all populations.
    pub spike_hash: u64,
    /// Samples, ordered by (step, sampler, gid, var).
    pub samples: Vec<Sample>,
    /// Final plastic weights (if the network asks for them), ordered by
    /// (projection, source, target, delay) and generation order.
    pub weights: Vec<PlasticWeight>,
    /// Cerebellar modules' task samples, in (step, module) order.
    #[serde(default)]
    pub cerebellum: Vec<ModuleSample>,
    /// What the runtime reports of an emulated chip fabric in the loop (JSON, opaque
    /// to the kernel; `None` without one). A cluster node fills it in for the
    /// control's summary.
    #[serde(default)]
    pub hardware: Option<String>,
    /// The run (or its last stretch) ended on a stop — this process's cancel or
    /// failure, or a peer's — rather than at its planned end.
    #[serde(default)]
    pub stopped: bool,
    /// Figures.
    pub stats: RunStats,
}

impl RunOutput {
    /// All spikes counted (recorded or not).
    pub fn spikes_seen(&self) -> u64 {
        self.spike_counts.iter().sum()
    }

    /// This output followed by the output of the run continued from its end:
    /// spikes and samples appended, counts and timings added, final weights and
    /// the digest (which continues across checkpoints) from `next`.
    pub fn followed_by(mut self, next: RunOutput) -> RunOutput {
        self.spikes.extend(next.spikes);
        self.samples.extend(next.samples);
        self.cerebellum.extend(next.cerebellum);
        self.hardware = next.hardware.or(self.hardware);
        self.stopped = next.stopped;
        for (a, b) in self.spike_counts.iter_mut().zip(&next.spike_counts) {
            *a += b;
        }
        for (a, b) in self.counted_spikes.iter_mut().zip(&next.counted_spikes) {
            *a += b;
        }
        self.spike_hash = next.spike_hash;
        self.weights = next.weights;
        let (a, b) = (&mut self.stats, &next.stats);
        a.simulate_s += b.simulate_s;
        a.synaptic_events += b.synaptic_events;
        a.phases.add(&b.phases);
        a.exchange_ns += b.exchange_ns;
        a.steps = b.steps;
        a.synapses = b.synapses;
        a.synapse_bytes = b.synapse_bytes;
        self
    }
}

/// The output of a run split over processes: `parts[0]` is the recording
/// process's (its spikes, counts and digest cover every shard, since every
/// process sees every spike); samples and weights come from each process's own
/// shards, module samples from the process that ran each module, the fabric's
/// report from the one that ran it, all put back into the embedded run's order;
/// figures add up (wall times: the slowest process).
pub fn combine_parts(mut parts: Vec<RunOutput>) -> RunOutput {
    if parts.is_empty() {
        return RunOutput::default();
    }
    let rest = parts.split_off(1);
    let mut out = parts.pop().unwrap_or_default();
    for p in rest {
        out.samples.extend(p.samples);
        out.weights.extend(p.weights);
        out.cerebellum.extend(p.cerebellum);
        out.hardware = out.hardware.or(p.hardware);
        out.stopped |= p.stopped;
        let (a, b) = (&mut out.stats, &p.stats);
        a.synapses += b.synapses;
        a.synapse_bytes += b.synapse_bytes;
        a.synaptic_events += b.synaptic_events;
        a.phases.add(&b.phases);
        a.exchange_ns += b.exchange_ns;
        a.build_s = a.build_s.max(b.build_s);
        a.simulate_s = a.simulate_s.max(b.simulate_s);
    }
    out.weights.sort_by_key(|w| (w.projection, w.source, w.target, w.delay_steps));
    out.samples.sort_by_key(|a| (a.step, a.sampler, a.gid, a.var));
    out.cerebellum.sort_by_key(|s| (s.step, s.module));
    out
}

/// Figures of a run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy, Default)]
pub struct RunStats {
    /// Synapses built.
    pub synapses: u64,
    /// Bytes of synapse storage over all shards.
    pub synapse_bytes: u64,
    /// Wall time to build all shards, s.
    pub build_s: f64,
    /// Wall time of the simulation loop, s.
    pub simulate_s: f64,
    /// Synaptic events delivered.
    pub synaptic_events: u64,
    /// Steps simulated.
    pub steps: u64,
    /// Thread time per phase, summed over shards.
    pub phases: PhaseTimes,
    /// Thread time spent merging spikes and waiting at the epoch barrier, summed
    /// over threads, ns.
    pub exchange_ns: u64,
}

/// Progress of a run, for progress bars and metrics.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy)]
pub struct Progress {
    /// Steps done.
    pub steps_done: u64,
    /// Steps in total.
    pub steps_total: u64,
    /// Spikes so far.
    pub spikes: u64,
}

/// A sense-reversing barrier that spins briefly before yielding: epochs can be a
/// single 0.1 ms step, so the futex round trip of `std::sync::Barrier` would cost
/// more than the work.
struct SpinBarrier {
    n: usize,
    count: AtomicUsize,
    generation: AtomicUsize,
}

impl SpinBarrier {
    fn new(n: usize) -> Self {
        SpinBarrier { n, count: AtomicUsize::new(0), generation: AtomicUsize::new(0) }
    }

    fn wait(&self) {
        let gen = self.generation.load(Ordering::Acquire);
        if self.count.fetch_add(1, Ordering::AcqRel) + 1 == self.n {
            self.count.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            return;
        }
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == gen {
            if spins < 2_000 {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
            }
        }
    }
}

fn merge(outboxes: &[[Mutex<Exchange>; 2]], parity: usize, into: &mut Exchange) {
    into.clear();
    for ob in outboxes {
        let guard = ob[parity].lock().unwrap_or_else(|e| e.into_inner());
        into.spikes.extend_from_slice(&guard.spikes);
        into.values.extend_from_slice(&guard.values);
    }
    into.spikes.sort_unstable();
    into.values.sort_unstable_by_key(|v| (v.step, v.gid, v.kind));
}

/// Run `net` on local threads. `progress` is called from one worker thread after
/// every epoch; `cancel` stops the run at the next epoch boundary.
pub fn run(net: &Network, cfg: RunConfig, progress: &(dyn Fn(Progress) + Sync), cancel: &AtomicBool) -> RunOutput {
    let build_start = Instant::now();
    let start = build(net, cfg.shards, cfg.threads);
    let build_s = build_start.elapsed().as_secs_f64();
    let (mut out, _) = run_from(net, start, cfg, progress, cancel);
    out.stats.build_s = build_s;
    out
}

/// Everything needed to continue a run bit for bit: every shard's state, and the
/// spikes and state values of the last epoch that the shards have not taken in yet.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// [`network_hash`] of the network the shards belong to.
    pub network_hash: u64,
    /// The shards, by index.
    pub shards: Vec<Shard>,
    /// Input of the next epoch.
    pub pending: Exchange,
    /// [`SpikeHasher`] state over all spikes so far: a run continued from here
    /// reports the digest of the whole history, equal to the uninterrupted run's.
    pub spike_hash_state: u64,
    /// Cerebellar modules, by index: `None` for those another process of a
    /// distributed run holds (one process runs each module; the embedded run holds
    /// them all).
    #[serde(default)]
    pub modules: Vec<Option<ModuleRun>>,
    /// The dynamic state of an emulated chip fabric in the loop, opaque to the
    /// kernel (the runtime that owns the fabric saves and restores it; empty
    /// without one).
    #[serde(default)]
    pub fabric_state: Vec<u8>,
}

/// Why a checkpoint could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The bytes are not a checkpoint.
    #[error("not a neuropil checkpoint: {0}")]
    Decode(String),
    /// The bytes are a checkpoint, damaged or cut short.
    #[error("the checkpoint is damaged or incomplete ({0}); use an intact copy")]
    Corrupt(String),
    /// The checkpoint belongs to another network (or another seed, or scaling).
    #[error(
        "the checkpoint was made for a different network (or seed); resume with the same experiment and overrides"
    )]
    OtherNetwork,
    /// A shard's state does not fit the network it is restored into.
    #[error("the checkpoint does not fit the network: {0}")]
    Mismatch(#[from] crate::shard::StaticsMismatch),
}

/// The first bytes of a checkpoint: magic and format version.
const CHECKPOINT_MAGIC: &[u8; 8] = b"NPCKPT\x00\x04";

/// FNV-1a, 64 bits, eight bytes at a time (a checksum against damage, not an
/// adversary: the checkpoint is then decoded with postcard's bounds).
pub fn checksum(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        h ^= u64::from_le_bytes(c.try_into().unwrap_or_default());
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    for &b in chunks.remainder() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Checkpoint {
    /// Serialised form: magic and version, payload length, checksum, then the
    /// postcard payload. Static connectivity is left out (rebuilt on restore).
    pub fn to_bytes(&self) -> Vec<u8> {
        let payload = postcard::to_allocvec(self).unwrap_or_default();
        let mut out = Vec::with_capacity(payload.len() + 24);
        out.extend_from_slice(CHECKPOINT_MAGIC);
        out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        out.extend_from_slice(&checksum(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
        out
    }

    /// Restore, checking that the bytes are intact and belong to `net`, and
    /// rebuild every shard's static connectivity (on up to `threads` threads).
    pub fn from_bytes_on(bytes: &[u8], net: &Network, threads: usize) -> Result<Checkpoint, CheckpointError> {
        let mut cp = Checkpoint::decode(bytes, net)?;
        if let Some(i) = cp.modules.iter().position(Option::is_none) {
            return Err(CheckpointError::Corrupt(format!(
                "cerebellar module {i} is not in it (a cluster node's part holds only the modules placed there)"
            )));
        }
        cp.rebuild_statics(net, threads)?;
        Ok(cp)
    }

    /// Check and decode, leaving the shards without their static connectivity
    /// (a cluster node restoring a few shards of a part rebuilds only those, with
    /// [`Checkpoint::rebuild_statics`]); such shards must not be run.
    pub fn decode(bytes: &[u8], net: &Network) -> Result<Checkpoint, CheckpointError> {
        let Some((head, rest)) = bytes.split_at_checked(24) else {
            return Err(CheckpointError::Decode("too short".into()));
        };
        if head[..6] != CHECKPOINT_MAGIC[..6] {
            return Err(CheckpointError::Decode("no checkpoint header".into()));
        }
        if head[..8] != CHECKPOINT_MAGIC[..] {
            return Err(CheckpointError::Decode(format!(
                "format version {} (this build reads {}); resume with the neuropil that wrote it",
                u16::from_be_bytes([head[6], head[7]]),
                u16::from_be_bytes([CHECKPOINT_MAGIC[6], CHECKPOINT_MAGIC[7]])
            )));
        }
        let len = u64::from_le_bytes(head[8..16].try_into().unwrap_or_default());
        if len != rest.len() as u64 {
            return Err(CheckpointError::Corrupt(format!("{} bytes of payload, the header says {len}", rest.len())));
        }
        if checksum(rest) != u64::from_le_bytes(head[16..24].try_into().unwrap_or_default()) {
            return Err(CheckpointError::Corrupt("checksum mismatch".into()));
        }
        let cp: Checkpoint = postcard::from_bytes(rest).map_err(|e| CheckpointError::Corrupt(e.to_string()))?;
        if cp.network_hash != network_hash(net) {
            return Err(CheckpointError::OtherNetwork);
        }
        if cp.modules.len() != net.cerebella.len() {
            let (saved, wanted) = (cp.modules.len(), net.cerebella.len());
            return Err(CheckpointError::Corrupt(format!(
                "{saved} cerebellar modules saved, the network has {wanted}"
            )));
        }
        for (i, m) in cp.modules.iter().enumerate() {
            if let Some(m) = m {
                m.fits(net, i).map_err(CheckpointError::Corrupt)?;
            }
        }
        Ok(cp)
    }

    /// Rebuild every shard's static connectivity from the network (on up to
    /// `threads` threads), checking that each shard's saved state fits it.
    pub fn rebuild_statics(&mut self, net: &Network, threads: usize) -> Result<(), CheckpointError> {
        let cp = self;
        let n = cp.shards.len();
        let threads = threads.clamp(1, n.max(1));
        let failed = Mutex::new(None);
        let next = AtomicUsize::new(0);
        let slots: Vec<Mutex<&mut Shard>> = cp.shards.iter_mut().map(Mutex::new).collect();
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(slot) = slots.get(i) else { return };
                    let mut shard = slot.lock().unwrap_or_else(|e| e.into_inner());
                    if let Err(e) = shard.rebuild_static(net) {
                        failed.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
                    }
                });
            }
        });
        drop(slots);
        match failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// [`Checkpoint::from_bytes_on`] with a thread per core.
    pub fn from_bytes(bytes: &[u8], net: &Network) -> Result<Checkpoint, CheckpointError> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Checkpoint::from_bytes_on(bytes, net, cores)
    }

    /// Keep only the modules `here` says this process runs (the others run on
    /// other processes of a distributed run).
    pub fn keep_modules(&mut self, here: impl Fn(usize) -> bool) {
        for (i, m) in self.modules.iter_mut().enumerate() {
            if !here(i) {
                *m = None;
            }
        }
    }

    /// The next step the shards will compute.
    pub fn step(&self) -> u64 {
        self.shards.first().map_or(0, |s| s.step())
    }
}

/// A digest of the network description (FNV-1a over its serialised form).
pub fn network_hash(net: &Network) -> u64 {
    let bytes = postcard::to_allocvec(net).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Build all shards of `net` on `threads` threads.
pub fn build(net: &Network, shards: usize, threads: usize) -> Checkpoint {
    let n_shards = shards.max(1);
    build_some(net, &(0..n_shards).collect::<Vec<_>>(), n_shards, threads)
}

/// Build the shards `indices` (of `n_shards` in all) on `threads` threads: a
/// cluster node builds only its own, each from the target side.
pub fn build_some(net: &Network, indices: &[usize], n_shards: usize, threads: usize) -> Checkpoint {
    let n = indices.len();
    let threads = threads.clamp(1, n.max(1));
    let slots: Vec<Mutex<Option<Shard>>> = (0..n).map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let slots = &slots;
            scope.spawn(move || {
                for i in (t..n).step_by(threads) {
                    let layout = Layout::of(net, indices[i] as u32, n_shards as u32);
                    let shard = Shard::build(net, layout);
                    *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(shard);
                }
            });
        }
    });
    let shards = slots.into_iter().filter_map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner())).collect();
    Checkpoint {
        network_hash: network_hash(net),
        shards,
        pending: Exchange::default(),
        spike_hash_state: SpikeHasher::new().finish(),
        modules: (0..net.cerebella.len()).map(|i| Some(ModuleRun::new(net, i))).collect(),
        fabric_state: Vec::new(),
    }
}

/// The link from this process's shards to the rest of a distributed run. Once per
/// epoch every process sends the spikes and values of its own shards and receives
/// everyone else's; receiving all of them is the epoch barrier. Between the two
/// calls the shards draw their next Poisson input, which hides part of the
/// latency. The kernel only sees this blocking interface: the cluster runtime
/// implements it over gRPC.
pub trait Transport: Send {
    /// Send `local` (this process's output of the epoch, canonical order) with
    /// `stop` set when this process was cancelled.
    fn send(&mut self, local: &Exchange, stop: bool) -> Result<(), String>;

    /// Append every peer's output of the same epoch to `into`. Returns whether any
    /// process asked to stop (everyone then stops after this epoch, together).
    fn receive(&mut self, into: &mut Exchange) -> Result<bool, String>;
}

/// This process's link to the other processes of a distributed run.
pub struct Remote<'a> {
    /// The transport.
    pub link: &'a mut dyn Transport,
    /// An emulated fabric is in the run's loop, on this process or another: every
    /// epoch then has a second round in which the process that runs it sends its
    /// delays (and modules their outputs) to the others.
    pub fabric_in_loop: bool,
    /// Epochs per exchange ([`crate::tiers::exchange_epochs`]; 1: every epoch).
    /// Every process of the run must use the same; it is 1 whenever a fabric is
    /// in the loop or [`crate::tiers::allowed`] says no, whatever is asked.
    pub exchange_every: u64,
}

/// An emulated chip fabric in the loop (hardware co-simulation): once per epoch it
/// sees every spike in canonical order and says which (spike, core) pairs arrive
/// late or not at all. It must be deterministic: it sees the same spikes whatever
/// the number of shards, threads or processes.
pub trait SpikeFabric: Send {
    /// Append the delays and drops of `spikes` to `out`, in (step, gid, core) order.
    fn route(&mut self, spikes: &[Spike], out: &mut Vec<crate::network::SpikeDelay>);
}

/// Why a distributed stretch of a run failed.
#[derive(Debug, thiserror::Error)]
#[error("spike exchange failed at epoch {epoch}: {reason}")]
pub struct TransportError {
    /// The epoch whose exchange failed.
    pub epoch: u64,
    /// What the transport reported.
    pub reason: String,
}

/// Why a stretch failed. Epochs are counted from the start of the run (step 0),
/// whatever stretch or checkpoint they fall in.
#[derive(Debug, thiserror::Error)]
pub enum StretchError {
    /// The exchange with the other processes failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A shard's model code panicked (a bug, or a test's failpoint). Every process
    /// stops after this epoch, together.
    #[error("shard {shard} failed at epoch {epoch}: {message}")]
    Shard {
        /// The shard's index among all shards of the run.
        shard: u32,
        /// The epoch it was advancing.
        epoch: u64,
        /// The panic's message.
        message: String,
    },
    /// A cerebellar module panicked while taking in an epoch's spikes.
    #[error("cerebellar module {module} failed at epoch {epoch}: {message}")]
    Module {
        /// The module's index in the network.
        module: u32,
        /// The epoch whose spikes it was taking in.
        epoch: u64,
        /// The panic's message.
        message: String,
    },
}

/// The message of a caught panic.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
        (Some(s), _) => s.to_string(),
        (_, Some(s)) => s.clone(),
        _ => "panicked".to_string(),
    }
}

/// Continue from `start` for `cfg.steps` more steps (`cfg.shards` is taken from the
/// checkpoint); returns the output of this stretch and the checkpoint at its end.
pub fn run_from(
    net: &Network,
    start: Checkpoint,
    cfg: RunConfig,
    progress: &(dyn Fn(Progress) + Sync),
    cancel: &AtomicBool,
) -> (RunOutput, Checkpoint) {
    match run_part(net, start, cfg, None, None, progress, cancel) {
        Ok(done) => done,
        // Without a transport only model code can fail: keep it a panic here.
        Err(e) => panic!("{e}"),
    }
}

/// Continue `start` (all shards, or one process's share of them with `remote`
/// linking it to the others) for `cfg.steps` more steps. With a transport, the
/// first thread exchanges every epoch's output with the peers and the merged
/// input reaches the other threads through a second barrier; spikes, digest and
/// counts are those of the embedded run whatever the split.
///
/// Cerebellar modules and the fabric run where `start` and `fabric` hold them
/// (one process each). In an epoch where some module samples
/// ([`crate::cerebellum::runtime::samples_at`]) or a fabric is in the loop, the
/// exchange has a second round: each process sends what its modules and fabric
/// produced from the epoch's spikes (module outputs, the fabric's delays), and
/// every process adds them in the order of the embedded run (module index; the
/// fabric's (step, gid, core)).
pub fn run_part(
    net: &Network,
    start: Checkpoint,
    cfg: RunConfig,
    remote: Option<Remote<'_>>,
    fabric: Option<&mut dyn SpikeFabric>,
    progress: &(dyn Fn(Progress) + Sync),
    cancel: &AtomicBool,
) -> Result<(RunOutput, Checkpoint), StretchError> {
    let fabric_in_loop = remote.as_ref().is_some_and(|r| r.fabric_in_loop) || fabric.is_some();
    let asked_every = remote.as_ref().map_or(1, |r| r.exchange_every.max(1));
    // The two-tier exchange: other processes' spikes every `tiers` epochs.
    let tiers = if fabric_in_loop || !crate::tiers::allowed(net) { 1 } else { asked_every };
    let remote = remote.map(|r| Mutex::new(r.link));
    // The spikes of the window since the last exchange (the first thread's), and
    // the other processes' spikes of the window's earlier epochs, which every
    // thread's shards take before the next epoch.
    let early = Mutex::new(Vec::<Spike>::new());
    let fabric = fabric.map(Mutex::new);
    let shared_input = Mutex::new(Exchange::default());
    // The first failure wins; every thread stops at the epoch it names.
    let failure: Mutex<Option<StretchError>> = Mutex::new(None);
    // A stop was asked for (a cancel, a failure here, or a peer's stop): only then
    // does an epoch message carry `stop` — at the last epoch of a stretch
    // `done_epochs <= e` holds anyway, and peers must tell the two apart.
    let stop_asked = AtomicBool::new(false);
    let Checkpoint { network_hash, mut shards, pending, spike_hash_state, modules, fabric_state } = start;
    let first_step = shards.first().map_or(0, |s| s.step());
    let epoch = net.epoch_steps() as u64;
    let first_epoch = first_step / epoch;
    let epochs = cfg.steps.div_ceil(epoch);
    // Whether the processes exchange at the boundary after `e` epochs of this
    // stretch (always at its end, so that a checkpoint holds no window), and the
    // first such boundary at or after `e`: every process stops together at one.
    let exchanges_at = |e: u64| e == epochs || (first_epoch + e).is_multiple_of(tiers);
    let exchange_at_or_after = |e: u64| ((first_epoch + e).div_ceil(tiers) * tiers - first_epoch).min(epochs);
    let fail_with = |e: StretchError, stop_after: u64, done_epochs: &AtomicU64| {
        stop_asked.store(true, Ordering::Release);
        failure.lock().unwrap_or_else(|x| x.into_inner()).get_or_insert(e);
        done_epochs.fetch_min(exchange_at_or_after(stop_after), Ordering::AcqRel);
    };
    let modules = Mutex::new(modules);
    // Counters in the shards are cumulative; this stretch reports its own share.
    let events_before: u64 = shards.iter().map(|s| s.synaptic_events()).sum();
    let mut phases_before = PhaseTimes::default();
    shards.iter().for_each(|s| phases_before.add(&s.phase_times()));
    let n_shards = shards.len().max(1);
    let threads = cfg.threads.clamp(1, n_shards);
    let steps_total = epochs * epoch;
    let build_s = 0.0;
    let final_input = Mutex::new(Exchange::default());

    let outboxes: Vec<[Mutex<Exchange>; 2]> =
        (0..n_shards).map(|_| [Mutex::new(Exchange::default()), Mutex::new(Exchange::default())]).collect();
    let barrier = SpinBarrier::new(threads);
    let spikes_so_far = AtomicU64::new(0);
    let done_epochs = AtomicU64::new(epochs);
    let exchange_ns = AtomicU64::new(0);
    let recorded = Mutex::new(Recorded::new(net.populations.len()));

    let sim_start = Instant::now();
    // Hand each thread its shards.
    let mut per_thread: Vec<Vec<(usize, Shard)>> = (0..threads).map(|_| Vec::new()).collect();
    for (s, shard) in shards.drain(..).enumerate() {
        per_thread[s % threads].push((s, shard));
    }
    let per_thread: Vec<Vec<(usize, Shard)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = per_thread
            .into_iter()
            .enumerate()
            .map(|(t, mut mine)| {
                let outboxes = &outboxes;
                let barrier = &barrier;
                let recorded = &recorded;
                let spikes_so_far = &spikes_so_far;
                let done_epochs = &done_epochs;
                let exchange_ns = &exchange_ns;
                let pending = &pending;
                let final_input = &final_input;
                let (remote, shared_input, fabric, fail_with) = (&remote, &shared_input, &fabric, &fail_with);
                let modules = &modules;
                let stop_asked = &stop_asked;
                let (early, exchanges_at, exchange_at_or_after) = (&early, &exchanges_at, &exchange_at_or_after);
                scope.spawn(move || {
                    let mut waited = std::time::Duration::ZERO;
                    let mut incoming = pending.clone();
                    let mut out = Exchange::default();
                    let mut leader_rec = Recorded::new(net.populations.len());
                    leader_rec.hasher = SpikeHasher::from_state(spike_hash_state);
                    // Two-tier: the first thread's local spikes of the window so far, and
                    // the whole window's spikes (everyone's) once exchanged, to record.
                    let mut window = Exchange::default();
                    let mut to_record = Exchange::default();
                    for e in 0..=epochs {
                        let merge_start = Instant::now();
                        if e > 0 {
                            let parity = ((e - 1) % 2) as usize;
                            if remote.is_none() && fabric.is_none() && net.cerebella.is_empty() {
                                merge(outboxes, parity, &mut incoming);
                            } else if tiers > 1 && !exchanges_at(e) {
                                // Inside a window: this process's spikes only.
                                merge(outboxes, parity, &mut incoming);
                                if t == 0 {
                                    window.spikes.extend_from_slice(&incoming.spikes);
                                }
                            } else {
                                // The first thread merges (and exchanges, and routes through the
                                // fabric); the others take the result after a second barrier.
                                let fail = |reason: String| {
                                    let epoch = first_epoch + e - 1;
                                    fail_with(TransportError { epoch, reason }.into(), e, done_epochs);
                                };
                                let mut sent = true;
                                if t == 0 {
                                    merge(outboxes, parity, &mut incoming);
                                    if tiers > 1 {
                                        window.spikes.extend_from_slice(&incoming.spikes);
                                    }
                                    if let Some(link) = &remote {
                                        let stop = stop_asked.load(Ordering::Acquire)
                                            && done_epochs.load(Ordering::Acquire) <= e;
                                        let mut link = link.lock().unwrap_or_else(|x| x.into_inner());
                                        let local = if tiers > 1 { &window } else { &incoming };
                                        if let Err(reason) = link.send(local, stop) {
                                            fail(reason);
                                            sent = false;
                                        }
                                    }
                                }
                                // While the peers' spikes travel: the next epoch's Poisson
                                // input, which does not depend on them.
                                if remote.is_some() && e < epochs {
                                    for (_, shard) in mine.iter_mut() {
                                        shard.predraw_poisson();
                                    }
                                }
                                if t == 0 && sent {
                                    let mut all = shared_input.lock().unwrap_or_else(|x| x.into_inner());
                                    match tiers {
                                        1 => all.clone_from(&incoming),
                                        _ => all.clear(), // the peers' spikes only, first
                                    }
                                    if let Some(link) = &remote {
                                        let mut link = link.lock().unwrap_or_else(|x| x.into_inner());
                                        match link.receive(&mut all) {
                                            Ok(true) => {
                                                stop_asked.store(true, Ordering::Release);
                                                done_epochs.fetch_min(e, Ordering::AcqRel);
                                            }
                                            Ok(false) => {}
                                            Err(reason) => {
                                                fail(reason);
                                                sent = false;
                                            }
                                        }
                                        all.spikes.sort_unstable();
                                        all.values.sort_unstable_by_key(|v| (v.step, v.gid, v.kind));
                                    }
                                    if tiers > 1 {
                                        // The whole window, everyone's, is recorded. The shards
                                        // take the peers' spikes of its earlier epochs now, and
                                        // its last epoch's spikes (everyone's) as an epoch's
                                        // input, as in a run that exchanged every epoch.
                                        // (No state values: `tiers::allowed` rules out what sends them.)
                                        std::mem::swap(&mut to_record, &mut window);
                                        to_record.spikes.extend_from_slice(&all.spikes);
                                        to_record.spikes.sort_unstable();
                                        let last = first_step + (e - 1) * epoch;
                                        let cut = all.spikes.partition_point(|s| s.step < last);
                                        let mut early = early.lock().unwrap_or_else(|x| x.into_inner());
                                        early.clear();
                                        early.extend(all.spikes.drain(..cut));
                                        all.spikes.extend_from_slice(&incoming.spikes);
                                        all.spikes.sort_unstable();
                                    }
                                    let all = &mut *all;
                                    if fabric_in_loop {
                                        all.delays.clear();
                                    }
                                    if let Some(f) = &fabric {
                                        let mut f = f.lock().unwrap_or_else(|x| x.into_inner());
                                        f.route(&all.spikes, &mut all.delays);
                                    }
                                    // Cerebellar modules (those this process runs); their
                                    // currents hold until the next sample.
                                    let boundary = first_step + e * epoch;
                                    let mut outputs = Exchange::default();
                                    let mut ms = modules.lock().unwrap_or_else(|x| x.into_inner());
                                    for (i, m) in ms.iter_mut().enumerate() {
                                        let Some(m) = m else { continue };
                                        let at = first_epoch + e - 1;
                                        let taken = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                            crate::failpoint::hit(crate::failpoint::Site::Module, i as u32, at);
                                            m.epoch(net, &all.spikes, boundary, epoch)
                                        }));
                                        match taken {
                                            Ok(Some((value, sample))) => {
                                                leader_rec.cerebellum.push(sample);
                                                outputs.values.extend(value);
                                            }
                                            Ok(None) => {}
                                            Err(p) => {
                                                // Stop after this epoch, so that the next epoch's
                                                // message tells the peers to stop too.
                                                let message = panic_message(&*p);
                                                fail_with(
                                                    StretchError::Module { module: i as u32, epoch: at, message },
                                                    e + 1,
                                                    done_epochs,
                                                );
                                            }
                                        }
                                    }
                                    drop(ms);
                                    // The second round: what each process's modules and fabric
                                    // made of this epoch's spikes, to everyone.
                                    let due = net.cerebella.iter().any(|c| samples_at(c, boundary, epoch));
                                    if let (Some(link), true) = (&remote, sent && (fabric_in_loop || due)) {
                                        let mut link = link.lock().unwrap_or_else(|x| x.into_inner());
                                        if fabric.is_some() {
                                            outputs.delays.extend_from_slice(&all.delays);
                                        }
                                        let mut got = Exchange::default();
                                        match link.send(&outputs, false).and_then(|_| link.receive(&mut got)) {
                                            Ok(_) => {
                                                outputs.values.append(&mut got.values);
                                                all.delays.append(&mut got.delays);
                                                all.delays.sort_unstable();
                                            }
                                            Err(reason) => fail(reason),
                                        }
                                    }
                                    // Module outputs after the shards' values, by module index
                                    // (gid), as one process holding every module adds them.
                                    outputs.values.sort_by_key(|v| v.gid);
                                    all.values.append(&mut outputs.values);
                                }
                                barrier.wait();
                                incoming.clone_from(&shared_input.lock().unwrap_or_else(|x| x.into_inner()));
                                if tiers > 1 {
                                    let early = early.lock().unwrap_or_else(|x| x.into_inner());
                                    for (_, shard) in mine.iter_mut() {
                                        shard.absorb(&early);
                                    }
                                }
                            }
                            if t == 0 {
                                let seen = if tiers > 1 { &to_record } else { &incoming };
                                for sp in &seen.spikes {
                                    let p = net.population_of(sp.gid);
                                    leader_rec.counts[p] += 1;
                                    if sp.step >= cfg.count_from_step {
                                        leader_rec.counted[p] += 1;
                                    }
                                    leader_rec.hasher.update(sp);
                                    if net.record_spikes[p] {
                                        leader_rec.spikes.push(*sp);
                                    }
                                }
                                let n = seen.spikes.len() as u64;
                                if tiers > 1 {
                                    to_record.clear();
                                }
                                let total = spikes_so_far.fetch_add(n, Ordering::Relaxed) + n;
                                progress(Progress { steps_done: e * epoch, steps_total, spikes: total });
                            }
                        }
                        if e == epochs {
                            break;
                        }
                        // Every thread sees the same flag value at the same epoch because it
                        // is read between two barriers only by the leader and published here.
                        if e > 0 && done_epochs.load(Ordering::Acquire) <= e {
                            break;
                        }
                        waited += merge_start.elapsed();
                        for (s, shard) in mine.iter_mut() {
                            out.clear();
                            // A model's panic stops the run at this epoch with the shard
                            // named, on every process, instead of tearing the process down.
                            let advanced = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                crate::failpoint::hit(crate::failpoint::Site::Shard, shard.index(), first_epoch + e);
                                shard.advance(&incoming, &mut out)
                            }));
                            if let Err(p) = advanced {
                                let (shard, epoch, message) = (shard.index(), first_epoch + e, panic_message(&*p));
                                fail_with(StretchError::Shard { shard, epoch, message }, e + 1, done_epochs);
                                out.clear();
                            }
                            let mut slot = outboxes[*s][(e % 2) as usize].lock().unwrap_or_else(|x| x.into_inner());
                            slot.clear();
                            slot.spikes.extend_from_slice(&out.spikes);
                            slot.values.extend_from_slice(&out.values);
                        }
                        if t == 0 && cancel.load(Ordering::Relaxed) {
                            stop_asked.store(true, Ordering::Release);
                            done_epochs.fetch_min(exchange_at_or_after(e + 1), Ordering::AcqRel);
                        }
                        let wait_start = Instant::now();
                        barrier.wait();
                        waited += wait_start.elapsed();
                    }
                    exchange_ns.fetch_add(waited.as_nanos() as u64, Ordering::Relaxed);
                    if t == 0 {
                        *recorded.lock().unwrap_or_else(|x| x.into_inner()) = leader_rec;
                        *final_input.lock().unwrap_or_else(|x| x.into_inner()) = incoming;
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    });
    let simulate_s = sim_start.elapsed().as_secs_f64();

    let mut stats = RunStats { build_s, simulate_s, ..Default::default() };
    let mut samples = Vec::new();
    let mut weights = Vec::new();
    let mut steps_done = 0;
    let mut shards: Vec<(usize, Shard)> = per_thread.into_iter().flatten().collect();
    shards.sort_by_key(|(s, _)| *s);
    for (_, shard) in shards.iter_mut() {
        stats.synapses += shard.n_synapses();
        stats.synapse_bytes += shard.synapse_bytes();
        stats.synaptic_events += shard.synaptic_events();
        stats.phases.add(&shard.phase_times());
        steps_done = shard.step();
        samples.extend(shard.take_samples());
        if net.record_weights {
            weights.extend(shard.plastic_weights());
        }
    }
    stats.steps = steps_done;
    stats.exchange_ns = exchange_ns.load(Ordering::Relaxed);
    stats.synaptic_events -= events_before;
    stats.phases.deliver_ns -= phases_before.deliver_ns;
    stats.phases.poisson_ns -= phases_before.poisson_ns;
    stats.phases.update_ns -= phases_before.update_ns;
    stats.phases.other_ns -= phases_before.other_ns;
    // Stable: keeps each shard's generation order for equal keys (multapses).
    weights.sort_by_key(|w| (w.projection, w.source, w.target, w.delay_steps));
    samples.sort_by_key(|a| (a.step, a.sampler, a.gid, a.var));
    let rec = recorded.into_inner().unwrap_or_else(|e| e.into_inner());
    let out = RunOutput {
        spikes: rec.spikes,
        spike_counts: rec.counts,
        counted_spikes: rec.counted,
        spike_hash: rec.hasher.finish(),
        samples,
        weights,
        cerebellum: rec.cerebellum,
        hardware: None,
        stopped: stop_asked.load(Ordering::Acquire),
        stats,
    };
    let checkpoint = Checkpoint {
        network_hash,
        shards: shards.into_iter().map(|(_, s)| s).collect(),
        pending: final_input.into_inner().unwrap_or_else(|e| e.into_inner()),
        spike_hash_state: out.spike_hash,
        modules: modules.into_inner().unwrap_or_else(|e| e.into_inner()),
        fabric_state,
    };
    match failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(e) => Err(e),
        None => Ok((out, checkpoint)),
    }
}

/// What the leader thread accumulates from the merged spike lists.
struct Recorded {
    spikes: Vec<Spike>,
    counts: Vec<u64>,
    counted: Vec<u64>,
    hasher: SpikeHasher,
    cerebellum: Vec<ModuleSample>,
}

impl Recorded {
    fn new(n_pops: usize) -> Self {
        Recorded {
            spikes: Vec::new(),
            counts: vec![0; n_pops],
            counted: vec![0; n_pops],
            hasher: SpikeHasher::new(),
            cerebellum: Vec::new(),
        }
    }
}

/// FNV-1a over the spikes in canonical (step, gid) order, each fed as gid (u32 LE)
/// then step (u64 LE): two runs with the same digest produced the same spikes.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy)]
pub struct SpikeHasher(u64);

impl Default for SpikeHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl SpikeHasher {
    /// Empty digest.
    pub fn new() -> Self {
        SpikeHasher(0xcbf2_9ce4_8422_2325)
    }

    /// Continue from a digest state (see [`Checkpoint::spike_hash_state`]).
    pub fn from_state(state: u64) -> Self {
        SpikeHasher(state)
    }

    /// Feed one spike.
    #[inline]
    pub fn update(&mut self, sp: &Spike) {
        for b in sp.gid.to_le_bytes().iter().chain(sp.step.to_le_bytes().iter()) {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// The digest.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

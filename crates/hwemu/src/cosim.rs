//! Hardware–software co-simulation: the fabric in the simulation's loop.
//!
//! Every epoch the kernel hands over all spikes (canonical order); each becomes a
//! multicast packet injected at its time (real-time chips: 1 ms of biology per ms
//! of wall clock) into a fabric whose links stay busy across epochs. For every
//! (spike, receiving core) the arrival decides when the spike takes effect:
//! - time-step chips: at the first step boundary after the one it was generated
//!   in, if it arrived by that boundary minus the barrier, else one step later
//!   per step missed — the chip's time step quantises spike timing;
//! - asynchronous chips: when it arrives.
//!
//! The extra time over the software's (in whole simulation steps, rounded) and the
//! drops go back to the kernel as `SpikeDelay`s; the kernel applies them on top of
//! the synaptic delays. Deterministic: the same spikes give the same delays.

use crate::fabric::{CoreRouters, Interconnect, Packet};
use crate::mapping::{Connectome, Mapping};
use crate::preset::{Preset, PresetError, Timing};
use neuropil_sim::embedded::SpikeFabric;
use neuropil_sim::network::SpikeDelay;
use neuropil_sim::Spike;

/// What the fabric did over a run.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct CoSimStats {
    /// Spikes routed.
    pub spikes: u64,
    /// (spike, core) pairs that should arrive.
    pub receptions: u64,
    /// Pairs dropped.
    pub dropped: u64,
    /// Pairs that took effect later than in software.
    pub delayed: u64,
    /// Sum of the extra steps over delayed pairs.
    pub extra_steps: u64,
    /// Largest extra delay, steps.
    pub max_extra_steps: u32,
}

/// The fabric as the kernel's [`SpikeFabric`].
pub struct CoSim {
    fabric: Interconnect,
    timing: Timing,
    step_ns: f64,
    barrier_ns: f64,
    dt_ns: f64,
    router_of_core: Vec<u32>,
    src_router: Vec<u32>,
    src_core: Vec<u32>,
    /// Hierarchical chips: their core-level routers (`None` on flat fabrics).
    core_routers: Option<CoreRouters>,
    /// Destination cores of each neuron, sorted.
    dest: Vec<Vec<u32>>,
    /// Counts.
    pub stats: CoSimStats,
}

impl CoSim {
    /// The fabric of `preset` under `mapping` of `net`, for a simulation step of `dt_ms`.
    pub fn new(net: &Connectome, preset: &Preset, mapping: &Mapping, dt_ms: f64) -> Result<CoSim, PresetError> {
        let dest =
            mapping.destination_cores(net).into_iter().map(|d| d.into_iter().map(|(c, _)| c).collect()).collect();
        let fabric = preset.interconnect()?;
        let packet_ns = fabric.packet_time_ns();
        Ok(CoSim {
            fabric,
            timing: preset.timing(),
            step_ns: preset.value("time_step_us") * 1e3,
            barrier_ns: preset.value("barrier_ns"),
            dt_ns: dt_ms * 1e6,
            router_of_core: mapping.router_of_core.clone(),
            src_router: (0..net.neurons()).map(|n| mapping.router_of(n)).collect(),
            src_core: mapping.core_of.clone(),
            core_routers: (preset.file.topology.kind == crate::topology::Kind::Hierarchical).then(|| {
                let topo = preset.topology();
                CoreRouters::new(topo.chips() as usize, preset.intra_chip_latency_ns(), packet_ns)
            }),
            dest,
            stats: CoSimStats::default(),
        })
    }

    /// The fabric's dynamic state (link occupancy and counts), for a checkpoint:
    /// everything else follows from preset, mapping and network.
    pub fn save_state(&self) -> Vec<u8> {
        postcard::to_allocvec(&(self.fabric.save(), self.stats, &self.core_routers)).unwrap_or_default()
    }

    /// Continue from [`CoSim::save_state`] of the same preset, mapping and network.
    pub fn restore_state(&mut self, bytes: &[u8]) -> Result<(), String> {
        let (links, stats, core_routers): (Vec<u8>, CoSimStats, Option<CoreRouters>) =
            postcard::from_bytes(bytes).map_err(|e| format!("fabric state: {e}"))?;
        if core_routers.is_some() != self.core_routers.is_some() {
            return Err("fabric state: saved for a different kind of fabric".into());
        }
        self.fabric.restore(&links)?;
        self.stats = stats;
        self.core_routers = core_routers;
        Ok(())
    }

    /// When a spike generated at `t_gen` and arriving at `t_arr` takes effect, ns.
    fn effective(&self, t_gen: f64, t_arr: f64) -> f64 {
        match self.timing {
            Timing::TimeStep if self.step_ns > 0.0 => {
                let next = ((t_gen / self.step_ns).floor() + 1.0) * self.step_ns;
                if t_arr <= next - self.barrier_ns {
                    next
                } else {
                    ((t_arr + self.barrier_ns) / self.step_ns).ceil() * self.step_ns
                }
            }
            _ => t_arr,
        }
    }
}

impl SpikeFabric for CoSim {
    fn route(&mut self, spikes: &[Spike], out: &mut Vec<SpikeDelay>) {
        let packets: Vec<Packet> = spikes
            .iter()
            .map(|s| {
                let mut routers: Vec<u32> =
                    self.dest[s.gid as usize].iter().map(|&c| self.router_of_core[c as usize]).collect();
                routers.sort_unstable();
                routers.dedup();
                Packet { src: self.src_router[s.gid as usize], dests: routers, t_ns: (s.step + 1) as f64 * self.dt_ns }
            })
            .collect();
        let o = self.fabric.send(&packets);
        self.stats.spikes += spikes.len() as u64;
        let start = out.len();
        let cores_on = |dest: &[u32], router: u32, roc: &[u32]| -> Vec<u32> {
            dest.iter().copied().filter(|&c| roc[c as usize] == router).collect()
        };
        // (arrival at the chip, packet, core), in time order: hierarchical chips pass
        // deliveries to other cores through their core-level router in that order.
        let mut arrivals: Vec<(f64, usize, u32)> = Vec::new();
        for (i, d) in o.deliveries.iter().enumerate() {
            let s = spikes[d.packet];
            for core in cores_on(&self.dest[s.gid as usize], d.dst, &self.router_of_core) {
                arrivals.push((d.t_ns, i, core));
            }
        }
        if self.core_routers.is_some() {
            arrivals.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        }
        for (t_chip, i, core) in arrivals {
            let d = &o.deliveries[i];
            let s = spikes[d.packet];
            let t_gen = packets[d.packet].t_ns;
            let src_core = self.src_core[s.gid as usize];
            {
                let t_arr = match &mut self.core_routers {
                    Some(r) if core != src_core => r.pass(d.dst as usize, t_chip),
                    _ => t_chip,
                };
                let extra_ns = self.effective(t_gen, t_arr) - t_gen;
                let extra = (extra_ns / self.dt_ns).round().max(0.0) as u32;
                self.stats.receptions += 1;
                if extra > 0 {
                    self.stats.delayed += 1;
                    self.stats.extra_steps += extra as u64;
                    self.stats.max_extra_steps = self.stats.max_extra_steps.max(extra);
                    out.push(SpikeDelay { step: s.step, gid: s.gid, core, extra_steps: extra });
                }
            }
        }
        for &(p, router) in &o.dropped {
            let s = spikes[p];
            for core in cores_on(&self.dest[s.gid as usize], router, &self.router_of_core) {
                self.stats.receptions += 1;
                self.stats.dropped += 1;
                out.push(SpikeDelay { step: s.step, gid: s.gid, core, extra_steps: SpikeDelay::DROPPED });
            }
        }
        out[start..].sort_unstable();
    }
}

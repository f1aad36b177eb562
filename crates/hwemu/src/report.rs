//! What a network's spikes would meet on a chip fabric: latency distribution, ISI
//! distortion, spike disorder, loss, late spikes, link utilisation and an energy
//! breakdown (definitions in `../shared/reference/neuromorphic_chips.md`,
//! "Metrics"; all per receiving core).
//!
//! Chips run in real time: a spike generated at biological time t ms is injected
//! into the fabric at t ms of wall-clock time, as a multicast packet from its
//! core's router to the routers of every core holding one of its targets.

use crate::fabric::{CoreRouters, Packet};
use crate::mapping::{Connectome, Mapping};
use crate::preset::{Preset, PresetError, Timing, Use};
use serde::Serialize;

/// Summary statistics of a distribution.
#[derive(Debug, Clone, Copy, Serialize, Default, PartialEq)]
pub struct Stats {
    /// Smallest.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Stats {
    fn of(mut v: Vec<f64>) -> Stats {
        if v.is_empty() {
            return Stats::default();
        }
        v.sort_by(f64::total_cmp);
        let q = |f: f64| v[((v.len() - 1) as f64 * f).round() as usize];
        Stats {
            min: v[0],
            mean: v.iter().sum::<f64>() / v.len() as f64,
            p50: q(0.5),
            p99: q(0.99),
            max: v[v.len() - 1],
        }
    }
}

/// Energy by cause, joules.
#[derive(Debug, Clone, Copy, Serialize, Default, PartialEq)]
pub struct Energy {
    /// Synaptic events delivered × energy per event.
    pub synaptic_j: f64,
    /// Link crossings × energy per hop.
    pub hops_j: f64,
    /// Neuron updates × energy per update (time-step chips).
    pub updates_j: f64,
    /// Static power × duration.
    pub static_j: f64,
    /// Sum.
    pub total_j: f64,
}

/// The report of one network on one preset with one mapping.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Preset name.
    pub preset: String,
    /// Mapping strategy.
    pub mapping: &'static str,
    /// Interconnect model: fast or wormhole.
    pub router: &'static str,
    /// Cores used / in the fabric.
    pub cores_used: u32,
    /// Cores in the fabric.
    pub cores_available: u64,
    /// Limits the mapping breaks (the network was mapped anyway).
    pub violations: Vec<String>,
    /// Spikes generated.
    pub spikes: u64,
    /// (spike, receiving core) pairs: what should arrive.
    pub expected_receptions: u64,
    /// What arrived.
    pub receptions: u64,
    /// Fraction lost (dropped in full buffers).
    pub loss: f64,
    /// Fabric latency per reception, ns.
    pub latency_ns: Stats,
    /// Latency histogram: (upper edge ns, count), doubling bins from 1 ns.
    pub latency_histogram: Vec<(f64, u64)>,
    /// Link crossings per spike (multicast trees).
    pub hops_per_spike: f64,
    /// ISI distortion per receiving core, ns: max |Δ| and mean Δ.
    pub isi_distortion_max_abs_ns: f64,
    /// Mean Δ (ns).
    pub isi_distortion_mean_ns: f64,
    /// Received spikes generated earlier than the spike received just before them.
    pub disorder: u64,
    /// Time-step chips: receptions after their step's deadline (end of the step
    /// minus the barrier), which would take effect a step late.
    pub late: u64,
    /// Packets sent around a blocked link.
    pub emergency_reroutes: u64,
    /// Link utilisation (busy / duration): mean over links that carried traffic, max.
    pub link_utilisation_mean: f64,
    /// Busiest link.
    pub link_utilisation_max: f64,
    /// Energy.
    pub energy: Energy,
    /// Simulated duration, ms.
    pub duration_ms: f64,
}

/// Per router: the utilisation of its busiest outgoing link (for a heatmap).
pub type RouterLoad = Vec<f64>;

/// Send `spikes` ((neuron, time ms), in time order) of `net` over `preset` with
/// `mapping`, and measure.
pub fn evaluate(
    net: &Connectome,
    preset: &Preset,
    mapping: &Mapping,
    spikes: &[(u32, f64)],
    duration_ms: f64,
) -> Result<(Report, RouterLoad), PresetError> {
    preset.require(Use::Energy)?;
    let topo = preset.topology();
    let mut fabric = preset.interconnect()?;
    let packet_ns = fabric.packet_time_ns();
    let n = net.neurons() as usize;
    let dest = mapping.destination_cores(net);
    let packets: Vec<Packet> = spikes
        .iter()
        .map(|&(s, t_ms)| {
            let mut routers: Vec<u32> =
                dest[s as usize].iter().map(|&(c, _)| mapping.router_of_core[c as usize]).collect();
            routers.sort_unstable();
            routers.dedup();
            Packet { src: mapping.router_of(s), dests: routers, t_ns: t_ms * 1e6 }
        })
        .collect();
    let out = fabric.send(&packets);

    let cores = mapping.cores_used as usize;
    let mut received: Vec<Vec<(f64, f64)>> = vec![Vec::new(); cores]; // (t_recv, t_gen) per core
    let mut latencies = Vec::with_capacity(out.deliveries.len());
    let mut synaptic_events = 0u64;
    let (step_ns, barrier_ns) = (preset.value("time_step_us") * 1e3, preset.value("barrier_ns"));
    let mut late = 0u64;
    // Hierarchical chips: deliveries to another core pass the chip's core-level
    // router, in time order (they queue there).
    let mut core_routers = (preset.file.topology.kind == crate::topology::Kind::Hierarchical)
        .then(|| CoreRouters::new(topo.chips() as usize, preset.intra_chip_latency_ns(), packet_ns));
    let mut arrivals: Vec<(f64, usize, u32, u32)> = Vec::new();
    for (i, d) in out.deliveries.iter().enumerate() {
        let s = spikes[d.packet].0;
        for &(c, k) in dest[s as usize].iter().filter(|(c, _)| mapping.router_of_core[*c as usize] == d.dst) {
            arrivals.push((d.t_ns, i, c, k));
        }
    }
    arrivals.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    for (t_chip, i, c, k) in arrivals {
        let d = &out.deliveries[i];
        let (s, t_gen) = (spikes[d.packet].0, packets[d.packet].t_ns);
        let src_core = mapping.core_of[s as usize];
        {
            let t_recv = match &mut core_routers {
                Some(r) if c != src_core => r.pass(d.dst as usize, t_chip),
                _ => t_chip,
            };
            received[c as usize].push((t_recv, t_gen));
            latencies.push(t_recv - t_gen);
            synaptic_events += k as u64;
            if preset.timing() == Timing::TimeStep && step_ns > 0.0 {
                let deadline = ((t_gen / step_ns).floor() + 1.0) * step_ns - barrier_ns;
                if t_recv > deadline {
                    late += 1;
                }
            }
        }
    }
    let expected: u64 = spikes.iter().map(|&(s, _)| dest[s as usize].len() as u64).sum();
    let receptions = latencies.len() as u64;
    let (mut max_abs, mut sum_delta, mut n_delta, mut disorder) = (0.0f64, 0.0, 0u64, 0u64);
    for r in &mut received {
        r.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        for w in r.windows(2) {
            let delta = (w[1].0 - w[0].0) - (w[1].1 - w[0].1);
            max_abs = max_abs.max(delta.abs());
            sum_delta += delta;
            n_delta += 1;
            if w[1].1 < w[0].1 {
                disorder += 1;
            }
        }
    }
    let mut histogram: Vec<(f64, u64)> = Vec::new();
    for &l in &latencies {
        let mut edge = 1.0;
        while edge < l {
            edge *= 2.0;
        }
        match histogram.iter_mut().find(|(e, _)| *e == edge) {
            Some((_, c)) => *c += 1,
            None => histogram.push((edge, 1)),
        }
    }
    histogram.sort_by(|a, b| a.0.total_cmp(&b.0));
    let duration_ns = duration_ms * 1e6;
    let used: Vec<f64> = out.link_busy_ns.iter().filter(|&&b| b > 0.0).map(|b| b / duration_ns).collect();
    let mut load = vec![0.0f64; topo.chips() as usize];
    for (link, busy) in out.link_busy_ns.iter().enumerate() {
        let r = link / 6;
        load[r] = load[r].max(busy / duration_ns);
    }
    let pj = 1e-12;
    let updates = if preset.timing() == Timing::TimeStep && step_ns > 0.0 {
        n as f64 * (duration_ns / step_ns).ceil()
    } else {
        0.0
    };
    let mut energy = Energy {
        synaptic_j: synaptic_events as f64 * preset.value("energy_synop_pj") * pj,
        hops_j: hop_energy_pj(preset, &out.link_packets) * pj,
        updates_j: updates * preset.value("energy_update_pj") * pj,
        static_j: preset.value("static_power_w") * duration_ms * 1e-3,
        total_j: 0.0,
    };
    energy.total_j = energy.synaptic_j + energy.hops_j + energy.updates_j + energy.static_j;
    let report = Report {
        preset: preset.file.name.clone(),
        mapping: mapping.strategy.name(),
        router: fabric.name(),
        cores_used: mapping.cores_used,
        cores_available: preset.cores(),
        violations: mapping.violations.iter().map(|v| v.to_string()).collect(),
        spikes: spikes.len() as u64,
        expected_receptions: expected,
        receptions,
        loss: if expected > 0 { 1.0 - receptions as f64 / expected as f64 } else { 0.0 },
        latency_ns: Stats::of(latencies),
        latency_histogram: histogram,
        hops_per_spike: if spikes.is_empty() { 0.0 } else { out.traversals as f64 / spikes.len() as f64 },
        isi_distortion_max_abs_ns: max_abs,
        isi_distortion_mean_ns: if n_delta > 0 { sum_delta / n_delta as f64 } else { 0.0 },
        disorder,
        late,
        emergency_reroutes: out.emergency_reroutes,
        link_utilisation_mean: if used.is_empty() { 0.0 } else { used.iter().sum::<f64>() / used.len() as f64 },
        link_utilisation_max: used.iter().copied().fold(0.0, f64::max),
        energy,
        duration_ms,
    };
    Ok((report, load))
}

/// Energy of the link crossings, pJ: packets per link × the hop energy of its
/// direction (north–south from `energy_hop_y_pj` where the preset has it).
fn hop_energy_pj(preset: &Preset, link_packets: &[u64]) -> f64 {
    let x = preset.value("energy_hop_pj");
    let y = preset.file.params.get("energy_hop_y_pj").map_or(x, |p| p.value);
    link_packets
        .iter()
        .enumerate()
        .map(|(link, &n)| n as f64 * if crate::topology::Dir::ALL[link % 6].is_vertical() { y } else { x })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::{map, Strategy};

    /// DYNAP-SE's core-level router is shared: one spike for two other cores of its
    /// chip reaches the first after serialisation + router latency and the second
    /// one serialisation later (it waited); a spike a millisecond later finds the
    /// router idle again.
    #[test]
    fn deliveries_queue_at_a_hierarchical_chips_core_router() {
        let net = Connectome::from_edges(vec![("A".into(), 0, 3)], 3, &[(0, 1), (0, 2)]);
        let dynapse = Preset::builtin("dynapse").unwrap();
        let m = map(&net, &dynapse, Strategy::RoundRobin, Some(1), false, None).unwrap();
        assert!(m.core_of[0] != m.core_of[1] && m.core_of[1] != m.core_of[2]);
        assert!(m.router_of(0) == m.router_of(1) && m.router_of(1) == m.router_of(2));
        let ser = dynapse.value("packet_bits") / dynapse.value("link_bandwidth_gbps");
        let zero_load = ser + dynapse.value("intra_chip_latency_ns");
        let (r, _) = evaluate(&net, &dynapse, &m, &[(0, 1.0)], 10.0).unwrap();
        assert_eq!(r.receptions, 2);
        assert!((r.latency_ns.min - zero_load).abs() < 1e-3, "{:?}", r.latency_ns);
        assert!((r.latency_ns.max - (zero_load + ser)).abs() < 1e-3, "{:?}", r.latency_ns);
        let (r, _) = evaluate(&net, &dynapse, &m, &[(0, 1.0), (0, 2.0)], 10.0).unwrap();
        assert!((r.latency_ns.max - (zero_load + ser)).abs() < 1e-3, "{:?}", r.latency_ns);
        let mut routers = CoreRouters::new(2, 10.0, 4.0);
        assert_eq!(routers.pass(0, 100.0), 110.0);
        assert_eq!(routers.pass(1, 100.0), 110.0, "another chip's router is free");
        assert_eq!(routers.pass(0, 101.0), 114.0, "queued behind the first");
        assert_eq!(routers.pass(0, 200.0), 210.0);
    }

    #[test]
    fn a_quiet_fabric_delivers_everything_in_order_at_zero_load_latency() {
        // Two neurons on different cores, each spike far apart in time.
        let net = Connectome::from_edges(vec![("A".into(), 0, 2)], 2, &[(0, 1), (1, 0)]);
        let preset = Preset::builtin("loihi").unwrap();
        let m = map(&net, &preset, Strategy::RoundRobin, Some(1), true, None).unwrap();
        let spikes: Vec<(u32, f64)> = (0..10).map(|k| ((k % 2) as u32, k as f64)).collect();
        let (r, load) = evaluate(&net, &preset, &m, &spikes, 10.0).unwrap();
        assert_eq!((r.expected_receptions, r.receptions, r.disorder, r.late), (10, 10, 0, 0));
        assert_eq!(r.loss, 0.0);
        // Both cores sit behind router 0 (4 cores per tile): zero hops. Loihi's
        // routers: injection, the router's stages and ejection (7 cycles), after
        // waiting for the next cycle (the model's quantum) to begin.
        assert_eq!(r.router, "wormhole");
        let rm = preset.router_model().unwrap();
        let zero = rm.zero_load_cycles(&[]) as f64 * rm.cycle_ns;
        assert_eq!(rm.zero_load_cycles(&[]), 7);
        let l = r.latency_ns;
        assert!(l.min >= zero - 1e-9 && l.max < zero + rm.cycle_ns, "{l:?} vs {zero} + up to {}", rm.cycle_ns);
        assert!(r.isi_distortion_max_abs_ns < rm.cycle_ns);
        assert_eq!(load.len(), 32);
        let e = r.energy;
        assert!((e.synaptic_j - 10.0 * 35.5e-12).abs() < 1e-18);
        // The fast model: serialisation only, kept to the picosecond.
        let fast = preset.with_router(crate::preset::RouterKind::Fast).unwrap();
        let (r, _) = evaluate(&net, &fast, &m, &spikes, 10.0).unwrap();
        let ser = preset.value("packet_bits") / preset.value("link_bandwidth_gbps");
        assert!((r.latency_ns.max - ser).abs() < 1e-3 && (r.latency_ns.min - ser).abs() < 1e-3, "{:?}", r.latency_ns);
        assert!(r.isi_distortion_max_abs_ns < 2e-3);
        // DYNAP-SE is hierarchical: a spike for another core of the same chip
        // crosses the core-level router as well.
        let dynapse = Preset::builtin("dynapse").unwrap();
        let m = map(&net, &dynapse, Strategy::RoundRobin, Some(1), false, None).unwrap();
        assert_ne!(m.core_of[0], m.core_of[1]);
        assert_eq!(m.router_of(0), m.router_of(1));
        let (r, _) = evaluate(&net, &dynapse, &m, &spikes, 10.0).unwrap();
        let ser = dynapse.value("packet_bits") / dynapse.value("link_bandwidth_gbps");
        let expected = ser + dynapse.value("intra_chip_latency_ns");
        assert!(
            (r.latency_ns.min - expected).abs() < 1e-3 && (r.latency_ns.max - expected).abs() < 1e-3,
            "{:?}",
            r.latency_ns
        );
        assert!((e.total_j - (e.synaptic_j + e.hops_j + e.updates_j + e.static_j)).abs() < 1e-18);
    }
}

//! Chip presets as data: every parameter carries its value, a confidence mark and
//! its source, so that a user knows what is measured and what is assumed.
//!
//! Marks (from `../shared/reference/neuromorphic_chips.md`): **P** primary source
//! (paper, datasheet, vendor code); **T** a primary paper's table quoted by a third
//! party; **S** a simulator's default (a modelling choice, not silicon); **U**
//! unverified (an assumption of ours where nothing is published).

use crate::fabric::{Fabric, Interconnect, LinkModel};
use crate::router::{RouterModel, RouterNet};
use crate::topology::{Kind, Topology};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Why a preset was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PresetError {
    /// The file could not be read.
    #[error("{path}: {message}")]
    Io {
        /// File.
        path: String,
        /// What happened.
        message: String,
    },
    /// Not valid TOML, or a field of the wrong type or name.
    #[error("{0}")]
    Syntax(String),
    /// A field with an invalid value.
    #[error("{field}: {message}")]
    Invalid {
        /// Field path, e.g. `params.hop_latency_ns.conf`.
        field: String,
        /// What is wrong and what would be right.
        message: String,
    },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> PresetError {
    PresetError::Invalid { field: field.into(), message: message.into() }
}

/// A router model's refusal (`vcs: 1 on a torus; ...`) with the parameter's path.
fn router_error(message: String) -> PresetError {
    match message.split_once(": ") {
        Some((name, rest)) if PARAMS.iter().any(|p| p.0 == name) => invalid(format!("params.{name}.value"), rest),
        _ => invalid("router", message),
    }
}

/// A confidence mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum Conf {
    /// Primary source.
    P,
    /// A primary table quoted by a third party.
    T,
    /// A simulator's default.
    S,
    /// Unverified.
    U,
}

/// One parameter: value, confidence, source.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Param {
    /// The value, in the unit the parameter's name gives.
    #[serde(default = "no_value")]
    pub value: f64,
    /// A time in ns given in router cycles instead (a clocked chip: `value` =
    /// `cycles` × `cycle_ns`, filled in when the preset is read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycles: Option<f64>,
    /// How sure we are.
    pub conf: Conf,
    /// Where it comes from.
    pub source: String,
}

fn no_value() -> f64 {
    f64::NAN
}

/// How time advances on the chip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Timing {
    /// Spikes take effect in the time step after the one they are generated in,
    /// once every core has passed a barrier (Loihi, TrueNorth, SpiNNaker's ticks).
    TimeStep,
    /// No time step: a spike takes effect when it arrives (DYNAP-SE).
    Asynchronous,
}

/// Which interconnect model a preset's fabric runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouterKind {
    /// [`crate::fabric`]: virtual cut-through, a per-hop latency, packet buffers
    /// per link, drops and emergency routing; multicast replicated in the routers.
    /// Right for packet-switched fabrics with one-packet spikes (SpiNNaker) and
    /// for light loads, where only hop counts and serialisation matter.
    #[default]
    Fast,
    /// [`crate::router`]: input-queued virtual-channel routers, wormhole switching,
    /// credit-based backpressure, cycle by cycle. Right near saturation, with
    /// multi-flit packets, and wherever congestion must spread upstream.
    Wormhole,
}

impl RouterKind {
    /// Parse `fast` or `wormhole`.
    pub fn from_name(name: &str) -> Option<RouterKind> {
        match name {
            "fast" => Some(RouterKind::Fast),
            "wormhole" => Some(RouterKind::Wormhole),
            _ => None,
        }
    }
}

/// What a parameter is for, and so which presets must state it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// Every fabric.
    Fabric,
    /// The fast model (`router = "fast"`).
    Fast,
    /// The wormhole router model (`router = "wormhole"`).
    Wormhole,
    /// Mapping a network onto cores (reports, co-simulation).
    Mapping,
    /// Energy in reports.
    Energy,
    /// Where it applies (a default or a condition, see its description).
    Optional,
}

/// The fabric's shape, as written in a preset.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TopologySpec {
    /// `mesh`, `torus`, `triangular_torus` or `hierarchical`.
    pub kind: Kind,
    /// Routers along x.
    pub width: u32,
    /// Routers along y.
    pub height: u32,
    /// Neuron cores behind each router (needed to map a network; a preset for
    /// traffic sweeps may leave it out).
    #[serde(default)]
    pub cores_per_router: Option<u32>,
    /// Where the shape comes from.
    pub source: String,
    /// Its confidence mark.
    pub conf: Conf,
}

/// A preset file.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PresetFile {
    /// Short name (`loihi`).
    pub name: String,
    /// One line on what it models.
    pub description: String,
    /// Fabric shape.
    pub topology: TopologySpec,
    /// Time step or asynchronous (needed to map a network).
    #[serde(default)]
    pub timing: Option<Timing>,
    /// The interconnect model: `fast` (default) or `wormhole`.
    #[serde(default)]
    pub router: RouterKind,
    /// Reroute blocked packets around the triangle (SpiNNaker).
    #[serde(default)]
    pub emergency_routing: bool,
    /// Numeric parameters by name (see [`PARAMS`]).
    pub params: BTreeMap<String, Param>,
}

/// Every parameter a preset may have: (name, unit, use, what). Parameters in
/// cycles, flits or VCs are whole numbers.
pub const PARAMS: &[(&str, &str, Use, &str)] = &[
    ("packet_bits", "bit", Use::Fabric, "bits per spike packet (header included)"),
    ("hop_latency_ns", "ns", Use::Fast, "head latency per router hop (pipeline and wire), east-west"),
    ("hop_latency_y_ns", "ns", Use::Optional, "the same north-south (default: hop_latency_ns)"),
    ("link_bandwidth_gbps", "bit/ns", Use::Fast, "bandwidth of one link"),
    ("buffer_packets", "packets", Use::Fast, "packets that may wait for one output link"),
    (
        "cycle_ns",
        "ns",
        Use::Wormhole,
        "one router cycle: the clock period of a clocked router; on an asynchronous fabric one flit time on a link",
    ),
    ("flit_bits", "bit", Use::Wormhole, "bits per flit (one flit per link per cycle)"),
    ("router_stages", "cycles", Use::Wormhole, "router pipeline: from a flit's arrival to its earliest departure"),
    ("link_cycles_x", "cycles", Use::Wormhole, "an east-west link"),
    ("link_cycles_y", "cycles", Use::Wormhole, "a north-south link"),
    ("injection_cycles", "cycles", Use::Wormhole, "the injection channel, source node to router"),
    ("ejection_cycles", "cycles", Use::Wormhole, "the router's local output to the destination node"),
    ("credit_cycles", "cycles", Use::Wormhole, "a credit's way back upstream"),
    ("vcs", "VCs", Use::Wormhole, "virtual channels per input port (a torus needs 2 or more)"),
    ("vc_buffer_flits", "flits", Use::Wormhole, "flit buffer per virtual channel"),
    (
        "wait_for_tail_credit",
        "flag",
        Use::Optional,
        "1: a VC is reallocated only when its last credit is back (BookSim's option); default 0",
    ),
    (
        "intra_chip_latency_ns",
        "ns",
        Use::Optional,
        "hierarchical chips: the core-level router between two cores of a chip",
    ),
    ("neurons_per_core", "neurons", Use::Mapping, "neurons (compartments) one core updates"),
    ("fanin_per_core", "synapse rows", Use::Mapping, "distinct presynaptic sources a core accepts"),
    (
        "fanin_per_neuron",
        "sources",
        Use::Optional,
        "distinct presynaptic neurons of one neuron (CAM- or crossbar-limited chips)",
    ),
    ("fanout_per_neuron", "destinations", Use::Mapping, "destination cores one neuron's spikes may reach"),
    ("routing_entries", "entries", Use::Mapping, "routing-table entries per router"),
    ("energy_synop_pj", "pJ", Use::Energy, "energy per synaptic event"),
    ("energy_hop_pj", "pJ", Use::Energy, "energy per packet per link crossed, east-west"),
    ("energy_hop_y_pj", "pJ", Use::Optional, "the same north-south (default: energy_hop_pj)"),
    ("energy_update_pj", "pJ", Use::Energy, "energy per neuron update"),
    ("static_power_w", "W", Use::Energy, "static power of the whole fabric modelled"),
    ("time_step_us", "µs", Use::Optional, "length of a time step (time_step chips)"),
    ("barrier_ns", "ns", Use::Optional, "cost of the end-of-step barrier (time_step chips)"),
];

/// A validated preset.
#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    /// As read.
    pub file: PresetFile,
}

impl Preset {
    /// Parse and validate preset TOML; `origin` names it in errors.
    pub fn parse(text: &str) -> Result<Preset, PresetError> {
        let file: PresetFile = toml::from_str(text).map_err(|e| PresetError::Syntax(e.to_string()))?;
        for (name, p) in &file.params {
            if p.cycles.is_some() && !p.value.is_nan() {
                return Err(invalid(format!("params.{name}"), "give value or cycles, not both"));
            }
        }
        Preset::validate(file)
    }

    /// The same preset with parameters overridden (`--param NAME=VALUE`; marked U,
    /// their source the override), validated again.
    pub fn with_params(&self, overrides: &[(String, f64)]) -> Result<Preset, PresetError> {
        let mut file = self.file.clone();
        for (name, value) in overrides {
            file.params.insert(
                name.clone(),
                Param {
                    value: *value,
                    cycles: None,
                    conf: Conf::U,
                    source: format!("--param {name}={value} (overrides the preset)"),
                },
            );
        }
        Preset::validate(file)
    }

    fn validate(mut file: PresetFile) -> Result<Preset, PresetError> {
        let known: Vec<&str> = PARAMS.iter().map(|p| p.0).collect();
        // Times given in cycles of a clocked chip.
        let cycle_ns = file.params.get("cycle_ns").map(|p| p.value);
        for (name, p) in file.params.iter_mut() {
            match (p.cycles, p.value.is_nan()) {
                (None, true) => {
                    return Err(invalid(
                        format!("params.{name}.value"),
                        "missing (or cycles = N for a time in ns on a clocked chip)",
                    ));
                }
                (Some(c), _) => {
                    // Cycles are what was given: the value follows the clock (again
                    // after an override of cycle_ns).
                    let unit = PARAMS.iter().find(|q| q.0 == name).map_or("", |q| q.1);
                    if unit != "ns" || name == "cycle_ns" {
                        return Err(invalid(format!("params.{name}.cycles"), "cycles stand only for times in ns"));
                    }
                    let Some(cycle) = cycle_ns.filter(|c| c.is_finite() && *c > 0.0) else {
                        return Err(invalid(
                            "params.cycle_ns",
                            format!("missing: params.{name} is given in cycles; state the clock period"),
                        ));
                    };
                    if !c.is_finite() || c < 0.0 {
                        return Err(invalid(format!("params.{name}.cycles"), format!("{c} is not a count >= 0")));
                    }
                    p.value = c * cycle;
                }
                (None, false) => {}
            }
        }
        for (name, p) in &file.params {
            if !known.contains(&name.as_str()) {
                return Err(invalid(
                    format!("params.{name}"),
                    format!("unknown parameter; known: {}", known.join(", ")),
                ));
            }
            if !p.value.is_finite() || p.value < 0.0 {
                return Err(invalid(format!("params.{name}.value"), format!("{} is not a finite value >= 0", p.value)));
            }
            if p.source.trim().is_empty() {
                return Err(invalid(format!("params.{name}.source"), "empty; say where the value comes from"));
            }
        }
        for (name, unit, _, _) in PARAMS {
            if let Some(p) = file.params.get(*name) {
                if *unit == "flag" && p.value != 0.0 && p.value != 1.0 {
                    return Err(invalid(format!("params.{name}.value"), format!("{} is neither 0 nor 1", p.value)));
                }
                if matches!(*unit, "cycles" | "flits" | "VCs") && p.value.fract() != 0.0 {
                    return Err(invalid(format!("params.{name}.value"), format!("{} is not a whole number", p.value)));
                }
                if matches!(*unit, "cycles" | "flits" | "VCs") && p.value > 1024.0 {
                    return Err(invalid(format!("params.{name}.value"), format!("{}; at most 1024", p.value)));
                }
            }
        }
        let t = &file.topology;
        if t.width == 0 || t.height == 0 || t.cores_per_router == Some(0) {
            return Err(invalid("topology", "width, height and cores_per_router must be at least 1"));
        }
        if t.width as u64 * t.height as u64 > 1 << 20 {
            return Err(invalid("topology", "more than 2^20 routers; model a part of the machine"));
        }
        if t.kind == Kind::Hierarchical && !file.params.contains_key("intra_chip_latency_ns") {
            return Err(invalid(
                "params.intra_chip_latency_ns",
                "missing: a hierarchical chip needs its core-level router latency",
            ));
        }
        if file.timing == Some(Timing::TimeStep) && !file.params.contains_key("time_step_us") {
            return Err(invalid("params.time_step_us", "missing: a time_step chip needs its step length"));
        }
        if file.emergency_routing && t.kind != Kind::TriangularTorus {
            return Err(invalid("emergency_routing", "only a triangular_torus has the links to route around a block"));
        }
        let preset = Preset { file };
        preset.require(Use::Fabric)?;
        let router = preset.file.router;
        preset.require(if router == RouterKind::Fast { Use::Fast } else { Use::Wormhole })?;
        preset.check_router()?;
        Ok(preset)
    }

    /// Fail, naming the first one, unless every parameter of `what` is stated
    /// (and, for mapping, the topology's cores per router and the timing).
    pub fn require(&self, what: Use) -> Result<(), PresetError> {
        let purpose = match what {
            Use::Fabric => "every preset",
            Use::Fast => "router = \"fast\"",
            Use::Wormhole => "router = \"wormhole\"",
            Use::Mapping => "mapping a network onto the chip",
            Use::Energy => "the energy of a report",
            Use::Optional => return Ok(()),
        };
        if what == Use::Mapping {
            if self.file.topology.cores_per_router.is_none() {
                return Err(invalid("topology.cores_per_router", format!("missing: {purpose} needs it")));
            }
            if self.file.timing.is_none() {
                return Err(invalid("timing", format!("missing (time_step or asynchronous): {purpose} needs it")));
            }
        }
        for (name, _, u, _) in PARAMS {
            if *u == what && !self.file.params.contains_key(*name) {
                return Err(invalid(
                    format!("params.{name}"),
                    format!("missing: {purpose} needs it (state it with conf = \"U\" if unknown)"),
                ));
            }
        }
        for (name, min) in [
            ("link_bandwidth_gbps", 1e-9),
            ("packet_bits", 1.0),
            ("buffer_packets", 1.0),
            ("neurons_per_core", 1.0),
            ("flit_bits", 1.0),
            ("cycle_ns", 1e-6),
        ] {
            if PARAMS.iter().any(|p| p.0 == name && p.2 == what) && self.file.params[name].value < min {
                return Err(invalid(format!("params.{name}.value"), format!("must be at least {min}")));
            }
        }
        Ok(())
    }

    /// The same chip on the other interconnect model (`--router`); fails, naming
    /// the parameter, where the preset lacks one that model needs.
    pub fn with_router(&self, router: RouterKind) -> Result<Preset, PresetError> {
        let mut file = self.file.clone();
        file.router = router;
        Preset::validate(file)
    }

    /// Time step or asynchronous (asynchronous where a sweep preset leaves it out).
    pub fn timing(&self) -> Timing {
        self.file.timing.unwrap_or(Timing::Asynchronous)
    }

    /// Cores behind each router (1 where a sweep preset leaves it out).
    pub fn cores_per_router(&self) -> u32 {
        self.file.topology.cores_per_router.unwrap_or(1)
    }

    /// The wormhole router parameters (cycles).
    pub fn router_model(&self) -> Result<RouterModel, PresetError> {
        self.require(Use::Wormhole)?;
        let whole = |name: &str| self.value(name) as u32;
        Ok(RouterModel {
            cycle_ns: self.value("cycle_ns"),
            packet_flits: (self.value("packet_bits") / self.value("flit_bits")).ceil() as u32,
            router_stages: whole("router_stages"),
            link_cycles_x: whole("link_cycles_x"),
            link_cycles_y: whole("link_cycles_y"),
            injection_cycles: whole("injection_cycles"),
            ejection_cycles: whole("ejection_cycles"),
            credit_cycles: whole("credit_cycles"),
            vcs: whole("vcs"),
            vc_buffer_flits: whole("vc_buffer_flits"),
            wait_for_tail_credit: self.value("wait_for_tail_credit") != 0.0,
        })
    }

    /// Whether the wormhole model can run this fabric (without building it).
    fn check_router(&self) -> Result<(), PresetError> {
        if self.file.router == RouterKind::Wormhole {
            self.router_model()?.check(&self.topology()).map_err(router_error)?;
        }
        Ok(())
    }

    /// An idle interconnect of the preset's model.
    pub fn interconnect(&self) -> Result<Interconnect, PresetError> {
        Ok(match self.file.router {
            RouterKind::Fast => Interconnect::Fast(Fabric::new(self.topology(), self.link_model())),
            RouterKind::Wormhole => Interconnect::Wormhole(Box::new(
                RouterNet::new(self.topology(), self.router_model()?).map_err(router_error)?,
            )),
        })
    }

    /// Read a preset file.
    pub fn load(path: &Path) -> Result<Preset, PresetError> {
        let io = |m: String| PresetError::Io { path: path.display().to_string(), message: m };
        let len = std::fs::metadata(path).map_err(|e| io(e.to_string()))?.len();
        if len > 1 << 20 {
            return Err(io(format!("{len} bytes; a preset has at most 1 MiB")));
        }
        let text = std::fs::read_to_string(path).map_err(|e| io(e.to_string()))?;
        Preset::parse(&text).map_err(|e| match e {
            PresetError::Syntax(m) => PresetError::Syntax(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// A built-in preset by name (`spinnaker1`, `spinnaker2`, `loihi`, `truenorth`, `dynapse`).
    pub fn builtin(name: &str) -> Result<Preset, PresetError> {
        let text = BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, t)| *t).ok_or_else(|| {
            let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
            invalid("preset", format!("unknown preset {name:?}; built in: {} (or give a file path)", names.join(", ")))
        })?;
        Preset::parse(text)
    }

    /// A parameter's value.
    pub fn value(&self, name: &str) -> f64 {
        self.file.params.get(name).map_or(0.0, |p| p.value)
    }

    /// Latency of the core-level router of a hierarchical chip (0 otherwise), ns.
    pub fn intra_chip_latency_ns(&self) -> f64 {
        if self.file.topology.kind == Kind::Hierarchical {
            self.value("intra_chip_latency_ns")
        } else {
            0.0
        }
    }

    /// The router grid.
    pub fn topology(&self) -> Topology {
        let t = &self.file.topology;
        Topology { kind: t.kind, width: t.width, height: t.height }
    }

    /// Link and router timing.
    pub fn link_model(&self) -> LinkModel {
        LinkModel {
            hop_latency_ns: self.value("hop_latency_ns"),
            hop_latency_y_ns: self
                .file
                .params
                .get("hop_latency_y_ns")
                .map_or(self.value("hop_latency_ns"), |p| p.value),
            packet_bits: self.value("packet_bits"),
            bandwidth_bits_per_ns: self.value("link_bandwidth_gbps"),
            buffer_packets: self.value("buffer_packets") as u32,
            emergency_routing: self.file.emergency_routing,
        }
    }

    /// Cores in the fabric.
    pub fn cores(&self) -> u64 {
        self.topology().chips() as u64 * self.cores_per_router() as u64
    }
}

/// The presets shipped with neuropil (`crates/hwemu/presets/`).
pub const BUILTIN: &[(&str, &str)] = &[
    ("spinnaker1", include_str!("../presets/spinnaker1.toml")),
    ("spinnaker2", include_str!("../presets/spinnaker2.toml")),
    ("loihi", include_str!("../presets/loihi.toml")),
    ("truenorth", include_str!("../presets/truenorth.toml")),
    ("dynapse", include_str!("../presets/dynapse.toml")),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_presets_load_and_carry_sources() {
        for (name, _) in BUILTIN {
            let p = Preset::builtin(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(&p.file.name, name);
            assert!(p.file.params.values().all(|v| !v.source.is_empty()));
            assert!(p.cores() > 0);
        }
    }

    #[test]
    fn bad_presets_name_the_field() {
        let good = BUILTIN[2].1;
        let e = Preset::parse(&good.replace("hop_latency_ns", "hop_latncy_ns")).unwrap_err();
        assert!(e.to_string().starts_with("params.hop_latncy_ns: unknown parameter"), "{e}");
        let e = Preset::parse(&good.replace("conf = \"T\"", "conf = \"X\"")).unwrap_err();
        assert!(e.to_string().contains("conf"), "{e}");
        // A clocked chip's times in cycles: the value follows from the clock.
        let spinn = Preset::builtin("spinnaker1").unwrap();
        assert_eq!(spinn.file.params["hop_latency_ns"].cycles, Some(5.0));
        assert_eq!(spinn.value("hop_latency_ns"), 25.0);
        assert_eq!(spinn.with_params(&[]).unwrap().value("hop_latency_ns"), 25.0);
        let slower = spinn.with_params(&[("cycle_ns".into(), 10.0)]).unwrap();
        assert_eq!(slower.value("hop_latency_ns"), 50.0, "times in cycles follow the clock");
        let unclocked: Vec<&str> = BUILTIN[0].1.lines().filter(|l| !l.starts_with("cycle_ns")).collect();
        let e = Preset::parse(&unclocked.join("\n")).unwrap_err();
        assert!(e.to_string().starts_with("params.cycle_ns: missing: params.hop_latency_ns is given in cycles"), "{e}");
        let e =
            Preset::parse(&good.replace("barrier_ns = { value = 299.0,", "barrier_ns = { value = 1.0, cycles = 3.0,"))
                .unwrap_err();
        assert!(e.to_string().starts_with("params.barrier_ns: give value or cycles"), "{e}");
        let e = Preset::parse(&good.replace("vcs = { value = 2.0,", "vcs = { cycles = 2.0,")).unwrap_err();
        assert!(e.to_string().starts_with("params.vcs.cycles: cycles stand only for times in ns"), "{e}");
        let e = Preset::parse(&good.replace("vcs = { value = 2.0,", "vcs = {")).unwrap_err();
        assert!(e.to_string().starts_with("params.vcs.value: missing"), "{e}");
        let e = Preset::builtin("loihi3").unwrap_err();
        assert!(e.to_string().contains("spinnaker1, spinnaker2, loihi, truenorth, dynapse"), "{e}");
    }
}

//! Chip presets as data: every parameter carries its value, a confidence mark and
//! its source, so that a user knows what is measured and what is assumed.
//!
//! Marks (from `../shared/reference/neuromorphic_chips.md`): **P** primary source
//! (paper, datasheet, vendor code); **T** a primary paper's table quoted by a third
//! party; **S** a simulator's default (a modelling choice, not silicon); **U**
//! unverified (an assumption of ours where nothing is published).

use crate::fabric::LinkModel;
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
    pub value: f64,
    /// How sure we are.
    pub conf: Conf,
    /// Where it comes from.
    pub source: String,
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
    /// Neuron cores behind each router.
    pub cores_per_router: u32,
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
    /// Time step or asynchronous.
    pub timing: Timing,
    /// Reroute blocked packets around the triangle (SpiNNaker).
    #[serde(default)]
    pub emergency_routing: bool,
    /// Numeric parameters by name (see [`PARAMS`]).
    pub params: BTreeMap<String, Param>,
}

/// Every parameter a preset may have: (name, unit, required, what).
pub const PARAMS: &[(&str, &str, bool, &str)] = &[
    ("hop_latency_ns", "ns", true, "head latency per router hop (pipeline and wire)"),
    ("intra_chip_latency_ns", "ns", false, "hierarchical chips: the core-level router between two cores of a chip"),
    ("packet_bits", "bit", true, "bits per spike packet"),
    ("link_bandwidth_gbps", "bit/ns", true, "bandwidth of one link"),
    ("buffer_packets", "packets", true, "packets that may wait for one output link"),
    ("neurons_per_core", "neurons", true, "neurons (compartments) one core updates"),
    ("fanin_per_core", "synapse rows", true, "distinct presynaptic sources a core accepts"),
    (
        "fanin_per_neuron",
        "sources",
        false,
        "distinct presynaptic neurons of one neuron (CAM- or crossbar-limited chips)",
    ),
    ("fanout_per_neuron", "destinations", true, "destination cores one neuron's spikes may reach"),
    ("routing_entries", "entries", true, "routing-table entries per router"),
    ("energy_synop_pj", "pJ", true, "energy per synaptic event"),
    ("energy_hop_pj", "pJ", true, "energy per packet per link crossed"),
    ("energy_update_pj", "pJ", true, "energy per neuron update"),
    ("static_power_w", "W", true, "static power of the whole fabric modelled"),
    ("time_step_us", "µs", false, "length of a time step (time_step chips)"),
    ("barrier_ns", "ns", false, "cost of the end-of-step barrier (time_step chips)"),
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
        let known: Vec<&str> = PARAMS.iter().map(|p| p.0).collect();
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
        for (name, _, required, _) in PARAMS {
            if *required && !file.params.contains_key(*name) {
                return Err(invalid(
                    format!("params.{name}"),
                    "missing (every preset states it, with conf = \"U\" if unknown)",
                ));
            }
        }
        for (name, min) in
            [("link_bandwidth_gbps", 1e-9), ("packet_bits", 1.0), ("buffer_packets", 1.0), ("neurons_per_core", 1.0)]
        {
            if file.params[name].value < min {
                return Err(invalid(format!("params.{name}.value"), format!("must be at least {min}")));
            }
        }
        let t = &file.topology;
        if t.width == 0 || t.height == 0 || t.cores_per_router == 0 {
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
        if file.timing == Timing::TimeStep && !file.params.contains_key("time_step_us") {
            return Err(invalid("params.time_step_us", "missing: a time_step chip needs its step length"));
        }
        if file.emergency_routing && t.kind != Kind::TriangularTorus {
            return Err(invalid("emergency_routing", "only a triangular_torus has the links to route around a block"));
        }
        Ok(Preset { file })
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
            packet_bits: self.value("packet_bits"),
            bandwidth_bits_per_ns: self.value("link_bandwidth_gbps"),
            buffer_packets: self.value("buffer_packets") as u32,
            emergency_routing: self.file.emergency_routing,
        }
    }

    /// Cores in the fabric.
    pub fn cores(&self) -> u64 {
        self.topology().chips() as u64 * self.file.topology.cores_per_router as u64
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
        let e = Preset::builtin("loihi3").unwrap_err();
        assert!(e.to_string().contains("spinnaker1, spinnaker2, loihi, truenorth, dynapse"), "{e}");
    }
}

//! Neuromorphic hardware emulation: how spikes would travel over a chip fabric
//! (SpiNNaker-, Loihi-, TrueNorth-, DYNAP-SE-like), where they would be late,
//! reordered or lost, and what it would cost in energy. Pure library: the
//! simulator uses it in-process, `neuropil hwemu` serves it.
//!
//! - [`preset`]: chip parameters as data files, each value with its source and a
//!   confidence mark (`presets/*.toml`, facts from
//!   `../shared/reference/neuromorphic_chips.md`);
//! - [`topology`]: chip grids (mesh, torus, SpiNNaker's triangular torus) and their
//!   dimension-ordered routes;
//! - [`fabric`]: packets through routers and links: per-hop latency,
//!   serialisation, finite buffers, drops, emergency routing, multicast (the fast
//!   model);
//! - [`router`]: virtual-channel wormhole routers with credits, cycle by cycle.

pub mod cosim;
pub mod fabric;
pub mod mapping;
pub mod preset;
pub mod report;
pub mod router;
pub mod topology;
pub mod traffic;

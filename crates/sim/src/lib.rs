//! The neuropil kernel: neuron models, target-side connectivity, shards and the
//! epoch loop. No async, no I/O: runtimes (embedded threads, cluster actors) drive it.
//!
//! Partition independence: every random number is drawn from a stream keyed by what
//! it is for ([`rng`]), every shard delivers the spikes of an epoch in one canonical
//! order ([`network::Spike`]'s order), so the same seed gives the same spikes on any
//! number of shards and threads.

pub mod cerebellum;
pub mod connectivity;
pub mod distribution;
pub mod embedded;
pub mod failpoint;
pub mod local;
pub mod models;
pub mod network;
pub mod plasticity;
pub mod rng;
pub mod routing;
pub mod shard;
pub mod tiers;

pub use distribution::{Bound, Dist};
pub use models::ModelKind;
pub use network::{Network, Population, Projection, Rule, Sampler, Spike, Stimulus};

//! Experiment specification: parse TOML/JSON experiment files, apply overrides,
//! validate with errors that name the field and the fix, and compile to the
//! kernel's [`neuropil_sim::Network`].

pub mod compile;
pub mod dist;
pub mod error;
pub mod load;
pub mod schema;
pub mod synapse;

pub use compile::{compile, population_sizes, Compiled, Limits};
pub use error::{FieldError, SpecError};
pub use load::{load, parse, Format};
pub use schema::Experiment;

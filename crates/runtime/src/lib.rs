//! The runtime around the kernel: preparing an experiment (load, validate, resolve
//! parallelism, check memory), running it in this process with checkpoints, the
//! co-simulation wiring, progress and facts about the host.

pub mod actors;
pub mod checkpoint;
pub mod cosim;
pub mod driver;
pub mod part;
pub mod progress;
pub mod run;
pub mod system;

pub use checkpoint::{load_checkpoint, MAX_CHECKPOINT_BYTES};
pub use run::{prepare, simulate, Periodic, Prepared, RunRequest};

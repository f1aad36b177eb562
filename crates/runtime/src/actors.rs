//! The actor tree of a run (ractor). A run actor supervises one actor per
//! population shard, one per cerebellar module and one per co-simulated fabric;
//! each owns its piece of the run's state between stretches.
//!
//! The mailboxes are the control plane: the run actor asks its children for their
//! state at the start of a stretch, runs the stretch's epochs with the kernel's
//! epoch loop (threads meeting at an in-process barrier, the transport to other
//! nodes), and hands the state back afterwards. No message travels per epoch: a
//! thread hand-off costs 10–50 µs on our VMs, an epoch's compute at scale 0.1 about
//! 23 µs (docs/architecture.md, "Actors").
//!
//! A failure anywhere reaches the run actor as a supervision event: a child's
//! panic, or a failure the epoch loop caught in a shard's or module's code, which
//! the run actor hands to that child so that it fails as itself. The run then fails
//! with the actor, the shard or module and the epoch named.

pub mod census;
pub mod owner;
pub(crate) mod run;

pub use census::{ActorInfo, ActorKind, ActorState, Census};

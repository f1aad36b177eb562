//! The actors that own a piece of a run's state: a population shard, a cerebellar
//! module's state, a co-simulated fabric. Between stretches the state lives in the
//! actor; for a stretch the run actor borrows it (the epochs run on the epoch
//! loop's threads, not in a mailbox) and gives it back afterwards.

use super::census::{ActorKind, ActorState, Census};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

/// What an owner is told.
pub enum OwnerMsg<T> {
    /// Lend the state for a stretch.
    Lend(RpcReplyPort<T>),
    /// Take the state back after a stretch.
    Keep(T),
    /// The epoch loop caught a failure in this actor's code: fail with it.
    Fail(String),
}

/// An actor owning one `T`.
pub struct Owner<T>(std::marker::PhantomData<fn() -> T>);

impl<T> Default for Owner<T> {
    fn default() -> Self {
        Owner(std::marker::PhantomData)
    }
}

/// What an owner starts with.
pub struct OwnerArgs<T> {
    /// Its kind.
    pub kind: ActorKind,
    /// Its name within the run.
    pub name: String,
    /// The state it owns.
    pub state: T,
    /// The run's census.
    pub census: Census,
}

/// An owner's state: the owned piece while it is not lent.
pub struct Held<T> {
    name: String,
    held: Option<T>,
    census: Census,
}

impl<T: Send + 'static> Actor for Owner<T> {
    type Msg = OwnerMsg<T>;
    type State = Held<T>;
    type Arguments = OwnerArgs<T>;

    async fn pre_start(&self, _me: ActorRef<Self::Msg>, a: OwnerArgs<T>) -> Result<Held<T>, ActorProcessingErr> {
        a.census.started(a.kind, &a.name);
        Ok(Held { name: a.name, held: Some(a.state), census: a.census })
    }

    async fn handle(
        &self,
        _me: ActorRef<Self::Msg>,
        msg: OwnerMsg<T>,
        s: &mut Held<T>,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            OwnerMsg::Lend(reply) => {
                let Some(held) = s.held.take() else {
                    return Err(format!("{}: asked to lend its state while it is lent", s.name).into());
                };
                // The run actor is waiting for it; if it is gone, so is the run.
                let _ = reply.send(held);
            }
            OwnerMsg::Keep(state) => s.held = Some(state),
            OwnerMsg::Fail(why) => return Err(why.into()),
        }
        Ok(())
    }

    async fn post_stop(&self, _me: ActorRef<Self::Msg>, s: &mut Held<T>) -> Result<(), ActorProcessingErr> {
        s.census.ended(&s.name, ActorState::Stopped);
        Ok(())
    }
}

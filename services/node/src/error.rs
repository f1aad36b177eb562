//! What can go wrong on a node: in its NodeService API (the one place where an
//! error becomes a gRPC status code), and in its share of a run (the message the
//! control shows as the run's failure, naming what to fix).

use neuropil_runtime::driver::DriveError;
use tonic::{Code, Status};

/// A NodeService request error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A request field is wrong.
    #[error("{0}")]
    InvalidArgument(String),
    /// No such run on this node.
    #[error("{0}")]
    NotFound(String),
}

impl NodeError {
    /// The gRPC code of this error: the only mapping from node errors to codes.
    pub fn code(&self) -> Code {
        match self {
            NodeError::InvalidArgument(_) => Code::InvalidArgument,
            NodeError::NotFound(_) => Code::NotFound,
        }
    }
}

impl From<NodeError> for Status {
    fn from(e: NodeError) -> Status {
        Status::new(e.code(), e.to_string())
    }
}

/// Why this node's share of a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The assignment's experiment does not parse or compile here.
    #[error("{0}")]
    Spec(#[from] neuropil_spec::SpecError),
    /// The assignment does not fit what this node built (another version, another
    /// format name, another placement).
    #[error("{0}")]
    Assignment(String),
    /// The checkpoint to resume from cannot be used.
    #[error("{0}")]
    Resume(String),
    /// The fabric of the `[hardware]` section cannot be built.
    #[error("{0}")]
    Fabric(String),
    /// The spike exchange with the peers could not be set up.
    #[error("{0}")]
    Exchange(String),
    /// The run itself failed: an actor, a shard's or module's code, the exchange
    /// during the run, or what the node does between stretches.
    #[error("{0}")]
    Run(#[from] DriveError),
    /// The results could not be encoded for the control.
    #[error("encoding the results: {0}")]
    Results(String),
}

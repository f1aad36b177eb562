//! What can go wrong in the control's API, and the one place where each kind
//! becomes a gRPC status code.

use tonic::{Code, Status};

/// An ExperimentService error. Messages name the field and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A request field is wrong (`set: at most 1024 overrides ...`).
    #[error("{0}")]
    InvalidArgument(String),
    /// The experiment file does not validate (the field path is in the message).
    #[error("{0}")]
    Spec(#[from] neuropil_spec::SpecError),
    /// No such experiment.
    #[error("{0}")]
    NotFound(String),
    /// Too big: a document, or a network the live nodes cannot hold.
    #[error("{0}")]
    TooLarge(String),
    /// Not possible in the experiment's present state (cancel a finished run, ...).
    #[error("{0}")]
    WrongState(String),
    /// etcd did not answer.
    #[error("etcd: {0}")]
    Etcd(String),
    /// A node (the recording node of a spike stream) could not be reached.
    #[error("{0}")]
    NodeUnreachable(String),
    /// A stored record that cannot be read back: a bug or a foreign writer.
    #[error("{0}")]
    Internal(String),
}

impl ControlError {
    /// The gRPC code of this error: the only mapping from control errors to codes.
    pub fn code(&self) -> Code {
        match self {
            ControlError::InvalidArgument(_) | ControlError::Spec(_) => Code::InvalidArgument,
            ControlError::NotFound(_) => Code::NotFound,
            ControlError::TooLarge(_) => Code::ResourceExhausted,
            ControlError::WrongState(_) => Code::FailedPrecondition,
            ControlError::Etcd(_) | ControlError::NodeUnreachable(_) => Code::Unavailable,
            ControlError::Internal(_) => Code::Internal,
        }
    }

    /// An etcd failure (for `map_err`).
    pub fn etcd(e: impl std::fmt::Display) -> ControlError {
        ControlError::Etcd(format!("{e:#}"))
    }
}

impl From<ControlError> for Status {
    fn from(e: ControlError) -> Status {
        Status::new(e.code(), e.to_string())
    }
}

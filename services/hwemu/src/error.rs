//! What can go wrong in the HardwareService, and the one place where each kind
//! becomes a gRPC status code.

use tonic::{Code, Status};

/// A HardwareService error. Messages name the field and the fix.
#[derive(Debug, thiserror::Error)]
pub enum HwemuError {
    /// A request field is wrong (`duration_ns: -1 is not a time > 0`).
    #[error("{0}")]
    InvalidArgument(String),
    /// The experiment document does not validate (the field path is in the message).
    #[error("{0}")]
    Spec(#[from] neuropil_spec::SpecError),
    /// Too big: a document, a preset, or a simulation this service will not run.
    #[error("{0}")]
    TooLarge(String),
    /// The request is well formed but cannot be mapped onto the chip (limits).
    #[error("{0}")]
    Unmappable(String),
    /// A failure of ours (a built-in preset that does not load, a worker that died).
    #[error("{0}")]
    Internal(String),
}

impl HwemuError {
    /// The gRPC code of this error: the only mapping from hwemu errors to codes.
    pub fn code(&self) -> Code {
        match self {
            HwemuError::InvalidArgument(_) | HwemuError::Spec(_) => Code::InvalidArgument,
            HwemuError::TooLarge(_) => Code::ResourceExhausted,
            HwemuError::Unmappable(_) => Code::FailedPrecondition,
            HwemuError::Internal(_) => Code::Internal,
        }
    }
}

impl From<HwemuError> for Status {
    fn from(e: HwemuError) -> Status {
        Status::new(e.code(), e.to_string())
    }
}

//! Spec errors: every one names the field path and what would be valid.

use std::fmt;

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Field path, e.g. `projections[3].syn.delay_ms`.
    pub path: String,
    /// What is wrong and what would be right.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why an experiment could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("{path}: {message}")]
    Io {
        /// File path.
        path: String,
        /// What happened.
        message: String,
    },
    /// The file is not valid TOML/JSON, or a field has the wrong type or name.
    #[error("{0}")]
    Syntax(FieldError),
    /// A `--set` override could not be applied.
    #[error("--set {0}")]
    Override(String),
    /// Fields with invalid values (all of them are listed).
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<FieldError>),
}

impl SpecError {
    /// All field errors (one for a syntax error, none for I/O).
    pub fn fields(&self) -> Vec<FieldError> {
        match self {
            SpecError::Syntax(e) => vec![e.clone()],
            SpecError::Invalid(v) => v.clone(),
            _ => vec![],
        }
    }
}

/// Collects field errors while validating.
#[derive(Debug, Default)]
pub(crate) struct Errors(pub Vec<FieldError>);

impl Errors {
    pub fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError { path: path.into(), message: message.into() });
    }

    /// `value` must be finite.
    pub fn finite(&mut self, path: impl Into<String>, value: f64) -> bool {
        if value.is_finite() {
            true
        } else {
            self.add(path, format!("must be a finite number, got {value}"));
            false
        }
    }
}

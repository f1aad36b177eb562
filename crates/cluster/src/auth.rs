//! Bearer-token authentication of the public API.

use anyhow::{bail, Context as _, Result};
use std::path::Path;
use std::sync::Arc;
use tonic::{Request, Status};

/// Checks `authorization: Bearer <token>` on every request when a token is set.
#[derive(Clone, Default)]
pub struct BearerAuth {
    token: Option<Arc<Vec<u8>>>,
}

impl BearerAuth {
    /// Require `token` (None: no authentication).
    pub fn new(token: Option<String>) -> BearerAuth {
        BearerAuth { token: token.map(|t| Arc::new(t.into_bytes())) }
    }

    /// Check one request.
    pub fn check<T>(&self, req: Request<T>) -> Result<Request<T>, Status> {
        let Some(expected) = &self.token else { return Ok(req) };
        let Some(value) = req.metadata().get("authorization") else {
            return Err(Status::unauthenticated(
                "missing bearer token: send the metadata 'authorization: Bearer <token>' (neuropil --token-file)",
            ));
        };
        let given = value.as_bytes().strip_prefix(b"Bearer ").unwrap_or(b"");
        if !constant_time_eq(given, expected) {
            return Err(Status::unauthenticated("wrong bearer token in 'authorization'"));
        }
        Ok(req)
    }
}

/// Compare without leaking the position of the first difference through timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Read a token file (trailing newline stripped; an empty file is an error, so a
/// misconfigured Secret does not silently disable authentication).
pub fn read_token(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path).with_context(|| format!("--token-file {}", path.display()))?;
    if meta.len() > 4096 {
        bail!("--token-file {}: {} bytes; a token has at most 4096", path.display(), meta.len());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("--token-file {}", path.display()))?;
    let token = text.trim().to_string();
    if token.is_empty() {
        bail!("--token-file {}: empty; put the token in the file", path.display());
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        let auth = BearerAuth::new(Some("s3cret".into()));
        let mut req = Request::new(());
        assert_eq!(auth.check(Request::new(())).unwrap_err().code(), tonic::Code::Unauthenticated);
        req.metadata_mut().insert("authorization", "Bearer s3cret".parse().unwrap());
        assert!(auth.check(req).is_ok());
        let mut bad = Request::new(());
        bad.metadata_mut().insert("authorization", "Bearer s3cre".parse().unwrap());
        assert_eq!(auth.check(bad).unwrap_err().code(), tonic::Code::Unauthenticated);
    }
}

//! Bearer-token authentication: of the public API (a token users are given) and of
//! the internal ports (the cluster token that control replicas and nodes present
//! to each other's NodeService and SpikeExchange).

use anyhow::{bail, Context as _, Result};
use std::path::Path;
use std::sync::Arc;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
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
        if !constant_time_eq(bearer(value.as_bytes()), expected) {
            return Err(Status::unauthenticated("wrong bearer token in 'authorization'"));
        }
        Ok(req)
    }
}

/// The token in an `authorization: Bearer <token>` value (empty if it is not one).
fn bearer(value: &[u8]) -> &[u8] {
    value.strip_prefix(b"Bearer ").unwrap_or(b"")
}

/// Compare without leaking the position of the first difference through timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Read a token file given with `flag` (trailing newline stripped; an empty file
/// is an error, so a misconfigured Secret does not silently disable
/// authentication).
pub fn read_token(flag: &str, path: &Path) -> Result<String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).with_context(|| format!("{flag} {shown}"))?;
    if meta.len() > 4096 {
        bail!("{flag} {shown}: {} bytes; a token has at most 4096", meta.len());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("{flag} {shown}"))?;
    let token = text.trim().to_string();
    if token.is_empty() {
        bail!("{flag} {shown}: empty; put the token in the file");
    }
    Ok(token)
}

/// Key of the cluster token in etcd (kept without a lease: it outlives every
/// process).
pub fn cluster_token_key() -> String {
    format!("{}cluster-token", crate::PREFIX)
}

/// The secret that cluster members present to each other's internal ports (the
/// nodes' NodeService and SpikeExchange). Without TLS it is what keeps a stranger
/// who can reach those ports from watching runs or joining an exchange; with
/// mutual TLS it is checked as well.
#[derive(Clone)]
pub struct ClusterToken {
    expected: Arc<Vec<u8>>,
    header: AsciiMetadataValue,
}

impl std::fmt::Debug for ClusterToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterToken(..)")
    }
}

impl ClusterToken {
    /// A token from its text (`flag` names where it came from in errors).
    pub fn new(token: &str, flag: &str) -> Result<ClusterToken> {
        if token.len() < 16 {
            bail!(
                "{flag}: the cluster token has {} characters; use at least 16 (e.g. `openssl rand -hex 32`)",
                token.len()
            );
        }
        let header = format!("Bearer {token}")
            .parse()
            .map_err(|_| anyhow::anyhow!("{flag}: the cluster token must be printable ASCII"))?;
        Ok(ClusterToken { expected: Arc::new(token.as_bytes().to_vec()), header })
    }

    /// The cluster's token: `given` (a `--cluster-token-file`, the same Secret on
    /// every member) or else the one kept in etcd, which the first member to start
    /// creates from 32 random bytes.
    pub async fn of_cluster(etcd: &mut etcd_client::Client, given: Option<String>) -> Result<ClusterToken> {
        if let Some(t) = given {
            return ClusterToken::new(&t, "--cluster-token-file");
        }
        let key = cluster_token_key();
        let fresh = random_hex(32).context("creating a cluster token from /dev/urandom")?;
        let create = etcd_client::Txn::new()
            .when([etcd_client::Compare::create_revision(key.as_str(), etcd_client::CompareOp::Equal, 0)])
            .and_then([etcd_client::TxnOp::put(key.as_str(), fresh, None)]);
        etcd.txn(create).await.with_context(|| format!("etcd: creating {key}"))?;
        let resp = etcd.get(key.as_str(), None).await.with_context(|| format!("etcd: reading {key}"))?;
        let kv = resp.kvs().first().with_context(|| format!("etcd: {key} vanished after it was created"))?;
        let text = std::str::from_utf8(kv.value()).with_context(|| format!("etcd: {key} is not text"))?;
        ClusterToken::new(text.trim(), &format!("etcd key {key}"))
    }

    /// Check one request to an internal port. A stranger learns nothing but that
    /// the port wants the cluster's token.
    pub fn check<T>(&self, req: Request<T>) -> Result<Request<T>, Status> {
        let given = req.metadata().get("authorization").map_or(&b""[..], |v| bearer(v.as_bytes()));
        if constant_time_eq(given, &self.expected) {
            Ok(req)
        } else {
            Err(Status::unauthenticated("this port serves members of the cluster only (cluster token)"))
        }
    }

    /// Add the token to a request this member makes.
    pub fn attach(&self, metadata: &mut MetadataMap) {
        metadata.insert("authorization", self.header.clone());
    }

    /// `req` with the token attached.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut req = Request::new(message);
        self.attach(req.metadata_mut());
        req
    }
}

/// `n` random bytes from the kernel, as hex.
fn random_hex(n: usize) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
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

    #[test]
    fn cluster_tokens_admit_members_only() {
        assert!(ClusterToken::new("short", "--cluster-token-file").unwrap_err().to_string().contains("at least 16"));
        let token = ClusterToken::new("0123456789abcdef0123", "t").unwrap();
        assert!(token.check(token.request(())).is_ok());
        let stranger = token.check(Request::new(())).unwrap_err();
        assert_eq!(stranger.code(), tonic::Code::Unauthenticated);
        let other = ClusterToken::new("0123456789abcdef0124", "t").unwrap();
        assert_eq!(token.check(other.request(())).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert_eq!(random_hex(32).unwrap().len(), 64);
        assert_ne!(random_hex(8).unwrap(), random_hex(8).unwrap());
        assert_eq!(format!("{token:?}"), "ClusterToken(..)", "Debug does not show the secret");
    }
}

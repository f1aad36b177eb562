//! TLS settings of a process: its identity (certificate and key) and the CA it
//! trusts. The control serves its public API over TLS when given an identity; a
//! node given an identity and a CA requires client certificates signed by that CA
//! (mutual TLS between nodes, and from the control to nodes).

use anyhow::{bail, Context as _, Result};
use std::path::Path;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

/// Largest PEM file read.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// A process's TLS configuration (all `None`: plaintext).
#[derive(Clone, Default, Debug)]
pub struct Tls {
    /// What its servers present (and whom they require).
    pub server: Option<ServerTlsConfig>,
    /// What its clients trust (and present).
    pub client: Option<ClientTlsConfig>,
}

fn read_pem(flag: &str, path: &Path) -> Result<Vec<u8>> {
    let len = std::fs::metadata(path).with_context(|| format!("{flag} {}", path.display()))?.len();
    if len > MAX_PEM_BYTES {
        bail!("{flag} {}: {len} bytes is not a PEM certificate or key (at most 1 MiB)", path.display());
    }
    let pem = std::fs::read(path).with_context(|| format!("{flag} {}", path.display()))?;
    if !pem.windows(11).any(|w| w == b"-----BEGIN ") {
        bail!("{flag} {}: not PEM (no -----BEGIN line)", path.display());
    }
    Ok(pem)
}

impl Tls {
    /// Load `cert`/`key` (both or neither) and `ca`. With `mutual`, servers require
    /// client certificates signed by `ca`, and clients present `cert`.
    pub fn load(cert: Option<&Path>, key: Option<&Path>, ca: Option<&Path>, mutual: bool) -> Result<Tls> {
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some(Identity::from_pem(read_pem("--tls-cert", c)?, read_pem("--tls-key", k)?)),
            (None, None) => None,
            (Some(_), None) => bail!("--tls-cert needs --tls-key (the certificate's private key)"),
            (None, Some(_)) => bail!("--tls-key needs --tls-cert"),
        };
        let ca = ca.map(|p| read_pem("--tls-ca", p).map(Certificate::from_pem)).transpose()?;
        if mutual && identity.is_some() && ca.is_none() {
            bail!("--tls-cert on a node needs --tls-ca: nodes authenticate each other with certificates from that CA");
        }
        let server = identity.clone().map(|id| {
            let s = ServerTlsConfig::new().identity(id);
            match (&ca, mutual) {
                (Some(ca), true) => s.client_ca_root(ca.clone()),
                _ => s,
            }
        });
        let client = ca.map(|ca| {
            let c = ClientTlsConfig::new().ca_certificate(ca);
            match (&identity, mutual) {
                (Some(id), true) => c.identity(id.clone()),
                _ => c,
            }
        });
        Ok(Tls { server, client })
    }

    /// The URL scheme of this process's servers.
    pub fn scheme(&self) -> &'static str {
        if self.server.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// An endpoint for `url` with these client settings; `https` URLs need a CA.
    pub fn endpoint(&self, url: &str) -> Result<Endpoint> {
        let e = Endpoint::from_shared(url.to_string())
            .with_context(|| format!("{url}: not a URL like http://host:port"))?;
        match (&self.client, url.starts_with("https://")) {
            (Some(c), true) => Ok(e.tls_config(c.clone())?),
            (None, true) => bail!("{url}: https needs --tls-ca (the CA that signed the server's certificate)"),
            (_, false) => Ok(e),
        }
    }
}

//! How the hardware-emulation service runs: its addresses.

use std::net::SocketAddr;

/// How `neuropil hwemu serve` runs.
#[derive(Clone)]
pub struct HwemuConfig {
    /// gRPC listen address (port 0: any free port; the ready line says which).
    pub listen: SocketAddr,
    /// Prometheus listen address.
    pub metrics_listen: SocketAddr,
    /// Bearer token clients must send (None: open; `--token-file`).
    pub token: Option<String>,
}

impl std::fmt::Debug for HwemuConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HwemuConfig")
            .field("listen", &self.listen)
            .field("metrics_listen", &self.metrics_listen)
            .field("token", &self.token.as_ref().map(|_| "(set)"))
            .finish()
    }
}

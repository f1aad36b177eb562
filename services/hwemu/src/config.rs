//! How the hardware-emulation service runs: its addresses.

use std::net::SocketAddr;

/// How `neuropil hwemu serve` runs.
#[derive(Debug, Clone, Copy)]
pub struct HwemuConfig {
    /// gRPC listen address (port 0: any free port; the ready line says which).
    pub listen: SocketAddr,
    /// Prometheus listen address.
    pub metrics_listen: SocketAddr,
}

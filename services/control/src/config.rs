//! How a control replica runs: addresses, etcd, data directory, token, lease, TLS.

use std::net::SocketAddr;
use std::path::PathBuf;

/// How a control replica runs.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// Replica id (pod name).
    pub id: String,
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// etcd endpoints.
    pub etcd: Vec<String>,
    /// Prometheus listen address.
    pub metrics_listen: SocketAddr,
    /// Where results go: `<data_dir>/<experiment id>/`.
    pub data_dir: PathBuf,
    /// Bearer token clients must send (None: open).
    pub token: Option<String>,
    /// Leader lease time to live, s: a dead leader is replaced after this long.
    pub lease_ttl_s: i64,
    /// TLS of the public API (server side).
    pub tls: neuropil_cluster::tls::Tls,
    /// TLS towards the nodes (client side, mutual when configured).
    pub node_tls: neuropil_cluster::tls::Tls,
}

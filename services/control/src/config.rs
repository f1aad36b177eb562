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
    /// The cluster token (`--cluster-token-file`); None: the one kept in etcd.
    pub cluster_token: Option<String>,
    /// Biological time between coordinated checkpoints, ms (0: none; rounded up to
    /// the nodes' 100 ms stretches).
    pub checkpoint_interval_ms: f64,
    /// The checkpoint volume as this replica sees it: old checkpoints are deleted.
    pub checkpoint_dir: Option<PathBuf>,
    /// Recoveries a run may make within [`RECOVERY_WINDOW`] before it fails.
    pub max_recoveries: u32,
    /// Two nodes that each wait this long for the other's epoch message cannot
    /// reach each other: one of them leaves the run, which recovers.
    pub peer_stall: std::time::Duration,
}

/// The window over which a run's recoveries are counted against its budget.
pub const RECOVERY_WINDOW: std::time::Duration = std::time::Duration::from_secs(600);

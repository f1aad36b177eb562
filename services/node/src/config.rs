//! How a node runs: its addresses, etcd, threads, memory offer, lease and TLS.

use std::net::SocketAddr;
use std::time::Duration;

/// How a node runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Unique id (default: host name + port).
    pub id: String,
    /// gRPC listen address (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Address the control dials; default `http://<listen>`.
    pub advertise: Option<String>,
    /// Spike exchange listen address (port 0 picks a free one); peers dial the
    /// advertised host at this port.
    pub exchange_listen: SocketAddr,
    /// Address peers dial for the exchange; default: the advertised host at the
    /// exchange port.
    pub exchange_advertise: Option<String>,
    /// Also serve the exchange on this Unix socket, for peers on the same host.
    pub exchange_socket: Option<std::path::PathBuf>,
    /// etcd endpoints.
    pub etcd: Vec<String>,
    /// Worker threads for its shards.
    pub threads: usize,
    /// Prometheus listen address.
    pub metrics_listen: SocketAddr,
    /// Memory offered to runs, bytes (default: what the system has available).
    pub memory_bytes: u64,
    /// Lease time to live, s: a node silent this long is considered gone.
    pub lease_ttl_s: i64,
    /// How long to wait for a peer's epoch message before failing the run.
    pub peer_timeout: Duration,
    /// Emulated one-way latency of the links to the peers, for tests and
    /// benchmarks of runs across hosts (zero: none; every node must set the same).
    pub emulated_latency: Duration,
    /// TLS (mutual between nodes and from the control when a CA is given).
    pub tls: neuropil_cluster::tls::Tls,
    /// The cluster token (`--cluster-token-file`); None: the one kept in etcd.
    pub cluster_token: Option<String>,
    /// The checkpoint volume, shared by every node (and the control): each node
    /// writes its part of a coordinated checkpoint here and reads the parts of
    /// others when a run is recovered. None: this node neither writes nor resumes.
    pub checkpoint_dir: Option<std::path::PathBuf>,
}

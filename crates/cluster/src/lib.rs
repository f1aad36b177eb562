//! What the cluster's services share: the records and keys they keep in etcd, the
//! etcd client helpers, the node-to-node spike transport, TLS, bearer-token auth,
//! the gRPC server bootstrap and Prometheus telemetry. The services themselves
//! (`services/node`, `services/control`, `services/hwemu`) build on it.
//!
//! etcd keys (all under [`PREFIX`]):
//! - `nodes/{id}`: a live node ([`NodeRecord`]), attached to the node's lease;
//! - `experiments/{id}`: an experiment and its state ([`ExperimentRecord`]);
//! - `runs/{id}`: the shard assignment of a running experiment ([`Assignment`]),
//!   which nodes watch; `cancel/{id}`: a cancellation request;
//! - `control/leader`: the election of the scheduling control replica.
//!
//! etcd is never on the per-epoch path: nodes exchange spikes with their peers
//! directly (SpikeExchange.Exchange) and report progress over NodeService.WatchRun.

pub mod auth;
pub mod etcd;
pub mod floor;
pub mod records;
pub mod server;
pub mod telemetry;
pub mod tls;
pub mod transport;

pub use records::*;

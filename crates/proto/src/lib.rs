//! The wire schema (generated from `proto/neuropil/v1`). Each service maps its own
//! errors to gRPC codes in its `error.rs`.

#![allow(missing_docs, clippy::all)]

/// `neuropil.v1`: experiments, the experiment service, the node service.
pub mod v1 {
    tonic::include_proto!("neuropil.v1");
}

/// Encoded file descriptors of every message and service, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("neuropil_descriptor");

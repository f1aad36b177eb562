//! The wire schema (generated from `proto/neuropil/v1`) and the one place where
//! errors become gRPC status codes.

#![allow(missing_docs, clippy::all)]

/// `neuropil.v1`: experiments, the experiment service, the node service.
pub mod v1 {
    tonic::include_proto!("neuropil.v1");
}

/// Encoded file descriptors of every message and service, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("neuropil_descriptor");

/// A spec error as a gRPC status: INVALID_ARGUMENT, naming every bad field.
pub fn spec_status(e: &neuropil_spec::SpecError) -> tonic::Status {
    tonic::Status::invalid_argument(e.to_string())
}

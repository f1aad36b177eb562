//! Generates the gRPC code from proto/neuropil/v1 (needs `protoc`: Debian's
//! protobuf-compiler, or PROTOC pointing at one) and the file descriptor set that
//! gRPC reflection serves.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        root.join("neuropil/v1/experiment.proto"),
        root.join("neuropil/v1/cluster.proto"),
        root.join("neuropil/v1/hardware.proto"),
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("neuropil_descriptor.bin"))
        .compile_protos(&files, &[root])?;
    Ok(())
}

//! A node's part of a coordinated cluster checkpoint: the state of its shards
//! together with the state every node holds alike (the pending epoch input, the
//! spike digest, cerebellar modules, the fabric), and its share of the run's output
//! so far, so that a run continued from the parts — on any number of nodes, any
//! placement — ends with the results of a run that never stopped.
//!
//! File layout: magic and version (8 bytes), the checkpoint's length (u64 LE), the
//! checkpoint (its own header and checksum), the output's length and FNV-1a-64
//! checksum (u64 LE each), the output (postcard). Parts are written to a sibling
//! file, synced, renamed into place and the directory synced: a part that a node
//! has reported is on the volume, whole.

use neuropil_sim::embedded::{checksum, Checkpoint, CheckpointError, RunOutput};
use neuropil_sim::Network;
use std::io::Write as _;
use std::path::Path;

/// First bytes of a part file.
const PART_MAGIC: &[u8; 8] = b"NPPART\x00\x01";

/// Why a part cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PartError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Not what the manifest says it is (size or digest), or not a part at all.
    #[error("{path}: {why}; the checkpoint volume holds a damaged or foreign part")]
    Damaged {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// The checkpoint inside does not belong to this network, or is damaged.
    #[error("{path}: {source}")]
    Checkpoint {
        /// The file.
        path: String,
        /// Why.
        source: CheckpointError,
    },
}

/// The bytes of a part.
pub fn encode(state: &Checkpoint, output: &RunOutput) -> Vec<u8> {
    let cp = state.to_bytes();
    let out = postcard::to_allocvec(output).unwrap_or_default();
    let mut bytes = Vec::with_capacity(cp.len() + out.len() + 32);
    bytes.extend_from_slice(PART_MAGIC);
    bytes.extend_from_slice(&(cp.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&cp);
    bytes.extend_from_slice(&(out.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&checksum(&out).to_le_bytes());
    bytes.extend_from_slice(&out);
    bytes
}

/// The digest a manifest records of a part's bytes.
pub fn digest(bytes: &[u8]) -> u64 {
    checksum(bytes)
}

/// Write `bytes` to `path` durably and atomically (sibling, fsync, rename, fsync
/// of the directory).
pub fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), PartError> {
    let io = |source| PartError::Io { path: path.display().to_string(), source };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = path.with_extension("partial");
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok(())
}

/// Read the part at `path`, checking its size and digest against the manifest's,
/// and decode it for `net` (shards without their static connectivity: rebuild the
/// ones kept with [`Checkpoint::rebuild_statics`]).
pub fn read(path: &Path, bytes: u64, digest: u64, net: &Network) -> Result<(Checkpoint, RunOutput), PartError> {
    let name = path.display().to_string();
    let damaged = |why: String| PartError::Damaged { path: name.clone(), why };
    let len = std::fs::metadata(path).map_err(|source| PartError::Io { path: name.clone(), source })?.len();
    if len != bytes {
        return Err(damaged(format!("{len} bytes where the manifest says {bytes}")));
    }
    let data = std::fs::read(path).map_err(|source| PartError::Io { path: name.clone(), source })?;
    if checksum(&data) != digest {
        return Err(damaged("its digest differs from the manifest's".into()));
    }
    decode_named(&name, &data, net)
}

/// Decode a part's bytes for `net` (`name` says where they came from in errors);
/// what [`read`] does once size and digest match. Bounded whatever the bytes are
/// (the fuzz target `part` feeds it anything).
pub fn decode_named(name: &str, data: &[u8], net: &Network) -> Result<(Checkpoint, RunOutput), PartError> {
    decode(data, net).map_err(|e| match e {
        Decoded::Damaged(why) => PartError::Damaged { path: name.to_string(), why },
        Decoded::Checkpoint(source) => PartError::Checkpoint { path: name.to_string(), source },
    })
}

enum Decoded {
    Damaged(String),
    Checkpoint(CheckpointError),
}

fn decode(data: &[u8], net: &Network) -> Result<(Checkpoint, RunOutput), Decoded> {
    let short = || Decoded::Damaged("cut short".into());
    if data.len() < 16 || data[..8] != PART_MAGIC[..] {
        return Err(Decoded::Damaged("not a neuropil checkpoint part (or another format version)".into()));
    }
    let u64_at = |i: usize| data.get(i..i + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()));
    let cp_len = u64_at(8).ok_or_else(short)? as usize;
    let cp_end = 16usize.checked_add(cp_len).filter(|&e| e <= data.len()).ok_or_else(short)?;
    let state = Checkpoint::decode(&data[16..cp_end], net).map_err(Decoded::Checkpoint)?;
    let out_len = u64_at(cp_end).ok_or_else(short)? as usize;
    let sum = u64_at(cp_end + 8).ok_or_else(short)?;
    let out = data.get(cp_end + 16..).filter(|o| o.len() == out_len).ok_or_else(short)?;
    if checksum(out) != sum {
        return Err(Decoded::Damaged("the output's checksum does not match".into()));
    }
    let output = postcard::from_bytes(out).map_err(|e| Decoded::Damaged(format!("the output: {e}")))?;
    Ok((state, output))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net() -> Network {
        let doc = "[run]\nduration_ms = 10\n[[populations]]\nname = \"a\"\nsize = 20\nmodel = \"iaf_psc_alpha\"\n\
                   [[stimuli]]\nkind = \"poisson_generator\"\ntarget = \"a\"\nrate_hz = 8000.0\nweight = 90.0\n";
        let exp = neuropil_spec::parse(doc, neuropil_spec::load::Format::Toml, &[]).unwrap();
        neuropil_spec::compile(&exp, &neuropil_spec::Limits { memory_bytes: None }).unwrap().network
    }

    #[test]
    fn a_part_reads_back_and_a_damaged_or_foreign_one_is_refused() {
        let net = net();
        let state = neuropil_sim::embedded::build(&net, 2, 1);
        let out = RunOutput { spike_counts: vec![7], spike_hash: 42, ..Default::default() };
        let bytes = encode(&state, &out);
        let dir = std::env::temp_dir().join(format!("neuropil-part-{}", std::process::id()));
        let path = dir.join("x/part-0.bin");
        write_durably(&path, &bytes).unwrap();
        let d = digest(&bytes);
        let (cp, o) = read(&path, bytes.len() as u64, d, &net).unwrap();
        assert_eq!((cp.shards.len(), o.spike_counts, o.spike_hash), (2, vec![7], 42));
        // The manifest's size or digest does not match: refused, naming the file.
        let e = read(&path, bytes.len() as u64, d ^ 1, &net).unwrap_err().to_string();
        assert!(e.contains("part-0.bin") && e.contains("digest"), "{e}");
        let e = read(&path, 3, d, &net).unwrap_err().to_string();
        assert!(e.contains("the manifest says 3"), "{e}");
        // Damage inside the output (digest recomputed, as if the manifest were wrong too).
        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n - 1] ^= 0xff;
        std::fs::write(&path, &bad).unwrap();
        let e = read(&path, n as u64, digest(&bad), &net).unwrap_err().to_string();
        assert!(e.contains("checksum"), "{e}");
        // Another network's part.
        let mut other = net.clone();
        other.seed += 1;
        std::fs::write(&path, &bytes).unwrap();
        let e = read(&path, bytes.len() as u64, d, &other).unwrap_err().to_string();
        assert!(e.contains("different network"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

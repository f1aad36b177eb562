//! A node's part of a coordinated cluster checkpoint: the state of its shards
//! together with the state every node holds alike (the pending epoch input, the
//! spike digest, cerebellar modules, the fabric), and where its share of the run's
//! output so far lies, so that a run continued from the parts — on any number of
//! nodes, any placement — ends with the results of a run that never stopped.
//!
//! The output is not in the part: each checkpoint a node writes first puts what it
//! produced since its previous one in a **segment** of its own
//! (`<experiment>/out/<step>.a<attempt>.r<rank>.bin`), and the part lists every
//! segment so far (path, size, digest). A checkpoint thus writes what is new, not
//! the whole run's spikes again: its cost does not grow with the run's length.
//!
//! Part layout: magic and version (8 bytes), the checkpoint's length (u64 LE), the
//! checkpoint (its own header and checksum), the segment list's length and FNV-1a-64
//! checksum (u64 LE each), the list (postcard). Segment layout: magic and version
//! (8 bytes), the output (postcard); the part's list holds its size and digest.
//! Both are written to a sibling file, synced, renamed into place and the directory
//! synced: what a node has reported is on the volume, whole.

use neuropil_sim::embedded::{checksum, Checkpoint, CheckpointError, RunOutput};
use neuropil_sim::Network;
use std::io::Write as _;
use std::path::Path;

/// First bytes of a part file.
const PART_MAGIC: &[u8; 8] = b"NPPART\x00\x02";

/// First bytes of an output segment.
const SEGMENT_MAGIC: &[u8; 8] = b"NPSEG\x00\x00\x01";

/// One segment of a node's output, as a part lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SegmentRef {
    /// Path relative to the checkpoint volume.
    pub path: String,
    /// Its size, bytes.
    pub bytes: u64,
    /// FNV-1a-64 of the whole file.
    pub digest: u64,
}

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

/// The bytes of a part: `state` and the segments of this node's output so far.
pub fn encode(state: &Checkpoint, segments: &[SegmentRef]) -> Vec<u8> {
    let cp = state.to_bytes();
    let list = postcard::to_allocvec(segments).unwrap_or_default();
    let mut bytes = Vec::with_capacity(cp.len() + list.len() + 32);
    bytes.extend_from_slice(PART_MAGIC);
    bytes.extend_from_slice(&(cp.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&cp);
    bytes.extend_from_slice(&(list.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&checksum(&list).to_le_bytes());
    bytes.extend_from_slice(&list);
    bytes
}

/// The bytes of a segment holding `output`.
pub fn encode_segment(output: &RunOutput) -> Vec<u8> {
    let mut bytes = SEGMENT_MAGIC.to_vec();
    bytes.extend_from_slice(&postcard::to_allocvec(output).unwrap_or_default());
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

/// Read a file the manifest (or a part) describes, checking its size and digest.
fn read_checked(path: &Path, bytes: u64, digest: u64) -> Result<Vec<u8>, PartError> {
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
    Ok(data)
}

/// Read the part at `path`, checking its size and digest against the manifest's,
/// and decode it for `net` (shards without their static connectivity: rebuild the
/// ones kept with [`Checkpoint::rebuild_statics`]); with it, the list of the
/// segments of its output ([`read_output`] reads them).
pub fn read(path: &Path, bytes: u64, digest: u64, net: &Network) -> Result<(Checkpoint, Vec<SegmentRef>), PartError> {
    let data = read_checked(path, bytes, digest)?;
    decode_named(&path.display().to_string(), &data, net)
}

/// The output that `segments` (a part's list) hold together, read from the
/// volume `dir`; each segment is checked against its size and digest.
pub fn read_output(dir: &Path, segments: &[SegmentRef]) -> Result<RunOutput, PartError> {
    let mut out: Option<RunOutput> = None;
    for s in segments {
        let rel = Path::new(&s.path);
        if !rel.components().all(|c| matches!(c, std::path::Component::Normal(_))) {
            let why = "not a path inside the checkpoint volume".to_string();
            return Err(PartError::Damaged { path: s.path.clone(), why });
        }
        let path = dir.join(rel);
        let data = read_checked(&path, s.bytes, s.digest)?;
        let next = decode_segment(&path.display().to_string(), &data)?;
        out = Some(match out {
            Some(acc) => acc.followed_by(next),
            None => next,
        });
    }
    Ok(out.unwrap_or_default())
}

/// Decode a part's bytes for `net` (`name` says where they came from in errors);
/// what [`read`] does once size and digest match. Bounded whatever the bytes are
/// (the fuzz target `part` feeds it anything).
pub fn decode_named(name: &str, data: &[u8], net: &Network) -> Result<(Checkpoint, Vec<SegmentRef>), PartError> {
    decode(data, net).map_err(|e| match e {
        Decoded::Damaged(why) => PartError::Damaged { path: name.to_string(), why },
        Decoded::Checkpoint(source) => PartError::Checkpoint { path: name.to_string(), source },
    })
}

/// Decode a segment's bytes (`name` says where they came from in errors).
pub fn decode_segment(name: &str, data: &[u8]) -> Result<RunOutput, PartError> {
    let damaged = |why: String| PartError::Damaged { path: name.to_string(), why };
    let body = data
        .strip_prefix(&SEGMENT_MAGIC[..])
        .ok_or_else(|| damaged("not a neuropil output segment (or another format version)".into()))?;
    postcard::from_bytes(body).map_err(|e| damaged(format!("the output: {e}")))
}

enum Decoded {
    Damaged(String),
    Checkpoint(CheckpointError),
}

fn decode(data: &[u8], net: &Network) -> Result<(Checkpoint, Vec<SegmentRef>), Decoded> {
    let short = || Decoded::Damaged("cut short".into());
    if data.len() < 16 || data[..8] != PART_MAGIC[..] {
        return Err(Decoded::Damaged("not a neuropil checkpoint part (or another format version)".into()));
    }
    let u64_at = |i: usize| data.get(i..i + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()));
    let cp_len = u64_at(8).ok_or_else(short)? as usize;
    let cp_end = 16usize.checked_add(cp_len).filter(|&e| e <= data.len()).ok_or_else(short)?;
    let state = Checkpoint::decode(&data[16..cp_end], net).map_err(Decoded::Checkpoint)?;
    let list_len = u64_at(cp_end).ok_or_else(short)? as usize;
    let sum = u64_at(cp_end + 8).ok_or_else(short)?;
    let list = data.get(cp_end + 16..).filter(|o| o.len() == list_len).ok_or_else(short)?;
    if checksum(list) != sum {
        return Err(Decoded::Damaged("the segment list's checksum does not match".into()));
    }
    let segments = postcard::from_bytes(list).map_err(|e| Decoded::Damaged(format!("the segment list: {e}")))?;
    Ok((state, segments))
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
        let dir = std::env::temp_dir().join(format!("neuropil-part-{}", std::process::id()));
        // Two segments: the output is what they hold together.
        let mut segments = Vec::new();
        for (i, (n, hash)) in [(7, 41), (5, 42)].into_iter().enumerate() {
            let out = RunOutput { spike_counts: vec![n], spike_hash: hash, ..Default::default() };
            let seg = encode_segment(&out);
            let rel = format!("x/out/{i}.bin");
            write_durably(&dir.join(&rel), &seg).unwrap();
            segments.push(SegmentRef { path: rel, bytes: seg.len() as u64, digest: digest(&seg) });
        }
        let bytes = encode(&state, &segments);
        let path = dir.join("x/part-0.bin");
        write_durably(&path, &bytes).unwrap();
        let d = digest(&bytes);
        let (cp, segs) = read(&path, bytes.len() as u64, d, &net).unwrap();
        assert_eq!((cp.shards.len(), &segs), (2, &segments));
        let o = read_output(&dir, &segs).unwrap();
        assert_eq!((o.spike_counts, o.spike_hash), (vec![12], 42));
        // A segment that is not what the part says, or outside the volume: refused.
        let mut wrong = segments.clone();
        wrong[1].digest ^= 1;
        let e = read_output(&dir, &wrong).unwrap_err().to_string();
        assert!(e.contains("out/1.bin") && e.contains("digest"), "{e}");
        wrong[1].path = "../elsewhere.bin".into();
        let e = read_output(&dir, &wrong).unwrap_err().to_string();
        assert!(e.contains("inside the checkpoint volume"), "{e}");
        // The manifest's size or digest does not match: refused, naming the file.
        let e = read(&path, bytes.len() as u64, d ^ 1, &net).unwrap_err().to_string();
        assert!(e.contains("part-0.bin") && e.contains("digest"), "{e}");
        let e = read(&path, 3, d, &net).unwrap_err().to_string();
        assert!(e.contains("the manifest says 3"), "{e}");
        // Damage inside the list (digest recomputed, as if the manifest were wrong too).
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
        assert!(decode_segment("s", b"NPSEG\x00\x00\x02").unwrap_err().to_string().contains("another format version"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

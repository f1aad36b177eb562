//! Checkpoint files: written atomically, read back with a size bound and checked
//! against the experiment they are resumed with.

use crate::run::Prepared;
use anyhow::{bail, Context as _, Result};
use neuropil_sim::embedded::Checkpoint;
use std::path::Path;

/// (Re)write `path` with `state` so that a reader sees the old file or the new one,
/// never a part: write a sibling, then rename it over.
pub fn write_atomic(path: &Path, state: &Checkpoint) -> Result<()> {
    let tmp = path.with_extension("bin.partial");
    std::fs::write(&tmp, state.to_bytes()).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Largest checkpoint file read back (a full-scale microcircuit's is 6.8 MB; plastic
/// networks carry their weights, 8 B per plastic synapse).
pub const MAX_CHECKPOINT_BYTES: u64 = 16 << 30;

/// Read a checkpoint for `p`'s network; errors name the file and the fix.
pub fn load_checkpoint(path: &Path, p: &Prepared) -> Result<Checkpoint> {
    let len = std::fs::metadata(path).with_context(|| format!("--resume {}", path.display()))?.len();
    if len > MAX_CHECKPOINT_BYTES {
        bail!("--resume {}: {len} bytes is more than the {MAX_CHECKPOINT_BYTES} a checkpoint may have", path.display());
    }
    let bytes = std::fs::read(path).with_context(|| format!("--resume {}", path.display()))?;
    let cp = Checkpoint::from_bytes(&bytes, &p.compiled.network)
        .map_err(|e| anyhow::anyhow!("--resume {}: {e}", path.display()))?;
    if cp.shards.len() != p.shards {
        bail!(
            "--resume {}: the checkpoint has {} shards; resume with --shards {}",
            path.display(),
            cp.shards.len(),
            cp.shards.len()
        );
    }
    Ok(cp)
}

#[cfg(test)]
mod tests {
    use neuropil_sim::embedded::{self, Checkpoint, CheckpointError};
    use neuropil_sim::Network;

    fn net(set: &[&str]) -> Network {
        let doc = include_str!("../../../examples/cerebellar_dopamine.toml");
        let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
        let exp = neuropil_spec::parse(doc, neuropil_spec::Format::Toml, &set).unwrap();
        neuropil_spec::compile(&exp, &neuropil_spec::Limits { memory_bytes: None }).unwrap().network
    }

    /// Found by `scripts/fuzz` (target `checkpoint`): a checkpoint with an intact
    /// checksum and the right network hash whose cerebellar module has another
    /// shape panicked the first time the module ran. It is refused at decode.
    #[test]
    fn a_checkpoint_whose_module_has_another_shape_is_refused() {
        let (net, other) = (net(&[]), net(&["cerebellum.cb.granule=[150]"]));
        let mut cp = embedded::build(&net, 2, 1);
        cp.modules = embedded::build(&other, 2, 1).modules;
        match Checkpoint::decode(&cp.to_bytes(), &net) {
            Err(CheckpointError::Corrupt(why)) => assert!(why.contains("cerebellar module 0"), "{why}"),
            other => panic!("decoded: {:?}", other.map(|_| ())),
        }
        cp.modules.clear();
        let e = Checkpoint::decode(&cp.to_bytes(), &net).map(|_| ()).unwrap_err();
        assert!(e.to_string().contains("0 cerebellar modules saved, the network has 1"), "{e}");
        // The checkpoint as built decodes.
        assert!(Checkpoint::decode(&embedded::build(&net, 2, 1).to_bytes(), &net).is_ok());
    }
}

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

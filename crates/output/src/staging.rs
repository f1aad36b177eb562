//! Output directories that are complete or absent.

use anyhow::{bail, Context as _, Result};
use std::path::{Path, PathBuf};

/// An output directory written in full or not at all: files go to a sibling
/// staging directory that replaces the target only when everything is written.
pub struct Staging {
    target: PathBuf,
    staging: PathBuf,
    done: bool,
}

impl Staging {
    /// Create the staging directory (fails early if the location is not writable,
    /// or if `target` exists and is not a neuropil output directory).
    pub fn new(target: &Path) -> Result<Staging> {
        if target.exists() {
            let is_ours = target.join("summary.json").exists()
                || std::fs::read_dir(target).map(|mut d| d.next().is_none()).unwrap_or(false);
            if !target.is_dir() || !is_ours {
                bail!(
                    "--out {}: exists and is not a neuropil output directory (no summary.json); choose another path",
                    target.display()
                );
            }
        }
        let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
        let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir(&staging).with_context(|| format!("creating {}", staging.display()))?;
        Ok(Staging { target: target.to_path_buf(), staging, done: false })
    }

    /// Where to write files.
    pub fn dir(&self) -> &Path {
        &self.staging
    }

    /// Replace the target with the staged files.
    pub fn commit(mut self) -> Result<()> {
        if self.target.exists() {
            std::fs::remove_dir_all(&self.target).with_context(|| format!("replacing {}", self.target.display()))?;
        }
        std::fs::rename(&self.staging, &self.target)
            .with_context(|| format!("moving results into {}", self.target.display()))?;
        self.done = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }
}

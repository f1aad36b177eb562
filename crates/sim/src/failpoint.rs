//! Test-only failpoints (in the spirit of TiKV's `fail-rs`): with the `failpoints`
//! feature, `NEUROPIL_FAILPOINTS` names model code that panics at a chosen epoch, so
//! that tests can check that a failing shard or cerebellar module reaches its
//! supervisor and fails the run with its name, without a hang or an abort.
//!
//! `NEUROPIL_FAILPOINTS=shard:3@40,module:0@12` makes shard 3 panic when it
//! advances epoch 40 and cerebellar module 0 when it takes in the spikes of epoch
//! 12 (epochs counted from step 0). `part:1@2` makes the cluster node of rank 1
//! die (abort, like kill -9) halfway through writing its second checkpoint part
//! ([`armed`] asks; the node does the dying). `start:1@1` makes the node of rank 1
//! start attempt 1 of a run (its first recovery or move) late, as a slow node
//! would, to open the window between two attempts. Without the feature, [`hit`] is empty,
//! [`armed`] false and the variable is ignored: release binaries carry no failpoints.

/// Where a failpoint can sit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    /// A shard advancing an epoch (by the shard's index among all shards).
    Shard,
    /// A cerebellar module taking in an epoch's spikes (by module index).
    Module,
    /// A cluster node writing its n-th checkpoint part (by rank; n from 1).
    Part,
    /// A cluster node starting attempt n of a run (by rank; n from 0).
    Start,
}

/// Whether a failpoint is set at (`site`, `index`, `at`).
#[cfg(feature = "failpoints")]
pub fn armed(site: Site, index: u32, at: u64) -> bool {
    armed_list().iter().any(|&(s, i, e)| s == site && i == index && e == at)
}

/// Whether a failpoint is set at (`site`, `index`, `at`).
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn armed(_site: Site, _index: u32, _at: u64) -> bool {
    false
}

/// Panic if a failpoint is set at (`site`, `index`, `epoch`).
#[cfg(feature = "failpoints")]
#[inline]
pub fn hit(site: Site, index: u32, epoch: u64) {
    if armed(site, index, epoch) {
        let name = match site {
            Site::Shard => "shard",
            Site::Module => "module",
            Site::Part => "part",
            Site::Start => "start",
        };
        panic!("failpoint {name}:{index}@{epoch}");
    }
}

/// Panic if a failpoint is set at (`site`, `index`, `epoch`).
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_site: Site, _index: u32, _epoch: u64) {}

#[cfg(feature = "failpoints")]
fn armed_list() -> &'static [(Site, u32, u64)] {
    static ARMED: std::sync::OnceLock<Vec<(Site, u32, u64)>> = std::sync::OnceLock::new();
    ARMED.get_or_init(|| std::env::var("NEUROPIL_FAILPOINTS").map(|v| parse(&v)).unwrap_or_default())
}

/// `site:index@epoch` items, comma-separated; malformed items are ignored (this is
/// test scaffolding, read only with the feature).
#[cfg(any(feature = "failpoints", test))]
fn parse(spec: &str) -> Vec<(Site, u32, u64)> {
    spec.split(',')
        .filter_map(|item| {
            let (site, rest) = item.trim().split_once(':')?;
            let (index, epoch) = rest.split_once('@')?;
            let site = match site {
                "shard" => Site::Shard,
                "module" => Site::Module,
                "part" => Site::Part,
                "start" => Site::Start,
                _ => return None,
            };
            Some((site, index.parse().ok()?, epoch.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn failpoints_parse_and_ignore_what_they_do_not_know() {
        use super::Site::*;
        assert_eq!(
            super::parse("shard:3@40, module:0@12,part:1@2,start:1@1"),
            [(Shard, 3, 40), (Module, 0, 12), (Part, 1, 2), (Start, 1, 1)]
        );
        assert_eq!(super::parse("disk:1@2,shard:x@1,shard:1"), []);
    }
}

//! Coordinated checkpoints on the node's side: writing this node's part at the
//! stretch boundaries the assignment asks for, and restoring its shards (and its
//! share of the output so far) from the parts of the last complete checkpoint.

use super::*;

/// Where and how often this node writes its part of the run's coordinated
/// checkpoints, and its share of the output so far (what a part carries).
pub(crate) struct Parts<'a> {
    pub(crate) dir: &'a Path,
    pub(crate) experiment: &'a str,
    pub(crate) attempt: u32,
    pub(crate) rank: usize,
    /// Steps between checkpoints (0: only when asked).
    pub(crate) every: u64,
    /// A checkpoint asked for at this step (u64::MAX: none).
    pub(crate) asked: Arc<AtomicU64>,
    /// The step the last stretch ended at.
    pub(crate) last_step: u64,
    /// Parts written in this attempt.
    pub(crate) written: u64,
    /// This node's share of the output not yet in a segment (after a recovery, the
    /// first one also holds the output before the checkpoint resumed from).
    pub(crate) unsaved: Option<RunOutput>,
    /// The segments written in this attempt, in order.
    pub(crate) segments: Vec<neuropil_runtime::part::SegmentRef>,
}

impl Parts<'_> {
    /// Join a stretch's output; at a checkpoint boundary (not the run's end), write
    /// the part durably and say what was written. Nothing is written if the volume
    /// fails (the run goes on; its last complete checkpoint stays the one before).
    pub(crate) fn take(
        &mut self,
        state: &Checkpoint,
        part: &RunOutput,
        recorder: bool,
        total: u64,
        m: &NodeMetrics,
    ) -> Option<CheckpointPart> {
        // The recording node's part carries the spikes; the others' do not copy
        // them. Module samples are in the part of the node that ran the module.
        let share = if recorder {
            part.clone()
        } else {
            RunOutput {
                spikes: Vec::new(),
                cerebellum: part.cerebellum.clone(),
                spike_counts: part.spike_counts.clone(),
                counted_spikes: part.counted_spikes.clone(),
                spike_hash: part.spike_hash,
                samples: part.samples.clone(),
                weights: part.weights.clone(),
                hardware: part.hardware.clone(),
                stopped: part.stopped,
                stats: part.stats,
            }
        };
        let unsaved = match self.unsaved.take() {
            Some(acc) => acc.followed_by(share),
            None => share,
        };
        let unsaved = self.unsaved.insert(unsaved);
        let step = state.step();
        let before = std::mem::replace(&mut self.last_step, step);
        let periodic = self.every > 0 && step / self.every != before / self.every;
        let at = self.asked.load(Ordering::Relaxed);
        let asked = at != u64::MAX && before < at && at <= step;
        if step >= total || !(periodic || asked) {
            return None;
        }
        let t = Instant::now();
        // What is new since the last checkpoint goes into a segment of its own; the
        // part lists them all. A segment whose part then fails to be written is
        // still whole: the next part lists it.
        unsaved.weights.clear(); // a snapshot, not history: restores start without
        let segment = neuropil_runtime::part::encode_segment(unsaved);
        let seg_rel = format!("{}/out/{step:012}.a{}.r{}.bin", self.experiment, self.attempt, self.rank);
        if let Err(e) = neuropil_runtime::part::write_durably(&self.dir.join(&seg_rel), &segment) {
            tracing::warn!(segment = %seg_rel, error = %e, "cannot write an output segment; the run goes on");
            return None;
        }
        self.unsaved = None;
        self.segments.push(neuropil_runtime::part::SegmentRef {
            path: seg_rel,
            bytes: segment.len() as u64,
            digest: neuropil_runtime::part::digest(&segment),
        });
        let bytes = neuropil_runtime::part::encode(state, &self.segments);
        let rel = format!("{}/{step:012}.a{}/part-{}.bin", self.experiment, self.attempt, self.rank);
        self.written += 1;
        if neuropil_sim::failpoint::armed(neuropil_sim::failpoint::Site::Part, self.rank as u32, self.written) {
            // Test builds only: die as kill -9 would, half a part on the volume.
            let tmp = self.dir.join(&rel).with_extension("partial");
            let _ = std::fs::create_dir_all(tmp.parent().unwrap_or(self.dir));
            let _ = std::fs::write(&tmp, &bytes[..bytes.len() / 2]);
            std::process::abort();
        }
        if let Err(e) = neuropil_runtime::part::write_durably(&self.dir.join(&rel), &bytes) {
            tracing::warn!(part = %rel, error = %e, "cannot write a checkpoint part; the run goes on");
            return None;
        }
        let write_s = t.elapsed().as_secs_f64();
        m.checkpoint_bytes.set((bytes.len() + segment.len()) as i64);
        m.checkpoint_duration.observe(write_s);
        tracing::info!(part = %rel, bytes = bytes.len(), segment_bytes = segment.len(), write_s, "checkpoint part written");
        Some(CheckpointPart {
            step,
            path: rel,
            bytes: bytes.len() as u64,
            digest: neuropil_runtime::part::digest(&bytes),
            write_s,
        })
    }
}

/// Restore this node's shards `mine` of the checkpoint `manifest` from its parts
/// on the volume `dir`, with the state every node holds alike (from rank 0's part),
/// the cerebellar modules and the fabric's link state (from the parts of the nodes
/// that ran them: a node that runs one now, `singles_here`, reads every part), and
/// this node's share of the output before it:
/// for the recording node (rank 0) the spikes, every part's samples and module
/// samples; for the others the counts.
pub(crate) fn restore(
    dir: &Path,
    manifest: &Manifest,
    net: &Network,
    mine: &[usize],
    threads: usize,
    recorder: bool,
    singles_here: bool,
) -> Result<(Checkpoint, RunOutput), String> {
    let at = manifest.step as f64 * net.dt_ms;
    let mut parts = manifest.parts.clone();
    parts.sort_by_key(|p| p.rank);
    let (mut base, mut prefix, mut shards, mut samples) = (None, RunOutput::default(), Vec::new(), Vec::new());
    let mut modules: Vec<Option<ModuleRun>> = vec![None; net.cerebella.len()];
    let mut module_samples = Vec::new();
    let mut fabric_state = Vec::new();
    for p in &parts {
        let holds_mine = p.shards.iter().any(|&s| mine.contains(&(s as usize)));
        if !(p.rank == 0 || holds_mine || recorder || singles_here) {
            continue;
        }
        let rel = Path::new(&p.path);
        if rel.is_absolute() || rel.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            return Err(format!("checkpoint part {:?}: not a path inside the checkpoint volume", p.path));
        }
        let failed = |e: neuropil_runtime::part::PartError| {
            format!("restoring the checkpoint at {at} ms (part of {}): {e}", p.node)
        };
        let (mut cp, segments) =
            neuropil_runtime::part::read(&dir.join(rel), p.bytes, p.digest, net).map_err(failed)?;
        shards.extend(cp.shards.drain(..).filter(|s| mine.contains(&(s.index() as usize))));
        for (slot, m) in modules.iter_mut().zip(cp.modules.iter_mut()) {
            if let Some(m) = m.take() {
                *slot = Some(m);
            }
        }
        // Only the node that ran the fabric saves its state.
        if !cp.fabric_state.is_empty() {
            fabric_state = std::mem::take(&mut cp.fabric_state);
        }
        // Rank 0's output has what every node counts; the others' only their samples.
        let out = match recorder || p.rank == 0 {
            true => neuropil_runtime::part::read_output(dir, &segments).map_err(failed)?,
            false => RunOutput::default(),
        };
        if recorder {
            samples.extend(out.samples.iter().cloned());
            module_samples.extend(out.cerebellum.iter().cloned());
        }
        if p.rank == 0 {
            prefix = out;
            base = Some(cp);
        }
    }
    let mut start = base.ok_or_else(|| format!("the checkpoint at {at} ms has no part of rank 0"))?;
    if shards.len() != mine.len() {
        return Err(format!(
            "the checkpoint at {at} ms holds {} of this node's {} shards; its parts are incomplete",
            shards.len(),
            mine.len()
        ));
    }
    shards.sort_by_key(|s| mine.iter().position(|&i| i == s.index() as usize));
    start.shards = shards;
    start.modules = modules;
    start.fabric_state = if singles_here { fabric_state } else { Vec::new() };
    start.rebuild_statics(net, threads).map_err(|e| format!("restoring the checkpoint at {at} ms: {e}"))?;
    if recorder {
        samples.sort_by_key(|a| (a.step, a.sampler, a.gid, a.var));
        prefix.samples = samples;
        module_samples.sort_by_key(|s| (s.step, s.module));
        prefix.cerebellum = module_samples;
    } else {
        prefix.spikes.clear();
        prefix.cerebellum.clear();
        prefix.samples.clear();
    }
    prefix.weights.clear();
    Ok((start, prefix))
}

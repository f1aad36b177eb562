//! Following a run to its end: an attempt at a time, moved (recovered, drained,
//! rescaled) from its last complete checkpoint when a node goes or comes.

use super::*;

/// Follow a run on all its nodes: progress into etcd (a few times a second) and
/// metrics, coordinated checkpoints into its manifest; when a node is lost, roll
/// the run back to its last complete checkpoint on the nodes left (or that
/// joined); at the end, combine the nodes' results and write them out.
pub(crate) async fn collect(control: Arc<Control>, mut a: Assignment) {
    let mut recoveries: Vec<std::time::Instant> = Vec::new();
    // Nodes this run lost: their records stay in etcd until their leases lapse,
    // and until then they must not look like nodes that joined.
    let mut gone: Vec<String> = Vec::new();
    let (outcome, actors) = loop {
        let mut actors = vec![Vec::new(); a.members.len()];
        forget_returned(&control, &mut gone).await;
        let outcome = follow(&control, &a, &mut actors, &gone).await;
        match outcome.map_err(|e| e.downcast::<Move>()) {
            Err(Ok(lost)) => {
                if lost.cause == Cause::NodeLost {
                    gone.extend(lost.leave.iter().cloned());
                }
                forget_returned(&control, &mut gone).await;
                match recover(&control, &a, &lost, &mut recoveries, &gone).await {
                    Ok(next) => a = next,
                    Err(why) => break (Err(anyhow::anyhow!("{lost}; {why}")), actors),
                }
            }
            Err(Err(e)) => break (Err(e), actors),
            Ok(done) => break (Ok(done), actors),
        }
    };
    let mut c = control.etcd.clone();
    let Ok(Some(mut rec)) = etcd::get_json::<ExperimentRecord>(&mut c, &experiment_key(&a.id)).await else { return };
    rec.actors = all_actors(&actors, neuropil_cluster::packed::stored_len(&rec.document));
    let cancelled = c.get(cancel_key(&a.id), None).await.map(|r| r.count() > 0).unwrap_or(false);
    match outcome {
        Ok(done) => {
            rec.state = if cancelled { State::Cancelled } else { State::Succeeded };
            rec.message =
                if cancelled { "cancelled; results up to the stop were written".into() } else { String::new() };
            rec.spike_hash = Some(done.spike_hash);
            rec.synapses = done.synapses;
            rec.spikes = done.populations.iter().map(|p| p.spikes).sum();
            rec.populations = done.populations;
            rec.bio_time_ms = done.bio_time_ms;
            rec.rtf = done.rtf;
            rec.output_dir = done.output_dir;
        }
        Err(e) => {
            rec.state = State::Failed;
            rec.message = format!("{e:#}");
            // Stop whatever still runs.
            let _ = c.put(cancel_key(&a.id), "failed", None).await;
        }
    }
    rec.log(match rec.state {
        State::Failed => format!("failed: {}", rec.message),
        s => s.name().to_string(),
    });
    // The run is over (its results are written): its checkpoints have served.
    // Gone before the record says so.
    let _ = c.delete(checkpoints_key(&a.id), None).await;
    let _ = c.delete(neuropil_cluster::checkpoint_request_key(&a.id), None).await;
    for attempt in 0..=a.attempt {
        let _ = c.delete(neuropil_cluster::checkpoint_at_key(&neuropil_cluster::run_id(&a.id, attempt)), None).await;
    }
    if let Some(dir) = &control.checkpoint_dir {
        let _ = std::fs::remove_dir_all(dir.join(&a.id));
    }
    let elapsed = now_unix_ms().saturating_sub(rec.submitted_unix_ms) as f64 / 1000.0;
    control.metrics.run_duration.with_label_values(&[rec.state.name()]).observe(elapsed);
    let _ = etcd::put_json(&mut c, &experiment_key(&a.id), &rec, None).await;
    let _ = c.delete(run_key(&a.id), None).await;
    let _ = c.delete(cancel_key(&a.id), None).await;
    for attempt in 0..a.attempt {
        let _ = c.delete(neuropil_cluster::stop_key(&neuropil_cluster::run_id(&a.id, attempt)), None).await;
    }
    control.metrics.shards_per_node.reset();
    control.metrics.checkpoint_bytes.set(0);
}

/// Why an attempt of a run ends so that the run goes on from its last complete
/// checkpoint with other nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) enum Cause {
    /// Nodes were lost: their run streams broke or ended, or their leases lapsed.
    #[default]
    NodeLost,
    /// A node drains (SIGTERM): its shards move at a checkpoint taken for it.
    Drain,
    /// A node joined: the shards spread over it at the next checkpoint.
    Rescale,
}

impl Cause {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Cause::NodeLost => "node_lost",
            Cause::Drain => "drain",
            Cause::Rescale => "rescale",
        }
    }
}

/// An attempt of a run ended and the run moves: from its last complete
/// checkpoint, onto the live nodes but `leave`.
#[derive(Debug, Clone, Default, thiserror::Error)]
#[error("{message}")]
pub(crate) struct Move {
    pub(crate) cause: Cause,
    pub(crate) message: String,
    /// Nodes to leave out of the next placement (lost or draining).
    pub(crate) leave: Vec<String>,
}

/// Roll `a` back to its last complete checkpoint and place it again on the live
/// nodes other than the lost ones: the next attempt's assignment (published), or
/// why the run cannot recover.
pub(crate) async fn recover(
    control: &Control,
    a: &Assignment,
    lost: &Move,
    recoveries: &mut Vec<std::time::Instant>,
    gone: &[String],
) -> Result<Assignment, String> {
    let mut c = control.etcd.clone();
    let etcd_err = |e: anyhow::Error| format!("etcd: {e:#}");
    if c.get(cancel_key(&a.id), None).await.map(|r| r.count() > 0).unwrap_or(false) {
        return Err("it was being cancelled".into());
    }
    let checkpoints: Checkpoints =
        etcd::get_json(&mut c, &checkpoints_key(&a.id)).await.map_err(etcd_err)?.unwrap_or_default();
    let Some(manifest) = checkpoints.complete.last().cloned() else {
        return Err("no complete checkpoint to recover from yet (nodes write them with --checkpoint-dir, every \
                    --checkpoint-interval-ms of the control)"
            .into());
    };
    if lost.cause == Cause::NodeLost {
        recoveries.retain(|t| t.elapsed() < config::RECOVERY_WINDOW);
        if recoveries.len() as u32 >= control.max_recoveries {
            return Err(format!(
                "{} recoveries within {} minutes already (--max-recoveries): giving up",
                recoveries.len(),
                config::RECOVERY_WINDOW.as_secs() / 60
            ));
        }
        recoveries.push(std::time::Instant::now());
    }
    // Whatever is left of this attempt stops (the survivors have mostly stopped
    // already: their exchange with the lost node broke).
    let _ = c.put(neuropil_cluster::stop_key(&a.run_id()), "recovering", None).await;
    let lost_ids = &lost.leave;
    let Some(mut rec) = etcd::get_json::<ExperimentRecord>(&mut c, &experiment_key(&a.id)).await.map_err(etcd_err)?
    else {
        return Err("its record disappeared from etcd".into());
    };
    let at_ms = manifest.step as f64 * dt_of(a);
    rec.state = State::Recovering;
    rec.log(lost.message.clone());
    if lost.cause == Cause::NodeLost {
        rec.recoveries += 1;
        rec.message = format!("{}; rolling back to the checkpoint at {at_ms} ms", lost.message);
        rec.log(format!("recovering: rolling back to the checkpoint at {at_ms} ms"));
    } else {
        rec.message = format!("{}; moving from the checkpoint at {at_ms} ms", lost.message);
    }
    etcd::put_json(&mut c, &experiment_key(&a.id), &rec, None).await.map_err(etcd_err)?;
    control.metrics.recoveries.with_label_values(&[lost.cause.label()]).inc();
    tracing::warn!(experiment = %a.id, attempt = a.attempt, leave = ?lost_ids, at_ms, cause = lost.cause.label(), "moving the run");
    // The live nodes, without the lost ones (whose records stay until their
    // leases lapse); a node that joined meanwhile takes part.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let nodes = loop {
        let nodes: Vec<NodeRecord> = match control.nodes().await {
            Ok(n) => n.into_iter().filter(|n| !lost_ids.contains(&n.id) && !gone.contains(&n.id)).collect(),
            Err(e) => return Err(e.to_string()),
        };
        if !nodes.is_empty() {
            break nodes;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err("no live node to recover on within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let members = place(&nodes, &shard_bytes_of(a, rec.estimated_bytes))?;
    let (placement, said) = a.placement.again(&members);
    let next = Assignment { attempt: a.attempt + 1, resume: Some(manifest), members, placement, ..a.clone() };
    rec.state = State::Running;
    rec.message = String::new();
    rec.nodes = next.members.iter().map(|m| m.node.clone()).collect();
    rec.log(format!("resumed from {at_ms} ms on {} (attempt {})", rec.nodes.join(", "), next.attempt + 1));
    if !said.is_empty() {
        rec.log(said.join("; "));
    }
    etcd::put_json(&mut c, &experiment_key(&a.id), &rec, None).await.map_err(etcd_err)?;
    etcd::put_json(&mut c, &run_key(&a.id), &next, None).await.map_err(etcd_err)?;
    let m = &control.metrics;
    m.shards_per_node.reset();
    for mem in &next.members {
        m.shards_per_node.with_label_values(&[mem.node.as_str()]).set(mem.shards.len() as i64);
    }
    Ok(next)
}

/// Forget the lost nodes whose records have left etcd (their leases lapsed): if
/// they register again, they are new nodes.
pub(crate) async fn forget_returned(control: &Control, gone: &mut Vec<String>) {
    if gone.is_empty() {
        return;
    }
    let mut c = control.etcd.clone();
    let Ok(records) = etcd::list_json::<NodeRecord>(&mut c, &format!("{PREFIX}nodes/")).await else { return };
    gone.retain(|id| records.iter().any(|r| &r.id == id));
}

/// The time step of an assignment's experiment, ms.
pub(crate) fn dt_of(a: &Assignment) -> f64 {
    neuropil_cluster::format_of(&a.format)
        .ok()
        .and_then(|f| neuropil_spec::parse(&a.document, f, &a.set).ok())
        .map_or(0.1, |e| e.run.dt_ms)
}

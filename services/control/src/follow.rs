//! One attempt of a run: every node's WatchRun stream, progress into etcd and
//! metrics, coordinated checkpoints into the manifest, lost and partitioned nodes.

use super::*;

/// Bytes of an experiment's record (document included) up to which actors are
/// listed in it: etcd takes requests up to 1.5 MiB, and the record is rewritten a
/// few times a second. Beyond it, `status` lists the first ones, in rank order.
pub(crate) const RECORD_BUDGET_BYTES: usize = 1 << 20;

pub(crate) fn all_actors(per_rank: &[Vec<ActorRecord>], document_bytes: usize) -> Vec<ActorRecord> {
    let mut left = RECORD_BUDGET_BYTES.saturating_sub(document_bytes);
    per_rank
        .iter()
        .flatten()
        .take_while(|a| {
            let size = a.kind.len() + a.name.len() + a.node.len() + a.state.len() + 48; // JSON around them
            left = left.saturating_sub(size);
            left > 0
        })
        .cloned()
        .collect()
}

/// `actors[rank]`: the actors each node last reported.
pub(crate) async fn follow(
    control: &Control,
    a: &Assignment,
    actors: &mut [Vec<ActorRecord>],
    gone: &[String],
) -> Result<Finished> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(usize, Result<run_event::Event, String>)>(256);
    for (rank, m) in a.members.iter().enumerate() {
        let (tx, addr, run, tls) = (tx.clone(), m.addr.clone(), a.run_id(), control.node_tls.clone());
        let token = control.cluster_token.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            let mut stream = loop {
                let attempt = async {
                    let endpoint = tls.endpoint(&addr).map_err(|e| format!("{e:#}"))?;
                    let channel = endpoint.connect().await.map_err(|e| e.to_string())?;
                    let mut client = NodeServiceClient::new(channel).max_decoding_message_size(usize::MAX);
                    let req = token.request(WatchRunRequest { run: run.clone() });
                    client.watch_run(req).await.map_err(|s| s.message().to_string())
                };
                match attempt.await {
                    Ok(s) => break s.into_inner(),
                    Err(e) if tokio::time::Instant::now() >= deadline => {
                        let _ = tx.send((rank, Err(format!("unreachable at {addr}: {e}")))).await;
                        return;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            };
            loop {
                match stream.message().await {
                    Ok(Some(ev)) => {
                        let Some(ev) = ev.event else { continue };
                        let end = matches!(ev, run_event::Event::Result(_) | run_event::Event::Error(_));
                        if tx.send((rank, Ok(ev))).await.is_err() || end {
                            return;
                        }
                    }
                    // The node itself is gone (killed, its host lost) or cut off.
                    Ok(None) => {
                        let _ = tx.send((rank, Err(format!("lost: its run stream at {addr} ended early")))).await;
                        return;
                    }
                    Err(s) => {
                        let why = format!("lost: its run stream at {addr} broke ({})", s.message());
                        let _ = tx.send((rank, Err(why))).await;
                        return;
                    }
                }
            }
        });
    }
    drop(tx);
    let mut results: Vec<Option<Vec<u8>>> = vec![None; a.members.len()];
    let mut c = control.etcd.clone();
    let mut last_write = tokio::time::Instant::now();
    // Parsed once: progress events arrive every 50 ms.
    let (names, dt): (Vec<String>, f64) = {
        let exp = neuropil_spec::parse(
            &a.document,
            neuropil_cluster::format_of(&a.format).map_err(anyhow::Error::msg)?,
            &a.set,
        )?;
        let names: Vec<String> = exp.populations.iter().map(|p| p.name.clone()).collect();
        for (name, n) in names.iter().zip(neuropil_spec::population_sizes(&exp)) {
            control.metrics.population_neurons.with_label_values(&[name.as_str()]).set(n as i64);
        }
        (names, exp.run.dt_ms)
    };
    let n = a.members.len();
    let mut ended = vec![false; n];
    // The first failure, the ranks whose streams broke, and how long to wait for
    // the others to end (they stop at the same epoch, or their exchange breaks).
    let (mut failure, mut lost, mut grace, mut stopping) = (None::<String>, Vec::new(), None, false);
    // Each rank's last checkpoint part, and the last complete checkpoint.
    let mut parts: Vec<Option<neuropil_proto::v1::CheckpointPart>> = vec![None; n];
    // What each rank last said it waits for: (peer node, seconds, when it said so).
    let mut waits: Vec<Option<(String, f64, tokio::time::Instant)>> = vec![None; n];
    let mut last_complete = a.resume.as_ref().map_or(0, |m| m.step);
    // How far the run is (absolute step) and its wall time per step; a checkpoint
    // asked for (drain, a user's request) at a step, and the draining nodes.
    let (mut latest_step, mut wall_per_step) = (a.resume.as_ref().map_or(0, |m| m.step), 0.0f64);
    let (mut asked, mut drain_at, mut draining) = (None::<u64>, None::<u64>, Vec::<String>::new());
    let ask = |latest: u64, wall_per_step: f64| {
        // Far enough ahead that every node hears of it before it gets there: 300
        // ms of biological time, and at least half a second of wall time.
        let bio = (300.0 / dt).ceil() as u64;
        let wall = if wall_per_step > 0.0 { (0.5 / wall_per_step).ceil() as u64 } else { 0 };
        latest + bio.max(wall)
    };
    // A node that stops answering (frozen, cut off) keeps its stream open: its
    // lease lapsing in etcd is what says it is gone.
    let mut heartbeat = tokio::time::interval(Duration::from_secs(1));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let far = tokio::time::Instant::now() + Duration::from_secs(3600);
        let next = tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => Some(ev),
                None => break,
            },
            _ = heartbeat.tick() => None,
            _ = tokio::time::sleep_until(grace.unwrap_or(far)), if grace.is_some() => break,
        };
        match next {
            // A node already given up for lost (its lease lapsed) that speaks again.
            Some((rank, _)) if lost.contains(&rank) => continue,
            Some((rank, ev)) => {
                let node = &a.members[rank].node;
                match ev {
                    Err(e) => {
                        ended[rank] = true;
                        lost.push(rank);
                        failure.get_or_insert(format!("{node} (rank {rank}) {e}"));
                    }
                    Ok(run_event::Event::Error(e)) => {
                        ended[rank] = true;
                        failure.get_or_insert(format!("{node} (rank {rank}): {e}"));
                    }
                    Ok(run_event::Event::Result(bytes)) => {
                        ended[rank] = true;
                        results[rank] = Some(bytes);
                    }
                    Ok(run_event::Event::Progress(p)) => {
                        waits[rank] = (!p.waiting_on.is_empty())
                            .then(|| (p.waiting_on.clone(), p.waiting_s, tokio::time::Instant::now()));
                        if let Some(part) = &p.checkpoint {
                            if parts[rank].as_ref().is_none_or(|old| old.step < part.step) {
                                parts[rank] = Some(part.clone());
                            }
                            let step = part.step;
                            if step > last_complete && parts.iter().all(|x| x.as_ref().is_some_and(|x| x.step == step))
                            {
                                // etcd away: tried again with the next progress event.
                                if let Err(e) = checkpointed(control, a, manifest_of(a, &parts), dt).await {
                                    tracing::warn!(experiment = %a.id, error = %format!("{e:#}"), "cannot record a checkpoint");
                                    continue;
                                }
                                last_complete = step;
                                if asked.is_some_and(|x| step >= x) {
                                    asked = None;
                                    let _ = c.delete(neuropil_cluster::checkpoint_at_key(&a.run_id()), None).await;
                                }
                                if let Some(mv) = moves_after(control, a, step, drain_at, &draining, gone).await {
                                    let _ =
                                        c.put(neuropil_cluster::stop_key(&a.run_id()), mv.cause.label(), None).await;
                                    return Err(mv.into());
                                }
                            }
                        }
                        actors[rank] = p.actors.iter().map(ActorRecord::from_proto).collect();
                        if rank == 0 && p.steps_done > latest_step {
                            let start = a.resume.as_ref().map_or(0, |m| m.step);
                            latest_step = p.steps_done;
                            wall_per_step = p.wall_s / (latest_step - start).max(1) as f64;
                        }
                        if rank == 0 && failure.is_none() {
                            // etcd away: progress is written again when it is back.
                            let r = follow_progress(control, a, &mut c, &mut last_write, &names, dt, &p, actors).await;
                            if let Err(e) = r {
                                tracing::debug!(experiment = %a.id, error = %format!("{e:#}"), "cannot write progress");
                            }
                        }
                    }
                    Ok(_) => {}
                }
            }
            None => {
                // A user's request for a checkpoint now.
                let request = neuropil_cluster::checkpoint_request_key(&a.id);
                let wanted = c.get(request.clone(), None).await.map(|r| r.count() > 0).unwrap_or(false);
                // A checkpoint asked for that some node passed before it heard of it.
                let missed = asked.is_some_and(|x| last_complete < x && latest_step > x + (300.0 / dt) as u64);
                if (wanted && asked.is_none()) || missed {
                    let x = ask(latest_step, wall_per_step);
                    if c.put(neuropil_cluster::checkpoint_at_key(&a.run_id()), x.to_string(), None).await.is_ok() {
                        asked = Some(x);
                        if drain_at.is_some() {
                            drain_at = Some(x);
                        }
                    }
                }
                if wanted {
                    let _ = c.delete(request, None).await;
                }
                for (rank, m) in a.members.iter().enumerate() {
                    if ended[rank] {
                        continue;
                    }
                    // etcd itself away is not a lost node.
                    let Ok(record) = etcd::get_json::<NodeRecord>(&mut c, &neuropil_cluster::node_key(&m.node)).await
                    else {
                        continue;
                    };
                    if record.as_ref().is_none_or(|r| r.addr != m.addr) {
                        ended[rank] = true;
                        lost.push(rank);
                        failure.get_or_insert(format!(
                            "{} (rank {rank}) lost: its etcd lease lapsed (it stopped answering)",
                            m.node
                        ));
                    } else if record.is_some_and(|r| r.draining) && !draining.contains(&m.node) {
                        // Shutting down: a checkpoint for it, then its shards move.
                        draining.push(m.node.clone());
                        let x = match asked {
                            Some(x) => x,
                            None => ask(latest_step, wall_per_step),
                        };
                        if c.put(neuropil_cluster::checkpoint_at_key(&a.run_id()), x.to_string(), None).await.is_ok() {
                            asked = Some(x);
                            drain_at = Some(x);
                        }
                    }
                }
                if lost.is_empty() && failure.is_none() {
                    if let Some((victim, other, s)) = partitioned(a, &waits, control.peer_stall) {
                        ended[victim] = true;
                        lost.push(victim);
                        failure.get_or_insert(format!(
                            "{} (rank {victim}) lost: it and {} (rank {other}) cannot reach each other (each has \
                             waited {s:.0} s for the other's epoch message while both still reach etcd)",
                            a.members[victim].node, a.members[other].node
                        ));
                    }
                }
            }
        }
        if !lost.is_empty() && !stopping {
            // The attempt cannot finish: the others stop now instead of waiting
            // for the lost node until their exchange times out.
            stopping = true;
            let _ = c.put(neuropil_cluster::stop_key(&a.run_id()), "a node was lost", None).await;
        }
        if ended.iter().all(|e| *e) {
            break;
        }
        if failure.is_some() && grace.is_none() {
            grace = Some(tokio::time::Instant::now() + Duration::from_secs(5));
        }
    }
    if let Some(first) = failure {
        if !lost.is_empty() {
            // The lost node's own words where they came first: "node-1 (rank 1) lost: ...".
            let message = if first.contains(" lost: ") || first.contains(" unreachable ") {
                first
            } else {
                let names: Vec<String> = lost.iter().map(|&r| format!("{} (rank {r})", a.members[r].node)).collect();
                format!("{} lost ({first})", names.join(", "))
            };
            let leave = lost.iter().map(|&r| a.members[r].node.clone()).collect();
            return Err(Move { cause: Cause::NodeLost, message, leave }.into());
        }
        anyhow::bail!(first);
    }
    if !results.iter().all(Option::is_some) {
        anyhow::bail!("a node's run stream ended without results");
    }
    let parts: Vec<RunOutput> = results
        .into_iter()
        .enumerate()
        .map(|(rank, b)| {
            postcard::from_bytes(&b.unwrap_or_default())
                .with_context(|| format!("decoding the results of {}", a.members[rank].node))
        })
        .collect::<Result<_>>()?;
    let out = embedded::combine_parts(parts);
    let data_dir = control.data_dir.clone();
    let a2 = a.clone();
    // Writing parquet is blocking work.
    tokio::task::spawn_blocking(move || write_results(&data_dir, &a2, out)).await?
}

/// After the checkpoint at `step` completed: whether the run moves now — off
/// draining nodes (once the checkpoint asked for them is there), or onto nodes
/// that joined (when they would get shards).
pub(crate) async fn moves_after(
    control: &Control,
    a: &Assignment,
    step: u64,
    drain_at: Option<u64>,
    draining: &[String],
    gone: &[String],
) -> Option<Move> {
    if drain_at.is_some_and(|x| step >= x) && !draining.is_empty() {
        return Some(Move {
            cause: Cause::Drain,
            message: format!("{} drains (SIGTERM): its shards move to the other nodes", draining.join(", ")),
            leave: draining.to_vec(),
        });
    }
    let mut nodes = control.nodes().await.ok()?;
    nodes.retain(|n| !gone.contains(&n.id));
    let members: Vec<&str> = a.members.iter().map(|m| m.node.as_str()).collect();
    let joined: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).filter(|n| !members.contains(n)).collect();
    if joined.is_empty() {
        return None;
    }
    let mut c = control.etcd.clone();
    let rec = etcd::get_json::<ExperimentRecord>(&mut c, &experiment_key(&a.id)).await.ok()??;
    let placed = place(&nodes, &shard_bytes_of(a, rec.estimated_bytes)).ok()?;
    let mut now: Vec<&str> = placed.iter().map(|m| m.node.as_str()).collect();
    let mut before = members.clone();
    now.sort();
    before.sort();
    (now != before).then(|| Move {
        cause: Cause::Rescale,
        message: format!("{} joined: the shards spread over {} nodes", joined.join(", "), now.len()),
        leave: vec![],
    })
}

/// The manifest of the checkpoint whose parts are `parts` (one per rank, all at
/// the same step).
pub(crate) fn manifest_of(a: &Assignment, parts: &[Option<neuropil_proto::v1::CheckpointPart>]) -> Manifest {
    Manifest {
        step: parts.iter().flatten().next().map_or(0, |p| p.step),
        attempt: a.attempt,
        parts: parts
            .iter()
            .flatten()
            .zip(&a.members)
            .enumerate()
            .map(|(r, (x, m))| PartRef {
                rank: r as u32,
                node: m.node.clone(),
                shards: m.shards.clone(),
                path: x.path.clone(),
                bytes: x.bytes,
                digest: x.digest,
            })
            .collect(),
    }
}

/// Two ranks that have each waited `stall` or longer for the other's epoch message
/// (each has sent its own: the exchange sends before it receives) cannot reach
/// each other. The one of the pair more ranks wait for leaves the run (the
/// higher rank on a tie); returns (it, the other, the shorter wait in s).
pub(crate) fn partitioned(
    a: &Assignment,
    waits: &[Option<(String, f64, tokio::time::Instant)>],
    stall: Duration,
) -> Option<(usize, usize, f64)> {
    let rank_of = |node: &str| a.members.iter().position(|m| m.node == node);
    let stalled: Vec<Option<(usize, f64)>> = waits
        .iter()
        .map(|w| {
            let (peer, s, at) = w.as_ref()?;
            let s = s + at.elapsed().as_secs_f64();
            (s >= stall.as_secs_f64()).then_some((rank_of(peer)?, s))
        })
        .collect();
    let waited_for = |r: usize| stalled.iter().flatten().filter(|(p, _)| *p == r).count();
    for (x, w) in stalled.iter().enumerate() {
        let Some((y, sx)) = *w else { continue };
        if let Some(Some((back, sy))) = stalled.get(y) {
            if *back == x {
                let victim = match waited_for(x).cmp(&waited_for(y)) {
                    std::cmp::Ordering::Greater => x,
                    std::cmp::Ordering::Less => y,
                    std::cmp::Ordering::Equal => x.max(y),
                };
                let other = if victim == x { y } else { x };
                return Some((victim, other, sx.min(*sy)));
            }
        }
    }
    None
}

/// The recording node's progress: metrics, and a few times a second the record.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn follow_progress(
    control: &Control,
    a: &Assignment,
    c: &mut Client,
    last_write: &mut tokio::time::Instant,
    names: &[String],
    dt: f64,
    p: &neuropil_proto::v1::NodeProgress,
    actors: &[Vec<ActorRecord>],
) -> Result<()> {
    let m = &control.metrics;
    let bio_s = p.steps_done as f64 * dt / 1000.0;
    m.bio_time.set(bio_s);
    if bio_s > 0.0 {
        m.rtf.set(p.wall_s / bio_s);
    }
    for (name, n) in names.iter().zip(&p.population_spikes) {
        m.spikes.with_label_values(&[name.as_str()]).set(*n as i64);
    }
    if last_write.elapsed() >= Duration::from_millis(250) {
        *last_write = tokio::time::Instant::now();
        if let Some(mut rec) = etcd::get_json::<ExperimentRecord>(c, &experiment_key(&a.id)).await? {
            rec.bio_time_ms = bio_s * 1000.0;
            rec.rtf = if bio_s > 0.0 { p.wall_s / bio_s } else { 0.0 };
            rec.spikes = p.spikes;
            rec.populations = names
                .iter()
                .zip(&p.population_spikes)
                .map(|(n, &s)| PopulationCount { population: n.clone(), spikes: s, rate_hz: 0.0 })
                .collect();
            rec.message = p.phase.clone();
            rec.actors = all_actors(actors, neuropil_cluster::packed::stored_len(&rec.document));
            etcd::put_json(c, &experiment_key(&a.id), &rec, None).await?;
        }
    }
    Ok(())
}

/// Every rank's part of the checkpoint at `manifest.step` is durable: record it
/// as the run's last complete checkpoint, keep the last two, delete older ones.
pub(crate) async fn checkpointed(control: &Control, a: &Assignment, manifest: Manifest, dt: f64) -> Result<()> {
    let mut c = control.etcd.clone();
    let key = checkpoints_key(&a.id);
    let mut all: Checkpoints = etcd::get_json(&mut c, &key).await?.unwrap_or_default();
    let (step, bytes) = (manifest.step, manifest.bytes());
    all.complete.push(manifest);
    let gone: Vec<Manifest> = all.complete.drain(..all.complete.len().saturating_sub(2)).collect();
    etcd::put_json(&mut c, &key, &all, None).await?;
    if let Some(dir) = &control.checkpoint_dir {
        for part in gone.iter().flat_map(|m| &m.parts) {
            let rel = std::path::Path::new(&part.path);
            // Only a path inside the volume (it came from a node).
            if rel.components().all(|c| matches!(c, std::path::Component::Normal(_))) {
                if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
                    let _ = std::fs::remove_dir_all(dir.join(parent));
                }
            }
        }
    }
    control.metrics.checkpoint_bytes.set(bytes as i64);
    if let Some(mut rec) = etcd::get_json::<ExperimentRecord>(&mut c, &experiment_key(&a.id)).await? {
        let first = rec.checkpoint_ms == 0.0;
        rec.checkpoint_ms = step as f64 * dt;
        if first {
            rec.log(format!("first complete checkpoint at {} ms ({bytes} bytes)", rec.checkpoint_ms));
        }
        etcd::put_json(&mut c, &experiment_key(&a.id), &rec, None).await?;
    }
    Ok(())
}

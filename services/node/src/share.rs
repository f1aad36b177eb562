//! This node's share of a run: built, connected to its peers, simulated in
//! stretches through the driver (progress, live spikes, checkpoint parts), on a
//! thread of its own that the node actor starts.

use super::*;
use crate::parts::{restore, Parts};

/// Biological time per stretch between live-spike batches, ms.
pub(crate) const STRETCH_MS: f64 = 100.0;

/// How the node actor starts a run: this node's share on a thread of its own (the
/// epoch loop blocks it), the run actor linked to the node actor, `Ended` when over.
pub(crate) fn starter(state: Arc<NodeState>) -> Starter {
    let rt = tokio::runtime::Handle::current();
    Arc::new(move |a: Assignment, rank: usize, handle: Arc<RunHandle>, node: ActorRef<NodeMsg>| {
        let (state, rt) = (state.clone(), rt.clone());
        let run = a.run_id();
        let (told, ended, id, me) = (handle.clone(), node.clone(), run.clone(), state.id.clone());
        let spawned = std::thread::Builder::new().name(format!("run-{run}")).spawn(move || {
            let supervisor = node.get_cell();
            // A panic outside the actors' reach (building, the transport) fails the run
            // like any error, and the node actor still hears that it ended.
            let run_share = std::panic::AssertUnwindSafe(|| {
                with_peak_memory(&state.metrics, &a, rank, || execute(&state, &rt, supervisor, &a, rank, &handle))
            });
            let outcome = match std::panic::catch_unwind(run_share) {
                Ok(outcome) => outcome.map_err(|e| e.to_string()),
                Err(p) => {
                    Err(format!("this node's share of the run panicked: {}", embedded::panic_message(p.as_ref())))
                }
            };
            state.metrics.shards.set(0);
            let label = match &outcome {
                Ok((_, true)) => "succeeded",
                // Cancelled, or stopped with the peers when one of them failed.
                Ok((_, false)) => "stopped",
                Err(_) => "failed",
            };
            let outcome = outcome.map(|(bytes, _)| bytes);
            state.metrics.runs.with_label_values(&[label]).inc();
            match &outcome {
                Err(e) => tracing::error!(node = %state.id, run = %run, rank, error = %e, "run failed"),
                Ok(_) => tracing::info!(node = %state.id, run = %run, rank, outcome = label, "run ended"),
            }
            handle.result.send_replace(Some(outcome.map(Arc::new)));
            let _ = node.cast(NodeMsg::Ended(run));
        });
        if let Err(e) = spawned {
            tracing::error!(node = %me, error = %e, "cannot start a thread for a run");
            told.result.send_replace(Some(Err(format!("cannot start a thread for the run: {e}"))));
            let _ = ended.cast(NodeMsg::Ended(id));
        }
    })
}

/// Run `f` (this node's part of `a`) with its peak memory measured afresh and
/// shown next to the estimate it was placed by (`neuropil_run_peak_rss_bytes`,
/// `neuropil_run_estimated_bytes`).
pub(crate) fn with_peak_memory<T>(m: &NodeMetrics, a: &Assignment, rank: usize, f: impl FnOnce() -> T) -> T {
    neuropil_runtime::system::reset_peak_rss();
    let shards = a.members.get(rank).map_or(&[][..], |me| &me.shards[..]);
    let estimate: u64 = shards.iter().filter_map(|&s| a.shard_bytes.get(s as usize)).sum();
    m.run_estimated.set(estimate.min(i64::MAX as u64) as i64);
    m.run_peak_rss.set(0);
    let result = f();
    let rss = neuropil_runtime::system::peak_rss_bytes().unwrap_or(0);
    m.run_peak_rss.set(rss.min(i64::MAX as u64) as i64);
    result
}

/// Build and simulate this node's shards of `a`; the encoded [`RunOutput`], and
/// whether the run went to its end.
pub(crate) fn execute(
    state: &NodeState,
    rt: &tokio::runtime::Handle,
    supervisor: ActorCell,
    a: &Assignment,
    rank: usize,
    handle: &RunHandle,
) -> Result<(Vec<u8>, bool), RunError> {
    let format = neuropil_cluster::format_of(&a.format).map_err(RunError::Assignment)?;
    let mut exp = neuropil_spec::parse(&a.document, format, &a.set)?;
    let me = &a.members[rank];
    exp.run.shards = a.shards;
    exp.run.threads = me.threads;
    let compiled = neuropil_spec::compile(&exp, &neuropil_spec::Limits { memory_bytes: None })?;
    let net = &compiled.network;
    if embedded::network_hash(net) != a.network_hash {
        return Err(RunError::Assignment(
            "this node compiled a different network than the control (mixed neuropil versions?)".into(),
        ));
    }
    let threads = (me.threads as usize).max(1);
    let mine: Vec<usize> = me.shards.iter().map(|&s| s as usize).collect();
    // The single instances placed on this node.
    let placed = &a.placement;
    if placed.modules.len() != net.cerebella.len() || placed.fabric.is_some() != exp.hardware.is_some() {
        return Err(RunError::Assignment(format!(
            "the assignment places {} cerebellar modules{} but the network has {}{} (mixed neuropil versions?)",
            placed.modules.len(),
            if placed.fabric.is_some() { " and a fabric" } else { "" },
            net.cerebella.len(),
            if exp.hardware.is_some() { " and a [hardware] section" } else { "" },
        )));
    }
    let my_module = |i: usize| placed.modules[i].rank as usize == rank;
    let my_fabric = placed.fabric == Some(rank as u32);
    let m = &state.metrics;
    m.shards.set(mine.len() as i64);
    m.build_progress.set(0.0);

    // Build in rounds of `threads` shards so that progress moves.
    let build_start = Instant::now();
    let mut start = embedded::build_some(net, &[], a.shards as usize, 1);
    // After a recovery: this node's shards, and the replicated state, from the
    // parts of the last complete checkpoint (whoever wrote them).
    let mut prefix = None;
    if let Some(manifest) = &a.resume {
        let Some(dir) = &state.checkpoint_dir else {
            return Err(RunError::Resume(
                "this node has no --checkpoint-dir, so it cannot resume the run from its checkpoint".into(),
            ));
        };
        // A node that runs a module or the fabric now reads every part: their state
        // is in the part of whichever node ran them before.
        let singles_here = (0..net.cerebella.len()).any(my_module) || my_fabric;
        let (restored, so_far) =
            restore(dir, manifest, net, &mine, threads, rank == 0, singles_here).map_err(RunError::Resume)?;
        start = restored;
        prefix = Some(so_far);
        m.build_progress.set(1.0);
    }
    // Hardware co-simulation: one node runs the fabric, on every spike; its delays
    // reach the others in each epoch's second round. Every node's shards must know
    // their neurons' cores, and the mapping needs the whole connectome, so each node
    // builds every shard once, maps, and keeps its own (docs/architecture.md).
    // After a recovery the restored shards keep their state (their cores came with
    // them: the same mapping), and the fabric continues from its saved link state.
    let mut fabric = None;
    let mut mapped = false;
    if let Some(hw) = &exp.hardware {
        let mut all = embedded::build(net, a.shards as usize, threads);
        let (mut cosim, about) =
            neuropil_runtime::cosim::fabric_for(net, &mut all, hw).map_err(|e| RunError::Fabric(format!("{e:#}")))?;
        if my_fabric {
            if prefix.is_some() {
                if start.fabric_state.is_empty() {
                    return Err(RunError::Resume("the checkpoint resumed from holds no state of the fabric".into()));
                }
                cosim.restore_state(&start.fabric_state).map_err(RunError::Resume)?;
            }
            fabric = Some((cosim, about));
        }
        if prefix.is_none() {
            start.shards =
                all.shards.into_iter().enumerate().filter(|(i, _)| mine.contains(i)).map(|(_, s)| s).collect();
        }
        mapped = true;
        m.build_progress.set(1.0);
    }
    start.keep_modules(my_module);
    if let Some(i) = (0..net.cerebella.len()).find(|&i| my_module(i) && start.modules[i].is_none()) {
        let name = &net.cerebella[i].name;
        return Err(RunError::Resume(format!(
            "the checkpoint resumed from holds no state of cerebellar module {name:?}"
        )));
    }
    for (i, chunk) in mine.chunks(threads).enumerate().take_while(|_| !mapped && prefix.is_none()) {
        start.shards.extend(embedded::build_some(net, chunk, a.shards as usize, threads).shards);
        m.build_progress.set(((i + 1) * threads).min(mine.len()) as f64 / mine.len().max(1) as f64);
        if handle.cancel.load(Ordering::Relaxed) {
            // Peers are waiting for this node's first message; it carries the stop.
            break;
        }
    }
    let build_s = build_start.elapsed().as_secs_f64();

    let peers = peers(&a.members, &state.host);
    let run = a.run_id();
    let mut transport = GrpcTransport::start(
        &run,
        rank as u32,
        &peers,
        &state.exchange,
        &state.tls,
        &state.token,
        state.peer_timeout,
        m.exchange.clone(),
    )
    .map_err(RunError::Exchange)?;
    transport.abort_on(handle.abort.clone());
    transport.emulate_latency(state.emulated_latency);
    // Targeted spike routing (docs/scaling.md): rank 0 records every spike, the
    // ranks of modules and the fabric see every spike; the others get the spikes
    // of the populations that project onto their shards.
    let shards_of: Vec<Vec<usize>> = a.members.iter().map(|m| m.shards.iter().map(|&s| s as usize).collect()).collect();
    let everything: Vec<bool> = (0..a.members.len())
        .map(|r| r == 0 || placed.fabric == Some(r as u32) || placed.modules.iter().any(|m| m.rank as usize == r))
        .collect();
    transport.set_routes(neuropil_sim::routing::Routes::new(net, &shards_of, a.shards as usize, &everything));
    // The two-tier exchange: as seldom as the delays between nodes allow.
    let exchange_every = match exp.hardware {
        Some(_) => 1,
        None => neuropil_sim::tiers::exchange_epochs(net, &shards_of, a.shards as usize),
    };
    m.exchange_window.set(exchange_every as i64);
    let (cosim, about) = fabric.map_or((None, None), |(f, about)| (Some(f), Some(about)));
    let tree = Tree { rt, name: &run, census: &handle.census, supervisor: Some(supervisor) };
    let parts = match (&state.checkpoint_dir, a.checkpoint_steps) {
        (Some(dir), every) => Some(Parts {
            asked: handle.checkpoint_at.clone(),
            dir,
            experiment: &a.id,
            attempt: a.attempt,
            rank,
            every,
            last_step: start.step(),
            written: 0,
            unsaved: prefix.clone(),
            segments: Vec::new(),
        }),
        _ => None,
    };
    let waiting = transport.waiting();
    let names: Vec<String> = peers.iter().map(|p| p.node.clone()).collect();
    let done = AtomicBool::new(false);
    let simulated = std::thread::scope(|scope| {
        let monitor = scope.spawn(|| report_waits(&waiting, &names, &handle.progress, &done));
        let cosim = (cosim, exp.hardware.is_some());
        let link = (&mut transport, exchange_every);
        let r = simulate(tree, net, &compiled, start, threads, link, cosim, handle, m, rank == 0, parts);
        done.store(true, Ordering::Relaxed);
        monitor.thread().unpark();
        r
    });
    transport.finish();
    let (out, cosim) = simulated?;
    // The output before the checkpoint this attempt resumed from comes first.
    let mut out = match prefix {
        Some(p) => p.followed_by(out),
        None => out,
    };
    if let (Some(f), Some(mut about)) = (cosim, about) {
        // The node that ran the fabric reports it.
        about["fabric"] = serde_json::to_value(f.stats).map_err(|e| RunError::Results(e.to_string()))?;
        out.hardware = Some(about.to_string());
    }
    out.stats.build_s = build_s;
    if rank != 0 {
        // Every node sees every spike; only the recording node reports them. Module
        // samples come from the node that ran each module.
        out.spikes.clear();
    }
    let complete = out.stats.steps >= compiled.steps && !out.stopped;
    let bytes = postcard::to_allocvec(&out).map_err(|e| RunError::Results(e.to_string()))?;
    Ok((bytes, complete))
}

/// Until `done`: say in the progress which peer the simulation has waited for a
/// second or more, and for how long (the simulation thread itself is blocked);
/// the control moves the run off one of two nodes that wait for each other.
pub(crate) fn report_waits(
    waiting: &neuropil_cluster::transport::Waiting,
    names: &[String],
    progress: &watch::Sender<NodeProgress>,
    done: &AtomicBool,
) {
    let mut shown = false;
    while !done.load(Ordering::Relaxed) {
        std::thread::park_timeout(Duration::from_millis(250));
        match waiting.now() {
            Some((peer, d)) if d >= Duration::from_secs(1) => {
                let name = names.get(peer).cloned().unwrap_or_else(|| format!("rank {peer}"));
                progress.send_modify(|p| {
                    p.waiting_on = name;
                    p.waiting_s = d.as_secs_f64();
                });
                shown = true;
            }
            _ if shown => {
                progress.send_modify(|p| {
                    p.waiting_on.clear();
                    p.waiting_s = 0.0;
                });
                shown = false;
            }
            _ => {}
        }
    }
}

/// Simulate in stretches of [`STRETCH_MS`], publishing progress and live spikes.
#[allow(clippy::too_many_arguments)]
pub(crate) fn simulate(
    tree: Tree<'_>,
    net: &Network,
    compiled: &neuropil_spec::Compiled,
    state: Checkpoint,
    threads: usize,
    (transport, exchange_every): (&mut GrpcTransport, u64),
    (fabric, fabric_in_loop): (Option<neuropil_hwemu::cosim::CoSim>, bool),
    handle: &RunHandle,
    m: &NodeMetrics,
    recorder: bool,
    mut parts: Option<Parts<'_>>,
) -> Result<(RunOutput, Option<neuropil_hwemu::cosim::CoSim>), RunError> {
    let total = compiled.steps;
    let wall = Instant::now();
    let last_report_ms = AtomicU64::new(0);
    // This node's part of the last checkpoint it wrote, and when.
    let written: Mutex<Option<(CheckpointPart, Instant)>> = Mutex::new(None);
    m.checkpoint_age.set(0.0);
    let publish = |steps_done: u64, spikes: u64, counts: &[u64], phase: &str| {
        let bio_s = steps_done as f64 * net.dt_ms / 1000.0;
        let wall_s = wall.elapsed().as_secs_f64();
        m.bio_time.set(bio_s);
        if bio_s > 0.0 {
            m.rtf.set(wall_s / bio_s);
        }
        let checkpoint = written.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|(p, at)| {
            m.checkpoint_age.set(at.elapsed().as_secs_f64());
            p.clone()
        });
        handle.progress.send_replace(NodeProgress {
            steps_done,
            steps_total: total,
            spikes,
            population_spikes: counts.to_vec(),
            wall_s,
            phase: phase.into(),
            actors: vec![], // filled in as the events leave (watch_run)
            checkpoint,
            // The simulation moves: it waits for no peer now.
            waiting_on: String::new(),
            waiting_s: 0.0,
        });
    };
    let start_step = state.step();
    // Progress counts from step 0 of the experiment, across recoveries.
    let (spikes_before, counts_before): (u64, Vec<u64>) = match &parts {
        Some(Parts { unsaved: Some(p), .. }) => (p.spikes_seen(), p.spike_counts.clone()),
        _ => (0, vec![0; net.populations.len()]),
    };
    let with_before = |counts: &[u64]| -> Vec<u64> {
        counts.iter().zip(counts_before.iter().chain(std::iter::repeat(&0))).map(|(a, b)| a + b).collect()
    };
    publish(start_step, spikes_before, &counts_before, "running");
    let plan = Plan {
        total_steps: total.saturating_sub(start_step),
        stretch_steps: Plan::stretch_steps_for(net, STRETCH_MS),
        threads,
        count_from_step: compiled.transient_steps,
        fabric_in_loop,
        exchange_every,
    };
    let mut on_stretch = |s: Stretch<'_>| -> anyhow::Result<()> {
        let part = s.part;
        if let Some(p) = &mut parts {
            if let Some(done) = p.take(s.state, part, recorder, total, m) {
                *written.lock().unwrap_or_else(|e| e.into_inner()) = Some((done, Instant::now()));
            }
        }
        for (&n, pop) in part.spike_counts.iter().zip(&net.populations) {
            m.spikes.with_label_values(&[pop.name.as_str()]).inc_by(n);
        }
        m.synaptic_events.inc_by(part.stats.synaptic_events);
        for (i, module) in net.cerebella.iter().enumerate() {
            let rows: Vec<(f64, f64)> =
                part.cerebellum.iter().filter(|s| s.module as usize == i).map(|s| (s.predicted, s.error)).collect();
            if rows.is_empty() {
                continue;
            }
            let mse = rows.iter().map(|r| r.1 * r.1).sum::<f64>() / rows.len() as f64;
            m.module_error.with_label_values(&[module.name.as_str()]).set(mse);
            if let Some(r) = neuropil_output::summary::pearson(&rows) {
                m.module_correlation.with_label_values(&[module.name.as_str()]).set(r);
            }
        }
        if recorder && !part.spikes.is_empty() && handle.spikes.receiver_count() > 0 {
            let _ = handle.spikes.send(spike_batch(net, &part.spikes));
        }
        publish(start_step + s.steps_done, spikes_before + s.spikes_seen, &with_before(s.spike_counts), "running");
        Ok(())
    };
    let (out, end, fabric) = drive(
        tree,
        net,
        state,
        plan,
        Some(transport as &mut dyn Transport),
        fabric,
        &|steps, spikes, counts_before| {
            let ms = wall.elapsed().as_millis() as u64;
            if ms >= last_report_ms.load(Ordering::Relaxed) + 50 {
                last_report_ms.store(ms, Ordering::Relaxed);
                publish(start_step + steps, spikes_before + spikes, &with_before(counts_before), "running");
            }
        },
        &handle.cancel,
        &mut on_stretch,
    )?;
    publish(end.step(), spikes_before + out.spikes_seen(), &with_before(&out.spike_counts), "done");
    Ok((out, fabric))
}

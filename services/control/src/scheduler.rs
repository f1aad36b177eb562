//! The leader's scheduler: pending experiments, FIFO, onto the live nodes. The
//! state of the scheduler actor (actors.rs), one tick at a time.

use super::*;
use actors::{spawn_collector, CollectorMsg};
use ractor::{ActorCell, ActorRef};

pub(crate) struct Scheduler {
    pub(crate) control: Arc<Control>,
    /// The runs followed, each by its collector actor (a child of the scheduler's).
    pub(crate) collectors: Vec<(String, ActorRef<CollectorMsg>)>,
}

impl Scheduler {
    /// Look at the experiments and the nodes once: adopt runs nobody follows,
    /// settle cancels of queued experiments, start the next one.
    pub(crate) async fn tick(&mut self, me: &ActorCell) -> Result<()> {
        let mut c = self.control.etcd.clone();
        let mut records: Vec<ExperimentRecord> = etcd::list_json(&mut c, &format!("{PREFIX}experiments/")).await?;
        records.sort_by(|a, b| (a.submitted_unix_ms, &a.id).cmp(&(b.submitted_unix_ms, &b.id)));
        let nodes = self.control.nodes().await?;
        let m = &self.control.metrics;
        m.live_nodes.set(nodes.len() as i64);
        for s in State::ALL {
            m.experiments.with_label_values(&[s.name()]).set(records.iter().filter(|r| r.state == s).count() as i64);
        }
        // Runs this leader does not follow yet (started by a previous leader).
        for r in records.iter().filter(|r| matches!(r.state, State::Running | State::Recovering)) {
            if !self.collectors.iter().any(|(id, _)| id == &r.id) {
                if let Some(a) = etcd::get_json::<Assignment>(&mut c, &run_key(&r.id)).await? {
                    let h = spawn_collector(me, self.control.clone(), a).await?;
                    self.collectors.push((r.id.clone(), h));
                } else {
                    let mut r = r.clone();
                    r.state = State::Failed;
                    r.message = "its assignment disappeared from etcd".into();
                    etcd::put_json(&mut c, &experiment_key(&r.id), &r, None).await?;
                }
            }
        }
        // Cancelled while queued.
        for r in records.iter().filter(|r| r.state == State::Pending) {
            if c.get(cancel_key(&r.id), None).await?.count() > 0 {
                let mut r = r.clone();
                r.state = State::Cancelled;
                r.message = "cancelled before it started".into();
                etcd::put_json(&mut c, &experiment_key(&r.id), &r, None).await?;
                c.delete(cancel_key(&r.id), None).await?;
            }
        }
        // One run at a time over the whole cluster (FIFO).
        let busy = records.iter().any(|r| matches!(r.state, State::Running | State::Recovering));
        if let (false, Some(next)) = (busy, records.iter().find(|r| r.state == State::Pending)) {
            if nodes.is_empty() {
                if next.message != "waiting for nodes" {
                    let mut r = next.clone();
                    r.message = "waiting for nodes".into();
                    etcd::put_json(&mut c, &experiment_key(&r.id), &r, None).await?;
                }
            } else {
                self.start(next.clone(), &nodes, me).await?;
            }
        }
        Ok(())
    }

    /// Assign shards to nodes (balanced by threads, within each node's memory) and
    /// publish the assignment the nodes watch.
    pub(crate) async fn start(
        &mut self,
        mut rec: ExperimentRecord,
        nodes: &[NodeRecord],
        me: &ActorCell,
    ) -> Result<()> {
        let mut c = self.control.etcd.clone();
        let etcd = self.control.etcd.clone();
        let fail = |mut rec: ExperimentRecord, why: String| {
            let mut c = etcd.clone();
            async move {
                rec.state = State::Failed;
                rec.message = why;
                etcd::put_json(&mut c, &experiment_key(&rec.id), &rec, None).await
            }
        };
        let threads: u32 = nodes.iter().map(|n| n.threads.max(1)).sum();
        let shards = if rec.shards_requested == 0 { threads } else { rec.shards_requested };
        let format = match neuropil_cluster::format_of(&rec.format) {
            Ok(f) => f,
            Err(e) => return fail(rec, e).await,
        };
        let compiled = neuropil_spec::parse(&rec.document, format, &rec.set).and_then(|mut exp| {
            exp.run.shards = shards;
            let cosim = exp.hardware.is_some();
            neuropil_spec::compile(&exp, &neuropil_spec::Limits { memory_bytes: None }).map(|c| (c, cosim))
        });
        let (compiled, cosim) = match compiled {
            Ok(c) => c,
            Err(e) => return fail(rec, e.to_string()).await,
        };
        let shard_bytes = neuropil_spec::compile::shard_bytes(&compiled.network, shards, compiled.estimated_bytes);
        let members = match place(nodes, &shard_bytes) {
            Ok(m) => m,
            Err(why) => return fail(rec, why).await,
        };
        let m = &self.control.metrics;
        m.shards_per_node.reset();
        for mem in &members {
            m.shards_per_node.with_label_values(&[mem.node.as_str()]).set(mem.shards.len() as i64);
        }
        let net = &compiled.network;
        let names: Vec<String> = net.cerebella.iter().map(|c| c.name.clone()).collect();
        let (placement, said) = neuropil_cluster::Placement::new(&members, &names, cosim, rec.placement.clone());
        // Coordinated checkpoints (co-simulations too: the fabric's link state is in
        // the part of the node that runs it).
        let checkpoint_steps = (self.control.checkpoint_interval_ms / net.dt_ms).round() as u64;
        let a = Assignment {
            id: rec.id.clone(),
            document: rec.document.clone(),
            format: rec.format.clone(),
            set: rec.set.clone(),
            shards,
            network_hash: embedded::network_hash(net),
            members,
            attempt: 0,
            checkpoint_steps,
            resume: None,
            placement,
            shard_bytes,
        };
        rec.state = State::Running;
        rec.message = String::new();
        rec.shards = shards;
        rec.nodes = a.members.iter().map(|m| m.node.clone()).collect();
        rec.log(format!("running on {} ({shards} shards)", rec.nodes.join(", ")));
        if !said.is_empty() {
            rec.log(said.join("; "));
        }
        etcd::put_json(&mut c, &experiment_key(&rec.id), &rec, None).await?;
        etcd::put_json(&mut c, &run_key(&rec.id), &a, None).await?;
        let h = spawn_collector(me, self.control.clone(), a).await?;
        self.collectors.push((rec.id.clone(), h));
        Ok(())
    }
}

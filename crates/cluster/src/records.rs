//! What the cluster keeps in etcd: node records, experiment records, assignments,
//! their keys, and the limits on documents and messages.

use serde::{Deserialize, Serialize};

/// Root of every key neuropil keeps in etcd.
pub const PREFIX: &str = "/neuropil/";

/// Largest experiment document a request may carry.
pub const MAX_DOCUMENT_BYTES: usize = 4 << 20;

/// Largest gRPC message any public service decodes (documents plus headroom);
/// larger requests are refused by the transport before they reach a handler.
pub const MAX_REQUEST_BYTES: usize = 16 << 20;

/// Documents as records keep them: text up to [`PACK_FROM_BYTES`], deflated
/// and base64-encoded (`{"deflate": "..."}`) above. etcd takes requests up to 1.5
/// MiB by default and the experiment record is rewritten a few times a second: a
/// model of thousands of projections (the multi-area model's 2.3 MB) must be
/// neither refused nor copied whole each time (it packs to 137 kB).
pub mod packed {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::io::{Read, Write};

    /// Documents up to this size stay text in etcd (readable with etcdctl).
    pub const PACK_FROM_BYTES: usize = 64 << 10;

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Text(String),
        Packed { deflate: String },
    }

    /// The bytes `document` takes in a record.
    pub fn stored_len(document: &str) -> usize {
        match pack(document) {
            Stored::Text(t) => t.len(),
            Stored::Packed { deflate } => deflate.len() + 14,
        }
    }

    /// The last document packed and its packed form: records are rewritten with
    /// the same document many times (progress), and deflating megabytes each time
    /// would cost the control tens of milliseconds a write.
    static LAST: std::sync::Mutex<Option<(u64, usize, std::sync::Arc<String>)>> = std::sync::Mutex::new(None);

    fn pack(document: &str) -> Stored {
        if document.len() <= PACK_FROM_BYTES {
            return Stored::Text(document.to_string());
        }
        let key = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            document.hash(&mut h);
            h.finish()
        };
        let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((k, n, packed)) = last.as_ref() {
            if *k == key && *n == document.len() {
                return Stored::Packed { deflate: packed.to_string() };
            }
        }
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        match z.write_all(document.as_bytes()).and_then(|_| z.finish()) {
            Ok(bytes) => {
                let packed = base64::engine::general_purpose::STANDARD.encode(bytes);
                *last = Some((key, document.len(), std::sync::Arc::new(packed.clone())));
                Stored::Packed { deflate: packed }
            }
            Err(_) => Stored::Text(document.to_string()),
        }
    }

    /// Serialize a document, packed when large.
    pub fn serialize<S: Serializer>(document: &str, s: S) -> Result<S::Ok, S::Error> {
        pack(document).serialize(s)
    }

    /// Deserialize a document, text or packed; a packed one may unpack to no
    /// more than [`super::MAX_DOCUMENT_BYTES`].
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        use serde::de::Error;
        match Stored::deserialize(d)? {
            Stored::Text(t) => Ok(t),
            Stored::Packed { deflate } => {
                let bytes = base64::engine::general_purpose::STANDARD.decode(deflate).map_err(D::Error::custom)?;
                let limit = super::MAX_DOCUMENT_BYTES as u64 + 1;
                let mut text = String::new();
                flate2::read::DeflateDecoder::new(&bytes[..])
                    .take(limit)
                    .read_to_string(&mut text)
                    .map_err(|e| D::Error::custom(format!("packed document: {e}")))?;
                if text.len() as u64 >= limit {
                    return Err(D::Error::custom("packed document unpacks beyond the document limit"));
                }
                Ok(text)
            }
        }
    }
}

/// A live node, as registered in etcd under its lease.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeRecord {
    /// Unique name (the pod name in Kubernetes).
    pub id: String,
    /// gRPC address the control dials (`http://host:port`).
    pub addr: String,
    /// Spike exchange address peers dial.
    pub exchange_addr: String,
    /// Unix socket of the spike exchange, for peers on the same host.
    #[serde(default)]
    pub exchange_socket: Option<String>,
    /// Host identity (host name and boot id): peers with the same one may use
    /// the socket.
    #[serde(default)]
    pub host: String,
    /// Worker threads it runs shards on.
    pub threads: u32,
    /// Memory it offers to runs, bytes.
    pub memory_bytes: u64,
    /// Shutting down (SIGTERM): it finishes its part of the run in progress up to
    /// a checkpoint that moves its shards to the others, and takes no new work.
    #[serde(default)]
    pub draining: bool,
}

/// One node's share of a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Member {
    /// Node id.
    pub node: String,
    /// Its gRPC address.
    pub addr: String,
    /// Its spike exchange address.
    pub exchange_addr: String,
    /// Its spike exchange Unix socket, if it serves one.
    #[serde(default)]
    pub exchange_socket: Option<String>,
    /// Its host identity.
    #[serde(default)]
    pub host: String,
    /// Shard indices it hosts.
    pub shards: Vec<u32>,
    /// Threads to run them on.
    pub threads: u32,
}

/// The shard assignment of one run: everything a node needs to build its shards
/// and find its peers. Rank `r` is the position in `members`; rank 0 records.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Assignment {
    /// Experiment id.
    pub id: String,
    /// The experiment file's text, its format and overrides (nodes compile the
    /// same network the control validated). Packed in etcd ([`packed`]).
    #[serde(with = "packed")]
    pub document: String,
    /// `toml`, `json` or `yaml`.
    pub format: String,
    /// `path=value` overrides.
    pub set: Vec<String>,
    /// Shards in all.
    pub shards: u32,
    /// Digest of the compiled network: a node whose build differs refuses to run.
    pub network_hash: u64,
    /// Who hosts what.
    pub members: Vec<Member>,
    /// Which attempt this is: 0 for the first, one more after each recovery.
    #[serde(default)]
    pub attempt: u32,
    /// Steps between coordinated checkpoints (0: none). Nodes write their part at
    /// the first stretch boundary at or after each multiple.
    #[serde(default)]
    pub checkpoint_steps: u64,
    /// The checkpoint this attempt starts from (after a recovery).
    #[serde(default)]
    pub resume: Option<Manifest>,
    /// Where the run's single instances go: each cerebellar module and the
    /// co-simulated fabric runs on one member.
    #[serde(default)]
    pub placement: Placement,
    /// Each shard's estimated peak memory (unequal with population groups); empty
    /// in assignments of older controls (equal shares of the estimate then).
    #[serde(default)]
    pub shard_bytes: Vec<u64>,
}

/// The members (ranks) that run a run's cerebellar modules and its fabric, and
/// what the submitter asked for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Placement {
    /// Each module of the network, in index order: its name and its rank.
    pub modules: Vec<PlacedModule>,
    /// The rank that runs the fabric of the `[hardware]` section (none without one).
    pub fabric: Option<u32>,
    /// The nodes asked for at submission (`cerebellum.NAME` or `hardware` → node
    /// id), kept for every attempt: honoured while that node is a member.
    pub wanted: std::collections::BTreeMap<String, String>,
}

/// One cerebellar module's place.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlacedModule {
    /// Its name in the experiment (`cerebellum[].name`).
    pub name: String,
    /// The rank that runs it.
    pub rank: u32,
}

impl Placement {
    /// Key of a module in [`Placement::wanted`].
    pub fn module_key(name: &str) -> String {
        format!("cerebellum.{name}")
    }

    /// Key of the fabric in [`Placement::wanted`].
    pub const FABRIC_KEY: &'static str = "hardware";

    /// Place the modules `names` and (if `fabric`) the fabric on `members`: where
    /// `wanted` names a member, there; otherwise module i on rank (1 + i) mod n and
    /// the fabric on the last rank (rank 0 records, and the fabric needs every
    /// spike). Also says, for the run's log, where each one went.
    pub fn new(
        members: &[Member],
        names: &[String],
        fabric: bool,
        wanted: std::collections::BTreeMap<String, String>,
    ) -> (Placement, Vec<String>) {
        let n = members.len().max(1) as u32;
        let rank_of = |key: &str| wanted.get(key).and_then(|node| members.iter().position(|m| &m.node == node));
        let mut said = Vec::new();
        let mut note = |key: &str, rank: u32| {
            let node = members.get(rank as usize).map_or("?", |m| m.node.as_str());
            match wanted.get(key) {
                Some(w) if w != node => said.push(format!("{key} on {node} ({w} is not a member of this attempt)")),
                _ => said.push(format!("{key} on {node}")),
            }
        };
        let modules = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let key = Placement::module_key(name);
                let rank = rank_of(&key).map_or((1 + i as u32) % n, |r| r as u32);
                note(&key, rank);
                PlacedModule { name: name.clone(), rank }
            })
            .collect();
        let fabric = fabric.then(|| {
            let rank = rank_of(Placement::FABRIC_KEY).map_or(n - 1, |r| r as u32);
            note(Placement::FABRIC_KEY, rank);
            rank
        });
        (Placement { modules, fabric, wanted }, said)
    }

    /// The same names and wishes on another set of members (a recovery).
    pub fn again(&self, members: &[Member]) -> (Placement, Vec<String>) {
        let names: Vec<String> = self.modules.iter().map(|m| m.name.clone()).collect();
        Placement::new(members, &names, self.fabric.is_some(), self.wanted.clone())
    }
}

impl Assignment {
    /// The run's id on the nodes and in the exchange: the experiment id, with the
    /// attempt appended after a recovery (so that a node still in an earlier
    /// attempt can never talk to this one).
    pub fn run_id(&self) -> String {
        run_id(&self.id, self.attempt)
    }
}

/// The run id of `attempt` of experiment `id`.
pub fn run_id(id: &str, attempt: u32) -> String {
    if attempt == 0 {
        id.to_string()
    } else {
        format!("{id}.r{attempt}")
    }
}

/// The experiment a run id belongs to.
pub fn experiment_of_run(run: &str) -> &str {
    match run.rsplit_once(".r") {
        Some((id, n)) if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => id,
        _ => run,
    }
}

/// A complete coordinated checkpoint: every rank's part is durable at `step`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// The step every part continues from.
    pub step: u64,
    /// The attempt that wrote it.
    pub attempt: u32,
    /// One part per rank of that attempt.
    pub parts: Vec<PartRef>,
}

impl Manifest {
    /// Bytes of all parts.
    pub fn bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.bytes).sum()
    }
}

/// One node's part of a coordinated checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PartRef {
    /// Rank in the attempt that wrote it.
    pub rank: u32,
    /// The node that wrote it.
    pub node: String,
    /// The shards it holds.
    pub shards: Vec<u32>,
    /// Path relative to the checkpoint volume (`<run>/<step>/part-<rank>.bin`).
    pub path: String,
    /// Its size, bytes.
    pub bytes: u64,
    /// FNV-1a-64 of the whole file: a part that does not match is refused.
    pub digest: u64,
}

/// The last complete checkpoints of a run (newest last; at most two kept).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Checkpoints {
    /// Complete checkpoints, oldest first.
    pub complete: Vec<Manifest>,
}

/// Key that asks the nodes of run `run` (a run id) for a coordinated checkpoint at
/// the first stretch boundary at or after the step it holds.
pub fn checkpoint_at_key(run: &str) -> String {
    format!("{PREFIX}checkpoint-at/{run}")
}

/// Key of a user's request for a checkpoint of experiment `id` now
/// (ExperimentService.Checkpoint); the leader turns it into a [`checkpoint_at_key`].
pub fn checkpoint_request_key(id: &str) -> String {
    format!("{PREFIX}checkpoint-request/{id}")
}

/// Key of a run's complete checkpoints.
pub fn checkpoints_key(id: &str) -> String {
    format!("{PREFIX}checkpoints/{id}")
}

/// One line of an experiment's event log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EventRecord {
    /// When, ms since the Unix epoch.
    pub unix_ms: u64,
    /// What happened.
    pub what: String,
}

/// Events an experiment record keeps (the oldest go first).
pub const MAX_EVENTS: usize = 64;

/// The lifecycle of an experiment (mirrors `ExperimentState` in cluster.proto).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Validated, waiting to be scheduled.
    Pending,
    /// Assigned to nodes.
    Running,
    /// A node was lost: the run is rolling back to its last checkpoint and being
    /// placed on the live nodes again.
    Recovering,
    /// Finished; results written.
    Succeeded,
    /// Stopped by an error.
    Failed,
    /// Stopped by a cancellation.
    Cancelled,
}

impl State {
    /// Every state, for metrics.
    pub const ALL: [State; 6] =
        [State::Pending, State::Running, State::Recovering, State::Succeeded, State::Failed, State::Cancelled];

    /// Whether the experiment can still change.
    pub fn is_terminal(self) -> bool {
        matches!(self, State::Succeeded | State::Failed | State::Cancelled)
    }

    /// Lowercase name (metric label).
    pub fn name(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Running => "running",
            State::Recovering => "recovering",
            State::Succeeded => "succeeded",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
        }
    }

    /// The wire enum.
    pub fn to_proto(self) -> neuropil_proto::v1::ExperimentState {
        use neuropil_proto::v1::ExperimentState as P;
        match self {
            State::Pending => P::Pending,
            State::Running => P::Running,
            State::Recovering => P::Recovering,
            State::Succeeded => P::Succeeded,
            State::Failed => P::Failed,
            State::Cancelled => P::Cancelled,
        }
    }
}

/// Spikes of one population so far.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PopulationCount {
    /// Population name.
    pub population: String,
    /// Spikes.
    pub spikes: u64,
    /// Mean rate after the transient (after the run).
    pub rate_hz: f64,
}

/// An experiment as the control keeps it in etcd.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExperimentRecord {
    /// Id (`exp-` + time + random digits).
    pub id: String,
    /// The experiment's name.
    pub name: String,
    /// Where it is.
    pub state: State,
    /// Why it failed, or what it waits for.
    pub message: String,
    /// The submission. Packed in etcd ([`packed`]).
    #[serde(with = "packed")]
    pub document: String,
    /// `toml`, `json` or `yaml`.
    pub format: String,
    /// Overrides.
    pub set: Vec<String>,
    /// Requested shards (0: the nodes' threads).
    pub shards_requested: u32,
    /// Shards used.
    pub shards: u32,
    /// Nodes assigned.
    pub nodes: Vec<String>,
    /// Biological time simulated, ms.
    pub bio_time_ms: f64,
    /// Biological time to simulate, ms.
    pub duration_ms: f64,
    /// Wall / biological time so far.
    pub rtf: f64,
    /// Spikes so far.
    pub spikes: u64,
    /// Spikes per population.
    pub populations: Vec<PopulationCount>,
    /// Neurons.
    pub neurons: u64,
    /// Synapses (after the run).
    pub synapses: u64,
    /// Digest of all spikes (after the run).
    pub spike_hash: Option<u64>,
    /// Where the results are (after the run).
    pub output_dir: String,
    /// Submission time, ms since the Unix epoch.
    pub submitted_unix_ms: u64,
    /// Peak memory estimate, bytes.
    pub estimated_bytes: u64,
    /// The run's actors on every node, as last reported.
    #[serde(default)]
    pub actors: Vec<ActorRecord>,
    /// What happened when: start, checkpoints, lost nodes, recoveries, the end.
    #[serde(default)]
    pub events: Vec<EventRecord>,
    /// Biological time of the last complete checkpoint, ms (0: none yet).
    #[serde(default)]
    pub checkpoint_ms: f64,
    /// Recoveries so far.
    #[serde(default)]
    pub recoveries: u32,
    /// Nodes asked for the run's cerebellar modules and fabric
    /// ([`Placement::wanted`]).
    #[serde(default)]
    pub placement: std::collections::BTreeMap<String, String>,
}

/// An actor of a run, as its node last reported it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ActorRecord {
    /// `run`, `population_shard`, `astrocyte_shard`, `cerebellar_module` or `fabric`.
    pub kind: String,
    /// Its name in the node's run (`shard-3`).
    pub name: String,
    /// The node it runs on.
    pub node: String,
    /// `running`, `stopped` or `failed`.
    pub state: String,
}

impl ActorRecord {
    /// From the wire.
    pub fn from_proto(a: &neuropil_proto::v1::Actor) -> ActorRecord {
        ActorRecord { kind: a.kind.clone(), name: a.name.clone(), node: a.node.clone(), state: a.state.clone() }
    }

    /// The wire form.
    pub fn to_proto(&self) -> neuropil_proto::v1::Actor {
        neuropil_proto::v1::Actor {
            kind: self.kind.clone(),
            name: self.name.clone(),
            node: self.node.clone(),
            state: self.state.clone(),
        }
    }
}

impl ExperimentRecord {
    /// The wire form.
    pub fn to_proto(&self) -> neuropil_proto::v1::ExperimentInfo {
        neuropil_proto::v1::ExperimentInfo {
            id: self.id.clone(),
            name: self.name.clone(),
            state: self.state.to_proto() as i32,
            message: self.message.clone(),
            bio_time_ms: self.bio_time_ms,
            duration_ms: self.duration_ms,
            rtf: self.rtf,
            spikes: self.spikes,
            populations: self
                .populations
                .iter()
                .map(|p| neuropil_proto::v1::PopulationSpikes {
                    population: p.population.clone(),
                    spikes: p.spikes,
                    rate_hz: p.rate_hz,
                })
                .collect(),
            neurons: self.neurons,
            synapses: self.synapses,
            shards: self.shards,
            nodes: self.nodes.clone(),
            spike_hash: self.spike_hash.map(|h| format!("{h:016x}")).unwrap_or_default(),
            output_dir: self.output_dir.clone(),
            submitted_unix_ms: self.submitted_unix_ms,
            estimated_bytes: self.estimated_bytes,
            actors: self.actors.iter().map(ActorRecord::to_proto).collect(),
            events: self
                .events
                .iter()
                .map(|e| neuropil_proto::v1::RunLogEntry { unix_ms: e.unix_ms, what: e.what.clone() })
                .collect(),
            checkpoint_ms: self.checkpoint_ms,
            recoveries: self.recoveries,
        }
    }

    /// Append to the event log (bounded: the oldest lines go).
    pub fn log(&mut self, what: impl Into<String>) {
        self.events.push(EventRecord { unix_ms: now_unix_ms(), what: what.into() });
        if self.events.len() > MAX_EVENTS {
            let extra = self.events.len() - MAX_EVENTS;
            self.events.drain(..extra);
        }
    }
}

/// Key of a node record.
pub fn node_key(id: &str) -> String {
    format!("{PREFIX}nodes/{id}")
}

/// Key of an experiment record.
pub fn experiment_key(id: &str) -> String {
    format!("{PREFIX}experiments/{id}")
}

/// Key of a run's assignment.
pub fn run_key(id: &str) -> String {
    format!("{PREFIX}runs/{id}")
}

/// Key that stops one attempt of a run (`run` is its run id) and no other: the
/// control's, when it rolls the run back to a checkpoint.
pub fn stop_key(run: &str) -> String {
    format!("{PREFIX}cancel/{run}{STOP_SUFFIX}")
}

/// What ends a [`stop_key`] (after the run id).
pub const STOP_SUFFIX: &str = "@stop";

/// Key of a cancellation request.
pub fn cancel_key(id: &str) -> String {
    format!("{PREFIX}cancel/{id}")
}

/// Parse a `toml`/`json`/`yaml` format name.
pub fn format_of(name: &str) -> Result<neuropil_spec::load::Format, String> {
    use neuropil_spec::load::Format;
    match name {
        "" | "toml" => Ok(Format::Toml),
        "json" => Ok(Format::Json),
        "yaml" | "yml" => Ok(Format::Yaml),
        other => Err(format!("format: unknown format {other:?}; use toml, json or yaml")),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod packed_tests {
    use super::*;

    /// A record's document field, as `Assignment` and `ExperimentRecord` have it.
    #[derive(Serialize, Deserialize)]
    struct Record {
        #[serde(with = "packed")]
        document: String,
    }

    #[test]
    fn large_documents_are_packed_in_records_and_come_back_whole() {
        let small = "name = \"x\"\n".to_string();
        let large: String = (0..20_000).map(|i| format!("[[projections]]\nsource = \"p{i}\"\n")).collect();
        assert!(large.len() > packed::PACK_FROM_BYTES);
        for doc in [small, large] {
            let json = serde_json::to_string(&Record { document: doc.clone() }).unwrap();
            if doc.len() > packed::PACK_FROM_BYTES {
                assert!(json.len() < doc.len() / 5, "{} bytes stored for {}", json.len(), doc.len());
                assert!(json.starts_with("{\"document\":{\"deflate\":"), "{}", &json[..40]);
                assert!(packed::stored_len(&doc) < doc.len() / 5);
            } else {
                assert!(json.contains("name = "), "small documents stay text: {json}");
                assert_eq!(packed::stored_len(&doc), doc.len());
            }
            let back: Record = serde_json::from_str(&json).unwrap();
            assert_eq!(back.document, doc);
        }
        // A packed document that unpacks past the limit is refused, not allocated.
        let bomb = "x".repeat(MAX_DOCUMENT_BYTES + 10);
        let json = serde_json::to_string(&Record { document: bomb }).unwrap();
        assert!(json.len() < 100_000);
        let err = serde_json::from_str::<Record>(&json).err().unwrap().to_string();
        assert!(err.contains("beyond the document limit"), "{err}");
    }
}

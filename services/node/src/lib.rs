//! `neuropil node`: registers in etcd under a lease, watches for shard
//! assignments, builds its own shards (target side), runs them with the kernel,
//! exchanging every epoch's spikes with its peers directly over gRPC, and reports
//! progress, live spikes and its results to whoever watches the run.

mod actor;
pub mod config;
pub mod error;
pub mod metrics;
mod parts;
mod share;
mod watch_run;

use actor::{NodeActor, NodeArgs, NodeMsg, RunHandle, Starter, Work};
use anyhow::{Context as _, Result};
pub use config::NodeConfig;
pub use error::{NodeError, RunError};
use etcd_client::{EventType, WatchOptions};
use metrics::NodeMetrics;
use neuropil_cluster::auth::ClusterToken;
use neuropil_cluster::transport::{ExchangePort, GrpcTransport, Peer};
use neuropil_cluster::{etcd, Assignment, Manifest, Member, NodeRecord, PREFIX};
use neuropil_proto::v1::node_service_server::{NodeService, NodeServiceServer};
use neuropil_proto::v1::{run_event, CheckpointPart, NodeProgress, RunEvent, SpikeBatch, WatchRunRequest};
use neuropil_runtime::actors::Census;
use neuropil_runtime::driver::{drive, Plan, Stretch, Tree};
use neuropil_sim::cerebellum::runtime::ModuleRun;
use neuropil_sim::embedded::{self, Checkpoint, RunOutput, Transport};
use neuropil_sim::Network;
use ractor::{Actor, ActorCell, ActorRef};
use share::starter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};
use tonic::server::NamedService;
use tonic::{Request, Response, Status};
use watch_run::NodeSvc;

/// Largest message the node's internal API decodes (epoch messages of a full-scale
/// network are far below; this bounds what a misbehaving peer can make it buffer).
const MAX_NODE_MESSAGE_BYTES: usize = 64 << 20;

struct NodeState {
    id: String,
    peer_timeout: Duration,
    emulated_latency: Duration,
    metrics: NodeMetrics,
    exchange: ExchangePort,
    host: String,
    tls: neuropil_cluster::tls::Tls,
    /// What members present to this node's ports, and this node to its peers'.
    token: ClusterToken,
    checkpoint_dir: Option<PathBuf>,
}

/// Run a node until `shutdown` completes (the binary passes SIGTERM/SIGINT) or its
/// etcd lease is lost.
pub async fn serve(cfg: NodeConfig, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
    let metrics = NodeMetrics::new(&cfg.id)?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("--listen {}: cannot listen", cfg.listen))?;
    let addr = listener.local_addr()?;
    let advertise = cfg.advertise.clone().unwrap_or_else(|| format!("{}://{addr}", cfg.tls.scheme()));
    dialable("--advertise", &advertise)?;
    let mut exchange = ExchangePort::bind(cfg.exchange_listen)
        .with_context(|| format!("--exchange-listen {}: cannot listen", cfg.exchange_listen))?;
    if let Some(path) = &cfg.exchange_socket {
        exchange.bind_socket(path).map_err(|e| anyhow::anyhow!("--exchange-socket {e}"))?;
    }
    let host = neuropil_cluster::transport::host_identity();
    let exchange_port = exchange.local_addr()?.port();
    let exchange_addr = cfg.exchange_advertise.clone().unwrap_or_else(|| with_port(&advertise, exchange_port));
    dialable("--exchange-advertise", &exchange_addr)?;
    let metrics_addr = neuropil_cluster::telemetry::serve(cfg.metrics_listen, metrics.registry.clone()).await?;
    let mut client = etcd::connect(&cfg.etcd, Duration::from_secs(30)).await?;
    let token = ClusterToken::of_cluster(&mut client, cfg.cluster_token.clone()).await?;

    let state = Arc::new(NodeState {
        id: cfg.id.clone(),
        peer_timeout: cfg.peer_timeout,
        emulated_latency: cfg.emulated_latency,
        metrics: metrics.clone(),
        exchange,
        host: host.clone(),
        tls: cfg.tls.clone(),
        token: token.clone(),
        checkpoint_dir: cfg.checkpoint_dir.clone(),
    });
    // The root of the node's supervision tree (actor.rs).
    let gauge = metrics.actors.clone();
    let census: Arc<dyn Fn() -> Census + Send + Sync> = Arc::new(move || {
        let gauge = gauge.clone();
        Census::observed(Arc::new(move |kind, delta| gauge.with_label_values(&[kind.label()]).add(delta)))
    });
    let args = NodeArgs { id: cfg.id.clone(), census, start: starter(state.clone()) };
    let (node, mut node_done) = Actor::spawn(None, NodeActor, args).await.context("cannot start the node actor")?;
    let svc = NodeServiceServer::new(NodeSvc { id: cfg.id.clone(), node: node.clone() })
        .max_decoding_message_size(MAX_NODE_MESSAGE_BYTES)
        .max_encoding_message_size(usize::MAX);
    let svc = tonic::service::interceptor::InterceptedService::new(svc, move |req| token.check(req));
    let mut builder = tonic::transport::Server::builder();
    if let Some(t) = &cfg.tls.server {
        builder = builder.tls_config(t.clone()).context("--tls-cert/--tls-key")?;
    }
    let builder = builder.tcp_nodelay(true).http2_keepalive_interval(Some(Duration::from_secs(10)));
    let server =
        neuropil_cluster::server::introspection(builder, &[<NodeServiceServer<NodeSvc> as NamedService>::NAME])
            .await?
            .add_service(svc)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)));
    let server = tokio::spawn(server);

    let (first_lease, first_lost) = etcd::lease(&mut client, cfg.lease_ttl_s).await?;
    let record = NodeRecord {
        id: cfg.id.clone(),
        addr: advertise.clone(),
        exchange_addr: exchange_addr.clone(),
        exchange_socket: cfg.exchange_socket.as_ref().map(|p| p.display().to_string()),
        host: host.clone(),
        threads: cfg.threads as u32,
        memory_bytes: cfg.memory_bytes,
        draining: false,
    };
    // Watch before registering, so that no assignment made right after can be missed.
    let first_watches = watch_all(&mut client).await?;
    // One live node per id: a second one would overwrite the first's record and
    // run its shards too.
    let key = neuropil_cluster::node_key(&cfg.id);
    // A record with this node's own addresses is its previous incarnation (no other
    // live process can serve them), restarted within the lease's time to live.
    let mine = etcd::get_json::<NodeRecord>(&mut client, &key)
        .await?
        .filter(|o| o.addr == record.addr && o.exchange_addr == record.exchange_addr)
        .and_then(|o| serde_json::to_vec(&o).ok());
    let replacing = mine.map_or(etcd::Replacing::Nothing, etcd::Replacing::Value);
    if !etcd::claim_json(&mut client, &key, &record, first_lease, replacing).await? {
        let _ = client.lease_revoke(first_lease).await;
        let other = etcd::get_json::<NodeRecord>(&mut client, &key).await.ok().flatten();
        let at = other.map_or_else(String::new, |o| format!(" (at {})", o.addr));
        anyhow::bail!(
            "--id {}: another live node is registered under this id{at}; give each node its own --id",
            cfg.id
        );
    }
    let _ = node.cast(NodeMsg::Lease(first_lease));
    println!(
        "neuropil node {}: grpc={addr} metrics={metrics_addr} exchange={exchange_addr} advertise={advertise}",
        cfg.id
    );

    // The control's word: assignments, checkpoint requests, cancellations. etcd
    // may go away for a while (a rescheduled pod): the run goes on, and once it is
    // back the node watches again and catches up with what was put meanwhile.
    let watcher = {
        let (id, node, mut client) = (cfg.id.clone(), node.clone(), client.clone());
        async move {
            let mut watches = Some(first_watches);
            loop {
                let mut streams = match watches.take() {
                    Some(w) => w,
                    None => match watch_all(&mut client).await {
                        Ok(w) => {
                            catch_up(&mut client, &node).await;
                            tracing::info!(node = %id, "watching etcd again");
                            w
                        }
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            continue;
                        }
                    },
                };
                let [runs, checkpoints, cancels] = &mut streams;
                loop {
                    let msg = tokio::select! {
                        m = runs.message() => m,
                        m = checkpoints.message() => m,
                        m = cancels.message() => m,
                    };
                    let Ok(Some(resp)) = msg else { break };
                    for ev in resp.events() {
                        if let (EventType::Put, Some(kv)) = (ev.event_type(), ev.kv()) {
                            let _ = node.cast(NodeMsg::Put { key: kv.key().to_vec(), value: kv.value().to_vec() });
                        }
                    }
                }
                tracing::warn!(node = %id, "etcd watch ended (etcd away?); the run goes on, watching again");
            }
            #[allow(unreachable_code)]
            "the etcd watcher stopped"
        }
    };
    // A lease can lapse while this process is starved of CPU (or etcd is briefly
    // away): register again under a new one instead of dying, so that a run in
    // progress goes on; give up only when etcd stays unreachable.
    let registration = {
        let (mut client, record, node, ttl) = (client.clone(), record.clone(), node.clone(), cfg.lease_ttl_s);
        let key = neuropil_cluster::node_key(&cfg.id);
        async move {
            let (mut lost, mut old) = (first_lost, first_lease);
            loop {
                if lost.changed().await.is_err() {
                    return "lease keeper stopped".to_string();
                }
                tracing::warn!(node = %record.id, "etcd lease lapsed; registering again");
                let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                loop {
                    // The old lease may still be alive (a keep-alive stream broke, not
                    // the lease): the record on it is ours to take over.
                    let attempt = async {
                        let (id, rx) = etcd::lease(&mut client, ttl).await?;
                        if !etcd::claim_json(&mut client, &key, &record, id, etcd::Replacing::Lease(old)).await? {
                            let _ = client.lease_revoke(id).await;
                            return anyhow::Ok(Err(id));
                        }
                        anyhow::Ok(Ok((id, rx)))
                    };
                    match attempt.await {
                        Ok(Ok((id, rx))) => {
                            let _ = client.lease_revoke(old).await;
                            let _ = node.cast(NodeMsg::Lease(id));
                            (old, lost) = (id, rx);
                            break;
                        }
                        // Someone registered under this id while the lease was out.
                        Ok(Err(_)) => {
                            return format!("--id {}: another node registered under this id while this one's lease had lapsed; stopping", record.id);
                        }
                        Err(e) if tokio::time::Instant::now() >= deadline => {
                            return format!(
                                "etcd unreachable for 60 s ({e:#}); stopping so the control reassigns work"
                            );
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                    }
                }
            }
        }
    };
    tokio::pin!(watcher);
    tokio::pin!(registration);
    let mut server = server;
    let outcome = tokio::select! {
        why = &mut watcher => Err(anyhow::anyhow!(why)),
        why = &mut registration => Err(anyhow::anyhow!(why)),
        r = &mut server => Err(anyhow::anyhow!("gRPC server stopped: {r:?}")),
        r = &mut node_done => Err(anyhow::anyhow!("the node actor stopped: {r:?}")),
        _ = shutdown => Ok(()),
    };
    // Drain (a rolling update, a scale-down): with a run in progress and a
    // checkpoint volume, say so in the record; the control has the nodes write a
    // checkpoint, moves this node's shards to the others from it and stops this
    // attempt here. Then leave.
    //
    // A run between two attempts (a move stopped one, the next is not started
    // here yet) is not idle: the work this node has is what etcd assigns it, not
    // only what runs here now, and it is quiet only once both stay empty for a
    // while (the control may be writing the next attempt as the record changes).
    let work = || async { ractor::call!(node, NodeMsg::Work).ok() };
    let busy = work().await.is_some_and(|w| w.busy);
    if outcome.is_ok()
        && state.checkpoint_dir.is_some()
        && (busy || work_in_cluster(&mut client, &cfg.id, work().await.as_ref()).await.is_some())
    {
        tracing::info!(node = %cfg.id, "draining: the run in progress moves to the other nodes at a checkpoint");
        let draining = NodeRecord { draining: true, ..record.clone() };
        let lease = work().await.map_or(first_lease, |w| w.lease);
        if let Err(e) = etcd::put_json(&mut client, &key, &draining, Some(lease)).await {
            tracing::warn!(node = %cfg.id, error = %format!("{e:#}"), "drain: cannot mark the record; leaving now");
        } else {
            let mut c = client.clone();
            let idle = async {
                let mut quiet_since = None;
                loop {
                    let w = work().await;
                    let here = w.as_ref().is_some_and(|w| w.busy)
                        || work_in_cluster(&mut c, &cfg.id, w.as_ref()).await == Some(true);
                    let now = tokio::time::Instant::now();
                    match (here, quiet_since) {
                        (true, _) => quiet_since = None,
                        (false, None) => quiet_since = Some(now),
                        (false, Some(t)) if now - t >= DRAIN_QUIET => break,
                        (false, Some(_)) => {}
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            };
            tokio::select! {
                _ = idle => tracing::info!(node = %cfg.id, "drained: the run moved"),
                _ = tokio::time::sleep(DRAIN_TIMEOUT) => {
                    tracing::warn!(node = %cfg.id, "drain: the run did not move within {} s; leaving", DRAIN_TIMEOUT.as_secs());
                }
                why = &mut watcher => tracing::warn!(node = %cfg.id, why, "drain cut short"),
                why = &mut registration => tracing::warn!(node = %cfg.id, why, "drain cut short"),
            }
        }
    }
    let lease = work().await.map_or(first_lease, |w| w.lease);
    let _ = client.lease_revoke(lease).await;
    node.stop(None);
    if !node_done.is_finished() {
        let _ = tokio::time::timeout(Duration::from_secs(5), node_done).await;
    }
    outcome
}

/// How long a draining node waits for its run to move before it leaves anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a draining node must have had no work (none running, none assigned
/// to it) before it leaves.
const DRAIN_QUIET: Duration = Duration::from_secs(1);

/// Runs in the cluster as etcd has them: `None` when there are none (or etcd
/// cannot say), `Some(true)` when an attempt names this node and has not ended
/// here, `Some(false)` when every one running is elsewhere or ended here.
async fn work_in_cluster(client: &mut etcd_client::Client, me: &str, here: Option<&Work>) -> Option<bool> {
    let got = client.get(format!("{PREFIX}runs/"), Some(etcd_client::GetOptions::new().with_prefix())).await.ok()?;
    let mut any = false;
    for kv in got.kvs() {
        any = true;
        let Ok(a) = serde_json::from_slice::<Assignment>(kv.value()) else { continue };
        let ended_here = here.is_some_and(|w| w.ended.contains(&a.run_id()));
        if a.members.iter().any(|m| m.node == me) && !ended_here {
            return Some(true);
        }
    }
    any.then_some(false)
}

/// What a node watches in etcd.
const WATCHED: [&str; 3] = ["runs/", "checkpoint-at/", "cancel/"];

/// Watch every key a node acts on.
async fn watch_all(client: &mut etcd_client::Client) -> Result<[etcd_client::WatchStream; 3]> {
    let mut streams = Vec::with_capacity(3);
    for w in WATCHED {
        let s = client
            .watch(format!("{PREFIX}{w}"), Some(WatchOptions::new().with_prefix()))
            .await
            .context("etcd: watch")?;
        streams.push(s);
    }
    streams.try_into().map_err(|_| anyhow::anyhow!("etcd: watch"))
}

/// Act on every watched key as it is now (after the watches were down).
async fn catch_up(client: &mut etcd_client::Client, node: &ActorRef<NodeMsg>) {
    for w in WATCHED {
        let got = client.get(format!("{PREFIX}{w}"), Some(etcd_client::GetOptions::new().with_prefix())).await;
        for kv in got.iter().flat_map(|r| r.kvs()) {
            let _ = node.cast(NodeMsg::Put { key: kv.key().to_vec(), value: kv.value().to_vec() });
        }
    }
}

/// Spikes as the wire's columns.
pub fn spike_batch(net: &Network, spikes: &[neuropil_sim::Spike]) -> SpikeBatch {
    let mut b = SpikeBatch {
        populations: net.populations.iter().map(|p| p.name.clone()).collect(),
        population: Vec::with_capacity(spikes.len()),
        neuron: Vec::with_capacity(spikes.len()),
        time_ms: Vec::with_capacity(spikes.len()),
    };
    for s in spikes {
        let p = net.population_of(s.gid);
        b.population.push(p as u32);
        b.neuron.push(s.gid - net.populations[p].first_gid);
        b.time_ms.push((s.step + 1) as f64 * net.dt_ms);
    }
    b
}

/// The peers' exchange addresses by rank. A peer on this host (same identity)
/// whose socket path exists here is reached over its Unix socket first.
fn peers(members: &[Member], host: &str) -> Vec<Peer> {
    members
        .iter()
        .map(|m| Peer {
            node: m.node.clone(),
            addr: m.exchange_addr.clone(),
            socket: m
                .exchange_socket
                .as_ref()
                .filter(|_| !host.is_empty() && m.host == host)
                .map(std::path::PathBuf::from)
                .filter(|p| p.exists()),
        })
        .collect()
}

/// Refuse an address that others cannot dial (no scheme, no port, or a wildcard
/// host such as the default `--listen 0.0.0.0:7071` gives).
fn dialable(flag: &str, url: &str) -> Result<()> {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
    let Some((host, port)) = rest.and_then(|r| r.trim_end_matches('/').rsplit_once(':')) else {
        anyhow::bail!("{flag} {url:?}: give http://HOST:PORT (or https://)");
    };
    if port.parse::<u16>().map_or(true, |p| p == 0) {
        anyhow::bail!("{flag} {url:?}: the port must be a number from 1 to 65535");
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_unspecified()) {
        anyhow::bail!(
            "{flag} {url:?}: other nodes and the control cannot dial a wildcard address; set {flag} to this \
             node's reachable address (in Kubernetes, the pod's DNS name) or listen on a specific one"
        );
    }
    Ok(())
}

/// `url` (`http://host:port`) with another port.
fn with_port(url: &str, port: u16) -> String {
    match url.rsplit_once(':') {
        Some((head, tail)) if tail.chars().all(|c| c.is_ascii_digit()) && head.contains("://") => {
            format!("{head}:{port}")
        }
        _ => format!("{}:{port}", url.trim_end_matches('/')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_on_this_host_with_a_reachable_socket_use_it() {
        let dir = std::env::temp_dir().join(format!("neuropil-peers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let there = dir.join("node.sock");
        let _l = std::os::unix::net::UnixListener::bind(&there).unwrap();
        let member = |host: &str, socket: Option<&std::path::Path>| Member {
            node: "n".into(),
            addr: "http://h:1".into(),
            exchange_addr: "http://h:2".into(),
            exchange_socket: socket.map(|p| p.display().to_string()),
            host: host.into(),
            shards: vec![],
            threads: 1,
        };
        let missing = dir.join("missing.sock");
        let ms = [
            member("me", Some(&there)),
            member("other", Some(&there)),
            member("me", Some(&missing)),
            member("me", None),
        ];
        let got: Vec<_> = peers(&ms, "me").into_iter().map(|p| p.socket.is_some()).collect();
        assert_eq!(got, [true, false, false, false]);
        assert!(peers(&ms, "").iter().all(|p| p.socket.is_none()), "an unknown host identity never matches");
        assert_eq!(peers(&ms, "me")[0].addr, "http://h:2");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn exchange_address_takes_the_advertised_host() {
        assert_eq!(super::with_port("http://node-0.neuropil-node:7071", 7072), "http://node-0.neuropil-node:7072");
        assert_eq!(super::with_port("http://127.0.0.1:4000", 5), "http://127.0.0.1:5");
        assert_eq!(super::with_port("http://host", 7072), "http://host:7072");
    }
}

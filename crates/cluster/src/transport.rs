//! The per-epoch spike exchange between nodes over gRPC (SpikeExchange.Exchange):
//! one bidirectional stream per pair of nodes, one message per epoch each way.
//!
//! The simulation thread drives the exchange itself: a run owns a single-threaded
//! tokio runtime that serves the node's exchange port and holds the streams to its
//! peers, and the kernel's blocking `Transport` calls (`send`, `receive`) run
//! it only for the moment of the exchange. Sending, receiving and decoding
//! happen on that thread, without a hand-off to other threads (epochs can be one
//! 0.1 ms step; each hand-off costs tens of microseconds). While it waits for a
//! peer it polls the peer's stream for a short while before sleeping in epoll.
//! Between exchanges nothing runs: messages wait in the socket buffers. Streams
//! keep their order, so the k-th message of a peer is its epoch k; a peer is
//! never more than one epoch ahead.
//!
//! Nodes on one host can also serve the exchange on a Unix socket
//! (`--exchange-socket`): the same gRPC stream, a shorter kernel path (on the
//! benchmark VM a bare exchange over loopback TCP costs 6.7 µs, over a Unix
//! socket 2.5 µs; docs/benchmarks.md).

use crate::auth::ClusterToken;
use crate::telemetry::ExchangeMetrics;
use hyper_util::rt::TokioIo;
use neuropil_proto::v1::spike_exchange_client::SpikeExchangeClient;
use neuropil_proto::v1::spike_exchange_server::{SpikeExchange, SpikeExchangeServer};
use neuropil_proto::v1::EpochMessage;
use neuropil_sim::embedded::Transport;
use neuropil_sim::network::{Exchange, SpikeDelay, StateValue, ValueKind};
use neuropil_sim::routing::Routes;
use neuropil_sim::Spike;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// gRPC metadata naming the run of an exchange stream.
pub const RUN_HEADER: &str = "x-neuropil-run";
/// gRPC metadata naming the caller's rank.
pub const RANK_HEADER: &str = "x-neuropil-rank";

/// How long the simulation thread polls for a peer's message before it sleeps in
/// epoll: waking from epoll costs this VM 50-100 µs, more than a whole epoch of
/// the microcircuit at 10 % scale (docs/benchmarks.md, "cluster").
const SPIN: Duration = Duration::from_millis(5);

/// Runtime ticks given to the connections after the channels drained.
const FLUSH_TICKS: usize = 2;

/// Largest epoch message accepted from a peer.
const MAX_EPOCH_MESSAGE_BYTES: usize = 64 << 20;

/// What reaches the simulation thread when a stream opens.
enum Inbound {
    /// The stream with a peer is open: its messages arrive on the `Streaming`
    /// (polled by the simulation thread itself); a lower-ranked peer's stream
    /// also brings the sender for this node's messages to it.
    Connected(u32, Sink, Box<tonic::Streaming<EpochMessage>>),
    /// The stream to a peer could not be opened.
    Failed(u32, String),
}

/// Encode a shard output for the wire (steps relative to the first one).
pub fn encode(run: &str, sender: u32, epoch: u64, x: &Exchange, stop: bool) -> EpochMessage {
    let steps = x.spikes.iter().map(|s| s.step).chain(x.values.iter().map(|v| v.step));
    let first_step = steps.chain(x.delays.iter().map(|d| d.step)).min().unwrap_or(0);
    EpochMessage {
        run: run.to_string(),
        sender,
        epoch,
        first_step,
        spike_gid: x.spikes.iter().map(|s| s.gid).collect(),
        spike_step: x.spikes.iter().map(|s| (s.step - first_step) as u32).collect(),
        value_gid: x.values.iter().map(|v| v.gid).collect(),
        value_step: x.values.iter().map(|v| (v.step - first_step) as u32).collect(),
        value_kind: x.values.iter().map(|v| v.kind as u32).collect(),
        value: x.values.iter().map(|v| v.value).collect(),
        stop,
        delay_gid: x.delays.iter().map(|d| d.gid).collect(),
        delay_step: x.delays.iter().map(|d| (d.step - first_step) as u32).collect(),
        delay_core: x.delays.iter().map(|d| d.core).collect(),
        delay_extra: x.delays.iter().map(|d| d.extra_steps).collect(),
        sent_unix_ns: 0,
    }
}

/// Now, ns since the Unix epoch (the clock the emulated latency is measured by:
/// one clock for every network namespace of a host).
fn unix_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Emulated link latency: hold a message until `latency` after it was sent
/// (sleeping for most of a long wait, spinning for the rest, as the exchange's
/// own waits do).
fn arrive_after(sent_unix_ns: u64, latency: Duration) {
    let due = sent_unix_ns.saturating_add(latency.as_nanos() as u64);
    loop {
        let now = unix_ns();
        if now >= due {
            return;
        }
        match due - now {
            left if left > 200_000 => std::thread::sleep(Duration::from_nanos(left - 100_000)),
            _ => std::hint::spin_loop(),
        }
    }
}

/// Decode a peer's message into `into` (appending); a malformed message is an error.
pub fn decode(m: &EpochMessage, into: &mut Exchange) -> Result<(), String> {
    if m.spike_gid.len() != m.spike_step.len() {
        return Err(format!("peer {}: {} spike ids but {} steps", m.sender, m.spike_gid.len(), m.spike_step.len()));
    }
    let n = m.value_gid.len();
    if m.value_step.len() != n || m.value_kind.len() != n || m.value.len() != n {
        return Err(format!("peer {}: state value columns of different lengths", m.sender));
    }
    let d = m.delay_gid.len();
    if m.delay_step.len() != d || m.delay_core.len() != d || m.delay_extra.len() != d {
        return Err(format!("peer {}: fabric delay columns of different lengths", m.sender));
    }
    into.spikes.extend(
        m.spike_gid.iter().zip(&m.spike_step).map(|(&gid, &off)| Spike { step: m.first_step + off as u64, gid }),
    );
    for i in 0..n {
        let kind = ValueKind::from_u32(m.value_kind[i])
            .ok_or_else(|| format!("peer {}: unknown state value kind {}", m.sender, m.value_kind[i]))?;
        into.values.push(StateValue {
            step: m.first_step + m.value_step[i] as u64,
            gid: m.value_gid[i],
            kind,
            value: m.value[i],
        });
    }
    into.delays.extend((0..d).map(|i| SpikeDelay {
        step: m.first_step + m.delay_step[i] as u64,
        gid: m.delay_gid[i],
        core: m.delay_core[i],
        extra_steps: m.delay_extra[i],
    }));
    Ok(())
}

/// The node's exchange port (and, optionally, its Unix socket for peers on the
/// same host): bound once at startup and served, during a run, by that run's own
/// runtime (connections that arrive between runs wait in the backlog).
pub struct ExchangePort {
    listener: std::net::TcpListener,
    socket: Option<(std::os::unix::net::UnixListener, PathBuf)>,
}

impl ExchangePort {
    /// Bind `addr` (port 0: any free port).
    pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<ExchangePort> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(ExchangePort { listener, socket: None })
    }

    /// Also listen on the Unix socket `path`. A socket file nobody listens on (left
    /// by a node that died) is replaced; one that answers is an error, and so is a
    /// file that is not a socket.
    pub fn bind_socket(&mut self, path: &Path) -> Result<(), String> {
        use std::os::unix::fs::FileTypeExt;
        let shown = path.display();
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(format!("{shown} exists and is not a socket; choose another path"));
            }
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(format!("{shown}: another process listens there; give each node its own path"));
            }
            std::fs::remove_file(path).map_err(|e| format!("{shown}: cannot replace the stale socket: {e}"))?;
        }
        let listener = std::os::unix::net::UnixListener::bind(path).map_err(|e| format!("{shown}: {e}"))?;
        listener.set_nonblocking(true).map_err(|e| format!("{shown}: {e}"))?;
        self.socket = Some((listener, path.to_path_buf()));
        Ok(())
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }
}

impl Drop for ExchangePort {
    fn drop(&mut self) {
        if let Some((_, path)) = &self.socket {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Where a peer's exchange listens.
#[derive(Debug, Clone, PartialEq)]
pub struct Peer {
    /// Its node id (names it in errors: "node-3 (rank 3) stopped sending").
    pub node: String,
    /// Its TCP address (`http://host:port`, or https with TLS); also names the
    /// peer in TLS.
    pub addr: String,
    /// Its Unix socket, when it is on this host and the path is reachable from
    /// here; tried before the TCP address.
    pub socket: Option<PathBuf>,
}

/// This host's identity for choosing Unix sockets: the (UTS namespace) host name,
/// the kernel's boot id and the network namespace. Pods have host names of their
/// own; processes in different network namespaces (containers, `ip netns`) are
/// different hosts even with one name, so that their traffic takes the network
/// (a cut link cuts it) instead of a socket on a shared file system. Empty where
/// unknown.
pub fn host_identity() -> String {
    let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_string()).unwrap_or_default();
    let (name, boot) = (read("/proc/sys/kernel/hostname"), read("/proc/sys/kernel/random/boot_id"));
    let net = std::fs::read_link("/proc/self/ns/net").map(|l| l.display().to_string()).unwrap_or_default();
    if name.is_empty() || boot.is_empty() || net.is_empty() {
        String::new()
    } else {
        format!("{name}/{boot}/{net}")
    }
}

/// The server half of the exchange, inside a run's runtime.
struct ExchangeSvc {
    run: String,
    rank: u32,
    inbound: mpsc::UnboundedSender<Inbound>,
}

type OutStream = tokio_stream::wrappers::ReceiverStream<Result<EpochMessage, Status>>;

#[tonic::async_trait]
impl SpikeExchange for ExchangeSvc {
    type ExchangeStream = OutStream;

    async fn exchange(&self, req: Request<tonic::Streaming<EpochMessage>>) -> Result<Response<OutStream>, Status> {
        let header = |name: &str| req.metadata().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let run =
            header(RUN_HEADER).ok_or_else(|| Status::invalid_argument(format!("missing {RUN_HEADER} metadata")))?;
        let rank: u32 = header(RANK_HEADER)
            .and_then(|r| r.parse().ok())
            .ok_or_else(|| Status::invalid_argument(format!("missing or non-numeric {RANK_HEADER} metadata")))?;
        if run != self.run {
            // Say nothing about what does run here.
            return Err(Status::failed_precondition(format!("no run {run:?} on this node")));
        }
        if rank >= self.rank {
            return Err(Status::invalid_argument(format!(
                "rank {rank}: only lower ranks open streams to rank {}",
                self.rank
            )));
        }
        let (tx, rx) = mpsc::channel(64);
        if self.inbound.send(Inbound::Connected(rank, Sink::Response(tx), Box::new(req.into_inner()))).is_err() {
            return Err(Status::unavailable("the run has ended"));
        }
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }
}

/// Open the stream to a higher-ranked peer: connect (retrying until `deadline`),
/// send what arrives on `rx`, hand the peer's side of the stream to `inbound`.
#[allow(clippy::too_many_arguments)]
async fn open_stream(
    tls: crate::tls::Tls,
    token: ClusterToken,
    run: String,
    my_rank: u32,
    peer: u32,
    Peer { addr, socket, .. }: Peer,
    deadline: tokio::time::Instant,
    inbound: mpsc::UnboundedSender<Inbound>,
    metrics: ExchangeMetrics,
) {
    let fail = |why: String| {
        let _ = inbound.send(Inbound::Failed(peer, why));
    };
    let endpoint = match tls.endpoint(&addr) {
        Ok(e) => e.tcp_nodelay(true),
        Err(e) => return fail(format!("peer exchange address {addr}: {e:#}")),
    };
    let (channel, via) = loop {
        // The Unix socket first (same host): the same HTTP/2 (and TLS, if set up)
        // over a cheaper kernel path; then TCP.
        if let Some(path) = socket.clone() {
            let connector = tower::service_fn(move |_: tonic::transport::Uri| {
                let path = path.clone();
                async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
            });
            if let Ok(c) = endpoint.connect_with_connector(connector).await {
                break (c, "unix");
            }
        }
        match endpoint.connect().await {
            Ok(c) => break (c, "tcp"),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return fail(format!("cannot reach the peer's exchange port {addr}: {e}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let mut client = SpikeExchangeClient::new(channel).max_decoding_message_size(MAX_EPOCH_MESSAGE_BYTES);
    loop {
        // This node's messages go on the request half; its sender reaches the
        // simulation thread only once the peer has taken the stream, so that a
        // refused attempt loses none of them.
        let (tx, rx) = mpsc::channel(64);
        let mut req = Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        token.attach(req.metadata_mut());
        if let (Ok(r), Ok(k)) = (run.parse(), my_rank.to_string().parse()) {
            req.metadata_mut().insert(RUN_HEADER, r);
            req.metadata_mut().insert(RANK_HEADER, k);
        }
        match client.exchange(req).await {
            Ok(r) => {
                metrics.exchange_streams.with_label_values(&[via]).inc();
                let _ = inbound.send(Inbound::Connected(peer, Sink::Request(tx), Box::new(r.into_inner())));
                return;
            }
            // The peer still serves an earlier run (it is finishing the attempt
            // that this one replaces): it will serve this one once that is over.
            Err(s) if s.code() == tonic::Code::FailedPrecondition && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(s) if s.code() == tonic::Code::Unauthenticated => {
                return fail(format!(
                    "exchange stream to {addr}: refused this node's cluster token; give every node and control \
                     the same --cluster-token-file (or none, to use the one kept in etcd)"
                ))
            }
            Err(s) => return fail(format!("exchange stream to {addr}: {}", s.message())),
        }
    }
}

/// Where this node's messages to one peer go.
enum Sink {
    /// The request half of a stream this node opened (to a higher rank).
    Request(mpsc::Sender<EpochMessage>),
    /// The response half of a stream a lower rank opened.
    Response(mpsc::Sender<Result<EpochMessage, Status>>),
}

/// The kernel's [`Transport`] over gRPC streams, driven by the simulation thread.
pub struct GrpcTransport {
    rt: tokio::runtime::Runtime,
    run: String,
    rank: u32,
    sinks: Vec<Option<Sink>>,
    inbound: mpsc::UnboundedReceiver<Inbound>,
    /// The peers' halves of the streams, by rank.
    streams: Vec<Option<tonic::Streaming<EpochMessage>>>,
    ended: Vec<Option<String>>,
    /// Each peer as errors name it: `node-3 (rank 3)`.
    names: Vec<String>,
    seq: u64,
    wait: Wait,
    metrics: ExchangeMetrics,
    /// The byte counters by direction, looked up once (not every epoch).
    bytes_sent: prometheus::IntCounter,
    bytes_received: prometheus::IntCounter,
    /// When this epoch's send began.
    started: Option<Instant>,
    /// The peer waited for now.
    waiting: Arc<Waiting>,
    /// Targeted spike routing: each peer gets the spikes it needs (`None`, or
    /// routes that target nothing: one message for all).
    routes: Option<Routes>,
    /// Emulated one-way link latency (zero: none).
    latency: Duration,
}

impl GrpcTransport {
    /// Serve `port` and open streams to the higher ranks among `peers` (exchange
    /// addresses by rank) for `run`. Peers may start later: connections are
    /// retried, and lower ranks are awaited, for up to `timeout`.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        run: &str,
        rank: u32,
        peers: &[Peer],
        port: &ExchangePort,
        tls: &crate::tls::Tls,
        token: &ClusterToken,
        timeout: Duration,
        metrics: ExchangeMetrics,
    ) -> Result<GrpcTransport, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("exchange runtime: {e}"))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let listener = port.listener.try_clone().map_err(|e| format!("exchange port: {e}"))?;
        let socket = match &port.socket {
            Some((l, _)) => Some(l.try_clone().map_err(|e| format!("exchange socket: {e}"))?),
            None => None,
        };
        let n = peers.len();
        let sinks: Vec<Option<Sink>> = (0..n).map(|_| None).collect();
        {
            let _guard = rt.enter();
            let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| format!("exchange port: {e}"))?;
            let server = || -> Result<_, String> {
                let mut builder = tonic::transport::Server::builder();
                if let Some(t) = &tls.server {
                    builder = builder.tls_config(t.clone()).map_err(|e| format!("exchange TLS: {e}"))?;
                }
                let svc = ExchangeSvc { run: run.to_string(), rank, inbound: tx.clone() };
                let svc = SpikeExchangeServer::new(svc).max_decoding_message_size(MAX_EPOCH_MESSAGE_BYTES);
                let token = token.clone();
                let svc = tonic::service::interceptor::InterceptedService::new(svc, move |req| token.check(req));
                Ok(builder.tcp_nodelay(true).add_service(svc))
            };
            let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            rt.spawn(server()?.serve_with_incoming(incoming));
            if let Some(socket) = socket {
                let socket = tokio::net::UnixListener::from_std(socket).map_err(|e| format!("exchange socket: {e}"))?;
                let incoming = tokio_stream::wrappers::UnixListenerStream::new(socket);
                rt.spawn(server()?.serve_with_incoming(incoming));
            }
            let deadline = tokio::time::Instant::now() + timeout;
            for (r, peer) in peers.iter().enumerate().skip(rank as usize + 1) {
                let (run, peer, tx) = (run.to_string(), peer.clone(), tx.clone());
                let m = metrics.clone();
                let (tls, token) = (tls.clone(), token.clone());
                rt.spawn(open_stream(tls, token, run, rank, r as u32, peer, deadline, tx, m));
            }
        }
        Ok(GrpcTransport {
            rt,
            run: run.to_string(),
            rank,
            sinks,
            inbound: rx,
            streams: (0..n).map(|_| None).collect(),
            ended: vec![None; n],
            names: peers
                .iter()
                .enumerate()
                .map(|(r, p)| if p.node.is_empty() { format!("rank {r}") } else { format!("{} (rank {r})", p.node) })
                .collect(),
            seq: 0,
            wait: Wait { timeout, abort: None },
            bytes_sent: metrics.exchange_bytes.with_label_values(&["sent"]),
            bytes_received: metrics.exchange_bytes.with_label_values(&["received"]),
            metrics,
            started: None,
            waiting: Arc::new(Waiting::new()),
            routes: None,
            latency: Duration::ZERO,
        })
    }

    /// Emulate a one-way link latency: every message of this node is stamped
    /// when it leaves, and every message from a peer is taken in no earlier than
    /// `latency` after its stamp. For tests and benchmarks of runs across hosts
    /// (our kernels have no `netem`); every node of a run must set the same.
    pub fn emulate_latency(&mut self, latency: Duration) {
        self.latency = latency;
    }

    /// Send each peer only the spikes it needs ([`Routes`]); a no-op for routes
    /// under which every node needs everything.
    pub fn set_routes(&mut self, routes: Routes) {
        self.routes = routes.targeted().then_some(routes);
    }

    /// Which peer this transport waits for, readable from any thread.
    pub fn waiting(&self) -> Arc<Waiting> {
        self.waiting.clone()
    }

    /// End waits for peers as soon as `flag` is set (the node sets it when the
    /// control stops this attempt of the run), not only at the timeout.
    pub fn abort_on(&mut self, flag: Arc<AtomicBool>) {
        self.wait.abort = Some(flag);
    }

    /// Close this node's streams after its last exchange and wait (up to 10 s)
    /// until every peer has closed its own: a peer closes only after it has
    /// received everything, so no message is lost when the runtime goes away.
    pub fn finish(&mut self) {
        let Self { rt, sinks, streams, .. } = self;
        sinks.iter_mut().for_each(|s| *s = None);
        rt.block_on(async {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            for stream in streams.iter_mut().flatten() {
                while let Ok(Ok(Some(_))) = tokio::time::timeout_at(deadline, stream.message()).await {}
            }
        });
    }
}

/// Take a stream that opened (or failed to) into the transport's state.
fn absorb(
    ev: Inbound,
    sinks: &mut [Option<Sink>],
    streams: &mut [Option<tonic::Streaming<EpochMessage>>],
    ended: &mut [Option<String>],
) -> Result<(), String> {
    match ev {
        Inbound::Connected(r, tx, stream) => {
            let r = r as usize;
            if r >= sinks.len() {
                return Err(format!("rank {r} is not part of this run"));
            }
            sinks[r] = Some(tx);
            streams[r] = Some(*stream);
        }
        Inbound::Failed(r, why) => {
            if let Some(slot) = ended.get_mut(r as usize) {
                *slot = Some(why);
            }
        }
    }
    Ok(())
}

/// Which peer the simulation thread waits for now, and since when. That thread is
/// blocked meanwhile, so the node reads this from another one and reports it: two
/// nodes each waiting for the other cannot reach each other (a partition of the
/// node network while both still reach etcd).
pub struct Waiting {
    origin: Instant,
    /// The peer's rank (`u32::MAX`: none).
    peer: std::sync::atomic::AtomicU32,
    /// When the wait began, µs after `origin`.
    since_us: std::sync::atomic::AtomicU64,
}

impl Waiting {
    fn new() -> Waiting {
        Waiting {
            origin: Instant::now(),
            peer: std::sync::atomic::AtomicU32::new(u32::MAX),
            since_us: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// A wait that began at `since` (the epoch's receive: one clock read per
    /// epoch, not per peer).
    fn since(&self, since: Instant) {
        self.since_us.store(since.saturating_duration_since(self.origin).as_micros() as u64, Ordering::Relaxed);
    }

    fn on(&self, peer: usize) {
        self.peer.store(peer as u32, Ordering::Release);
    }

    fn stop(&self) {
        self.peer.store(u32::MAX, Ordering::Release);
    }

    /// The rank waited for and how long so far; None when waiting for nobody.
    pub fn now(&self) -> Option<(usize, Duration)> {
        let peer = self.peer.load(Ordering::Acquire);
        if peer == u32::MAX {
            return None;
        }
        let since = Duration::from_micros(self.since_us.load(Ordering::Relaxed));
        Some((peer as usize, self.origin.elapsed().saturating_sub(since)))
    }
}

/// How long to wait for a peer, and what ends the wait early.
#[derive(Clone)]
struct Wait {
    timeout: Duration,
    /// Set when the control ends this attempt of the run (a recovery): a wait
    /// for a peer that froze or was cut off ends at once instead of at `timeout`.
    abort: Option<Arc<AtomicBool>>,
}

impl Wait {
    fn aborted(&self) -> bool {
        self.abort.as_ref().is_some_and(|a| a.load(Ordering::Relaxed))
    }

    /// Why a wait that gave nothing ended.
    fn why(&self, what: &str) -> String {
        if self.aborted() {
            "the control stopped this attempt of the run (it recovers from a lost node)".into()
        } else {
            format!("{what} for {} s", self.timeout.as_secs())
        }
    }
}

/// Poll until `poll` is ready: for [`SPIN`] with the runtime ticking in between
/// (its connections read and write their sockets), then asleep in epoll for up
/// to the wait's timeout, or until it is aborted (None: timed out or aborted).
async fn spin<T>(mut poll: impl FnMut(&mut Context<'_>) -> Poll<T>, wait: &Wait) -> Option<T> {
    let spin_until = Instant::now() + SPIN;
    loop {
        if let Poll::Ready(x) = std::future::poll_fn(|cx| Poll::Ready(poll(cx))).await {
            return Some(x);
        }
        if Instant::now() >= spin_until {
            break;
        }
        // Lets the runtime poll its sockets (without sleeping) and run the
        // connection tasks; and lets another process have this core if one is
        // waiting for it (more nodes than cores): the peer we wait for may be
        // that process.
        std::thread::yield_now();
        tokio::task::yield_now().await;
    }
    let deadline = tokio::time::Instant::now() + wait.timeout;
    loop {
        let slice = (tokio::time::Instant::now() + Duration::from_millis(100)).min(deadline);
        if let Ok(x) = tokio::time::timeout_at(slice, std::future::poll_fn(&mut poll)).await {
            return Some(x);
        }
        if wait.aborted() || tokio::time::Instant::now() >= deadline {
            return None;
        }
    }
}

/// The next stream to open (or fail), waited for as by [`spin`].
async fn next_event(inbound: &mut mpsc::UnboundedReceiver<Inbound>, wait: &Wait) -> Result<Inbound, String> {
    match spin(|cx| inbound.poll_recv(cx), wait).await {
        Some(Some(ev)) => Ok(ev),
        Some(None) => Err("exchange channel closed".into()),
        None => Err(wait.why("no peer connected")),
    }
}

/// Run the stream tasks until this epoch's messages have left the channels and
/// the connections have had the chance to write them: otherwise a message could
/// sit in a buffer while the simulation computes the next epoch, and the peer
/// would wait for it that long.
async fn flush(sinks: &[Option<Sink>]) {
    let drained = |s: &Option<Sink>| match s {
        Some(Sink::Request(tx)) => tx.capacity() == tx.max_capacity(),
        Some(Sink::Response(tx)) => tx.capacity() == tx.max_capacity(),
        None => true,
    };
    for _ in 0..64 {
        if sinks.iter().all(drained) {
            break;
        }
        tokio::task::yield_now().await;
    }
    // From the body channel into h2's buffer, then onto the socket.
    for _ in 0..FLUSH_TICKS {
        tokio::task::yield_now().await;
    }
}

impl Transport for GrpcTransport {
    fn send(&mut self, local: &Exchange, stop: bool) -> Result<(), String> {
        self.started = Some(Instant::now());
        let Self { rt, run, rank, seq, sinks, streams, inbound, ended, wait, bytes_sent, names, routes, .. } = self;
        let (me, seq) = (*rank, *seq);
        let stamp = if self.latency.is_zero() { 0 } else { unix_ns() };
        let encode = |run: &str, me, seq, x: &Exchange, stop| EpochMessage {
            sent_unix_ns: stamp,
            ..encode(run, me, seq, x, stop)
        };
        // One message for every peer, or with targeted routing each its own.
        let everyone = routes.is_none().then(|| encode(run, me, seq, local, stop));
        let mut mine = Exchange::default();
        let rank = me as usize;
        let n = sinks.len();
        rt.block_on(async {
            for r in (0..n).filter(|&r| r != rank) {
                let msg = match (&everyone, routes.as_ref()) {
                    (Some(m), _) => m.clone(),
                    (_, Some(routes)) => {
                        routes.select(r, local, &mut mine);
                        encode(run, me, seq, &mine, stop)
                    }
                    (None, None) => encode(run, me, seq, local, stop), // (everyone is set without routes)
                };
                let bytes = prost::Message::encoded_len(&msg) as u64;
                // The stream with this peer may not be open yet.
                while sinks[r].is_none() {
                    if let Some(why) = &ended[r] {
                        return Err(format!("{}: {why}", names[r]));
                    }
                    let ev = next_event(inbound, wait)
                        .await
                        .map_err(|e| format!("waiting for {} to connect: {e}", names[r]))?;
                    absorb(ev, sinks, streams, ended)?;
                }
                let sent = match &sinks[r] {
                    Some(Sink::Request(tx)) => tx.send(msg).await.is_ok(),
                    Some(Sink::Response(tx)) => tx.send(Ok(msg)).await.is_ok(),
                    None => false,
                };
                if !sent {
                    let why = ended[r].clone().unwrap_or_else(|| "stream closed".into());
                    return Err(format!("{}: {why}", names[r]));
                }
                bytes_sent.inc_by(bytes);
            }
            // Out of this process before it computes anything else.
            flush(sinks).await;
            Ok(())
        })
    }

    fn receive(&mut self, into: &mut Exchange) -> Result<bool, String> {
        let latency = self.latency;
        let Self {
            rt, rank, sinks, streams, inbound, ended, seq, wait, bytes_received, metrics, names, waiting, ..
        } = self;
        let (rank, epoch) = (*rank as usize, *seq);
        let n = sinks.len();
        let wait_start = Instant::now();
        waiting.since(wait_start);
        let result = rt.block_on(async {
            let mut any_stop = false;
            for r in (0..n).filter(|&r| r != rank) {
                waiting.on(r);
                while streams[r].is_none() {
                    if let Some(why) = &ended[r] {
                        return Err(format!("{}: {why}", names[r]));
                    }
                    let ev =
                        next_event(inbound, wait).await.map_err(|e| format!("epoch {epoch}, {}: {e}", names[r]))?;
                    absorb(ev, sinks, streams, ended)?;
                }
                let Some(stream) = streams[r].as_mut() else { continue };
                let got = match spin(|cx| Pin::new(&mut *stream).poll_next(cx), wait).await {
                    Some(Some(Ok(m))) => Ok(m),
                    Some(Some(Err(s))) => Err(s.message().to_string()),
                    Some(None) => Err("ended its stream".to_string()),
                    None => Err(wait.why("no message")),
                };
                let m = match got {
                    Ok(m) => m,
                    Err(why) => {
                        streams[r] = None;
                        ended[r] = Some(why.clone());
                        return Err(format!("{} stopped sending at epoch {epoch}: {why}", names[r]));
                    }
                };
                bytes_received.inc_by(prost::Message::encoded_len(&m) as u64);
                if m.epoch != epoch {
                    return Err(format!("{} is at epoch {} but this node is at {epoch}", names[r], m.epoch));
                }
                any_stop |= m.stop;
                if !latency.is_zero() {
                    arrive_after(m.sent_unix_ns, latency);
                }
                decode(&m, into)?;
            }
            Ok(any_stop)
        });
        waiting.stop();
        metrics.exchange_wait.observe(wait_start.elapsed().as_secs_f64());
        if let Some(start) = self.started.take() {
            metrics.epoch_exchange.observe(start.elapsed().as_secs_f64());
        }
        self.seq += 1;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_identity_names_the_network_namespace() {
        let id = host_identity();
        assert!(id.contains("/net:["), "{id}");
        // The same process, the same identity.
        assert_eq!(id, host_identity());
    }

    #[test]
    fn epoch_messages_round_trip() {
        let x = Exchange {
            spikes: vec![Spike { step: 100, gid: 3 }, Spike { step: 101, gid: 1 }],
            values: vec![StateValue { step: 100, gid: 7, kind: ValueKind::Sic, value: 0.25 }],
            delays: vec![
                SpikeDelay { step: 99, gid: 4, core: 2, extra_steps: 3 },
                SpikeDelay { step: 100, gid: 3, core: 0, extra_steps: SpikeDelay::DROPPED },
            ],
        };
        let m = encode("exp", 1, 9, &x, true);
        assert_eq!((m.first_step, m.stop, m.epoch), (99, true, 9));
        let mut back = Exchange::default();
        decode(&m, &mut back).unwrap();
        assert_eq!(back, x);
        let mut bad = m.clone();
        bad.spike_step.pop();
        assert!(decode(&bad, &mut Exchange::default()).unwrap_err().contains("spike ids"));
        let mut bad = m.clone();
        bad.delay_core.pop();
        assert!(decode(&bad, &mut Exchange::default()).unwrap_err().contains("delay columns"));
    }
}

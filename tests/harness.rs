//! Starts real processes for end-to-end tests: etcd (Debian's etcd-server), and
//! `neuropil control` / `neuropil node` on loopback with free ports. Every process
//! is killed when its handle drops.

#![allow(dead_code)]

use neuropil_proto::v1::experiment_service_client::ExperimentServiceClient;
use neuropil_proto::v1::{ExperimentInfo, ExperimentState, GetRequest, SubmitRequest};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The neuropil binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_neuropil");

/// Repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A process killed on drop.
pub struct Proc {
    pub name: String,
    pub child: Child,
    /// Addresses it printed (`grpc=`, `metrics=`, and a node's `exchange=`).
    pub grpc: String,
    pub metrics: String,
    pub exchange: String,
}

impl Proc {
    /// Send a signal (SIGSTOP freezes the process as a hung host would, SIGCONT
    /// thaws it, SIGTERM asks it to shut down).
    #[allow(dead_code)]
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0, "signal {signal} to {}", self.name);
    }

    /// SIGKILL now (a crash, not a shutdown).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free TCP port on loopback (bound and released; etcd needs numbers up front).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let p = std::env::temp_dir().join(format!("neuropil-e2e-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A single-member etcd on free loopback ports.
pub struct Etcd {
    pub proc: Proc,
    pub endpoint: String,
    ports: (u16, u16),
    host: String,
    _dir: TempDir,
}

pub fn start_etcd() -> Etcd {
    start_etcd_on("127.0.0.1")
}

/// An etcd listening on `host` (a bridge address that nodes in network namespaces reach).
pub fn start_etcd_on(host: &str) -> Etcd {
    let dir = TempDir::new("etcd");
    // free_port() releases its port before etcd binds it, and a test running
    // beside this one may take it meanwhile: then etcd exits, and new ports are
    // tried.
    for _ in 0..5 {
        let ports = (free_port(), free_port());
        if let Some(proc) = spawn_etcd(&dir.0, host, ports) {
            return Etcd { proc, endpoint: format!("http://{host}:{}", ports.0), ports, host: host.into(), _dir: dir };
        }
        let _ = std::fs::remove_dir_all(dir.0.join("data"));
    }
    panic!("etcd did not start on five pairs of free ports");
}

impl Etcd {
    /// Stop etcd (SIGKILL) for `outage`, then start it again on the same data and
    /// ports, as an etcd pod that is rescheduled.
    #[allow(dead_code)]
    pub fn outage(&mut self, outage: Duration) {
        self.proc.kill();
        std::thread::sleep(outage);
        self.proc = spawn_etcd(&self._dir.0, &self.host, self.ports)
            .unwrap_or_else(|| panic!("etcd could not listen again on {:?} (taken meanwhile?)", self.ports));
    }
}

/// etcd on these ports, once healthy; `None` if it exits first (a port was taken).
fn spawn_etcd(dir: &Path, host: &str, (client, peer): (u16, u16)) -> Option<Proc> {
    let endpoint = format!("http://{host}:{client}");
    let child = Command::new("etcd")
        .args(["--name", "e2e", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--listen-client-urls", &endpoint, "--advertise-client-urls", &endpoint])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args(["--initial-cluster", &format!("e2e=http://127.0.0.1:{peer}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcd not found: install Debian's etcd-server (the tests start a real etcd)");
    let mut proc =
        Proc { name: "etcd".into(), child, grpc: endpoint.clone(), metrics: String::new(), exchange: String::new() };
    // Ready when its health endpoint answers while it runs (a health answer from
    // whoever took the port does not count).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if proc.child.try_wait().ok().flatten().is_some() {
            return None;
        }
        if let Ok(body) = http_get(&format!("{host}:{client}"), "/health") {
            if body.contains("true") && proc.child.try_wait().ok().flatten().is_none() {
                break;
            }
        }
        assert!(Instant::now() < deadline, "etcd did not become healthy within 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(proc)
}

/// Start `neuropil <args>` and wait for its "grpc=... metrics=..." line.
pub fn start(name: &str, args: &[&str]) -> Proc {
    start_with_env(name, args, &[])
}

/// [`start`] with environment variables set (failpoints).
pub fn start_with_env(name: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
    start_cmd(name, Command::new(BIN), args, env)
}

/// [`start`] inside a network namespace (`ip netns exec NS neuropil ...`: the
/// process is neuropil itself, exec'd, so signals reach it).
#[allow(dead_code)]
pub fn start_in(netns: &str, name: &str, args: &[&str]) -> Proc {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns, BIN]);
    start_cmd(name, cmd, args, &[])
}

fn start_cmd(name: &str, mut cmd: Command, args: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut child = cmd
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {name}: {e}"));
    let stdout = child.stdout.take().unwrap();
    // Owned (killed on drop) before anything here can panic.
    let mut proc =
        Proc { name: name.into(), child, grpc: String::new(), metrics: String::new(), exchange: String::new() };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut first = true;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if first {
                let _ = tx.send(line.clone());
                first = false;
            }
            eprintln!("  | {line}");
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("{name} did not start within 60 s"));
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .unwrap_or_else(|| panic!("{name} printed {line:?} without {key}"))
            .to_string()
    };
    proc.exchange = line.split_whitespace().find_map(|w| w.strip_prefix("exchange=")).unwrap_or_default().to_string();
    proc.grpc = format!("http://{}", field("grpc="));
    proc.metrics = field("metrics=");
    proc
}

/// A control replica.
pub fn start_control(etcd: &Etcd, id: &str, data_dir: &Path, extra: &[&str]) -> Proc {
    let data = data_dir.to_str().unwrap();
    let mut args = vec![
        "control",
        "--listen",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--etcd",
        &etcd.endpoint,
        "--id",
        id,
        "--data-dir",
        data,
        "--lease-ttl-s",
        "2",
    ];
    args.extend_from_slice(extra);
    start(id, &args)
}

/// A node with `threads` threads.
pub fn start_node(etcd: &Etcd, id: &str, threads: usize, extra: &[&str]) -> Proc {
    start_node_with_env(etcd, id, threads, extra, &[])
}

/// [`start_node`] with environment variables set (failpoints).
pub fn start_node_with_env(etcd: &Etcd, id: &str, threads: usize, extra: &[&str], env: &[(&str, &str)]) -> Proc {
    let threads = threads.to_string();
    let mut args = vec![
        "node",
        "--listen",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--exchange-listen",
        "127.0.0.1:0",
        "--etcd",
        &etcd.endpoint,
        "--id",
        id,
        "--threads",
        &threads,
        "--lease-ttl-s",
        "3",
    ];
    args.extend_from_slice(extra);
    start_with_env(id, &args, env)
}

/// Plain HTTP/1.1 GET (the metrics endpoints, etcd's /health).
pub fn http_get(host_port: &str, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(host_port)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host_port}\r\nConnection: close\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

/// The value of an unlabelled (or the first matching) sample in a text exposition.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.split(['{', ' ']).next() == Some(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The value of the sample of `name` whose labels include `label` (`kind="run"`).
pub fn metric_with(text: &str, name: &str, label: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.split('{').next() == Some(name) && l.contains(label))
        .find_map(|l| l.rsplit(' ').next().and_then(|v| v.parse().ok()))
}

/// The (kind, name, node, state) of every actor an experiment reports.
pub fn actors(info: &ExperimentInfo) -> Vec<(String, String, String, String)> {
    info.actors.iter().map(|a| (a.kind.clone(), a.name.clone(), a.node.clone(), a.state.clone())).collect()
}

pub type Client = ExperimentServiceClient<tonic::transport::Channel>;

pub async fn client(addr: &str) -> Client {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match ExperimentServiceClient::connect(addr.to_string()).await {
            Ok(c) => return c.max_decoding_message_size(64 << 20).max_encoding_message_size(64 << 20),
            Err(e) => assert!(Instant::now() < deadline, "cannot connect to {addr}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A Submit of a TOML experiment file (relative to the repository, or absolute)
/// with overrides, default shards and placement.
pub fn request(file: &str, set: &[&str]) -> SubmitRequest {
    let document = std::fs::read_to_string(root().join(file)).unwrap();
    SubmitRequest {
        document,
        format: "toml".into(),
        set: set.iter().map(|s| s.to_string()).collect(),
        shards: 0,
        placement: Default::default(),
    }
}

/// Submit an experiment file with overrides.
pub async fn submit(c: &mut Client, file: &str, set: &[&str]) -> Result<String, tonic::Status> {
    c.submit(request(file, set)).await.map(|r| r.into_inner().id)
}

/// Poll until the experiment reaches a final state (or panic after `within`).
pub async fn wait_done(c: &mut Client, id: &str, within: Duration) -> ExperimentInfo {
    let deadline = Instant::now() + within;
    loop {
        let info = c.get(GetRequest { id: id.into() }).await.unwrap().into_inner();
        let s = ExperimentState::try_from(info.state).unwrap();
        if matches!(s, ExperimentState::Succeeded | ExperimentState::Failed | ExperimentState::Cancelled) {
            return info;
        }
        assert!(Instant::now() < deadline, "experiment {id} still {s:?} after {within:?}: {info:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Run an experiment embedded with the CLI and return its summary.json.
pub fn embedded_summary(file: &str, set: &[&str], dir: &Path) -> serde_json::Value {
    let out = dir.join("embedded");
    let mut cmd = Command::new(BIN);
    cmd.arg("run").arg(root().join(file)).arg("--out").arg(&out).arg("-q");
    for s in set {
        cmd.args(["--set", s]);
    }
    let status = cmd.status().unwrap();
    assert!(status.success(), "embedded run failed");
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

/// `promtool check metrics` on an exposition (Prometheus naming conventions).
pub fn promtool_check(text: &str) {
    use std::io::Write;
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool not found: install Debian's prometheus");
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Poll the control's metrics until it counts `n` live nodes (20 s at most).
pub async fn wait_live_nodes(control: &Proc, n: u32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(&http_get(&control.metrics, "/metrics").unwrap(), "neuropil_live_nodes") != Some(n as f64) {
        assert!(Instant::now() < deadline, "the control never saw {n} live nodes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The services a gRPC server lists through reflection, v1 (`alpha` false) or
/// v1alpha (what older grpcurl builds ask for), sorted.
#[allow(dead_code)]
pub async fn reflected_services(addr: &str, alpha: bool) -> Vec<String> {
    // The two versions have the same messages in different modules.
    macro_rules! list {
        ($v:ident) => {{
            use tonic_reflection::pb::$v::{
                server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
                server_reflection_response::MessageResponse, ServerReflectionRequest,
            };
            let channel = tonic::transport::Endpoint::from_shared(addr.to_string()).unwrap().connect().await.unwrap();
            let req = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            };
            let mut resp = ServerReflectionClient::new(channel)
                .server_reflection_info(tokio_stream::iter([req]))
                .await
                .unwrap()
                .into_inner();
            match resp.message().await.unwrap().and_then(|r| r.message_response) {
                Some(MessageResponse::ListServicesResponse(l)) => {
                    l.service.into_iter().map(|s| s.name).collect::<Vec<String>>()
                }
                other => panic!("{addr}: {} reflection answered {other:?}", stringify!($v)),
            }
        }};
    }
    let mut names = if alpha { list!(v1alpha) } else { list!(v1) };
    names.sort();
    names
}

/// What every service lists besides its own: health and reflection (the version asked).
#[allow(dead_code)]
pub fn with_introspection(own: &str, alpha: bool) -> Vec<String> {
    let refl = if alpha { "grpc.reflection.v1alpha.ServerReflection" } else { "grpc.reflection.v1.ServerReflection" };
    let mut v = vec!["grpc.health.v1.Health".to_string(), refl.to_string(), own.to_string()];
    v.sort();
    v
}

/// Hosts of their own on this machine: a bridge in the root network namespace
/// (`10.213.N.1/24`: processes of the root namespace listen on it) and, per host,
/// a network namespace joined to it by a veth pair (`10.213.N.(10+i)`), so that a
/// test can cut one host's link while its processes live on. Traffic goes between
/// a host and the root namespace only (never host to host through the bridge,
/// which the machine's firewall may drop: Docker's FORWARD policy is DROP). Needs
/// root (CI runs as root); removed on drop.
#[allow(dead_code)]
pub struct Hosts {
    pub bridge_ip: String,
    tag: String,
    n: usize,
}

#[allow(dead_code)]
impl Hosts {
    pub fn new(n: usize) -> Hosts {
        let pid = std::process::id();
        let tag = format!("{}", pid % 100_000);
        let subnet = format!("10.213.{}", pid % 250);
        let h = Hosts { bridge_ip: format!("{subnet}.1"), tag, n };
        let br = h.bridge();
        ip(&["link", "add", &br, "type", "bridge"]);
        ip(&["addr", "add", &format!("{subnet}.1/24"), "dev", &br]);
        ip(&["link", "set", &br, "up"]);
        for i in 0..n {
            let (ns, outside, inside) = (h.netns(i), h.veth(i), format!("npi{}-{i}", h.tag));
            ip(&["netns", "add", &ns]);
            ip(&["link", "add", &outside, "type", "veth", "peer", "name", &inside]);
            ip(&["link", "set", &inside, "netns", &ns]);
            ip(&["link", "set", &outside, "master", &br]);
            ip(&["link", "set", &outside, "up"]);
            let addr = format!("{}/24", h.ip(i));
            ip(&["netns", "exec", &ns, "ip", "addr", "add", &addr, "dev", &inside]);
            ip(&["netns", "exec", &ns, "ip", "link", "set", &inside, "up"]);
            ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
        }
        h
    }

    fn bridge(&self) -> String {
        format!("npb{}", self.tag)
    }

    /// The root-side end of host `i`'s link.
    fn veth(&self, i: usize) -> String {
        format!("npo{}-{i}", self.tag)
    }

    pub fn netns(&self, i: usize) -> String {
        format!("neuropil-{}-{i}", self.tag)
    }

    pub fn ip(&self, i: usize) -> String {
        format!("{}.{}", self.bridge_ip.trim_end_matches(".1"), 10 + i)
    }

    /// Drop (`cut`) or pass again every TCP segment to or from `ports` on host
    /// `i` (iptables inside its namespace): its link stays up and its other
    /// connections (etcd, the control) go on, as when a switch between nodes
    /// fails but their path to the control plane does not.
    pub fn cut_ports(&self, i: usize, ports: &[u16], cut: bool) {
        let ns = self.netns(i);
        for port in ports.iter().map(u16::to_string) {
            for (chain, dir) in
                [("INPUT", "--dport"), ("INPUT", "--sport"), ("OUTPUT", "--dport"), ("OUTPUT", "--sport")]
            {
                let op = if cut { "-I" } else { "-D" };
                let args = ["netns", "exec", &ns, "iptables", op, chain, "-p", "tcp", dir, &port, "-j", "DROP"];
                ip(&args);
            }
        }
    }

    /// Take host `i`'s link down (`up` false) or up again.
    pub fn link(&self, i: usize, up: bool) {
        ip(&["link", "set", &self.veth(i), if up { "up" } else { "down" }]);
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for i in 0..self.n {
            let _ = Command::new("ip").args(["netns", "del", &self.netns(i)]).status();
            let _ = Command::new("ip").args(["link", "del", &self.veth(i)]).status();
        }
        let _ = Command::new("ip").args(["link", "del", &self.bridge()]).status();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip not found: install Debian's iproute2");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// Every series family `text` exposes is in tests/data/metrics-<service>.txt, and
/// every family listed there without a `?` (those appear only after some event:
/// a recovery, a checkpoint) is exposed.
pub fn golden_names(service: &str, text: &str) {
    let path = root().join(format!("tests/data/metrics-{service}.txt"));
    let golden = std::fs::read_to_string(&path).unwrap_or_default();
    let listed: Vec<(&str, bool)> = golden
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| (l.trim_end_matches('?').trim(), l.ends_with('?')))
        .collect();
    let exposed: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next()).collect();
    let unlisted: Vec<&&str> = exposed.iter().filter(|n| !listed.iter().any(|(g, _)| g == *n)).collect();
    let missing: Vec<&str> =
        listed.iter().filter(|(g, optional)| !optional && !exposed.contains(g)).map(|x| x.0).collect();
    assert!(
        unlisted.is_empty() && missing.is_empty(),
        "{service} metrics differ from {}: not listed {unlisted:?}, not exposed {missing:?}",
        path.display()
    );
}

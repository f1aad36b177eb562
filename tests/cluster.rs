//! The cluster end to end: a real etcd, control replicas and node processes on
//! loopback, driven over gRPC. Spikes must be bit-identical to the embedded run.

mod harness;

use harness::*;
use neuropil_proto::v1::{CancelRequest, ExperimentState, GetRequest, ListRequest, SubmitRequest};
use std::process::Command;
use std::time::{Duration, Instant};

const MICROCIRCUIT: &str = "examples/microcircuit.toml";
const SCALE: [&str; 2] = ["scaling.neurons=0.1", "scaling.synapses=0.1"];

fn with_duration(ms: u32) -> Vec<String> {
    let mut v: Vec<String> = SCALE.iter().map(|s| s.to_string()).collect();
    v.push(format!("run.duration_ms={ms}"));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microcircuit_on_1_and_3_nodes_matches_the_embedded_run_and_metrics_move() {
    let tmp = TempDir::new("match");
    let etcd = start_etcd();
    let control = start_control(&etcd, "control-0", &tmp.0.join("data"), &[]);
    let set = with_duration(600);
    let set: Vec<&str> = set.iter().map(String::as_str).collect();
    let embedded = embedded_summary(MICROCIRCUIT, &set, &tmp.0);
    let expected = embedded["spike_hash"].as_str().unwrap().to_string();

    // One node.
    let n0 = start_node(&etcd, "node-0", 2, &[]);
    let mut c = client(&control.grpc).await;
    let id = submit(&mut c, MICROCIRCUIT, &set).await.unwrap();
    let info = wait_done(&mut c, &id, Duration::from_secs(300)).await;
    assert_eq!(info.state, ExperimentState::Succeeded as i32, "{info:?}");
    assert_eq!(info.nodes, vec!["node-0"]);
    assert_eq!(info.spike_hash, expected, "1 node: spikes differ from the embedded run");
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(std::path::Path::new(&info.output_dir).join("summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["spike_hash"], embedded["spike_hash"]);
    assert_eq!(summary["synapses"], embedded["synapses"]);
    assert!(std::path::Path::new(&info.output_dir).join("spikes.parquet").exists());

    // Three nodes, one thread each (3 shards). node-1 also serves the exchange on
    // a Unix socket: the node that dials it uses the socket, the others TCP.
    let s1 = tmp.0.join("node-1.sock").to_str().unwrap().to_string();
    let n1 = start_node(&etcd, "node-1", 1, &["--exchange-socket", &s1]);
    let n2 = start_node(&etcd, "node-2", 1, &[]);
    wait_live_nodes(&control, 3).await;
    let longer = with_duration(1100);
    let longer: Vec<&str> = longer.iter().map(String::as_str).collect();
    let expected_long =
        embedded_summary(MICROCIRCUIT, &longer, &tmp.0.join("long"))["spike_hash"].as_str().unwrap().to_string();
    let id = submit(&mut c, MICROCIRCUIT, &longer).await.unwrap();
    // Scrape a node's metrics while the run goes: biological time must move.
    let mut seen = Vec::new();
    let mut exposition = String::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let info = c.get(GetRequest { id: id.clone() }).await.unwrap().into_inner();
        let text = http_get(&n1.metrics, "/metrics").unwrap();
        if info.state == ExperimentState::Running as i32 {
            if let Some(t) = metric(&text, "neuropil_bio_time_seconds") {
                if t > 0.0 && seen.last() != Some(&t) {
                    seen.push(t);
                    exposition = text;
                }
            }
        } else if info.state != ExperimentState::Pending as i32 {
            break;
        }
        assert!(Instant::now() < deadline, "3-node run did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let info = wait_done(&mut c, &id, Duration::from_secs(60)).await;
    assert_eq!(info.state, ExperimentState::Succeeded as i32, "{info:?}");
    assert_eq!(info.nodes.len(), 3);
    assert_eq!(info.shards, 4, "one shard per node thread (2 + 1 + 1)");
    assert_eq!(info.spike_hash, expected_long, "3 nodes: spikes differ from the embedded run");
    assert!(seen.len() >= 2, "node metrics did not move during the run: {seen:?}");
    assert!(seen.windows(2).all(|w| w[1] > w[0]), "biological time went backwards: {seen:?}");
    for name in
        ["neuropil_spikes_total", "neuropil_exchange_bytes_total", "neuropil_epoch_exchange_duration_seconds_count"]
    {
        assert!(exposition.contains(name), "{name} missing from node metrics");
    }
    // Streams by transport: the lower rank of a pair dials the higher one, over
    // its socket if it has one (info.nodes is in rank order).
    let streams = |p: &Proc, via: &str| {
        let text = http_get(&p.metrics, "/metrics").unwrap();
        let label = format!("transport=\"{via}\"");
        let line =
            text.lines().find(|l| l.starts_with("neuropil_exchange_streams_opened_total{") && l.contains(&label));
        line.map_or(0.0, |l| l.rsplit(' ').next().unwrap().parse().unwrap())
    };
    let procs = [&n0, &n1, &n2];
    let by_rank: Vec<&Proc> = info.nodes.iter().map(|n| *procs.iter().find(|p| &p.name == n).unwrap()).collect();
    for (rank, p) in by_rank.iter().enumerate() {
        let dials_socket = by_rank[rank + 1..].iter().filter(|q| q.name == "node-1").count() as f64;
        let dials = (2 - rank) as f64;
        let got = (streams(p, "unix"), streams(p, "tcp"));
        assert_eq!(got, (dials_socket, dials - dials_socket), "{} (rank {rank}): unix and tcp streams", p.name);
    }
    // The exposition follows Prometheus conventions, and its names are the golden
    // lists' (tests/data/metrics-*.txt): a renamed or new series fails here and
    // must be renamed in the list (and in dashboards) on purpose.
    let control_text = http_get(&control.metrics, "/metrics").unwrap();
    // The dashboard's Hz: each population's neurons after scaling, as the run's
    // summary counts them.
    for p in summary["populations"].as_array().unwrap() {
        let label = format!("population=\"{}\"", p["name"].as_str().unwrap());
        let n = metric_with(&control_text, "neuropil_experiment_population_neurons", &label);
        assert_eq!(n, p["size"].as_f64(), "neuropil_experiment_population_neurons{{{label}}}");
    }
    for (service, text) in [("node", &exposition), ("control", &control_text)] {
        promtool_check(text);
        golden_names(service, text);
    }
    drop((n0, n1, n2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_and_the_experiments_survive() {
    let tmp = TempDir::new("failover");
    let etcd = start_etcd();
    let data = tmp.0.join("data");
    let mut a = start_control(&etcd, "control-a", &data, &[]);
    // Let control-a win the election before the standby starts.
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(&http_get(&a.metrics, "/metrics").unwrap(), "neuropil_control_leader") != Some(1.0) {
        assert!(Instant::now() < deadline, "control-a never became leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b = start_control(&etcd, "control-b", &data, &[]);
    let _node = start_node(&etcd, "node-0", 2, &[]);
    let mut ca = client(&a.grpc).await;
    let first = submit(&mut ca, "examples/brunel.toml", &["run.duration_ms=300"]).await.unwrap();
    let info = wait_done(&mut ca, &first, Duration::from_secs(120)).await;
    assert_eq!(info.state, ExperimentState::Succeeded as i32, "{info:?}");
    assert_eq!(metric(&http_get(&b.metrics, "/metrics").unwrap(), "neuropil_control_leader"), Some(0.0));

    a.kill();
    // The standby takes over after the leader's lease (2 s) expires.
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&http_get(&b.metrics, "/metrics").unwrap(), "neuropil_control_leader") != Some(1.0) {
        assert!(Instant::now() < deadline, "control-b did not take over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut cb = client(&b.grpc).await;
    let list = cb.list(ListRequest {}).await.unwrap().into_inner().experiments;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, first);
    assert_eq!(list[0].spike_hash, info.spike_hash);
    // And it schedules new work.
    let second = submit(&mut cb, "examples/brunel.toml", &["run.duration_ms=300"]).await.unwrap();
    let info2 = wait_done(&mut cb, &second, Duration::from_secs(120)).await;
    assert_eq!(info2.state, ExperimentState::Succeeded as i32, "{info2:?}");
    assert_eq!(info2.spike_hash, info.spike_hash, "same experiment, same spikes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_lists_only_what_it_serves_through_reflection() {
    let tmp = TempDir::new("reflect");
    let etcd = start_etcd();
    let control = start_control(&etcd, "control-0", &tmp.0.join("data"), &[]);
    let node = start_node(&etcd, "node-0", 1, &[]);
    for alpha in [false, true] {
        // Each process names its own service, health and reflection; a control must
        // not offer NodeService or SpikeExchange (it serves neither), nor a node the
        // ExperimentService.
        assert_eq!(
            reflected_services(&control.grpc, alpha).await,
            with_introspection("neuropil.v1.ExperimentService", alpha)
        );
        assert_eq!(reflected_services(&node.grpc, alpha).await, with_introspection("neuropil.v1.NodeService", alpha));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_status_codes_and_the_service_keeps_serving() {
    let tmp = TempDir::new("bad");
    let etcd = start_etcd();
    let token = tmp.0.join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let control = start_control(&etcd, "control-0", &tmp.0.join("data"), &["--token-file", token.to_str().unwrap()]);
    let _node = start_node(&etcd, "node-0", 1, &["--memory-mib", "512"]);

    // Health is open (Kubernetes probes), the API is not.
    let channel = tonic::transport::Endpoint::from_shared(control.grpc.clone()).unwrap().connect().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let h = health
        .check(tonic_health::pb::HealthCheckRequest { service: "neuropil.v1.ExperimentService".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    let mut open = client(&control.grpc).await;
    let e = open.list(ListRequest {}).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    assert!(e.message().contains("bearer token"), "{}", e.message());

    let bearer: tonic::metadata::MetadataValue<_> = "Bearer s3cret-token".parse().unwrap();
    let mut c = neuropil_proto::v1::experiment_service_client::ExperimentServiceClient::with_interceptor(
        channel,
        move |mut req: tonic::Request<()>| {
            req.metadata_mut().insert("authorization", bearer.clone());
            Ok(req)
        },
    );
    let req = |document: String, set: Vec<String>| SubmitRequest {
        document,
        format: "toml".into(),
        set,
        shards: 0,
        placement: Default::default(),
    };

    // Malformed TOML.
    let e = c.submit(req("populations = [ {".into(), vec![])).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    // A field with a bad value is named.
    let doc = std::fs::read_to_string(root().join("examples/brunel.toml")).unwrap();
    let e = c.submit(req(doc.clone(), vec!["run.dt_ms=-1".into()])).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("run.dt_ms"), "{}", e.message());
    // An unknown format.
    let mut bad_format = req(doc.clone(), vec![]);
    bad_format.format = "xml".into();
    let e = c.submit(bad_format).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("format"), "{}", e.message());
    // Oversized document.
    let e = c.submit(req("#".repeat(5 << 20), vec![])).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("document"), "{}", e.message());
    // A network that does not fit the cluster's memory (the full microcircuit on a
    // node offering 512 MiB) is refused before any node allocates.
    let micro = std::fs::read_to_string(root().join(MICROCIRCUIT)).unwrap();
    let e = c.submit(req(micro, vec![])).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("GiB"), "{}", e.message());
    // Co-simulation with an unknown chip preset.
    let e = c.submit(req(format!("{doc}\n[hardware]\npreset = \"loihi9\"\n"), vec![])).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().starts_with("hardware.preset:"), "{}", e.message());
    // Unknown ids.
    let e = c.get(GetRequest { id: "exp-nope".into() }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let e = c.cancel(CancelRequest { id: "".into() }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);

    // Still serving: a valid experiment runs to the end, and nothing was queued by
    // the refused ones.
    let id = c.submit(req(doc, vec!["run.duration_ms=200".into()])).await.unwrap().into_inner().id;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let info = c.get(GetRequest { id: id.clone() }).await.unwrap().into_inner();
        if info.state == ExperimentState::Succeeded as i32 {
            break;
        }
        assert!(info.state != ExperimentState::Failed as i32, "{info:?}");
        assert!(Instant::now() < deadline, "valid experiment did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(c.list(ListRequest {}).await.unwrap().into_inner().experiments.len(), 1);

    // Per method: an unknown id is NOT_FOUND, an overlong one INVALID_ARGUMENT,
    // and what a finished run cannot do any more FAILED_PRECONDITION, saying why.
    use neuropil_proto::v1::{CheckpointRequest, StreamSpikesRequest, WatchRequest};
    let long = "x".repeat(200);
    for (id, code) in [("exp-nope", tonic::Code::NotFound), (long.as_str(), tonic::Code::InvalidArgument)] {
        let id = id.to_string();
        let e = c.cancel(CancelRequest { id: id.clone() }).await.unwrap_err();
        assert_eq!(e.code(), code, "Cancel {id:.20}: {e:?}");
        let e = c.checkpoint(CheckpointRequest { id: id.clone() }).await.unwrap_err();
        assert_eq!(e.code(), code, "Checkpoint {id:.20}: {e:?}");
        let e = c.get(GetRequest { id: id.clone() }).await.unwrap_err();
        assert_eq!(e.code(), code, "Get {id:.20}: {e:?}");
        let watched = c.watch_progress(WatchRequest { id: id.clone() }).await;
        let e = match watched {
            Err(e) => e,
            Ok(s) => s.into_inner().message().await.unwrap_err(),
        };
        assert_eq!(e.code(), code, "WatchProgress {id:.20}: {e:?}");
        let streamed = c.stream_spikes(StreamSpikesRequest { id: id.clone(), populations: vec![] }).await;
        let e = match streamed {
            Err(e) => e,
            Ok(s) => s.into_inner().message().await.unwrap_err(),
        };
        assert_eq!(e.code(), code, "StreamSpikes {id:.20}: {e:?}");
    }
    let e = c.cancel(CancelRequest { id: id.clone() }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("already succeeded"), "{}", e.message());
    let e = c.checkpoint(CheckpointRequest { id: id.clone() }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    let streamed = c.stream_spikes(StreamSpikesRequest { id: id.clone(), populations: vec![] }).await;
    let e = match streamed {
        Err(e) => e,
        Ok(s) => s.into_inner().message().await.unwrap_err(),
    };
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("spikes.parquet"), "says where the spikes are: {}", e.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_every_node_at_the_same_epoch_and_spikes_stream_live() {
    let tmp = TempDir::new("cancel");
    let etcd = start_etcd();
    let control = start_control(&etcd, "control-0", &tmp.0.join("data"), &[]);
    let _n0 = start_node(&etcd, "node-0", 1, &[]);
    let _n1 = start_node(&etcd, "node-1", 1, &[]);
    wait_live_nodes(&control, 2).await;
    let mut c = client(&control.grpc).await;
    let set = with_duration(20_000);
    let set: Vec<&str> = set.iter().map(String::as_str).collect();
    let id = submit(&mut c, MICROCIRCUIT, &set).await.unwrap();

    // Live spikes of one population, from now until the run ends, as a user gets
    // them: `neuropil spikes ID --population L4E` (a tab-separated table).
    let mut child = Command::new(BIN)
        .args(["spikes", &id, "--population", "L4E", "--control", &control.grpc])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let collector = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stdout).lines().map_while(Result::ok);
        let header = lines.next().unwrap_or_default();
        let got: Vec<(String, u32, f64)> = lines
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (f[1].to_string(), f[2].parse().unwrap(), f[0].parse().unwrap())
            })
            .collect();
        (header, got)
    });
    // Owned, so a failing test kills it.
    let mut streamer = Proc {
        name: "neuropil spikes".into(),
        child,
        grpc: String::new(),
        metrics: String::new(),
        exchange: String::new(),
    };
    let mut streaming = client(&control.grpc).await;
    let e = streaming
        .stream_spikes(neuropil_proto::v1::StreamSpikesRequest { id: id.clone(), populations: vec!["L9X".into()] })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("L9X"), "{}", e.message());

    // Cancel once a few hundred ms of biological time have passed.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let info = c.get(GetRequest { id: id.clone() }).await.unwrap().into_inner();
        if info.bio_time_ms >= 300.0 {
            break;
        }
        assert!(info.state <= ExperimentState::Running as i32, "{info:?}");
        assert!(Instant::now() < deadline, "the run made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // While it runs, each node has a run actor supervising its shard's actor.
    let text = http_get(&_n0.metrics, "/metrics").unwrap();
    assert_eq!(metric_with(&text, "neuropil_actors", "kind=\"run\""), Some(1.0), "{text}");
    assert_eq!(metric_with(&text, "neuropil_actors", "kind=\"population_shard\""), Some(1.0), "{text}");
    assert_eq!(metric_with(&text, "neuropil_actors", "kind=\"fabric\""), Some(0.0), "{text}");
    let live = c.get(GetRequest { id: id.clone() }).await.unwrap().into_inner();
    assert!(
        actors(&live).iter().any(|a| a.0 == "population_shard" && a.2 == "node-1" && a.3 == "running"),
        "{:?}",
        actors(&live)
    );
    // `neuropil cancel ID`, and the streaming command ends with the run.
    let out = Command::new(BIN).args(["cancel", &id, "--control", &control.grpc]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let info = wait_done(&mut c, &id, Duration::from_secs(60)).await;
    assert_eq!(info.state, ExperimentState::Cancelled as i32, "{info:?}");
    let ended = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = streamer.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < ended, "neuropil spikes did not end with the run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "neuropil spikes: {status:?}");
    // Cancelling again is refused by name (the run is over), with a non-zero exit.
    let out = Command::new(BIN).args(["cancel", &id, "--control", &control.grpc]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already cancelled"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric_with(&http_get(&_n0.metrics, "/metrics").unwrap(), "neuropil_actors", "kind=\"run\"") != Some(0.0) {
        assert!(Instant::now() < deadline, "the run actor outlived its run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(info.bio_time_ms >= 300.0 && info.bio_time_ms < 20_000.0, "{info:?}");

    // Both nodes stopped after the same epoch: the spikes are those of an embedded
    // run of exactly the simulated length.
    let mut exact = SCALE.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    exact.push(format!("run.duration_ms={}", info.bio_time_ms));
    let exact: Vec<&str> = exact.iter().map(String::as_str).collect();
    let embedded = embedded_summary(MICROCIRCUIT, &exact, &tmp.0);
    assert_eq!(info.spike_hash, embedded["spike_hash"].as_str().unwrap());

    let (header, got) = collector.join().unwrap();
    assert_eq!(header, "time_ms\tpopulation\tneuron");
    let l4e = info.populations.iter().find(|p| p.population == "L4E").unwrap().spikes;
    assert!(!got.is_empty(), "no spikes were streamed");
    assert!(got.len() as u64 <= l4e, "{} streamed, {l4e} in the run", got.len());
    assert!(got.iter().all(|(p, _, _)| p == "L4E"));
    assert!(got.windows(2).all(|w| w[0].2 <= w[1].2), "streamed spikes out of time order");
    // (Spike times are (step + 1)·dt; the bound is the same product, computed elsewhere.)
    assert!(got.iter().all(|(_, _, t)| *t <= info.bio_time_ms + 0.05), "a streamed spike after the end");
}

/// Shards go where the memory is: a node offering less than one shard's estimated
/// memory gets none, and the run succeeds on the other with the embedded spikes
/// (before, the run failed because the small node got its share of threads).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_go_where_the_memory_is() {
    let tmp = TempDir::new("memory");
    let etcd = start_etcd();
    let control = start_control(&etcd, "control-0", &tmp.0.join("data"), &[]);
    // The microcircuit at 10 % is estimated at ~43 MiB: ~22 MiB per shard of 2.
    let _small = start_node(&etcd, "node-small", 1, &["--memory-mib", "16"]);
    let _big = start_node(&etcd, "node-big", 1, &["--memory-mib", "4096"]);
    wait_live_nodes(&control, 2).await;
    let set = with_duration(200);
    let set: Vec<&str> = set.iter().map(String::as_str).collect();
    let embedded = embedded_summary(MICROCIRCUIT, &set, &tmp.0);
    let mut c = client(&control.grpc).await;
    let id = submit(&mut c, MICROCIRCUIT, &set).await.unwrap();
    let info = wait_done(&mut c, &id, Duration::from_secs(300)).await;
    assert_eq!(info.state, ExperimentState::Succeeded as i32, "{info:?}");
    assert_eq!((info.nodes.clone(), info.shards), (vec!["node-big".to_string()], 2));
    assert_eq!(info.spike_hash, embedded["spike_hash"].as_str().unwrap(), "spikes differ from the embedded run");
}

/// Issue 5: astrocytes are sharded and exchanged like neurons (their slow inward
/// currents travel as state values in the epoch messages).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn astrocyte_brunel_on_3_nodes_has_the_embedded_spikes_and_astrocyte_traces() {
    let tmp = TempDir::new("astro");
    let etcd = start_etcd();
    let control = start_control(&etcd, "control-0", &tmp.0.join("data"), &[]);
    let _nodes: Vec<Proc> = (0..3).map(|i| start_node(&etcd, &format!("node-{i}"), 1, &[])).collect();
    wait_live_nodes(&control, 3).await;
    let set = ["run.duration_ms=150", "run.transient_ms=50"];
    let embedded = embedded_summary("examples/astrocyte_brunel.toml", &set, &tmp.0);
    let mut c = client(&control.grpc).await;
    let id = submit(&mut c, "examples/astrocyte_brunel.toml", &set).await.unwrap();
    let info = wait_done(&mut c, &id, Duration::from_secs(300)).await;
    assert_eq!(info.state, ExperimentState::Succeeded as i32, "{info:?}");
    assert_eq!(info.nodes.len(), 3);
    assert_eq!(info.spike_hash, embedded["spike_hash"].as_str().unwrap(), "spikes differ from the embedded run");
    // Astrocyte IP3, calcium and SIC, and the neurons' I_SIC, sampled on three
    // nodes and merged by the control: the same file, byte for byte.
    let ours = std::fs::read(std::path::Path::new(&info.output_dir).join("state.parquet")).unwrap();
    let theirs = std::fs::read(tmp.0.join("embedded/state.parquet")).unwrap();
    assert!(ours.len() > 1000);
    assert!(ours == theirs, "state.parquet differs from the embedded run's");
}

/// Issue 18: the multi-area model (1 %) on 3 node processes, round-robin and with
/// its areas on nodes of their own (`run.layout = "groups"`): both have the
/// embedded spikes, and with areas on nodes the nodes other than the recorder
/// (rank 0, which takes every spike) receive fewer exchange bytes — only the
/// spikes of the areas that project into theirs (targeted routing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_multi_area_model_with_areas_on_nodes_has_the_embedded_spikes_and_less_traffic() {
    let tmp = TempDir::new("areas");
    let etcd = start_etcd();
    let control = start_control(&etcd, "control-0", &tmp.0.join("data"), &[]);
    let nodes: Vec<Proc> = (0..3).map(|i| start_node(&etcd, &format!("node-{i}"), 1, &[])).collect();
    wait_live_nodes(&control, 3).await;
    let file = "examples/multi_area/ground.toml";
    let set = ["scaling.neurons=0.01", "scaling.synapses=0.01", "run.duration_ms=200", "run.transient_ms=0"];
    let embedded = embedded_summary(file, &set, &tmp.0);
    let received = |n: &Proc| {
        let text = http_get(&n.metrics, "/metrics").unwrap();
        metric_with(&text, "neuropil_exchange_bytes_total", "direction=\"received\"").unwrap_or(0.0)
    };
    let mut c = client(&control.grpc).await;
    let mut bytes = Vec::new();
    for layout in ["round_robin", "groups"] {
        let before: Vec<f64> = nodes.iter().map(received).collect();
        let mut with: Vec<String> = set.iter().map(|s| s.to_string()).collect();
        with.push(format!("run.layout={layout}"));
        let with: Vec<&str> = with.iter().map(String::as_str).collect();
        let id = submit(&mut c, file, &with).await.unwrap();
        let info = wait_done(&mut c, &id, Duration::from_secs(300)).await;
        assert_eq!(info.state, ExperimentState::Succeeded as i32, "{layout}: {info:?}");
        assert_eq!(info.nodes.len(), 3, "{layout}");
        assert_eq!(info.spike_hash, embedded["spike_hash"].as_str().unwrap(), "{layout}: spikes differ");
        bytes.push(nodes.iter().zip(before).map(|(n, b)| received(n) - b).collect::<Vec<f64>>());
    }
    eprintln!("exchange bytes received per node: round-robin {:?}, areas on nodes {:?}", bytes[0], bytes[1]);
    for (r, (grouped, round_robin)) in bytes[1].iter().zip(&bytes[0]).enumerate().skip(1) {
        assert!(grouped < round_robin, "node-{r}: {grouped} bytes with areas on nodes, {round_robin} round-robin");
    }
    // The variant with inter-area delays of 2 ms or more: nodes exchange every 20
    // epochs (the two-tier exchange), over stretches that end off a window's edge
    // (100 + 100 + 5 ms: 50 + 50 + 3 exchanges), with the embedded run's spikes.
    let floor = [
        "scaling.neurons=0.01",
        "scaling.synapses=0.01",
        "run.duration_ms=205",
        "run.transient_ms=0",
        "run.layout=groups",
        "scaling.min_delay_between_groups_ms=2.0",
    ];
    let embedded = embedded_summary(file, &floor, &tmp.0.join("floor"));
    let exchanges = |n: &Proc| {
        let text = http_get(&n.metrics, "/metrics").unwrap();
        metric(&text, "neuropil_epoch_exchange_duration_seconds_count").unwrap_or(0.0)
    };
    let before: Vec<(f64, f64)> = nodes.iter().map(|n| (received(n), exchanges(n))).collect();
    let id = submit(&mut c, file, &floor).await.unwrap();
    let info = wait_done(&mut c, &id, Duration::from_secs(300)).await;
    assert_eq!(info.state, ExperimentState::Succeeded as i32, "floor: {info:?}");
    assert_eq!(info.spike_hash, embedded["spike_hash"].as_str().unwrap(), "two-tier: spikes differ");
    for (r, (n, (b, x))) in nodes.iter().zip(before).enumerate() {
        let text = http_get(&n.metrics, "/metrics").unwrap();
        assert_eq!(metric(&text, "neuropil_exchange_window_epochs"), Some(20.0), "node-{r}");
        assert_eq!(exchanges(n) - x, 103.0, "node-{r}: exchanges");
        // The run's own peak memory, next to the estimate it was placed by.
        let peak = metric(&text, "neuropil_run_peak_rss_bytes").unwrap_or(0.0);
        let estimate = metric(&text, "neuropil_run_estimated_bytes").unwrap_or(0.0);
        assert!(peak > 0.0 && estimate > 0.0, "node-{r}: peak {peak}, estimate {estimate}");
        eprintln!("node-{r}: two-tier exchange, {} bytes received", received(n) - b);
    }
}

/// A cerebellar module driving its population with a current (so the spikes depend
/// on it) runs as replicas on 3 nodes: spikes and the module's task trace
/// (cerebellum.csv: target, readout, true and predicted feedback) equal the
/// embedded run's, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cerebellar_module_on_3_nodes_matches_the_embedded_run() {
    let tmp = TempDir::new("cerebellum");
    let etcd = start_etcd();
    let control = start_control(&etcd, "control-0", &tmp.0.join("data"), &[]);
    let nodes: Vec<Proc> = (0..3).map(|i| start_node(&etcd, &format!("node-{i}"), 1, &[])).collect();
    wait_live_nodes(&control, 3).await;
    let set = [
        "run.duration_ms=600",
        "cerebellum[0].output=current",
        "cerebellum[0].output_population=cortex",
        "cerebellum[0].output_scale=400",
        "cerebellum[0].freeze_at_ms=400",
    ];
    let embedded = embedded_summary("examples/cerebellar_dni.toml", &set, &tmp.0);
    let without: Vec<String> =
        set.iter().map(|s| s.to_string()).chain(["cerebellum[0].remove_at_ms=0".into()]).collect();
    let without: Vec<&str> = without.iter().map(String::as_str).collect();
    let silent = embedded_summary("examples/cerebellar_dni.toml", &without, &tmp.0.join("silent"));
    assert_ne!(embedded["spike_hash"], silent["spike_hash"], "the module's current changes the spikes");
    let mut c = client(&control.grpc).await;
    let id = submit(&mut c, "examples/cerebellar_dni.toml", &set).await.unwrap();
    let info = wait_done(&mut c, &id, Duration::from_secs(300)).await;
    assert_eq!(info.state, ExperimentState::Succeeded as i32, "{info:?}");
    assert_eq!(info.nodes.len(), 3);
    assert_eq!(info.spike_hash, embedded["spike_hash"].as_str().unwrap(), "spikes differ from the embedded run");
    let ours = std::fs::read_to_string(std::path::Path::new(&info.output_dir).join("cerebellum.csv")).unwrap();
    let theirs = std::fs::read_to_string(tmp.0.join("embedded/cerebellum.csv")).unwrap();
    assert!(ours.lines().count() > 500, "{} samples", ours.lines().count());
    assert!(ours == theirs, "cerebellum.csv differs from the embedded run's");
    // Each node ran a run actor and its shard's actor; the module ran once, on the
    // node the control placed it on by default (rank 1), all stopped now.
    let mut got = actors(&info);
    got.sort();
    let mut want = vec![("cerebellar_module", "module-0".to_string(), "node-1")];
    for (i, node) in ["node-0", "node-1", "node-2"].iter().enumerate() {
        want.push(("population_shard", format!("shard-{i}"), node));
        want.push(("run", "run".into(), node));
    }
    let mut want: Vec<_> =
        want.into_iter().map(|(k, n, node)| (k.to_string(), n, node.to_string(), "stopped".to_string())).collect();
    want.sort();
    assert_eq!(got, want);
    // The module's node shows its task error and prediction quality live.
    let text = http_get(&nodes[1].metrics, "/metrics").unwrap();
    let line = text.lines().find(|l| l.starts_with("neuropil_cerebellum_task_error{")).expect("module metric");
    assert!(line.contains("module=\"cb\""), "{line}");
    assert!(text.lines().any(|l| l.starts_with("neuropil_cerebellum_prediction_correlation{")), "{text}");
    promtool_check(&text);
    // The module as the dopamine of stdp_dopamine_synapse projections: every node
    // applies the same impulses to its shards' synapses.
    let set = ["run.duration_ms=600"];
    let embedded = embedded_summary("examples/cerebellar_dopamine.toml", &set, &tmp.0.join("dopamine"));
    let id = submit(&mut c, "examples/cerebellar_dopamine.toml", &set).await.unwrap();
    let info = wait_done(&mut c, &id, Duration::from_secs(300)).await;
    assert_eq!(info.state, ExperimentState::Succeeded as i32, "{info:?}");
    assert_eq!(info.spike_hash, embedded["spike_hash"].as_str().unwrap(), "dopamine run differs from the embedded one");
    let ours = std::fs::read_to_string(std::path::Path::new(&info.output_dir).join("cerebellum.csv")).unwrap();
    let theirs = std::fs::read_to_string(tmp.0.join("dopamine/embedded/cerebellum.csv")).unwrap();
    assert!(ours == theirs, "dopamine run: cerebellum.csv differs");
}

/// Issue 7: hardware co-simulation in the cluster. Every node runs a replica of the
/// emulated Loihi fabric on all spikes; the delays and drops it imposes give the
/// co-simulated embedded run's spikes (which differ from the software-only run's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardware_cosimulation_on_2_nodes_matches_the_embedded_cosimulation() {
    let tmp = TempDir::new("cosim");
    let file = tmp.0.join("microcircuit_loihi.toml");
    let doc = std::fs::read_to_string(root().join(MICROCIRCUIT)).unwrap();
    std::fs::write(&file, format!("{doc}\n[hardware]\npreset = \"loihi\"\n")).unwrap();
    let file = file.to_str().unwrap();
    let etcd = start_etcd();
    let control = start_control(&etcd, "control-0", &tmp.0.join("data"), &[]);
    let _nodes: Vec<Proc> = (0..2).map(|i| start_node(&etcd, &format!("node-{i}"), 1, &[])).collect();
    wait_live_nodes(&control, 2).await;
    let set = [SCALE[0], SCALE[1], "run.duration_ms=200", "run.transient_ms=0"];
    let cosim = embedded_summary(file, &set, &tmp.0.join("hw"));
    assert!(cosim["hardware"]["fabric"].is_object(), "{}", cosim["hardware"]);
    let software = embedded_summary(MICROCIRCUIT, &set, &tmp.0.join("sw"));
    assert_ne!(cosim["spike_hash"], software["spike_hash"], "the fabric changes the spikes");
    let mut c = client(&control.grpc).await;
    let id = submit(&mut c, file, &set).await.unwrap();
    let info = wait_done(&mut c, &id, Duration::from_secs(300)).await;
    assert_eq!(info.state, ExperimentState::Succeeded as i32, "{info:?}");
    assert_eq!(info.nodes.len(), 2);
    assert_eq!(info.spike_hash, cosim["spike_hash"].as_str().unwrap(), "spikes differ from the embedded co-simulation");
    // The cluster's summary reports the fabric as the embedded run does.
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(std::path::Path::new(&info.output_dir).join("summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["hardware"], cosim["hardware"], "hardware section");
    let fabrics: Vec<_> = actors(&info).into_iter().filter(|a| a.0 == "fabric").map(|a| a.2).collect();
    assert_eq!(fabrics, ["node-1"], "one fabric actor, on the last node by default: {:?}", actors(&info));
}

/// A cerebellar module of the experiment, driving the inhibitory population.
const MODULE: &str = r#"
[[cerebellum]]
name = "cb"
mossy_fibres = ["E"]
readout = "E"
granule = [100]
fan_in = 8
interval_ms = 1.0
feedback_delay_ms = 20.0
target_amplitude = 1.0
target_period_ms = 50.0
output = "current"
output_population = "I"
output_scale = 300.0
"#;

/// Issue 15: one instance, anywhere. Neurons, astrocytes (tripartite synapses), a
/// cerebellar module and a co-simulated Loihi fabric on 3 nodes, the module and
/// the fabric each run once, on different nodes, in two placements (the
/// control's default, and one asked for with `neuropil submit --place`): the
/// spikes, cerebellum.csv and the hardware section are the embedded run's; the
/// actors and the module's metrics are on the nodes they were placed on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_and_a_fabric_placed_on_different_nodes_give_the_embedded_run_in_two_placements() {
    let tmp = TempDir::new("placed");
    let file = tmp.0.join("astrocytes_module_loihi.toml");
    let doc = std::fs::read_to_string(root().join("examples/astrocyte_brunel.toml")).unwrap();
    std::fs::write(&file, format!("{doc}\n{MODULE}\n[hardware]\npreset = \"loihi\"\n")).unwrap();
    let file = file.to_str().unwrap();
    // The astrocytes in a group of their own: of 3 shards the neurons take 0 and 1,
    // the astrocytes shard 2 (an `astrocyte_shard` actor on node-2).
    let set = [
        "populations.E.size=800",
        "populations.I.size=200",
        "populations.A.size=1000",
        "run.duration_ms=120",
        "run.transient_ms=20",
        "run.layout=groups",
        "populations.E.group=neurons",
        "populations.I.group=neurons",
        "populations.A.group=astrocytes",
    ];
    let embedded = embedded_summary(file, &set, &tmp.0);
    assert!(embedded["hardware"]["fabric"]["delayed"].as_u64().unwrap() > 0, "{}", embedded["hardware"]);
    let cerebellum = std::fs::read_to_string(tmp.0.join("embedded/cerebellum.csv")).unwrap();
    assert!(cerebellum.lines().count() > 100, "{cerebellum}");
    let silent: Vec<&str> = set.iter().copied().chain(["cerebellum[0].remove_at_ms=0"]).collect();
    let silent = embedded_summary(file, &silent, &tmp.0.join("silent"));
    assert_ne!(silent["spike_hash"], embedded["spike_hash"], "the module's current changes the spikes");
    let etcd = start_etcd();
    let control = start_control(&etcd, "control-0", &tmp.0.join("data"), &[]);
    let nodes: Vec<Proc> = (0..3).map(|i| start_node(&etcd, &format!("node-{i}"), 1, &[])).collect();
    wait_live_nodes(&control, 3).await;
    let mut c = client(&control.grpc).await;
    // A placement must name this experiment's module or fabric.
    let mut req = SubmitRequest {
        placement: [("cerebellum.nope".to_string(), "node-1".to_string())].into(),
        ..request(file, &set)
    };
    let e = c.submit(req.clone()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("placement[\"cerebellum.nope\"]") && e.message().contains("cerebellum.cb"), "{e:?}");
    // First the control's default: the module on rank 1, the fabric on the last rank.
    req.placement.clear();
    let default = c.submit(req).await.unwrap().into_inner().id;
    let info = wait_done(&mut c, &default, Duration::from_secs(300)).await;
    // Then asked for: the module on node-2, the fabric on node-0 (which records).
    let mut cmd = Command::new(BIN);
    cmd.args(["submit", file, "--control", &control.grpc, "--wait", "-q"]);
    cmd.args(["--place", "cerebellum.cb=node-2", "--place", "hardware=node-0"]);
    for s in set {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let asked = String::from_utf8_lossy(&out.stdout).lines().next().unwrap().to_string();
    let infos =
        [(info, "node-1", "node-2"), (wait_done(&mut c, &asked, Duration::from_secs(10)).await, "node-2", "node-0")];
    for (info, module_on, fabric_on) in infos {
        let how = format!("module on {module_on}, fabric on {fabric_on}");
        assert_eq!(info.state, ExperimentState::Succeeded as i32, "{how}: {info:?}");
        assert_eq!(info.spike_hash, embedded["spike_hash"].as_str().unwrap(), "{how}: spikes");
        let dir = std::path::Path::new(&info.output_dir);
        assert!(std::fs::read_to_string(dir.join("cerebellum.csv")).unwrap() == cerebellum, "{how}: cerebellum.csv");
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
        assert_eq!(summary["hardware"], embedded["hardware"], "{how}: hardware section");
        let placed = |kind: &str| -> Vec<String> {
            let mut on: Vec<String> = actors(&info).into_iter().filter(|a| a.0 == kind).map(|a| a.2).collect();
            on.sort();
            on
        };
        assert_eq!(placed("cerebellar_module"), [module_on], "{how}: {:?}", actors(&info));
        assert_eq!(placed("fabric"), [fabric_on], "{how}: {:?}", actors(&info));
        assert_eq!(placed("population_shard"), ["node-0", "node-1"], "{how}: {:?}", actors(&info));
        assert_eq!(placed("astrocyte_shard"), ["node-2"], "{how}: {:?}", actors(&info));
        // `neuropil status ID --json` shows the same actors.
        let out = Command::new(BIN).args(["status", &info.id, "--json", "--control", &control.grpc]).output().unwrap();
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let on = |kind: &str| -> Vec<&str> {
            let all = status["actors"].as_array().unwrap().iter();
            all.filter(|a| a["kind"] == kind).map(|a| a["node"].as_str().unwrap()).collect()
        };
        assert_eq!(on("cerebellar_module"), [module_on], "{how}: {status}");
        assert_eq!(on("astrocyte_shard"), ["node-2"], "{how}: {status}");
    }
    // Only the module's last node reports its task metrics.
    let has_module_metric = |i: usize| {
        http_get(&nodes[i].metrics, "/metrics")
            .unwrap()
            .lines()
            .any(|l| l.starts_with("neuropil_cerebellum_task_error{"))
    };
    assert!(has_module_metric(1) && has_module_metric(2) && !has_module_metric(0));
}

/// Self-signed CA and one certificate for 127.0.0.1 (server and client use), by
/// the openssl command line tool.
fn make_certs(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca = vec!["req", "-x509"];
    ca.extend_from_slice(&ec);
    ca.extend_from_slice(&["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=neuropil test CA"]);
    run(&ca);
    let mut csr = vec!["req"];
    csr.extend_from_slice(&ec);
    csr.extend_from_slice(&["-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=localhost"]);
    run(&csr);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "node.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "node.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_api_and_mutual_tls_between_nodes() {
    let tmp = TempDir::new("tls");
    make_certs(&tmp.0);
    let p = |f: &str| tmp.0.join(f).to_str().unwrap().to_string();
    let (cert, key, ca) = (p("node.pem"), p("node.key"), p("ca.pem"));
    // The cluster token comes from a file here (a Kubernetes Secret), on every member.
    let token_file = p("cluster-token");
    std::fs::write(&token_file, "tls-test-cluster-token-0123456789\n").unwrap();
    let tls_args = [
        "--tls-cert",
        cert.as_str(),
        "--tls-key",
        key.as_str(),
        "--tls-ca",
        ca.as_str(),
        "--cluster-token-file",
        token_file.as_str(),
    ];
    let etcd = start_etcd();
    let control = start_control(&etcd, "control-0", &tmp.0.join("data"), &tls_args);
    // Both nodes also serve the exchange on Unix sockets: mutual TLS over them.
    let mut nodes: Vec<Proc> = (0..2)
        .map(|i| {
            let sock = p(&format!("node-{i}.sock"));
            let args: Vec<&str> = tls_args.iter().copied().chain(["--exchange-socket", sock.as_str()]).collect();
            start_node(&etcd, &format!("node-{i}"), 1, &args)
        })
        .collect();
    let url = control.grpc.replace("http://", "https://");
    let ca_pem = std::fs::read(&ca).unwrap();
    let tls = tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(&ca_pem));
    let endpoint = tonic::transport::Endpoint::from_shared(url).unwrap().tls_config(tls.clone()).unwrap();
    let mut c = neuropil_proto::v1::experiment_service_client::ExperimentServiceClient::new(
        endpoint.connect().await.expect("TLS connection to the control"),
    );
    wait_live_nodes(&control, 2).await;
    let set = ["run.duration_ms=300"];
    let embedded = embedded_summary("examples/brunel.toml", &set, &tmp.0);
    let id = c.submit(request("examples/brunel.toml", &set)).await.unwrap().into_inner().id;
    let mut info = c.get(GetRequest { id: id.clone() }).await.unwrap().into_inner();
    let deadline = Instant::now() + Duration::from_secs(120);
    while info.state <= ExperimentState::Running as i32 {
        assert!(Instant::now() < deadline, "TLS run did not finish: {info:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        info = c.get(GetRequest { id: id.clone() }).await.unwrap().into_inner();
    }
    assert_eq!(info.state, ExperimentState::Succeeded as i32, "{info:?}");
    assert_eq!(info.nodes.len(), 2);
    assert_eq!(info.spike_hash, embedded["spike_hash"].as_str().unwrap());
    let unix_streams: usize = nodes
        .iter()
        .map(|n| {
            let text = http_get(&n.metrics, "/metrics").unwrap();
            text.lines()
                .filter(|l| l.starts_with("neuropil_exchange_streams_opened_total") && l.contains("unix"))
                .count()
        })
        .sum();
    assert_eq!(unix_streams, 1, "the two nodes' exchange did not go over the Unix socket");

    // Plaintext to the TLS control fails.
    let plain =
        neuropil_proto::v1::experiment_service_client::ExperimentServiceClient::connect(control.grpc.clone()).await;
    if let Ok(mut plain) = plain {
        assert!(plain.list(ListRequest {}).await.is_err(), "plaintext request to a TLS control succeeded");
    }
    // A node refuses a client without a certificate from the CA.
    let node_url = nodes[0].grpc.replace("http://", "https://");
    let no_cert = tonic::transport::Endpoint::from_shared(node_url.clone()).unwrap().tls_config(tls).unwrap();
    let refused = match no_cert.connect().await {
        Err(_) => true,
        Ok(ch) => neuropil_proto::v1::node_service_client::NodeServiceClient::new(ch)
            .watch_run(neuropil_proto::v1::WatchRunRequest { run: id.clone() })
            .await
            .is_err(),
    };
    assert!(refused, "a node accepted a client without a certificate");
    // The same client with the CA-signed certificate gets in (and the finished run's results).
    let identity = tonic::transport::Identity::from_pem(std::fs::read(&cert).unwrap(), std::fs::read(&key).unwrap());
    let with_cert = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&ca_pem))
        .identity(identity);
    let ch =
        match tonic::transport::Endpoint::from_shared(node_url).unwrap().tls_config(with_cert).unwrap().connect().await
        {
            Ok(ch) => ch,
            Err(e) => {
                // Say whether the node died (a client hanging up during the handshake
                // once killed it with SIGPIPE).
                std::thread::sleep(Duration::from_millis(500));
                panic!("connecting with a certificate failed: {e:?}; node-0 exited: {:?}", nodes[0].child.try_wait());
            }
        };
    let mut watch = neuropil_proto::v1::node_service_client::NodeServiceClient::new(ch);
    // A certificate alone is not enough: the cluster token is checked as well.
    let e = watch.watch_run(neuropil_proto::v1::WatchRunRequest { run: id.clone() }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    let mut req = tonic::Request::new(neuropil_proto::v1::WatchRunRequest { run: id.clone() });
    req.metadata_mut().insert("authorization", "Bearer tls-test-cluster-token-0123456789".parse().unwrap());
    let mut events = watch.watch_run(req).await.unwrap().into_inner();
    let mut got_result = false;
    while let Some(ev) = events.message().await.unwrap() {
        got_result |= matches!(ev.event, Some(neuropil_proto::v1::run_event::Event::Result(_)));
    }
    assert!(got_result);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_fails_its_run_with_a_reason_and_the_cluster_goes_on() {
    let tmp = TempDir::new("nodekill");
    let etcd = start_etcd();
    let control = start_control(&etcd, "control-0", &tmp.0.join("data"), &[]);
    let _n0 = start_node(&etcd, "node-0", 1, &["--peer-timeout-s", "20"]);
    let mut n1 = start_node(&etcd, "node-1", 1, &["--peer-timeout-s", "20"]);
    wait_live_nodes(&control, 2).await;
    let mut c = client(&control.grpc).await;
    let set = with_duration(60_000);
    let set: Vec<&str> = set.iter().map(String::as_str).collect();
    let id = submit(&mut c, MICROCIRCUIT, &set).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let info = c.get(GetRequest { id: id.clone() }).await.unwrap().into_inner();
        if info.bio_time_ms >= 100.0 {
            break;
        }
        assert!(Instant::now() < deadline, "the run made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    n1.kill();
    // Not a hang: the run fails, and says where.
    let info = wait_done(&mut c, &id, Duration::from_secs(60)).await;
    assert_eq!(info.state, ExperimentState::Failed as i32, "{info:?}");
    // It names the node that went, not only the one that noticed.
    let m = &info.message;
    assert!(
        m.contains("node-1") && (m.contains("node-1 (rank 1) lost") || m.contains("node-1 (rank 1) stopped sending")),
        "{m}"
    );
    // The surviving node takes the next experiment alone once node-1's lease expires.
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&http_get(&control.metrics, "/metrics").unwrap(), "neuropil_live_nodes") != Some(1.0) {
        assert!(Instant::now() < deadline, "node-1's lease never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // (120 ms: the failpoints' epochs are not reached.)
    let id = submit(&mut c, "examples/brunel.toml", &["run.duration_ms=120"]).await.unwrap();
    let info = wait_done(&mut c, &id, Duration::from_secs(120)).await;
    assert_eq!(info.state, ExperimentState::Succeeded as i32, "{info:?}");
    assert_eq!(info.nodes, vec!["node-0"]);
}

/// Supervision: a shard's or a cerebellar module's code that fails (a failpoint,
/// test builds only) fails the experiment with the actor, shard or module and the
/// epoch named, instead of aborting the node or hanging its peers; the nodes keep
/// serving, and the next experiment runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_shard_or_module_actor_fails_the_run_by_name_and_the_nodes_go_on() {
    let tmp = TempDir::new("failpoints");
    let etcd = start_etcd();
    let control = start_control(&etcd, "control-0", &tmp.0.join("data"), &[]);
    // Shard 1 at epoch 99 — the last of the first 100 ms stretch, where a stop
    // must still reach the peers as a stop — and module 0 at epoch 90 (1 ms
    // epochs in both files: in cerebellar_dni.toml the module fails before shard 1
    // would).
    let env = [("NEUROPIL_FAILPOINTS", "shard:1@99,module:0@90")];
    let nodes: Vec<Proc> = (0..2).map(|i| start_node_with_env(&etcd, &format!("node-{i}"), 1, &[], &env)).collect();
    wait_live_nodes(&control, 2).await;
    let mut c = client(&control.grpc).await;

    let id = submit(&mut c, "examples/brunel.toml", &["run.duration_ms=400"]).await.unwrap();
    let info = wait_done(&mut c, &id, Duration::from_secs(120)).await;
    assert_eq!(info.state, ExperimentState::Failed as i32, "{info:?}");
    let want = "population_shard actor shard-1 failed: shard 1 failed at epoch 99: failpoint shard:1@99";
    assert!(info.message.contains(want), "{}", info.message);
    assert!(info.message.contains("node-1"), "the node is named: {}", info.message);
    let failed: Vec<_> = actors(&info).into_iter().filter(|a| a.3 == "failed").collect();
    assert!(
        failed.contains(&("population_shard".into(), "shard-1".into(), "node-1".into(), "failed".into())),
        "{failed:?}"
    );

    let id = submit(&mut c, "examples/cerebellar_dni.toml", &["run.duration_ms=400"]).await.unwrap();
    let info = wait_done(&mut c, &id, Duration::from_secs(120)).await;
    assert_eq!(info.state, ExperimentState::Failed as i32, "{info:?}");
    let want = "cerebellar_module actor module-0 failed: cerebellar module 0 failed at epoch 90";
    assert!(info.message.contains(want), "{}", info.message);

    // The nodes are still there, with no actor left behind, and run the next one.
    // node-1's shard failed the first run, its module (placed on rank 1) the
    // second; node-0 stopped with it at the same epoch both times.
    for (n, failed, stopped) in [(&nodes[0], None, Some(2.0)), (&nodes[1], Some(2.0), None)] {
        let text = http_get(&n.metrics, "/metrics").unwrap();
        assert_eq!(metric_with(&text, "neuropil_runs_total", "outcome=\"failed\""), failed, "{text}");
        assert_eq!(metric_with(&text, "neuropil_runs_total", "outcome=\"stopped\""), stopped, "{text}");
        for kind in ["run", "population_shard", "cerebellar_module"] {
            assert_eq!(metric_with(&text, "neuropil_actors", &format!("kind=\"{kind}\"")), Some(0.0), "{kind}: {text}");
        }
    }
    // (90 ms: the failpoints' epochs are not reached.)
    let id = submit(&mut c, "examples/brunel.toml", &["run.duration_ms=90", "run.transient_ms=0"]).await.unwrap();
    let info = wait_done(&mut c, &id, Duration::from_secs(120)).await;
    assert_eq!(info.state, ExperimentState::Succeeded as i32, "{info:?}");
    assert_eq!(info.nodes.len(), 2);
}

/// Membership that cannot lie: a node that would advertise a wildcard address, or
/// take the id of a live node, refuses to start and names the flag; a WatchRun
/// without a run id is answered at once; the live node is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_refuse_undialable_addresses_and_duplicate_ids() {
    let tmp = TempDir::new("membership");
    let etcd = start_etcd();
    let control = start_control(&etcd, "control-0", &tmp.0.join("data"), &[]);
    let node = start_node(&etcd, "node-0", 1, &[]);
    wait_live_nodes(&control, 1).await;
    let refused = |args: &[&str]| {
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(["node", "--metrics", "127.0.0.1:0", "--etcd", &etcd.endpoint, "--lease-ttl-s", "3"]).args(args);
        let mut child = cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("node {args:?} did not refuse to start");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let wildcard = refused(&["--id", "node-w", "--listen", "0.0.0.0:0", "--exchange-listen", "127.0.0.1:0"]);
    assert!(wildcard.contains("--advertise") && wildcard.contains("wildcard"), "{wildcard}");
    let exchange = refused(&[
        "--id",
        "node-x",
        "--listen",
        "127.0.0.1:0",
        "--exchange-listen",
        "127.0.0.1:0",
        "--exchange-advertise",
        "node-x.example",
    ]);
    assert!(exchange.contains("--exchange-advertise") && exchange.contains("HOST:PORT"), "{exchange}");
    let twin = refused(&["--id", "node-0", "--listen", "127.0.0.1:0", "--exchange-listen", "127.0.0.1:0"]);
    assert!(twin.contains("--id node-0: another live node is registered under this id"), "{twin}");
    assert!(twin.contains(&node.grpc), "names where the live one is: {twin}");

    // node-0 is still the one registered, and runs experiments.
    let text = http_get(&control.metrics, "/metrics").unwrap();
    assert_eq!(metric(&text, "neuropil_live_nodes"), Some(1.0));
    let mut c = client(&control.grpc).await;
    let id = submit(&mut c, "examples/brunel.toml", &["run.duration_ms=60000"]).await.unwrap();
    wait_until(&mut c, &id, Duration::from_secs(120), "running", |i| i.bio_time_ms > 0.0).await;

    // Its internal ports are not open doors (no TLS here: the cluster token that
    // the first member put in etcd). A stranger who knows the running
    // experiment's id learns nothing, and is answered at once.
    let stranger = |token: Option<&str>| {
        let token = token.map(|t| format!("Bearer {t}").parse().unwrap());
        move |mut req: tonic::Request<()>| {
            if let Some(t) = token.clone() {
                req.metadata_mut().insert("authorization", t);
            }
            Ok(req)
        }
    };
    for token in [None, Some("a-guess-at-the-cluster-token-0000")] {
        let ch = tonic::transport::Endpoint::from_shared(node.grpc.clone()).unwrap().connect().await.unwrap();
        let mut watch =
            neuropil_proto::v1::node_service_client::NodeServiceClient::with_interceptor(ch, stranger(token));
        for run in [id.clone(), String::new()] {
            let asked = Instant::now();
            let e = watch.watch_run(neuropil_proto::v1::WatchRunRequest { run }).await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
            assert!(!e.message().contains(&id) && !e.message().contains("node-0"), "{e:?}");
            assert!(asked.elapsed() < Duration::from_secs(5), "answered after {:?}", asked.elapsed());
        }
        let ch = tonic::transport::Endpoint::from_shared(node.exchange.clone()).unwrap();
        let mut exchange = neuropil_proto::v1::spike_exchange_client::SpikeExchangeClient::with_interceptor(
            ch.connect().await.unwrap(),
            stranger(token),
        );
        let mut req = tonic::Request::new(tokio_stream::iter(Vec::<neuropil_proto::v1::EpochMessage>::new()));
        req.metadata_mut().insert("x-neuropil-run", id.parse().unwrap());
        req.metadata_mut().insert("x-neuropil-rank", "0".parse().unwrap());
        let asked = Instant::now();
        let e = exchange.exchange(req).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
        assert!(!e.message().contains(&id), "{e:?}");
        assert!(asked.elapsed() < Duration::from_secs(5), "answered after {:?}", asked.elapsed());
    }
    // The run went on regardless.
    let info = c.get(GetRequest { id: id.clone() }).await.unwrap().into_inner();
    assert_eq!(info.state, ExperimentState::Running as i32, "{info:?}");
    assert_eq!(info.nodes, vec!["node-0"]);
    c.cancel(neuropil_proto::v1::CancelRequest { id: id.clone() }).await.unwrap();
    let info = wait_done(&mut c, &id, Duration::from_secs(60)).await;
    assert_eq!(info.state, ExperimentState::Cancelled as i32, "{info:?}");
}

/// Wait until the run has a complete checkpoint, and say how far it is.
async fn wait_checkpointed(c: &mut Client, id: &str) -> neuropil_proto::v1::ExperimentInfo {
    wait_until(c, id, Duration::from_secs(120), "checkpointed", |i| i.checkpoint_ms > 0.0).await
}

/// `control-0` with coordinated checkpoints every 300 ms of biological time on the
/// volume `vol`, its data directory in `tmp`.
fn checkpointing_control(etcd: &Etcd, tmp: &TempDir, vol: &str) -> Proc {
    start_control(etcd, "control-0", &tmp.0.join("data"), &["--checkpoint-interval-ms", "300", "--checkpoint-dir", vol])
}

/// `node-i` (one thread) writing its checkpoint parts to the volume `vol`.
fn checkpointing_node(etcd: &Etcd, i: usize, vol: &str) -> Proc {
    start_node(etcd, &format!("node-{i}"), 1, &["--checkpoint-dir", vol, "--peer-timeout-s", "20"])
}

/// Issue 17: a node killed mid-run (kill -9, after the first coordinated
/// checkpoint) costs the run nothing. The control rolls the run back to its last
/// complete checkpoint on the shared volume and places the shards on the nodes
/// left (and one that joined); the finished experiment has the spike hash and the
/// cerebellum.csv of the embedded run that never stopped (dopamine-modulated STDP
/// and a cerebellar module: plastic weights, eligibility traces, the module's
/// queues all come back). Once with a non-recording node lost, once with the
/// recording node (rank 0) lost. `status` shows what happened when.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_costs_the_run_nothing_it_resumes_from_the_last_checkpoint() {
    let tmp = TempDir::new("recovery");
    let volume = tmp.0.join("checkpoints");
    let vol = volume.to_str().unwrap();
    let etcd = start_etcd();
    let control = checkpointing_control(&etcd, &tmp, vol);
    let node = |i: usize| checkpointing_node(&etcd, i, vol);
    let mut nodes: Vec<Option<Proc>> = (0..3).map(|i| Some(node(i))).collect();
    wait_live_nodes(&control, 3).await;
    let set = ["run.duration_ms=6000"];
    let embedded = embedded_summary("examples/cerebellar_dopamine.toml", &set, &tmp.0);
    let theirs = std::fs::read_to_string(tmp.0.join("embedded/cerebellum.csv")).unwrap();
    let mut c = client(&control.grpc).await;

    for (round, victim) in [(0, 1usize), (1, 0)] {
        if round == 1 {
            // Once the lost node's lease has lapsed, a node that joins takes part.
            wait_live_nodes(&control, 2).await;
            nodes.push(Some(node(3)));
            wait_live_nodes(&control, 3).await;
        }
        let id = submit(&mut c, "examples/cerebellar_dopamine.toml", &set).await.unwrap();
        let at = wait_checkpointed(&mut c, &id).await;
        let members = at.nodes.clone();
        assert_eq!(members.len(), 3, "{at:?}");
        let victim_id = members[victim].clone();
        let i: usize = victim_id.trim_start_matches("node-").parse().unwrap();
        nodes[i].take().unwrap().kill();
        let info = wait_done(&mut c, &id, Duration::from_secs(300)).await;
        assert_eq!(info.state, ExperimentState::Succeeded as i32, "round {round}: {info:?}");
        assert_eq!(info.recoveries, 1, "round {round}: the kill landed after the run had ended? {info:?}");
        assert_eq!(info.spike_hash, embedded["spike_hash"].as_str().unwrap(), "round {round}: spikes differ");
        let ours = std::fs::read_to_string(std::path::Path::new(&info.output_dir).join("cerebellum.csv")).unwrap();
        assert!(ours == theirs, "round {round}: cerebellum.csv differs from the embedded run's");
        let survivors: Vec<String> = members.iter().filter(|m| **m != victim_id).cloned().collect();
        let mut placed = info.nodes.clone();
        placed.sort();
        assert_eq!(placed, survivors, "round {round}: the run went on on the nodes left");
        // What happened when.
        let log: Vec<&str> = info.events.iter().map(|e| e.what.as_str()).collect();
        let lost = format!("{victim_id} (rank {victim}) lost");
        assert!(log.iter().any(|e| e.starts_with(&lost)), "round {round}: {log:#?}");
        assert!(log.iter().any(|e| e.starts_with("recovering: rolling back to the checkpoint at")), "{log:#?}");
        assert!(log.iter().any(|e| e.starts_with("resumed from") && e.contains("(attempt 2)")), "{log:#?}");
        assert_eq!(log.last(), Some(&"succeeded"), "{log:#?}");
        assert!(info.events.windows(2).all(|w| w[0].unix_ms <= w[1].unix_ms));
        // The run's checkpoints are gone from the volume once it is over.
        assert!(!volume.join(&id).exists(), "round {round}: checkpoints left behind");
        // What a user sees: `neuropil status ID` prints the event log.
        let out = std::process::Command::new(BIN).args(["status", &id, "--control", &control.grpc]).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("1 recoveries") && text.contains(&lost) && text.contains("resumed from"), "{text}");
    }
    let text = http_get(&control.metrics, "/metrics").unwrap();
    assert_eq!(metric_with(&text, "neuropil_recoveries_total", "cause=\"node_lost\""), Some(2.0), "{text}");
    promtool_check(&text);
    let survivor = nodes.iter().flatten().next().unwrap();
    let text = http_get(&survivor.metrics, "/metrics").unwrap();
    assert!(metric(&text, "neuropil_checkpoint_bytes").is_some_and(|b| b > 1000.0), "{text}");
    assert!(metric(&text, "neuropil_checkpoint_duration_seconds_count").is_some_and(|n| n >= 1.0), "{text}");
    promtool_check(&text);
}

/// Issues 15 and 17: a co-simulated run survives the loss of the node that runs
/// its fabric (kill -9 after the first coordinated checkpoint). The fabric's link
/// state is in that node's checkpoint part; the control places the fabric on a
/// node left, which reads every part and continues the links where they were:
/// the spikes and the hardware section are the embedded co-simulation's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cosimulation_survives_losing_the_node_that_runs_its_fabric() {
    let tmp = TempDir::new("cosim-recovery");
    let volume = tmp.0.join("checkpoints");
    let vol = volume.to_str().unwrap();
    let file = tmp.0.join("microcircuit_loihi.toml");
    let doc = std::fs::read_to_string(root().join(MICROCIRCUIT)).unwrap();
    std::fs::write(&file, format!("{doc}\n[hardware]\npreset = \"loihi\"\n")).unwrap();
    let file = file.to_str().unwrap();
    let etcd = start_etcd();
    let control = checkpointing_control(&etcd, &tmp, vol);
    let mut nodes: Vec<Option<Proc>> = (0..3).map(|i| Some(checkpointing_node(&etcd, i, vol))).collect();
    wait_live_nodes(&control, 3).await;
    let set = [SCALE[0], SCALE[1], "run.duration_ms=1200", "run.transient_ms=0"];
    let embedded = embedded_summary(file, &set, &tmp.0.join("hw"));
    assert!(embedded["hardware"]["fabric"]["delayed"].as_u64().unwrap() > 0, "{}", embedded["hardware"]);
    let mut c = client(&control.grpc).await;
    let id = submit(&mut c, file, &set).await.unwrap();
    let at = wait_checkpointed(&mut c, &id).await;
    // The fabric runs on the last rank by default.
    let victim = at.nodes.last().unwrap().clone();
    assert_eq!(at.nodes.len(), 3, "{at:?}");
    let i: usize = victim.trim_start_matches("node-").parse().unwrap();
    nodes[i].take().unwrap().kill();
    let info = wait_done(&mut c, &id, Duration::from_secs(300)).await;
    assert_eq!(info.state, ExperimentState::Succeeded as i32, "{info:?}");
    assert_eq!(info.recoveries, 1, "the kill landed after the run had ended? {info:?}");
    assert_eq!(
        info.spike_hash,
        embedded["spike_hash"].as_str().unwrap(),
        "spikes differ from the embedded co-simulation"
    );
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(std::path::Path::new(&info.output_dir).join("summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["hardware"], embedded["hardware"], "hardware section");
    let fabrics: Vec<String> = actors(&info).into_iter().filter(|a| a.0 == "fabric").map(|a| a.2).collect();
    assert_eq!(fabrics.len(), 1, "{:?}", actors(&info));
    assert_ne!(fabrics[0], victim, "the fabric moved off the lost node: {:?}", actors(&info));
}

/// Issue 17: a node that stops answering (SIGSTOP, as a hung kernel or a host
/// cut off would look) keeps its connections open, so nothing breaks; its etcd
/// lease lapses, and that is what makes it lost — within the lease's time to live,
/// not the 120 s exchange timeout. The run recovers on the others with the
/// embedded spikes; thawed, the old node finds its attempt gone, changes nothing
/// of the finished experiment, registers again and takes part in the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_node_is_lost_when_its_lease_lapses_and_thawed_it_corrupts_nothing() {
    let tmp = TempDir::new("frozen");
    let volume = tmp.0.join("checkpoints");
    let vol = volume.to_str().unwrap();
    let etcd = start_etcd();
    let control = checkpointing_control(&etcd, &tmp, vol);
    let nodes: Vec<Proc> = (0..3)
        .map(|i| start_node(&etcd, &format!("node-{i}"), 1, &["--checkpoint-dir", vol, "--peer-timeout-s", "120"]))
        .collect();
    wait_live_nodes(&control, 3).await;
    let set = ["run.duration_ms=6000"];
    let embedded = embedded_summary("examples/cerebellar_dopamine.toml", &set, &tmp.0);
    let mut c = client(&control.grpc).await;
    let id = submit(&mut c, "examples/cerebellar_dopamine.toml", &set).await.unwrap();
    let at = wait_checkpointed(&mut c, &id).await;
    let frozen = at.nodes.iter().position(|n| n == "node-2").unwrap();
    nodes[2].signal(libc::SIGSTOP);
    let t = Instant::now();
    // The lease is 3 s; the exchange timeout 120 s.
    let info = wait_done(&mut c, &id, Duration::from_secs(60)).await;
    let took = t.elapsed();
    assert_eq!(info.state, ExperimentState::Succeeded as i32, "{info:?}");
    assert_eq!(info.recoveries, 1, "{info:?}");
    assert_eq!(info.spike_hash, embedded["spike_hash"].as_str().unwrap(), "spikes differ");
    let log: Vec<&str> = info.events.iter().map(|e| e.what.as_str()).collect();
    let lost = format!("node-2 (rank {frozen}) lost: its etcd lease lapsed");
    assert!(log.iter().any(|e| e.starts_with(&lost)), "{log:#?}");
    let at = |what: &str| info.events.iter().find(|e| e.what.starts_with(what)).map(|e| e.unix_ms).unwrap();
    eprintln!(
        "frozen node: run done {took:?} after SIGSTOP; lost noticed → resumed {} ms",
        at("resumed from") - at("node-2")
    );
    // Thawed: its old attempt ends without touching the finished experiment.
    nodes[2].signal(libc::SIGCONT);
    wait_live_nodes(&control, 3).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = c.get(GetRequest { id: id.clone() }).await.unwrap().into_inner();
    assert_eq!((after.state, &after.spike_hash, &after.events), (info.state, &info.spike_hash, &info.events));
    let id = submit(&mut c, "examples/cerebellar_dopamine.toml", &set).await.unwrap();
    let info = wait_done(&mut c, &id, Duration::from_secs(120)).await;
    assert_eq!(info.state, ExperimentState::Succeeded as i32, "{info:?}");
    assert_eq!(info.nodes.len(), 3, "{info:?}");
    assert_eq!(info.spike_hash, embedded["spike_hash"].as_str().unwrap());
}

/// Poll until `f` holds for the experiment (or panic after `within`).
async fn wait_until(
    c: &mut Client,
    id: &str,
    within: Duration,
    what: &str,
    f: impl Fn(&neuropil_proto::v1::ExperimentInfo) -> bool,
) -> neuropil_proto::v1::ExperimentInfo {
    let deadline = Instant::now() + within;
    loop {
        let info = c.get(GetRequest { id: id.into() }).await.unwrap().into_inner();
        if f(&info) {
            return info;
        }
        let s = ExperimentState::try_from(info.state).unwrap();
        assert!(
            !matches!(s, ExperimentState::Succeeded | ExperimentState::Failed | ExperimentState::Cancelled),
            "ended before {what}: {info:?}"
        );
        assert!(Instant::now() < deadline, "not {what} after {within:?}: {info:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Issue 17: a run changes its number of nodes while it goes, and keeps its
/// spikes. A checkpoint on request (ExperimentService.Checkpoint, `neuropil
/// checkpoint ID`; no periodic ones here); a node that joins takes shards at the
/// next checkpoint (2 → 3); a node told to stop (SIGTERM, a rolling update)
/// drains: the nodes write a checkpoint for it, its shards move to the others
/// (3 → 2), and it exits cleanly. The finished run has the embedded spike hash.
/// node-1 starts the 3-node attempt 3 s late (a `start` failpoint) and hears
/// SIGTERM in between: a node with an attempt assigned but not started is not
/// idle, and leaving then would be a lost node (a recovery), not a drain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_rescales_2_to_3_nodes_and_drains_3_to_2_with_the_same_spikes() {
    let tmp = TempDir::new("rescale");
    let volume = tmp.0.join("checkpoints");
    let vol = volume.to_str().unwrap();
    let etcd = start_etcd();
    let control = start_control(
        &etcd,
        "control-0",
        &tmp.0.join("data"),
        &["--checkpoint-interval-ms", "0", "--checkpoint-dir", vol],
    );
    let late = [("NEUROPIL_FAILPOINTS", "start:1@1")];
    let node = |i: usize| {
        let env: &[(&str, &str)] = if i == 1 { &late } else { &[] };
        start_node_with_env(&etcd, &format!("node-{i}"), 1, &["--checkpoint-dir", vol], env)
    };
    let mut nodes: Vec<Proc> = (0..2).map(node).collect();
    wait_live_nodes(&control, 2).await;
    let set = ["run.duration_ms=60000"];
    let embedded = embedded_summary("examples/cerebellar_dopamine.toml", &set, &tmp.0);
    let mut c = client(&control.grpc).await;
    // 6 shards: enough for 3 nodes (shards stay; their placement changes).
    let req = SubmitRequest { shards: 6, ..request("examples/cerebellar_dopamine.toml", &set) };
    let id = c.submit(req).await.unwrap().into_inner().id;
    wait_until(&mut c, &id, Duration::from_secs(60), "running", |i| i.bio_time_ms > 0.0).await;
    // No periodic checkpoints: the first comes on request.
    c.checkpoint(neuropil_proto::v1::CheckpointRequest { id: id.clone() }).await.unwrap();
    wait_until(&mut c, &id, Duration::from_secs(60), "checkpointed", |i| i.checkpoint_ms > 0.0).await;
    // 2 → 3: a node joins; at the next checkpoint it takes shards.
    nodes.push(node(2));
    wait_live_nodes(&control, 3).await;
    c.checkpoint(neuropil_proto::v1::CheckpointRequest { id: id.clone() }).await.unwrap();
    let info = wait_until(&mut c, &id, Duration::from_secs(60), "on 3 nodes", |i| i.nodes.len() == 3).await;
    assert_eq!(info.nodes, ["node-0", "node-1", "node-2"]);
    // 3 → 2: node-1 drains.
    nodes[1].signal(libc::SIGTERM);
    let info = wait_until(&mut c, &id, Duration::from_secs(60), "off node-1", |i| {
        i.nodes.len() == 2 && i.state == ExperimentState::Running as i32
    })
    .await;
    assert_eq!(info.nodes, ["node-0", "node-2"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = nodes[1].child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the drained node did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "the drained node exited with {status}");
    let info = wait_done(&mut c, &id, Duration::from_secs(300)).await;
    assert_eq!(info.state, ExperimentState::Succeeded as i32, "{info:?}");
    assert_eq!(info.spike_hash, embedded["spike_hash"].as_str().unwrap(), "spikes differ");
    assert_eq!(info.recoveries, 0, "nothing was lost: {info:?}");
    let log: Vec<&str> = info.events.iter().map(|e| e.what.as_str()).collect();
    let joined = log.iter().position(|e| e.starts_with("node-2 joined: the shards spread over 3 nodes"));
    let drained = log.iter().position(|e| e.starts_with("node-1 drains (SIGTERM)"));
    assert!(joined.is_some() && drained.is_some() && joined < drained, "{log:#?}");
    let text = http_get(&control.metrics, "/metrics").unwrap();
    assert_eq!(metric_with(&text, "neuropil_recoveries_total", "cause=\"rescale\""), Some(1.0), "{text}");
    assert_eq!(metric_with(&text, "neuropil_recoveries_total", "cause=\"drain\""), Some(1.0), "{text}");
}

/// Issue 17: etcd away for 10 s in the middle of a run (killed, then started
/// again on its data, as a rescheduled etcd pod) costs nothing: etcd is not on the
/// spike path, so the nodes go on simulating; their records and the leader come
/// back; the run succeeds with the embedded spike hash, and the cluster takes the
/// next experiment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_away_for_10_s_mid_run_costs_nothing() {
    let tmp = TempDir::new("etcd-outage");
    let volume = tmp.0.join("checkpoints");
    let vol = volume.to_str().unwrap();
    let mut etcd = start_etcd();
    let control = start_control(
        &etcd,
        "control-0",
        &tmp.0.join("data"),
        &["--checkpoint-interval-ms", "1000", "--checkpoint-dir", vol],
    );
    let _nodes: Vec<Proc> =
        (0..2).map(|i| start_node(&etcd, &format!("node-{i}"), 1, &["--checkpoint-dir", vol])).collect();
    wait_live_nodes(&control, 2).await;
    let set = ["run.duration_ms=120000"];
    let embedded = embedded_summary("examples/cerebellar_dopamine.toml", &set, &tmp.0);
    let mut c = client(&control.grpc).await;
    let id = submit(&mut c, "examples/cerebellar_dopamine.toml", &set).await.unwrap();
    let before = wait_checkpointed(&mut c, &id).await;
    let spikes = |text: &str| metric_with(text, "neuropil_spikes_total", "population=\"cortex\"").unwrap_or(0.0);
    let n0 = spikes(&http_get(&_nodes[0].metrics, "/metrics").unwrap());
    let outage = tokio::task::spawn_blocking(move || {
        etcd.outage(Duration::from_secs(10));
        etcd
    });
    // Meanwhile the nodes simulate on.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let n1 = spikes(&http_get(&_nodes[0].metrics, "/metrics").unwrap());
    assert!(n1 > n0, "node-0 stopped simulating while etcd was away ({n0} -> {n1} spikes)");
    // And the API says what is wrong: UNAVAILABLE naming etcd (a client retries
    // that), not INTERNAL, not a hang past the outage.
    let asked = Instant::now();
    let e = c.list(ListRequest {}).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert!(e.message().starts_with("etcd: "), "{e:?}");
    assert!(asked.elapsed() < Duration::from_secs(5), "answered after {:?}", asked.elapsed());
    let _etcd = outage.await.unwrap();
    let mut c = client(&control.grpc).await;
    let info = wait_done(&mut c, &id, Duration::from_secs(300)).await;
    assert_eq!(info.state, ExperimentState::Succeeded as i32, "{info:?}");
    assert_eq!(info.spike_hash, embedded["spike_hash"].as_str().unwrap(), "spikes differ");
    assert_eq!(info.recoveries, 0, "{info:?}");
    assert!(before.bio_time_ms < info.duration_ms);
    wait_live_nodes(&control, 2).await;
    let id = submit(&mut c, "examples/brunel.toml", &["run.duration_ms=120"]).await.unwrap();
    let info = wait_done(&mut c, &id, Duration::from_secs(120)).await;
    assert_eq!(info.state, ExperimentState::Succeeded as i32, "{info:?}");
}

/// Issue 17: a node that dies while it writes its part of a checkpoint (a
/// failpoint aborts node-1 halfway through its second part, as kill -9 would)
/// leaves that checkpoint incomplete; the run rolls back to the one before, and
/// still ends with the embedded spike hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_while_writing_a_checkpoint_leaves_the_one_before_in_force() {
    let tmp = TempDir::new("torn-checkpoint");
    let volume = tmp.0.join("checkpoints");
    let vol = volume.to_str().unwrap();
    let etcd = start_etcd();
    let control = checkpointing_control(&etcd, &tmp, vol);
    let args = ["--checkpoint-dir", vol];
    let _n0 = start_node(&etcd, "node-0", 1, &args);
    let _n1 = start_node_with_env(&etcd, "node-1", 1, &args, &[("NEUROPIL_FAILPOINTS", "part:1@2")]);
    let _n2 = start_node(&etcd, "node-2", 1, &args);
    wait_live_nodes(&control, 3).await;
    let set = ["run.duration_ms=6000"];
    let embedded = embedded_summary("examples/cerebellar_dopamine.toml", &set, &tmp.0);
    let mut c = client(&control.grpc).await;
    let id = submit(&mut c, "examples/cerebellar_dopamine.toml", &set).await.unwrap();
    let info = wait_done(&mut c, &id, Duration::from_secs(300)).await;
    assert_eq!(info.state, ExperimentState::Succeeded as i32, "{info:?}");
    assert_eq!(info.spike_hash, embedded["spike_hash"].as_str().unwrap(), "spikes differ");
    let log: Vec<&str> = info.events.iter().map(|e| e.what.as_str()).collect();
    assert!(log.iter().any(|e| e.starts_with("node-1 (rank 1) lost")), "{log:#?}");
    // Its first part (300 ms) was whole; its second (600 ms) never was.
    assert!(log.contains(&"recovering: rolling back to the checkpoint at 300 ms"), "{log:#?}");
    assert_eq!(info.recoveries, 1);
}

/// Issue 17: a node cut off (its host's link down, the process alive): node-1 on
/// a host of its own (a network namespace joined by a veth pair to a bridge, on
/// which etcd and the other nodes listen). It can reach neither its peers nor
/// etcd: its lease lapses, it is lost, and the run recovers on the others with
/// the embedded spikes. When the link comes back the old node finds its attempt
/// gone, changes nothing of the finished experiment, registers again and takes
/// part in the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_by_its_link_is_lost_and_back_again_corrupts_nothing() {
    let hosts = Hosts::new(1);
    let tmp = TempDir::new("cut-link");
    let volume = tmp.0.join("checkpoints");
    let vol = volume.to_str().unwrap();
    let etcd = start_etcd_on(&hosts.bridge_ip);
    let control = checkpointing_control(&etcd, &tmp, vol);
    let nodes = three_nodes_one_apart(&hosts, &etcd, |_| vec!["--checkpoint-dir".into(), vol.into()]);
    wait_live_nodes(&control, 3).await;
    let set = ["run.duration_ms=6000"];
    let embedded = embedded_summary("examples/cerebellar_dopamine.toml", &set, &tmp.0);
    let mut c = client(&control.grpc).await;
    let id = submit(&mut c, "examples/cerebellar_dopamine.toml", &set).await.unwrap();
    let at = wait_checkpointed(&mut c, &id).await;
    let cut = at.nodes.iter().position(|n| n == "node-1").unwrap();
    hosts.link(0, false);
    let info = wait_done(&mut c, &id, Duration::from_secs(120)).await;
    assert_eq!(info.state, ExperimentState::Succeeded as i32, "{info:?}");
    assert_eq!(info.recoveries, 1, "{info:?}");
    assert_eq!(info.spike_hash, embedded["spike_hash"].as_str().unwrap(), "spikes differ");
    let log: Vec<&str> = info.events.iter().map(|e| e.what.as_str()).collect();
    assert!(log.iter().any(|e| e.starts_with(&format!("node-1 (rank {cut}) lost"))), "{log:#?}");
    assert_eq!(info.nodes, ["node-0", "node-2"]);
    // The link comes back: the old node's attempt ends without touching anything.
    hosts.link(0, true);
    wait_live_nodes(&control, 3).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = c.get(GetRequest { id: id.clone() }).await.unwrap().into_inner();
    assert_eq!((after.state, &after.spike_hash, &after.events), (info.state, &info.spike_hash, &info.events));
    let id = submit(&mut c, "examples/cerebellar_dopamine.toml", &set).await.unwrap();
    let info = wait_done(&mut c, &id, Duration::from_secs(120)).await;
    assert_eq!(info.state, ExperimentState::Succeeded as i32, "{info:?}");
    assert_eq!(info.nodes.len(), 3, "{info:?}");
    assert_eq!(info.spike_hash, embedded["spike_hash"].as_str().unwrap());
    drop(nodes);
}

/// node-0, node-1 and node-2 (1 thread, lease 3 s), node-1 alone on host 0 of
/// `hosts` (its own network namespace), the others in the root namespace on the
/// bridge's address, where etcd listens; `extra(id)`: more arguments for each.
fn three_nodes_one_apart(hosts: &Hosts, etcd: &Etcd, extra: impl Fn(&str) -> Vec<String>) -> Vec<Proc> {
    (0..3)
        .map(|i| {
            let at = format!("{}:0", if i == 1 { hosts.ip(0) } else { hosts.bridge_ip.clone() });
            let id = format!("node-{i}");
            let mut args: Vec<String> = ["node", "--listen", &at, "--metrics", &at, "--exchange-listen", &at]
                .into_iter()
                .chain(["--etcd", &etcd.endpoint, "--id", &id, "--threads", "1", "--lease-ttl-s", "3"])
                .map(String::from)
                .collect();
            args.extend(extra(&id));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            if i == 1 {
                start_in(&hosts.netns(0), &id, &args)
            } else {
                start(&id, &args)
            }
        })
        .collect()
}

/// Issue 17: two nodes that cannot reach each other while both still reach etcd
/// and the control (a partition of the node network only: node-1's exchange
/// traffic dropped inside its own network namespace, its link up). Each waits for
/// the other's epoch message and says so; after `--peer-stall-s` the control
/// moves the run off the node the others wait for, and it recovers from the last
/// checkpoint with the spikes of the run that never stopped — instead of waiting
/// out the exchange timeout and failing. Healed, the node runs the next experiment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_that_cannot_reach_each_other_are_split_and_the_run_recovers() {
    let hosts = Hosts::new(1);
    let tmp = TempDir::new("partition");
    let volume = tmp.0.join("checkpoints");
    let vol = volume.to_str().unwrap();
    let etcd = start_etcd_on(&hosts.bridge_ip);
    let control = start_control(
        &etcd,
        "control-0",
        &tmp.0.join("data"),
        &["--checkpoint-interval-ms", "300", "--checkpoint-dir", vol, "--peer-stall-s", "3"],
    );
    // Every node offers a Unix socket on the one file system: node-1, in a
    // network namespace of its own, is another host and must not use them.
    let nodes = three_nodes_one_apart(&hosts, &etcd, |id| {
        let sock = tmp.0.join(format!("{id}.sock")).to_str().unwrap().to_string();
        vec!["--checkpoint-dir".into(), vol.into(), "--exchange-socket".into(), sock]
    });
    let ports: Vec<u16> = nodes.iter().map(|n| n.exchange.rsplit(':').next().unwrap().parse().unwrap()).collect();
    wait_live_nodes(&control, 3).await;
    let set = ["run.duration_ms=6000"];
    let embedded = embedded_summary("examples/cerebellar_dopamine.toml", &set, &tmp.0);
    let mut c = client(&control.grpc).await;
    let id = submit(&mut c, "examples/cerebellar_dopamine.toml", &set).await.unwrap();
    let at = wait_checkpointed(&mut c, &id).await;
    let cut = at.nodes.iter().position(|n| n == "node-1").unwrap();
    let streams = |n: &Proc, via: &str| {
        let text = http_get(&n.metrics, "/metrics").unwrap();
        metric_with(&text, "neuropil_exchange_streams_opened_total", &format!("transport=\"{via}\"")).unwrap_or(0.0)
    };
    // Of the 3 streams, only node-0's with node-2 (one host) goes over a socket.
    let unix: f64 = nodes.iter().map(|n| streams(n, "unix")).sum();
    let tcp: f64 = nodes.iter().map(|n| streams(n, "tcp")).sum();
    assert_eq!((unix, tcp), (1.0, 2.0), "a Unix socket across network namespaces, or none on one host");
    hosts.cut_ports(0, &ports, true);
    let cut_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let info = wait_done(&mut c, &id, Duration::from_secs(100)).await;
    hosts.cut_ports(0, &ports, false);
    for e in &info.events {
        eprintln!("  {:+7} ms after the cut: {}", e.unix_ms as i64 - cut_at, e.what);
    }
    assert_eq!(info.state, ExperimentState::Succeeded as i32, "{info:?}");
    assert_eq!(info.recoveries, 1, "{info:?}");
    assert_eq!(info.spike_hash, embedded["spike_hash"].as_str().unwrap(), "spikes differ");
    let log: Vec<&str> = info.events.iter().map(|e| e.what.as_str()).collect();
    let lost = format!("node-1 (rank {cut}) lost: it and node-");
    assert!(log.iter().any(|e| e.starts_with(&lost) && e.contains("cannot reach each other")), "{log:#?}");
    assert_eq!(info.nodes, ["node-0", "node-2"]);
    // node-1 never left etcd; the network healed, it takes its share again.
    let text = http_get(&control.metrics, "/metrics").unwrap();
    assert_eq!(metric(&text, "neuropil_live_nodes"), Some(3.0));
    let id = submit(&mut c, "examples/cerebellar_dopamine.toml", &set).await.unwrap();
    let info = wait_done(&mut c, &id, Duration::from_secs(120)).await;
    assert_eq!(info.state, ExperimentState::Succeeded as i32, "{info:?}");
    assert_eq!(info.nodes.len(), 3, "{info:?}");
    assert_eq!(info.spike_hash, embedded["spike_hash"].as_str().unwrap());
    drop(nodes);
}

/// Issue 17: the control leader and a node killed at the same moment, mid-run
/// after the first checkpoint. Nobody saw the node go: the standby wins the
/// election, re-attaches to the running attempt from its assignment, finds the
/// node lost (its stream gone, its lease lapsed), and recovers the run from the
/// last checkpoint — with the spikes of the run that never stopped. A Get
/// through the standby answers throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_with_a_node_hands_the_recovery_to_the_standby() {
    let tmp = TempDir::new("leader-recovery");
    let volume = tmp.0.join("checkpoints");
    let vol = volume.to_str().unwrap();
    let etcd = start_etcd();
    let data = tmp.0.join("data");
    let ctl = ["--checkpoint-interval-ms", "300", "--checkpoint-dir", vol];
    let mut a = start_control(&etcd, "control-a", &data, &ctl);
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(&http_get(&a.metrics, "/metrics").unwrap(), "neuropil_control_leader") != Some(1.0) {
        assert!(Instant::now() < deadline, "control-a never became leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b = start_control(&etcd, "control-b", &data, &ctl);
    let node =
        |i: usize| start_node(&etcd, &format!("node-{i}"), 1, &["--checkpoint-dir", vol, "--peer-timeout-s", "60"]);
    let mut nodes: Vec<Option<Proc>> = (0..3).map(|i| Some(node(i))).collect();
    wait_live_nodes(&a, 3).await;
    let set = ["run.duration_ms=6000"];
    let embedded = embedded_summary("examples/cerebellar_dopamine.toml", &set, &tmp.0);
    let mut ca = client(&a.grpc).await;
    let id = submit(&mut ca, "examples/cerebellar_dopamine.toml", &set).await.unwrap();
    let at = wait_checkpointed(&mut ca, &id).await;
    let victim = at.nodes[1].clone();
    let i: usize = victim.trim_start_matches("node-").parse().unwrap();
    a.kill();
    nodes[i].take().unwrap().kill();
    let killed = Instant::now();
    let mut cb = client(&b.grpc).await;
    let mut slowest = Duration::ZERO;
    let info = loop {
        let asked = Instant::now();
        let info = cb.get(GetRequest { id: id.clone() }).await.unwrap().into_inner();
        slowest = slowest.max(asked.elapsed());
        if info.state > ExperimentState::Running as i32 && info.state != ExperimentState::Recovering as i32 {
            break info;
        }
        assert!(killed.elapsed() < Duration::from_secs(240), "the run did not finish: {info:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("finished {:?} after the kills; the slowest Get through the standby took {slowest:?}", killed.elapsed());
    assert_eq!(info.state, ExperimentState::Succeeded as i32, "{info:?}");
    assert_eq!(info.recoveries, 1, "{info:?}");
    assert_eq!(info.spike_hash, embedded["spike_hash"].as_str().unwrap(), "spikes differ");
    let log: Vec<&str> = info.events.iter().map(|e| e.what.as_str()).collect();
    assert!(log.iter().any(|e| e.starts_with(&format!("{victim} (rank 1) lost"))), "{log:#?}");
    assert_eq!(info.nodes.len(), 2, "{info:?}");
    assert!(!info.nodes.contains(&victim), "{info:?}");
    assert!(slowest < Duration::from_secs(5), "a Get through the standby took {slowest:?}");
    assert_eq!(metric(&http_get(&b.metrics, "/metrics").unwrap(), "neuropil_control_leader"), Some(1.0));
}

/// Issue 17's acceptance run: 3 nodes, the microcircuit at 0.1 scale with a
/// readout of layer 4 learning by dopamine-modulated STDP and a cerebellar module
/// as its dopamine (tests/data/microcircuit_plastic_tail.toml, appended to
/// examples/microcircuit.toml); kill -9 of one node after the first checkpoint.
/// The run completes on the other two with the spike hash and the cerebellum.csv
/// of the uninterrupted embedded run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microcircuit_with_stdp_and_a_module_survives_a_killed_node() {
    let tmp = TempDir::new("microcircuit-recovery");
    let doc = std::fs::read_to_string(root().join("examples/microcircuit.toml")).unwrap()
        + &std::fs::read_to_string(root().join("tests/data/microcircuit_plastic_tail.toml")).unwrap();
    let file = tmp.0.join("microcircuit_plastic.toml");
    std::fs::write(&file, doc).unwrap();
    let file = file.to_str().unwrap();
    let volume = tmp.0.join("checkpoints");
    let vol = volume.to_str().unwrap();
    let etcd = start_etcd();
    let control = checkpointing_control(&etcd, &tmp, vol);
    let node =
        |i: usize| start_node(&etcd, &format!("node-{i}"), 1, &["--checkpoint-dir", vol, "--peer-timeout-s", "60"]);
    let mut nodes: Vec<Option<Proc>> = (0..3).map(|i| Some(node(i))).collect();
    wait_live_nodes(&control, 3).await;
    let set = ["scaling.neurons=0.1", "scaling.synapses=0.1"];
    let embedded = embedded_summary(file, &set, &tmp.0);
    let theirs = std::fs::read_to_string(tmp.0.join("embedded/cerebellum.csv")).unwrap();
    let mut c = client(&control.grpc).await;
    let id = submit(&mut c, file, &set).await.unwrap();
    let at = wait_checkpointed(&mut c, &id).await;
    assert!(at.bio_time_ms < 1000.0, "the kill would land after the run: {at:?}");
    let victim = at.nodes[1].clone();
    let i: usize = victim.trim_start_matches("node-").parse().unwrap();
    nodes[i].take().unwrap().kill();
    let info = wait_done(&mut c, &id, Duration::from_secs(600)).await;
    assert_eq!(info.state, ExperimentState::Succeeded as i32, "{info:?}");
    assert_eq!(info.recoveries, 1, "{info:?}");
    assert_eq!(info.spike_hash, embedded["spike_hash"].as_str().unwrap(), "spikes differ");
    let ours = std::fs::read_to_string(std::path::Path::new(&info.output_dir).join("cerebellum.csv")).unwrap();
    assert!(ours == theirs, "cerebellum.csv differs from the embedded run's");
    assert_eq!(info.nodes.len(), 2, "{info:?}");
    let log: Vec<&str> = info.events.iter().map(|e| e.what.as_str()).collect();
    assert!(log.iter().any(|e| e.starts_with(&format!("{victim} (rank 1) lost"))), "{log:#?}");
    // The module ran on the victim (rank 1 by default) and was placed again on a
    // survivor, restored from the victim's part.
    let placed: Vec<&&str> = log.iter().filter(|e| e.starts_with("cerebellum.")).collect();
    assert_eq!(placed.len(), 2, "{log:#?}");
    assert!(placed[0].ends_with(&format!(" on {victim}")) && !placed[1].contains(&victim), "{placed:?}");
    let modules: Vec<String> = actors(&info).into_iter().filter(|a| a.0 == "cerebellar_module").map(|a| a.2).collect();
    assert_eq!(modules.len(), 1, "{:?}", actors(&info));
    assert_ne!(modules[0], victim);
}

/// The README's cluster on one machine, run as written (copied out of README.md,
/// not retyped here): etcd, a control, two nodes and `neuropil submit --wait`, in
/// a network namespace of its own (its fixed ports collide with nothing) and a
/// private /tmp (its /tmp/etcd is fresh, as on a newcomer's machine).
#[test]
fn the_readmes_cluster_on_one_machine_runs_as_written() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme.find("    etcd --data-dir /tmp/etcd &").expect("the README's cluster block");
    let block: Vec<&str> = readme[start..].lines().take_while(|l| l.starts_with("    ")).map(|l| l.trim()).collect();
    assert!(block.last().unwrap().starts_with("neuropil submit"), "{block:?}");
    let script = block.join("\n");
    let ns = format!("np-readme-{}", std::process::id());
    let run = |args: &[&str]| Command::new("ip").args(args).status().unwrap().success();
    assert!(run(&["netns", "add", &ns]), "ip netns add (the tests run as root)");
    // Whatever still runs in the namespace dies with the test.
    struct Ns(String);
    impl Drop for Ns {
        fn drop(&mut self) {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.0]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _ns = Ns(ns.clone());
    assert!(run(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]));
    let bin_dir = std::path::Path::new(BIN).parent().unwrap().to_str().unwrap().to_string();
    // A working directory of its own (the control writes out/cluster there) that
    // has the checkout's examples/.
    let work = TempDir::new("readme");
    std::os::unix::fs::symlink(root().join("examples"), work.0.join("examples")).unwrap();
    // Background jobs die with the script, which keeps the last command's status;
    // the whole of it within 300 s. Output goes to files: a process left running
    // cannot keep a pipe, and the test, waiting.
    let wrapped = format!(
        "mount -t tmpfs tmpfs /tmp || exit 99\ntrap 'rc=$?; kill $(jobs -p) 2>/dev/null; wait; exit $rc' EXIT\n{}\n",
        script.replace(" \\\n", " ")
    );
    let (out_file, err_file) = (work.0.join("stdout.txt"), work.0.join("stderr.txt"));
    let status = Command::new("timeout")
        .args(["300", "ip", "netns", "exec", &ns, "unshare", "--mount", "--propagation", "private", "bash", "-c"])
        .arg(&wrapped)
        .current_dir(&work.0)
        .env("PATH", format!("{bin_dir}:{}", std::env::var("PATH").unwrap_or_default()))
        .stdout(std::fs::File::create(&out_file).unwrap())
        .stderr(std::fs::File::create(&err_file).unwrap())
        .status()
        .unwrap();
    let stdout = std::fs::read_to_string(&out_file).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_file).unwrap_or_default();
    assert!(status.success(), "the README's commands failed ({status:?}):\n{stdout}\n{stderr}");
    let line = |key: &str| stdout.lines().find(|l| l.starts_with(key)).unwrap_or_default().to_string();
    assert!(line("state").ends_with("succeeded"), "submit --wait did not report success:\n{stdout}\n{stderr}");
}

//! The HardwareService end to end: `neuropil hwemu serve` as a process, called
//! over gRPC, scraped over HTTP.

mod harness;

use harness::*;
use neuropil_proto::v1::hardware_service_client::HardwareServiceClient;
use neuropil_proto::v1::{
    EvaluateMappingRequest, HardwareReportRequest, ListPresetsRequest, PresetRef, RunTrafficRequest,
};

const TINY: &str = r#"
name = "tiny"
[run]
duration_ms = 100.0
[[populations]]
name = "E"
size = 400
model = "iaf_psc_exp"
params = { I_e = 400.0 }
[[populations]]
name = "I"
size = 100
model = "iaf_psc_exp"
[[projections]]
source = "E"
target = "I"
conn = { rule = "pairwise_bernoulli", p = 0.2 }
syn = { weight = 50.0, delay_ms = 1.0 }
[[projections]]
source = "I"
target = "E"
conn = { rule = "fixed_indegree", indegree = 5 }
syn = { weight = -40.0, delay_ms = 1.0 }
"#;

fn named(name: &str) -> Option<PresetRef> {
    Some(PresetRef { name: name.into(), toml: String::new() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hardware_service_with_a_token_refuses_calls_without_it_and_keeps_health_open() {
    let tmp = TempDir::new("hwemu-token");
    let token = tmp.0.join("token");
    std::fs::write(&token, "hwemu-token-0123\n").unwrap();
    let svc = start(
        "hwemu",
        &[
            "hwemu",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--token-file",
            token.to_str().unwrap(),
        ],
    );
    let channel = tonic::transport::Endpoint::from_shared(svc.grpc.clone()).unwrap().connect().await.unwrap();
    let mut c = HardwareServiceClient::new(channel.clone());
    let e = c.list_presets(ListPresetsRequest {}).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    let mut wrong = tonic::Request::new(ListPresetsRequest {});
    wrong.metadata_mut().insert("authorization", "Bearer hwemu-token-0124".parse().unwrap());
    assert_eq!(c.list_presets(wrong).await.unwrap_err().code(), tonic::Code::Unauthenticated);
    let mut right = tonic::Request::new(ListPresetsRequest {});
    right.metadata_mut().insert("authorization", "Bearer hwemu-token-0123".parse().unwrap());
    assert_eq!(c.list_presets(right).await.unwrap().into_inner().presets.len(), 5);
    // Kubernetes probes need no token.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let h = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap();
    assert_eq!(h.into_inner().status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardware_service_answers_and_survives_malformed_requests() {
    let svc = start("hwemu", &["hwemu", "serve", "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"]);
    let channel = tonic::transport::Endpoint::from_shared(svc.grpc.clone()).unwrap().connect().await.unwrap();
    let mut c = HardwareServiceClient::new(channel);
    for alpha in [false, true] {
        assert_eq!(
            reflected_services(&svc.grpc, alpha).await,
            with_introspection("neuropil.v1.HardwareService", alpha)
        );
    }

    let presets = c.list_presets(ListPresetsRequest {}).await.unwrap().into_inner().presets;
    let names: Vec<&str> = presets.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["spinnaker1", "spinnaker2", "loihi", "truenorth", "dynapse"]);

    let traffic = |preset: Option<PresetRef>, rate: f64, duration: f64| RunTrafficRequest {
        preset,
        rate_per_chip_per_ns: rate,
        duration_ns: duration,
        seed: 1,
    };
    let t = c.run_traffic(traffic(named("loihi"), 0.5, 2000.0)).await.unwrap().into_inner();
    assert!(t.packets > 20_000 && t.delivered == t.packets && t.dropped == 0, "{t:?}");
    assert!(t.mean_latency_ns > 0.0 && t.mean_hops > 1.0);
    // Malformed requests: named problems, and the service goes on.
    let e = c.run_traffic(traffic(named("loihi3"), 0.5, 2000.0)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("preset.name: preset: unknown preset \"loihi3\""), "{}", e.message());
    let e = c.run_traffic(traffic(named("loihi"), -1.0, 2000.0)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().starts_with("rate_per_chip_per_ns"), "{}", e.message());
    let e = c.run_traffic(traffic(named("loihi"), 10.0, 1e9)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    let e = c.run_traffic(traffic(None, 0.5, 2000.0)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let bad_toml = Some(PresetRef { name: String::new(), toml: "name = \"x\"\ndescription = \"y\"\n".into() });
    let e = c.run_traffic(traffic(bad_toml, 0.5, 2000.0)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().starts_with("preset.toml:"), "{}", e.message());
    let huge = Some(PresetRef { name: String::new(), toml: "#".repeat(2 << 20) });
    let e = c.run_traffic(traffic(huge, 0.5, 2000.0)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted);

    // Mapping evaluation names broken limits.
    let eval = |preset: &str, mapping: &str| EvaluateMappingRequest {
        document: TINY.into(),
        format: "toml".into(),
        set: vec![],
        preset: named(preset),
        mapping: mapping.into(),
        neurons_per_core: 0,
    };
    let m = c.evaluate_mapping(eval("loihi", "round_robin")).await.unwrap().into_inner();
    assert_eq!((m.cores_used, m.neurons), (1, 500));
    assert!(m.violations.is_empty(), "{m:?}");
    let m = c.evaluate_mapping(eval("truenorth", "population_contiguous")).await.unwrap().into_inner();
    assert!(m.violations.iter().any(|v| v.contains("fanout_per_neuron")), "{m:?}");
    let e = c.evaluate_mapping(eval("loihi", "diagonal")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let mut bad_doc = eval("loihi", "round_robin");
    bad_doc.set = vec!["run.duration_ms=-5".into()];
    let e = c.evaluate_mapping(bad_doc).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("run.duration_ms"), "{}", e.message());
    let mut big = eval("loihi", "round_robin");
    big.set = vec!["populations.E.size=1000000".into()];
    let e = c.evaluate_mapping(big).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");

    // A full report.
    let r = c
        .report(HardwareReportRequest {
            document: TINY.into(),
            format: "toml".into(),
            set: vec![],
            preset: named("spinnaker1"),
            mapping: "round_robin".into(),
            neurons_per_core: 100,
        })
        .await
        .unwrap()
        .into_inner();
    let json: serde_json::Value = serde_json::from_str(&r.json).unwrap();
    assert_eq!(json["preset"], "spinnaker1");
    assert!(json["spikes"].as_u64().unwrap() > 0);
    assert!(r.energy_j > 0.0 && r.mean_latency_ns > 0.0);

    // Metrics moved, and follow Prometheus conventions.
    let text = http_get(&svc.metrics, "/metrics").unwrap();
    assert!(metric(&text, "neuropil_hwemu_packets_total").unwrap() > 20_000.0);
    assert!(text.contains(r#"neuropil_hwemu_requests_total{code="InvalidArgument",method="RunTraffic"} 4"#), "{text}");
    assert!(text.contains(r#"neuropil_hwemu_requests_total{code="Ok",method="Report"} 1"#));
    promtool_check(&text);
    golden_names("hwemu", &text);
}

//! What operators load into their monitoring (`deploy/`): the Prometheus alert
//! rules pass `promtool check rules` and their unit tests (`promtool test rules`),
//! and the Grafana dashboard and the rules name only metrics the services export:
//! the golden lists in tests/data/metrics-*.txt, which the cluster and hwemu tests
//! check against real scrapes.

mod harness;

use harness::*;
use std::process::Command;

/// Every series family the services export (node, control, hwemu), from the
/// golden lists.
fn exported() -> Vec<String> {
    let mut names = Vec::new();
    for service in ["node", "control", "hwemu"] {
        let text = std::fs::read_to_string(root().join(format!("tests/data/metrics-{service}.txt"))).unwrap();
        for line in text.lines() {
            let name = line.split('#').next().unwrap_or("").trim().trim_end_matches('?').trim();
            if !name.is_empty() {
                names.push(name.to_string());
            }
        }
    }
    names
}

/// The `neuropil_…` metric names in a PromQL expression (or any text).
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("neuropil_") {
        let tail = &rest[i..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

/// Whether `name` is an exported family, or a histogram's `_bucket`/`_sum`/`_count` of one.
fn is_exported(name: &str, exported: &[String]) -> bool {
    let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s));
    exported.iter().any(|e| e == name || Some(e.as_str()) == base)
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    for args in [["check", "rules", "deploy/alerts.yml"], ["test", "rules", "deploy/alerts_test.yml"]] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(root())
            .output()
            .expect("promtool not found: install Debian's prometheus (scripts/install-deps)");
        assert!(
            out.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Every alert has a unit test.
    let rules = std::fs::read_to_string(root().join("deploy/alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(root().join("deploy/alerts_test.yml")).unwrap();
    let alerts: Vec<&str> = rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).collect();
    assert!(alerts.len() >= 6, "{alerts:?}");
    for a in &alerts {
        assert!(tests.contains(&format!("alertname: {a}\n")), "alert {a} has no test in deploy/alerts_test.yml");
    }
    // Prometheus loads them.
    let config = std::fs::read_to_string(root().join("deploy/prometheus.yml")).unwrap();
    assert!(config.contains("alerts.yml"), "deploy/prometheus.yml does not load deploy/alerts.yml");
}

#[test]
fn the_dashboard_and_the_alerts_name_only_exported_metrics() {
    let exported = exported();
    assert!(exported.len() > 30, "{exported:?}");
    // The committed JSON is what its generator writes.
    let out = Command::new("python3")
        .args(["deploy/grafana/make_dashboard.py", "--check"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(root().join("deploy/grafana/neuropil.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids: Vec<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), panels.len(), "panel ids must be unique");
    let mut used = Vec::new();
    for p in panels.iter().filter(|p| p["type"] != "row") {
        let targets = p["targets"].as_array().unwrap_or_else(|| panic!("panel {} has no queries", p["title"]));
        assert!(!targets.is_empty(), "panel {} has no queries", p["title"]);
        for t in targets {
            let expr = t["expr"].as_str().unwrap();
            let names = metric_names(expr);
            assert!(!names.is_empty(), "panel {}: {expr} names no neuropil metric", p["title"]);
            used.extend(names);
        }
    }
    let alerts = std::fs::read_to_string(root().join("deploy/alerts.yml")).unwrap();
    let expr_lines = alerts.lines().filter(|l| !l.trim_start().starts_with('#') && !l.contains("description:"));
    used.extend(expr_lines.flat_map(metric_names));
    used.sort();
    used.dedup();
    let unknown: Vec<&String> = used.iter().filter(|n| !is_exported(n, &exported)).collect();
    assert!(unknown.is_empty(), "the dashboard or the alerts name metrics no service exports: {unknown:?}");
    assert!(used.len() >= 25, "{used:?}");
    // What the dashboard shows of what matters to a long run.
    for family in [
        "neuropil_experiment_bio_time_seconds",
        "neuropil_experiment_real_time_factor",
        "neuropil_experiment_spikes",
        "neuropil_epoch_exchange_duration_seconds_bucket",
        "neuropil_checkpoint_age_seconds",
        "neuropil_recoveries_total",
        "neuropil_live_nodes",
        "neuropil_actors",
        "neuropil_hwemu_last_link_utilisation_max_ratio",
        "neuropil_hwemu_last_report_energy_joules",
    ] {
        assert!(text.contains(family), "the dashboard does not show {family}");
    }
}

#[test]
fn metric_names_are_found_in_promql() {
    let names = metric_names("histogram_quantile(0.99, sum by (le) (rate(neuropil_exchange_wait_seconds_bucket{node=~\"$node\"}[1m]))) / neuropil_live_nodes");
    assert_eq!(names, ["neuropil_exchange_wait_seconds_bucket", "neuropil_live_nodes"]);
    let exported = vec!["neuropil_exchange_wait_seconds".to_string()];
    assert!(is_exported("neuropil_exchange_wait_seconds_bucket", &exported));
    assert!(!is_exported("neuropil_exchange_wait", &exported));
}

/// The `NEUROPIL_*` names a manifest's containers get: their `env:` entries and,
/// with `envFrom` the ConfigMap `neuropil`, that map's keys (k8s/config.yaml).
fn manifest_env(manifest: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root().join(manifest)).unwrap();
    let names = |t: &str, prefix: &str| -> Vec<String> {
        t.lines()
            .filter_map(|l| l.trim().strip_prefix(prefix))
            .map(|rest| rest.split([':', '"', ' ']).next().unwrap_or("").to_string())
            .filter(|n| n.starts_with("NEUROPIL_"))
            .collect()
    };
    let mut env = names(&text, "- name: ");
    if text.contains("configMapRef:") {
        let config = std::fs::read_to_string(root().join("k8s/config.yaml")).unwrap();
        env.extend(names(&config, ""));
    }
    env
}

/// Kubernetes passes settings as environment variables, which nothing reports
/// when a name is wrong: every `NEUROPIL_*` a manifest sets must be one the
/// command it runs reads (its `--help` lists the variable), and the kustomization
/// must apply every manifest in k8s/.
#[test]
fn the_manifests_set_only_variables_their_commands_read_and_kustomize_applies_them_all() {
    for (manifest, args) in [
        ("k8s/control.yaml", vec!["control"]),
        ("k8s/node.yaml", vec!["node"]),
        ("k8s/hwemu.yaml", vec!["hwemu", "serve"]),
    ] {
        let out = Command::new(BIN).args(&args).arg("--help").output().unwrap();
        assert!(out.status.success(), "{args:?} --help");
        let help = String::from_utf8_lossy(&out.stdout);
        let env = manifest_env(manifest);
        assert!(!env.is_empty(), "{manifest}: no NEUROPIL_* variables found (the parser is wrong)");
        for name in env {
            assert!(
                help.contains(&format!("env: {name}=")),
                "{manifest} sets {name}, which `neuropil {}` does not read:\n{help}",
                args.join(" ")
            );
        }
    }
    let kustomization = std::fs::read_to_string(root().join("k8s/kustomization.yaml")).unwrap();
    let listed: Vec<&str> =
        kustomization.lines().filter_map(|l| l.trim().strip_prefix("- ")).map(|l| l.trim()).collect();
    let mut manifests: Vec<String> = std::fs::read_dir(root().join("k8s"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    manifests.sort();
    let mut sorted: Vec<String> = listed.iter().map(|s| s.to_string()).collect();
    sorted.sort();
    assert_eq!(sorted, manifests, "k8s/kustomization.yaml's resources vs the manifests in k8s/");
}

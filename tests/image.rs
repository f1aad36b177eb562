//! The images and the compose cluster as an operator brings them up: images built
//! here with no registry (deploy/image/build around the binary under test and
//! this machine's etcd and Prometheus), deploy/compose.yml started (etcd, two
//! controls, three nodes, hwemu, Prometheus, each a container on the compose
//! network), the 10-line Python example submitting the microcircuit at 10 % to it;
//! the spike hash must be the embedded run's, the run must have used the three
//! nodes, either control must serve its results, the hardware-emulation service
//! must answer with the token (and refuse without it), and Prometheus must have
//! scraped every node. Everything (containers, volumes, images) is removed when the test
//! ends, also when it fails.

mod harness;
mod pyenv;

use harness::*;
use pyenv::*;
use std::process::Command;
use std::time::{Duration, Instant};

/// docker-compose (v1, Debian's docker-compose) or `docker compose` (v2).
fn compose() -> Command {
    if Command::new("docker-compose").arg("version").output().map(|o| o.status.success()).unwrap_or(false) {
        Command::new("docker-compose")
    } else {
        let mut c = Command::new("docker");
        c.arg("compose");
        c
    }
}

/// A compose project taken down (with its volumes) and its images removed on drop.
struct Project {
    name: String,
    tag: String,
    env: Vec<(String, String)>,
}

impl Project {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = compose();
        c.args(["-p", &self.name, "-f"]).arg(root().join("deploy/compose.yml")).args(args);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    fn logs(&self) -> String {
        let out = self.cmd(&["logs", "--no-color", "--tail", "40"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self.cmd(&["down", "-v", "--remove-orphans", "-t", "5"]).output();
        for image in ["neuropil", "neuropil-etcd", "neuropil-prometheus"] {
            let _ = Command::new("docker").args(["rmi", "-f", &format!("{image}:{}", self.tag)]).output();
        }
    }
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `up` of every target of a Prometheus job, from its query API.
fn up_targets(prometheus: &str, job: &str) -> Vec<(String, String)> {
    let query = format!("/api/v1/query?query=up%7Bjob%3D%22{job}%22%7D");
    let Ok(body) = http_get(prometheus, &query) else { return Vec::new() };
    let Some(json) = body.find('{').and_then(|i| serde_json::from_str::<serde_json::Value>(&body[i..]).ok()) else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = json["data"]["result"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|s| {
                    (
                        s["metric"]["instance"].as_str().unwrap_or("").to_string(),
                        s["value"][1].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn the_compose_cluster_from_locally_built_images_runs_the_microcircuit_with_the_embedded_spikes() {
    let tmp = TempDir::new("image");
    let tag = format!("test-{}", std::process::id());
    run(
        Command::new(root().join("deploy/image/build")).args(["--binary", BIN, "--tag", &tag, "--tools"]),
        "deploy/image/build",
    );
    let token = "compose-test-token-0123456789";
    let token_file = tmp.0.join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    // (the containers run as uid 10001: the bind-mounted token must be readable by it)
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&tmp.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (c0, c1, prom, hw) = (free_port(), free_port(), free_port(), free_port());
    let project = Project {
        name: format!("neuropiltest{}", std::process::id()),
        tag: tag.clone(),
        env: vec![
            ("NEUROPIL_TAG".into(), tag.clone()),
            ("NEUROPIL_TOKEN_FILE".into(), token_file.display().to_string()),
            ("NEUROPIL_CONTROL_PORT".into(), c0.to_string()),
            ("NEUROPIL_CONTROL1_PORT".into(), c1.to_string()),
            ("NEUROPIL_PROMETHEUS_PORT".into(), prom.to_string()),
            ("NEUROPIL_HWEMU_PORT".into(), hw.to_string()),
        ],
    };
    run(&mut project.cmd(&["up", "-d"]), "compose up");

    let python = venv_python();
    let site = install_package(&python, &tmp.0);
    let (addr0, addr1) = (format!("127.0.0.1:{c0}"), format!("127.0.0.1:{c1}"));
    // The nodes register within seconds; a run submitted before all three have
    // would be placed on fewer (still the same spikes, but not what is checked).
    let deadline = Instant::now() + Duration::from_secs(60);
    let metrics_of_nodes = loop {
        let nodes = up_targets(&format!("127.0.0.1:{prom}"), "neuropil-node");
        if nodes.len() == 3 && nodes.iter().all(|(_, v)| v == "1") {
            break nodes;
        }
        assert!(Instant::now() < deadline, "Prometheus never saw three nodes up: {nodes:?}\n{}", project.logs());
        std::thread::sleep(Duration::from_millis(500));
    };
    let instances: Vec<&str> = metrics_of_nodes.iter().map(|(i, _)| i.as_str()).collect();
    assert_eq!(instances, ["node-0:9090", "node-1:9090", "node-2:9090"]);
    let live = || {
        let q = "/api/v1/query?query=max(neuropil_live_nodes)";
        http_get(&format!("127.0.0.1:{prom}"), q).unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !live().contains("\"3\"") {
        assert!(
            Instant::now() < deadline,
            "the controls never reported three live nodes: {}\n{}",
            live(),
            project.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let out = python_script(
        &python,
        &site,
        &tmp.0,
        &["python/examples/microcircuit.py", &addr0, token],
        Duration::from_secs(300),
    );
    let embedded =
        embedded_summary("examples/microcircuit.toml", &["scaling.neurons=0.1", "scaling.synapses=0.1"], &tmp.0);
    let hash = embedded["spike_hash"].as_str().unwrap();
    assert!(out.contains(&format!("spike hash {hash}")), "{out}\n{}", project.logs());

    let got = report(&python_script(
        &python,
        &site,
        &tmp.0,
        &["python/tests/check_compose.py", &addr0, &addr1, &format!("127.0.0.1:{hw}"), token],
        Duration::from_secs(120),
    ));
    assert_eq!(got["state"], "succeeded");
    assert_eq!(got["nodes"], serde_json::json!(["node-0", "node-1", "node-2"]));
    assert_eq!(got["spike_hash"], hash);
    assert_eq!(got["other_replica_hash"], hash);
}

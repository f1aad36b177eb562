//! The Python client (`python/`, `pip install ./python`) as a user runs it: the
//! package is built from the repository (its gRPC stubs generated from proto/)
//! into a scratch directory, over the pinned dependencies of
//! scripts/deps/python-client.txt (target/venv-client, made here by
//! `scripts/install-deps --python client` when missing), then
//! python/tests/check_*.py and the 10-line example python/examples/microcircuit.py
//! run against a real cluster (etcd, a control with a token, a node); the embedded
//! test installs it as a newcomer does, `pip install ./python` in a fresh
//! virtualenv (build isolation: pip fetches the build requirements and the
//! newest dependencies the package allows). What they report is checked against
//! the files the control and `neuropil run` wrote.

mod harness;
mod pyenv;

use harness::*;
use pyenv::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The rates of a summary.json, by population.
fn rates_of(summary: &serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    summary["populations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_string(), p["rate_hz"].clone()))
        .collect()
}

const SCALE: [&str; 2] = ["scaling.neurons=0.1", "scaling.synapses=0.1"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_submits_watches_and_fetches_a_cluster_run() {
    let tmp = TempDir::new("python-cluster");
    let python = venv_python();
    let site = install_package(&python, &tmp.0);
    let etcd = start_etcd();
    let token = "python-client-token-0123";
    let token_file = tmp.0.join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let data = tmp.0.join("data");
    let control = start_control(&etcd, "control-0", &data, &["--token-file", token_file.to_str().unwrap()]);
    let _node = start_node(&etcd, "node-0", 2, &[]);
    wait_live_nodes(&control, 1).await;

    let address = control.grpc.trim_start_matches("http://");
    let out = python_script(
        &python,
        &site,
        &tmp.0,
        &["python/tests/check_cluster.py", address, token],
        Duration::from_secs(300),
    );
    let got = report(&out);

    // What the client downloaded is what the control wrote, and the run is the
    // embedded run, spike for spike.
    let id = got["id"].as_str().unwrap();
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join(id).join("summary.json")).unwrap()).unwrap();
    let downloaded = Path::new(got["dir"].as_str().unwrap());
    for file in ["summary.json", "spikes.parquet"] {
        assert_eq!(
            std::fs::read(downloaded.join(file)).unwrap(),
            std::fs::read(data.join(id).join(file)).unwrap(),
            "{file} differs from the control's"
        );
    }
    assert_eq!(got["rates"].as_object().unwrap(), &rates_of(&written));
    let embedded = embedded_summary("examples/microcircuit.toml", &SCALE, &tmp.0);
    assert_eq!(got["spike_hash"], embedded["spike_hash"]);
    let _ = std::fs::remove_dir_all(downloaded);

    // `neuropil results` writes the same files (through the same RPC).
    let cli_out = tmp.0.join("cli-results");
    let out = Command::new(BIN)
        .args(["results", id, "--control", &control.grpc, "--token-file", token_file.to_str().unwrap(), "--out"])
        .arg(&cli_out)
        .output()
        .unwrap();
    assert!(out.status.success(), "neuropil results: {}", String::from_utf8_lossy(&out.stderr));
    let mut names: Vec<String> =
        std::fs::read_dir(&cli_out).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    let mut want: Vec<String> =
        std::fs::read_dir(data.join(id)).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    want.sort();
    assert_eq!(names, want);
    for n in &names {
        assert_eq!(std::fs::read(cli_out.join(n)).unwrap(), std::fs::read(data.join(id).join(n)).unwrap(), "{n}");
    }

    // A PyNN script on the cluster: the embedded run's spikes and V_m.
    let got = report(&python_script(
        &python,
        &site,
        &tmp.0,
        &["python/tests/check_pynn_cluster.py", address, token],
        Duration::from_secs(300),
    ));
    assert!(got["spikes"].as_u64().unwrap() > 100, "{got}");

    // The 10-line example, as a user runs it.
    let out = python_script(
        &python,
        &site,
        &tmp.0,
        &["python/examples/microcircuit.py", address, token],
        Duration::from_secs(300),
    );
    let hash = embedded["spike_hash"].as_str().unwrap();
    assert!(out.contains(&format!("spike hash {hash}")), "{out}");
    assert!(out.contains("L23E") && out.contains("rate_hz"), "no rates table in {out}");
}

#[test]
fn in_a_fresh_virtualenv_neuropil_run_gives_the_embedded_results_and_the_same_errors() {
    let tmp = TempDir::new("python-embedded");
    let python = fresh_virtualenv(&tmp.0);
    let site = tmp.0.join("no-site"); // the package is in the virtualenv
    let out_dir = tmp.0.join("run");
    let out = python_script(
        &python,
        &site,
        &tmp.0,
        &["python/tests/check_embedded.py", out_dir.to_str().unwrap()],
        Duration::from_secs(300),
    );
    let got = report(&out);
    let reference = embedded_summary("examples/microcircuit.toml", &SCALE, &tmp.0);
    assert_eq!(got["spike_hash"], reference["spike_hash"]);
    assert_eq!(got["rates"].as_object().unwrap(), &rates_of(&reference));

    // The example without an address runs embedded.
    let out = python_script(&python, &site, &tmp.0, &["python/examples/microcircuit.py"], Duration::from_secs(300));
    assert!(out.contains(&format!("spike hash {}", reference["spike_hash"].as_str().unwrap())), "{out}");
}

/// Each line of python/tests/pynn_scenarios.txt: (scenario, outcome).
fn listed_outcomes() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(root().join("python/tests/pynn_scenarios.txt")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut w = l.split_whitespace();
            (w.next().unwrap().to_string(), w.next().unwrap().to_string())
        })
        .collect()
}

#[test]
fn pynn_neuropil_runs_the_pynn_scenarios_it_supports_and_names_what_it_does_not() {
    let tmp = TempDir::new("pynn-scenarios");
    let python = venv_python();
    let site = install_package(&python, &tmp.0);
    // PyNN's source distribution (the wheel has no tests), as the PyPI index serves it.
    let sdist = tmp.0.join("sdist");
    let out = Command::new(&python)
        .args(["-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps", "--no-binary", ":all:"])
        .arg("-d")
        .arg(&sdist)
        .arg(pin("PyNN"))
        .output()
        .unwrap();
    assert!(out.status.success(), "pip download PyNN's sdist: {}", String::from_utf8_lossy(&out.stderr));
    let tarball = std::fs::read_dir(&sdist)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".tar.gz"));
    let tarball = tarball.expect("no .tar.gz downloaded");
    let out = python_script(
        &python,
        &site,
        &tmp.0,
        &["python/tests/pynn_scenarios.py", tarball.to_str().unwrap()],
        Duration::from_secs(400),
    );
    let got = report(&out);
    let got = got.as_object().unwrap();
    let kind = |o: &str| match o.split(':').next().unwrap() {
        "skipped by the scenario" => "skipped".to_string(),
        k => k.to_string(),
    };
    let mut differ = Vec::new();
    for (scenario, want) in listed_outcomes() {
        match got.get(&scenario).and_then(|v| v.as_str()) {
            Some(o) if kind(o) == want => {}
            Some(o) => differ.push(format!("{scenario}: listed {want}, got {o}")),
            None => differ.push(format!("{scenario}: listed {want}, not run")),
        }
    }
    let listed: Vec<String> = listed_outcomes().into_iter().map(|(s, _)| s).collect();
    for (scenario, o) in got {
        if !listed.contains(scenario) {
            differ.push(format!("{scenario}: not listed in python/tests/pynn_scenarios.txt, got {o}"));
        }
    }
    assert!(differ.is_empty(), "PyNN scenarios differ from python/tests/pynn_scenarios.txt:\n{}", differ.join("\n"));
    let passed = got.values().filter(|v| v.as_str() == Some("pass")).count();
    assert!(passed >= 15, "only {passed} scenarios pass");
}

#[test]
fn pynn_neuropil_follows_the_analytic_lif_and_poisson_statistics() {
    let tmp = TempDir::new("pynn-analytic");
    let python = venv_python();
    let site = install_package(&python, &tmp.0);
    let got = report(&python_script(&python, &site, &tmp.0, &["python/tests/check_pynn.py"], Duration::from_secs(120)));
    // (the script asserts the closed forms; its report says what it saw)
    let (isi, analytic) = (got["isi_ms"].as_f64().unwrap(), got["analytic_isi_ms"].as_f64().unwrap());
    assert!((isi - analytic).abs() <= 0.1 + 1e-9, "ISI {isi} ms, the LIF formula {analytic} ms");
}

/// Mean and sample standard deviation.
fn mean_sd(x: &[f64]) -> (f64, f64) {
    let m = x.iter().sum::<f64>() / x.len() as f64;
    let v = x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (x.len() as f64 - 1.0).max(1.0);
    (m, v.sqrt())
}

#[test]
fn a_pynn_brunel_script_gives_pynn_nests_rates_within_the_seed_spread() {
    // tests/data/pynn-brunel-nest.json: bench/pynn/compare.py's NEST side (pyNN.nest,
    // NEST 3.10 from PyPI) of bench/pynn/brunel.py, seeds 1-3, two regimes.
    let tmp = TempDir::new("pynn-brunel");
    let python = venv_python();
    let site = install_package(&python, &tmp.0);
    let nest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("tests/data/pynn-brunel-nest.json")).unwrap())
            .unwrap();
    let (order, j) = (nest["order"].as_u64().unwrap().to_string(), nest["J"].as_f64().unwrap().to_string());
    for (regime, runs) in nest["regimes"].as_object().unwrap() {
        let (g, eta) = regime.split_once(':').unwrap();
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        for run in runs.as_array().unwrap() {
            let seed = run["seed"].as_u64().unwrap().to_string();
            let args = [
                "bench/pynn/brunel.py",
                "--sim",
                "neuropil",
                "--seed",
                &seed,
                "--order",
                &order,
                "--g",
                g,
                "--eta",
                eta,
                "--J",
                &j,
            ];
            let got = report(&python_script(&python, &site, &tmp.0, &args, Duration::from_secs(120)));
            ours.push(got["rate_E"].as_f64().unwrap());
            theirs.push(run["rate_E"].as_f64().unwrap());
        }
        // Welch's difference of means against its standard error: different seeds
        // are different networks, so the two simulators agree when their means
        // differ by no more than three standard errors of the difference.
        let ((mo, so), (mt, st)) = (mean_sd(&ours), mean_sd(&theirs));
        let se = (so * so / ours.len() as f64 + st * st / theirs.len() as f64).sqrt();
        assert!(
            (mo - mt).abs() <= 3.0 * se,
            "g:eta {regime}: pyNN.neuropil {mo:.2} Hz ({ours:?}), pyNN.nest {mt:.2} Hz ({theirs:?}), 3 SE = {:.2}",
            3.0 * se
        );
    }
}

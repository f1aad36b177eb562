//! End-to-end tests of the `neuropil` binary: real processes, real files.

use parquet::record::RowAccessor as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_neuropil"))
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A fresh scratch directory for one test, removed when the test ends (also when
/// it fails).
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for Scratch {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("neuropil-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

/// A child process killed and reaped when dropped: a failing test leaves none behind.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lines of a child's stream, read on a thread, so that a test waits for them
/// with a deadline instead of hanging on a silent child.
fn lines_of(stream: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Run `cmd` to its end, killed (and the test failed) if it takes longer than `secs`.
fn output_within(cmd: &mut Command, secs: u64) -> Output {
    use std::io::Read;
    let mut child =
        Reaped(cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap());
    let read = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = read(child.0.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let err = read(child.0.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "{cmd:?} still running after {secs} s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Output { status, stdout: out.join().unwrap(), stderr: err.join().unwrap() }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A Parquet file's columns (`name:PHYSICAL_TYPE`) and rows, read with the
/// parquet crate's reader.
fn read_parquet(path: &Path) -> (Vec<String>, Vec<parquet::record::Row>) {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let columns = schema.columns().iter().map(|c| format!("{}:{}", c.name(), c.physical_type())).collect();
    let rows = reader.get_row_iter(None).unwrap().map(|r| r.unwrap()).collect();
    (columns, rows)
}

const VALID: &str = r#"
name = "tiny"
[run]
duration_ms = 50.0
seed = 3
[[populations]]
name = "E"
size = 40
model = "iaf_psc_exp"
params = { I_e = 400.0 }
[[populations]]
name = "I"
size = 10
model = "iaf_psc_alpha"
[[stimuli]]
kind = "poisson_generator"
target = "E"
rate_hz = 8000.0
weight = 20.0
[[projections]]
source = "E"
target = "I"
conn = { rule = "pairwise_bernoulli", p = 0.2 }
syn = { weight = 50.0, delay_ms = 1.0 }
[[projections]]
source = "I"
target = "E"
conn = { rule = "fixed_indegree", indegree = 5 }
syn = { weight = { dist = "normal", mean = -40.0, std = 4.0, max = 0.0 }, delay_ms = { dist = "uniform", low = 0.5, high = 2.0 } }
[[recorders]]
kind = "spike_recorder"
"#;

#[test]
fn run_writes_summary_columns_and_plot() {
    let dir = scratch("run");
    let out = dir.join("out");
    let o = bin()
        .args(["run", "--quiet", "--plot", "--out"])
        .arg(&out)
        .arg(root().join("examples/single_neuron.toml"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("spike hash"), "{stdout}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["populations"][0]["spikes"], 63);
    assert_eq!(summary["populations"][0]["rate_hz"], 63.0);
    for key in ["neurons", "synapses", "timings", "peak_rss_bytes", "bytes_per_synapse", "seed", "spike_hash"] {
        assert!(summary.get(key).is_some(), "summary.json lacks {key}");
    }
    // A second of one neuron takes some wall time, and not an hour.
    let rtf = summary["timings"]["rtf"].as_f64().unwrap();
    assert!(rtf > 0.0 && rtf < 3600.0, "rtf {rtf}");
    for f in ["spikes.parquet", "state.parquet", "raster.png"] {
        let bytes = std::fs::read(out.join(f)).unwrap();
        assert!(bytes.len() > 100, "{f} is {} bytes", bytes.len());
    }
    assert_eq!(&std::fs::read(out.join("spikes.parquet")).unwrap()[..4], b"PAR1");
    // Read back with a Parquet reader: the columns and types documented, one row
    // per spike, in time order.
    let spikes = read_parquet(&out.join("spikes.parquet"));
    assert_eq!(spikes.0, ["neuron_id:INT32", "population:BYTE_ARRAY", "time_ms:DOUBLE"]);
    assert_eq!(spikes.1.len(), 63, "one row per spike");
    let times: Vec<f64> = spikes.1.iter().map(|r| r.get_double(2).unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]) && times[0] > 0.0, "{times:?}");
    assert!(spikes.1.iter().all(|r| r.get_int(0).is_ok_and(|g| g == 0)), "one neuron, gid 0");
    let state = read_parquet(&out.join("state.parquet"));
    assert_eq!(
        state.0,
        ["time_ms:DOUBLE", "neuron_id:INT32", "population:BYTE_ARRAY", "variable:BYTE_ARRAY", "value:DOUBLE"]
    );
    assert!(!state.1.is_empty());
    assert!(state.1.iter().all(|r| r.get_string(3).is_ok_and(|v| v == "V_m")), "V_m only");
    assert_eq!(&std::fs::read(out.join("raster.png")).unwrap()[..8], b"\x89PNG\r\n\x1a\n");
    // The raster shows each spike where it belongs: in the first population's
    // colour (tab10 blue) in the raster's panel (left of the histograms, above the
    // activity), one pixel each, all in the one neuron's row, at x linear in time
    // (the spikes are 10+ ms apart in 1 s over ~900 px: distinct columns).
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(out.join("raster.png")).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut px = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut px).unwrap();
    assert_eq!((info.width, info.height, info.color_type), (1400, 900, png::ColorType::Rgb));
    let blue = |&(x, y): &(usize, usize)| px[(y * 1400 + x) * 3..][..3] == [31, 119, 180];
    let drawn: Vec<(usize, usize)> = (40..580).flat_map(|y| (100..1020).map(move |x| (x, y))).filter(blue).collect();
    let t0 = summary["start_ms"].as_f64().unwrap() + summary["transient_ms"].as_f64().unwrap();
    let t1 = t0.max(summary["start_ms"].as_f64().unwrap() + summary["duration_ms"].as_f64().unwrap()).min(t0 + 2000.0);
    let shown: Vec<f64> = times.iter().copied().filter(|t| (t0..=t1).contains(t)).collect();
    assert!(shown.len() > 10, "{shown:?}");
    assert_eq!(drawn.len(), shown.len(), "one pixel per spike: {drawn:?}");
    assert!(drawn.iter().all(|p| p.1 == drawn[0].1), "one neuron, one row: {drawn:?}");
    let mut xs: Vec<f64> = drawn.iter().map(|p| p.0 as f64).collect();
    xs.sort_by(f64::total_cmp);
    let (first, last) = ((xs[0], shown[0]), (xs[xs.len() - 1], shown[shown.len() - 1]));
    let slope = (last.0 - first.0) / (last.1 - first.1);
    for (x, t) in xs.iter().zip(&shown) {
        assert!((first.0 + slope * (t - first.1) - x).abs() <= 1.5, "spike at {t} ms drawn at x = {x}: {xs:?}");
    }
    // `plot` re-renders from the files alone.
    let png = dir.join("again.png");
    let o = bin().arg("plot").arg(&out).arg("--out").arg(&png).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::metadata(&png).unwrap().len() > 1000);
    // No staging directory is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn same_seed_same_hash_across_shards_and_threads() {
    let dir = scratch("hash");
    let file = dir.join("tiny.toml");
    std::fs::write(&file, VALID).unwrap();
    let mut hashes = Vec::new();
    for (threads, shards) in [("1", "1"), ("2", "3"), ("2", "7")] {
        let out = dir.join(format!("o{threads}{shards}"));
        let o = bin()
            .args(["run", "-q", "--threads", threads, "--shards", shards, "--out"])
            .arg(&out)
            .arg(&file)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
        assert!(s["populations"][0]["spikes"].as_u64().unwrap() > 0);
        hashes.push(s["spike_hash"].as_str().unwrap().to_string());
    }
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{hashes:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Run `neuropil run` on `text` (with overrides) and expect exit code 2, a message
/// naming `path` and containing `hint`, and no output directory.
fn expect_refused(name: &str, text: &str, set: &[&str], path: &str, hint: &str) {
    let dir = scratch(name);
    let file = dir.join("bad.toml");
    std::fs::write(&file, text).unwrap();
    let out = dir.join("out");
    let mut cmd = bin();
    cmd.args(["run", "-q", "--out"]).arg(&out).arg(&file);
    for s in set {
        cmd.args(["--set", s]);
    }
    let o = cmd.output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{name}: exit code; stderr: {err}");
    assert!(err.contains(path), "{name}: stderr should name {path}: {err}");
    assert!(err.contains(hint), "{name}: stderr should say {hint:?}: {err}");
    assert!(!err.contains("panicked"), "{name}: {err}");
    assert!(!out.exists(), "{name}: output directory must not be created");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "{name}: nothing but the input may exist");
    // `validate` refuses the same file the same way.
    let mut cmd = bin();
    cmd.arg("validate").arg(&file);
    for s in set {
        cmd.args(["--set", s]);
    }
    let v = cmd.output().unwrap();
    assert_eq!(v.status.code(), Some(2), "{name}: validate exit code");
    assert!(stderr(&v).contains(path), "{name}: validate: {}", stderr(&v));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unknown_model_is_refused() {
    expect_refused(
        "model",
        &VALID.replace("\"iaf_psc_alpha\"", "\"lif\""),
        &[],
        "populations[1].model",
        "available: iaf_psc_exp",
    );
}

#[test]
fn unknown_parameter_is_refused() {
    expect_refused(
        "param",
        &VALID.replace("I_e = 400.0", "I_ext = 400.0"),
        &[],
        "populations[0].params.I_ext",
        "its parameters are C_m",
    );
}

#[test]
fn missing_population_is_refused() {
    expect_refused(
        "missing",
        &VALID.replace("target = \"I\"", "target = \"X\""),
        &[],
        "projections[0].target",
        "no population named \"X\"",
    );
}

#[test]
fn negative_delay_is_refused() {
    expect_refused(
        "negdelay",
        &VALID.replace("delay_ms = 1.0", "delay_ms = -1.0"),
        &[],
        "projections[0].syn.delay_ms",
        "delays must be >= dt",
    );
}

#[test]
fn sub_dt_delay_is_refused() {
    expect_refused(
        "subdt",
        &VALID.replace("delay_ms = 1.0", "delay_ms = 0.05"),
        &[],
        "projections[0].syn.delay_ms",
        "below dt (0.1 ms)",
    );
    expect_refused(
        "subdt-dist",
        &VALID.replace("low = 0.5", "low = 0.01"),
        &[],
        "projections[1].syn.delay_ms",
        "min = 0.05",
    );
}

#[test]
fn nan_and_infinity_are_refused() {
    expect_refused(
        "nan",
        &VALID.replace("weight = 50.0", "weight = nan"),
        &[],
        "projections[0].syn.weight.value",
        "finite",
    );
    expect_refused("inf", &VALID.replace("I_e = 400.0", "I_e = inf"), &[], "populations[0].params.I_e", "finite");
    expect_refused("inf-set", VALID, &["run.duration_ms=inf"], "run.duration_ms", "positive");
}

#[test]
fn probability_outside_unit_interval_is_refused() {
    expect_refused("p", &VALID.replace("p = 0.2", "p = 1.5"), &[], "projections[0].conn.p", "[0, 1]");
    expect_refused("p-neg", &VALID.replace("p = 0.2", "p = -0.1"), &[], "projections[0].conn.p", "[0, 1]");
}

#[test]
fn networks_that_do_not_fit_in_memory_are_refused_before_allocating() {
    let huge = VALID
        .replace("rule = \"pairwise_bernoulli\", p = 0.2", "rule = \"all_to_all\"")
        .replace("size = 40", "size = 2000000000");
    expect_refused("huge", &huge, &[], "populations", "GiB are available");
    expect_refused(
        "huge-set",
        VALID,
        &["populations.I.size=1000000", "populations.E.size=1000000"],
        "populations",
        "lower scaling.neurons",
    );
}

#[test]
fn malformed_files_and_fields_are_refused() {
    expect_refused("syntax", "[run\nduration_ms = 1", &[], "(file)", "invalid TOML");
    expect_refused("field", &VALID.replace("seed = 3", "sead = 3"), &[], "run", "unknown field `sead`");
    expect_refused("type", &VALID.replace("size = 40", "size = \"forty\""), &[], "populations[0].size", "invalid type");
    expect_refused(
        "rule",
        &VALID.replace("fixed_indegree\", indegree", "fixed_degree\", indegree"),
        &[],
        "projections[1].conn.rule",
        "use one_to_one",
    );
    expect_refused("setpath", VALID, &["populations.Z.size=3"], "--set", "no element named \"Z\"");
}

#[test]
fn existing_foreign_directory_is_not_replaced() {
    let dir = scratch("foreign");
    let file = dir.join("tiny.toml");
    std::fs::write(&file, VALID).unwrap();
    let out = dir.join("mine");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("thesis.tex"), "precious").unwrap();
    let o = bin().args(["run", "-q", "--out"]).arg(&out).arg(&file).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("not a neuropil output directory"));
    assert_eq!(std::fs::read_to_string(out.join("thesis.tex")).unwrap(), "precious");
    // A previous neuropil output is replaced as a whole.
    let prev = dir.join("prev");
    for _ in 0..2 {
        let o = bin().args(["run", "-q", "--out"]).arg(&prev).arg(&file).output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert!(Path::new(&prev.join("summary.json")).exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_plasticity_is_refused() {
    let stdp = VALID.replace(
        "syn = { weight = 50.0, delay_ms = 1.0 }",
        "syn = { model = \"stdp_synapse\", weight = 50.0, delay_ms = 1.0, params = { tau = 20.0 } }",
    );
    expect_refused("stdp-param", &stdp, &[], "projections[0].syn.params.tau", "its parameters are tau_plus");
    let neg = VALID.replace(
        "syn = { weight = 50.0, delay_ms = 1.0 }",
        "syn = { model = \"stdp_synapse\", weight = -5.0, delay_ms = 1.0 }",
    );
    expect_refused("stdp-neg", &neg, &[], "projections[0].syn.weight", "[0, Wmax = 100]");
    let model = VALID
        .replace("syn = { weight = 50.0, delay_ms = 1.0 }", "syn = { model = \"hebb\", weight = 5.0, delay_ms = 1.0 }");
    expect_refused(
        "syn-model",
        &model,
        &[],
        "projections[0].syn.model",
        "available: static_synapse, sic_connection, stdp_synapse",
    );
    let stp = VALID.replace(
        "syn = { weight = 50.0, delay_ms = 1.0 }",
        "syn = { model = \"tsodyks2_synapse\", weight = 5.0, delay_ms = 1.0, params = { U = 1.5 } }",
    );
    expect_refused("stp-U", &stp, &[], "projections[0].syn.params.U", "in (0, 1]");
}

#[test]
fn astrocyte_inputs_are_checked() {
    let astro = VALID.replace("model = \"iaf_psc_alpha\"", "model = \"astrocyte_lr_1994\"");
    // I is now an astrocyte: the I -> E projection comes from it, weights into it from E are fine.
    expect_refused("astro-source", &astro, &[], "projections[1].syn.model", "astrocytes do not spike");
    let neg = astro
        .replace("syn = { weight = 50.0, delay_ms = 1.0 }", "syn = { weight = -5.0, delay_ms = 1.0 }")
        .replace("source = \"I\"", "source = \"E\"");
    expect_refused("astro-neg", &neg, &[], "projections[0].syn.weight", "must be >= 0");
}

#[test]
fn bad_tripartite_specs_are_refused() {
    let base = VALID
        .replace("model = \"iaf_psc_exp\"", "model = \"aeif_cond_alpha_astro\"")
        .replace("params = { I_e = 400.0 }", "")
        .replace("model = \"iaf_psc_alpha\"", "model = \"astrocyte_lr_1994\"");
    // E -> E tripartite with the astrocytes I; the I -> E projection becomes its SIC.
    let tri = base
        .replace("target = \"I\"\nconn = { rule = \"pairwise_bernoulli\", p = 0.2 }", "target = \"E\"\nconn = { rule = \"pairwise_bernoulli\", p = 0.2 }\nthird = { population = \"I\", p = 0.5, pool_type = \"block\", pool_size = 3 }")
        .replace("syn = { weight = { dist = \"normal\", mean = -40.0, std = 4.0, max = 0.0 }, delay_ms = { dist = \"uniform\", low = 0.5, high = 2.0 } }", "syn = { model = \"sic_connection\", weight = 1.0, delay_ms = 1.0 }");
    expect_refused("pool", &tri, &[], "projections[0].third.pool_size", "40 × 3 != 10");
    expect_refused(
        "pool-type",
        &tri.replace("\"block\"", "\"ring\""),
        &[],
        "projections[0].third.pool_type",
        "use random or block",
    );
    let neg = tri.replace("pool_type = \"block\", pool_size = 3", "to_astrocyte_weight = -1.0");
    expect_refused("astro-weight", &neg, &[], "projections[0].third.to_astrocyte_weight", "must be >= 0");
    let not_astro = tri.replace("population = \"I\"", "population = \"E\"");
    expect_refused("third-pop", &not_astro, &[], "projections[0].third.population", "must be an astrocyte_lr_1994");
    // A SIC connection from a neuron population.
    let sic_from_neuron = tri.replace("source = \"I\"", "source = \"E\"");
    expect_refused("sic-source", &sic_from_neuron, &[], "projections[1].source", "starts at an astrocyte_lr_1994");
}

#[test]
fn shard_counts_that_do_not_fit_are_refused() {
    // Every shard keeps an index over all neurons: 65536 shards of a 2-million-neuron
    // network would need ~2 TB; the estimate must catch it before allocating.
    let dir = scratch("shards");
    let file = dir.join("big.toml");
    std::fs::write(&file, VALID.replace("size = 40", "size = 2000000")).unwrap();
    let o = bin().args(["run", "-q", "--shards", "65536", "--out"]).arg(dir.join("out")).arg(&file).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("GiB are available"), "{}", stderr(&o));
    let o = bin().args(["run", "-q", "--threads", "5000"]).arg(&file).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--threads: 5000 is too many"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dopamine_synapses_need_a_modulator() {
    let da = VALID.replace(
        "syn = { weight = 50.0, delay_ms = 1.0 }",
        "syn = { model = \"stdp_dopamine_synapse\", weight = 50.0, delay_ms = 1.0 }",
    );
    expect_refused("no-modulator", &da, &[], "projections[0].syn.modulator", "dopamine-releasing population");
    let wrong =
        da.replace("model = \"stdp_dopamine_synapse\",", "model = \"stdp_dopamine_synapse\", modulator = \"VTA\",");
    expect_refused("bad-modulator", &wrong, &[], "projections[0].syn.modulator", "no population named \"VTA\"");
    let stray = VALID.replace(
        "syn = { weight = 50.0, delay_ms = 1.0 }",
        "syn = { weight = 50.0, delay_ms = 1.0, modulator = \"E\" }",
    );
    expect_refused("stray-modulator", &stray, &[], "projections[0].syn.modulator", "only stdp_dopamine_synapse");
}

#[test]
fn checkpoint_and_resume_continue_the_same_run() {
    let dir = scratch("resume");
    let stdp = root().join("examples/stdp_pair.toml");
    let run = |args: &[&str], out: &Path| {
        let o = bin()
            .args(["run", "-q", "--threads", "2", "--shards", "2"])
            .args(args)
            .arg("--out")
            .arg(out)
            .arg(&stdp)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    };
    let (whole, first, second) = (dir.join("whole"), dir.join("first"), dir.join("second"));
    run(&[], &whole);
    run(&["--set", "run.duration_ms=600", "--checkpoint"], &first);
    assert!(first.join("checkpoint.bin").exists());
    let cp = first.join("checkpoint.bin");
    run(&["--set", "run.duration_ms=600", "--resume", cp.to_str().unwrap()], &second);
    let spikes = |d: &Path| -> u64 {
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("summary.json")).unwrap()).unwrap();
        s["populations"].as_array().unwrap().iter().map(|p| p["spikes"].as_u64().unwrap()).sum()
    };
    assert_eq!(spikes(&first) + spikes(&second), spikes(&whole));
    let hash = |d: &Path| -> String {
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("summary.json")).unwrap()).unwrap();
        s["spike_hash"].as_str().unwrap().to_string()
    };
    // The digest continues across the checkpoint: it covers the whole history.
    assert_eq!(hash(&second), hash(&whole));
    // Periodic checkpoints (every 300 ms) leave the run itself unchanged.
    let periodic = dir.join("periodic");
    run(&["--checkpoint-every-ms", "300"], &periodic);
    assert!(dir.join("periodic.checkpoint.bin").exists());
    assert_eq!(hash(&periodic), hash(&whole));
    assert_eq!(spikes(&periodic), spikes(&whole));
    assert_eq!(
        std::fs::read(periodic.join("weights.parquet")).unwrap(),
        std::fs::read(whole.join("weights.parquet")).unwrap()
    );
    // The final STDP weights are those of the uninterrupted run, to the bit.
    assert_eq!(
        std::fs::read(second.join("weights.parquet")).unwrap(),
        std::fs::read(whole.join("weights.parquet")).unwrap()
    );
    // A checkpoint does not fit another experiment or shard count.
    let o = bin().args(["run", "-q", "--set", "run.seed=2", "--resume"]).arg(&cp).arg(&stdp).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("different network"), "{}", stderr(&o));
    let o = bin().args(["run", "-q", "--shards", "3", "--resume"]).arg(&cp).arg(&stdp).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("resume with --shards 2"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Ctrl-C stops a run at an epoch boundary, keeps what was simulated with a
/// checkpoint, and the resumed run has the spikes of a run that never stopped.
#[test]
fn ctrl_c_keeps_the_run_and_resume_finishes_it() {
    let dir = scratch("sigint");
    let brunel = root().join("examples/brunel.toml");
    let small = ["--set", "populations.E.size=2000", "--set", "populations.I.size=500", "--set", "run.transient_ms=0"];
    let cut = dir.join("cut");
    let mut child = Reaped(
        bin()
            .args(["run", "--threads", "2", "--shards", "2", "--set", "run.duration_ms=100000"])
            .args(small)
            .arg("--out")
            .arg(&cut)
            .arg(&brunel)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Wait for the first progress line (10 %), then interrupt; each wait has a
    // deadline (a silent or unstoppable child fails the test, and is killed).
    let lines = lines_of(child.0.stderr.take().unwrap());
    let wait = std::time::Duration::from_secs(300);
    let first = lines.recv_timeout(wait).expect("a progress line within 300 s");
    assert!(first.contains('%'), "{first}");
    let kill = Command::new("kill").args(["-INT", &child.0.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let mut rest = Vec::new();
    loop {
        match lines.recv_timeout(wait) {
            Ok(l) => rest.push(l),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(e) => panic!("the interrupted run neither wrote nor ended within 300 s ({e}): {rest:?}"),
        }
    }
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("--resume")), "{rest:?}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cut.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["interrupted"], true);
    let done = summary["duration_ms"].as_f64().unwrap();
    assert!(done > 0.0 && done < 100_000.0, "{done}");
    // Continue for 500 ms and compare with one run of the same total length.
    let resumed = dir.join("resumed");
    let o = bin()
        .args(["run", "-q", "--threads", "2", "--shards", "2", "--set", "run.duration_ms=500"])
        .args(small)
        .arg("--resume")
        .arg(cut.join("checkpoint.bin"))
        .arg("--out")
        .arg(&resumed)
        .arg(&brunel)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let whole = dir.join("whole");
    let o = bin()
        .args(["run", "-q", "--threads", "2", "--shards", "2", "--set", &format!("run.duration_ms={}", done + 500.0)])
        .args(small)
        .arg("--out")
        .arg(&whole)
        .arg(&brunel)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let hash = |d: &Path| -> String {
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("summary.json")).unwrap()).unwrap();
        s["spike_hash"].as_str().unwrap().to_string()
    };
    assert_eq!(hash(&resumed), hash(&whole));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hwemu_report_maps_an_experiment_onto_presets_and_writes_the_report() {
    let out = scratch("hwemu-report");
    let file = out.join("tiny.toml");
    std::fs::write(&file, VALID).unwrap();
    let o = bin()
        .args(["hwemu", "report"])
        .arg(&file)
        .args(["--set", "populations.E.size=800", "--set", "populations.I.size=200"])
        .args(["--preset", "loihi,spinnaker1,dynapse", "--mapping", "round_robin,locality_aware"])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let reports: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let reports = reports.as_array().unwrap();
    // 1000 neurons fit every fabric's cores: six reports.
    assert_eq!(reports.len(), 6, "{stdout}");
    for r in reports {
        let expected = r["expected_receptions"].as_u64().unwrap();
        let received = r["receptions"].as_u64().unwrap();
        assert!(expected > 0 && received <= expected);
        let loss = r["loss"].as_f64().unwrap();
        assert!((loss - (1.0 - received as f64 / expected as f64)).abs() < 1e-12);
        assert!(r["latency_ns"]["min"].as_f64().unwrap() > 0.0);
        assert!(r["latency_ns"]["max"].as_f64().unwrap() >= r["latency_ns"]["p99"].as_f64().unwrap());
        let e = &r["energy"];
        let sum: f64 = ["synaptic_j", "hops_j", "updates_j", "static_j"].iter().map(|k| e[k].as_f64().unwrap()).sum();
        assert!((sum - e["total_j"].as_f64().unwrap()).abs() <= 1e-12 * sum.max(1.0));
        let png = out.join(format!("links-{}-{}.png", r["preset"].as_str().unwrap(), r["mapping"].as_str().unwrap()));
        assert!(std::fs::metadata(&png).unwrap().len() > 1000, "{}", png.display());
    }
    // DYNAP-SE: 64 CAM words per neuron, the I neurons have ~160 inputs: reported, not hidden.
    let dyn_rr = reports.iter().find(|r| r["preset"] == "dynapse").unwrap();
    assert!(dyn_rr["violations"].to_string().contains("fanin_per_neuron"), "{dyn_rr}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn hwemu_errors_name_the_preset_mapping_or_limit() {
    let o = bin().args(["hwemu", "presets", "loihi3"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown preset \"loihi3\"; built in: spinnaker1"), "{}", stderr(&o));
    let o = bin()
        .args(["hwemu", "report"])
        .arg(root().join("examples/brunel.toml"))
        .args(["--mapping", "diagonal"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--mapping diagonal: unknown"), "{}", stderr(&o));
    let bad_dir = scratch("hwemu-bad-preset");
    let bad = bad_dir.join("bad.toml");
    std::fs::write(&bad, "name = \"x\"\n").unwrap();
    let o = bin().args(["hwemu", "presets"]).arg(&bad).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("missing field"), "{}", stderr(&o));
    // A mapping that breaks a limit is refused with the limit when asked to enforce.
    let dir = scratch("hwemu-enforce");
    let file = dir.join("tiny.toml");
    std::fs::write(&file, VALID).unwrap();
    let o = bin()
        .args(["hwemu", "report"])
        .arg(&file)
        .args(["--set", "populations.E.size=800", "--set", "populations.I.size=200"])
        .args(["--preset", "truenorth", "--mapping", "round_robin", "--enforce-limits", "--out"])
        .arg(dir.join("out"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("refused: mapping round_robin onto truenorth:"), "{stdout}");
    assert!(stdout.contains("but params.fanin_per_core allows 256"), "{stdout}");
    let o = bin().args(["hwemu", "sweep", "--k", "0"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--k 0"), "{}", stderr(&o));
}

/// `hwemu sweep` as a chip architect runs it: a preset file with no neuron or
/// energy values (BookSim's router), two traffic patterns in one chart, its own
/// windows, seed and packet size; the files it writes, by default under out/ of
/// the working directory (not into the checkout's docs); and the errors that
/// name the option.
#[test]
fn hwemu_sweep_takes_a_sweep_preset_patterns_windows_and_writes_its_curves() {
    let dir = scratch("hwemu-sweep");
    let preset = root().join("bench/hwemu/booksim2/meshconfig.toml");
    let o = bin()
        .current_dir(&dir)
        .args(["hwemu", "sweep", "--preset"])
        .arg(&preset)
        .args(["--k", "4", "--traffic", "uniform,bit_complement", "--loads", "0.1,0.5,1.5"])
        .args(["--warmup", "500cycles", "--measure", "2000cycles", "--seed", "3", "--packet-flits", "2"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}{}", stderr(&o));
    // 4x4 mesh, uniform: 2 packets of 2 flits... the ideal is 4/k = 1 flit per
    // cycle (0.5 packets); zero-load 4 H + 6 + 1 with 2.5 mean hops = 17 cycles.
    assert!(
        stdout.contains("traffic uniform: ideal throughput 0.50000 packets/ns per sender = 1.0000 flits/cycle"),
        "{stdout}"
    );
    assert!(stdout.contains("zero-load latency 17.000 ns = 17.00 cycles"), "{stdout}");
    assert!(stdout.contains("traffic bit_complement"), "{stdout}");
    let stem = dir.join("out/hwemu/sweep-booksim2-meshconfig-wormhole-mesh4-patterns");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(stem.with_extension("json")).unwrap()).unwrap();
    assert_eq!((json["seed"].as_u64(), json["window_ns"].as_f64()), (Some(3), Some(2000.0)));
    let runs = json["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    let points = runs[0]["points"].as_array().unwrap();
    let lat = |i: usize| points[i]["point"]["latency_ns"].as_f64().unwrap();
    // Light load sits near zero-load; past the ideal the latency has grown many-fold.
    assert!(lat(0) >= 17.0 && lat(0) < 19.0, "{}", lat(0));
    assert!(lat(2) > 5.0 * lat(0), "{} vs {}", lat(2), lat(0));
    let csv = std::fs::read_to_string(stem.with_extension("csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 2 * 3, "{csv}");
    for png in [
        stem.with_extension("png"),
        dir.join("out/hwemu/sweep-booksim2-meshconfig-wormhole-mesh4-patterns_throughput.png"),
    ] {
        assert!(std::fs::metadata(&png).map(|m| m.len() > 1000).unwrap_or(false), "{}", png.display());
    }
    // Errors name the option and what would be right.
    for (args, says) in [
        (vec!["--traffic", "tornado"], "--traffic tornado: unknown"),
        (vec!["--warmup", "10parsecs"], "unknown unit \"parsecs\""),
        (vec!["--topology", "torus", "--param", "vcs=1"], "params.vcs.value: 1 on a torus"),
        (vec!["--router", "fast"], "params.hop_latency_ns: missing: router = \"fast\" needs it"),
        (vec!["--loads", "0"], "--loads: 0 is not a fraction"),
        (vec!["--param", "vcs=2.5"], "params.vcs.value: 2.5 is not a whole number"),
        (vec!["--traffic", "experiment"], "--traffic experiment needs --experiment FILE"),
    ] {
        let o = bin()
            .current_dir(&dir)
            .args(["hwemu", "sweep", "--k", "4", "--preset"])
            .arg(&preset)
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
    }
    // The preset serves sweeps only: mapping a network onto it names what is missing.
    let file = dir.join("tiny.toml");
    std::fs::write(&file, VALID).unwrap();
    let o = bin().current_dir(&dir).args(["hwemu", "cosim"]).arg(&file).arg("--preset").arg(&preset).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("topology.cores_per_router: missing: mapping a network onto the chip needs it"), "{e}");
    assert_eq!(e.matches("missing").count(), 1, "said once: {e}");
    // And `presets` shows a wormhole preset's hop costs in cycles.
    let o = bin().args(["hwemu", "presets", "loihi"]).output().unwrap();
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(shown.contains("router    Wormhole"), "{shown}");
    assert!(shown.contains("5 + 9 = 14 cycles east-west (4.07 ns), 5 + 17 = 22 north-south (6.40 ns)"), "{shown}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An asynchronous preset with a given hop latency, bandwidth and buffer.
fn async_preset(hop_ns: f64, gbps: f64, buffer: u32) -> String {
    let base = std::fs::read_to_string(root().join("crates/hwemu/presets/dynapse.toml")).unwrap();
    base.replace("width = 2\n", "width = 4\n")
        .replace("height = 2\n", "height = 4\n")
        .replace("hop_latency_ns = { value = 30.0", &format!("hop_latency_ns = {{ value = {hop_ns:?}"))
        .replace("link_bandwidth_gbps = { value = 0.5", &format!("link_bandwidth_gbps = {{ value = {gbps:?}"))
        .replace("buffer_packets = { value = 4.0", &format!("buffer_packets = {{ value = {:?}", buffer as f64))
        .replace("fanin_per_neuron = { value = 64.0", "fanin_per_neuron = { value = 100000.0")
}

fn cosim(dir: &Path, preset: &Path, shards: &str, mapping: &str) -> serde_json::Value {
    let file = dir.join("tiny.toml");
    std::fs::write(&file, VALID).unwrap();
    let out = dir.join(format!("out-{shards}-{mapping}"));
    let o = bin()
        .args(["hwemu", "cosim"])
        .arg(&file)
        .args(["--set", "populations.E.size=800", "--set", "populations.I.size=200", "--set", "run.duration_ms=200"])
        .arg("--preset")
        .arg(preset)
        .args(["--mapping", mapping, "--neurons-per-core", "64", "--shards", shards, "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_str(&std::fs::read_to_string(out.join("cosim.json")).unwrap()).unwrap()
}

#[test]
fn cosim_feeds_fabric_delays_back_deterministically() {
    let dir = scratch("cosim");
    // A fabric too fast to matter: every spike takes effect when it would in
    // software, so the spikes are the software run's.
    let fast = dir.join("fast.toml");
    std::fs::write(&fast, async_preset(1.0, 1000.0, 1000)).unwrap();
    let r = cosim(&dir, &fast, "2", "round_robin");
    assert_eq!(r["fabric"]["delayed"], 0, "{r}");
    assert_eq!(r["fabric"]["dropped"], 0, "{r}");
    assert!(r["fabric"]["receptions"].as_u64().unwrap() > 1000);
    assert_eq!(r["hardware_spike_hash"], r["software_spike_hash"]);
    // SpiNNaker's 1 ms time step delays spikes to the next step boundary: the
    // dynamics change, identically on 1 and 3 shards.
    let spinn = root().join("crates/hwemu/presets/spinnaker1.toml");
    let one = cosim(&dir, &spinn, "1", "population_contiguous");
    let three = cosim(&dir, &spinn, "3", "population_contiguous");
    assert!(one["fabric"]["delayed"].as_u64().unwrap() > 0);
    assert!(one["fabric"]["max_extra_steps"].as_u64().unwrap() <= 10, "{one}");
    assert_ne!(one["hardware_spike_hash"], one["software_spike_hash"]);
    assert_eq!(one["hardware_spike_hash"], three["hardware_spike_hash"], "co-simulation depends on the shard count");
    assert_eq!(one["fabric"], three["fabric"]);
    // A congested asynchronous fabric drops spikes, and the run shows it.
    let slow = dir.join("slow.toml");
    std::fs::write(&slow, async_preset(500.0, 0.001, 1)).unwrap();
    let r = cosim(&dir, &slow, "2", "round_robin");
    assert!(r["fabric"]["dropped"].as_u64().unwrap() > 0, "{r}");
    assert_ne!(r["hardware_spike_hash"], r["software_spike_hash"]);
    // A congested wormhole fabric (Loihi's routers, asynchronous, 20 µs flits)
    // drops nothing: spikes wait behind full buffers for as long as backpressure
    // holds them, and arrive steps late, identically on 1 and 3 shards.
    let loihi = std::fs::read_to_string(root().join("crates/hwemu/presets/loihi.toml")).unwrap();
    let slow_w = dir.join("slow-wormhole.toml");
    std::fs::write(
        &slow_w,
        loihi
            .replace("timing = \"time_step\"", "timing = \"asynchronous\"")
            .replace("cycle_ns = { value = 0.2907,", "cycle_ns = { value = 20000.0,"),
    )
    .unwrap();
    let one = cosim(&dir, &slow_w, "1", "round_robin");
    let three = cosim(&dir, &slow_w, "3", "round_robin");
    assert_eq!(one["fabric"]["dropped"], 0, "{one}");
    assert!(one["fabric"]["max_extra_steps"].as_u64().unwrap() > 3, "{one}");
    assert_ne!(one["hardware_spike_hash"], one["software_spike_hash"]);
    assert_eq!(one["hardware_spike_hash"], three["hardware_spike_hash"], "wormhole co-simulation depends on shards");
    assert_eq!(one["fabric"], three["fabric"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_experiment_file_can_run_with_a_chip_fabric_in_the_loop() {
    let dir = scratch("hardware-run");
    let file = dir.join("tiny.toml");
    let hw = "\n[hardware]\npreset = \"loihi\"\nmapping = \"population_contiguous\"\nneurons_per_core = 64\n";
    std::fs::write(&file, format!("{VALID}{hw}")).unwrap();
    let sizes = ["--set", "populations.E.size=800", "--set", "populations.I.size=200", "--set", "run.duration_ms=200"];
    let out = dir.join("run");
    let o = bin().arg("run").arg(&file).args(sizes).args(["-q", "--out"]).arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["hardware"]["preset"], "loihi");
    assert!(s["hardware"]["fabric"]["delayed"].as_u64().unwrap() > 0, "{}", s["hardware"]);
    // The same as `neuropil hwemu cosim` on the same network.
    let plain = dir.join("plain.toml");
    std::fs::write(&plain, VALID).unwrap();
    let cosim_out = dir.join("cosim");
    let o = bin()
        .args(["hwemu", "cosim"])
        .arg(&plain)
        .args(sizes)
        .args(["--preset", "loihi", "--mapping", "population_contiguous", "--neurons-per-core", "64", "--out"])
        .arg(&cosim_out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cosim_out.join("cosim.json")).unwrap()).unwrap();
    assert_eq!(s["spike_hash"], c["hardware_spike_hash"]);
    assert_ne!(c["hardware_spike_hash"], c["software_spike_hash"]);
    // Stopped at 100 ms and resumed: the fabric's links continue as busy as they
    // were (their state is in the checkpoint), so spikes and counts are the
    // uninterrupted co-simulation's.
    let half = ["--set", "populations.E.size=800", "--set", "populations.I.size=200", "--set", "run.duration_ms=100"];
    let first = dir.join("first");
    let o = bin().arg("run").arg(&file).args(half).args(["-q", "--checkpoint", "--out"]).arg(&first).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let second = dir.join("second");
    let o = bin()
        .arg("run")
        .arg(&file)
        .args(half)
        .args(["-q", "--resume"])
        .arg(first.join("checkpoint.bin"))
        .arg("--out")
        .arg(&second)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(second.join("summary.json")).unwrap()).unwrap();
    assert_eq!(r["spike_hash"], s["spike_hash"], "resumed co-simulation");
    assert_eq!(r["hardware"]["fabric"], s["hardware"]["fabric"], "fabric counts continue across the checkpoint");
    // Resuming it without the [hardware] section is refused, not silently software.
    let o = bin()
        .arg("run")
        .arg(&plain)
        .args(half)
        .args(["-q", "--resume"])
        .arg(first.join("checkpoint.bin"))
        .arg("--out")
        .arg(dir.join("never"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("[hardware]"), "{}", stderr(&o));
    // Bad sections are refused before anything runs.
    for (bad, path) in [
        ("\n[hardware]\npreset = \"loihi3\"\n", "hardware.preset"),
        ("\n[hardware]\npreset = \"loihi\"\nmapping = \"diagonal\"\n", "hardware.mapping"),
    ] {
        std::fs::write(&file, format!("{VALID}{bad}")).unwrap();
        let o = bin().arg("run").arg(&file).args(["-q", "--out"]).arg(dir.join("never")).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(path), "{}", stderr(&o));
        assert!(!dir.join("never").exists());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `neuropil dni` (tiny settings) writes its curves, table and plots; bad settings
/// are refused naming the flag.
#[test]
fn dni_writes_curves_table_and_plots_and_refuses_bad_settings() {
    let dir = scratch("dni");
    let o = bin()
        .args(["dni", "--seeds", "1", "--epochs", "2", "--truncations", "1,10", "--granule", "16", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let table = std::fs::read_to_string(dir.join("dni_table.md")).unwrap();
    for arm in ["K=1 cortex only", "K=1 + cerebellum", "full BPTT", "cerebellar lesion", "olive lesion"] {
        assert!(table.contains(arm), "{table}");
    }
    let csv = std::fs::read_to_string(dir.join("dni_curves.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 5 * 3, "5 arms × (epochs 0..=2)");
    for png in ["dni_k1.png", "dni_sweep.png", "dni_lesions.png", "dni_correlation.png"] {
        assert_eq!(&std::fs::read(dir.join(png)).unwrap()[..8], b"\x89PNG\r\n\x1a\n", "{png}");
    }
    // A run with a module and --plot draws the module's task and feedback.
    let run = dir.join("run");
    let o = bin()
        .arg("run")
        .arg(root().join("examples/cerebellar_dni.toml"))
        .args(["--set", "run.duration_ms=400", "-q", "--plot", "--out"])
        .arg(&run)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(&std::fs::read(run.join("cerebellum-cb.png")).unwrap()[..8], b"\x89PNG\r\n\x1a\n");
    let csv = std::fs::read_to_string(run.join("cerebellum.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 400, "one sample per ms");
    let o = bin().args(["dni", "--truncations", "0"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--truncations"), "{}", stderr(&o));
    let o = bin().args(["dni", "--spiking"]).arg(root().join("examples/brunel.toml")).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no [[cerebellum]] module"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Co-simulation delays plastic synapses too: a network whose only projection is
/// STDP gives other spikes with the fabric than without (the currents arrive when
/// the fabric delivers them), the same on 1 and 3 shards, weights included.
#[test]
fn a_chip_fabric_delays_plastic_synapses_deterministically() {
    let dir = scratch("plastic-hw");
    let net = r#"
name = "plastic_hw"
[run]
duration_ms = 200.0
seed = 4
[[populations]]
name = "E"
size = 400
model = "iaf_psc_exp"
initial = { V_m = { dist = "uniform", low = -70.0, high = -56.0 } }
[[stimuli]]
kind = "poisson_generator"
target = "E"
rate_hz = 9000.0
weight = 20.0
delay_ms = 1.0
[[projections]]
source = "E"
target = "E"
conn = { rule = "fixed_indegree", indegree = 40, allow_autapses = false }
syn = { model = "stdp_synapse", weight = 40.0, delay_ms = 1.5, params = { Wmax = 100.0, lambda = 0.05 } }
[[recorders]]
kind = "weight_recorder"
"#;
    let hw = "\n[hardware]\npreset = \"spinnaker1\"\nneurons_per_core = 32\n";
    let run = |name: &str, text: &str, shards: &str| -> (serde_json::Value, Vec<u8>) {
        let file = dir.join(format!("{name}.toml"));
        std::fs::write(&file, text).unwrap();
        let out = dir.join(name);
        let o = bin().arg("run").arg(&file).args(["-q", "--shards", shards, "--out"]).arg(&out).output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let s = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
        (s, std::fs::read(out.join("weights.parquet")).unwrap())
    };
    let (sw, _) = run("software", net, "1");
    let (one, w1) = run("hw1", &format!("{net}{hw}"), "1");
    let (three, w3) = run("hw3", &format!("{net}{hw}"), "3");
    assert!(one["hardware"]["fabric"]["delayed"].as_u64().unwrap() > 0, "{}", one["hardware"]);
    assert_ne!(one["spike_hash"], sw["spike_hash"], "plastic synapses' currents arrive late");
    assert_eq!(one["spike_hash"], three["spike_hash"]);
    assert!(w1 == w3, "final weights differ between 1 and 3 shards");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_node_refuses_an_exchange_socket_path_it_cannot_use() {
    let dir = scratch("exchange-socket");
    let file = dir.join("not-a-socket");
    std::fs::write(&file, "data").unwrap();
    let node = |path: &std::path::Path| {
        let mut c = bin();
        c.args(["node", "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--exchange-listen", "127.0.0.1:0"])
            .args(["--etcd", "http://127.0.0.1:1", "--exchange-socket"])
            .arg(path);
        c
    };
    // A node that wrongly starts serving would never end: 60 s and it fails.
    let o = output_within(&mut node(&file), 60);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("--exchange-socket") && e.contains("not a socket"), "{e}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "data", "the file was touched");
    // A socket somebody listens on is not taken over.
    let taken = dir.join("taken.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&taken).unwrap();
    let e = stderr(&output_within(&mut node(&taken), 60));
    assert!(e.contains("another process listens there"), "{e}");
}

/// `neuropil bench` as an installed binary runs it: outside the checkout (the
/// model built in), at a small scale; the summary names the figures.
#[test]
fn plain_bench_runs_anywhere_and_reports_the_figures() {
    let dir = scratch("bench");
    let o = output_within(
        bin().current_dir(&dir).args(["bench", "--scale", "0.02", "--duration-ms", "150", "--json"]),
        300,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["experiment"], "microcircuit", "{s}");
    // 2 % of the microcircuit's 77,169 neurons, 150 ms (100 of them the transient).
    let neurons = s["neurons"].as_u64().unwrap();
    assert!((1500..1600).contains(&neurons), "{neurons} neurons");
    assert_eq!(s["duration_ms"].as_f64(), Some(150.0));
    assert!(s["timings"]["rtf"].as_f64().unwrap() > 0.0, "{s}");
    assert_eq!(std::fs::read_dir(&*dir).unwrap().count(), 0, "bench wrote into the working directory");
}

#[test]
fn bench_exchange_measures_every_layer() {
    let o = bin().args(["bench", "--exchange", "--epochs", "200"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let rows: Vec<f64> = out
        .lines()
        .filter_map(|l| l.strip_suffix(" µs per epoch"))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    // Every layer ran and reported a time; which is faster is the benchmark's
    // finding (docs/benchmarks.md), not something to assert here: timings differ
    // between our VMs and under a parallel test load, and a timed assertion would
    // fail on a slow machine, not on a defect.
    assert_eq!(rows.len(), 5, "{out}");
    assert!(rows.iter().all(|&t| t > 0.0 && t.is_finite()), "{out}");
    assert!(out.contains("gRPC exchange (node transport), Unix socket"), "{out}");
}

/// Supervision, embedded: a failing shard (of neurons, or of astrocytes only) or
/// cerebellar module (a failpoint; test builds only) ends `neuropil run` with exit code 1 and the actor, shard or module
/// and epoch named, not with an abort or a hang.
#[test]
fn a_failing_shard_or_module_ends_the_embedded_run_naming_it() {
    let dir = scratch("failpoints");
    // Astrocytes in a group of their own: on 3 shards the neurons take shards 0
    // and 1, the astrocytes shard 2, an actor of its own kind.
    let astrocytes_apart: &[&str] = &[
        "run.layout=groups",
        "populations.E.group=neurons",
        "populations.I.group=neurons",
        "populations.A.group=astrocytes",
        "populations.E.size=800",
        "populations.I.size=200",
        "populations.A.size=1000",
    ];
    let cases: [(&str, &[&str], &str, &str); 3] = [
        (
            "examples/brunel.toml",
            &[],
            "shard:1@20",
            "population_shard actor shard-1 failed: shard 1 failed at epoch 20: failpoint shard:1@20",
        ),
        (
            "examples/astrocyte_brunel.toml",
            astrocytes_apart,
            "shard:2@20",
            "astrocyte_shard actor shard-2 failed: shard 2 failed at epoch 20: failpoint shard:2@20",
        ),
        (
            "examples/cerebellar_dni.toml",
            &[],
            "module:0@30",
            "cerebellar_module actor module-0 failed: cerebellar module 0 failed at epoch 30: failpoint module:0@30",
        ),
    ];
    for (file, set, failpoint, want) in cases {
        let mut cmd = bin();
        cmd.args(["run", "-q", "--threads", "2", "--shards", "3", "--set", "run.duration_ms=200"]);
        for s in set {
            cmd.args(["--set", s]);
        }
        let mut child = cmd
            .arg("--out")
            .arg(dir.join("out"))
            .arg(root().join(file))
            .env("NEUROPIL_FAILPOINTS", failpoint)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("{file}: the run hangs after its failpoint");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{file}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{file}: {}", stderr(&o));
    }
}

/// Every file in `examples/` runs through the CLI (briefly: 60 ms of biological
/// time; the microcircuit at 0.1 scale) and writes a summary with a spike hash;
/// one of them, brunel, also as JSON and YAML (converted here), with the same
/// spikes as the TOML file.
#[test]
fn every_example_runs_and_the_three_formats_agree() {
    let dir = scratch("examples");
    // Top-level files and those of model folders (examples/multi_area/).
    let mut files: Vec<PathBuf> = Vec::new();
    let mut dirs = vec![root().join("examples")];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "toml") {
                files.push(p);
            }
        }
    }
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    let run = |file: &Path, out: &Path| -> serde_json::Value {
        let mut cmd = bin();
        cmd.arg("run").arg(file).arg("--out").arg(out).args(["-q", "--set", "run.duration_ms=60"]);
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if text.contains("transient_ms") {
            cmd.args(["--set", "run.transient_ms=10"]);
        }
        if file.file_stem().is_some_and(|s| s == "microcircuit") {
            cmd.args(["--set", "scaling.neurons=0.1", "--set", "scaling.synapses=0.1"]);
        }
        if file.parent().is_some_and(|d| d.ends_with("multi_area")) {
            cmd.args(["--set", "scaling.neurons=0.01", "--set", "scaling.synapses=0.01"]);
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}: {}", file.display(), stderr(&o));
        let summary = std::fs::read_to_string(out.join("summary.json")).unwrap();
        serde_json::from_str(&summary).unwrap()
    };
    let mut hashes = std::collections::BTreeMap::new();
    for file in &files {
        let rel = file.strip_prefix(root().join("examples")).unwrap().with_extension("");
        let stem = rel.to_string_lossy().replace('/', "-");
        let summary = run(file, &dir.join(&stem));
        let hash = summary["spike_hash"].as_str().unwrap_or_else(|| panic!("{stem}: {summary}")).to_string();
        assert_eq!(hash.len(), 16, "{stem}: {hash}");
        hashes.insert(stem, hash);
    }
    let brunel: toml::Value =
        toml::from_str(&std::fs::read_to_string(root().join("examples/brunel.toml")).unwrap()).unwrap();
    let json = dir.join("brunel.json");
    std::fs::write(&json, serde_json::to_string_pretty(&brunel).unwrap()).unwrap();
    let yaml = dir.join("brunel.yaml");
    std::fs::write(&yaml, serde_yaml::to_string(&brunel).unwrap()).unwrap();
    for (file, tag) in [(&json, "json"), (&yaml, "yaml")] {
        let summary = run(file, &dir.join(format!("brunel-{tag}")));
        assert_eq!(summary["spike_hash"].as_str(), Some(hashes["brunel"].as_str()), "{tag}: {summary}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The CLI's own surface: `--help` names every subcommand, `--version` the
/// crate's version, `models` every model (and one model's NEST defaults), and a
/// successful `validate` counts what Brunel (2000) has: 10,000 + 2,500 neurons,
/// 1,000 + 250 synapses onto each.
#[test]
fn help_version_models_and_validate_say_what_they_should() {
    let ok = |args: &[&str]| {
        let o = bin().args(args).output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let help = ok(&["--help"]);
    for cmd in [
        "run",
        "validate",
        "plot",
        "bench",
        "dni",
        "models",
        "hwemu",
        "node",
        "control",
        "submit",
        "status",
        "cancel",
        "checkpoint",
        "spikes",
    ] {
        assert!(help.lines().any(|l| l.trim_start().starts_with(&format!("{cmd} "))), "{cmd} missing: {help}");
    }
    assert_eq!(ok(&["--version"]).trim(), format!("neuropil {}", env!("CARGO_PKG_VERSION")));
    let models = ok(&["models"]);
    for m in [
        "iaf_psc_exp",
        "iaf_psc_alpha",
        "izhikevich",
        "aeif_cond_exp",
        "stdp_synapse",
        "stdp_dopamine_synapse",
        "tsodyks2_synapse",
    ] {
        assert!(models.lines().any(|l| l.trim() == m), "{m} missing: {models}");
    }
    // NEST's defaults for iaf_psc_exp.
    let exp = ok(&["models", "iaf_psc_exp"]);
    for (p, v) in [("C_m", "250 pF"), ("tau_m", "10 ms"), ("tau_syn_ex", "2 ms"), ("t_ref", "2 ms")] {
        assert!(exp.lines().any(|l| l.trim_start().starts_with(p) && l.contains(v)), "{p} {v}: {exp}");
    }
    let o = bin().args(["models", "nosuch"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(stderr(&o).contains("unknown model \"nosuch\"") && stderr(&o).contains("iaf_psc_exp"), "{}", stderr(&o));
    let v = ok(&["validate", root().join("examples/brunel.toml").to_str().unwrap()]);
    assert!(v.starts_with("ok: 2 populations, 12500 neurons, ~1.562e7 synapses"), "{v}");
}

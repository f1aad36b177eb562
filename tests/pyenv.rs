//! Python for end-to-end tests: the pinned virtualenv target/venv-client, the
//! package built from python/ (stubs from proto/), a fresh virtualenv as a
//! newcomer makes one, and scripts run with a deadline.

#![allow(dead_code)]

use super::harness::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The interpreter of target/venv-client, made if missing (idempotent).
pub fn venv_python() -> PathBuf {
    let out = Command::new(root().join("scripts/install-deps")).args(["--python", "client"]).output().unwrap();
    assert!(
        out.status.success(),
        "scripts/install-deps --python client failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    root().join("target/venv-client/bin/python")
}

/// A copy of python/ and proto/ in `<tmp>/src` (tests building at once must not
/// share setuptools' build directory in python/); its python/.
pub fn package_source(tmp: &Path) -> PathBuf {
    let src = tmp.join("src");
    std::fs::create_dir_all(&src).unwrap();
    for dir in ["python", "proto"] {
        copy_tree(&root().join(dir), &src.join(dir));
    }
    src.join("python")
}

/// `from` copied to `to`, recursively (files and directories; build outputs skipped).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        let n = name.to_string_lossy();
        if n == "build" || n == "__pycache__" || n.ends_with(".egg-info") {
            continue;
        }
        let t = e.file_type().unwrap();
        if t.is_dir() {
            copy_tree(&e.path(), &to.join(&name));
        } else if t.is_file() {
            std::fs::copy(e.path(), to.join(&name)).unwrap();
        }
    }
}

/// Every generated stub module is there.
pub fn has_stubs(package: &Path) {
    for stub in ["cluster_pb2.py", "cluster_pb2_grpc.py", "experiment_pb2.py", "hardware_pb2_grpc.py"] {
        assert!(package.join("v1").join(stub).is_file(), "the build generated no neuropil/v1/{stub}");
    }
}

/// The pin of a package in scripts/deps/python-client.txt (`PyNN==0.13.0`).
pub fn pin(package: &str) -> String {
    let list = std::fs::read_to_string(root().join("scripts/deps/python-client.txt")).unwrap();
    list.lines()
        .find(|l| l.split("==").next() == Some(package))
        .unwrap_or_else(|| panic!("scripts/deps/python-client.txt pins no {package}"))
        .trim()
        .to_string()
}

/// `pip install ./python` into `<tmp>/site` over the pinned dependencies of
/// target/venv-client, with PyNN beside it (pyNN.neuropil lives in PyNN's package,
/// so both must be in one directory); the PYTHONPATH that holds them.
pub fn install_package(python: &Path, tmp: &Path) -> PathBuf {
    let source = package_source(tmp);
    let site = tmp.join("site");
    let out = Command::new(python)
        .args(["-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps", "--no-build-isolation"])
        .arg("--target")
        .arg(&site)
        .arg(&source)
        .arg(pin("PyNN"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pip install ./python failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    has_stubs(&site.join("neuropil"));
    assert!(site.join("pyNN/neuropil/__init__.py").is_file(), "the package installed no pyNN/neuropil");
    site
}

/// `python3 -m venv` and `pip install ./python` in it, as the README says; the
/// venv's interpreter.
pub fn fresh_virtualenv(tmp: &Path) -> PathBuf {
    let source = package_source(tmp);
    let venv = tmp.join("venv");
    let run = |cmd: &mut Command, what: &str| {
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv), "python3 -m venv");
    let python = venv.join("bin/python");
    run(
        Command::new(&python).args(["-m", "pip", "install", "-q", "--disable-pip-version-check"]).arg(&source),
        "pip install ./python in a fresh virtualenv",
    );
    let out = Command::new(&python)
        .args(["-c", "import neuropil, os; print(os.path.dirname(neuropil.__file__))"])
        .current_dir(tmp)
        .output()
        .unwrap();
    assert!(out.status.success(), "import neuropil: {}", String::from_utf8_lossy(&out.stderr));
    let package = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(package.starts_with(&venv), "neuropil imported from {package:?}, not from the virtualenv");
    has_stubs(&package);
    python
}

/// A child killed when the test ends, however it ends.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Run a Python script from the repository root with the package on its path;
/// its stdout. Fails the test with both streams when it fails or outlives `within`.
pub fn python_script(python: &Path, site: &Path, tmp: &Path, args: &[&str], within: Duration) -> String {
    let (out, err) = (tmp.join(format!("{}.out", args[0].replace('/', "_"))), tmp.join("py.err"));
    let child = Command::new(python)
        .args(args)
        .current_dir(root())
        .env("PYTHONPATH", site)
        .env("NEUROPIL_BIN", BIN)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            break child.0.try_wait().unwrap().unwrap_or_else(|| {
                panic!("{args:?} still running after {within:?}: {}", std::fs::read_to_string(&err).unwrap_or_default())
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (stdout, stderr) = (std::fs::read_to_string(&out).unwrap(), std::fs::read_to_string(&err).unwrap());
    assert!(status.success(), "{args:?} failed ({status}):\n{stdout}\n{stderr}");
    stdout
}

/// The JSON line a check script prints last.
pub fn report(stdout: &str) -> serde_json::Value {
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no report in {stdout}"));
    serde_json::from_str(line).unwrap()
}

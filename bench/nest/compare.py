#!/usr/bin/env python3
"""Side by side: neuropil and NEST 3.10 (PyPI) on the same experiment file (the
microcircuit by default; --experiment examples/multi_area/ground.toml), same
machine, same threads. Installs NEST into target/venv-bench on first use (scripts/install-deps --python bench), builds
neuropil, runs both several times and prints medians, ratios and rates.

    python3 bench/nest/compare.py --scale 0.1 --runs 3
    python3 bench/nest/compare.py --scale 1.0 --runs 1 --duration-ms 300
    python3 bench/nest/compare.py --experiment examples/multi_area/ground.toml --scale 0.01 --runs 1 --duration-ms 1500

Standard library only (NEST runs in its own virtualenv).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
VENV = os.path.join(ROOT, "target", "venv-bench")
PY = os.path.join(VENV, "bin", "python")


def sh(cmd, **kw):
    return subprocess.run(cmd, cwd=ROOT, check=True, text=True, **kw)


def ensure_nest():
    # The one install step for the benchmarks' Python packages (pinned in
    # scripts/deps/python-bench.txt); a no-op once the venv holds them.
    sh([os.path.join(ROOT, "scripts", "install-deps"), "--python", "bench"])


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError("no JSON in output:\n" + text[-2000:])


def run_neuropil(a):
    cmd = [os.path.join(ROOT, "target", "release", "neuropil"), "bench", "--json", "--scale", str(a.scale),
           "--threads", str(a.threads), "--experiment", a.experiment]
    if a.duration_ms:
        cmd += ["--duration-ms", str(a.duration_ms)]
    out = sh(cmd, capture_output=True).stdout
    s = json.loads(out)
    return {
        "build_s": s["timings"]["build_s"],
        "simulate_s": s["timings"]["simulate_s"],
        "rtf": s["timings"]["rtf"],
        "peak_rss_bytes": s["peak_rss_bytes"],
        "synapses": s["synapses"],
        "rates_hz": {p["name"]: p["rate_hz"] for p in s["populations"]},
    }


def run_nest(a):
    cmd = [PY, os.path.join("bench", "nest", "microcircuit_nest.py"), "--scale", str(a.scale), "--threads",
           str(a.threads), "--experiment", a.experiment]
    if a.duration_ms:
        cmd += ["--duration-ms", str(a.duration_ms)]
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    return last_json(sh(cmd, capture_output=True, env=env).stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=0.1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--duration-ms", type=float, default=None, help="default: the file's (1100 ms incl. 100 ms transient)")
    ap.add_argument("--experiment", default="examples/microcircuit.toml")
    ap.add_argument("--skip-nest", action="store_true")
    a = ap.parse_args()

    if not a.skip_nest:
        ensure_nest()
    sh(["cargo", "build", "--release", "-q"])
    res = {"neuropil": [], "nest": []}
    for i in range(a.runs):
        print(f"run {i + 1}/{a.runs}: neuropil ...", file=sys.stderr)
        res["neuropil"].append(run_neuropil(a))
        if not a.skip_nest:
            print(f"run {i + 1}/{a.runs}: NEST ...", file=sys.stderr)
            res["nest"].append(run_nest(a))

    def med(sim, key):
        xs = [r[key] for r in res[sim]]
        return statistics.median(xs) if xs else float("nan")

    name = os.path.splitext(os.path.relpath(a.experiment, "examples"))[0]
    print(f"\n{name}, scale {a.scale}, {a.threads} threads, {a.runs} run(s), medians")
    print(f"{'figure':<22}{'NEST 3.10':>14}{'neuropil':>14}{'NEST/neuropil':>15}")
    rows = [("build (s)", "build_s", 1), ("simulate (s)", "simulate_s", 1), ("real-time factor", "rtf", 1),
            ("peak RSS (GiB)", "peak_rss_bytes", 2 ** -30)]
    for label, key, f in rows:
        n, p = med("nest", key) * f, med("neuropil", key) * f
        print(f"{label:<22}{n:>14.3f}{p:>14.3f}{n / p:>15.2f}")
    syn = res["neuropil"][0]["synapses"]
    print(f"{'synapses':<22}{res['nest'][0]['synapses'] if res['nest'] else float('nan'):>14}{syn:>14}")
    print(f"{'peak RSS per synapse':<22}{med('nest', 'peak_rss_bytes') / syn:>14.1f}{med('neuropil', 'peak_rss_bytes') / syn:>14.1f}")
    print(f"\nrates after the transient (Hz), mean over runs")
    print(f"{'population':<12}{'NEST 3.10':>12}{'neuropil':>12}")
    for pop in res["neuropil"][0]["rates_hz"]:
        n = statistics.mean(r["rates_hz"].get(pop, float("nan")) for r in res["nest"]) if res["nest"] else float("nan")
        p = statistics.mean(r["rates_hz"][pop] for r in res["neuropil"])
        print(f"{pop:<12}{n:>12.3f}{p:>12.3f}")
    print("\nraw:", json.dumps(res))


if __name__ == "__main__":
    main()

"""pyNN.neuropil and pyNN.nest on the same PyNN script (brunel.py), side by side:
per regime and seed, the rates and CVs of both, their difference against the seed
spread, and the wall times. NEST 3.10 and PyNN from target/venv-bench
(scripts/install-deps --python bench), pyNN.neuropil from target/venv-client with
the package built from python/ (installed here into target/pynn-site).

    python3 bench/pynn/compare.py [--seeds 1,2,3] [--order 500] [--out FILE.json]

Writes the NEST side to --out (tests/data/pynn-brunel-nest.json is one such file:
tests/python.rs checks pyNN.neuropil's rates against it).
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys

root = pathlib.Path(__file__).resolve().parents[2]
ap = argparse.ArgumentParser()
ap.add_argument("--seeds", default="1,2,3")
ap.add_argument("--order", type=int, default=500)
ap.add_argument("--regimes", default="5:2,6:2", help="g:eta pairs")
ap.add_argument("--J", type=float, default=0.5, help="mV (0.5: irregular firing at this size)")
ap.add_argument("--out", default=None)
a = ap.parse_args()

subprocess.run([root / "scripts/install-deps", "--python", "bench"], check=True)
subprocess.run([root / "scripts/install-deps", "--python", "client"], check=True)
bench_py, client_py = root / "target/venv-bench/bin/python", root / "target/venv-client/bin/python"
subprocess.run([bench_py, "-m", "pip", "install", "-q", "PyNN==0.13.0", "neo==0.14.6"], check=True)
site = root / "target/pynn-site"
subprocess.run([client_py, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--upgrade",
                "--target", site, root / "python", "PyNN==0.13.0"], check=True)
binary = os.environ.get("NEUROPIL_BIN", str(root / "target/release/neuropil"))


def run(sim, seed, g, eta):
    py = bench_py if sim == "nest" else client_py
    env = dict(os.environ, NEUROPIL_BIN=binary)
    if sim == "neuropil":
        env["PYTHONPATH"] = str(site)
    out = subprocess.run([py, root / "bench/pynn/brunel.py", "--sim", sim, "--seed", str(seed), "--order",
                          str(a.order), "--g", str(g), "--eta", str(eta), "--J", str(a.J)], capture_output=True, text=True, env=env)
    line = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if out.returncode != 0 or not line:
        sys.exit(f"{sim} seed {seed}: {out.stderr[-2000:]}")
    return json.loads(line[-1])


machine = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2; nproc"],
                         capture_output=True, text=True).stdout.split("\n")
print(f"machine: {machine[0].strip()}, {machine[1].strip()} cores; order {a.order} "
      f"(N = {5 * a.order}), J = {a.J} mV, 1 s, 2 threads")
saved = {"order": a.order, "J": a.J, "duration_ms": 1000.0, "machine": machine[0].strip(), "regimes": {}}
for regime in a.regimes.split(","):
    g, eta = (float(x) for x in regime.split(":"))
    rows = {s: [run(s, int(seed), g, eta) for seed in a.seeds.split(",")] for s in ("nest", "neuropil")}
    print(f"\ng = {g}, eta = {eta}")
    print(f"{'':10s} {'rate E':>8s} {'rate I':>8s} {'CV E':>6s} {'build s':>8s} {'run s':>7s}")
    for s, rs in rows.items():
        for r in rs:
            print(f"{s + ' ' + str(r['seed']):10s} {r['rate_E']:8.2f} {r['rate_I']:8.2f} {r['cv_E']:6.3f} "
                  f"{r['build_s']:8.2f} {r['run_s']:7.2f}")
    m = {s: statistics.mean(r["rate_E"] for r in rs) for s, rs in rows.items()}
    sd = {s: statistics.stdev(r["rate_E"] for r in rs) if len(rs) > 1 else 0.0 for s, rs in rows.items()}
    t = {s: statistics.median(r["build_s"] + r["run_s"] for r in rs) for s, rs in rows.items()}
    print(f"mean E rate: NEST {m['nest']:.2f} ± {sd['nest']:.2f} (seed sd), neuropil {m['neuropil']:.2f} ± "
          f"{sd['neuropil']:.2f}; difference {m['neuropil'] - m['nest']:+.2f} Hz; "
          f"wall (build + run, median): NEST {t['nest']:.1f} s, neuropil {t['neuropil']:.1f} s "
          f"({t['nest'] / t['neuropil']:.1f}x)")
    saved["regimes"][regime] = rows["nest"]
if a.out:
    pathlib.Path(a.out).write_text(json.dumps(saved, indent=1) + "\n")
    print(f"wrote {a.out}")

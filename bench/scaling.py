#!/usr/bin/env python3
"""Scaling of neuropil on the microcircuit: time per synaptic event and bytes per
synapse from scale 0.05 to 1.0 (neurons and in-degrees scaled together). Writes
docs/img/scaling.csv and, if matplotlib is importable, docs/img/scaling.png.

    python3 bench/scaling.py [--scales 0.05,0.1,0.2,0.5,1.0] [--duration-ms 600] [--threads 2]
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scales", default="0.05,0.1,0.2,0.3,0.5,0.75,1.0")
    ap.add_argument("--duration-ms", type=float, default=600.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--python", default=None,
                    help="a python with matplotlib for the plot (default: target/venv-bench, installed by scripts/install-deps --python bench)")
    a = ap.parse_args()
    if a.python is None:
        subprocess.run([os.path.join(ROOT, "scripts", "install-deps"), "--python", "bench"], check=True)
        a.python = os.path.join(ROOT, "target", "venv-bench", "bin", "python")
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
    rows = []
    for sc in [float(x) for x in a.scales.split(",")]:
        print(f"scale {sc} ...", file=sys.stderr)
        out = subprocess.run([os.path.join(ROOT, "target", "release", "neuropil"), "bench", "--json", "--scale", str(sc),
                              "--duration-ms", str(a.duration_ms), "--threads", str(a.threads)],
                             cwd=ROOT, check=True, capture_output=True, text=True).stdout
        s = json.loads(out)
        ev = s["synaptic_events"]
        rows.append({
            "scale": sc,
            "neurons": s["neurons"],
            "synapses": s["synapses"],
            "build_s": s["timings"]["build_s"],
            "rtf": s["timings"]["rtf"],
            "ns_per_event": s["timings"]["simulate_s"] * 1e9 / ev if ev else float("nan"),
            "core_ns_per_event": s["timings"]["simulate_s"] * a.threads * 1e9 / ev if ev else float("nan"),
            "kernel_bytes_per_synapse": s["bytes_per_synapse"],
            "rss_bytes_per_synapse": s["peak_rss_bytes"] / s["synapses"],
        })
    os.makedirs(os.path.join(ROOT, "docs", "img"), exist_ok=True)
    csv = os.path.join(ROOT, "docs", "img", "scaling.csv")
    with open(csv, "w") as f:
        keys = list(rows[0].keys())
        f.write(",".join(keys) + "\n")
        for r in rows:
            f.write(",".join(f"{r[k]:.6g}" if isinstance(r[k], float) else str(r[k]) for k in keys) + "\n")
    print(open(csv).read())
    plot = f"""
import csv, matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
rows = list(csv.DictReader(open({csv!r})))
x = [float(r["synapses"]) for r in rows]
fig, ax = plt.subplots(1, 2, figsize=(11, 4))
ax[0].plot(x, [float(r["ns_per_event"]) for r in rows], "o-", label="wall ns per synaptic event")
ax[0].plot(x, [float(r["core_ns_per_event"]) for r in rows], "s--", label="core ns per event ({a.threads} threads)")
ax[0].set_xscale("log"); ax[0].set_xlabel("synapses"); ax[0].set_ylabel("ns"); ax[0].legend(); ax[0].grid(alpha=.3)
ax[0].set_title("time per synaptic event (all work / events)")
ax[1].plot(x, [float(r["kernel_bytes_per_synapse"]) for r in rows], "o-", label="kernel synapse storage")
ax[1].plot(x, [float(r["rss_bytes_per_synapse"]) for r in rows], "s--", label="peak RSS / synapses")
ax[1].axhline(12, color="grey", ls=":", label="target 12 B")
ax[1].set_xscale("log"); ax[1].set_xlabel("synapses"); ax[1].set_ylabel("bytes per synapse"); ax[1].legend(); ax[1].grid(alpha=.3)
ax[1].set_ylim(0, max(20, max(float(r["rss_bytes_per_synapse"]) for r in rows) * 1.1))
ax[1].set_title("memory per synapse")
for a_, r in zip([ax[0]] * len(rows), rows):
    a_.annotate(r["scale"], (float(r["synapses"]), float(r["ns_per_event"])), textcoords="offset points", xytext=(0, 6), fontsize=7)
fig.suptitle("neuropil, Potjans-Diesmann microcircuit, scale 0.05-1.0")
fig.tight_layout(); fig.savefig({os.path.join(ROOT, 'docs', 'img', 'scaling.png')!r}, dpi=110)
"""
    if os.path.exists(a.python):
        r = subprocess.run([a.python, "-c", plot], cwd=ROOT)
        if r.returncode == 0:
            print("wrote docs/img/scaling.png")
    else:
        print(f"no {a.python}: install matplotlib there to draw the plot", file=sys.stderr)


if __name__ == "__main__":
    main()

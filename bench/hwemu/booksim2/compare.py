"""neuropil's wormhole router model and BookSim2 on the same 8x8 configuration
(runfiles/meshconfig; meshconfig.toml here is it as a neuropil preset), side by
side: mean packet latency and accepted throughput per offered rate, and their
ratios. BookSim's side is results.json (our runs of commit 28f4329); with
--booksim PATH/TO/booksim it is run again here (BookSim is not packaged: build it
from github.com/booksim/booksim2 with flex and bison).

    python3 bench/hwemu/booksim2/compare.py [--booksim BIN] [--out FILE.json]
"""

import argparse
import json
import os
import pathlib
import re
import subprocess
import tempfile

here = pathlib.Path(__file__).resolve().parent
root = here.parents[2]
ap = argparse.ArgumentParser()
ap.add_argument("--booksim", help="a BookSim2 binary: rerun its side instead of reading results.json")
ap.add_argument("--out", help="write both sides here as JSON")
a = ap.parse_args()
binary = os.environ.get("NEUROPIL_BIN", str(root / "target/release/neuropil"))
reference = json.loads((here / "results.json").read_text())

# run name -> (neuropil sweep options, BookSim overrides, ideal flits/node/cycle, flits per packet)
RUNS = {
    "mesh_16vc_8flit": ([], "", 0.5, 1),
    "mesh_16vc_8flit_4flit_packets": (["--packet-flits", "4"], "packet_size=4 injection_rate_uses_flits=1", 0.5, 4),
    "mesh_2vc_4flit": (["--param", "vcs=2", "--param", "vc_buffer_flits=4"], "num_vcs=2 vc_buf_size=4", 0.5, 1),
    "mesh_4vc_4flit": (["--param", "vcs=4", "--param", "vc_buffer_flits=4"], "num_vcs=4 vc_buf_size=4", 0.5, 1),
    "mesh_2vc_4flit_no_tail_wait": (
        ["--param", "vcs=2", "--param", "vc_buffer_flits=4", "--param", "wait_for_tail_credit=0"],
        "num_vcs=2 vc_buf_size=4 wait_for_tail_credit=0", 0.5, 1),
    # BookSim's torus links take 2 cycles (credits as well): a 10-cycle credit loop.
    "torus_16vc_8flit": (["--topology", "torus", "--param", "link_cycles_x=2", "--param", "link_cycles_y=2",
                          "--param", "credit_cycles=5"], "topology=torus routing_function=dim_order", 1.0, 1),
}


def booksim(bin_, overrides, rate):
    cmd = [bin_, str(here / "booksim-meshconfig.txt"), f"injection_rate={rate}"] + overrides.split()
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    body = out.split("====== Overall Traffic Statistics ======")
    text = body[1] if len(body) > 1 else out
    last = lambda pat: float((re.findall(pat, text) or ["nan"])[-1])
    return {"rate": rate, "packet_latency": last(r"Packet latency average = ([\d.e+-]+)"),
            "accepted": last(r"Accepted flit rate average\s*= ([\d.e+-]+)"),
            "unstable": "Simulation unstable" in out}


both = {}
for name, (opts, overrides, ideal, flits) in RUNS.items():
    theirs = reference["runs"][name]["points"]
    if a.booksim:
        theirs = [booksim(a.booksim, overrides, p["rate"]) for p in theirs]
    rates = [p["rate"] for p in theirs]
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "sweep.png"
        subprocess.run([binary, "hwemu", "sweep", "--preset", str(here / "meshconfig.toml"), *opts,
                        "--warmup", "3000cycles", "--measure", "10000cycles", "--seed", "1",
                        "--loads", ",".join(str(r / ideal) for r in rates), "--out", str(out)],
                       check=True, stdout=subprocess.DEVNULL)
        ours = json.loads(out.with_suffix(".json").read_text())["runs"][0]["points"]
    print(f"\n{name}  (BookSim: {overrides or 'meshconfig as is'})")
    print(f"{'rate':>6} {'ours_lat':>9} {'booksim_lat':>11} {'ratio':>6} {'ours_acc':>9} {'booksim_acc':>11} {'ratio':>6}")
    rows = []
    for t, o in zip(theirs, ours):
        lat, acc = o["point"]["latency_ns"], o["point"]["accepted_per_ns"] * flits
        mark = " (BookSim unstable)" if t["unstable"] else ""
        print(f"{t['rate']:>6} {lat:>9.2f} {t['packet_latency']:>11.2f} {lat / t['packet_latency']:>6.2f} "
              f"{acc:>9.4f} {t['accepted']:>11.4f} {acc / t['accepted']:>6.2f}{mark}")
        rows.append({"rate": t["rate"], "ours": {"latency": lat, "accepted": acc}, "booksim": t})
    sat_o = max(r["ours"]["accepted"] for r in rows)
    sat_t = max(r["booksim"]["accepted"] for r in rows)
    print(f"highest accepted: ours {sat_o:.4f}, BookSim {sat_t:.4f}, ratio {sat_o / sat_t:.2f}")
    both[name] = rows
if a.out:
    pathlib.Path(a.out).write_text(json.dumps(both, indent=1) + "\n")

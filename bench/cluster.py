#!/usr/bin/env python3
"""Cluster vs embedded wall time on one machine.

Starts a real etcd, one control and N node processes (T threads each) on loopback,
submits an experiment R times, and runs the same experiment embedded (with N*T
threads) R times; prints the median wall times and their ratio, and checks that
the spike hashes agree.

    python3 bench/cluster.py                      # microcircuit 0.1, 2 nodes x 1 thread
    python3 bench/cluster.py --nodes 3 --runs 5
    python3 bench/cluster.py --socket             # exchange over Unix sockets (same host)
    python3 bench/cluster.py --bin /tmp/neuropil-before   # another build
    python3 bench/cluster.py --checkpoint-ms 1000         # coordinated checkpoints on a volume

Needs `target/release/neuropil` (cargo build --release) and Debian's etcd-server.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "neuropil")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def started(cmd, log):
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
    line = p.stdout.readline()
    fields = dict(w.split("=", 1) for w in line.split() if "=" in w)
    return p, fields


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", default=os.path.join(ROOT, "examples", "microcircuit.toml"))
    ap.add_argument("--set", action="append", default=None)
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="threads per node")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--bin", default=BIN, help="the neuropil binary (to compare two builds side by side)")
    ap.add_argument("--socket", action="store_true",
                    help="nodes also serve the exchange on a Unix socket (peers on this host use it)")
    ap.add_argument("--checkpoint-ms", type=float, default=0,
                    help="coordinated checkpoints every MS of biological time (nodes write to a volume in the "
                         "temporary directory); 0: none")
    args = ap.parse_args()
    sets = args.set if args.set is not None else ["scaling.neurons=0.1", "scaling.synapses=0.1"]
    exe = args.bin
    if not os.path.exists(exe):
        sys.exit("build first: cargo build --release")
    if shutil.which("etcd") is None:
        sys.exit("install etcd (Debian: etcd-server)")

    tmp = tempfile.mkdtemp(prefix="neuropil-bench-")
    log = open(os.path.join(tmp, "services.log"), "w")
    procs = []
    node_metrics = []
    try:
        cport, pport = free_port(), free_port()
        endpoint = f"http://127.0.0.1:{cport}"
        procs.append(subprocess.Popen(
            ["etcd", "--data-dir", os.path.join(tmp, "etcd"), "--listen-client-urls", endpoint,
             "--advertise-client-urls", endpoint, "--listen-peer-urls", f"http://127.0.0.1:{pport}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{pport}",
             "--initial-cluster", f"default=http://127.0.0.1:{pport}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        common = ["--etcd", endpoint, "--metrics", "127.0.0.1:0", "--listen", "127.0.0.1:0"]
        volume = ["--checkpoint-dir", os.path.join(tmp, "checkpoints")] if args.checkpoint_ms > 0 else []
        control, fields = started([exe, "control", "--id", "control", "--data-dir", os.path.join(tmp, "data"),
                                   "--checkpoint-interval-ms", str(args.checkpoint_ms)] + volume + common, log)
        procs.append(control)
        addr = "http://" + fields["grpc"]
        for i in range(args.nodes):
            sock = ["--exchange-socket", os.path.join(tmp, f"node-{i}.sock")] if args.socket else []
            node, nfields = started([exe, "node", "--id", f"node-{i}", "--threads", str(args.threads),
                               "--exchange-listen", "127.0.0.1:0"] + sock + volume + common, log)
            procs.append(node)
            node_metrics.append(nfields["metrics"])
        metrics = fields["metrics"]
        deadline = time.time() + 30
        while True:
            text = urllib.request.urlopen(f"http://{metrics}/metrics").read().decode()
            live = [l for l in text.splitlines() if l.startswith("neuropil_live_nodes")]
            if live and float(live[0].split()[-1]) == args.nodes:
                break
            if time.time() > deadline:
                sys.exit("nodes did not register")
            time.sleep(0.1)

        set_args = [a for s in sets for a in ("--set", s)]
        cluster, cluster_sim, hashes = [], [], set()
        for r in range(args.runs):
            t0 = time.time()
            out = subprocess.run([exe, "submit", args.experiment, "--control", addr, "--wait", "-q"] + set_args,
                                 capture_output=True, text=True, check=True).stdout
            cluster.append(time.time() - t0)
            info = dict(l.split(None, 1) for l in out.splitlines() if l and not l.startswith(" ") and " " in l)
            summary = json.load(open(os.path.join(info["results"].strip(), "summary.json")))
            cluster_sim.append(summary["timings"]["simulate_s"])
            cluster_profile = summary["timings"]["profile"]
            hashes.add(summary["spike_hash"])
        embedded, embedded_sim = [], []
        for r in range(args.runs):
            out_dir = os.path.join(tmp, f"embedded-{r}")
            t0 = time.time()
            subprocess.run([exe, "run", args.experiment, "--out", out_dir, "-q",
                            "--threads", str(args.nodes * args.threads)] + set_args,
                           capture_output=True, check=True)
            embedded.append(time.time() - t0)
            summary = json.load(open(os.path.join(out_dir, "summary.json")))
            embedded_sim.append(summary["timings"]["simulate_s"])
            embedded_profile = summary["timings"]["profile"]
            hashes.add(summary["spike_hash"])
        m = statistics.median
        print(f"experiment        {os.path.basename(args.experiment)} {' '.join(sets)}")
        via = "Unix sockets" if args.socket else "TCP"
        print(f"cluster           {args.nodes} nodes x {args.threads} thread(s), {args.runs} runs, exchange over {via}")
        if args.checkpoint_ms > 0:
            print(f"checkpoints       every {args.checkpoint_ms:g} ms of biological time")
        print(f"cluster wall      {m(cluster):.2f} s (submit to results; runs {', '.join(f'{x:.2f}' for x in cluster)})")
        print(f"cluster simulate  {m(cluster_sim):.2f} s (slowest node's simulation loop)")
        print(f"embedded wall     {m(embedded):.2f} s ({args.nodes * args.threads} threads; runs {', '.join(f'{x:.2f}' for x in embedded)})")
        print(f"embedded simulate {m(embedded_sim):.2f} s")
        print(f"ratio wall        {m(cluster) / m(embedded):.2f}")
        print(f"ratio simulate    {m(cluster_sim) / m(embedded_sim):.2f}")
        fmt = lambda p: ", ".join(f"{k[:-2]} {v:.2f}" for k, v in p.items())
        print(f"cluster profile   {fmt(cluster_profile)} (thread s, summed over nodes)")
        print(f"embedded profile  {fmt(embedded_profile)} (thread s, summed over threads)")
        # Where the exchange time goes, from the nodes' histograms (all runs).
        buckets = {}
        for nm in node_metrics:
            samples = {}
            for l in urllib.request.urlopen(f"http://{nm}/metrics").read().decode().splitlines():
                if l.startswith("neuropil_epoch_exchange_duration_seconds_bucket"):
                    le = l.split('le="')[1].split('"')[0]
                    buckets[le] = buckets.get(le, 0) + float(l.split()[-1])
                elif l.startswith(("neuropil_epoch_exchange_duration_seconds_", "neuropil_exchange_wait_seconds_")):
                    samples[l.split()[0].split("{")[0]] = float(l.split()[-1])
            mean = lambda h: samples[h + "_sum"] / max(samples.get(h + "_count", 0), 1)
            for l in urllib.request.urlopen(f"http://{nm}/metrics").read().decode().splitlines():
                if l.startswith(("neuropil_checkpoint_duration_seconds_sum", "neuropil_checkpoint_duration_seconds_count",
                                 "neuropil_checkpoint_bytes")):
                    samples[l.split()[0].split("{")[0]] = float(l.split()[-1])
            if samples.get("neuropil_checkpoint_duration_seconds_count"):
                print(f"node {nm:<15} {int(samples['neuropil_checkpoint_duration_seconds_count'])} checkpoint parts, "
                      f"mean write {mean('neuropil_checkpoint_duration_seconds') * 1e3:.1f} ms, "
                      f"last {samples.get('neuropil_checkpoint_bytes', 0) / 1e6:.2f} MB")
            if samples.get("neuropil_exchange_wait_seconds_count"):
                print(f"node {nm:<15} mean epoch exchange {mean('neuropil_epoch_exchange_duration_seconds') * 1e6:.1f} µs "
                      f"(send, Poisson draws, receive), receiving {mean('neuropil_exchange_wait_seconds') * 1e6:.1f} µs")
        total = buckets.get("+Inf", 0)
        if total:
            within = [f"{float(le) * 1e6:.0f} µs {100 * c / total:.0f}%" for le, c in buckets.items()
                      if le != "+Inf" and float(le) <= 1e-3]
            print(f"epoch exchanges   {int(total)}; share done within {', '.join(within)}")
        print(f"spike hashes      {'identical' if len(hashes) == 1 else 'DIFFERENT: ' + ', '.join(sorted(hashes))}")
    finally:
        for p in reversed(procs):
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

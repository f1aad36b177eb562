#!/usr/bin/env python3
"""Runs across hosts: node processes in network namespaces of their own (one veth
link each to a bridge), with an emulated one-way link latency (our kernels have no
netem; the nodes' transport holds every message, `--emulate-link-latency-us`).

For each node count, latency and variant (round-robin layout, areas on nodes,
areas on nodes with a floor on inter-area delays: the two-tier exchange) it
submits the experiment to a real control and etcd, and reports the slowest
node's simulation loop, the real-time factor, the exchanges per biological
second, the bytes each node received per biological second and whether the spike
hash is the embedded run's (one embedded run per variant), and the largest
node's peak memory in the run next to the control's estimate for it. Writes
docs/img/hosts.csv.

    sudo python3 bench/hosts.py                                   # multi-area 1 %, 300 ms
    sudo python3 bench/hosts.py --nodes 1,2,4 --latency-us 0,100,500
    sudo python3 bench/hosts.py --experiment examples/microcircuit.toml \
        --set scaling.neurons=0.1 --set scaling.synapses=0.1 --variants round_robin

Needs root (ip netns), `target/release/neuropil` (cargo build --release) and
Debian's etcd-server. Bridged traffic between the namespaces passes the
machine's FORWARD chain (Docker sets it to DROP): the script lets the bridge's
own traffic through for as long as it runs.
"""

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "neuropil")
VARIANTS = {
    "round_robin": ["run.layout=round_robin"],
    "groups": ["run.layout=groups"],
    "groups_floor": ["run.layout=groups", "scaling.min_delay_between_groups_ms=2.0"],
}


def sh(*args, check=True):
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


class Hosts:
    """A bridge in the root namespace and `n` namespaces joined to it."""

    def __init__(self, n, tag):
        self.n, self.tag = n, tag
        self.subnet = f"10.214.{tag % 250}"
        self.bridge = f"nphb{tag}"
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        self.rule = ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]
        sh("iptables", "-I", *self.rule)
        for i in range(n):
            ns, out, inside = self.netns(i), f"npho{tag}-{i}", f"nphi{tag}-{i}"
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", out, "type", "veth", "peer", "name", inside)
            sh("ip", "link", "set", inside, "netns", ns)
            sh("ip", "link", "set", out, "master", self.bridge)
            sh("ip", "link", "set", out, "up")
            sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{self.ip(i)}/24", "dev", inside)
            sh("ip", "netns", "exec", ns, "ip", "link", "set", inside, "up")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")

    def netns(self, i):
        return f"neuropil-hosts-{self.tag}-{i}"

    def ip(self, i):
        return f"{self.subnet}.{10 + i}"

    def close(self):
        for i in range(self.n):
            sh("ip", "netns", "del", self.netns(i), check=False)
            sh("ip", "link", "del", f"npho{self.tag}-{i}", check=False)
        sh("iptables", "-D", *self.rule, check=False)
        sh("ip", "link", "del", self.bridge, check=False)


def started(cmd, log):
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
    line = p.stdout.readline()
    return p, dict(w.split("=", 1) for w in line.split() if "=" in w)


def scrape(addr):
    out = {}
    for l in urllib.request.urlopen(f"http://{addr}/metrics").read().decode().splitlines():
        if l.startswith("#"):
            continue
        name = l.split("{")[0].split()[0]
        if name == "neuropil_exchange_bytes_total" and 'direction="received"' in l:
            out["received"] = float(l.split()[-1])
        elif name == "neuropil_epoch_exchange_duration_seconds_count":
            out["exchanges"] = float(l.split()[-1])
        elif name == "neuropil_synaptic_events_total":
            out["events"] = float(l.split()[-1])
        elif name in ("neuropil_run_peak_rss_bytes", "neuropil_run_estimated_bytes"):
            out[name[len("neuropil_run_"):]] = float(l.split()[-1])
    return out


def cluster(args, hosts, n, latency_us, tmp, log):
    """Start etcd and a control in the root namespace and `n` nodes on hosts."""
    bridge = f"{hosts.subnet}.1"
    endpoint = f"http://{bridge}:{23790 + hosts.tag % 100}"
    peer = f"http://{bridge}:{24790 + hosts.tag % 100}"
    procs = [subprocess.Popen(
        ["etcd", "--data-dir", os.path.join(tmp, "etcd"), "--listen-client-urls", endpoint,
         "--advertise-client-urls", endpoint, "--listen-peer-urls", peer,
         "--initial-advertise-peer-urls", peer, "--initial-cluster", f"default={peer}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    control, fields = started([BIN, "control", "--id", "control", "--data-dir", os.path.join(tmp, "data"),
                               "--etcd", endpoint, "--metrics", f"{bridge}:0", "--listen", f"{bridge}:0"], log)
    procs.append(control)
    nodes = []
    for i in range(n):
        ip = hosts.ip(i)
        node, nf = started(["ip", "netns", "exec", hosts.netns(i), BIN, "node", "--id", f"node-{i}",
                            "--threads", str(args.threads), "--etcd", endpoint, "--listen", f"{ip}:0",
                            "--metrics", f"{ip}:0", "--exchange-listen", f"{ip}:0",
                            "--emulate-link-latency-us", str(latency_us)], log)
        procs.append(node)
        nodes.append(nf["metrics"])
    deadline = time.time() + 60
    while True:
        text = urllib.request.urlopen(f"http://{fields['metrics']}/metrics").read().decode()
        live = [l for l in text.splitlines() if l.startswith("neuropil_live_nodes")]
        if live and float(live[0].split()[-1]) == n:
            break
        if time.time() > deadline:
            sys.exit(f"{n} nodes did not register (see {log.name})")
        time.sleep(0.2)
    return procs, "http://" + fields["grpc"], nodes


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", default=os.path.join(ROOT, "examples", "multi_area", "ground.toml"))
    ap.add_argument("--set", action="append", default=None)
    ap.add_argument("--duration-ms", type=float, default=300.0)
    ap.add_argument("--nodes", default="1,2,4")
    ap.add_argument("--latency-us", default="0,100")
    ap.add_argument("--variants", default="round_robin,groups,groups_floor")
    ap.add_argument("--threads", type=int, default=1, help="threads per node")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "img", "hosts.csv"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (ip netns)")
    if not os.path.exists(BIN):
        sys.exit("build first: cargo build --release")
    sets = args.set if args.set is not None else ["scaling.neurons=0.01", "scaling.synapses=0.01"]
    sets = sets + [f"run.duration_ms={args.duration_ms:g}", "run.transient_ms=0"]
    bio_s = args.duration_ms / 1000.0
    counts = [int(x) for x in args.nodes.split(",")]
    variants = args.variants.split(",")
    tmp = tempfile.mkdtemp(prefix="neuropil-hosts-")
    log = open(os.path.join(tmp, "services.log"), "w")
    machine = sh("sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").stdout.strip()
    print(f"machine: {machine}, {os.cpu_count()} cores; {os.path.relpath(args.experiment, ROOT)} {' '.join(sets)}")
    embedded = {}
    for v in variants:
        out_dir = os.path.join(tmp, f"embedded-{v}")
        flags = [a for s in sets + VARIANTS[v] for a in ("--set", s)]
        sh(BIN, "run", args.experiment, "--out", out_dir, "-q", "--threads", str(args.threads), *flags)
        embedded[v] = json.load(open(os.path.join(out_dir, "summary.json")))
    rows = []
    tag = os.getpid() % 10000
    for n in counts:
        for latency in [int(x) for x in args.latency_us.split(",")]:
            hosts = Hosts(n, tag)
            procs = []
            try:
                procs, control, nodes = cluster(args, hosts, n, latency, os.path.join(tmp, f"c{n}-{latency}"), log)
                for v in variants if n > 1 else variants[:1]:
                    before = [scrape(m) for m in nodes]
                    flags = [a for s in sets + VARIANTS[v] for a in ("--set", s)]
                    t0 = time.time()
                    out = sh(BIN, "submit", args.experiment, "--control", control, "--wait", "-q", *flags).stdout
                    wall = time.time() - t0
                    info = dict(l.split(None, 1) for l in out.splitlines() if l and not l.startswith(" ") and " " in l)
                    s = json.load(open(os.path.join(info["results"].strip(), "summary.json")))
                    after = [scrape(m) for m in nodes]
                    got = [a.get("received", 0) - b.get("received", 0) for a, b in zip(after, before)]
                    xs = [a.get("exchanges", 0) - b.get("exchanges", 0) for a, b in zip(after, before)]
                    row = {
                        "nodes": n, "latency_us": latency, "variant": v if n > 1 else "-",
                        "simulate_s": s["timings"]["simulate_s"], "rtf": s["timings"]["simulate_s"] / bio_s,
                        "wall_s": wall,
                        "exchanges_per_bio_s": max(xs) / bio_s if xs else 0.0,
                        "mb_received_per_node_per_bio_s": statistics.mean(got) / 1e6 / bio_s if got else 0.0,
                        "mb_received_max_per_bio_s": max(got) / 1e6 / bio_s if got else 0.0,
                        "peak_rss_mib_max": max(a.get("peak_rss_bytes", 0) for a in after) / 2**20,
                        "estimate_mib_max": max(a.get("estimated_bytes", 0) for a in after) / 2**20,
                        "events_max_over_mean": 0.0,
                        "same_spikes": s["spike_hash"] == embedded[v]["spike_hash"],
                    }
                    ev = [a.get("events", 0) - b.get("events", 0) for a, b in zip(after, before)]
                    if ev and sum(ev) > 0:
                        row["events_max_over_mean"] = max(ev) / statistics.mean(ev)
                    rows.append(row)
                    print(f"{n} node(s), L = {latency:>4} µs, {row['variant']:<12} simulate {row['simulate_s']:6.2f} s "
                          f"(RTF {row['rtf']:6.2f}), {row['exchanges_per_bio_s']:7.0f} exchanges/bio-s, "
                          f"{row['mb_received_per_node_per_bio_s']:6.2f} MB/bio-s per node, "
                          f"peak {row['peak_rss_mib_max']:.0f} MiB (estimate {row['estimate_mib_max']:.0f}), "
                          f"events max/mean {row['events_max_over_mean']:.2f}, "
                          f"spikes {'= embedded' if row['same_spikes'] else 'DIFFER'}", flush=True)
            finally:
                for p in reversed(procs):
                    p.kill()
                    p.wait()
                hosts.close()
    for v in variants:
        e = embedded[v]
        print(f"embedded, {args.threads} thread(s), {v:<12} simulate {e['timings']['simulate_s']:6.2f} s "
              f"(RTF {e['timings']['simulate_s'] / bio_s:6.2f})")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {os.path.relpath(args.out, ROOT)}")
    shutil.rmtree(tmp, ignore_errors=True)
    if not all(r["same_spikes"] for r in rows):
        sys.exit("spikes differ from the embedded run")


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Paired runs of two builds, alternating, on this machine: the embedded
# microcircuit at 0.1 scale (`neuropil bench`) and the 2-node cluster loop
# (bench/cluster.py). Prints one line per run; medians and ratios at the end.
#
#   bench/paired.sh /tmp/neuropil-before target/release/neuropil [EMBEDDED_PAIRS] [CLUSTER_PAIRS]
#
# Build the "before" binary from another commit, e.g.
#   git worktree add /tmp/before REV && (cd /tmp/before && cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
before=$1 after=$2 emb=${3:-10} clu=${4:-6}
log=$(mktemp)
for _ in $(seq 1 "$emb"); do
  for b in before after; do
    bin=$([ "$b" = before ] && echo "$before" || echo "$after")
    "$bin" bench --json --scale 0.1 --duration-ms 1100 --threads 2 2>/dev/null |
      python3 -c 'import json,sys; s=json.load(sys.stdin); print("embedded", sys.argv[1], s["timings"]["rtf"], s["spike_hash"])' "$b" | tee -a "$log"
  done
done
for _ in $(seq 1 "$clu"); do
  for b in before after; do
    bin=$([ "$b" = before ] && echo "$before" || echo "$after")
    out=$(python3 bench/cluster.py --runs 3 --bin "$bin" 2>&1)
    w=$(echo "$out" | awk '/ratio wall/ {print $3}')
    s=$(echo "$out" | awk '/ratio simulate/ {print $3}')
    n=$(echo "$out" | awk '/cluster simulate/ {print $3}')
    echo "cluster $b $w $s $n" | tee -a "$log"
  done
done
python3 - "$log" <<'PY'
import statistics as st, sys
e, c = {"before": [], "after": []}, {"before": [], "after": []}
hashes = set()
for line in open(sys.argv[1]):
    f = line.split()
    if f[0] == "embedded":
        e[f[1]].append(float(f[2])); hashes.add(f[3])
    else:
        c[f[1]].append(tuple(map(float, f[2:5])))
if e["before"]:
    b, a = st.median(e["before"]), st.median(e["after"])
    print(f"embedded RTF median: before {b:.3f}, after {a:.3f}, ratio {a / b:.3f}; spike hashes {sorted(hashes)}")
for i, name in enumerate(["cluster/embedded wall", "cluster/embedded simulate", "nodes' loop (s)"]):
    if c["before"]:
        b, a = st.median(x[i] for x in c["before"]), st.median(x[i] for x in c["after"])
        print(f"{name}: before {b:.3f}, after {a:.3f}, ratio {a / b:.3f}")
PY
rm -f "$log"

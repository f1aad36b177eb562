#!/usr/bin/env python3
"""Spike times of the cue in examples/cerebellar_dni.toml: group k (neurons
25k..25k+24) gets a spike every 2 ms (at 1 + 2j ms) within its 25 ms window of
each 200 ms trial. Prints one [[stimuli]] block per group; paste them into the
example when changing the trial count or period."""
import sys

T, trials, groups, per = 200, int(sys.argv[1]) if len(sys.argv) > 1 else 20, 8, 25
for k in range(groups):
    times = []
    for n in range(trials):
        start = T * n + k * per
        t = start + 1.0
        while t < start + per:
            times.append(round(t, 1))
            t += 2.0
    print(f"""[[stimuli]] # cue, phase group {k}
kind = "spike_generator"
target = "cortex"
neurons = {list(range(per * k, per * (k + 1)))}
spike_times_ms = {times}
weight = 600.0
delay_ms = 1.0
""")

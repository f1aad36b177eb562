#!/usr/bin/env python3
"""An experiment file of neuropil's (examples/microcircuit.toml, the multi-area
model's examples/multi_area/*.toml) in PyNEST, built from the same file neuropil
runs, so both simulators get the same model: populations, initial V_m, Poisson
drive, fixed_total_number projections with truncated-normal weights and delays, N/K
scaling with DC compensation.

Prints one JSON object: build_s, simulate_s, rtf, peak_rss_bytes, synapses,
rates_hz (after the transient), nest_version.

    python microcircuit_nest.py --scale 0.1 --duration-ms 1100 --threads 2 --seed 55
"""
import argparse
import json
import math
import resource
import sys
import time
import tomllib


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--experiment", default="examples/microcircuit.toml")
    ap.add_argument("--scale", type=float, default=0.1)
    ap.add_argument("--duration-ms", type=float, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--no-record", action="store_true", help="no spike recorders (timing only)")
    a = ap.parse_args()

    with open(a.experiment, "rb") as f:
        exp = tomllib.load(f)
    run = exp["run"]
    dt = run.get("dt_ms", 0.1)
    duration = a.duration_ms if a.duration_ms is not None else run["duration_ms"]
    transient = run.get("transient_ms", 0.0)
    seed = a.seed if a.seed is not None else run.get("seed", 1)
    n_scale = k_scale = a.scale

    import nest  # noqa: E402  (imported late: its banner goes to stdout)

    try:
        nest.verbosity = nest.VerbosityLevel.ERROR
    except AttributeError:
        nest.set_verbosity("M_ERROR")
    nest.ResetKernel()
    nest.SetKernelStatus({"resolution": dt, "local_num_threads": a.threads, "rng_seed": seed})

    t0 = time.perf_counter()
    pops = exp["populations"]
    full = {p["name"]: p["size"] for p in pops}
    sizes = {p["name"]: int(round(p["size"] * n_scale)) for p in pops}  # half-to-even, as NumPy
    rates = {p["name"]: p.get("full_scale_rate_hz", 0.0) for p in pops}

    # Mean input at full scale, for the DC that compensates K scaling.
    mean_input = {p["name"]: 0.0 for p in pops}
    for pr in exp.get("projections", []):
        n = pr["conn"]["n"]
        w = pr["syn"]["weight"]["mean"]
        mean_input[pr["target"]] += w * (n / full[pr["target"]]) * rates[pr["source"]]
    for st in exp.get("stimuli", []):
        mean_input[st["target"]] += st["weight"] * st["rate_hz"] * st.get("indegree", 1.0)

    nodes = {}
    for p in pops:
        params = dict(p["params"])
        tau_syn = params["tau_syn_ex"]
        dc = 1e-3 * tau_syn * (1.0 - math.sqrt(k_scale)) * mean_input[p["name"]] if k_scale != 1.0 else 0.0
        params["I_e"] = params.get("I_e", 0.0) + dc
        nc = nest.Create(p["model"], sizes[p["name"]], params=params)
        v0 = p["initial"]["V_m"]
        nc.V_m = nest.random.normal(mean=v0["mean"], std=v0["std"])
        nodes[p["name"]] = nc

    w_scale = 1.0 / math.sqrt(k_scale)
    for st in exp.get("stimuli", []):
        pg = nest.Create("poisson_generator", params={"rate": st["rate_hz"] * st.get("indegree", 1.0) * k_scale})
        nest.Connect(pg, nodes[st["target"]], "all_to_all",
                     {"weight": st["weight"] * w_scale, "delay": st.get("delay_ms", dt)})

    n_syn = 0
    projections = exp.get("projections", [])
    for i, pr in enumerate(projections):
        # One synapse model per projection: NEST refuses more than 2^27 connections
        # of one model per thread, which the full-scale microcircuit exceeds on 2
        # threads. NEST also holds at most a few hundred synapse models, so files
        # with many projections (the multi-area model's 8,344) share one.
        if len(projections) <= 64:
            model = f"static_p{i}"
            nest.CopyModel("static_synapse", model)
        else:
            model = "static_synapse"
        n = int(round(pr["conn"]["n"] * n_scale * k_scale))
        n_syn += n
        w, d = pr["syn"]["weight"], pr["syn"]["delay_ms"]
        weight = nest.math.redraw(nest.random.normal(mean=w["mean"] * w_scale, std=w["std"] * w_scale),
                                  min=w.get("min", -math.inf) * w_scale, max=w.get("max", math.inf) * w_scale)
        delay = nest.math.redraw(nest.random.normal(mean=d["mean"], std=d["std"]), min=d.get("min", dt / 2),
                                 max=d.get("max", math.inf))
        nest.Connect(nodes[pr["source"]], nodes[pr["target"]], {"rule": "fixed_total_number", "N": n},
                     {"synapse_model": model, "weight": weight, "delay": delay})

    recorders = {}
    if not a.no_record:
        for name, nc in nodes.items():
            sr = nest.Create("spike_recorder", params={"start": transient})
            nest.Connect(nc, sr)
            recorders[name] = sr
    # Prepare sorts and finalises the connections: part of building, as in NEST's
    # own benchmarks (build = create + connect + prepare, simulate = run).
    nest.Prepare()
    build_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    nest.Run(duration)
    simulate_s = time.perf_counter() - t1
    nest.Cleanup()

    measured = (duration - transient) * 1e-3
    out = {
        "simulator": "nest",
        "nest_version": nest.__version__,
        "scale": a.scale,
        "threads": a.threads,
        "seed": seed,
        "neurons": sum(sizes.values()),
        "synapses": n_syn,
        "duration_ms": duration,
        "build_s": build_s,
        "simulate_s": simulate_s,
        "rtf": simulate_s / (duration * 1e-3),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rates_hz": {name: (sr.n_events / (sizes[name] * measured)) for name, sr in recorders.items()},
    }
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()

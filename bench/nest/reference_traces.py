"""Reference traces from NEST 3.10 for the single-neuron tests of models whose
only checks were qualitative: izhikevich (regular spiking, I_e = 10) and
aeif_cond_exp (I_e = 800 pA, tonic firing with adaptation), both from NEST's
defaults at dt = 0.1 ms. Writes tests/data/nest-<model>.json: spike times and
V_m every 1 ms (the state after the step ending there).

    target/venv-bench/bin/python bench/nest/reference_traces.py
(scripts/install-deps --python bench makes target/venv-bench with NEST 3.10.)
"""

import json
import pathlib

import nest

root = pathlib.Path(__file__).resolve().parents[2]
CASES = {
    "izhikevich": ({"I_e": 10.0}, 1000.0, "V_m"),
    "aeif_cond_exp": ({"I_e": 800.0}, 1000.0, "V_m"),
}
for model, (params, ms, var) in CASES.items():
    nest.ResetKernel()
    nest.resolution = 0.1
    n = nest.Create(model, params=params)
    sr = nest.Create("spike_recorder")
    mm = nest.Create("multimeter", params={"record_from": [var], "interval": 1.0})
    nest.Connect(n, sr)
    nest.Connect(mm, n)
    nest.Simulate(ms)
    ev = mm.get("events")
    out = {
        "generated_by": "bench/nest/reference_traces.py",
        "simulator": f"NEST {nest.__version__}",
        "model": model,
        "params": params,
        "defaults": {k: v for k, v in nest.GetDefaults(model).items() if isinstance(v, (int, float))},
        "dt_ms": 0.1,
        "duration_ms": ms,
        "spikes_ms": [float(t) for t in sr.get("events")["times"]],
        var: [[float(t), float(v)] for t, v in zip(ev["times"], ev[var])],
    }
    path = root / "tests/data" / f"nest-{model}.json"
    path.write_text(json.dumps(out, indent=0) + "\n")
    print(f"{model}: {len(out['spikes_ms'])} spikes -> {path.relative_to(root)}")

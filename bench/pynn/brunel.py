"""Brunel (2000) network A as a PyNN script: the same file runs on pyNN.nest and
pyNN.neuropil (bench/pynn/compare.py runs both over seeds, side by side).

    python brunel.py --sim neuropil|nest [--seed 1] [--order 500] [--duration-ms 1000]
                     [--g 5] [--eta 2]

N_E = 4 order, N_I = order excitatory/inhibitory IF_curr_delta neurons (tau_m 20 ms,
threshold 20 mV above rest, reset 10 mV, refractory 2 ms), each receiving C_E =
N_E/10 excitatory and C_I = N_I/10 inhibitory inputs of J = 0.1 mV (inhibition g J),
delay 1.5 ms, and Poisson input at eta times the threshold rate through one-to-one
sources, from V = -70 mV. Prints one JSON line: mean rates (Hz) and CVs of E and I after a
100 ms transient, the seed, and the wall time of build and run.
"""

import argparse
import importlib
import json
import time

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("--sim", required=True, choices=["nest", "neuropil"])
ap.add_argument("--seed", type=int, default=1)
ap.add_argument("--order", type=int, default=500)
ap.add_argument("--duration-ms", type=float, default=1000.0)
ap.add_argument("--g", type=float, default=5.0)
ap.add_argument("--eta", type=float, default=2.0)
ap.add_argument("--J", type=float, default=0.1, help="mV")
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()

sim = importlib.import_module(f"pyNN.{a.sim}")
t0 = time.time()
extra = {"threads": a.threads} if a.sim == "neuropil" else {"threads": a.threads}
sim.setup(timestep=0.1, min_delay=0.1, max_delay=10.0, rng_seed=a.seed, **extra)

NE, NI = 4 * a.order, a.order
CE, CI = NE // 10, NI // 10
J, delay = a.J, 1.5
tau_m, theta = 20.0, 20.0
nu_th = theta / (J * CE * tau_m)          # per ms
p_rate = 1000.0 * a.eta * nu_th * CE      # Hz: the summed rate of C_E external inputs

cell = dict(tau_m=tau_m, cm=1.0, v_rest=0.0, v_reset=10.0, v_thresh=theta, tau_refrac=2.0, i_offset=0.0)
E = sim.Population(NE, sim.IF_curr_delta(**cell), label="E")
I = sim.Population(NI, sim.IF_curr_delta(**cell), label="I")
# Every neuron starts at -70 mV: NEST's default V_m for iaf_psc_delta, which PyNN's
# NEST backend cannot change ("NEST does not allow setting an initial value for v"),
# so both simulators start from the same state.
for p in (E, I):
    p.initialize(v=-70.0)
ext_E = sim.Population(NE, sim.SpikeSourcePoisson(rate=p_rate), label="ext_E")
ext_I = sim.Population(NI, sim.SpikeSourcePoisson(rate=p_rate), label="ext_I")

# (pyNN.nest draws these connectors in Python with PyNN's RNG; pyNN.neuropil natively)
rng = sim.NumpyRNG(seed=a.seed) if a.sim == "nest" else None
exc = sim.StaticSynapse(weight=J, delay=delay)
inh = sim.StaticSynapse(weight=-a.g * J, delay=delay)  # PyNN: negative for current-based inhibition
kw = {"rng": rng} if rng is not None else {}
for post in (E, I):
    sim.Projection(E, post, sim.FixedNumberPreConnector(CE, allow_self_connections=False, **kw), exc,
                   receptor_type="excitatory")
    sim.Projection(I, post, sim.FixedNumberPreConnector(CI, allow_self_connections=False, **kw), inh,
                   receptor_type="inhibitory")
sim.Projection(ext_E, E, sim.OneToOneConnector(), exc, receptor_type="excitatory")
sim.Projection(ext_I, I, sim.OneToOneConnector(), exc, receptor_type="excitatory")
E.record("spikes")
I.record("spikes")
t1 = time.time()
sim.run(a.duration_ms)
t2 = time.time()


def stats(pop, transient=100.0):
    trains = pop.get_data().segments[0].spiketrains
    span = (a.duration_ms - transient) / 1000.0
    rates, cvs = [], []
    for st in trains:
        t = st.magnitude[st.magnitude >= transient]
        rates.append(len(t) / span)
        if len(t) > 2:
            isi = np.diff(t)
            cvs.append(isi.std() / isi.mean())
    return float(np.mean(rates)), float(np.mean(cvs)) if cvs else float("nan")


rE, cvE = stats(E)
rI, cvI = stats(I)
sim.end()
print(json.dumps({"sim": a.sim, "seed": a.seed, "order": a.order, "rate_E": rE, "rate_I": rI, "cv_E": cvE,
                  "cv_I": cvI, "build_s": t1 - t0, "run_s": t2 - t1}))

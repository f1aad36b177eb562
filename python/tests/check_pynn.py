"""pyNN.neuropil against analytic solutions (not against neuropil's own code):
PyNN's units must arrive translated (nA -> pA, nF -> pF), the membrane must follow
the leaky integrator's closed form, the interspike interval the LIF's formula,
and Neo must get what PyNN promises (one SpikeTrain per recorded cell, an
AnalogSignal from t = 0 in mV).

    python check_pynn.py        (neuropil binary: $NEUROPIL_BIN)
"""

import json
import math

import numpy as np
import quantities as pq

import pyNN.neuropil as sim

sim.setup(timestep=0.1)
cell = dict(cm=0.25, tau_m=10.0, v_rest=-65.0, v_reset=-65.0, v_thresh=-50.0, tau_refrac=2.0, i_offset=1.0)
p = sim.Population(2, sim.IF_curr_exp(**cell), label="lif")
p.initialize(v=-65.0)
p.record(["spikes", "v"])
sim.run(100.0)
block = p.get_data()
seg = block.segments[0]

# Below threshold, V(t) = E_L + R I (1 - exp(-t / tau_m)), R = tau_m / cm.
R_I = cell["tau_m"] / cell["cm"] * cell["i_offset"]  # MOhm * nA = mV
v = seg.filter(name="v")[0]
assert v.units == pq.mV and float(v.t_start) == 0.0 and float(v.sampling_period.rescale(pq.ms)) == 0.1, v
t = v.times.rescale(pq.ms).magnitude
first = float(seg.spiketrains[0][0])
before = t < first - 0.05
expected = cell["v_rest"] + R_I * (1.0 - np.exp(-t[before] / cell["tau_m"]))
err = np.max(np.abs(v.magnitude[before, 0] - expected))
assert err < 1e-9, f"membrane off the closed form by {err} mV"

# The time to threshold from reset, and the ISI with the refractory period.
to_threshold = cell["tau_m"] * math.log(R_I / (R_I - (cell["v_thresh"] - cell["v_rest"])))
isi = np.diff(seg.spiketrains[0].magnitude)
assert len(seg.spiketrains) == 2 and all(len(s) == len(seg.spiketrains[0]) for s in seg.spiketrains)
assert abs(first - to_threshold) <= 0.1 + 1e-9, (first, to_threshold)
assert np.all(np.abs(isi - (cell["tau_refrac"] + to_threshold)) <= 0.1 + 1e-9), (isi, to_threshold)
sim.end()

# A Poisson source population: the mean rate of many independent trains.
sim.setup(timestep=0.1, rng_seed=7)
src = sim.Population(400, sim.SpikeSourcePoisson(rate=20.0), label="src")
src.record("spikes")
sim.run(1000.0)
counts = np.array([len(s) for s in src.get_data().segments[0].spiketrains])
# 400 trains of 1 s at 20 Hz: the mean count has standard error sqrt(20 / 400).
assert abs(counts.mean() - 20.0) < 4 * math.sqrt(20.0 / 400), counts.mean()
# Poisson counts: variance equals the mean (Fano factor 1), within its spread.
assert abs(counts.var() / counts.mean() - 1.0) < 0.25, counts.var() / counts.mean()
sim.end()

# Scripts that once broke the translation (review of the first version):
sim.setup(timestep=0.1)
noise = sim.Population(20, sim.SpikeSourcePoisson(rate=5000.0), label="a")  # declared first, direct, unrecorded
cells = sim.Population(20, sim.IF_curr_exp(), label="a")                     # labels a, a, a_2
other = sim.Population(20, sim.IF_curr_exp(), label="a_2")
sim.Projection(noise, cells, sim.OneToOneConnector(), sim.StaticSynapse(weight=0.05))
w = sim.RandomDistribution("normal_clipped", mu=0.05, sigma=0.01, low=0.0, high=np.inf)  # an infinite bound
sim.Projection(cells, other, sim.FixedProbabilityConnector(0.2), sim.StaticSynapse(weight=w, delay=1.0))
sim.Projection(other, cells, sim.AllToAllConnector(),
               sim.TsodyksMarkramSynapse(U=0.5, tau_rec=100.0, weight=-0.05, delay=1.0), receptor_type="inhibitory")
sim.run(50.0)
other.record("v")
sim.run(50.0)
v_first = other.get_data("v", clear=True).segments[0].filter(name="v")[0]
sim.run(50.0)
v_second = other.get_data("v").segments[0].filter(name="v")[0]
# neuropil reruns from 0, so the trace covers the whole run (t = 0 ... 100 ms);
# after get_data(clear=True) the next segment starts where that one ended, with
# the sample at 100 ms in both.
assert float(v_first.t_start) == 0.0 and v_first.shape == (1001, 20), (v_first.t_start, v_first.shape)
assert abs(float(v_second.t_start) - 100.0) < 1e-9 and v_second.shape == (501, 20), (v_second.t_start, v_second.shape)
assert np.array_equal(v_first.magnitude[-1], v_second.magnitude[0])
sim.end()

# Tsodyks-Markram's first spike uses U of the resources (no phantom spike at t = 0):
# the membrane after it is that of a static synapse of weight U w, until the second.
sim.setup(timestep=0.1)
spikes = sim.Population(1, sim.SpikeSourceArray(spike_times=[20.0, 60.0]), label="in")
tm = sim.Population(1, sim.IF_curr_exp(), label="tm")
static = sim.Population(1, sim.IF_curr_exp(), label="static")
sim.Projection(spikes, tm, sim.OneToOneConnector(), sim.TsodyksMarkramSynapse(U=0.5, tau_rec=100.0, weight=2.0, delay=1.0))
sim.Projection(spikes, static, sim.OneToOneConnector(), sim.StaticSynapse(weight=1.0, delay=1.0))
for p in (tm, static):
    p.record("v")
sim.run(55.0)
v_tm, v_static = (p.get_data().segments[0].filter(name="v")[0].magnitude[:, 0] for p in (tm, static))
assert np.max(np.abs(v_tm - v_static)) < 1e-9 and np.ptp(v_static) > 1.0, np.max(np.abs(v_tm - v_static))
sim.end()

# An Assembly splits into its populations: Projection(src, E + I, ...) is the two
# projections src -> E and src -> I, spike for spike.
def assembly_net(split):
    sim.setup(timestep=0.1, rng_seed=5)
    src = sim.Population(50, sim.SpikeSourcePoisson(rate=20.0), label="src")
    E = sim.Population(80, sim.IF_curr_exp(i_offset=0.8), label="E")
    I = sim.Population(20, sim.IF_curr_exp(i_offset=0.8), label="I")
    syn = sim.StaticSynapse(weight=0.3, delay=1.0)
    if split:
        for post in (E, I):
            sim.Projection(src, post, sim.FixedProbabilityConnector(0.2), syn)
        prj = sim.Projection(E, I, sim.FixedNumberPreConnector(8), syn)
    else:
        # (PyNN picks an Assembly's default receptor from a set: name it)
        sim.Projection(src, E + I, sim.FixedProbabilityConnector(0.2), syn, receptor_type="excitatory")
        prj = sim.Projection(E, I, sim.FixedNumberPreConnector(8), syn)
    for p in (E, I):
        p.record("spikes")
    sim.run(200.0)
    out = [[st.magnitude.tolist() for st in p.get_data().segments[0].spiketrains] for p in (E, I)]
    n = len(prj)
    sim.end()
    return out, n


(whole, n_whole), (parts, n_parts) = assembly_net(False), assembly_net(True)
assert whole == parts and n_whole == n_parts == 8 * 20, "an Assembly's projection is not its populations' projections"
assert sum(len(t) for pop in whole for t in pop) > 50

# A chip fabric in the loop (as PyCARL co-simulates CARLsim with hardware): the
# network's spikes cross Loihi's emulated mesh; the report comes back.
reports = {}
for hw in (None, "loihi"):
    sim.setup(timestep=0.1, rng_seed=3, hardware=hw)
    src = sim.Population(100, sim.SpikeSourcePoisson(rate=10.0), label="src")
    tgt = sim.Population(100, sim.IF_curr_exp(i_offset=0.9), label="tgt")
    sim.Projection(src, tgt, sim.FixedProbabilityConnector(0.1), sim.StaticSynapse(weight=0.5, delay=1.0))
    sim.Projection(tgt, tgt, sim.FixedProbabilityConnector(0.1), sim.StaticSynapse(weight=0.2, delay=1.0))
    tgt.record("spikes")
    sim.run(200.0)
    reports[hw] = (sim.hardware_report(), tgt.get_spike_counts())
    sim.end()
assert reports[None][0] is None and reports["loihi"][0] is not None, reports
hw_report = reports["loihi"][0]
assert hw_report["preset"] == "loihi" and hw_report["cores_used"] >= 1, hw_report
# The fabric carried the network's spikes (every spike of src and tgt), and some
# arrived a step or more late, as the mesh's latency makes them.
assert hw_report["fabric"]["spikes"] > 0 and hw_report["fabric"]["delayed"] > 0, hw_report["fabric"]

print(json.dumps({"hardware_report_keys": sorted(hw_report)[:8], "first_spike_ms": first, "isi_ms": float(isi.mean()), "analytic_isi_ms": cell["tau_refrac"] + to_threshold,
                  "poisson_mean": float(counts.mean())}))

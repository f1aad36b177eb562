"""pyNN.neuropil on a cluster: setup(cluster=..., token=...) gives the spikes of the
embedded run (started by tests/python.rs against its cluster).

    python check_pynn_cluster.py CONTROL_ADDRESS TOKEN
"""

import json
import sys

import numpy as np

import pyNN.neuropil as sim


def network(**options):
    sim.setup(timestep=0.1, rng_seed=11, **options)
    E = sim.Population(400, sim.IF_curr_exp(tau_m=20.0, v_thresh=-50.0, v_reset=-60.0), label="E")
    I = sim.Population(100, sim.IF_curr_exp(tau_m=20.0, v_thresh=-50.0, v_reset=-60.0), label="I")
    for p in (E, I):
        p.initialize(v=sim.RandomDistribution("uniform", low=-65.0, high=-50.0))
    drive = sim.Population(400, sim.SpikeSourcePoisson(rate=8000.0), label="drive")
    sim.Projection(drive, E, sim.OneToOneConnector(), sim.StaticSynapse(weight=0.1, delay=1.0))
    sim.Projection(E, I, sim.FixedProbabilityConnector(0.1), sim.StaticSynapse(weight=0.2, delay=1.5))
    sim.Projection(I, E, sim.FixedNumberPreConnector(20), sim.StaticSynapse(weight=-0.4, delay=0.8),
                   receptor_type="inhibitory")
    E.record(["spikes", "v"])
    I.record("spikes")
    sim.run(300.0)
    out = {p.label: [st.magnitude.tolist() for st in p.get_data().segments[0].spiketrains] for p in (E, I)}
    v = E.get_data().segments[0].filter(name="v")[0].magnitude
    sim.end()
    return out, v


address, token = sys.argv[1], sys.argv[2]
embedded, v_embedded = network()
cluster, v_cluster = network(cluster=address, token=token)
assert embedded == cluster, "the cluster's spikes differ from the embedded run's"
assert np.array_equal(v_embedded[1:], v_cluster[1:]), "the cluster's V_m differs from the embedded run's"
n = sum(len(t) for trains in embedded.values() for t in trains)
assert n > 100, f"only {n} spikes: the network is too quiet to compare"
print(json.dumps({"spikes": n}))

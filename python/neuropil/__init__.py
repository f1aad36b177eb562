"""neuropil: the Python client of the neuropil spiking neural network simulator.

    import neuropil
    client = neuropil.Client("control:7070", token=...)
    exp = client.submit("examples/microcircuit.toml", {"scaling.neurons": 0.1})
    results = exp.wait().results()          # progress bar while it runs
    results.rates                           # DataFrame: size, spikes, rate_hz, cv_isi
    results.spikes                          # DataFrame: neuron_id, population, time_ms

    results = neuropil.run("examples/microcircuit.toml", {...})   # embedded, same objects
"""

from .client import Client, Experiment, Info
from .embedded import run
from .errors import NeuropilError, RunFailed
from .results import Results

__all__ = ["Client", "Experiment", "Info", "NeuropilError", "Results", "RunFailed", "run"]
__version__ = "0.1.0"

"""The cortical microcircuit at 10 %: on a cluster (python microcircuit.py CONTROL [TOKEN]) or embedded."""
import sys
import neuropil

spec, scale = "examples/microcircuit.toml", {"scaling.neurons": 0.1, "scaling.synapses": 0.1}
if len(sys.argv) > 1:
    results = neuropil.Client(sys.argv[1], token=(sys.argv[2:] or [None])[0]).submit(spec, scale).wait().results()
else:
    results = neuropil.run(spec, scale)
print(results.rates, "\nspike hash", results.spike_hash)

"""neuropil.run: the embedded run through the binary ($NEUROPIL_BIN).

    python check_embedded.py OUT_DIR

Prints one JSON line for tests/python.rs: the spike hash and the rates.
"""

import json
import sys

import neuropil

out = sys.argv[1]
results = neuropil.run("examples/microcircuit.toml", {"scaling.neurons": 0.1, "scaling.synapses": 0.1}, out=out)
assert str(results.dir) == out
summary = json.loads((results.dir / "summary.json").read_text())
assert list(results.rates["rate_hz"]) == [p["rate_hz"] for p in summary["populations"]]
assert len(results.spikes) == sum(p["spikes"] for p in summary["populations"])

# The same errors as the cluster's, from the binary's exit code 2.
try:
    neuropil.run("examples/microcircuit.toml", {"scaling.neurons": -1})
    raise AssertionError("a negative scale ran")
except neuropil.NeuropilError as e:
    assert (e.code, e.field) == ("INVALID_ARGUMENT", "scaling.neurons"), (e.code, e.field, e.message)
try:
    neuropil.run("examples/no-such-file.toml")
    raise AssertionError("a missing file ran")
except FileNotFoundError:
    pass

print(json.dumps({"spike_hash": results.spike_hash, "rates": {k: float(v) for k, v in results.rates["rate_hz"].items()}}))

"""The Python client against a running cluster (started by tests/python.rs).

    python check_cluster.py CONTROL_ADDRESS TOKEN

Asserts what a user relies on and prints one JSON line for the Rust side: the
id, the spike hash and the rates of the microcircuit at 10 %, and where the
files were downloaded.
"""

import json
import sys

import pandas as pd

import neuropil

address, token = sys.argv[1], sys.argv[2]
client = neuropil.Client(address, token=token)
spec = "examples/microcircuit.toml"
scale = {"scaling.neurons": 0.1, "scaling.synapses": 0.1}

# A wrong token: UNAUTHENTICATED, before anything is queued.
try:
    neuropil.Client(address, token="not-" + token).submit(spec, scale)
    raise AssertionError("a wrong token was accepted")
except neuropil.NeuropilError as e:
    assert e.code == "UNAUTHENTICATED", e
try:
    neuropil.Client(address).list()
    raise AssertionError("no token was accepted")
except neuropil.NeuropilError as e:
    assert e.code == "UNAUTHENTICATED", e

# A spec that does not validate: INVALID_ARGUMENT, naming the field.
try:
    client.submit(spec, {**scale, "scaling.neurons": -1})
    raise AssertionError("a negative scale was accepted")
except neuropil.NeuropilError as e:
    assert (e.code, e.field) == ("INVALID_ARGUMENT", "scaling.neurons"), (e.code, e.field, e.message)
try:
    client.submit({"name": "x", "populations": [{"name": "E", "model": "iaf_psc_exp", "size": "ten"}]})
    raise AssertionError("a size of 'ten' was accepted")
except neuropil.NeuropilError as e:
    assert e.code == "INVALID_ARGUMENT" and e.field.startswith("populations[0]"), (e.code, e.field, e.message)

# Unknown ids.
for call in (client.status, client.cancel, client.results):
    try:
        call("no-such-run")
        raise AssertionError(f"{call.__name__} of an unknown id succeeded")
    except neuropil.NeuropilError as e:
        assert (e.code, e.field) == ("NOT_FOUND", "id"), (call.__name__, e.code, e.field, e.message)

# The microcircuit at 10 %, watched to the end (states in order, biological time
# never going back), then its results.
exp = client.submit(spec, scale)
seen, last_ms = [], 0.0
for info in exp.watch(progress=True):
    assert info.bio_time_ms >= last_ms, (info.bio_time_ms, last_ms)
    last_ms = info.bio_time_ms
    if not seen or seen[-1] != info.state:
        seen.append(info.state)
assert seen[-1] == "succeeded", seen
order = ["pending", "running", "succeeded"]
assert [order.index(s) for s in seen] == sorted(order.index(s) for s in seen), seen
final = exp.wait(progress=False).info
results = exp.results()
assert sorted(results.files)[:1] and "summary.json" in results.files and "spikes.parquet" in results.files, results.files

# The rates DataFrame is summary.json's figures, and the status agrees with it.
summary = json.loads((results.dir / "summary.json").read_text())
rates = results.rates
assert list(rates.index) == [p["name"] for p in summary["populations"]]
for p in summary["populations"]:
    assert rates.loc[p["name"], "rate_hz"] == p["rate_hz"] and rates.loc[p["name"], "spikes"] == p["spikes"]
pd.testing.assert_series_equal(final.rates["spikes"], rates["spikes"].astype("uint64"), check_dtype=False)
assert final.spike_hash == results.spike_hash == summary["spike_hash"]
spikes = results.spikes
assert list(spikes.columns) == ["neuron_id", "population", "time_ms"], list(spikes.columns)
assert len(spikes) == sum(p["spikes"] for p in summary["populations"]) == final.spikes

# Only some files; an unknown file names the field.
assert [p.name for p in client.download(exp.id, results.dir / "again", files=["summary.json"])] == ["summary.json"]
try:
    client.download(exp.id, results.dir / "none", files=["../secrets"])
    raise AssertionError("an unknown file was sent")
except neuropil.NeuropilError as e:
    assert (e.code, e.field) == ("INVALID_ARGUMENT", "files"), (e.code, e.field, e.message)

# A finished run cannot be cancelled.
try:
    exp.cancel()
    raise AssertionError("a finished run was cancelled")
except neuropil.NeuropilError as e:
    assert e.code == "FAILED_PRECONDITION", e

# Live spikes of a long run, then cancel it: wait() raises RunFailed, and its
# results are refused.
long = client.submit(spec, {**scale, "run.duration_ms": 600000})
batches = 0
for df in long.spikes(["L4E"]):
    assert list(df.columns) == ["population", "neuron", "time_ms"] and len(df) > 0
    assert set(df["population"]) == {"L4E"}, set(df["population"])
    batches += 1
    if batches == 3:
        break
long.cancel()
try:
    long.wait(progress=False)
    raise AssertionError("a cancelled run succeeded")
except neuropil.RunFailed as e:
    assert e.state == "cancelled", e.state
try:
    long.results()
    raise AssertionError("a cancelled run has results")
except neuropil.NeuropilError as e:
    assert e.code == "ABORTED", e
try:
    client.download(long.id, results.dir / "cancelled")
    raise AssertionError("the service sent results of a cancelled run")
except neuropil.NeuropilError as e:
    assert (e.code, e.field) == ("FAILED_PRECONDITION", "id"), (e.code, e.field, e.message)

print(json.dumps({"id": exp.id, "spike_hash": results.spike_hash, "dir": str(results.dir),
                  "rates": {k: float(v) for k, v in rates["rate_hz"].items()}}))

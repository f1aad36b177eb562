"""The compose cluster (deploy/compose.yml) through the Python client, after
python/examples/microcircuit.py ran on it (started by tests/image.rs).

    python check_compose.py CONTROL0 CONTROL1 HWEMU TOKEN

Prints one JSON line: the last experiment's id, state, nodes and spike hash, and
the hash of the summary.json that the *other* control replica serves (both
replicas share the results volume); checks that the hardware-emulation service
answers with the token and refuses without it.
"""

import json
import sys
import tempfile

import grpc

import neuropil
from neuropil.v1 import hardware_pb2, hardware_pb2_grpc

c0, c1, hwemu, token = sys.argv[1:5]
stub = hardware_pb2_grpc.HardwareServiceStub(grpc.insecure_channel(hwemu))
presets = stub.ListPresets(hardware_pb2.ListPresetsRequest(), metadata=(("authorization", f"Bearer {token}"),), timeout=30)
assert [p.name for p in presets.presets] == ["spinnaker1", "spinnaker2", "loihi", "truenorth", "dynapse"], presets
try:
    stub.ListPresets(hardware_pb2.ListPresetsRequest(), timeout=30)
    raise AssertionError("hwemu answered without a token")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.UNAUTHENTICATED, e

last = neuropil.Client(c0, token=token).list()[-1]
other = neuropil.Client(c1, token=token).results(last.id, tempfile.mkdtemp(prefix="neuropil-compose-"))
print(json.dumps({"id": last.id, "state": last.state, "nodes": sorted(last.nodes), "spike_hash": last.spike_hash,
                  "other_replica_hash": other.spike_hash}))

"""A client of a neuropil cluster's ExperimentService (the control replicas)."""

import os
import pathlib
import tempfile
import time

import grpc
import pandas as pd

from . import spec as _spec
from .errors import NeuropilError, RunFailed, from_rpc
from .progress import bar
from .results import Results
from .v1 import cluster_pb2 as pb
from .v1 import cluster_pb2_grpc as rpc

_TERMINAL = {"succeeded", "failed", "cancelled"}


def _state_name(value):
    return pb.ExperimentState.Name(value).removeprefix("EXPERIMENT_STATE_").lower()


class Info:
    """An experiment's status (ExperimentInfo): ``state`` as a word
    (``pending``, ``running``, ``recovering``, ``succeeded``, ``failed``,
    ``cancelled``), ``rates`` as a DataFrame; every other field as in
    proto/neuropil/v1/cluster.proto (``bio_time_ms``, ``rtf``, ``spike_hash``,
    ``nodes``, ``events``, ...); the message itself is ``proto``."""

    def __init__(self, proto):
        self.proto = proto

    def __getattr__(self, name):
        return getattr(self.proto, name)

    @property
    def state(self):
        return _state_name(self.proto.state)

    @property
    def done(self):
        return self.state in _TERMINAL

    @property
    def rates(self):
        rows = [{"population": p.population, "spikes": p.spikes, "rate_hz": p.rate_hz} for p in self.proto.populations]
        return pd.DataFrame(rows, columns=["population", "spikes", "rate_hz"]).set_index("population")

    def __repr__(self):
        p = self.proto
        return f"<neuropil.Info {p.id} {self.state} {p.bio_time_ms:.1f}/{p.duration_ms:.1f} ms RTF {p.rtf:.2f}>"


class Experiment:
    """A submitted experiment: ``id`` and what can be asked about it."""

    def __init__(self, client, id, info=None):
        self.client = client
        self.id = id
        self.info = info

    def status(self):
        return self.client.status(self.id)

    def watch(self, progress=True):
        return self.client.watch(self.id, progress=progress)

    def wait(self, progress=True):
        self.info = self.client.wait(self.id, progress=progress)
        return self

    def spikes(self, populations=None):
        return self.client.spikes(self.id, populations)

    def results(self, directory=None):
        return self.client.results(self.id, directory)

    def cancel(self):
        return self.client.cancel(self.id)

    def checkpoint(self):
        return self.client.checkpoint(self.id)

    def __repr__(self):
        return f"<neuropil.Experiment {self.id}>"


class Client:
    """Talks to a control replica at ``address`` (``host:port``, or an
    ``http://`` / ``https://`` URL).

    ``token`` is the bearer token of the cluster's API (``--token-file`` of the
    control). ``tls``: None (plaintext, or TLS with the system's roots for an
    ``https://`` address), True (TLS, system roots), or the CA certificate that
    signed the control's (PEM bytes, or a path to them). Every failure raises
    :class:`NeuropilError` with the gRPC code and the field at fault.
    """

    def __init__(self, address="127.0.0.1:7070", token=None, tls=None, timeout=60.0):
        target = address
        for prefix in ("http://", "https://"):
            if target.startswith(prefix):
                target = target[len(prefix):]
                if prefix == "https://" and tls is None:
                    tls = True
        target = target.rstrip("/")
        options = [("grpc.max_receive_message_length", 64 << 20)]
        if tls:
            ca = None
            if isinstance(tls, (str, pathlib.Path)):
                ca = pathlib.Path(tls).read_bytes()
            elif isinstance(tls, bytes):
                ca = tls
            self._channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=ca), options)
        else:
            self._channel = grpc.insecure_channel(target, options)
        self._stub = rpc.ExperimentServiceStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.address = address
        self.timeout = timeout

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, method, request):
        try:
            return getattr(self._stub, method)(request, metadata=self._metadata, timeout=self.timeout)
        except grpc.RpcError as e:
            raise from_rpc(e) from None

    def _stream(self, method, request):
        try:
            for item in getattr(self._stub, method)(request, metadata=self._metadata):
                yield item
        except grpc.RpcError as e:
            raise from_rpc(e) from None

    def submit(self, spec, overrides=None, *, format=None, shards=0, placement=None):
        """Queue an experiment: a file path, a dict or the document's text, with
        ``overrides`` ({path: value} or ["path=value"], as ``--set``). Returns an
        :class:`Experiment`; a spec that does not validate raises
        NeuropilError(INVALID_ARGUMENT) naming the field."""
        text, fmt = _spec.document(spec, format)
        req = pb.SubmitRequest(document=text, format=fmt, set=_spec.overrides(overrides), shards=shards)
        for k, v in (placement or {}).items():
            req.placement[k] = v
        resp = self._call("Submit", req)
        return Experiment(self, resp.id, Info(resp.info))

    def experiment(self, id):
        """An :class:`Experiment` handle for a known id."""
        return Experiment(self, id)

    def status(self, id):
        return Info(self._call("Get", pb.GetRequest(id=id)))

    def list(self):
        return [Info(e) for e in self._call("List", pb.ListRequest()).experiments]

    def cancel(self, id):
        return Info(self._call("Cancel", pb.CancelRequest(id=id)))

    def checkpoint(self, id):
        return Info(self._call("Checkpoint", pb.CheckpointRequest(id=id)))

    def watch(self, id, progress=True):
        """Status updates until the run ends (an iterator of :class:`Info`),
        with a progress bar (tqdm; a widget in a notebook) unless
        ``progress=False``."""
        with bar(progress, id) as b:
            for e in self._stream("WatchProgress", pb.WatchRequest(id=id)):
                info = Info(e)
                b.show(info.bio_time_ms, info.duration_ms, info.rtf, info.spikes, info.state)
                yield info

    def wait(self, id, progress=True):
        """Watch to the end; the final :class:`Info`. Raises :class:`RunFailed`
        when the run failed or was cancelled."""
        while True:
            last = None
            for last in self.watch(id, progress=progress):
                pass
            if last is None or not last.done:
                last = self.status(id)
            if last.done:
                break
            # The stream ended with the run still going (a replica restarted, a
            # proxy closed it): watch again.
            time.sleep(0.5)
        if last.state != "succeeded":
            raise RunFailed(last)
        return last

    def spikes(self, id, populations=None):
        """The spikes of a running experiment as they happen: an iterator of
        DataFrames (population, neuron, time_ms), from subscription on."""
        req = pb.StreamSpikesRequest(id=id, populations=list(populations or []))
        for b in self._stream("StreamSpikes", req):
            names = list(b.populations)
            yield pd.DataFrame(
                {
                    "population": pd.Categorical.from_codes(list(b.population), categories=names),
                    "neuron": list(b.neuron),
                    "time_ms": list(b.time_ms),
                }
            )

    def download(self, id, directory, files=None):
        """Write the result files of a finished run into ``directory``; their paths."""
        directory = pathlib.Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        written, handle, name, size = [], None, None, 0

        def complete():
            if handle is not None and handle.tell() != size:
                raise NeuropilError("DATA_LOSS", f"file: the stream of {name} ended at byte {handle.tell()} of {size}")

        try:
            for chunk in self._stream("GetResults", pb.GetResultsRequest(id=id, files=list(files or []))):
                if chunk.file != name:
                    complete()
                    if handle:
                        handle.close()
                    name, size = chunk.file, chunk.size
                    if pathlib.PurePath(name).name != name or name in ("", ".", "..") or any(
                        sep and sep in name for sep in (os.sep, os.altsep, "/", "\\")
                    ):
                        raise NeuropilError("INTERNAL", f"file: the service sent a file named {name!r}")
                    path = directory / name
                    handle = open(path, "wb")
                    written.append(path)
                if handle.tell() != chunk.offset:
                    raise NeuropilError("DATA_LOSS", f"file: {name} chunk at {chunk.offset}, expected {handle.tell()}")
                handle.write(chunk.data)
            complete()
        finally:
            if handle:
                handle.close()
        return written

    def results(self, id, directory=None):
        """The :class:`Results` of a finished run, downloaded into ``directory``
        (default: a new temporary directory, ``Results.dir``)."""
        info = self.status(id)
        if info.state != "succeeded":
            raise RunFailed(info) if info.done else NeuropilError(
                "FAILED_PRECONDITION", f"id: experiment {id} is {info.state}; wait() for it first"
            )
        directory = directory or tempfile.mkdtemp(prefix=f"neuropil-{id}-")
        self.download(id, directory)
        return Results(directory, info)

"""The exceptions of the neuropil client: each carries the gRPC status code and,
where the service names one, the path of the field at fault."""

import re

# "populations[2].size: must be at least 1" -> "populations[2].size"
_FIELD = re.compile(r"^(?:error: )?([A-Za-z_][A-Za-z0-9_]*(?:\[\d+\]|\.[A-Za-z0-9_]+)*): ")


class NeuropilError(Exception):
    """A request the service (or the embedded run) refused.

    ``code`` is the gRPC status code's name (``"INVALID_ARGUMENT"``,
    ``"UNAUTHENTICATED"``, ``"NOT_FOUND"``, ``"RESOURCE_EXHAUSTED"``,
    ``"FAILED_PRECONDITION"``, ``"UNAVAILABLE"``, ...); ``field`` the path of the
    experiment or request field the message names (``"populations[0].size"``,
    ``"id"``), or None; ``message`` the service's words.
    """

    def __init__(self, code, message, field=None):
        self.code = code
        self.message = message
        self.field = field if field is not None else field_of(message)
        super().__init__(f"{code}: {message}")


class RunFailed(NeuropilError):
    """The experiment was accepted but did not succeed (failed or cancelled).

    ``state`` is ``"failed"`` or ``"cancelled"``, ``info`` the last status.
    """

    def __init__(self, info):
        self.state = info.state
        self.info = info
        super().__init__("ABORTED", f"experiment {info.id} {info.state}: {info.message}", field=None)


def field_of(message):
    """The field path a message starts with, or None."""
    m = _FIELD.match(message or "")
    return m.group(1) if m else None


def from_rpc(e):
    """A NeuropilError from a grpc.RpcError."""
    code = e.code()
    name = code.name if code is not None else "UNKNOWN"
    return NeuropilError(name, e.details() or str(e))

"""``neuropil.run``: an experiment embedded on this machine, through the binary."""

import os
import pathlib
import re
import shutil
import subprocess
import tempfile

from . import spec as _spec
from .errors import NeuropilError
from .progress import bar
from .results import Results

# The binary's progress log when stderr is not a terminal: one line per tenth.
#  " 40.0%  440.0/1100.0 ms  RTF 0.35  spikes 12345"
_PROGRESS = re.compile(r"^\s*[\d.]+%\s+([\d.]+)/([\d.]+) ms\s+RTF ([\d.]+)\s+spikes (\d+)\s*$")


def binary(path=None):
    """The neuropil binary: ``path``, $NEUROPIL_BIN, or ``neuropil`` on PATH."""
    found = path or os.environ.get("NEUROPIL_BIN") or shutil.which("neuropil")
    if not found or not os.access(found, os.X_OK):
        raise FileNotFoundError(
            "neuropil: no neuropil binary (looked at binary=, $NEUROPIL_BIN and PATH): build it with "
            "`cargo build --release` and set NEUROPIL_BIN=target/release/neuropil, or put it on PATH"
        )
    return found


def run(spec, overrides=None, *, out=None, threads=None, shards=None, format=None, progress=True, binary_path=None):
    """Run an experiment embedded (``neuropil run``) and return its :class:`Results`.

    ``spec`` and ``overrides`` as for :meth:`Client.submit`; ``out`` the result
    directory (default: a new temporary one). A spec that does not validate
    raises NeuropilError(INVALID_ARGUMENT) naming the field, as the cluster does.
    """
    exe = binary(binary_path)
    text, fmt = _spec.document(spec, format)
    out = pathlib.Path(out or tempfile.mkdtemp(prefix="neuropil-run-"))
    with tempfile.TemporaryDirectory(prefix="neuropil-spec-") as tmp:
        path = pathlib.Path(spec) if _is_file(spec) else pathlib.Path(tmp) / f"experiment.{fmt}"
        if not _is_file(spec):
            path.write_text(text)
        cmd = [exe, "run", str(path), "--out", str(out)]
        for s in _spec.overrides(overrides):
            cmd += ["--set", s]
        if threads:
            cmd += ["--threads", str(threads)]
        if shards:
            cmd += ["--shards", str(shards)]
        other = []
        with bar(progress, path.stem) as b:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            try:
                for line in proc.stderr:
                    m = _PROGRESS.match(line)
                    if m:
                        b.show(float(m[1]), float(m[2]), float(m[3]), int(m[4]))
                    else:
                        other.append(line.rstrip("\n"))
                code = proc.wait()
            finally:
                if proc.poll() is None:  # interrupted (Ctrl-C, a notebook's stop): the run stops too
                    proc.kill()
                    proc.wait()
    if code != 0:
        message = "\n".join(l for l in other if l.strip()) or f"neuropil run exited with {code}"
        first = next((l for l in other if l.startswith("error: ")), message)
        raise NeuropilError("INVALID_ARGUMENT" if code == 2 else "INTERNAL", first.removeprefix("error: "))
    return Results(out)


def _is_file(spec):
    return isinstance(spec, (str, os.PathLike)) and not isinstance(spec, dict) and _spec_path(spec)


def _spec_path(spec):
    try:
        return pathlib.Path(spec).is_file()
    except (OSError, ValueError):
        return False

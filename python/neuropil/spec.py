"""Experiment documents and ``--set`` overrides, as the services read them."""

import json
import math
import os
import pathlib

FORMATS = {".toml": "toml", ".json": "json", ".yaml": "yaml", ".yml": "yaml"}


def document(spec, format=None):
    """(text, format) of an experiment given as a file path, a dict or a text.

    A ``str`` or path naming an existing file is read (its format from the
    suffix); a dict is sent as JSON; any other string is the document itself
    (TOML unless ``format`` says otherwise).
    """
    if isinstance(spec, dict):
        try:
            return json.dumps(spec, allow_nan=False), "json"
        except ValueError as e:
            raise ValueError(f"spec: {e}: JSON has no infinity or NaN; leave the field out instead") from None
    if isinstance(spec, (str, os.PathLike)):
        path = pathlib.Path(spec)
        looks_like_path = isinstance(spec, os.PathLike) or ("\n" not in spec and len(spec) < 4096)
        if looks_like_path and path.is_file():
            fmt = format or FORMATS.get(path.suffix.lower())
            if fmt is None:
                raise ValueError(f"spec: {path} has suffix {path.suffix!r}; name the format (format='toml', 'json' or 'yaml')")
            return path.read_text(), fmt
        if isinstance(spec, os.PathLike) or (looks_like_path and path.suffix.lower() in FORMATS and "=" not in spec):
            raise FileNotFoundError(f"spec: no experiment file {path}")
        return spec, format or "toml"
    raise TypeError(f"spec: give a file path, a dict or the document's text, not {type(spec).__name__}")


def value(v):
    """A Python value as the TOML value of a ``path=value`` override."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"overrides: {v} is not a finite number")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"overrides: cannot write {type(v).__name__} {v!r} as a value")


def overrides(o):
    """``["path=value", ...]`` from a dict {path: value} or a list of strings."""
    if o is None:
        return []
    if isinstance(o, dict):
        return [f"{k}={value(v)}" for k, v in o.items()]
    if isinstance(o, str):
        return [o]
    out = list(o)
    for s in out:
        if not isinstance(s, str) or "=" not in s:
            raise ValueError(f"overrides: {s!r} is not 'path=value' (or give a dict)")
    return out

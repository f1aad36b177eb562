"""PyNN's own system scenarios (test/system/scenarios/ of PyNN's source
distribution) against pyNN.neuropil.

    python pynn_scenarios.py PYNN_SOURCE      (a directory, or PyNN's sdist .tar.gz)

Each scenario function is called with sim = pyNN.neuropil, as PyNN's test suite
calls it with pyNN.nest. Prints one JSON line: {"module.function": outcome},
outcome "pass", "fail: ...", "unsupported: ..." (NotImplementedError: a feature
pyNN.neuropil does not have, named) or "error: ...".
"""

import importlib
import inspect
import json
import pathlib
import sys
import traceback

import numpy as np

src = pathlib.Path(sys.argv[1])
if src.is_file():  # the sdist: unpack it beside itself
    import tarfile

    with tarfile.open(src) as tar:
        tar.extractall(src.parent, filter="data")
        top = tar.getnames()[0].split("/")[0]
    src = src.parent / top
sys.path.insert(0, str(src / "test" / "system"))

import pyNN.neuropil as sim  # noqa: E402

outcomes = {}
for path in sorted((src / "test" / "system" / "scenarios").glob("test_*.py")):
    try:
        module = importlib.import_module(f"scenarios.{path.stem}")
    except Exception as e:  # noqa: BLE001
        outcomes[path.stem] = f"error: cannot import: {type(e).__name__}: {e}"
        continue
    for name, fn in sorted(vars(module).items()):
        if not (name.startswith("test_") and inspect.isfunction(fn) and fn.__module__ == module.__name__):
            continue
        if "sim" not in inspect.signature(fn).parameters:
            continue
        key = f"{path.stem}.{name}"
        np.random.seed(12345)
        try:
            fn(sim)
            outcomes[key] = "pass"
        except NotImplementedError as e:
            outcomes[key] = f"unsupported: {e}"
        except AssertionError as e:
            outcomes[key] = "fail: " + (str(e).splitlines() or [""])[0][:300]
        except BaseException as e:  # noqa: BLE001 (pytest.skip raises a BaseException)
            kind = type(e).__name__
            if kind == "Skipped":
                outcomes[key] = f"skipped by the scenario: {e}"
            else:
                tb = traceback.extract_tb(e.__traceback__)[-1]
                outcomes[key] = f"error: {kind}: {str(e)[:200]} ({pathlib.Path(tb.filename).name}:{tb.lineno})"
        finally:
            try:
                sim.end()
            except Exception:
                pass
print(json.dumps(outcomes))

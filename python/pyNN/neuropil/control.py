"""setup, run, reset, end and the state queries."""

import shutil
import tempfile

from pyNN import common
from pyNN.common.control import DEFAULT_MIN_DELAY, DEFAULT_TIMESTEP
from pyNN.recording import get_io

from . import simulator


def setup(timestep=DEFAULT_TIMESTEP, min_delay=DEFAULT_MIN_DELAY, **extra_params):
    """Start a new network.

    neuropil's options: ``cluster="host:port"`` (run on a neuropil cluster; ``token=``
    its API token; default: embedded through the neuropil binary), ``binary=`` (the
    binary; default $NEUROPIL_BIN or PATH), ``threads=``, ``rng_seed=`` (the seed of
    every random draw neuropil makes: connections, initial values, Poisson trains;
    default 1), ``progress=True`` (a progress bar per run), ``hardware="loihi"`` (run
    with a neuromorphic chip's fabric in the loop, as PyCARL does: a preset of
    ``neuropil hwemu presets``, or a dict ``{"preset": ..., "mapping": ...,
    "neurons_per_core": ...}``; spikes then travel over the emulated fabric and the
    run's summary holds the hardware report, ``sim.hardware_report()``).
    """
    if extra_params.get("spike_precision", "on_grid") != "on_grid":
        raise NotImplementedError(
            "pyNN.neuropil: spikes are on the time grid (spike_precision='on_grid'); precise spike times "
            "are not supported"
        )
    max_delay = extra_params.get("max_delay", common.control.DEFAULT_MAX_DELAY)
    common.setup(timestep, min_delay, **extra_params)
    simulator.state.clear()
    simulator.state.dt = timestep
    # 'auto': the smallest delay of the network, known once it runs (dt until then)
    simulator.state.auto_min_delay = min_delay in (None, "auto")
    simulator.state.min_delay = timestep if simulator.state.auto_min_delay else min_delay
    simulator.state.max_delay = max_delay
    known = {"cluster", "token", "binary", "threads", "rng_seed", "progress", "hardware"}
    simulator.state.options = {k: v for k, v in extra_params.items() if k in known}
    _remove_results()
    simulator.state.out_dir = tempfile.mkdtemp(prefix="pynn-neuropil-")
    return rank()


def _remove_results():
    out = getattr(simulator.state, "out_dir", None)
    if out:
        shutil.rmtree(out, ignore_errors=True)
        simulator.state.out_dir = None


def end(compatible_output=True):
    for population, variables, filename in simulator.state.write_on_end:
        io = get_io(filename)
        population.write_data(io, variables)
    simulator.state.write_on_end = []
    # The recorders read the last run's files when asked: load them before the
    # files go, so get_data() still answers after end().
    if simulator.state.results is not None:
        simulator.state.results.load()
    _remove_results()


run, run_until = common.build_run(simulator)
run_for = run
reset = common.build_reset(simulator)
initialize = common.initialize

get_current_time, get_time_step, get_min_delay, get_max_delay, num_processes, rank = common.build_state_queries(
    simulator
)


def hardware_report():
    """The last run's hardware report (latency, loss, link utilisation, energy of
    the emulated fabric), or None without ``setup(hardware=...)``."""
    r = simulator.state.results
    if r is None:
        raise RuntimeError("pyNN.neuropil: no results: call run() first")
    return r.results.summary.get("hardware")

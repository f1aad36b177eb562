"""Recording: what a script records becomes neuropil recorders; after a run the
recorders read spikes.parquet and state.parquet back."""

import numpy as np
from pyNN import recording

from . import simulator


class Recorder(recording.Recorder):
    _simulator = simulator

    def _record(self, variable, new_ids, sampling_interval=None):
        if sampling_interval is not None:
            self.sampling_interval = sampling_interval

    def _results(self):
        r = self._simulator.state.results
        if r is None:
            raise RuntimeError("pyNN.neuropil: no results: call run() first")
        return r

    def _get_spiketimes(self, ids, clear=False):
        r = self._results()
        pop = self.population
        times = r.spikes_of(pop)
        start = float(self._recording_start_time.magnitude)
        out = {}
        for id in ids:
            t = times.get(pop.id_to_index(id), np.array([], dtype=float))
            out[int(id)] = t[(t >= start) & (t <= self._simulator.state.t + 1e-9)]
        return out

    def _get_all_signals(self, variable, ids, clear=False):
        r = self._results()
        pop = self.population
        native = pop.celltype.variable_map.get(variable.name, variable.name)
        scale = pop.celltype.scale_factors.get(variable.name, 1.0)
        index = [pop.id_to_index(id) for id in ids]
        times, samples = r.samples_of(pop, native, index)  # samples follow each step: from t = interval
        start = float(self._recording_start_time.magnitude)
        # (neuropil runs whole epochs of the smallest delay: samples past t are dropped)
        keep = (times >= start - 1e-9) & (times <= self._simulator.state.t + 1e-9)
        samples = samples[keep] * scale
        if start > 0:
            return samples, None
        initial = np.array([_initial(pop, variable.name, i) for i in index], dtype=float)
        return (np.vstack([initial[np.newaxis, :], samples]) if samples.size else initial[np.newaxis, :]), None

    def _local_count(self, variable, filter_ids=None):
        if variable.name != "spikes":
            raise ValueError("pyNN.neuropil: count() counts spikes")
        spikes = self._get_spiketimes(self.filter_recorded(variable, filter_ids))
        return {id: len(t) for id, t in spikes.items()}

    def _clear_simulator(self):
        pass

    def _reset(self):
        pass


def _initial(pop, variable, index):
    # t = 0 is not sampled by neuropil (samples follow each step, as NEST's); the
    # initial value stands there when it is one number, NaN when neuropil drew it.
    from pyNN.random import RandomDistribution

    value = pop.initial_values.get(variable)
    if value is None or isinstance(getattr(value, "base_value", None), RandomDistribution):
        return np.nan
    try:
        v = value[index]
    except Exception:
        return np.nan
    return float(v)

"""Populations, views and assemblies: PyNN's common classes over neuropil's
populations (one neuropil population per PyNN Population)."""

import numpy as np
from pyNN import common, errors
from pyNN.parameters import ParameterSpace, simplify
from pyNN.standardmodels import StandardCellType

from . import simulator
from .recording import Recorder


class Assembly(common.Assembly):
    _simulator = simulator


class PopulationView(common.PopulationView):
    _assembly_class = Assembly
    _simulator = simulator

    def _get_parameters(self, *names):
        return _get_parameters(self, names)

    def _get_native_parameters(self, *names):
        out = {}
        for name in names:
            value = self.parent._parameters[name]
            if isinstance(value, np.ndarray):
                value = value[self.mask]
            out[name] = simplify(value)
        return ParameterSpace(out, shape=(self.size,))

    def _set_parameters(self, parameter_space):
        _no_change_after_run(self.parent)
        parameter_space.evaluate(simplify=False)
        for name, value in parameter_space.items():
            current = self.parent._parameters[name]
            full = np.array(np.broadcast_to(current, (self.parent.size,)), dtype=np.asarray(value).dtype)
            full[self.mask] = value
            self.parent._parameters[name] = simplify(full)

    def _set_initial_value_array(self, variable, initial_values):
        _no_change_after_run(self.parent)

    def _get_view(self, selector, label=None):
        return PopulationView(self, selector, label)


class Population(common.Population):
    __doc__ = common.Population.__doc__
    _simulator = simulator
    _recorder_class = Recorder
    _assembly_class = Assembly

    def _create_cells(self):
        if not hasattr(self.celltype, "neuropil_name"):
            raise errors.InvalidModelError(
                f"pyNN.neuropil: {type(self.celltype).__name__} is not a neuropil model; "
                f"the standard models it has: {', '.join(_model_names())}"
            )
        first = simulator.state.id_counter
        self.all_cells = np.array([simulator.ID(i) for i in range(first, first + self.size)], dtype=simulator.ID)
        self._mask_local = np.ones((self.size,), bool)
        parameter_space = self.celltype.native_parameters
        parameter_space.shape = (self.size,)
        parameter_space.evaluate(simplify=True)
        self._parameters = parameter_space.as_dict()
        if "spike_times" in self._parameters:
            _check_spike_times(self._parameters["spike_times"])
        for id in self.all_cells:
            id.parent = self
        simulator.state.id_counter += self.size
        simulator.state.populations.append(self)

    def _set_initial_value_array(self, variable, initial_values):
        _no_change_after_run(self)

    def _get_view(self, selector, label=None):
        return PopulationView(self, selector, label)

    def _get_parameters(self, *names):
        return _get_parameters(self, names)

    def _get_native_parameters(self, *names):
        return ParameterSpace({name: simplify(self._parameters[name]) for name in names}, shape=(self.size,))

    def _set_parameters(self, parameter_space):
        _no_change_after_run(self)
        parameter_space.evaluate(simplify=True)
        for name, value in parameter_space.items():
            self._parameters[name] = value

    def inject(self, current_source):
        if not hasattr(current_source, "targets"):
            raise NotImplementedError(
                f"pyNN.neuropil: {type(current_source).__name__} is not supported; neuropil has DCSource "
                "(and i_offset for a constant current)"
            )
        current_source.inject_into(self)


def _check_spike_times(times):
    from pyNN.parameters import Sequence

    seqs = [times] if isinstance(times, Sequence) else list(np.asarray(times, dtype=object).flat)
    for i, seq in enumerate(seqs):
        t = np.asarray(seq.value if isinstance(seq, Sequence) else seq, dtype=float)
        if t.size > 1 and np.any(np.diff(t) < 0):
            raise errors.InvalidParameterValueError(
                f"pyNN.neuropil: spike_times of source {i} are not in increasing order: {t}"
            )


def _get_parameters(pop, names):
    celltype = pop.celltype
    if isinstance(celltype, StandardCellType):
        if any(name in celltype.computed_parameters() for name in names):
            native_names = celltype.get_native_names()
        else:
            native_names = celltype.get_native_names(*names)
        return celltype.reverse_translate(pop._get_native_parameters(*native_names))
    return pop._get_native_parameters(*names)


def _no_change_after_run(pop):
    # A changed network after a run would make the next run's first part differ
    # from what was recorded: neuropil reruns from t = 0 (simulator.py).
    if simulator.state.t > 0:
        raise NotImplementedError(
            f"pyNN.neuropil: {pop.label}: parameters and initial values cannot change after run(); "
            "call reset() first (neuropil runs the whole experiment from t = 0)"
        )


def _model_names():
    from . import standardmodels

    return sorted(
        n for n, o in vars(standardmodels).items() if isinstance(o, type) and issubclass(o, StandardCellType)
        and hasattr(o, "neuropil_name")
    )

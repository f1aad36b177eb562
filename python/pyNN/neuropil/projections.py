"""Projections: a PyNN connector and synapse type become one neuropil projection
whose connectivity neuropil draws itself, from the run's seed (PyNN's "native
RNG" semantics: the same statistics as the connector, not the same draws as
PyNN's Python connectors)."""

import numpy as np
from pyNN import common, connectors
from pyNN.space import Space

from . import simulator


class Projection(common.Projection):
    __doc__ = common.Projection.__doc__
    _simulator = simulator

    @property
    def _static_synapse_class(self):
        from .standardmodels import StaticSynapse

        return StaticSynapse

    def __init__(self, presynaptic_population, postsynaptic_population, connector, synapse_type=None,
                 source=None, receptor_type=None, space=Space(), label=None):
        common.Projection.__init__(self, presynaptic_population, postsynaptic_population, connector,
                                   synapse_type, source, receptor_type, space, label)
        if type(connector) not in RULES:
            raise NotImplementedError(
                f"pyNN.neuropil: {type(connector).__name__} is not supported; neuropil draws connections with "
                f"{', '.join(c.__name__ for c in RULES)}"
            )
        for end, pop in (("presynaptic", presynaptic_population), ("postsynaptic", postsynaptic_population)):
            if isinstance(pop, common.Assembly) or (
                isinstance(pop, common.PopulationView)
                and not np.array_equal(pop.grandparent.id_to_index(pop.all_cells), np.arange(pop.grandparent.size))
            ):
                raise NotImplementedError(
                    f"pyNN.neuropil: the {end} side of a projection must be a whole Population "
                    f"(neuropil connects populations); {pop.label} is a {type(pop).__name__} of {pop.size} cells"
                )
        simulator.state.projections.append(self)

    def __len__(self):
        n = expected_size(self)
        if n is None:
            raise NotImplementedError(
                f"pyNN.neuropil: the number of connections of a {type(self._connector).__name__} is drawn when "
                "the network is built, inside neuropil; the summary's `synapses` counts all of them"
            )
        return n

    @property
    def connections(self):
        raise NotImplementedError(
            "pyNN.neuropil: individual connections are drawn inside neuropil and not read back yet"
        )

    def set(self, **attributes):
        raise NotImplementedError("pyNN.neuropil: synapse parameters are fixed when the projection is made")

    def _get_attributes_as_list(self, names):
        raise NotImplementedError(
            "pyNN.neuropil: individual connections are drawn inside neuropil and not read back yet"
        )

    def _get_attributes_as_arrays(self, names, multiple_synapses="sum"):
        self._get_attributes_as_list(names)


RULES = {
    connectors.AllToAllConnector: "all_to_all",
    connectors.OneToOneConnector: "one_to_one",
    connectors.FixedProbabilityConnector: "pairwise_bernoulli",
    connectors.FixedNumberPreConnector: "fixed_indegree",
    connectors.FixedNumberPostConnector: "fixed_outdegree",
    connectors.FixedTotalNumberConnector: "fixed_total_number",
}


def base(pop):
    return pop.grandparent if isinstance(pop, common.PopulationView) else pop


def expected_size(prj):
    c = prj._connector
    pre, post = prj.pre.size, prj.post.size
    same = base(prj.pre) is base(prj.post)
    autapses = getattr(c, "allow_self_connections", True)
    if isinstance(c, connectors.AllToAllConnector):
        return pre * post - (min(pre, post) if same and not autapses else 0)
    if isinstance(c, connectors.OneToOneConnector):
        return min(pre, post)
    if isinstance(c, connectors.FixedNumberPreConnector) and isinstance(c.n, int):
        return c.n * post
    if isinstance(c, connectors.FixedNumberPostConnector) and isinstance(c.n, int):
        return c.n * pre
    if isinstance(c, connectors.FixedTotalNumberConnector):
        return int(c.n)
    return None

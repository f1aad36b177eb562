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
        self._pairs = pairs(self)
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


def members(pop, end):
    """The whole Populations a side of a projection consists of."""
    if isinstance(pop, common.Assembly):
        out = []
        for p in pop.populations:
            out.extend(members(p, end))
        return out
    if isinstance(pop, common.PopulationView):
        parent = pop.grandparent
        if not np.array_equal(parent.id_to_index(pop.all_cells), np.arange(parent.size)):
            raise NotImplementedError(
                f"pyNN.neuropil: the {end} side of a projection must be whole Populations (or an Assembly of "
                f"them: neuropil connects populations); {pop.label} is a PopulationView of {pop.size} of "
                f"{parent.label}'s {parent.size} cells"
            )
        return [parent]
    return [pop]


def pairs(prj):
    """The (source population, target population) projections neuropil makes for
    `prj`: an Assembly on either side splits into its populations where the rule
    allows it exactly (pairs drawn independently; a target's draw when the source
    side is one population; a source's when the target side is)."""
    c = prj._connector
    pre, post = members(prj.pre, "presynaptic"), members(prj.post, "postsynaptic")
    if len(pre) > 1 or len(post) > 1:
        splits = (isinstance(c, (connectors.AllToAllConnector, connectors.FixedProbabilityConnector))
                  or (isinstance(c, connectors.FixedNumberPreConnector) and len(pre) == 1)
                  or (isinstance(c, connectors.FixedNumberPostConnector) and len(post) == 1))
        if not splits:
            raise NotImplementedError(
                f"pyNN.neuropil: a {type(c).__name__} over an Assembly of several populations does not split "
                "into per-population rules (AllToAll and FixedProbability do; FixedNumberPre with one source "
                "population; FixedNumberPost with one target population)"
            )
    if len({id(p) for p in pre}) < len(pre) or len({id(p) for p in post}) < len(post):
        raise NotImplementedError("pyNN.neuropil: a population appears twice on one side of a projection")
    return [(a, b) for a in pre for b in post]


RULES = {
    connectors.AllToAllConnector: "all_to_all",
    connectors.OneToOneConnector: "one_to_one",
    connectors.FixedProbabilityConnector: "pairwise_bernoulli",
    connectors.FixedNumberPreConnector: "fixed_indegree",
    connectors.FixedNumberPostConnector: "fixed_outdegree",
    connectors.FixedTotalNumberConnector: "fixed_total_number",
}


def expected_size(prj):
    total = 0
    for pre_pop, post_pop in prj._pairs:
        n = pair_size(prj._connector, pre_pop, post_pop)
        if n is None:
            return None
        total += n
    return total


def pair_size(c, pre_pop, post_pop):
    pre, post = pre_pop.size, post_pop.size
    same = pre_pop is post_pop
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

"""pyNN.neuropil: PyNN's API on neuropil (``import pyNN.neuropil as sim``).

A script builds its network with PyNN's classes; ``run(t)`` turns it into one
neuropil experiment and runs it embedded through the ``neuropil`` binary, or on a
cluster with ``setup(cluster="host:port", token=...)``; ``get_data()`` returns
Neo blocks from its results. Supported: the standard cells neuropil has
(IF_curr_exp, IF_curr_alpha, IF_curr_delta, EIF_cond_exp_isfa_ista, Izhikevich,
SpikeSourcePoisson, SpikeSourceArray), the connectors neuropil draws natively
(AllToAll, OneToOne, FixedProbability, FixedNumberPre/Post, FixedTotalNumber),
StaticSynapse and TsodyksMarkramSynapse, constant and random (uniform, normal,
normal_clipped, lognormal) weights, delays and initial values, recording of
spikes and state variables. What is not supported raises NotImplementedError
naming it (python/README.md lists the differences from PyNN's reference
semantics).
"""

from pyNN import errors, random, space  # noqa: F401
from pyNN.connectors import (  # noqa: F401
    AllToAllConnector,
    FixedNumberPostConnector,
    FixedNumberPreConnector,
    FixedProbabilityConnector,
    FixedTotalNumberConnector,
    FromListConnector,
    OneToOneConnector,
)
from pyNN.recording import *  # noqa: F401,F403
from pyNN.network import Network  # noqa: F401
from pyNN.random import GSLRNG, NativeRNG, NumpyRNG, RandomDistribution  # noqa: F401
from pyNN.space import Space  # noqa: F401
from pyNN.standardmodels import StandardCellType

from .control import (  # noqa: F401
    end,
    get_current_time,
    get_max_delay,
    get_min_delay,
    get_time_step,
    hardware_report,
    initialize,
    num_processes,
    rank,
    reset,
    run,
    run_for,
    run_until,
    setup,
)
from .populations import Assembly, Population, PopulationView  # noqa: F401
from .procedural_api import connect, create, record, record_v  # noqa: F401
from .projections import Projection  # noqa: F401
from .standardmodels import UNAVAILABLE  # noqa: F401
from .standardmodels import (  # noqa: F401
    AdditiveWeightDependence,
    DCSource,
    MultiplicativeWeightDependence,
    SpikePairRule,
    STDPMechanism,
    EIF_cond_exp_isfa_ista,
    IF_cond_exp,
    IF_curr_alpha,
    IF_curr_delta,
    IF_curr_exp,
    Izhikevich,
    SpikeSourceArray,
    SpikeSourcePoisson,
    StaticSynapse,
    TsodyksMarkramSynapse,
)


from . import standardmodels as _sm  # noqa: E402

globals().update({name: getattr(_sm, name) for name in UNAVAILABLE})


def list_standard_models():
    """The StandardCellType classes pyNN.neuropil has."""
    return [
        obj.__name__
        for obj in globals().values()
        if isinstance(obj, type) and issubclass(obj, StandardCellType) and hasattr(obj, "neuropil_name")
    ]

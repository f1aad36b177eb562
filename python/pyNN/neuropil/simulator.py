"""The state of a pyNN.neuropil simulation: the network the script builds, and
the results of the last run.

neuropil runs a whole experiment at once. ``run(t)`` therefore runs the network
from 0 to the current time ``t`` (embedded through the binary, or on a cluster);
a second ``run`` runs it again from 0 to the new time — same seed, same network,
so the first part's spikes are the same — and the recorders read the new
results. ``reset()`` starts a new segment from t = 0 as PyNN defines it — with the same seed, so a trial after reset() is
the same trial again, spike for spike (NEST's Poisson generators would go on
drawing); for another trial, setup() again with another ``rng_seed``.
"""

from pyNN import common

name = "neuropil"


class ID(int, common.IDMixin):
    def __init__(self, n):
        int.__init__(n)
        common.IDMixin.__init__(self)


class State(common.control.BaseState):
    def __init__(self):
        common.control.BaseState.__init__(self)
        self.mpi_rank = 0
        self.num_processes = 1
        self.options = {}
        self.clear()
        self.dt = 0.1

    def default_delay(self):
        """The delay of a synapse given none: min_delay, or dt while it is 'auto'."""
        return self.dt if self.min_delay in (None, "auto") else float(self.min_delay)

    def run(self, simtime):
        self.t += simtime
        self.running = True
        from .execute import execute

        self.results = execute(self)

    def run_until(self, tstop):
        self.run(tstop - self.t)

    def clear(self):
        self.recorders = set([])
        self.populations = []
        self.projections = []
        self.current_sources = []
        self.id_counter = 0
        self.segment_counter = -1
        self.results = None
        self.reset()

    def reset(self):
        self.running = False
        self.t = 0
        self.t_start = 0
        self.results = None
        self.segment_counter += 1


state = State()

"""From the PyNN objects of a script to one neuropil experiment, run embedded
(``neuropil.run``, through the binary) or on a cluster
(``setup(cluster="host:port")``), and its results read back."""

import collections
import copy
import math
import shutil

import numpy as np
from pyNN import connectors
from pyNN.parameters import LazyArray, Sequence
from pyNN.random import RandomDistribution

import neuropil

from .projections import RULES


class NotSupported(NotImplementedError):
    pass


def execute(state):
    spec = experiment(state)
    if getattr(state, "auto_min_delay", False) and spec["projections"]:
        lows = [d.get("value", d.get("low", d.get("min", state.dt))) for d in
                (p["syn"]["delay_ms"] for p in spec["projections"])]
        state.min_delay = max(state.dt, min(lows))
    names = unique_labels(state.populations)
    opts = state.options
    # One result directory per session (setup() makes it, end() removes it): each
    # run replaces the last one's files.
    out = state.out_dir
    shutil.rmtree(out, ignore_errors=True)
    if opts.get("cluster"):
        with neuropil.Client(opts["cluster"], token=opts.get("token")) as client:
            results = client.submit(spec).wait(progress=opts.get("progress", False)).results(out)
    else:
        results = neuropil.run(
            spec,
            out=out,
            threads=opts.get("threads"),
            progress=opts.get("progress", False),
            binary_path=opts.get("binary"),
        )
    return Results(results, names)


def experiment(state):
    """The experiment (a dict of experiment.proto's schema) of the network built so far."""
    if state.t <= 0:
        raise ValueError("pyNN.neuropil: run() needs a positive time")
    dt = state.dt
    names = unique_labels(state.populations)
    direct = direct_sources(state)
    pops, stimuli, recorders = [], [], []
    for pop in state.populations:
        name = names[id(pop)]
        if id(pop) in direct:
            continue
        ct = pop.celltype
        entry = {"name": name, "size": int(pop.size), "model": ct.neuropil_name}
        if ct.neuropil_name != "parrot_neuron":
            entry["params"] = {k: number(v, f"{name}: parameter {k}") for k, v in pop._parameters.items()}
            entry["params"].update(getattr(ct, "extra_parameters", {}))
            initial = {}
            for var, value in pop.initial_values.items():
                if var not in ct.variable_map:
                    raise NotSupported(f"pyNN.neuropil: {name}: neuropil's {ct.neuropil_name} has no {var}")
                native = ct.variable_map[var]
                scale = ct.scale_factors.get(var, 1.0)
                initial[native] = distribution(value, f"{name}: initial value of {var}", 1.0 / scale)
            entry["initial"] = initial
        else:
            stimuli.extend(source_stimuli(state, pop, name))
        pops.append(entry)
        recorded = {v.name: sorted(pop.id_to_index(i) for i in ids) for v, ids in pop.recorder.recorded.items() if ids}
        if "spikes" in recorded:
            recorders.append(("spikes", name, None, None))
        others = [v for v in recorded if v != "spikes"]
        if others:
            neurons = sorted(set().union(*(recorded[v] for v in others)))
            variables = [ct.variable_map.get(v, v) for v in others]
            recorders.append(("multimeter", name, neurons, variables, pop.recorder.sampling_interval))
    for source in state.current_sources:
        p = source.native()
        for pop in source.targets:
            s = {"kind": "dc_generator", "target": names[id(pop)], "amplitude_pa": p["amplitude_pa"]}
            if p["start"] > 0:
                s["start_ms"] = p["start"]
            if p["stop"] < state.t:
                s["stop_ms"] = p["stop"]
            stimuli.append(s)
    direct_prj = set()
    for prj in state.projections:
        if id(prj._pairs[0][0]) in direct:
            direct_prj.add(id(prj))
            stimuli.append(direct_stimulus(prj, names, state))
    spike_pops = [r[1] for r in recorders if r[0] == "spikes"]
    rec_specs = []
    if spike_pops:
        rec_specs.append({"kind": "spike_recorder", "populations": spike_pops})
    for r in recorders:
        if r[0] == "multimeter":
            rec_specs.append({"kind": "multimeter", "population": r[1], "neurons": [int(i) for i in r[2]],
                              "variables": r[3], "interval_ms": float(r[4])})
    if not rec_specs:
        # (neuropil records every population's spikes when no recorder is given;
        # a recorder of none keeps the run light and the outputs empty)
        rec_specs.append({"kind": "spike_recorder", "populations": [pops[0]["name"]]})
    out = {
        "name": "pynn",
        "run": {"duration_ms": float(state.t), "dt_ms": float(dt), "seed": int(state.options.get("rng_seed", 1)),
                "transient_ms": 0.0},
        "populations": pops,
        "stimuli": stimuli,
        "projections": [spec for prj in state.projections if id(prj) not in direct_prj
                        for spec in projection(prj, names, state)],
        "recorders": rec_specs,
    }
    hw = state.options.get("hardware")
    if hw:
        out["hardware"] = {"preset": hw} if isinstance(hw, str) else dict(hw)
    return out


def direct_sources(state):
    """SpikeSourcePoisson populations that feed exactly one projection, one to one,
    and are not recorded: each target neuron gets its own train, which is what a
    poisson_generator stimulus gives it directly (no parrots, and a step may
    carry several of the train's spikes, as it does in NEST)."""
    out = set()
    for pop in state.populations:
        if type(pop.celltype).__name__ != "SpikeSourcePoisson":
            continue
        if any(ids for ids in pop.recorder.recorded.values()):
            continue
        uses = projections_from(state, pop)
        if len(uses) == 1 and isinstance(uses[0]._connector, connectors.OneToOneConnector) \
                and len(uses[0]._pairs) == 1 and uses[0]._pairs[0][1].size == pop.size:
            out.add(id(pop))
    return out


def direct_stimulus(prj, names, state):
    pop, target = prj._pairs[0]
    syn = projection(prj, names, state)[0]["syn"]
    weight, delay = syn["weight"], syn["delay_ms"]
    if weight["dist"] != "constant" or delay["dist"] != "constant" or syn["model"] != "static_synapse":
        raise NotSupported(f"pyNN.neuropil: {pop.label}: Poisson input through a plastic synapse or with "
                           "random weights or delays is not supported")
    rate = number(pop._parameters["rate"], f"{pop.label}: rate")
    return poisson_stimulus(pop, pop.label, names[id(target)], rate, weight["value"], delay["value"], state.t)


def poisson_stimulus(pop, name, target, rate, weight, delay, t_stop):
    """A poisson_generator of `pop`'s rate, start and duration into `target`."""
    s = {"kind": "poisson_generator", "target": target, "rate_hz": rate, "indegree": 1.0, "weight": weight,
         "delay_ms": delay}
    start = number(pop._parameters["start"], f"{name}: start")
    stop = number(pop._parameters["stop"], f"{name}: start+duration")
    if start > 0:
        s["start_ms"] = start
    if stop < t_stop:
        s["stop_ms"] = stop
    return s


def projections_from(state, pop):
    """The projections with `pop` among their sources."""
    return [p for p in state.projections if any(a is pop for a, _ in p._pairs)]


def unique_labels(populations):
    out, used = {}, set()
    for p in populations:
        label = base_label = p.label or "population"
        k = 1
        while label in used:
            k += 1
            label = f"{base_label}_{k}"
        used.add(label)
        out[id(p)] = label
    return out


def number(value, what):
    if isinstance(value, LazyArray):
        if value.shape is None:  # a synapse's parameter: one value for the projection
            if isinstance(value.base_value, RandomDistribution) or callable(value.base_value):
                raise NotSupported(f"pyNN.neuropil: {what} must be one number for the projection "
                                   "(random or computed synapse parameters are not supported)")
            value = copy.copy(value)
            value.shape = (1,)
        value = value.evaluate(simplify=True)
    v = np.asarray(value)
    if v.dtype == object:
        raise NotSupported(f"pyNN.neuropil: {what} is not a number")
    if v.size > 1 and not np.all(v == v.flat[0]):
        raise NotSupported(
            f"pyNN.neuropil: {what} differs between neurons; a neuropil population shares its parameters "
            "(give one value, or split the population)"
        )
    x = float(v.flat[0]) if v.size else float(v)
    if not math.isfinite(x):
        raise ValueError(f"pyNN.neuropil: {what} is {x}")
    return x


def distribution(value, what, scale=1.0, negate=False):
    """A neuropil Distribution from a number, a LazyArray or a RandomDistribution."""
    sign = -1.0 if negate else 1.0
    rd = value
    if isinstance(value, LazyArray):
        if value.operations:
            return {"dist": "constant", "value": sign * scale * number(value, what)}
        rd = value.base_value
    if isinstance(rd, RandomDistribution):
        p = rd.parameters
        k = sign * scale
        if rd.name == "uniform":
            lo, hi = sorted((k * p["low"], k * p["high"]))
            return {"dist": "uniform", "low": lo, "high": hi}
        if rd.name in ("normal", "normal_clipped", "normal_clipped_to_boundary"):
            d = {"dist": "normal", "mean": k * p["mu"], "std": abs(k) * p["sigma"]}
            if rd.name != "normal":
                lo, hi = sorted((k * p["low"], k * p["high"]))
                d["bound"] = "redraw" if rd.name == "normal_clipped" else "clip"
                # (an infinite bound is no bound: JSON has no infinity)
                d.update({key: b for key, b in (("min", lo), ("max", hi)) if math.isfinite(b)})
            return d
        if rd.name == "lognormal" and not negate:
            return {"dist": "lognormal", "mu": p["mu"] + math.log(scale), "sigma": p["sigma"]}
        raise NotSupported(f"pyNN.neuropil: {what}: the distribution {rd.name!r} is not one neuropil draws "
                           "(uniform, normal, normal_clipped, normal_clipped_to_boundary, lognormal)")
    return {"dist": "constant", "value": sign * scale * number(value, what)}


def source_stimuli(state, pop, name):
    """The generators that make a population of parrots a spike source."""
    dt = state.dt
    ct = type(pop.celltype).__name__
    if ct == "SpikeSourcePoisson":
        rate = number(pop._parameters["rate"], f"{name}: rate")
        used = any(ids for ids in pop.recorder.recorded.values()) or projections_from(state, pop)
        if used and rate * dt / 1000.0 > 0.05:
            # A parrot emits one spike per step: a train with several spikes in one
            # step would lose some (a fraction of about rate * dt / 2).
            raise NotSupported(
                f"pyNN.neuropil: {name}: a recorded or shared SpikeSourcePoisson of {rate} Hz would lose "
                f"spikes (neuropil's parrots emit one per {dt} ms step; at most {50.0 / dt:.0f} Hz); connect "
                "it one to one to a single population and do not record it, and it becomes direct input"
            )
        return [poisson_stimulus(pop, name, name, rate, 1.0, dt, state.t)]
    if ct == "SpikeSourceArray":
        times = pop._parameters["spike_times"]
        seqs = [times] if isinstance(times, Sequence) else list(np.asarray(times, dtype=object).flat)
        if len(seqs) == 1 and pop.size > 1:
            seqs = seqs * pop.size
        groups = collections.defaultdict(list)
        for i, seq in enumerate(seqs):
            value = seq.value if isinstance(seq, Sequence) else np.asarray(seq)
            # On the time grid (rounded up, as NEST's spike_generator with PyNN does);
            # a parrot repeats its input one delay (dt) later: each spike goes in a dt early.
            grid = np.ceil(np.round(np.asarray(value, dtype=float).ravel() / dt, 6)) * dt
            shifted = tuple(round(float(x) - dt, 10) for x in grid)
            if any(x < dt - 1e-9 for x in shifted):
                raise NotSupported(f"pyNN.neuropil: {name}: spike times at or before {dt} ms (the first time "
                                   "step) cannot be produced: the parrot that emits them needs one step to hear them")
            if shifted:
                groups[shifted].append(i)
        return [{"kind": "spike_generator", "target": name, "spike_times_ms": list(k), "weight": 1.0,
                 "delay_ms": dt, "neurons": v} for k, v in groups.items()]
    raise NotSupported(f"pyNN.neuropil: {ct} is not a spike source neuropil has")


def projection(prj, names, state):
    """The neuropil projections of `prj`: one per (source, target) population pair."""
    return [pair_projection(prj, pre, post, names, state) for pre, post in prj._pairs]


def pair_projection(prj, pre, post, names, state):
    c = prj._connector
    where = f"projection {prj.label or (pre.label + ' -> ' + post.label)}"
    conn = {"rule": RULES[type(c)], "allow_autapses": bool(getattr(c, "allow_self_connections", True))}
    if isinstance(c, connectors.FixedProbabilityConnector):
        conn["p"] = float(c.p_connect)
    elif isinstance(c, (connectors.FixedNumberPreConnector, connectors.FixedNumberPostConnector)):
        if not isinstance(c.n, (int, np.integer)):
            raise NotSupported(f"pyNN.neuropil: {where}: n must be a number of connections")
        conn["indegree" if isinstance(c, connectors.FixedNumberPreConnector) else "outdegree"] = int(c.n)
        conn["allow_multapses"] = bool(c.with_replacement)
    elif isinstance(c, connectors.FixedTotalNumberConnector):
        conn["n"] = int(c.n)
        conn["allow_multapses"] = bool(c.with_replacement)
    if conn["rule"] in ("all_to_all", "one_to_one", "pairwise_bernoulli"):
        conn["allow_multapses"] = True
    syn = prj.synapse_type
    params = syn.native_parameters
    target_ct = post.celltype
    inhibitory = prj.receptor_type == "inhibitory"
    scale = getattr(target_ct, "weight_scale", 1.0)
    # PyNN's convention: inhibitory weights are negative for current-based cells and
    # positive (conductances) for conductance-based ones; neuropil, as NEST, takes
    # inhibition as a negative weight for both.
    conductance = bool(getattr(target_ct, "conductance_based", False))
    check_sign(params["weight"], inhibitory, conductance, where)
    if target_ct.neuropil_name == "parrot_neuron":
        raise NotSupported(f"pyNN.neuropil: {where}: a spike source cannot receive connections")
    receptor = "inhibitory" if inhibitory else "excitatory"
    if syn.neuropil_name == "stdp_synapse" and inhibitory:
        raise NotSupported(f"pyNN.neuropil: {where}: inhibitory STDP is not supported (stdp_synapse's weights "
                           "are in [0, Wmax])")
    if syn.neuropil_name != "static_synapse":
        receptor = "auto"  # (plastic synapses take the channel from the weight's sign)
    delay = params["delay"]
    if isinstance(delay, LazyArray) and delay.base_value is None:
        delay = state.default_delay()
    out = {
        "source": names[id(pre)],
        "target": names[id(post)],
        "conn": conn,
        "syn": {
            "model": syn.neuropil_name,
            "weight": distribution(params["weight"], f"{where}: weight", scale, negate=inhibitory and conductance),
            "delay_ms": distribution(delay, f"{where}: delay"),
            "receptor": receptor,
        },
    }
    skip = ("weight", "delay", "dendritic_delay_fraction", "w_min")
    extra = {k: number(v, f"{where}: {k}") for k, v in params.items() if k not in skip}
    if hasattr(syn, "neuropil_extra"):
        extra.update(syn.neuropil_extra())
    if "Wmax" in extra:
        extra["Wmax"] *= scale
    if extra:
        out["syn"]["params"] = extra
    return out


def check_sign(weight, inhibitory, conductance, where):
    from pyNN import errors

    d = distribution(weight, f"{where}: weight")
    lo = d.get("value", d.get("low", d.get("min", -math.inf if d["dist"] == "normal" else 0.0)))
    hi = d.get("value", d.get("high", d.get("max", math.inf)))
    if d["dist"] == "lognormal":
        lo, hi = 0.0, math.inf
    if conductance and lo < 0:
        raise errors.ConnectionError(f"{where}: weights must be positive for conductance-based synapses")
    if not conductance and inhibitory and hi > 0:
        raise errors.ConnectionError(f"{where}: weights must be negative for current-based, inhibitory synapses")
    if not conductance and not inhibitory and lo < 0:
        raise errors.ConnectionError(f"{where}: weights must be positive for current-based, excitatory synapses")


class Results:
    """A run's spikes and samples by population label and index."""

    def __init__(self, results, names):
        self.results = results
        self.names = names
        self.files = results.files  # (listed now: end() removes the directory)
        self.offsets = {}
        at = 0
        for p in results.summary["populations"]:
            self.offsets[p["name"]] = at
            at += p["size"]
        self._spikes = {}
        self._state = None

    def load(self):
        """Read the run's tables into memory (its files may go after this)."""
        for name in ("spikes", "state"):
            if f"{name}.parquet" in self.files:
                getattr(self.results, name)

    def spikes_of(self, pop):
        label = self.names[id(pop)]
        if label not in self._spikes:
            df = self.results.spikes if "spikes.parquet" in self.files else None
            out = {}
            if df is not None:
                sel = df[df["population"] == label]
                local = sel["neuron_id"].to_numpy() - self.offsets[label]
                t = sel["time_ms"].to_numpy()
                order = np.lexsort((t, local))
                local, t = local[order], t[order]
                for i in np.unique(local):
                    out[int(i)] = t[local == i]
            self._spikes[label] = out
        return self._spikes[label]

    def samples_of(self, pop, variable, index):
        label = self.names[id(pop)]
        if self._state is None:
            self._state = self.results.state if "state.parquet" in self.files else None
        df = self._state
        if df is None:
            return np.zeros((0,)), np.zeros((0, len(index)))
        sel = df[(df["population"] == label) & (df["variable"] == variable)]
        sel = sel.assign(local=sel["neuron_id"] - self.offsets[label])
        table = sel.pivot_table(index="time_ms", columns="local", values="value")
        return table.index.to_numpy(), table.reindex(columns=index).to_numpy()

"""The PyNN standard models neuropil has, in NEST's names and units (neuropil's
models take NEST's parameters: see `neuropil models`). The translations follow
PyNN's NEST backend, so a script gives the same native network on both."""

import numpy as np
from pyNN.parameters import ParameterSpace
from pyNN.standardmodels import build_translations, cells, electrodes, synapses

from .simulator import state


class IF_curr_exp(cells.IF_curr_exp):
    __doc__ = cells.IF_curr_exp.__doc__
    translations = build_translations(
        ("v_rest", "E_L"),
        ("v_reset", "V_reset"),
        ("cm", "C_m", 1000.0),  # nF -> pF
        ("tau_m", "tau_m"),
        ("tau_refrac", "t_ref"),
        ("tau_syn_E", "tau_syn_ex"),
        ("tau_syn_I", "tau_syn_in"),
        ("v_thresh", "V_th"),
        ("i_offset", "I_e", 1000.0),  # nA -> pA
    )
    variable_map = {"v": "V_m", "isyn_exc": "I_syn_ex", "isyn_inh": "I_syn_in"}
    scale_factors = {"v": 1, "isyn_exc": 0.001, "isyn_inh": 0.001}
    neuropil_name = "iaf_psc_exp"
    weight_scale = 1000.0  # nA -> pA


class IF_curr_alpha(cells.IF_curr_alpha):
    __doc__ = cells.IF_curr_alpha.__doc__
    translations = IF_curr_exp.translations
    variable_map = IF_curr_exp.variable_map
    scale_factors = IF_curr_exp.scale_factors
    neuropil_name = "iaf_psc_alpha"
    weight_scale = 1000.0


class IF_curr_delta(cells.IF_curr_delta):
    __doc__ = cells.IF_curr_delta.__doc__
    translations = build_translations(
        ("v_rest", "E_L"),
        ("v_reset", "V_reset"),
        ("cm", "C_m", 1000.0),
        ("tau_m", "tau_m"),
        ("tau_refrac", "t_ref"),
        ("v_thresh", "V_th"),
        ("i_offset", "I_e", 1000.0),
    )
    variable_map = {"v": "V_m"}
    scale_factors = {"v": 1}
    neuropil_name = "iaf_psc_delta"
    weight_scale = 1.0  # the weight is a voltage jump in mV


class EIF_cond_exp_isfa_ista(cells.EIF_cond_exp_isfa_ista):
    __doc__ = cells.EIF_cond_exp_isfa_ista.__doc__
    translations = build_translations(
        ("cm", "C_m", 1000.0),
        ("tau_refrac", "t_ref"),
        ("v_spike", "V_peak"),
        ("v_reset", "V_reset"),
        ("v_rest", "E_L"),
        ("tau_m", "g_L", "cm/tau_m*1000.0", "C_m/g_L"),
        ("i_offset", "I_e", 1000.0),
        ("a", "a"),
        ("b", "b", 1000.0),  # nA -> pA
        ("delta_T", "Delta_T"),
        ("tau_w", "tau_w"),
        ("v_thresh", "V_th"),
        ("e_rev_E", "E_ex"),
        ("tau_syn_E", "tau_syn_ex"),
        ("e_rev_I", "E_in"),
        ("tau_syn_I", "tau_syn_in"),
    )
    variable_map = {"v": "V_m", "w": "w", "gsyn_exc": "g_ex", "gsyn_inh": "g_in"}
    scale_factors = {"v": 1, "w": 0.001, "gsyn_exc": 0.001, "gsyn_inh": 0.001}
    neuropil_name = "aeif_cond_exp"
    weight_scale = 1000.0  # uS -> nS


class IF_cond_exp(cells.IF_cond_exp):
    """NEST's iaf_cond_exp equations, run as neuropil's aeif_cond_exp with a = b =
    Delta_T = 0 (no adaptation, no exponential term: the threshold is V_th, the
    same leaky integrate-and-fire neuron with exponential conductances; neuropil
    integrates it with aeif's adaptive RKF45, NEST's iaf_cond_exp with a looser
    tolerance)."""

    __doc__ = cells.IF_cond_exp.__doc__ + "\n" + __doc__
    translations = build_translations(
        ("v_rest", "E_L"),
        ("v_reset", "V_reset"),
        ("cm", "C_m", 1000.0),
        ("tau_m", "g_L", "cm/tau_m*1000.0", "C_m/g_L"),
        ("tau_refrac", "t_ref"),
        ("tau_syn_E", "tau_syn_ex"),
        ("tau_syn_I", "tau_syn_in"),
        ("v_thresh", "V_th"),
        ("i_offset", "I_e", 1000.0),
        ("e_rev_E", "E_ex"),
        ("e_rev_I", "E_in"),
    )
    variable_map = {"v": "V_m", "gsyn_exc": "g_ex", "gsyn_inh": "g_in"}
    scale_factors = {"v": 1, "gsyn_exc": 0.001, "gsyn_inh": 0.001}
    neuropil_name = "aeif_cond_exp"
    extra_parameters = {"a": 0.0, "b": 0.0, "Delta_T": 0.0}
    weight_scale = 1000.0  # uS -> nS


class Izhikevich(cells.Izhikevich):
    __doc__ = cells.Izhikevich.__doc__
    translations = build_translations(
        ("a", "a"),
        ("b", "b"),
        ("c", "c"),
        ("d", "d"),
        ("i_offset", "I_e", 1000.0),
    )
    variable_map = {"v": "V_m", "u": "U_m"}
    scale_factors = {"v": 1, "u": 1}
    neuropil_name = "izhikevich"
    weight_scale = 1.0  # the weight is a voltage jump in mV, as in PyNN's NEST backend


class SpikeSourcePoisson(cells.SpikeSourcePoisson):
    """Independent Poisson trains, one per source (a poisson_generator into a
    parrot_neuron each, as PyNN's NEST backend builds it)."""

    __doc__ = cells.SpikeSourcePoisson.__doc__
    translations = build_translations(
        ("rate", "rate"),
        ("start", "start"),
        ("duration", "stop", "start+duration", "stop-start"),
    )
    neuropil_name = "parrot_neuron"


class SpikeSourceArray(cells.SpikeSourceArray):
    """Given spike times per source (spike_generators into parrot neurons)."""

    __doc__ = cells.SpikeSourceArray.__doc__
    translations = build_translations(("spike_times", "spike_times"))
    neuropil_name = "parrot_neuron"


class StaticSynapse(synapses.StaticSynapse):
    __doc__ = synapses.StaticSynapse.__doc__
    translations = build_translations(("weight", "weight"), ("delay", "delay"))
    neuropil_name = "static_synapse"

    def _get_minimum_delay(self):
        return state.default_delay()


class TsodyksMarkramSynapse(synapses.TsodyksMarkramSynapse):
    __doc__ = synapses.TsodyksMarkramSynapse.__doc__
    translations = build_translations(
        ("weight", "weight"),
        ("delay", "delay"),
        ("U", "U"),
        ("tau_rec", "tau_rec"),
        ("tau_facil", "tau_fac"),
    )
    neuropil_name = "tsodyks2_synapse"

    def neuropil_extra(self):
        # Before the first spike: no utilisation, all resources (PyNN's model, and
        # NEST's tsodyks_synapse that PyNN's NEST backend uses); tsodyks2's own
        # defaults (u = 0.5) would act as a spike at t = 0.
        return {"u": 0.0, "x": 1.0}

    def _get_minimum_delay(self):
        return state.default_delay()


class DCSource(electrodes.DCSource):
    """A constant current from ``start`` to ``stop`` into whole populations
    (neuropil's dc_generator)."""

    __doc__ = electrodes.DCSource.__doc__
    translations = build_translations(("amplitude", "amplitude_pa", 1000.0), ("start", "start"), ("stop", "stop"))

    def __init__(self, **parameters):
        object.__setattr__(self, "targets", [])
        super().__init__(**parameters)
        state.current_sources.append(self)

    def inject_into(self, cells):
        from pyNN import common

        pops = {id(c.parent): c.parent for c in cells} if isinstance(cells, (list, tuple)) else None
        if isinstance(cells, common.Population):
            pop = cells
        elif isinstance(cells, common.PopulationView) and cells.size == cells.grandparent.size:
            pop = cells.grandparent
        elif pops is not None and len(pops) == 1 and len(cells) == next(iter(pops.values())).size:
            pop = next(iter(pops.values()))
        else:
            raise NotImplementedError(
                "pyNN.neuropil: a DCSource is injected into whole populations (neuropil's dc_generator)"
            )
        if not getattr(pop.celltype, "injectable", True) or pop.celltype.neuropil_name == "parrot_neuron":
            raise TypeError(f"pyNN.neuropil: {pop.label} is a spike source: no current can be injected")
        self.targets.append(pop)

    def set_parameters(self, copy=True, **parameters):
        if state.t > 0:
            raise NotImplementedError(
                "pyNN.neuropil: a current source cannot change after run(); call reset() first "
                "(neuropil runs the whole experiment from t = 0)"
            )
        self.parameter_space.update(**parameters)

    def get_parameters(self):
        ps = ParameterSpace(dict(self.parameter_space.items()), self.get_schema(), shape=(1,))
        ps.evaluate(simplify=True)
        return ps.as_dict()

    def native(self):
        ps = self.native_parameters
        ps.shape = (1,)
        ps.evaluate(simplify=True)
        return {k: float(np.asarray(v).ravel()[0]) for k, v in ps.as_dict().items()}


class STDPMechanism(synapses.STDPMechanism):
    """Pair-based STDP as neuropil's stdp_synapse (NEST's, all-to-all pairing):
    SpikePairRule with an additive or multiplicative weight dependence."""

    __doc__ = synapses.STDPMechanism.__doc__
    base_translations = build_translations(
        ("weight", "weight"),
        ("delay", "delay"),
        ("dendritic_delay_fraction", "dendritic_delay_fraction"),
    )
    neuropil_name = "stdp_synapse"

    def __init__(self, timing_dependence=None, weight_dependence=None, voltage_dependence=None,
                 dendritic_delay_fraction=1.0, weight=0.0, delay=None):
        if dendritic_delay_fraction != 1:
            raise NotImplementedError(
                "pyNN.neuropil: stdp_synapse takes every delay as dendritic (dendritic_delay_fraction=1)"
            )
        if voltage_dependence is not None:
            raise NotImplementedError("pyNN.neuropil: voltage-dependent STDP is not supported")
        super().__init__(timing_dependence, weight_dependence, voltage_dependence, dendritic_delay_fraction,
                         weight, delay)

    def _get_minimum_delay(self):
        return state.default_delay()

    def neuropil_extra(self):
        out = {}
        for c in (self.timing_dependence, self.weight_dependence):
            out.update(getattr(c, "extra_parameters", {}))
        return out


def _alpha_forwards(**p):
    return p["A_minus"] / p["A_plus"] if p["A_plus"] != 0 else p["A_minus"]


def _alpha_reverse(**p):
    return p["alpha"] * p["lambda"] if p["lambda"] != 0 else p["alpha"]


class SpikePairRule(synapses.SpikePairRule):
    __doc__ = synapses.SpikePairRule.__doc__
    translations = build_translations(
        ("tau_plus", "tau_plus"),
        ("tau_minus", "tau_minus"),
        ("A_plus", "lambda"),
        ("A_minus", "alpha", _alpha_forwards, _alpha_reverse),
    )
    possible_models = {"stdp_synapse"}


class _StdpWeights:
    """What both weight dependences of stdp_synapse share: Wmax, and no minimum."""

    translations = build_translations(("w_max", "Wmax"), ("w_min", "w_min"))
    possible_models = {"stdp_synapse"}

    def __init__(self, w_min=0.0, w_max=1.0):
        if w_min != 0:
            raise NotImplementedError("pyNN.neuropil: stdp_synapse's minimum weight is 0 (w_min=0), as NEST's")
        super().__init__(w_min, w_max)


class AdditiveWeightDependence(_StdpWeights, synapses.AdditiveWeightDependence):
    __doc__ = synapses.AdditiveWeightDependence.__doc__
    extra_parameters = {"mu_plus": 0.0, "mu_minus": 0.0}


class MultiplicativeWeightDependence(_StdpWeights, synapses.MultiplicativeWeightDependence):
    __doc__ = synapses.MultiplicativeWeightDependence.__doc__
    extra_parameters = {"mu_plus": 1.0, "mu_minus": 1.0}


def _not_available(name, why):
    def make(*args, **kwargs):
        raise NotImplementedError(f"pyNN.neuropil: {name} is not supported: {why}")

    make.__name__ = name
    return make


# PyNN's names that neuropil does not have: using one says so, and why.
UNAVAILABLE = {
    "IF_cond_alpha": "neuropil has no conductance-based alpha LIF (IF_cond_exp and the adaptive EIF are there)",
    "EIF_cond_alpha_isfa_ista": "neuropil's aeif_cond_alpha is the astrocyte variant only",
    "HH_cond_exp": "neuropil has no Hodgkin-Huxley model",
    "IF_cond_exp_gsfa_grr": "neuropil has no spike-frequency-adaptation LIF",
    "SpikeSourceGamma": "neuropil's generators are Poisson",
    "SpikeSourcePoissonRefractory": "neuropil's generators are Poisson",
    "PointNeuron": "composed neuron models are not supported",
    "AdExp": "composed neuron models are not supported (EIF_cond_exp_isfa_ista is the AdEx neuron)",
    "ACSource": "neuropil's current generator is constant (DCSource)",
    "StepCurrentSource": "neuropil's current generator is constant (DCSource)",
    "NoisyCurrentSource": "neuropil's current generator is constant (DCSource)",
    "SimpleStochasticSynapse": "neuropil has no stochastic synapses",
    "DistanceDependentProbabilityConnector": "neuropil has no spatial structure",
    "IndexBasedProbabilityConnector": "neuropil draws connections by rule, not by index",
    "DisplacementDependentProbabilityConnector": "neuropil has no spatial structure",
    "FromFileConnector": "neuropil draws connections by rule (no explicit lists yet)",
    "CSAConnector": "neuropil draws connections by rule",
    "ArrayConnector": "neuropil draws connections by rule (no explicit lists yet)",
    "SmallWorldConnector": "neuropil draws connections by rule",
    "CloneConnector": "neuropil draws connections by rule",
}
for _name, _why in UNAVAILABLE.items():
    globals()[_name] = _not_available(_name, _why)

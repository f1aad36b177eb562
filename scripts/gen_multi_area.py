#!/usr/bin/env python3
"""Writes examples/multi_area/{ground,metastable}.toml: the multi-area model of
macaque vision-related cortex (Schmidt et al. 2018; 32 areas, 254 populations,
4,129,924 iaf_psc_exp neurons, 24.1 G synapses) at full scale, from the reference
data in ../shared/reference/multi_area/ (its README says where every number comes
from). Standard library only.

    python3 scripts/gen_multi_area.py [REFERENCE_DIR] [OUT_DIR]

The data are CC BY-NC-SA 4.0 (INM-6/multi-area-model): so are the files this
writes, which carry the attribution in their header and in OUT_DIR/README.md.

What the model is, as the reference README states it (and the files encode):
- iaf_psc_exp, C_m 250 pF, tau_m 10 ms, tau_syn 0.5 ms, t_ref 2 ms, E_L = V_reset =
  -65 mV, V_th -50 mV; V_m(0) ~ N(-150, 50) mV; dt 0.1 ms.
- one fixed_total_number projection per (target, source) pair with a non-zero
  synapse count in synapses_K_stable.csv (autapses and multapses allowed);
- weights N(w, 0.1|w|) redrawn until the sign is right: intra-area E sources 87.81
  pA (4E -> 23E twice that), I sources -965.89 pA (g = -11); cortico-cortical
  (only from 23E, 5E, 6E) 87.81 pA x chi onto E targets, x chi x chi_I onto I
  targets: chi = chi_I = 1 in the ground state, chi = 1.9 and chi_I = 2 in the
  metastable state (the only difference between the two files);
- delays N(d, 0.5 d) redrawn below dt: d = 1.5 ms (intra-area E), 0.75 ms
  (intra-area I), distance / 3.5 mm/ms between areas;
- one independent Poisson train per neuron at 10 Hz x K_ext, 87.81 pA, 1 ms (NEST's
  default delay);
- scaling as the repository's scale_network: scaling.neurons multiplies population
  sizes, scaling.synapses the in-degrees (and K_ext) and divides weights by its
  square root; the DC that restores the full-scale mean input comes from each
  population's full-scale rate (rates_tests_fullscale.csv, as the repository uses).

Two deliberate differences from NEST's construction, both below the model's own
granularity: population sizes and synapse counts are rounded after scaling where
NEST truncates (int()), and the DC uses in-degrees n / N_int where the repository
uses K with the model's non-integer N (up to 0.11 % apart, in the
smallest populations, where int(N) is furthest below N).
"""
import csv
import json
import math
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
REF = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "shared", "reference", "multi_area")
OUT = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "examples", "multi_area")


def read(name):
    with open(os.path.join(REF, name), newline="") as f:
        return list(csv.reader(f))


def g(x):
    """A number as short as it can be while keeping 9 significant digits."""
    return f"{x:.9g}" if abs(x) >= 1e-4 or x == 0 else f"{x:.6e}"


params = json.load(open(os.path.join(REF, "parameters.json")))
areas = params["areas"]
syn = params["synapses"]
neuron = params["neuron"]
delays = params["delays"]
ext = params["external_input"]
dt = params["simulation"]["dt_ms"]

pops = list(csv.DictReader(open(os.path.join(REF, "populations.csv"), newline="")))
labels = [f"{p['area']}-{p['population']}" for p in pops]
rates = {f"{r[0]}-{r[1]}": float(r[2]) for r in read("rates_tests_fullscale.csv")[1:]}
counts = read("synapses_K_stable.csv")
assert counts[0][1:] == labels, "synapses_K_stable.csv columns are not the populations in order"
dist_rows = read("distances_mm.csv")
dist = {r[0]: dict(zip(dist_rows[0][1:], map(float, r[1:]))) for r in dist_rows[1:]}

w_e = syn["w_E_pA"]
w_4e_23e = syn["w_4E_to_23E_intra_pA"]
w_i = syn["w_I_pA"]
w_ext = ext["weight_pA"]
rel_sd_w = syn["rel_sd"]
rel_sd_d = delays["rel_sd"]
speed = delays["interarea_speed_mm_per_ms"]
d_e = delays["intra_area_mean_ms"]["from_E"]
d_i = delays["intra_area_mean_ms"]["from_I"]
v0 = neuron["V_m_init"]
cell = (
    f"C_m = {g(neuron['C_m_pF'])}, tau_m = {g(neuron['tau_m_ms'])}, tau_syn_ex = {g(neuron['tau_syn_ex_ms'])}, "
    f"tau_syn_in = {g(neuron['tau_syn_in_ms'])}, t_ref = {g(neuron['t_ref_ms'])}, E_L = {g(neuron['E_L_mV'])}, "
    f"V_th = {g(neuron['V_th_mV'])}, V_reset = {g(neuron['V_reset_mV'])}, I_e = {g(neuron['I_e_pA'])}"
)
STATES = {
    "ground": syn["cc_weight_factors_by_state"]["ground_state"],
    "metastable": syn["cc_weight_factors_by_state"]["metastable_state"],
}


def weight(w, sign):
    bound = "min = 0.0" if sign > 0 else "max = 0.0"
    return f"{{ dist = \"normal\", mean = {g(w)}, std = {g(rel_sd_w * abs(w))}, {bound} }}"


def delay(d):
    return f"{{ dist = \"normal\", mean = {g(d)}, std = {g(rel_sd_d * d)}, min = {g(dt)} }}"


def write(state, out):
    f = STATES[state]
    chi, chi_i = f["cc_weights_factor_chi"], f["cc_weights_I_factor_chi_I"]
    n_neurons = sum(int(p["N_int"]) for p in pops)
    n_syn = sum(int(x) for row in counts[1:] for x in row[1:])
    w = out.write
    w(f"# Multi-area model of macaque vision-related cortex (Schmidt et al. 2018), {state} state\n")
    w(f"# (chi = {chi}, chi_I = {chi_i}): 32 areas, {len(pops)} populations, {n_neurons:,} neurons,\n")
    w(f"# {n_syn:,} synapses at full scale. Generated by scripts/gen_multi_area.py from\n")
    w("# ../shared/reference/multi_area/ (data of github.com/INM-6/multi-area-model@355d940).\n")
    w("# Licence: CC BY-NC-SA 4.0, as the data it adapts (attribution, non-commercial, share-alike);\n")
    w("# cite Schmidt et al. 2018 (Brain Struct Funct 223:1409; PLoS Comput Biol 14:e1006359) and\n")
    w("# Schuecker et al. 2017 (PLoS Comput Biol 13:e1005179). See README.md beside this file.\n")
    w("# Scale it down (the repository's rule: weights / sqrt(synapses), DC from full-scale rates):\n")
    w(f"#   neuropil run examples/multi_area/{state}.toml --set scaling.neurons=0.1 --set scaling.synapses=0.1\n")
    w(f'name = "multi_area_{state}"\n')
    w(f'description = "Schmidt et al. 2018 multi-area model, {state} state (K_stable, g = -11, kappa = 1.125)"\n\n')
    w("# Areas are the populations' groups: `--set run.layout=groups` puts each area on shards\n")
    w("# of its own (on a cluster, on one node), round-robin over all shards by default.\n")
    w("[run]\nduration_ms = 10500.0\ntransient_ms = 500.0\n")
    w(f"dt_ms = {g(dt)}\nseed = 1\n\n")
    w("[scaling]\nneurons = 1.0\nsynapses = 1.0\ndc_compensation = true\n\n")
    for p, label in zip(pops, labels):
        w("[[populations]]\n")
        w(f'name = "{label}"\nsize = {p["N_int"]}\nmodel = "iaf_psc_exp"\n')
        w(f"params = {{ {cell} }}\n")
        w(f'initial = {{ V_m = {{ dist = "normal", mean = {g(v0["mean_mV"])}, std = {g(v0["sd_mV"])} }} }}\n')
        w(f"full_scale_rate_hz = {g(rates[label])}\n")
        w(f'group = "{p["area"]}"\n\n')
    for p, label in zip(pops, labels):
        w("[[stimuli]]\n")
        w(f'kind = "poisson_generator"\ntarget = "{label}"\nrate_hz = {g(ext["rate_ext_hz"])}\n')
        w(f"indegree = {g(float(p['K_ext']))}\nweight = {g(w_ext)}\ndelay_ms = 1.0\n\n")
    for row in counts[1:]:
        target = row[0]
        t_area, t_pop = target.split("-")
        for source, n in zip(labels, row[1:]):
            n = int(n)
            if n == 0:
                continue
            s_area, s_pop = source.split("-")
            if s_area == t_area:
                if s_pop.endswith("E"):
                    wt = weight(w_4e_23e if (s_pop, t_pop) == ("4E", "23E") else w_e, +1)
                    dl = delay(d_e)
                else:
                    wt = weight(w_i, -1)
                    dl = delay(d_i)
            else:
                assert s_pop in ("23E", "5E", "6E"), f"cortico-cortical from {source}"
                wt = weight(w_e * chi * (chi_i if t_pop.endswith("I") else 1.0), +1)
                dl = delay(dist[t_area][s_area] / speed)
            w(f'[[projections]]\nsource = "{source}"\ntarget = "{target}"\n')
            w(f'conn = {{ rule = "fixed_total_number", n = {n} }}\n')
            w(f"syn = {{ weight = {wt}, delay_ms = {dl} }}\n\n")
    w('[[recorders]]\nkind = "spike_recorder"\n')


os.makedirs(OUT, exist_ok=True)
for state in STATES:
    with open(os.path.join(OUT, f"{state}.toml"), "w") as out:
        write(state, out)

#!/usr/bin/env python3
"""Writes deploy/grafana/neuropil.json, the Grafana dashboard of a neuropil
cluster (Grafana 10+, Prometheus data source). Standard library only.

    python3 deploy/grafana/make_dashboard.py          # after changing a panel here
    python3 deploy/grafana/make_dashboard.py --check  # is neuropil.json what this writes?

Every metric it names is one the services export (tests/deploy.rs checks the
JSON against tests/data/metrics-*.txt, which the cluster tests check against a
scrape).
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DS = {"type": "prometheus", "uid": "${datasource}"}
NODE = 'node=~"$node"'


def panel(pid, title, targets, x, y, w=12, h=8, unit="short", description="", kind="timeseries", stack=False):
    p = {
        "id": pid,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets)
        ],
    }
    if stack:
        p["fieldConfig"]["defaults"]["custom"] = {"stacking": {"mode": "normal"}}
    return p


def row(pid, title, y):
    return {"id": pid, "type": "row", "title": title, "collapsed": False, "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}}


def quantiles(metric, by="node"):
    return [
        (f"histogram_quantile(0.5, sum by (le, {by}) (rate({metric}_bucket{{{NODE}}}[1m])))", "{{" + by + "}} p50"),
        (f"histogram_quantile(0.99, sum by (le, {by}) (rate({metric}_bucket{{{NODE}}}[1m])))", "{{" + by + "}} p99"),
    ]


def main():
    panels = [
        row(1, "Run", 0),
        panel(2, "Biological time", [
            ("max(neuropil_experiment_bio_time_seconds)", "experiment"),
            (f"neuropil_bio_time_seconds{{{NODE}}}", "{{node}}"),
        ], 0, 1, unit="s", description="Simulated time of the running experiment (control) and of each node's share."),
        panel(3, "Real-time factor (wall s per biological s)", [
            ("max(neuropil_experiment_real_time_factor)", "experiment"),
            (f"neuropil_real_time_factor{{{NODE}}}", "{{node}}"),
        ], 12, 1, description="Below 1: faster than real time. Alert NeuropilRealTimeFactorDegraded compares it with its last hour."),
        panel(4, "Firing rate per neuron (Hz), by population", [
            ("max by (population) (rate(neuropil_experiment_spikes[1m]))"
             " / max by (population) (neuropil_experiment_population_neurons)", "{{population}}"),
        ], 0, 9, unit="hertz", description="Spikes per second of each population over its neurons (after scaling): "
                                            "the mean rate of one of its neurons."),
        panel(5, "Experiments by state", [
            ("max by (state) (neuropil_experiments)", "{{state}}"),
        ], 12, 9),
        row(6, "Spike exchange", 17),
        panel(7, "Epoch exchange time (send + receive)", quantiles("neuropil_epoch_exchange_duration_seconds"), 0, 18,
              unit="s", description="Per epoch (or per window with the two-tier exchange)."),
        panel(8, "Waiting for peers", quantiles("neuropil_exchange_wait_seconds"), 12, 18, unit="s",
              description="The part of an exchange spent waiting for the slowest peer: imbalance or a slow link."),
        panel(9, "Exchange bytes per second", [
            (f"sum by (node, direction) (rate(neuropil_exchange_bytes_total{{{NODE}}}[1m]))", "{{node}} {{direction}}"),
        ], 0, 26, unit="Bps"),
        panel(10, "Epochs per exchange (two-tier window)", [
            (f"neuropil_exchange_window_epochs{{{NODE}}}", "{{node}}"),
        ], 12, 26),
        row(11, "Reliability", 34),
        panel(12, "Checkpoint age", [
            (f"neuropil_checkpoint_age_seconds{{{NODE}}}", "{{node}}"),
        ], 0, 35, w=8, unit="s", description="Wall time since each node last wrote its checkpoint part."),
        panel(13, "Checkpoint write time", quantiles("neuropil_checkpoint_duration_seconds"), 8, 35, w=8, unit="s"),
        panel(14, "Recoveries (10 min)", [
            ("sum by (cause) (increase(neuropil_recoveries_total[10m]))", "{{cause}}"),
        ], 16, 35, w=8),
        panel(15, "Live nodes and the leader", [
            ("max(neuropil_live_nodes)", "live nodes"),
            ("sum(neuropil_control_leader)", "leaders"),
        ], 0, 43, w=8),
        panel(16, "Actors by kind", [
            (f"sum by (kind) (neuropil_actors{{{NODE}}})", "{{kind}}"),
        ], 8, 43, w=8, stack=True),
        panel(17, "Runs ended on nodes (10 min)", [
            (f"sum by (outcome) (increase(neuropil_runs_total{{{NODE}}}[10m]))", "{{outcome}}"),
        ], 16, 43, w=8),
        row(18, "Work and memory", 51),
        panel(19, "Synaptic events per second", [
            (f"sum by (node) (rate(neuropil_synaptic_events_total{{{NODE}}}[1m]))", "{{node}}"),
        ], 0, 52, w=8, stack=True),
        panel(20, "Run peak memory vs the control's estimate", [
            (f"neuropil_run_peak_rss_bytes{{{NODE}}}", "{{node}} peak"),
            (f"neuropil_run_estimated_bytes{{{NODE}}}", "{{node}} estimate"),
        ], 8, 52, w=8, unit="bytes"),
        panel(21, "Resident memory", [
            ("neuropil_process_resident_memory_bytes", "{{node}}{{replica}}"),
        ], 16, 52, w=8, unit="bytes"),
        row(22, "Hardware emulation (neuropil hwemu serve)", 60),
        panel(23, "Packets through emulated fabrics", [
            ("sum(rate(neuropil_hwemu_packets_total[1m]))", "sent"),
            ("sum(rate(neuropil_hwemu_dropped_packets_total[1m]))", "dropped"),
        ], 0, 61, w=8),
        panel(24, "Busiest link's utilisation (last run)", [
            ("max(neuropil_hwemu_last_link_utilisation_max_ratio)", "utilisation"),
        ], 8, 61, w=8, unit="percentunit"),
        panel(25, "Energy (last report)", [
            ("max(neuropil_hwemu_last_report_energy_joules)", "energy"),
        ], 16, 61, w=8, unit="joule"),
    ]
    dashboard = {
        "uid": "neuropil",
        "title": "neuropil",
        "description": "A neuropil cluster: runs, spike exchange, checkpoints and recoveries, memory, hardware emulation.",
        "tags": ["neuropil"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus"},
            {"name": "node", "label": "Node", "type": "query", "datasource": DS, "multi": True,
             "includeAll": True, "allValue": ".*", "current": {"text": "All", "value": "$__all"},
             "query": {"query": "label_values(neuropil_actors, node)", "refId": "nodes"}, "refresh": 2},
        ]},
        "panels": panels,
    }
    text = json.dumps(dashboard, indent=2) + "\n"
    path = os.path.join(HERE, "neuropil.json")
    if "--check" in sys.argv[1:]:
        with open(path) as f:
            if f.read() != text:
                sys.exit(f"{path} is not what {os.path.basename(__file__)} writes: run it again")
        return
    with open(path, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()

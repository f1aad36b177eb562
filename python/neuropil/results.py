"""What a run leaves: summary.json and the Parquet files, as pandas objects."""

import json
import pathlib

import pandas as pd


class Results:
    """The results of one run, in ``dir`` (as ``neuropil run`` writes them).

    ``summary`` is summary.json as a dict; ``rates`` one row per population
    (``size``, ``spikes``, ``rate_hz``, ``cv_isi``: the summary's figures);
    ``spikes`` (neuron_id, population, time_ms), ``state`` and ``weights`` are
    read from their Parquet files when first asked for.
    """

    def __init__(self, directory, info=None):
        self.dir = pathlib.Path(directory)
        self.info = info
        path = self.dir / "summary.json"
        if not path.is_file():
            raise FileNotFoundError(f"results: no summary.json in {self.dir}")
        self.summary = json.loads(path.read_text())
        self._tables = {}

    @property
    def spike_hash(self):
        return self.summary["spike_hash"]

    @property
    def rates(self):
        rows = [
            {
                "population": p["name"],
                "size": p["size"],
                "spikes": p["spikes"],
                "rate_hz": p["rate_hz"],
                "cv_isi": p.get("cv_isi"),
            }
            for p in self.summary["populations"]
        ]
        return pd.DataFrame(rows).set_index("population")

    def _table(self, name):
        if name not in self._tables:
            path = self.dir / f"{name}.parquet"
            if not path.is_file():
                raise FileNotFoundError(f"results: this run wrote no {name}.parquet (record it in the experiment)")
            self._tables[name] = pd.read_parquet(path)
        return self._tables[name]

    @property
    def spikes(self):
        return self._table("spikes")

    @property
    def state(self):
        return self._table("state")

    @property
    def weights(self):
        return self._table("weights")

    @property
    def files(self):
        return sorted(p.name for p in self.dir.iterdir() if p.is_file())

    def __repr__(self):
        s = self.summary
        return (
            f"<neuropil.Results {s.get('experiment')!r}: {s.get('neurons')} neurons, "
            f"{s.get('duration_ms')} ms, hash {s.get('spike_hash')}, in {self.dir}>"
        )

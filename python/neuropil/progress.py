"""A progress bar over biological time (tqdm: a text bar, a widget in a notebook)."""

import contextlib

from tqdm.auto import tqdm


class _Bar:
    def __init__(self, enabled, desc):
        self._bar = None
        self._enabled = enabled
        self._desc = desc

    def show(self, bio_ms, total_ms, rtf, spikes, state=None):
        if not self._enabled:
            return
        if self._bar is None:
            self._bar = tqdm(total=round(total_ms, 1), unit="ms", desc=self._desc, leave=True)
        self._bar.n = round(min(bio_ms, total_ms), 1)
        post = {"RTF": f"{rtf:.2f}", "spikes": spikes}
        if state:
            post["state"] = state
        self._bar.set_postfix(post, refresh=False)
        self._bar.refresh()

    def close(self):
        if self._bar is not None:
            self._bar.close()


@contextlib.contextmanager
def bar(enabled, desc):
    b = _Bar(enabled, desc)
    try:
        yield b
    finally:
        b.close()

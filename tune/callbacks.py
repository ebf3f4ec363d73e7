"""Tune callbacks of the launcher (Ray lives here, not in faice/)."""

from __future__ import annotations

from pathlib import Path

from ray.tune import Callback


class ResultsOnTrialEnd(Callback):
    """Rewrite trials.json and results.csv/md each time a trial ends (finished, stopped or failed), so a
    launcher lost mid-search leaves tables as recent as its last finished trial. A failing write (a full
    disk) is reported and tried again at the next trial's end and at the end of the search."""

    def __init__(self, search_dir: str | Path, keys: list[str]):
        self.search_dir, self.keys = str(search_dir), list(keys)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._write(trials, trial, "TERMINATED")  # (Tune sets the trial's status after its callbacks)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._write(trials, trial, "ERROR")

    def _write(self, trials, ended, status: str) -> None:
        from faice.results import collect, load_search, write_tables, write_trials

        search_dir = Path(self.search_dir)
        records = {
            t.trial_id: {
                "status": status if t is ended else t.status,
                "params": {k: (t.config or {}).get(k) for k in self.keys},
            }
            for t in trials
        }
        try:
            write_trials(search_dir, records)
            write_tables(collect(search_dir), search_dir, load_search(search_dir))
        except Exception as e:  # never fail the search for its tables: they are rewritten at its end
            print(
                f"faice search: warning: results not written ({type(e).__name__}: {e}); retried later",
                flush=True,
            )

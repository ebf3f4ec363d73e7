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
        self._rows: dict = {}  # collect's cache: only trials whose files changed are read again

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
            write_tables(collect(search_dir, self._rows), search_dir, load_search(search_dir))
        except Exception as e:  # never fail the search for its tables: they are rewritten at its end
            print(
                f"faice search: warning: results not written ({type(e).__name__}: {e}); retried later",
                flush=True,
            )


def short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def trial_line(trial, event: str, metric: str, keys: list[str], max_steps: int, score=None) -> str:
    """One console line for a trial's change of state (started, finished, stopped early, failed, ...);
    `score`: its latest `metric`."""
    result = trial.last_result or {}
    step, own_max = result.get("step"), (trial.config or {}).get("train.max_steps") or max_steps
    if event == "ended":
        event = "finished" if step is None or step >= own_max else f"stopped early at step {step}"
    params = " ".join(f"{k.rsplit('.', 1)[-1]}={short((trial.config or {}).get(k))}" for k in keys)
    score = f" {metric}={short(score)}" if score is not None else ""
    return f"faice search: trial {trial.trial_id} {event}{score}" + (f" ({params})" if params else "")


def search_summary(trials, metric: str, mode: str, scores: dict) -> str:
    """One line for the whole search: trials per state and the best of their latest scores (`scores`:
    trial id -> its latest `metric`)."""
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    names = {"RUNNING": "running", "PENDING": "pending", "PAUSED": "paused", "TERMINATED": "ended",
             "ERROR": "failed"}  # fmt: skip
    parts = [f"{counts[s]} {n}" for s, n in names.items() if counts.get(s)]
    scored = {t.trial_id: scores[t.trial_id] for t in trials if t.trial_id in scores}
    best = ""
    if scored:
        pick = (min if mode == "min" else max)(scored, key=scored.get)
        best = f"; best {metric}={short(scored[pick])} (trial {pick})"
    return f"faice search: {len(trials)} trials: " + (", ".join(parts) or "none yet") + best


class ConsoleLines(Callback):
    """The launcher's console for searches too large for Tune's table: a line per trial state change and
    a summary line every `summary_every_s` seconds (and at the end)."""

    def __init__(
        self, metric: str, mode: str, keys: list[str], max_steps: int, summary_every_s: float = 60.0
    ):
        self.metric, self.mode, self.keys, self.max_steps = metric, mode, list(keys), max_steps
        self.summary_every_s = summary_every_s
        self._last_summary = 0.0
        self.scores: dict[str, float] = {}  # trial id -> its latest metric

    def _say(self, line: str) -> None:
        print(line, flush=True)

    def _line(self, trial, event: str) -> None:
        self._say(
            trial_line(trial, event, self.metric, self.keys, self.max_steps, self.scores.get(trial.trial_id))
        )

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if self.metric in result:
            self.scores[trial.trial_id] = result[self.metric]

    def on_trial_start(self, iteration, trials, trial, **info):
        self._line(trial, "started")

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._line(trial, "failed, restarting from its checkpoint")

    def on_trial_restore(self, iteration, trials, trial, **info):
        self._line(trial, "restored")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._line(trial, "ended")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._line(trial, "failed")

    def on_step_end(self, iteration, trials, **info):
        import time

        now = time.monotonic()
        if now - self._last_summary >= self.summary_every_s:
            self._last_summary = now
            self._say(search_summary(trials, self.metric, self.mode, self.scores))

    def on_experiment_end(self, trials, **info):
        self._say(search_summary(trials, self.metric, self.mode, self.scores))

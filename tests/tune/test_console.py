"""The launcher's console for lab-size searches (tune.callbacks.ConsoleLines), on Tune's own Trial objects:
a line per trial state change, a summary line, not a table row per trial."""

import contextlib
import io

from ray.tune.experiment import Trial

from tune.callbacks import ConsoleLines, search_summary, trial_line
from tune.search import TABLE_MAX_TRIALS, console_callbacks, parse_args

METRIC = "kid[inception]"


def trials(n: int) -> list[Trial]:
    return [Trial("run_trial", config={"train.lr": 1e-3 * (i + 1)}, stub=True, trial_id=f"t_{i:05d}")
            for i in range(n)]  # fmt: skip


def test_a_line_per_state_change_and_a_summary_of_200_trials():
    ts = trials(200)
    console = ConsoleLines(METRIC, "min", ["train.lr"], max_steps=100, summary_every_s=0)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for i, t in enumerate(ts):
            console.on_trial_start(0, ts, t)
            t.set_status(Trial.RUNNING)
            console.on_trial_result(0, ts, t, {"step": 50, METRIC: 1.0 / (i + 1)})
            t.update_last_result({"step": 100 if i % 2 else 50})
            t.set_status(Trial.TERMINATED)
            console.on_trial_complete(0, ts, t)
        console.on_step_end(0, ts)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 * 200 + 1  # start + end per trial, one summary
    assert lines[0] == "faice search: trial t_00000 started (lr=0.001)"
    assert lines[1] == f"faice search: trial t_00000 stopped early at step 50 {METRIC}=1 (lr=0.001)"
    assert lines[3].startswith("faice search: trial t_00001 finished")
    assert lines[-1] == f"faice search: 200 trials: 200 ended; best {METRIC}=0.005 (trial t_00199)"


def test_summary_counts_every_state():
    ts = trials(4)
    for t, status in zip(ts, (Trial.RUNNING, Trial.PENDING, Trial.ERROR, Trial.TERMINATED), strict=True):
        t.set_status(status)
    line = search_summary(ts, METRIC, "max", {"t_00000": 0.5, "t_00003": 0.7})
    assert (
        line
        == f"faice search: 4 trials: 1 running, 1 pending, 1 ended, 1 failed; best {METRIC}=0.7 (trial t_00003)"
    )
    assert trial_line(ts[2], "failed", METRIC, [], 10) == "faice search: trial t_00002 failed"


def test_auto_console_is_the_table_for_small_searches_and_lines_beyond():
    class Spec:
        metric, mode, keys = METRIC, "min", []

        def __init__(self, n):
            self.num_trials = n

        def max_steps(self):
            return 10

    args = parse_args(["--space", "demo-asha.yaml", "--verbose", "2"])
    assert console_callbacks(args, Spec(TABLE_MAX_TRIALS)) == (2, [])
    verbose, callbacks = console_callbacks(args, Spec(TABLE_MAX_TRIALS + 1))
    assert verbose == 0 and isinstance(callbacks[0], ConsoleLines)
    assert console_callbacks(parse_args(["--space", "x.yaml", "--console", "lines"]), Spec(2))[0] == 0
    assert console_callbacks(parse_args(["--space", "x.yaml", "--console", "table"]), Spec(500)) == (1, [])

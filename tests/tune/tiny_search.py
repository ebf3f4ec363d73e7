"""Running a shipped search space at debug size: in this process, trial after trial, exactly as the launcher
builds each trial (run_in_process: every config variation), or on the tests' Ray cluster through
`python -m tune.search` (run_tiny_search: the Ray paths, each tested once)."""

import csv
import itertools
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEBUG_SIZE = [
    "config.data.resolution=16", "config.data.num_workers=0", "config.train.batch_size=8",
    "config.train.log_every=2", "config.train.checkpoint_every=3", "config.eval.num_samples=8",
    "config.eval.kid_subset_size=8", "config.eval.kid_subsets=4", "config.eval.grid_images=4",
    "config.log.wandb=disabled", "budget.max_steps=6", "config.sample.num_inference_steps=3",
]  # fmt: skip


def fast_metric(space: str) -> list[str]:
    """Overrides scoring with the fast stand-in extractor (ranking by fid[faice-tiny]) instead of the
    Inception: these searches test orchestration, not ranking; the demo search runs the real default."""
    from tune.space import load_space

    metric = load_space(space).metric
    swap = ["metric=fid[faice-tiny]"] if metric.endswith("[inception]") else []
    return ["config.eval.extractor=faice-tiny", *swap]


def run_tiny_search(
    cluster, storage: Path, space: str, data: Path, *extra: str, fast: bool = True
) -> tuple[str, list[dict]]:
    """(stdout, results.csv rows) of `python -m tune.search --space SPACE` at debug size; asserts success.
    `fast`: score with the stand-in extractor (fast_metric)."""
    speed = fast_metric(space) if fast else []
    cmd = [sys.executable, "-m", "tune.search", "--space", space, "--storage", str(storage), "--address",
           cluster.address, "--verbose", "0", f"config.data.path={data}", *DEBUG_SIZE, *speed, *extra]  # fmt: skip
    out = subprocess.run(cmd, cwd=REPO, env=cluster.env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    name = Path(space).stem
    with (Path(storage) / name / "results.csv").open() as f:
        return out.stdout, list(csv.DictReader(f))


def trial_points(spec) -> list[dict]:
    """The trials' params, deterministically: the cross product of the space's grids, repeated
    budget.num_samples times; a sampled (non-grid) param takes its probe values in turn (the probes span
    its domain: a range's ends, a choice's options), so repeated samples differ as Tune's draws would."""
    grids = [p for p in spec.space if p.kind == "grid"]
    sampled = [p for p in spec.space if p.kind != "grid"]
    points = [dict(zip([p.key for p in grids], values, strict=True))
              for values in itertools.product(*(p.args for p in grids))]  # fmt: skip
    out = []
    for i in range(spec.budget.num_samples):
        out += [{**point, **{p.key: p.probes[i % len(p.probes)] for p in sampled}} for point in points]
    return out


def run_in_process(space: str, storage: Path, *overrides: str) -> tuple[str, list]:
    """(search name, result rows) of a space's trials trained one after another in this process, each with
    the config the launcher would give it (tune.search.prepare_search: links, data, reference statistics;
    SearchSpec.trial_config), then the search's result tables written from the run folders."""
    from faice.results import collect, write_tables, write_trials
    from faice.train.loop import train
    from tune.search import prepare_search
    from tune.space import load_space

    spec = load_space(space, list(overrides))
    search_dir = Path(storage) / spec.name
    base_tree, fixed, _ = prepare_search(spec, Path(storage))
    trials = {}
    for i, params in enumerate(trial_points(spec)):
        trial = f"trial_{i:05d}"
        train(spec.trial_config(base_tree, fixed, params, trial), run_dir=search_dir / "runs" / trial)
        trials[trial] = {"status": "TERMINATED", "params": params}
    write_trials(search_dir, trials)
    rows = collect(search_dir)
    write_tables(rows, search_dir, spec.to_dict())
    return spec.name, rows


def run_tiny_in_process(storage: Path, space: str, data: Path, *extra: str, fast: bool = True) -> list[dict]:
    """results.csv rows of run_in_process at debug size (the same overrides as run_tiny_search), scored
    inline; `fast`: with the stand-in extractor (fast_metric)."""
    speed = fast_metric(space) if fast else []
    name, _ = run_in_process(space, storage, f"config.data.path={data}", *DEBUG_SIZE, *speed,
                             "config.eval.where=inline", *extra)  # fmt: skip
    with (Path(storage) / name / "results.csv").open() as f:
        return list(csv.DictReader(f))

"""`python -m tune.search`: a Ray Tune search of faice trials, each in its Tune trial actor (one worker)
or a Ray Train run (several; trial.runner).

    python -m tune.search --space tune/spaces/demo-asha.yaml                 # local 127.0.0.1 cluster
    python -m tune.search --space beta-schedule.yaml --scale paper --address auto --storage /shared/faice
    python -m tune.search --space demo-asha.yaml --resume                    # after an interruption

Everything is validated before Ray starts. Results land in <storage>/<name>/: results.csv,
results.md, results.png, runs/<trial>/ (faice run folders) and Ray's own state (for --resume).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from faice.config import dump_yaml, read_tree
from faice.errors import ConfigError

DEFAULT_STORAGE = "runs/searches"
# trial.runner ray-train: the Tune trial actor only waits on its Ray Train run, which reserves the real
# resources; it asks for
# one byte of memory because Ray refuses an empty request and any CPU share would break the packing.
# It lives on the head (a sliver of the head's own resource, as Ray's own state actors do), and so does
# its Ray Train controller, which Ray attaches to the trial actor's node: losing a training machine
# costs its workers only, and the controller restarts them elsewhere from the last checkpoint.
# trial.runner tune: the trial actor is the worker and reserves the worker's resources; Tune restarts
# it elsewhere from its last checkpoint (trial.max_failures).
ON_HEAD = {"node:__internal_head__": 0.001}
TRIAL_ACTOR_RESOURCES = {"memory": 1, **ON_HEAD}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The parsed arguments of `python -m tune.search`."""
    p = argparse.ArgumentParser(
        prog="python -m tune.search",
        description="Run a Ray Tune search over faice configs (each trial a Ray Train run).",
        epilog="Overrides set keys of the search file (budget.num_samples=8, scheduler.name=fifo) "
        "or, prefixed with config., of every trial's config (config.train.batch_size=16).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--space", required=True, help="search-space YAML (a path or a name under tune/spaces/)")
    p.add_argument(
        "--address",
        default=None,
        help="Ray address: auto, ray://host:10001, host:port; default: "
        "$RAY_ADDRESS, else a local cluster on 127.0.0.1",
    )
    p.add_argument(
        "--storage", default=DEFAULT_STORAGE, help="parent folder of searches (shared by all nodes)"
    )
    p.add_argument("--name", default=None, help="search name (default: the space's name)")
    p.add_argument(
        "--scale",
        default=None,
        help="which of the space's `scales:` to run: tiny (synthetic faces, CPU, minutes) or paper (the "
        "original's CelebA-HQ 128 px settings on GPUs); default: the space's `scale:`",
    )
    p.add_argument(
        "--profile",
        default=None,
        help="machine profile: configs/profiles/NAME.yaml or a path (batch size, precision, resources "
        "per trial); command-line overrides win over it",
    )
    p.add_argument("--resume", action="store_true", help="continue an interrupted search of this name")
    p.add_argument(
        "--resume-if-exists", action="store_true", help="resume when the search exists, else start it"
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="only validate the space, its scale, profile and overrides (no Ray, nothing written)",
    )
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local cluster (local only)")
    p.add_argument(
        "--autoscaling",
        action="store_true",
        help="the cluster's autoscaler adds nodes when trials or evaluations wait for their slots (KubeRay "
        "in-tree autoscaling, a cloud cluster YAML): slots missing now are not errors, and "
        "searcher.max_concurrent says how many trials to run at once",
    )
    p.add_argument("--verbose", type=int, default=1, help="Tune console verbosity (0-3) of its table")
    p.add_argument(
        "--console",
        choices=["auto", "table", "lines"],
        default="auto",
        help="table: Tune's trial table; lines: a line per trial state change and a summary line every "
        f"--summary-every seconds; auto: the table up to {TABLE_MAX_TRIALS} trials, lines beyond",
    )
    p.add_argument("--summary-every", type=float, default=60.0, help="seconds between summary lines")
    p.add_argument(
        "--eval-timeout",
        type=float,
        default=3600,
        help="seconds to wait at the end for the evaluation pool to finish the trials' last checkpoints",
    )
    p.add_argument("overrides", nargs="*", metavar="key=value")
    return p.parse_args(argv)


TABLE_MAX_TRIALS = 20  # Tune's table beyond this scrolls a row per trial at every refresh


def console_callbacks(args, spec) -> tuple[int, list]:
    """(Tune's verbosity, the console callbacks) for --console."""
    lines = args.console == "lines" or (args.console == "auto" and spec.num_trials > TABLE_MAX_TRIALS)
    if not lines:
        return args.verbose, []
    from tune.callbacks import ConsoleLines

    return 0, [ConsoleLines(spec.metric, spec.mode, spec.keys, spec.max_steps(), args.summary_every)]


def max_concurrent(bundle: dict[str, float], cluster: dict[str, float]) -> int:
    """How many trials of `bundle` resources fit in `cluster` at once (at least 1)."""
    fits = [math.floor(cluster.get(k, 0) / v) for k, v in bundle.items() if v]
    missing = [k for k, v in bundle.items() if v and cluster.get(k, 0) < v]
    if missing:
        raise ConfigError(
            f"trial: one trial needs {bundle} but the cluster has {dict(cluster)}; missing: {', '.join(missing)}"
        )
    return max(1, min(fits)) if fits else 1


def asha_milestones(grace_period: int, reduction_factor: float, max_t: int) -> list[int]:
    """The steps at which Ray's ASHA (one bracket) compares trials: grace * rf^k up to max_t."""
    steps, k = [], 0
    while grace_period * reduction_factor**k <= max_t:
        steps.append(int(grace_period * reduction_factor**k))
        k += 1
    return [s for s in steps if s < max_t]


def protected_steps(spec) -> list[int]:
    """Checkpoint steps the evaluation pool must never skip: the rungs of an ASHA search on an eval metric."""
    from faice.evaluate import is_eval_metric

    if spec.scheduler.name != "asha" or not is_eval_metric(spec.metric):
        return []
    return asha_milestones(spec.scheduler.grace_period, spec.scheduler.reduction_factor, spec.max_steps())


def _scheduler(spec):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from faice.evaluate import is_eval_metric

    if spec.scheduler.name == "asha":
        return ASHAScheduler(
            # an FID arrives after its checkpoint: rungs compare FIDs of checkpoints at the same step
            time_attr="eval_step" if is_eval_metric(spec.metric) else "step",
            max_t=spec.max_steps(),
            grace_period=spec.scheduler.grace_period,
            reduction_factor=spec.scheduler.reduction_factor,
        )
    return FIFOScheduler()


def _searcher(spec, concurrent: int):
    if spec.searcher.name == "optuna":
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        return ConcurrencyLimiter(OptunaSearch(seed=spec.searcher.seed), max_concurrent=concurrent)
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator(random_state=spec.searcher.seed, max_concurrent=concurrent)


def _trainable(spec, search_dir: Path, base_tree: dict, fixed: list[str], eval_pool: str | None):
    from ray import tune

    from jobs.ray_train import run_trial

    trainable = tune.with_parameters(
        run_trial,
        spec=spec,
        base_tree=base_tree,
        search_dir=str(search_dir),
        fixed=fixed,
        eval_pool=eval_pool,
        rungs=protected_steps(spec) if eval_pool and spec.evaluation.rung_wait_s > 0 else [],
    )
    return tune.with_resources(trainable, trial_actor_resources(spec.trial))


def actor_failures(res) -> int:
    """Tune's restarts of a trial actor: trial.max_failures when the loop runs in it, else 0."""
    from faice.profiles import runs_in_trial_actor

    return res.max_failures if runs_in_trial_actor(res) else 0


def trial_actor_resources(res) -> dict[str, float]:
    """What a trial's Tune actor reserves: the worker's own resources when the loop runs in it, else a
    sliver of the head (its Ray Train run reserves the workers')."""
    from faice.profiles import runs_in_trial_actor
    from jobs.ray_train import run_bundle

    return (run_bundle(res) or {"memory": 1}) if runs_in_trial_actor(res) else TRIAL_ACTOR_RESOURCES


def prepare_search(spec, storage: Path) -> tuple[dict, list[str], object]:
    """Everything a search does before Ray (no Ray here): resolve its `{best_of: SEARCH}` links against
    `storage` (links.json), then `_prepare` its folder, data and reference statistics. Returns
    (base tree, fixed overrides, base config): a trial's config is
    from_tree(base tree, spec.override_list(params) + fixed + [train.run_name=TRIAL])."""
    from tune.space import resolve_links

    search_dir = Path(storage) / spec.name
    chosen = resolve_links(spec, storage)  # {best_of: SEARCH} -> that search's best run folder
    if chosen:
        search_dir.mkdir(parents=True, exist_ok=True)
        (search_dir / "links.json").write_text(json.dumps(chosen, indent=2) + "\n")
        for name, link in chosen.items():
            print(f"faice search: {link['key']} = best of {name}: trial {link['trial']} "
                  f"({link['metric']} {link['value']:.4g} at step {link['step']}) {link['run']}", flush=True)  # fmt: skip
    return _prepare(spec, search_dir)


def _prepare(spec, search_dir: Path) -> tuple[dict, list[str], object]:
    """Base tree + fixed overrides every trial gets, and the base config; writes search.yaml and
    base_config.yaml; makes the data and the reference statistics (once, here, not by every trial)."""
    from faice.data.ensure import ensure_dataset

    base_tree = read_tree(spec.base)
    base = spec.config_for({})
    data_path = Path(base.data.path).resolve()
    stats_dir = Path(base.eval.stats_dir or search_dir.parent / "reference-stats").resolve()
    # each trial draws one progress line on this console (jobs.ray_train.TrialProgress); with
    # log.progress=false its rank 0 prints metric lines instead
    fixed = [
        f"data.path={data_path}",
        f"train.output_dir={search_dir / 'runs'}",
        f"eval.stats_dir={stats_dir}",
    ]
    base.data.path, base.train.output_dir = str(data_path), str(search_dir / "runs")
    base.eval.stats_dir = str(stats_dir)
    search_dir.mkdir(parents=True, exist_ok=True)
    spec.dump(search_dir / "search.yaml")
    (search_dir / "base_config.yaml").write_text(dump_yaml(base))
    ensure_dataset(base.data)
    probe = spec.probe_config()
    if probe.eval.num_samples:
        from faice.evaluate import reference_for
        from faice.metrics.features import build_extractor

        probe.data.path, probe.eval.stats_dir = base.data.path, base.eval.stats_dir
        ref = reference_for(probe, build_extractor(probe.eval.extractor, probe.eval))
        print(f"faice search: reference statistics {'computed' if ref.computed else 'reused'}: {ref.path}")
    return base_tree, fixed, probe


def _use_pool(base) -> bool:
    return bool(base.eval.num_samples) and base.eval.where == "pool"


def _eval_reserve(
    spec, cluster: dict[str, float], needed: bool, resuming: bool = False, autoscaling: bool = False
) -> tuple[dict, int, dict[str, float]]:
    """(task options, slots, resources kept for evaluation) of the cluster's evaluation slots; the CPUs
    and GPUs of those slots never count as training capacity. ConfigError when `needed` and none exist,
    unless `resuming` a search that had them (its evaluations then wait for an evaluation node to
    (re)join, as they would while one is down) or `autoscaling` (the first evaluation asks for one)."""
    from jobs.eval_pool import eval_task_options

    pool = spec.evaluation
    slots = int(cluster.get(pool.resource, 0))
    if slots:
        options = eval_task_options(pool.resource, pool.cpus, pool.gpus)
        return options, slots, {"CPU": slots * pool.cpus, "GPU": slots * pool.gpus}
    if not needed:
        return {}, 0, {}
    if pool.fallback_cpus > 0:
        print(
            f"faice search: warning: no {pool.resource!r} in the cluster; evaluations share training "
            f"nodes ({pool.fallback_cpus:g} CPUs each), one at a time",
            flush=True,
        )
        return eval_task_options(None, pool.fallback_cpus, 0), 1, {"CPU": pool.fallback_cpus}
    if autoscaling:
        print(f"faice search: no {pool.resource!r} in the cluster yet; the first evaluation asks the "
              "autoscaler for an evaluation node", flush=True)  # fmt: skip
        return eval_task_options(pool.resource, pool.cpus, pool.gpus), 1, {}
    if resuming:
        print(
            f"faice search: warning: no {pool.resource!r} in the cluster now; evaluations wait until an "
            "evaluation node joins (training goes on meanwhile)",
            flush=True,
        )
        return eval_task_options(pool.resource, pool.cpus, pool.gpus), 1, {}
    raise ConfigError(
        f"evaluation: the cluster has no {pool.resource!r} resource, so checkpoint evaluations could never "
        f"run; start evaluation nodes with `ray start ... --resources '{{\"{pool.resource}\": 1}}'`, "
        "or set evaluation.fallback_cpus (evaluate on training nodes) or config.eval.where=inline"
    )


def _write_trials(results, search_dir: Path, keys: list[str]) -> None:
    from faice.results import write_trials

    trials = {}
    for result in results:
        trial_id = Path(result.path).name.removeprefix("trial-")
        status = "ERROR" if result.error else "TERMINATED"
        trials[trial_id] = {"status": status, "params": {k: result.config.get(k) for k in keys}}
    write_trials(search_dir, trials)


LOCK_FILE = ".launcher.lock"
_held_locks: list = []  # open lock files, held until this process exits (the kernel releases them then)


def _hold_search_lock(search_dir: Path) -> None:
    """Take the search folder's launcher lock (flock, released when this process dies, whatever kills it);
    ConfigError naming the launcher that holds it."""
    import fcntl
    import socket
    import time

    search_dir.mkdir(parents=True, exist_ok=True)
    f = open(search_dir / LOCK_FILE, "a+")  # noqa: SIM115 (held open until the process exits)
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "another launcher"
        f.close()
        raise ConfigError(
            f"search {search_dir} is being run by {holder}; wait for it to end (or stop it), "
            "or pass --name to start another search"
        ) from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    f.flush()
    _held_locks.append(f)


def run_search(args: argparse.Namespace) -> Path | None:
    """Validate, connect, run (or resume) the search, write its results; returns the search folder."""
    from tune.space import load_space, to_param_space

    overrides = [f"scale={args.scale}", *args.overrides] if args.scale else args.overrides
    spec = load_space(args.space, overrides, profile=args.profile)
    if args.name:
        from faice.config.checks import check_name

        check_name(args.name, "--name")
        spec.name = args.name
    if args.autoscaling and not spec.searcher.max_concurrent:
        raise ConfigError(
            "--autoscaling: set searcher.max_concurrent (how many trials at once: the autoscaler makes room "
            "for them), e.g. searcher.max_concurrent=8"
        )
    if args.check:
        print(
            f"tune.search: {spec.name}: {spec.num_trials} trial(s) of {spec.max_steps()} steps; the space is valid"
        )
        return None
    storage = Path(args.storage).resolve()
    search_dir = storage / spec.name
    _hold_search_lock(search_dir)  # one launcher per search: a second one is refused, naming the first
    has_state = any(search_dir.glob("experiment_state*.json")) or any(search_dir.glob("tuner.pkl"))
    args.resume = args.resume or (args.resume_if_exists and has_state)
    if has_state and not args.resume:
        raise ConfigError(
            f"search {search_dir} exists; pass --resume to continue it or --name to start another"
        )
    if args.resume and not has_state:
        raise ConfigError(f"--resume: no search state in {search_dir}")
    base_tree, fixed, base = prepare_search(spec, storage)
    use_pool = _use_pool(base)

    import ray
    from ray import tune

    from faice.evaluate import is_eval_metric
    from jobs.ray_train import connect, run_bundle

    if is_eval_metric(spec.metric):  # results before the first evaluation carry no FID yet
        os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    # a local cluster gets one evaluation slot with its own CPUs next to the training CPUs
    local_eval = {spec.evaluation.resource: 1} if use_pool else None
    connect(args.address, args.num_cpus, local_eval, spec.evaluation.cpus if use_pool else 0)
    cluster = ray.cluster_resources()
    options, slots, reserved = _eval_reserve(
        spec, cluster, needed=use_pool, resuming=args.resume, autoscaling=args.autoscaling
    )
    cluster = {k: v - reserved.get(k, 0) for k, v in cluster.items()}
    from jobs.eval_pool import dispatcher_name, start_dispatcher

    pool = None
    if use_pool:
        pool = start_dispatcher(
            spec.name,
            options,
            slots,
            spec.evaluation.keep,
            spec.evaluation.max_attempts,
            protected_steps=protected_steps(spec),
            warm_up=not args.autoscaling,
        )
        print(f"faice search: evaluation pool of {slots} slot(s), task resources {options}", flush=True)
        if args.resume:  # what the lost launcher's queue held: the checkpoints still marked pending
            from jobs.eval_pool import submit_pending

            if queued := submit_pending(pool, search_dir):
                print(f"faice search: {queued} checkpoint(s) pending evaluation re-queued", flush=True)
    if args.autoscaling:  # the nodes come when the trials ask for them
        concurrent = spec.searcher.max_concurrent
    else:
        concurrent = max_concurrent(run_bundle(spec.trial), cluster)
    if spec.searcher.max_concurrent:
        concurrent = min(concurrent, spec.searcher.max_concurrent)
    print(
        f"faice search {spec.name}: {spec.num_trials} trials, up to {concurrent} at once -> {search_dir}",
        flush=True,
    )
    from tune.callbacks import ResultsOnTrialEnd

    verbose, console = console_callbacks(args, spec)
    pool_name = dispatcher_name(spec.name) if pool else None
    trainable = _trainable(spec, search_dir, base_tree, fixed, pool_name)
    if args.resume:
        tuner = tune.Tuner.restore(str(search_dir), trainable=trainable, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=to_param_space(spec),
            tune_config=tune.TuneConfig(
                metric=spec.metric,
                mode=spec.mode,
                scheduler=_scheduler(spec),
                search_alg=_searcher(spec, concurrent),
                num_samples=spec.budget.num_samples,
                time_budget_s=spec.budget.time_budget_s,
                trial_dirname_creator=lambda trial: f"trial-{trial.trial_id}",
                reuse_actors=spec.trial.reuse_actors,
            ),
            run_config=tune.RunConfig(
                name=spec.name,
                storage_path=str(storage),
                verbose=verbose,
                callbacks=[ResultsOnTrialEnd(search_dir, spec.keys), *console],
                # (trials in their own actor; a Ray Train run restarts its workers itself)
                failure_config=tune.FailureConfig(max_failures=actor_failures(spec.trial)),
                # Tune keeps every checkpoint reference (a few bytes each): a search state saved a moment
                # before the launcher died may name an older one, which must still be there on --resume
                # (the trial then continues from the run folder's newest, faice's resume_point)
            ),
        )
    results = tuner.fit()
    _write_trials(results, search_dir, spec.keys)
    late: dict[str, list[dict]] = {}
    if pool is not None:
        from jobs.eval_pool import finish_evaluations, score_best

        late = finish_evaluations(pool, search_dir, spec, timeout=args.eval_timeout)
        for row in score_best(options, search_dir, spec):
            late.setdefault(row["trial_id"], []).append(row)
    from faice.train.outputs import sync_runs

    synced = sync_runs(search_dir / "runs", late)  # W&B of stopped trials and late evaluations
    if replayed := sorted(t for t, what in synced.items() if what == "replayed"):
        print(f"faice search: W&B runs of {len(replayed)} stopped trial(s) replayed from their local records")
    return search_dir


def main(argv: list[str] | None = None) -> int:
    """`python -m tune.search`: run (or resume) a search; exit code (2 for bad input)."""
    from jobs.local_ray import apply_local_env

    apply_local_env()  # before ray is imported: loopback only, explicit auth mode
    args = parse_args(argv)
    try:
        search_dir = run_search(args)
    except ConfigError as e:
        print(f"tune.search: error: {e}", file=sys.stderr)
        return 2
    if search_dir is None:  # --check
        return 0
    from faice.results import results_command

    code = results_command(str(search_dir))
    print(f"report: faice report {search_dir}  (HTML + markdown, FID vs sampling steps, Pareto plot)")
    from faice.report import wandb_info
    from faice.results import load_search

    if link := wandb_info(search_dir, load_search(search_dir))["link"]:
        print(f"W&B group of this search: {link}")
    runs = sorted(search_dir.glob("runs/*/wandb/offline-run-*"))
    if runs:
        print(
            f"W&B offline runs ({len(runs)}, group {search_dir.name}): {search_dir / 'runs'}/*/wandb "
            f"(upload with `wandb sync {search_dir / 'runs'}/*/wandb/offline-run-*`)"
        )
    return code


if __name__ == "__main__":
    sys.exit(main())

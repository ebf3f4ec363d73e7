"""`python -m jobs.train`: one faice training run as a Ray Train run (for `ray job submit` or a laptop).

ray job submit --working-dir . -- python -m jobs.train --config configs/demo.yaml --num-workers 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from faice.errors import ConfigError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The parsed arguments of `python -m jobs.train`."""
    p = argparse.ArgumentParser(
        prog="python -m jobs.train",
        description="Train one faice config on a Ray cluster with Ray Train (resumes from its last checkpoint).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--config", "-c", required=True, help="faice config YAML (a path or a name under configs/)"
    )
    p.add_argument(
        "--address", default=None, help="Ray address (default: $RAY_ADDRESS, else a local 127.0.0.1 cluster)"
    )
    p.add_argument(
        "--storage", default="runs/ray", help="where the run folder and Ray Train state go (shared)"
    )
    p.add_argument(
        "--name", default=None, help="run name (default: the config's run name); stable across restarts"
    )
    p.add_argument(
        "--profile",
        default=None,
        help="machine profile: configs/profiles/NAME.yaml or a path (batch size, precision, resources); "
        "the flags and overrides below win over it",
    )
    p.add_argument("--num-workers", type=int, help="Ray Train workers (data-parallel processes) [1]")
    p.add_argument("--cpus-per-worker", type=float, help="CPUs per worker [1]")
    p.add_argument("--gpus-per-worker", type=float, help="GPUs per worker [0]")
    p.add_argument(
        "--resources-per-worker", help="custom resources per worker, e.g. '{\"train_slot\": 1}' [{}]"
    )
    p.add_argument("--max-failures", type=int, help="worker-failure restarts (from the last checkpoint) [3]")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local cluster (local only)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    return p.parse_args(argv)


def _json_flag(text: str | None, flag: str):
    """The JSON value of a command-line flag (None when not given); ConfigError naming the flag."""
    import json

    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"{flag}: not valid JSON ({e.msg} at column {e.colno}): {text!r}; e.g. '{{\"train_slot\": 1}}'"
        ) from None


def run(args: argparse.Namespace) -> Path:
    """Run one Ray Train run from parsed arguments; exit code."""
    import json

    from faice.config import flatten
    from faice.data.ensure import ensure_dataset
    from faice.profiles import TrialResources, load_profile, parse_section
    from faice.tasks import load_checked

    profile = load_profile(args.profile) if args.profile else {}
    profile_overrides = [f"{k}={json.dumps(v)}" for k, v in flatten(profile.get("config") or {}).items()]
    cfg = load_checked(args.config, [*profile_overrides, *args.overrides])
    from faice.config.checks import check_name

    check_name(args.name, "--name")
    name = args.name or cfg.run_name
    storage = Path(args.storage).resolve()
    cfg.data.path = str(Path(cfg.data.path).resolve())
    cfg.train.run_name = name
    ensure_dataset(cfg.data)
    flags = {
        "num_workers": args.num_workers,
        "cpus_per_worker": args.cpus_per_worker,
        "gpus_per_worker": args.gpus_per_worker,
        "resources_per_worker": _json_flag(args.resources_per_worker, "--resources-per-worker"),
        "max_failures": args.max_failures,
    }
    resources = parse_section(
        TrialResources,
        {
            "max_failures": 3,
            **(profile.get("trial") or {}),
            **{k: v for k, v in flags.items() if v is not None},
        },
        "trial",
    )
    from jobs.ray_train import connect, make_trainer

    connect(args.address, args.num_cpus)
    run_dir = storage / "runs" / name
    make_trainer(cfg, run_dir, storage / "train", name, resources).fit()
    from faice.train.checkpoint import latest_checkpoint

    print(f"run folder: {run_dir}\nlast checkpoint: {latest_checkpoint(run_dir)}")
    return run_dir


def main(argv: list[str] | None = None) -> int:
    """`python -m jobs.train`: one faice run as a Ray Train run; exit code (2 for bad input)."""
    from jobs.local_ray import apply_local_env

    apply_local_env()
    try:
        run(parse_args(argv))
    except ConfigError as e:
        print(f"jobs.train: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

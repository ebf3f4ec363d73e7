"""The `faice` command line: data, train, sample, evaluate, export, config, results, report, compare,
cluster, demo. Each subcommand's parser sits next to its command function (faice/cli/*.py); choices
come from the registries.

Bad input exits non-zero with one line naming the problem (no traceback).
"""

from __future__ import annotations

import argparse
import sys

from faice.cli import data, evaluate, run, searches, tools
from faice.cli.common import FMT
from faice.errors import ConfigError

SUBCOMMANDS = (
    run.add_train, run.add_sample, evaluate.add_evaluate, run.add_export, tools.add_config, data.add_data,
    searches.add_results, searches.add_report, searches.add_compare, tools.add_cluster, run.add_demo,
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The `faice` parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="faice", description="Diffusion models of human faces.", formatter_class=FMT
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one `faice` command; the exit code (2 for bad input, with one line naming it)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # usage errors (one line, naming the valid choices) and --help
        return e.code if isinstance(e.code, int) else 2
    try:
        return args.fn(args)
    except ConfigError as e:
        print(f"faice: error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"faice: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("faice: interrupted; rerun with --resume to continue from the last checkpoint", file=sys.stderr)
        return 130
    except Exception as e:
        from faice.train.loop import TrainingDiverged

        if isinstance(e, TrainingDiverged):
            print(f"faice: error: {e}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())

"""What every subcommand shares: the help formatter, the overrides epilog and the --config arguments."""

from __future__ import annotations

import argparse

FMT = argparse.ArgumentDefaultsHelpFormatter
EPILOG_OVERRIDES = "Overrides are dotted config keys: train.lr=2e-4 model.name=unet-adm data.resolution=64"


def add_config_args(p: argparse.ArgumentParser) -> None:
    """--config and the positional dotted overrides."""
    p.add_argument(
        "--config", "-c", help="YAML config (a path, or a file name under configs/); default: built-ins"
    )
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")

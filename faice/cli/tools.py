"""`faice config show|docs` and `faice cluster check`: configs and cluster files."""

from __future__ import annotations

import argparse

from faice.cli.common import EPILOG_OVERRIDES, FMT, add_config_args


def add_config(sub) -> None:
    """`faice config ...`: show a resolved config or document every key."""
    cfg = sub.add_parser("config", help="show or document configs", formatter_class=FMT)
    csub = cfg.add_subparsers(dest="config_command", required=True)
    p = csub.add_parser(
        "show", help="print the resolved config", epilog=EPILOG_OVERRIDES, formatter_class=FMT
    )
    add_config_args(p)
    p.set_defaults(fn=cmd_config_show)
    p = csub.add_parser("docs", help="list every config key with its type, default and meaning")
    p.set_defaults(fn=cmd_config_docs)


def cmd_config_show(args: argparse.Namespace) -> int:
    """`faice config show`: the resolved config as YAML; exit code."""
    from faice.config import dump_yaml
    from faice.tasks import load_checked

    print(dump_yaml(load_checked(args.config, args.overrides)), end="")
    return 0


def cmd_config_docs(args: argparse.Namespace) -> int:
    """`faice config docs`: every config key with its type, default and meaning; exit code."""
    from faice.config import describe

    for key, tp, default, help_ in describe():
        print(f"{key} ({tp}, default {default})\n    {help_}")
    return 0


def add_cluster(sub) -> None:
    """`faice cluster check`: validate cluster YAMLs."""
    cluster = sub.add_parser("cluster", help="lab cluster tools", formatter_class=FMT)
    clsub = cluster.add_subparsers(dest="cluster_command", required=True)
    p = clsub.add_parser(
        "check",
        help="validate cluster YAMLs (Ray's schema, KubeRay fields, faice's train/eval pools)",
        epilog="e.g. faice cluster check cluster/lab.yaml cluster/kuberay.yaml; exit 1 on any error",
        formatter_class=FMT,
    )
    p.add_argument("paths", nargs="+", help="a `ray up` config or a KubeRay RayCluster YAML")
    p.set_defaults(fn=cmd_cluster_check)


def cmd_cluster_check(args: argparse.Namespace) -> int:
    """`faice cluster check`: validate cluster YAMLs; exit code (1 on any error)."""
    from faice.cluster import check_command

    return check_command(args.paths)

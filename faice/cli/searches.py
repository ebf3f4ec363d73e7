"""`faice results`, `faice report` and `faice compare`: a search's outputs, read from disk."""

from __future__ import annotations

import argparse

from faice.cli.common import FMT
from faice.sweep import DEFAULT_PLAN, format_plan


def add_results(sub) -> None:
    """`faice results`: a search's table and plots."""
    p = sub.add_parser(
        "results",
        help="print a search's results table and redraw its plots, from disk (no Ray)",
        formatter_class=FMT,
    )
    p.add_argument("search", help="a search folder: <storage>/<search name> (has search.yaml)")
    p.set_defaults(fn=cmd_results)


def cmd_results(args: argparse.Namespace) -> int:
    """`faice results`: a search's table and plots; exit code."""
    from faice.results import results_command

    return results_command(args.search)


def add_report(sub) -> None:
    """`faice report`: a search's HTML and markdown report."""
    p = sub.add_parser(
        "report",
        help="a search's report: sortable table, curves, FID vs sampling steps, Pareto plot, best sample "
        "grids, config diffs (self-contained HTML + markdown), from disk alone",
        epilog="e.g. faice report runs/searches/demo-asha --sweep 'ddpm:25,1000;ddim:10,50' (the sweep samples "
        "the best checkpoint once per sampler and step count; cached in <out>/sampling-steps.json)",
        formatter_class=FMT,
    )
    p.add_argument("search", help="a search folder: <storage>/<search name> (has search.yaml)")
    p.add_argument("--out", default="<search>/report", help="output folder")
    p.add_argument(
        "--sweep",
        default=format_plan(DEFAULT_PLAN),
        help="samplers and step counts of FID vs sampling steps, SAMPLER:STEPS,...;... or none",
    )
    p.add_argument(
        "--sweep-samples", type=int, default=0, help="images per sweep point (0 = eval.num_samples)"
    )
    p.set_defaults(fn=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    """`faice report`: a search's HTML and markdown report; exit code."""
    from faice.report import build_report
    from faice.sweep import parse_plan

    plan = None if args.sweep == "none" else parse_plan(args.sweep)
    out = None if args.out == "<search>/report" else args.out
    result = build_report(args.search, out, plan, args.sweep_samples or None)
    print(f"html: {result['html']}\nmd: {result['md']}")
    if result["wandb"]["link"]:
        print(f"W&B: {result['wandb']['link']}")
    return 0


def add_compare(sub) -> None:
    """`faice compare`: the best trials of several searches."""
    p = sub.add_parser(
        "compare",
        help="the best trial of several searches in one table, with the metric columns they share",
        epilog="e.g. faice compare runs/searches/dit-vs-unet runs/searches/unet-architecture --out cmp.md; "
        "a column is one metric of one extractor, so fid[faice-tiny] and fid[inception] never mix",
        formatter_class=FMT,
    )
    p.add_argument("searches", nargs="+", help="search folders (<storage>/<search name>)")
    p.add_argument("--out", default=None, help="also write the table as markdown here (and a .csv twin)")
    p.set_defaults(fn=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    """`faice compare`: the best trials of several searches; exit code."""
    from faice.report import compare_command

    return compare_command(args.searches, args.out)

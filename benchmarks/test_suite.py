"""The whole test suite as CI runs it: `bash .ci/run` in a fresh clone (installation included, with an
empty package cache) against the 10-minute budget, with the seconds of each test file and the slowest tests,
beside the recorded run of the suite before the redesign (benchmarks/results/test_suite_before.json).

Run: `python3 benchmarks/test_suite.py` (clones HEAD into a temp folder; about 10 minutes), or
`python3 benchmarks/test_suite.py --junit FILE --wall SECONDS` to summarise a run made elsewhere.
Writes benchmarks/results/test_suite.{json,md}. ratio = wall seconds / 600; target: <= 1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, write_result  # noqa: E402

BUDGET_S = 600.0
SLOWEST = 15
REPO = Path(__file__).resolve().parent.parent


def summarise_junit(path: Path) -> dict:
    """{tests, pytest_s, groups: {test file: seconds}, slowest: [[test, seconds], ...]} of a junit file
    (a test's seconds include its fixtures' setup and teardown, as pytest's junit reports them)."""
    cases = [
        (c.get("classname", ""), c.get("name", ""), float(c.get("time", 0)))
        for c in ET.parse(path).getroot().iter("testcase")
    ]
    groups: dict[str, float] = defaultdict(float)
    for cls, _, seconds in cases:
        groups[cls.replace(".", "/") + ".py"] += seconds  # classname: the test module, dotted
    slowest = sorted(cases, key=lambda c: -c[2])[:SLOWEST]
    return {
        "tests": len(cases),
        "pytest_s": round(sum(c[2] for c in cases), 1),
        "groups": {k: round(v, 1) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])},
        "slowest": [[f"{cls.rsplit('.', 1)[-1]}::{name}", round(s, 1)] for cls, name, s in slowest],
    }


def run_fresh_clone() -> tuple[float, Path, str]:
    """(wall seconds, junit file, commit) of `bash .ci/run` in a fresh clone of HEAD with an empty uv cache."""
    work = Path(tempfile.mkdtemp(prefix="faice-suite-"))
    clone = work / "repo"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    commit = subprocess.run(["git", "-C", str(clone), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()  # fmt: skip
    junit = work / "junit.xml"
    env = {**os.environ, "UV_CACHE_DIR": str(work / "uv-cache"), "PYTEST_ADDOPTS": f"--junitxml={junit}"}
    t0 = time.perf_counter()
    out = subprocess.run(["bash", ".ci/run"], cwd=clone, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    (work / "ci.log").write_text(out.stdout + out.stderr)
    if out.returncode != 0:
        sys.exit(f"bash .ci/run failed ({out.returncode}); log: {work / 'ci.log'}")
    return wall, junit, commit, outcome(out.stdout)


def outcome(log: str) -> str:
    """pytest's last summary line, e.g. '587 passed, 4 skipped, 4 warnings in 1445.15s (0:24:05)'."""
    lines = [ln.strip(" =") for ln in log.splitlines() if " passed" in ln and " in " in ln]
    return lines[-1] if lines else ""


def pytest_wall(summary: str) -> float | None:
    """The seconds in pytest's summary line ('... in 494.82s (0:08:14)'), or None."""
    import re

    m = re.search(r" in ([0-9.]+)s", summary)
    return float(m.group(1)) if m else None


def table(before: dict, after: dict) -> list[str]:
    rows = ["| test file | before s | after s |", "|---|---:|---:|"]
    for name in sorted(set(before["groups"]) | set(after["groups"]),
                       key=lambda g: -max(before["groups"].get(g, 0), after["groups"].get(g, 0))):  # fmt: skip
        b, a = before["groups"].get(name), after["groups"].get(name)
        rows.append(f"| {name} | {'-' if b is None else f'{b:.1f}'} | {'-' if a is None else f'{a:.1f}'} |")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--junit", type=Path, help="summarise this junit file instead of running the suite")
    parser.add_argument(
        "--wall", type=float, help="with --junit: the run's wall seconds, installation included"
    )
    parser.add_argument("--commit", default="", help="with --junit: the commit it ran")
    args = parser.parse_args(argv)
    if args.junit:
        if args.wall is None:
            parser.error("--junit needs --wall")
        wall, junit, commit, summary = args.wall, args.junit, args.commit, ""
    else:
        wall, junit, commit, summary = run_fresh_clone()
    after = summarise_junit(junit)
    before = json.loads((RESULTS / "test_suite_before.json").read_text())
    result = {
        "ratio": round(wall / BUDGET_S, 3),
        "target": 1.0,
        "details": {
            "definition": "ratio = wall seconds of `bash .ci/run` in a fresh clone (installation included) / 600",
            "machine": machine(),
            "commit": commit,
            "wall_s": round(wall, 1),
            "outcome": summary,
            # wall minus pytest's own wall clock (its test times add up to more under xdist)
            "pytest_wall_s": pytest_wall(summary),
            "install_and_setup_s": round(wall - (pytest_wall(summary) or after["pytest_s"]), 1),
            "after": after,
            "before": before,
        },
    }
    md = [
        "# Test suite: `bash .ci/run` from a fresh clone",
        "",
        f"Machine: {machine()}. Commit {commit}. Target: at most {BUDGET_S:.0f} s, installation included.",
        *([f"pytest: {summary}."] if summary else []),
        "",
        "| | before | after |",
        "|---|---:|---:|",
        f"| wall, installation included | {before['wall_s']:.0f} s | {wall:.0f} s |",
        f"| pytest, sum of test times (xdist workers run side by side) | {before['pytest_s']:.0f} s | {after['pytest_s']:.0f} s |",
        f"| tests | {before['tests']} | {after['tests']} |",
        "",
        f"**ratio = {result['ratio']}** (wall / {BUDGET_S:.0f} s; target <= 1). Before: {before['note']}",
        "",
        "## Seconds per test file",
        "",
        *table(before, after),
        "",
        f"## The {SLOWEST} slowest tests (after)",
        "",
        "| test | s |",
        "|---|---:|",
        *[f"| {name} | {s:.1f} |" for name, s in after["slowest"]],
        "",
        f"## The {SLOWEST} slowest tests (before)",
        "",
        "| test | s |",
        "|---|---:|",
        *[f"| {name} | {s:.1f} |" for name, s in before["slowest"]],
        "",
    ]
    write_result("test_suite", result, md)


if __name__ == "__main__":
    main()

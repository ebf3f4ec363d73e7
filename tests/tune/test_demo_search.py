"""The demo search (demo-asha at debug size, in-process as the launcher builds its trials, every checkpoint
scored with the real tiny default, kid[inception]), its `faice report` checked in headless Chromium against
results.csv, a consistency search distilling its best trial through `{best_of: demo-asha}`, and
`faice compare` of the two. The Ray paths these share with every search run in tests/jobs."""

import csv
import json
import os

import pytest

from faice.cli import main as faice
from tests.browser import CHROMIUM, open_page
from tests.tune.tiny_search import run_tiny_in_process

pytestmark = [pytest.mark.slow]

SWEEP = "ddpm:5,20;ddim:5;pndm:5;dpm-solver++:5"
# the Inception's reference statistics from 32 of the 96 debug images (~0.2 s an image on a CPU), shared by
# the demo and the consistency search (the same cache key)
REFERENCE = "config.eval.reference_images=32"
PAGE = """(() => {
  const table = document.getElementById("results");
  const cells = (row) => Array.from(row.cells).map((c) => c.dataset.value);
  const head = Array.from(table.tHead.rows[0].cells).map((c) => c.textContent);
  const rows = Array.from(table.tBodies[0].rows).map(cells);
  const images = Array.from(document.images).map((i) => ({alt: i.alt, ok: i.complete && i.naturalWidth > 0}));
  const id = head.indexOf("trial_id");
  table.tHead.rows[0].cells[id].click();
  const sorted = Array.from(table.tBodies[0].rows).map((r) => r.cells[id].dataset.value);
  return {head, rows, images, sorted, sweep: document.querySelectorAll("#sweep tbody tr").length};
})()"""


@pytest.fixture(scope="module")
def demo(debug_data, tmp_path_factory):
    """(storage, results.csv rows) of demo-asha at debug size: 2 trials scored by kid[inception]."""
    storage = tmp_path_factory.mktemp("storage")
    rows = run_tiny_in_process(storage, "demo-asha.yaml", debug_data, "budget.num_samples=2", "scheduler.grace_period=3",
                               "config.eval.num_inference_steps=3", REFERENCE, fast=False)  # fmt: skip
    assert len(rows) == 2
    return storage, rows


@pytest.mark.timeout(900)
def test_the_demo_searchs_report_renders_in_a_browser_with_the_csv_numbers(demo, tmp_path):
    if CHROMIUM is None and not os.environ.get("FAICE_REQUIRE_BROWSER"):
        pytest.skip("no chromium on PATH (make test installs Debian's chromium where it can)")
    storage, _ = demo
    search = storage / "demo-asha"
    assert faice(["report", str(search), "--out", str(tmp_path / "report"), "--sweep", SWEEP,
                  "--sweep-samples", "8"]) == 0  # fmt: skip
    with (search / "results.csv").open() as f:
        reader = csv.reader(f)
        header, *table = list(reader)
    page, errors = open_page((tmp_path / "report" / "index.html").as_uri(), PAGE)
    assert errors == []
    grid = header.index("grid")
    assert page["head"] == header[:grid] + header[grid + 1 :]
    assert page["rows"] == [row[:grid] + row[grid + 1 :] for row in table]  # the same cells, the same order
    assert len(page["rows"]) == 2  # a row per trial
    assert page["sorted"] == sorted(row[0] for row in table)  # clicking a header sorts the table
    alts = [i["alt"] for i in page["images"]]
    assert all(i["ok"] for i in page["images"]), page["images"]
    assert (
        any(a.startswith(f"{table[0][0]}: best") for a in alts) and "Pareto plot" in alts
    )  # best trial's grid
    assert "FID against sampling steps per sampler" in alts and page["sweep"] == 5
    swept = json.loads((tmp_path / "report" / "sampling-steps.json").read_text())
    assert [r["sampler"] for r in swept["rows"]] == ["ddpm", "ddpm", "ddim", "pndm", "dpm-solver++"]
    assert all(r["fid[inception]"] > 0 and r["fid_std[inception]"] > 0 for r in swept["rows"])
    md = (tmp_path / "report" / "report.md").read_text()
    assert all(f"| {row[0]} |" in md for row in table)


@pytest.mark.timeout(900)
def test_consistency_distils_the_demo_searchs_best_trial(demo, debug_data, capsys):
    from faice.config import read_yaml

    storage, demo_rows = demo
    capsys.readouterr()
    rows = run_tiny_in_process(storage, "consistency.yaml", debug_data, REFERENCE, fast=False)
    stdout = capsys.readouterr().out
    link = json.loads((storage / "consistency" / "links.json").read_text())["demo-asha"]
    best = min(
        (r for r in demo_rows if r["best_kid[inception]"]), key=lambda r: float(r["best_kid[inception]"])
    )
    assert link["trial"] == best["trial_id"] and f"best of demo-asha: trial {best['trial_id']}" in stdout
    runs = storage / "consistency" / "runs"
    configs = [read_yaml(runs / r["trial_id"] / "config.yaml", "c") for r in rows]
    assert sorted(c["consistency"]["loss"] for c in configs) == ["huber", "l2"]
    assert {c["consistency"]["teacher"] for c in configs} == {link["run"]}
    for row in rows:
        assert row["status"] == "finished" and float(row["best_kid[inception]"]) > -1
        evals = (runs / row["trial_id"] / "eval.jsonl").read_text()
        assert '"sampler": "lcm"' in evals and '"sampler_steps": 2' in evals
    capsys.readouterr()
    assert faice(["compare", str(storage / "demo-asha"), str(storage / "consistency")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "kid[inception]" in lines[0] and "kid_std[inception]" in lines[0]
    assert lines[2].startswith("| demo-asha |")
    assert lines[3].startswith("| consistency |")

"""`faice report` and `faice compare` on search folders written as the launcher writes them (search.yaml,
base_config.yaml, runs/<trial>/{config.yaml, metrics.jsonl, eval.jsonl, samples/final/grid.png}); the
demo search's report in a real browser is in tests/tune/test_demo_search.py."""

from __future__ import annotations

import csv
import io
import json
import os
import statistics
from pathlib import Path

import pytest
import yaml
from PIL import Image

from faice.cli import main as faice
from faice.results import by_configuration, collect

BASE = {"train": {"lr": 1e-4, "seed": 0}, "model": {"name": "unet-tiny"}}


def fake_search(
    root: Path, name: str, metric: str, trials: dict[str, dict], gpus: float = 0, **extra
) -> Path:
    """A finished search: trials {id: {"diff": {dotted: value}, "fid": [values per checkpoint], "evals": {...}}}."""
    folder = root / name
    (folder / "runs").mkdir(parents=True)
    spec = {"name": name, "base": "configs/demo.yaml", "metric": metric, "mode": "min",
            "trial": {"num_workers": 1, "cpus_per_worker": 1, "gpus_per_worker": gpus}, **extra}  # fmt: skip
    (folder / "search.yaml").write_text(yaml.safe_dump(spec))
    (folder / "base_config.yaml").write_text(yaml.safe_dump(BASE))
    for i, (tid, trial) in enumerate(trials.items()):
        run = folder / "runs" / tid
        (run / "samples" / "final").mkdir(parents=True)
        config = json.loads(json.dumps(BASE))
        for key, value in trial.get("diff", {}).items():
            section, field = key.split(".")
            config.setdefault(section, {})[field] = value
        (run / "config.yaml").write_text(yaml.safe_dump(config))
        steps = [100 * (k + 1) for k in range(len(trial["fid"]))]
        lines = [{"step": s, "loss": 1.0 / (s + i), "elapsed_s": s / 10} for s in steps]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
        evals = [
            {"step": s, metric: v, **trial.get("evals", {})} for s, v in zip(steps, trial["fid"], strict=True)
        ]
        (run / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evals))
        (run / "summary.json").write_text("{}")
        Image.new("RGB", (34, 34), (40 * i, 90, 160)).save(run / "samples" / "final" / "grid.png")
    return folder


def test_seeds_are_reported_as_mean_and_sample_std(tmp_path):
    fids = {"a": 10.0, "b": 14.0, "c": 12.0}
    trials = {
        t: {"diff": {"train.seed": s, "train.lr": 1e-3}, "fid": [v]}
        for (t, v), s in zip(fids.items(), [0, 1, 2], strict=True)
    }
    trials["d"] = {"diff": {"train.lr": 5e-3, "train.seed": 0}, "fid": [30.0]}
    folder = fake_search(tmp_path, "seeds", "fid[faice-tiny]", trials, seeds=[0, 1, 2])
    groups = by_configuration(collect(folder), "fid[faice-tiny]", "min")
    mean, std, n = groups[0]["best_fid[faice-tiny]"]
    assert (mean, n) == (statistics.mean(fids.values()), 3)
    assert std == pytest.approx(statistics.stdev(fids.values()))
    assert groups[0]["seeds"] == [0, 1, 2] and groups[1]["n"] == 1
    assert faice(["results", str(folder)]) == 0
    md = (folder / "results.md").read_text()
    assert "## Across seeds" in md and "12 ± 2 (n=3)" in md


def test_compare_keeps_extractors_in_their_own_columns(tmp_path, capsys):
    unet = fake_search(tmp_path, "unet", "fid[faice-tiny]", {
        "u1": {"diff": {"model.name": "unet-adm"}, "fid": [50.0, 40.0], "evals": {"kid[faice-tiny]": 0.1}},
        "u2": {"diff": {"model.name": "unet-ddpm"}, "fid": [45.0], "evals": {"kid[faice-tiny]": 0.2}},
    })  # fmt: skip
    dit = fake_search(tmp_path, "dit", "fid[faice-tiny]", {
        "d1": {"diff": {"model.name": "dit-b-4"}, "fid": [60.0],
               "evals": {"kid[faice-tiny]": 0.3, "fid[inception]": 80.0}},
    })  # fmt: skip
    out = tmp_path / "cmp" / "unet-vs-dit.md"
    assert faice(["compare", str(unet), str(dit), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = list(csv.DictReader(io.StringIO(out.with_suffix(".csv").read_text())))
    assert [r["search"] for r in rows] == ["unet", "dit"]
    assert rows[0]["trial"] == "u1" and float(rows[0]["fid[faice-tiny]"]) == 40.0
    assert float(rows[1]["fid[faice-tiny]"]) == 60.0 and float(rows[1]["kid[faice-tiny]"]) == 0.3
    # only dit has an Inception FID: it is listed as not compared, never put in the faice-tiny column
    assert "fid[inception]" not in rows[0] and "not compared: fid[inception]" in printed
    assert out.read_text() in printed


def test_report_is_self_contained_and_matches_results_csv(tmp_path):
    folder = fake_search(tmp_path, "study", "fid[faice-tiny]", {
        "t1": {"diff": {"train.lr": 1e-3}, "fid": [50.0, 42.5]},
        "t2": {"diff": {"train.lr": 3e-3}, "fid": [48.0]},
    }, gpus=1)  # fmt: skip
    assert faice(["report", str(folder), "--sweep", "none"]) == 0
    page = (folder / "report" / "index.html").read_text()
    assert 'src="data:image/png;base64,' in page and 'src="http' not in page and 'href="http' not in page
    with (folder / "results.csv").open() as f:
        table = list(csv.DictReader(f))
    for row in table:
        for key, value in row.items():
            if key != "grid" and value:
                assert f'data-value="{value}"' in page, (key, value)
    for name in (
        "curves-metric.png",
        "curves-loss.png",
        "pareto.png",
        "grid-t1.png",
        "grid-t2.png",
        "report.md",
    ):
        assert (folder / "report" / name).is_file(), name
    md = (folder / "report" / "report.md").read_text()
    assert "![Pareto plot](pareto.png)" in md and "| t1 |" in md
    wandb = json.loads((folder / "report" / "wandb.json").read_text())
    assert wandb["link"] is None and wandb["panels"]["filters"] == {"group": "study"}


def test_the_page_sorts_numbers_as_numbers_and_trial_ids_as_text(tmp_path):
    from tests.browser import CHROMIUM, open_page

    if CHROMIUM is None and not os.environ.get("FAICE_REQUIRE_BROWSER"):
        pytest.skip("no chromium on PATH (make test installs Debian's chromium where it can)")
    trials = {"752e3_00001": {"fid": [9.5]}, "752e3_00000": {"fid": [10.0]}, "752e3_00002": {"fid": [100.0]}}
    folder = fake_search(tmp_path, "ids", "fid[faice-tiny]", trials)
    assert faice(["report", str(folder), "--sweep", "none"]) == 0
    script = """(() => {
      const t = document.getElementById("results"), head = Array.from(t.tHead.rows[0].cells);
      const col = (name) => Array.from(t.tBodies[0].rows).map((r) => r.cells[head.findIndex((h) => h.textContent === name)].dataset.value);
      head.find((h) => h.textContent === "trial_id").click();
      const ids = col("trial_id");
      const best = head.find((h) => h.textContent === "best_fid[faice-tiny]");
      best.click(); best.click();
      return {ids, fids: col("best_fid[faice-tiny]")};
    })()"""
    page, errors = open_page((folder / "report" / "index.html").as_uri(), script)
    assert errors == [] and page["ids"] == ["752e3_00000", "752e3_00001", "752e3_00002"]
    assert page["fids"] == ["100.0", "10.0", "9.5"]  # descending by value, not as text


def test_wandb_link_of_online_runs(tmp_path):
    folder = fake_search(tmp_path, "online", "fid[faice-tiny]", {"t1": {"fid": [5.0]}})
    record = {"id": "t1", "mode": "online", "project": "faces", "entity": "lab", "group": "online",
              "url": "https://wandb.ai/lab/faces/runs/t1"}  # fmt: skip
    (folder / "runs" / "t1" / "wandb").mkdir()
    (folder / "runs" / "t1" / "wandb" / "faice-run.json").write_text(json.dumps(record))
    from faice.report import wandb_info
    from faice.results import load_search

    info = wandb_info(folder, load_search(folder))
    assert info["link"] == "https://wandb.ai/lab/faces/groups/online/workspace"
    assert info["runs_urls"] == {"t1": record["url"]}


def test_sweep_plan_errors_name_the_valid_samplers(capsys):
    assert faice(["report", "/nonexistent", "--sweep", "ddpn:10"]) == 2
    err = capsys.readouterr().err
    assert "ddpn:10" in err and "ddim" in err and "dpm-solver++" in err
    from faice.sweep import parse_plan, steps_to_match

    assert parse_plan("ddpm:1000,25;ddim:10") == {"ddpm": [25, 1000], "ddim": [10]}
    rows = [{"sampler": "ddim", "steps": 10, "fid[x]": 12.0}, {"sampler": "ddim", "steps": 50, "fid[x]": 10.5},
            {"sampler": "pndm", "steps": 10, "fid[x]": 20.0}]  # fmt: skip
    assert steps_to_match(rows, 10.0) == {"ddim": 50, "pndm": None}


def test_compare_and_report_show_uncertainty_and_say_when_the_best_two_tie(tmp_path, capsys):
    from faice.report import build_report

    std = {"fid_std[inception]": 5.0}
    tie = fake_search(tmp_path, "tie", "fid[inception]", {
        "a": {"fid": [100.0], "evals": std}, "b": {"fid": [104.0], "evals": std},
    })  # fmt: skip
    clear = fake_search(tmp_path, "clear", "fid[inception]", {
        "c": {"fid": [60.0], "evals": std}, "d": {"fid": [104.0], "evals": std},
    })  # fmt: skip
    assert faice(["compare", str(tie), str(clear), "--out", str(tmp_path / "c.md")]) == 0
    rows = list(csv.DictReader(io.StringIO((tmp_path / "c.csv").read_text())))
    assert [(r["trial"], r["verdict"], float(r["fid_std[inception]"])) for r in rows] == [
        ("a", "tie", 5.0), ("c", "clear", 5.0)
    ]  # fmt: skip
    page = build_report(tie, sweep=None, log=lambda _: None)
    md = page["md"].read_text()
    assert "No clear winner: the best two trials, a fid[inception]=100 ± 5" in md
    assert "No clear winner" in (tie / "results.md").read_text()

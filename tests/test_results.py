"""Search results from a real search folder: three tiny trainings with different learning rates."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
import yaml

from faice.config import ConfigError, load_config, to_dict
from faice.results import collect, config_diff, format_table, read_jsonl, report, results_command
from faice.train.loop import Hooks, train

REPO = Path(__file__).resolve().parent.parent
LRS = {"t0": 2e-3, "t1": 5e-4, "t2": 3e-3}  # t2 is stopped at step 2, then resumed and stopped at 3
TRIAL = {"num_workers": 2, "cpus_per_worker": 3, "gpus_per_worker": 0.5, "resources_per_worker": {}}


def _cfg(data: Path, *overrides: str):
    base = [f"data.path={data}", "train.output_dir=unused", "train.log_every=1", "train.max_steps=4"]
    return load_config(REPO / "configs" / "debug.yaml", base + list(overrides))


@pytest.fixture(scope="module")
def search(debug_data, tmp_path_factory) -> Path:
    """R/S with search.yaml, base_config.yaml and runs/t0..t2 (read-only: tests that edit copy it)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: extra threads only fight for a shared CPU (~20x slower)
    try:
        return _build_search(debug_data, tmp_path_factory)
    finally:
        torch.set_num_threads(threads)


def _build_search(debug_data: Path, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("storage") / "lr-search"
    root.mkdir()
    runs = root / "runs"
    (root / "base_config.yaml").write_text(yaml.safe_dump(to_dict(_cfg(debug_data))))
    spec = {
        "name": "lr-search",
        "base": "configs/debug.yaml",
        "overrides": {"train.log_every": 1},
        "metric": "loss",
        "mode": "min",
        "budget": {"num_samples": 3, "max_steps": 4, "time_budget_s": 600},
        "trial": TRIAL,
        "space": {"train.lr": {"loguniform": [1e-4, 1e-2]}},
    }
    (root / "search.yaml").write_text(yaml.safe_dump(spec))
    for tid, lr in LRS.items():
        cfg = _cfg(debug_data, f"train.lr={lr}", f"train.run_name={tid}", "log.group=lr-search")
        stop = (lambda s: s >= 2) if tid == "t2" else None
        train(cfg, runs / tid, hooks=Hooks(should_stop=stop))
    resumed = _cfg(debug_data, f"train.lr={LRS['t2']}", "train.run_name=t2", "log.group=lr-search")
    train(resumed, runs / "t2", resume=True, hooks=Hooks(should_stop=lambda s: s >= 3))
    return root


@pytest.fixture
def search_copy(search, tmp_path) -> Path:
    return Path(shutil.copytree(search, tmp_path / "lr-search"))


def _losses(search: Path, tid: str) -> list[float]:
    return [r["loss"] for r in read_jsonl(search / "runs" / tid / "metrics.jsonl") if "loss" in r]


@pytest.mark.timeout(300)
def test_rows_status_diff_best_and_resources(search):
    rows = {r.trial_id: r for r in collect(search)}
    assert sorted(rows) == ["t0", "t1", "t2"]
    assert {t: r.status for t, r in rows.items()} == {
        "t0": "finished",
        "t1": "finished",
        "t2": "stopped early",
    }
    for tid, row in rows.items():
        assert row.diff == {"train.lr": LRS[tid]}
        assert row.best == min(_losses(search, tid))
        assert row.last == _losses(search, tid)[-1]
        assert row.wall_s > 0
        assert row.cpu_hours == pytest.approx(row.wall_s / 3600 * 2 * 3)
        assert row.gpu_hours == pytest.approx(row.wall_s / 3600 * 2 * 0.5)
    assert rows["t0"].last_step == 4 and rows["t2"].last_step == 3
    assert (rows["t0"].resumes, rows["t2"].resumes) == (0, 1)
    assert rows["t0"].grid.endswith("samples/final/grid.png") and Path(rows["t0"].grid).is_file()


def test_config_diff_ignores_bookkeeping_and_reports_new_keys():
    base = {"name": "a", "train": {"lr": 1e-3, "run_name": None, "betas": [0.9, 0.99]}}
    trial = {"name": "b", "train": {"lr": 1e-3, "run_name": "t0", "betas": [0.9, 0.95], "new": 1}}
    assert config_diff(base, trial) == {"train.betas": [0.9, 0.95], "train.new": 1}


@pytest.mark.timeout(300)
def test_report_writes_csv_md_plot(search_copy):
    from PIL import Image

    result = report(search_copy)
    with result["csv"].open() as f:
        table = list(csv.DictReader(f))
    assert sorted(r["trial_id"] for r in table) == ["t0", "t1", "t2"]
    assert {"train.lr", "best_loss", "cpu_hours", "gpu_hours", "resumes"} <= set(table[0])
    assert "name" not in table[0] and "train.run_name" not in table[0]
    by_id = {r["trial_id"]: r for r in table}
    assert float(by_id["t1"]["best_loss"]) == pytest.approx(min(_losses(search_copy, "t1")))

    md = result["md"].read_text().splitlines()
    assert md[0].startswith("# Search `lr-search`: loss (min), 3 trials: 2 finished, 1 stopped early")
    assert md[2].startswith("**Best: ")  # the verdict (a loss has no uncertainty: never a tie)
    start = md.index(next(ln for ln in md if ln.startswith("| trial_id"))) + 2
    md_rows = [ln.split("|")[1:-1] for ln in md[start:] if ln.startswith("|")]
    md_best = [float(cells[3]) for cells in md_rows]
    assert md_best == sorted(md_best)
    assert md_rows[0][0].strip() == result["best"]["trial_id"]

    with Image.open(result["plot"]) as im:
        assert im.size[0] > 200 and im.size[1] > 200
        assert len(im.convert("RGB").getcolors(maxcolors=1 << 20)) > 20
    best = min(result["rows"], key=lambda r: r.best)
    assert {k: result["best"][k] for k in ("trial_id", "metric", "step", "grid", "tie")} == {
        "trial_id": best.trial_id, "metric": best.best, "step": best.best_step, "grid": best.grid, "tie": False
    }  # fmt: skip
    assert result["best"]["std"] is None  # a loss carries no uncertainty: never a tie


@pytest.mark.timeout(300)
def test_partial_search_truncated_line_empty_trial_and_trials_json(search_copy):
    metrics = search_copy / "runs" / "t1" / "metrics.jsonl"
    before = {r.trial_id: r for r in collect(search_copy)}["t1"]
    metrics.write_text(metrics.read_text() + '{"step": 7, "loss": 0.0')
    (search_copy / "runs" / "t3").mkdir()
    ray = {
        "t0": {"status": "TERMINATED", "params": {"train.lr": LRS["t0"]}},
        "t1": {"status": "ERROR", "params": {"train.lr": LRS["t1"]}},
        "t4": {"status": "PENDING", "params": {"train.lr": 1e-4}},
    }
    (search_copy / "trials.json").write_text(json.dumps(ray))
    result = report(search_copy)
    rows = {r.trial_id: r for r in result["rows"]}
    assert (rows["t1"].best, rows["t1"].last_step) == (before.best, before.last_step)
    assert {t: r.status for t, r in rows.items()} == {
        "t0": "finished",
        "t1": "error",
        "t2": "stopped early",
        "t3": "no metrics",
        "t4": "pending",
    }
    assert rows["t4"].diff == {"train.lr": 1e-4}
    assert rows["t3"].best is None and rows["t3"].wall_s is None and rows["t3"].grid is None
    md = result["md"].read_text().splitlines()
    assert [ln.split("|")[1].strip() for ln in md[-2:]] == ["t3", "t4"]  # no metric yet: last


def test_a_cached_collect_reads_again_only_the_trials_that_changed(search_copy, monkeypatch):
    """The launcher rewrites the tables as each trial ends: with collect's cache, a trial whose files and
    trials.json entry did not change is not read again, and every row equals a fresh read."""
    import faice.results.rows as rows_module

    read = []
    real = rows_module.trial_row
    monkeypatch.setattr(
        rows_module, "trial_row", lambda run_dir, tid, *a: read.append(tid) or real(run_dir, tid, *a)
    )
    cache: dict = {}
    assert collect(search_copy, cache) == collect(search_copy) and sorted(read) == [
        "t0",
        "t0",
        "t1",
        "t1",
        "t2",
        "t2",
    ]
    read.clear()
    assert collect(search_copy, cache) == collect(search_copy) and read == [
        "t0",
        "t1",
        "t2",
    ]  # the fresh read
    read.clear()
    metrics = search_copy / "runs" / "t1" / "metrics.jsonl"  # t1 goes on training and beats everyone
    metrics.write_text(metrics.read_text() + json.dumps({"step": 5, "loss": 1e-6}) + "\n")
    (search_copy / "trials.json").write_text(json.dumps({"t2": {"status": "ERROR", "params": {}}}))
    cached = collect(search_copy, cache)
    assert sorted(read) == ["t1", "t2"]
    assert cached == collect(search_copy)
    got = {r.trial_id: r for r in cached}
    assert (got["t1"].best, got["t1"].last_step, got["t2"].status) == (1e-6, 5, "error")
    cached[0].status = "changed by a caller"  # rows handed out are copies: the cache keeps its own
    assert collect(search_copy, cache)[0].status != "changed by a caller"


def test_report_with_no_trials_yet(tmp_path):
    (tmp_path / "search.yaml").write_text(yaml.safe_dump({"name": "s", "metric": "loss", "mode": "max"}))
    result = report(tmp_path)
    assert result["rows"] == [] and result["best"] is None and result["plot"].is_file()


@pytest.mark.timeout(300)
def test_results_command_and_console_table(search_copy):
    out = io.StringIO()
    assert results_command(str(search_copy), out=out) == 0
    text = out.getvalue()
    for name in ("results.csv", "results.md", "results.png"):
        assert str(search_copy / name) in text and (search_copy / name).is_file()
    best = min(collect(search_copy), key=lambda r: r.best)
    assert f"best: {best.trial_id} loss={best.best:.4g} at step {best.best_step}" in text
    assert f"best grid: {best.grid or 'none yet'}" in text
    lines = format_table(collect(search_copy), "loss", "min", max_width=40).splitlines()
    assert len(lines) == 4 and all(len(ln) <= 40 for ln in lines)
    assert lines[1].startswith(best.trial_id)


def test_not_a_search_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not a search folder: it has no search.yaml"):
        results_command(str(tmp_path))


def test_faice_results_cli(search_copy, capsys):
    from faice.cli import main

    assert main(["results", str(search_copy)]) == 0
    out = capsys.readouterr().out
    assert "best:" in out and (search_copy / "results.csv").exists()
    assert main(["results", str(search_copy / "runs")]) == 2


def test_verdict_flags_the_best_two_within_noise_and_crowns_a_clear_winner():
    from faice.results import TrialRow, verdict

    a = TrialRow("a", "finished", best=100.0, best_std=3.0, best_step=4)
    b = TrialRow("b", "finished", best=104.0, best_std=3.0, best_step=4)  # |diff| 4 < 2 * 4.24
    c = TrialRow("c", "finished", best=150.0, best_std=3.0, best_step=4)
    tie = verdict([c, b, a], "fid[inception]", "min")
    assert tie["tie"] and tie["best"] is a and tie["runner_up"] is b
    assert tie["text"].startswith("no clear winner") and "a fid[inception]=100 ± 3" in tie["text"]
    clear = verdict([c, a], "fid[inception]", "min")
    assert not clear["tie"] and clear["text"].startswith("best: a")
    high = verdict([a, c], "is[inception]", "max")
    assert high["best"] is c and not high["tie"]
    assert verdict([TrialRow("x", "running")], "fid[inception]", "min") is None


def test_an_evaluation_metric_carries_its_uncertainty_into_the_tables(tmp_path):
    """best_<metric>'s std is the one logged with the best checkpoint's evaluation, not the last's."""
    root = tmp_path / "s"
    run = root / "runs" / "t0"
    run.mkdir(parents=True)
    spec = {"name": "s", "metric": "kid[inception]", "mode": "min"}
    (root / "search.yaml").write_text(yaml.safe_dump(spec))
    (run / "metrics.jsonl").write_text(json.dumps({"step": 4, "loss": 0.5}) + "\n")
    rows = [
        {"step": 2, "kid[inception]": 0.30, "kid_std[inception]": 0.02, "fid[inception]": 300.0,
         "fid_std[inception]": 9.0},
        {"step": 4, "kid[inception]": 0.20, "kid_std[inception]": 0.01, "fid[inception]": 250.0,
         "fid_std[inception]": 7.0},
        {"step": 6, "kid[inception]": 0.25, "kid_std[inception]": 0.03, "fid[inception]": 260.0,
         "fid_std[inception]": 8.0},
    ]  # fmt: skip
    (run / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (row,) = collect(root)
    assert (row.best, row.best_std, row.best_step) == (0.20, 0.01, 4)
    result = report(root)
    with result["csv"].open() as f:
        (cells,) = list(csv.DictReader(f))
    assert float(cells["best_kid_std[inception]"]) == 0.01
    assert float(cells["fid_std[inception]"]) == 8.0  # the newest evaluation's, beside its fid
    assert "kid_std[x]" in result["md"].read_text()

"""Autoscaling with Ray's own autoscaler: a head started with the fake multi-node provider, whose node
types are generated from cluster/kuberay.yaml (faice.kuberay.autoscaler_node_types: a `train` type
advertising train_slot, an `eval` type advertising eval_slot, min_workers 0), sized down to 1 CPU each for
this machine. A search starts on the head alone; the node count is recorded over time."""

from __future__ import annotations

import copy
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import yaml

from faice.kuberay import autoscaler_node_types
from faice.train.checkpoint import checkpoint_name

REPO = Path(__file__).resolve().parents[2]
IDLE_TIMEOUT_S = 5.0


def node_types() -> dict[str, dict]:
    doc = yaml.safe_load((REPO / "cluster" / "kuberay.yaml").read_text())
    small = {"resources": {"CPU": 1, "GPU": 0}}  # a CPU-only laptop: one CPU per simulated node
    return autoscaler_node_types(doc, train={**small, "max_workers": 2}, eval={**small, "max_workers": 1})


def test_node_types_come_from_the_kuberay_groups():
    doc = yaml.safe_load((REPO / "cluster" / "kuberay.yaml").read_text())
    full = autoscaler_node_types(doc)
    assert full["train"]["resources"] == {"CPU": 8.0, "GPU": 1.0, "train_slot": 1}
    assert full["eval"]["resources"] == {"CPU": 4.0, "GPU": 1.0, "eval_slot": 1}
    assert (full["train"]["min_workers"], full["train"]["max_workers"]) == (0, 4)
    small = node_types()
    assert small["train"]["resources"] == {"CPU": 1, "train_slot": 1}  # the slot stays the document's
    assert all(t["min_workers"] == 0 for t in small.values())


def _nodes_ray_would_launch(node_types: dict, head_type: str, demands: list[dict]) -> dict[str, int]:
    """The nodes Ray's autoscaler bin-packs for `demands` on an empty cluster (its own scheduler code)."""
    from ray.autoscaler._private.node_provider_availability_tracker import NodeAvailabilitySummary
    from ray.autoscaler._private.resource_demand_scheduler import _default_utilization_scorer, get_nodes_for

    summary = NodeAvailabilitySummary(node_availabilities={})
    score = functools.partial(_default_utilization_scorer, node_availability_summary=summary)
    launch, _ = get_nodes_for(node_types, {}, head_type, 10, demands, score)
    return dict(launch)


TRIAL, EVALUATION = {"CPU": 1, "GPU": 1, "train_slot": 1}, {"CPU": 1, "GPU": 1, "eval_slot": 1}


def test_pools_scale_with_the_kuberay_node_types_but_not_with_rays_local_provider():
    """What lab.yaml (Ray's `local` provider) can do: one node type, `local.cluster.node`, whose resources
    Ray learns from a joined worker as CPU/GPU/memory only. A trial's or an evaluation's slot demand fits no
    node type, so it never launches a machine (hence lab.yaml keeps every listed worker up); the node types
    generated from kuberay.yaml launch one machine of the right pool for each."""
    from ray.autoscaler._private.util import prepare_config

    lab = prepare_config(yaml.safe_load((REPO / "cluster" / "lab.yaml").read_text()))
    (local,) = lab["available_node_types"]
    learned = copy.deepcopy(lab["available_node_types"])
    learned[local]["resources"] = {"CPU": 8.0, "GPU": 1.0}  # all Ray copies from a worker that joined
    for types in (lab["available_node_types"], learned):
        assert _nodes_ray_would_launch(types, lab["head_node_type"], [TRIAL]) == {}
        assert _nodes_ray_would_launch(types, lab["head_node_type"], [EVALUATION]) == {}
    assert _nodes_ray_would_launch(learned, lab["head_node_type"], [{"CPU": 1, "GPU": 1}]) == {local: 1}
    doc = yaml.safe_load((REPO / "cluster" / "kuberay.yaml").read_text())
    types = {
        "head": {"resources": {"CPU": 4.0}, "node_config": {}, "max_workers": 0},
        **autoscaler_node_types(doc),
    }
    assert _nodes_ray_would_launch(types, "head", [TRIAL] * 3 + [EVALUATION]) == {"train": 3, "eval": 1}


class Timeline:
    """(seconds, training nodes, evaluation nodes) alive, sampled every 0.5 s from the cluster's GCS."""

    def __init__(self, address: str):
        self.address, self.points, self._stop = address, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import ray

        ray.init(address=self.address, log_to_driver=False)
        try:
            t0 = time.time()
            while not self._stop.is_set():
                alive = [n["Resources"] for n in ray.nodes() if n["Alive"]]
                self.points.append((time.time() - t0, sum("train_slot" in r for r in alive),
                                    sum("eval_slot" in r for r in alive), time.time()))  # fmt: skip
                self._stop.wait(0.5)
        finally:
            ray.shutdown()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=30)

    def now(self) -> tuple[int, int]:
        return self.points[-1][1:3] if self.points else (-1, -1)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_an_empty_cluster_grows_for_a_search_and_releases_its_nodes_when_idle(debug_data, tmp_path):
    from jobs.local_ray import start_local_cluster

    ray_dir = Path(tempfile.mkdtemp(prefix="faice-as-"))  # sockets live under it: AF_UNIX paths are short
    cluster = start_local_cluster(ray_dir, num_cpus=1, autoscale=node_types(), idle_timeout_s=IDLE_TIMEOUT_S)
    storage = tmp_path / "storage"
    cmd = [sys.executable, "-m", "tune.search", "--space", "tests/tune/debug-eval.yaml", "--storage", str(storage),
           "--address", cluster.address, "--autoscaling", "--verbose", "0", f"config.data.path={debug_data}",
           "trial.resources_per_worker={train_slot: 1}", "searcher.max_concurrent=2", "budget.num_samples=2",
           "budget.max_steps=4", "config.train.checkpoint_every=4", "scheduler.grace_period=4"]  # fmt: skip
    env = {**cluster.env, "PYTHONPATH": str(REPO), "WANDB_SILENT": "true"}
    try:
        with Timeline(cluster.address) as timeline:
            while not timeline.points:
                time.sleep(0.2)
            assert timeline.now() == (0, 0), "the cluster did not start with the head alone"
            started = time.time()
            out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=450)
            ended = time.time()
            assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
            deadline = time.time() + 120
            while timeline.now() != (0, 0) and time.time() < deadline:
                time.sleep(0.5)
            released = time.time()
        points = timeline.points
    finally:
        cluster.stop()
        shutil.rmtree(ray_dir, ignore_errors=True)
    during = [(t, n, e) for t, n, e, wall in points if started <= wall <= ended]
    assert max(n for _, n, _ in during) == 2, during  # training nodes: 0 -> the search's concurrency
    assert max(e for _, _, e in during) == 1, during  # an evaluation node for the queued checkpoints
    runs = storage / "debug-eval" / "runs"
    first_ckpt = min(p.stat().st_mtime for p in runs.glob(f"*/checkpoints/{checkpoint_name(4)}/state.json"))
    eval_up = next(wall for _, _, e, wall in points if e)
    train_up = next(wall for _, n, _, wall in points if n)
    assert train_up < first_ckpt <= eval_up, (train_up, first_ckpt, eval_up)  # not before a checkpoint waits
    assert timeline.now() == (0, 0), f"idle nodes were not released: {points[-5:]}"
    rows = (storage / "debug-eval" / "results.csv").read_text().splitlines()
    assert len(rows) == 3 and "fid[faice-tiny]" in rows[0]
    print(f"\nautoscaling: training nodes 0 -> 2 in {train_up - started:.1f} s, an evaluation node "
          f"{eval_up - first_ckpt:.1f} s after the first checkpoint, all released {released - ended:.1f} s "
          f"after the search (idle timeout {IDLE_TIMEOUT_S:g} s)")  # fmt: skip
    if os.environ.get("FAICE_PRINT_TIMELINE"):
        print("\n".join(f"{t:6.1f} s  train {n}  eval {e}" for t, n, e, _ in points))

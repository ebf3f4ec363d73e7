"""Shared fixtures: a tiny synthetic dataset prepared once per session, and debug configs pointing at it."""

from __future__ import annotations

import faulthandler
import os
from pathlib import Path

import pytest

from jobs.local_ray import apply_local_env

REPO = Path(__file__).resolve().parent.parent
# Last resort against a hang that pytest-timeout's signal cannot break (a wait inside Ray's C++ core):
# after 45 minutes (a normal run takes a third of that) print every thread's stack and exit non-zero,
# so CI fails fast and shows where, instead of running into its own limit without a word.
faulthandler.dump_traceback_later(int(os.environ.get("FAICE_TEST_WATCHDOG_S", "2700")), exit=True)
# Ray reads these when it is imported (some test modules import it at collection): loopback only, and
# an explicit auth mode, for every cluster and client the tests start
apply_local_env()
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_DISABLE_GIT", "true")


@pytest.fixture(scope="session")
def debug_data(tmp_path_factory) -> Path:
    """96 synthetic faces at 16 px as shards (rows_per_group=16, so several readers get work)."""
    from faice.data.prepare import write_synthetic

    path = tmp_path_factory.mktemp("data") / "synthetic-debug"
    write_synthetic(path, 96, 16, seed=0, rows_per_group=16)
    return path


@pytest.fixture
def debug_cfg(debug_data, tmp_path):
    """A factory: configs/debug.yaml + overrides, on the session dataset, writing under tmp_path (checked
    as a run would check it: faice.tasks.load_checked)."""
    from faice.tasks import load_checked

    def make(*overrides: str):
        base = [f"data.path={debug_data}", f"train.output_dir={tmp_path / 'runs'}"]
        return load_checked(REPO / "configs" / "debug.yaml", base + list(overrides))

    return make


@pytest.fixture(scope="session")
def ray_cluster():
    """A real Ray head on 127.0.0.1 (2 CPUs, dashboard for `ray job submit`), stopped by its pids."""
    import tempfile

    from jobs.local_ray import apply_local_env, start_local_cluster, wait_for_job_agent

    apply_local_env()

    # a short temp dir: Ray's unix socket paths must stay under ~107 characters
    cluster = start_local_cluster(tempfile.mkdtemp(prefix="faice-ray-", dir="/tmp"), num_cpus=2)
    try:
        cluster.env["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] = "0.2"
        cluster.env["PYTHONPATH"] = str(REPO)
        cluster.env["WANDB_SILENT"] = "true"
        wait_for_job_agent(cluster)
        yield cluster
    finally:
        cluster.stop()
        import shutil

        shutil.rmtree(cluster.temp_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def lpips_dir(tmp_path_factory):
    """LPIPS weights for tests (a stand-in: nothing is downloaded): random VGG16 + positive heads, saved as
    torchvision's vgg16 file and lpips' vgg.pth would be."""
    import torch

    from faice.metrics.lpips import LPIPS

    torch.manual_seed(0)
    net = LPIPS()
    state = net.state_dict()
    folder = tmp_path_factory.mktemp("lpips")
    vgg = {k: v for k, v in state.items() if k.startswith("features.")}
    vgg["classifier.0.weight"] = torch.zeros(4, 4)  # torchvision's file has more than LPIPS uses
    torch.save(vgg, folder / "vgg16-397923af.pth")
    heads = {k: torch.rand_like(v) for k, v in state.items() if k.startswith("lin")}
    torch.save(heads, folder / "vgg.pth")
    return folder

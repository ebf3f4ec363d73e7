"""Shared fixtures: a tiny synthetic dataset prepared once per session, and debug configs pointing at it."""

from __future__ import annotations

import contextlib
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
# Ray starts its workers at nice 15 (a production default that keeps a head node responsive); here the
# tests' clusters share 2 cores with the other tests, which would starve them
os.environ.setdefault("RAY_worker_niceness", "0")
# Ray Train V2 hands a worker's report to the controller when the controller polls, every 2 s by default:
# a tiny run reporting every step would wait that long per step. Every cluster, driver and job the tests
# start inherits this.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
# Ray features no test looks at, each a cost on every cluster or Ray Train run of the suite (measured on the
# killed-worker job: 128 -> 108 CPU-s): the preemption watcher actor of every worker group (it polls for
# node draining, which no test does), Ray Train's Prometheus metrics, and the dashboard agents' node stats
# every 5 s (each agent lists every process of the machine). Runs outside the tests keep Ray's defaults.
os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
os.environ.setdefault("RAY_TRAIN_METRICS_ENABLED", "0")
os.environ.setdefault("REPORTER_UPDATE_INTERVAL_MS", "60000")

# The tests run in pytest-xdist workers (`-n auto --maxprocesses 2 --dist loadfile`, pyproject: the suite
# is sized for 2 cores, and a container may show more cores than its quota): each test file runs in one
# worker, in order, so a file's tests share its fixtures (a Ray cluster, the demo search), built once per
# worker that needs them; each worker keeps to its share of the cores. (`--dist loadgroup` with
# xdist_group marks would be finer, but pytest-xdist 3.8 under pytest 9 does not group by them.)


# The files that take longest, started first (longest-processing-time-first scheduling): given out last, as
# xdist's default order of files (most tests first) gives these few-test files out, they leave one worker
# running alone at the end while the other has finished. pyproject's --no-loadscope-reorder keeps this order.
LONGEST_FIRST = ("tests/jobs/test_eval_service.py", "tests/jobs/test_ray_service.py", "tests/tune/test_demo_search.py",
                 "tests/tune/test_study_spaces.py", "tests/tune/test_study_knobs.py")  # fmt: skip


def pytest_collection_modifyitems(session, config, items):
    """Longest files first (LONGEST_FIRST), then the others by number of tests, as xdist would order them."""
    counts: dict[str, int] = {}
    for item in items:
        counts[item.nodeid.split("::")[0]] = counts.get(item.nodeid.split("::")[0], 0) + 1

    def rank(item) -> tuple:
        path = item.nodeid.split("::")[0]
        first = LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)
        return first, -counts[path], path

    items.sort(key=rank)  # stable: the tests of a file keep their order


def pytest_configure(config):
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


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


WANDB_TOKEN_OF_THIS_PROCESS = "2-1-tcp-localhost-9"  # a W&B service token no worker may inherit


@pytest.fixture(scope="module")
def ray_cluster():
    """A real Ray head on 127.0.0.1 (2 CPUs, dashboard for `ray job submit`), stopped by its pids when the
    module using it ends (an idle cluster still costs CPU: two would slow the next module's tests)."""
    import tempfile

    from jobs.local_ray import apply_local_env, start_local_cluster, wait_for_job_agent

    apply_local_env()

    # as if this process had a W&B run open (an in-process test, a notebook): its service token must not
    # reach the cluster, or every worker would log into this process's W&B service
    saved = os.environ.get("WANDB_SERVICE")
    os.environ["WANDB_SERVICE"] = WANDB_TOKEN_OF_THIS_PROCESS
    try:  # a short temp dir: Ray's unix socket paths must stay under ~107 characters
        cluster = start_local_cluster(tempfile.mkdtemp(prefix="faice-ray-", dir="/tmp"), num_cpus=2)
    finally:
        if saved is None:
            os.environ.pop("WANDB_SERVICE", None)
        else:
            os.environ["WANDB_SERVICE"] = saved
    try:
        cluster.env["PYTHONPATH"] = str(REPO)
        cluster.env["WANDB_SILENT"] = "true"
        wait_for_job_agent(cluster)
        yield cluster
    finally:
        cluster.stop(timeout=3)  # what a test left running needs no grace
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


def advertised(tmp_path, pool: str) -> dict:
    """The Ray resources start-node.sh gives a CPU-only host of `pool` (its --dry-run)."""
    from tests.cluster.test_start_node import node, start_node

    args = ["--head"] if pool == "head" else ["--address", "127.0.0.1:6379", "--pool", pool]
    info, _ = node(start_node(tmp_path, *args, "--node-ip", "127.0.0.1", gpus=0))
    return info["resources"]


def start_lab(lab) -> None:
    """(Re)start the lab cluster of `lab` (fresh processes, new ports): a head, two training nodes, an
    evaluation node; sets lab.cluster, lab.head, lab.train, lab.eval, lab.env."""
    from ray.cluster_utils import Cluster

    from jobs.local_ray import free_port, local_env

    head = {"num_cpus": 1, "resources": lab.resources["head"], "include_dashboard": True,
            "dashboard_host": "127.0.0.1", "dashboard_port": free_port()}  # fmt: skip
    lab.cluster = Cluster(initialize_head=True, head_node_args=head)
    lab.head = lab.cluster.head_node.node_id
    lab.train = [lab.cluster.add_node(num_cpus=1, resources=lab.resources["train"]) for _ in range(2)]
    lab.eval = lab.cluster.add_node(num_cpus=1, resources=lab.resources["eval"])
    lab.cluster.wait_for_nodes()
    lab.env = {**local_env(), "PYTHONPATH": str(REPO), "WANDB_SILENT": "true"}


def kill_lab(lab) -> set[int]:
    """SIGKILL every process of the lab cluster (each node's GCS, raylet, dashboard, their workers), as a
    power cut would; returns the pids killed."""
    import signal

    from jobs.local_ray import _process_table

    table = _process_table()
    roots = {info.process.pid for node in [lab.cluster.head_node, *lab.cluster.worker_nodes]
             for infos in node.all_processes.values() for info in infos if info.process is not None}  # fmt: skip
    found, frontier = set(roots), set(roots)
    while frontier:
        frontier = {pid for pid, (ppid, _) in table.items() if ppid in frontier} - found
        found |= frontier
    for pid in found:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return found


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A lab cluster on one machine, shared by the pool and lab-fault tests: a head (1 CPU, the trials'
    actors and Ray Train controllers), two training nodes (1 CPU + train_slot each) and an evaluation node
    (1 CPU + eval_slot), on 127.0.0.1, each advertising what cluster/start-node.sh would on such a host.
    Tests that take a machine away give it back (lab.train[i], lab.eval are the current nodes). Shut down
    when the module using it ends."""
    from types import SimpleNamespace

    from jobs.local_ray import apply_local_env, ensure_local_token

    apply_local_env()
    ensure_local_token()  # token auth, as every cluster faice starts; the launchers inherit its path
    # the raylets (and so the Ray Train controllers) inherit these: fast failure detection, and a
    # restarted trial may wait for a free training node as long as the test allows
    saved = {k: os.environ.get(k) for k in ("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S",)}
    os.environ.update(RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S="600")

    tmp = tmp_path_factory.mktemp("start-node")
    resources = {pool: advertised(tmp, pool) for pool in ("head", "train", "eval")}
    assert resources == {"head": {}, "train": {"train_slot": 1}, "eval": {"eval_slot": 1}}
    lab = SimpleNamespace(resources=resources)
    start_lab(lab)
    try:
        yield lab
    finally:
        lab.cluster.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

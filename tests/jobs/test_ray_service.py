"""The Ray service on a real local cluster (127.0.0.1): ray job submit, worker loss, two workers' data
shares (the launcher's loss is in test_eval_service, with the lab's machines). Every test starts its processes with a timeout and the cluster is stopped by pid."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faice.results import read_jsonl
from faice.train.checkpoint import REFERENCE

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow]


def _metrics(path: Path) -> list[dict]:
    return read_jsonl(path)


def _listeners_are_loopback(cluster) -> None:
    pids = set(cluster.pids())
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, timeout=30).stdout
    for line in out.splitlines():
        if any(f"pid={pid}," in line for pid in pids):
            local = line.split()[3]
            assert local.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:")), line


def _worker_pids(cluster) -> list[int]:
    """The Ray Train workers of this test's cluster (its own processes, by pid), never another's."""
    pids = []
    for pid in cluster.pids():
        try:
            if b"RayTrainWorker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
        except OSError:
            pass
    return pids


def _holding(cluster, needle: bytes) -> list[int]:
    """This cluster's processes whose environment contains `needle`."""
    found = []
    for pid in cluster.pids():
        try:
            if needle in Path(f"/proc/{pid}/environ").read_bytes():
                found.append(pid)
        except OSError:
            pass
    return found


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


FAKE_KEY = "faicefake" + "0123456789abcdef0123456789abcdef"[:31]  # 40 characters, like a W&B key


def _files_holding(root: Path, needle: bytes) -> list[str]:
    found = []
    for path in Path(root).rglob("*"):
        try:
            if path.is_file() and not path.is_symlink() and needle in path.read_bytes():
                found.append(str(path))
        except OSError:
            pass
    return found


def _command_lines_holding(needle: bytes) -> list[int]:
    """Every process of this machine whose command line (what `ps` shows anyone) contains `needle`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and needle in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            pass
    return found


@pytest.mark.timeout(600)
def test_a_submitted_search_survives_a_killed_worker_and_copies_the_wandb_key_nowhere(
    ray_cluster, debug_data, tmp_path
):
    """`ray job submit -- python -m tune.search ...` as jobs/README.md shows it, the W&B key handed over the
    documented way: a mode-600 file named by FAICE_WANDB_KEY_FILE (a path, which may sit in the
    runtime_env), its one-worker trial run by Ray Train (trial.runner ray-train; the lab test in
    test_eval_service runs trials in their Tune actors). SIGKILL the trial's Ray Train worker mid-run: Ray Train restarts it, the faice loop
    resumes from the newest checkpoint (at most one checkpoint interval of steps is lost, none is run
    twice), and the job still succeeds. The trial's W&B run got the key, yet 0 copies of it exist in the
    storage folder, the cluster's session logs and `ray job list`/`status`, and no process's command line
    held it while the job ran. The job API refuses a request without the cluster's token."""
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as refused:  # another user of this machine, no token
        urllib.request.urlopen(f"{ray_cluster.dashboard_url}/api/jobs/", timeout=30)
    assert refused.value.code in (401, 403)

    key_file = tmp_path / "secret" / "wandb_key"
    key_file.parent.mkdir(mode=0o700)
    key_file.write_text(FAKE_KEY + "\n")
    key_file.chmod(0o600)
    every, steps = 6, 30
    storage = tmp_path / "storage"
    ray = str(Path(sys.executable).parent / "ray")
    runtime_env = json.dumps({"env_vars": {"FAICE_WANDB_KEY_FILE": str(key_file)}})
    search = ["budget.num_samples=1", "scheduler.name=fifo", "metric=loss", "config.eval.num_samples=0",
              f"budget.max_steps={steps}", f"config.train.checkpoint_every={every}", "config.train.log_every=1",
              "config.train.keep_checkpoints=3", "config.log.wandb=offline", "trial.max_failures=2",
              "trial.runner=ray-train"]  # fmt: skip
    cmd = [ray, "job", "submit", "--address", ray_cluster.dashboard_url, "--working-dir", str(REPO),
           "--runtime-env-json", runtime_env, "--", sys.executable, "-m", "tune.search",
           "--space", "tests/tune/debug-eval.yaml", "--storage", str(storage), "--verbose", "0",
           f"config.data.path={debug_data}", *search]  # fmt: skip
    env = {k: v for k, v in ray_cluster.env.items() if k != "WANDB_API_KEY"}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    runs = storage / "debug-eval" / "runs"

    def metrics() -> list[dict]:
        return [m for path in runs.glob("*/metrics.jsonl") for m in _metrics(path)]

    seen_in_ps: set[int] = set()

    def past(step: int) -> bool:
        seen_in_ps.update(_command_lines_holding(FAKE_KEY.encode()))
        return any(m.get("step", 0) >= step and "loss" in m for m in metrics())

    try:
        # killed 4 steps past the step-12 checkpoint, when Ray Train has registered it (killed 1 step past
        # it, Ray may not have yet, and the run resumes from the one before: one interval plus that lag)
        _wait_for(lambda: past(16), 300, "step 16")
        pids = _worker_pids(ray_cluster)
        assert pids, "no RayTrainWorker process found"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        reached, killed_at, recovered = max(m["step"] for m in metrics() if "loss" in m), time.time(), None
        while proc.poll() is None:
            if recovered is None and any("resumed_from" in m for m in metrics()):
                recovered = time.time() - killed_at  # a new worker training from the last checkpoint
            seen_in_ps.update(_command_lines_holding(FAKE_KEY.encode()))
            time.sleep(0.3)
        out = proc.communicate(timeout=400)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "succeeded" in out.lower(), out[-3000:]
    _listeners_are_loopback(ray_cluster)  # the head, its dashboard and the job's processes
    # the cluster was started while the test process held a W&B service token: no process of it has it
    # (else the workers would share one W&B service and a restarted worker find its run "in use")
    assert not _holding(ray_cluster, b"WANDB_SERVICE="), "a cluster process inherited the W&B service token"
    (run_dir,) = list(runs.glob("*"))
    rows = _metrics(run_dir / "metrics.jsonl")
    resumed = [m["resumed_from"] for m in rows if "resumed_from" in m]
    assert resumed, "the run did not resume from a checkpoint"
    print(f"\nkilled training worker: trials finished 1/1; steps recomputed {reached - resumed[0]} (bound {every}); "
          f"recovered in {recovered:.1f} s" if recovered else "")  # fmt: skip
    assert reached - resumed[0] <= every, (reached, resumed)
    assert resumed[0] >= every
    losses = [m["step"] for m in rows if "loss" in m]
    assert losses[-1] == steps and losses == sorted(set(losses)), (
        "steps after the resume point were not re-run once"
    )
    assert (run_dir / "summary.json").exists()
    assert list((run_dir / "wandb").glob("offline-run-*")), "no offline W&B run in the run folder"
    # Ray Train holds references to faice's checkpoints, not a second copy of them (it resumed through one)
    ray_ckpts = [p for p in (storage / "debug-eval" / "train").rglob("checkpoint_*") if p.is_dir()]
    assert ray_ckpts and all([p.name for p in c.iterdir()] == [REFERENCE] for c in ray_ckpts), ray_ckpts
    ray_bytes = sum((c / REFERENCE).stat().st_size for c in ray_ckpts)
    assert ray_bytes < 0.01 * sum(
        p.stat().st_size for p in (run_dir / "checkpoints").rglob("*") if p.is_file()
    )

    # the key: read by the trial's W&B run, copied nowhere
    job = next(w.strip("'") for w in out.split() if w.strip("'").startswith("raysubmit_"))
    listing = subprocess.run([ray, "job", "list", "--address", ray_cluster.dashboard_url], env=env,
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    status = subprocess.run([ray, "job", "status", job, "--address", ray_cluster.dashboard_url], env=env,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert listing.returncode == 0 and job in listing.stdout and "FAICE_WANDB_KEY_FILE" in listing.stdout
    assert json.loads((run_dir / "wandb" / "faice-run.json").read_text())["key"] == "file"
    assert not seen_in_ps, f"processes showed the key on their command line: {sorted(seen_in_ps)}"
    for what, text in (("ray job list", listing.stdout + listing.stderr), ("ray job status", status.stdout),
                       ("ray job submit", out)):  # fmt: skip
        assert FAKE_KEY not in text, f"the key is in the output of {what}"
    assert not _files_holding(storage, FAKE_KEY.encode()), "the key was copied into the storage folder"
    assert not _files_holding(ray_cluster.temp_dir, FAKE_KEY.encode()), "the key is in the session logs"


@pytest.mark.timeout(600)
def test_two_workers_read_disjoint_shares(ray_cluster, debug_data, tmp_path):
    """Two Ray Train workers running the faice loop for one epoch never see the same sample."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from faice.config import load_config, to_dict
    from faice.data.loader import ShardLoader

    per_rank = ShardLoader(debug_data, batch_size=4, rank=0, world_size=2).batches_per_epoch
    cfg = load_config(
        "debug.yaml",
        [
            f"data.path={debug_data}",
            "train.batch_size=4",
            f"train.max_steps={per_rank}",
            "train.checkpoint_every=0",
        ],
    )
    ray.init(address=ray_cluster.address, runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    try:
        from tests.jobs.ray_workers import record_ids_loop

        trainer = TorchTrainer(
            record_ids_loop,
            train_loop_config={
                "config": to_dict(cfg),
                "run_dir": str(tmp_path / "run"),
                "out": str(tmp_path),
            },
            scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
            run_config=RunConfig(name="disjoint", storage_path=str(tmp_path / "ray")),
        )
        trainer.fit()
    finally:
        ray.shutdown()
    ranks = [json.loads((tmp_path / f"ids-rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == 2 and r["step"] == per_rank for r in ranks)
    a, b = (set(r["ids"]) for r in ranks)
    assert len(a) == len(ranks[0]["ids"]) == per_rank * 4 and len(b) == per_rank * 4
    assert not a & b, f"{len(a & b)} samples seen by both workers in one epoch"


_LOCAL_CLUSTER = """
import json, os, urllib.error, urllib.request
from jobs.local_ray import apply_local_env
apply_local_env()  # what `python -m tune.search` does first
from jobs.ray_train import connect
connect(None, 1)  # the launcher's own local cluster (no --address)
import ray
from ray.job_submission import JobSubmissionClient
url = "http://" + ray._private.worker.global_worker.node.address_info["webui_url"]
try:
    urllib.request.urlopen(url + "/api/jobs/", timeout=30)
    code = 200
except urllib.error.HTTPError as e:
    code = e.code
jobs = JobSubmissionClient(url).list_jobs()  # the launcher's own clients hold the token
path = os.environ["RAY_AUTH_TOKEN_PATH"]
token = open(path).read().encode()
def cmdline(pid):
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        return b""
in_ps = [p for p in os.listdir("/proc") if p.isdigit() and token in cmdline(p)]  # the cluster is up
print(json.dumps({"code": code, "jobs": len(jobs), "path": path, "mode": os.stat(path).st_mode & 0o777,
                  "token": token.decode(), "in_ps": in_ps, "alive": ray.get(ray.remote(lambda: 1).remote())}))
"""


@pytest.mark.timeout(300)
def test_the_launchers_own_cluster_takes_a_fresh_token_and_refuses_requests_without_it(tmp_path):
    """`python -m tune.search` without --address starts its cluster through jobs.ray_train.connect: token
    authentication with a fresh random token per launch (256 bits in a mode-600 file, removed when the
    launcher exits, on no command line); a request without it is refused, the launcher's clients work.
    (The whole search on a token-authenticated cluster, and its loss, run in test_eval_service.)"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env.update(PYTHONPATH=str(REPO), RAY_AUTH_MODE="disabled")  # even asked for no auth, it uses a token
    out = subprocess.run([sys.executable, "-c", _LOCAL_CLUSTER], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=240)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    launch = json.loads(out.stdout.strip().splitlines()[-1])
    assert launch["code"] in (401, 403) and launch["alive"] == 1, launch
    assert launch["mode"] == 0o600 and len(launch["token"]) == 64
    assert not Path(launch["path"]).exists(), "the token outlived its launcher"
    assert launch["in_ps"] == [], "the token is on a command line"
    # the next launcher draws its own token (the step connect() takes before its cluster starts)
    token = "from jobs.local_ray import ensure_local_token; print(ensure_local_token().read_text())"
    tokens = {subprocess.run([sys.executable, "-c", token], cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=120, check=True).stdout.strip() for _ in range(2)}  # fmt: skip
    assert len(tokens | {launch["token"]}) == 3 and all(len(t) == 64 for t in tokens), (
        "launches shared a token"
    )

"""The Ray service on a real local cluster (127.0.0.1): ray job submit, worker loss, two workers' data
shares (the launcher's loss is in test_eval_service, with the lab's machines). Every test starts its processes with a timeout and the cluster is stopped by pid."""

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faice.results import read_jsonl

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
    runtime_env). SIGKILL the trial's Ray Train worker mid-run: Ray Train restarts it, the faice loop
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
              "config.train.keep_checkpoints=3", "config.log.wandb=offline", "trial.max_failures=2"]  # fmt: skip
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
        reached = max(m["step"] for m in metrics() if "loss" in m)
        while proc.poll() is None:
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
    assert reached - resumed[0] <= every, (reached, resumed)
    assert resumed[0] >= every
    losses = [m["step"] for m in rows if "loss" in m]
    assert losses[-1] == steps and losses == sorted(set(losses)), (
        "steps after the resume point were not re-run once"
    )
    assert (run_dir / "summary.json").exists()
    assert list((run_dir / "wandb").glob("offline-run-*")), "no offline W&B run in the run folder"

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


def _resumes(run_dir: Path) -> list[int]:
    """The steps a run resumed from, in order."""
    return [m["resumed_from"] for m in _metrics(run_dir / "metrics.jsonl") if "resumed_from" in m]


def _tree(root: int) -> set[int]:
    """`root` and every process descending from it."""
    from jobs.local_ray import _process_table

    table = _process_table()
    found, frontier = {root}, {root}
    while frontier:
        frontier = {pid for pid, (ppid, _) in table.items() if ppid in frontier} - found
        found |= frontier
    return found


def _launch(storage: Path, data: Path, *extra: str) -> subprocess.Popen:
    """`python -m tune.search` without --address (its own local cluster): debug-eval, two trials one after
    the other, every checkpoint scored on the local evaluation slot."""
    cmd = [sys.executable, "-m", "tune.search", "--space", "tests/tune/debug-eval.yaml", "--storage", str(storage),
           "--verbose", "0", "--num-cpus", "1", f"config.data.path={data}", "budget.num_samples=2",
           "scheduler.name=fifo", "searcher.max_concurrent=1", "evaluation.keep=all", "budget.max_steps=9",
           "config.train.checkpoint_every=3", "config.log.wandb=disabled", "config.eval.num_samples=8",
           "config.eval.kid_subset_size=8", *extra]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH_TOKEN")}
    env.update(PYTHONPATH=str(REPO), TUNE_GLOBAL_CHECKPOINT_S="1")
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip


def _token_check(proc: subprocess.Popen, lines: list[str], before: set) -> tuple[int, bytes]:
    """Read the launcher's output up to Ray's dashboard line; then (the status of a request without the
    token, the token of this launch), checking its file is mode 600 and no command line shows it."""
    import urllib.error
    import urllib.request

    for line in proc.stdout:
        lines.append(line)
        if "dashboard at" in line:
            break
    else:
        pytest.fail("the launcher ended before its cluster started:\n" + "".join(lines)[-3000:])
    url = "http://" + line.split("http://")[1].split()[0].split("\x1b")[0]
    code = None
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{url}/api/jobs/", timeout=10)
            code = 200
        except urllib.error.HTTPError as e:
            code = e.code
        except OSError:
            time.sleep(0.5)
            continue
        break
    (folder,) = set(Path("/tmp").glob("faice-auth-*")) - before
    token_file = folder / "auth_token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    token = token_file.read_bytes().strip()
    assert len(token) == 64 and not _command_lines_holding(token), "the token is on a command line"
    return code, token


def _drain(proc: subprocess.Popen, lines: list[str]) -> None:
    """Keep reading the launcher's output in the background (a full pipe would block it)."""
    import threading

    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()


@pytest.mark.timeout(900)
def test_the_launchers_own_cluster_is_token_protected_and_a_search_survives_losing_all_of_it(
    debug_data, tmp_path
):
    """`python -m tune.search` without --address starts a local cluster that authenticates with a fresh
    random token (a mode-600 file, on no command line): a request without it is refused. Mid-search the
    whole cluster is killed, every Ray process and the launcher (SIGKILL), one trial finished and one
    between checkpoints; a new launcher with --resume brings up a new cluster (a new token) and finishes:
    the finished trial is not re-run, the other loses at most one checkpoint interval, and every
    checkpoint of both is scored (no evaluation lost)."""
    from faice.results import read_jsonl

    every, steps = 3, 9
    storage = tmp_path / "storage"
    search, runs = storage / "debug-eval", storage / "debug-eval" / "runs"
    before = set(Path("/tmp").glob("faice-auth-*"))
    proc, resumed, lines = _launch(storage, debug_data), None, []
    try:
        code, token = _token_check(proc, lines, before)
        assert code in (401, 403), (code, "".join(lines)[-2000:])
        _drain(proc, lines)

        def one_done_one_between_checkpoints():
            done = [r for r in runs.glob("*") if (r / "summary.json").exists()]
            busy = [r for r in runs.glob("*") if not (r / "summary.json").exists()]
            if len(done) == 1 and len(busy) == 1:
                step = max(
                    (m["step"] for m in read_jsonl(busy[0] / "metrics.jsonl") if "loss" in m), default=0
                )
                if every + 2 <= step < steps - 1 and step % every:
                    return done[0], busy[0], step
            return None

        deadline = time.time() + 400
        while not (found := one_done_one_between_checkpoints()):
            assert proc.poll() is None and time.time() < deadline, "".join(lines)[-3000:]
            time.sleep(0.1)
        finished, lost, _ = found
        finished_mtime = (finished / "summary.json").stat().st_mtime
        time.sleep(1.5)  # Tune's state (saved every second) has the finished trial as finished
        victims = _tree(proc.pid)
        for pid in victims:  # the launcher, its GCS, raylet, dashboard, workers: the whole cluster
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed_at = time.time()
        at_kill = max(m["step"] for m in read_jsonl(lost / "metrics.jsonl") if "loss" in m)
        proc.wait(timeout=60)
        deadline = time.time() + 60
        while any(Path(f"/proc/{pid}").exists() and b"Z" not in Path(f"/proc/{pid}/stat").read_bytes().split(b")")[-1][:3]
                  for pid in victims):  # fmt: skip
            assert time.time() < deadline, "a Ray process of the killed cluster survived"
            time.sleep(0.2)

        before = set(Path("/tmp").glob("faice-auth-*"))
        resumed, lines2 = _launch(storage, debug_data, "--resume"), []
        code2, token2 = _token_check(resumed, lines2, before)
        assert code2 in (401, 403) and token2 != token, "the new cluster did not get a fresh token"
        _drain(resumed, lines2)
        deadline = time.time() + 300
        while not _resumes(lost):
            assert resumed.poll() is None and time.time() < deadline, "".join(lines2)[-3000:]
            time.sleep(0.1)
        recovered = time.time() - killed_at  # a new cluster up, the trial training again from its checkpoint
        resumed.wait(timeout=400)
    finally:
        for p in (proc, resumed):
            if p is not None and p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    output = "".join(lines2)
    assert resumed.returncode == 0, output[-4000:]

    with (search / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and {r["status"] for r in rows} == {"finished"}, rows
    assert (finished / "summary.json").stat().st_mtime == finished_mtime and not _resumes(finished), (
        "the finished trial was run again"
    )
    (start,) = _resumes(lost)
    recomputed = at_kill - start
    scored = {
        r.name: {e["step"] for e in read_jsonl(r / "eval.jsonl") if "eval_error" not in e}
        for r in runs.glob("*")
    }
    lost_evals = sum(len(set(range(every, steps + 1, every)) - s) for s in scored.values())
    print(f"\nwhole cluster killed: trials finished 2/2; steps recomputed {recomputed} (bound {every}); "
          f"evaluations lost {lost_evals}; finished trials re-run 0; recovered in {recovered:.1f} s")  # fmt: skip
    assert 0 <= recomputed <= every and start % every == 0, (at_kill, start)
    assert lost_evals == 0, scored
    assert not (set(Path("/tmp").glob("faice-auth-*")) - before), "a token outlived its launcher"

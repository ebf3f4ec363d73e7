"""Searches on the tests' lab cluster (conftest.lab, 127.0.0.1: a head, two training nodes with
`train_slot`, one evaluation node with the only `eval_slot`, each advertising what cluster/start-node.sh
would on such a host), in one file so that one worker builds the cluster once:

- the evaluation pool: every checkpoint scored while trials train, ASHA on FID, evaluations only on the
  eval slot, the console, tables and W&B runs of a search; a killed evaluation worker retried with no
  metric missing (the launcher's dispatcher driven from the test process: no second search);
- machines lost mid-search (the `cpu` profile), then the launcher: the work lost is counted (training
  steps beyond the last checkpoint, evaluation metrics never produced, finished trials run again)."""

import contextlib
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faice.config import ConfigError
from faice.results import read_jsonl
from faice.train.checkpoint import REFERENCE, latest_checkpoint
from tests.conftest import kill_lab, start_lab

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow]
METRIC = "fid[faice-tiny]"


def _search(lab, storage, data, *extra) -> list[str]:
    """The launcher on debug-eval, its trials pinned to the training nodes."""
    return [
        sys.executable, "-m", "tune.search", "--space", "tests/tune/debug-eval.yaml", "--storage", str(storage),
        "--address", lab.cluster.address, "--verbose", "0", f"config.data.path={data}",
        "trial.resources_per_worker={train_slot: 1}", *extra,
    ]  # fmt: skip


def _evals(run_dir: Path) -> list[dict]:
    return read_jsonl(run_dir / "eval.jsonl")


@pytest.mark.timeout(600)
def test_pool_scores_every_checkpoint_and_asha_stops_on_its_metric_not_on_loss(lab, debug_data, tmp_path):
    """Two trials that train identically (same seed, same config: the same losses), one at a time, whose
    checkpoints are sampled with 3 DDIM steps and with 1 (FID about 3x worse at every checkpoint of this
    debug model): ASHA on the pool's FID must stop the second at a rung, which ASHA on the equal losses
    never would (a value equal to the cutoff continues)."""
    import yaml

    space = yaml.safe_load((REPO / "tests" / "tune" / "debug-eval.yaml").read_text())
    del space["overrides"]["eval.num_inference_steps"]
    space["space"] = {"eval.num_inference_steps": {"grid": [3, 1]}}  # in this order, one trial at a time
    # 24 steps, a checkpoint every 8, rungs at 8 and 16: each trial waits at a rung for its score
    # (evaluation.rung_wait_s), so ASHA decides there however fast the trials train
    max_steps = 24
    space["overrides"]["train.checkpoint_every"] = 8
    space["scheduler"]["grace_period"] = 8
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    cmd = _search(
        lab, tmp_path, debug_data, "evaluation.keep=all", "config.log.wandb=offline",
        "config.log.progress=true",  # as the demo: one progress line per trial, drawn by the driver
        "searcher.max_concurrent=1", "budget.num_samples=1", f"budget.max_steps={max_steps}",
    )  # fmt: skip
    cmd[cmd.index("tests/tune/debug-eval.yaml")] = str(tmp_path / "space.yaml")
    cmd[3:3] = ["--console", "lines", "--summary-every", "5"]  # the console of a lab-size search
    search = tmp_path / "debug-eval"
    out = subprocess.run(cmd, cwd=REPO, env=lab.env, capture_output=True, text=True, timeout=500)
    assert out.returncode == 0, out.stderr[-3000:]
    # a line per trial state change and summary lines, not Tune's table
    trial_lines = [line for line in out.stdout.splitlines() if line.startswith("faice search: trial ")]
    assert sum(" started" in line for line in trial_lines) == 2, trial_lines
    assert sum(" finished" in line for line in trial_lines) == 1, trial_lines
    assert sum(" stopped early at step " in line for line in trial_lines) == 1, trial_lines
    assert re.search(rf"faice search: 2 trials: 2 ended; best {re.escape(METRIC)}=", out.stdout), out.stdout[
        -2000:
    ]
    assert "Trial status" not in out.stdout, out.stdout[-2000:]
    with (search / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and {"is[faice-tiny]", "kid[faice-tiny]", f"best_{METRIC}"} <= set(rows[0])
    assert "fid_std[faice-tiny]" in rows[0] and float(rows[0]["best_fid_std[faice-tiny]"]) > 0
    by_steps = {int(r["eval.num_inference_steps"]): r for r in rows}
    wandb_ids: dict[str, set[str]] = {}
    assert by_steps[3]["status"] == "finished", rows
    assert by_steps[1]["status"] == "stopped early", rows
    for row in rows:
        run_dir = search / "runs" / row["trial_id"]
        evals = _evals(run_dir)
        assert not [e for e in evals if "eval_error" in e], evals
        steps = sorted(e["step"] for e in evals)
        last = int(latest_checkpoint(run_dir).name.removeprefix("step-"))
        if row["status"] == "finished":
            assert steps == list(range(8, max_steps + 1, 8)), (row["trial_id"], steps)
        else:  # stopped by ASHA: every checkpoint it wrote, its last one included
            assert steps == list(range(8, last + 1, 8)) and last < max_steps, (row["trial_id"], steps, last)
        assert float(row[f"last_{METRIC}"]) > 0
        for e in evals:  # only the evaluation node ran evaluations, never the training node
            assert e["where"] == "pool" and e["resources"].get("eval_slot") == 1, e
            assert e["node_id"] == lab.eval.node_id, e
            assert Path(e["grid"]).is_file() and e["extractor"] == "faice-tiny"
            assert 0 < e["latency_s"] < 600, e  # checkpoint handed to the pool -> scored
        # the trial's W&B run got the FID (offline run files hold the metric name)
        wandb_files = list(run_dir.glob("wandb/offline-run-*/*.wandb"))
        assert any(METRIC.encode() in p.read_bytes() for p in wandb_files), row["trial_id"]
        wandb_ids[row["trial_id"]] = {p.parent.name.rsplit("-", 1)[1] for p in wandb_files}
    assert not set.intersection(*wandb_ids.values()), wandb_ids  # a W&B run per trial, none shared
    # Tune (and so ASHA, whose time_attr is eval_step) received the FIDs as trial results
    reported, losses = {}, {}
    for path in search.glob("trial-*/result.json"):
        results = [json.loads(line) for line in path.read_text().splitlines()]
        trial = results[0]["trial_id"]
        reported[trial] = [r for r in results if METRIC in r]
        losses[trial] = {r["step"]: r["loss"] for r in results if "loss" in r}
        assert reported[trial] and all("eval_step" in r for r in reported[trial])
    # trial.reuse_actors (default): the second trial ran in the first one's actor, in its own run folder
    # with its own W&B run (the run folders and W&B files above are per trial id)
    pids = {json.loads(p.read_text().splitlines()[0])["pid"] for p in search.glob("trial-*/result.json")}
    assert len(pids) == 1, pids
    good, bad = (reported[by_steps[n]["trial_id"]] for n in (3, 1))
    good_loss, bad_loss = (losses[by_steps[n]["trial_id"]] for n in (3, 1))
    # the stopping result: the bad trial's last, at a rung with that rung's own evaluation
    stop = bad[-1]
    assert stop["eval_step"] in (8, 16), stop
    at_rung = next(r for r in good if r["eval_step"] == stop["eval_step"])
    assert stop[METRIC] > at_rung[METRIC]  # stopped on the pool's metric ...
    assert bad_loss[stop["step"]] == pytest.approx(good_loss[stop["step"]], rel=1e-4)  # ... not on loss
    assert "evaluations:" in out.stdout and "0 failed" in out.stdout
    pool = json.loads(
        (search / "eval_pool.json").read_text()
    )  # the pool's final counts, kept with the search
    assert pool["failed"] == 0 and pool["done"] >= 1 and not pool["pending"], pool
    # the search's own outputs: tables, plot, verdict; a readable console (trials draw progress lines,
    # they do not print a line per report, nor Ray Train's own report logs)
    assert (search / "results.md").exists() and (search / "results.png").exists()
    assert "best:" in out.stdout
    assert not re.search(r"step \d+: loss=", out.stdout + out.stderr), out.stdout[-2000:]
    for noise in ("Reporting training result", "Checkpoint successfully created"):  # Ray's lines per report
        assert noise not in out.stdout + out.stderr, out.stdout[-2000:]
    refs = list((tmp_path / "reference-stats").glob("*.npz"))
    assert len(refs) == 1, refs  # computed once on the driver, shared by every evaluation
    # the trials ran in their Tune actors (trial.runner auto, one worker): Tune holds references to
    # faice's checkpoints, not a second copy of the weights, and there is no Ray Train state
    tune_ckpts = [p for p in search.glob("trial-*/checkpoint_*") if p.is_dir()]
    assert tune_ckpts and all([p.name for p in c.iterdir()] == [REFERENCE] for c in tune_ckpts), tune_ckpts
    assert not (search / "train").exists()


@pytest.mark.timeout(300)
def test_killed_eval_worker_is_retried_and_no_metric_is_missing(lab, debug_cfg, tmp_path):
    """SIGKILL the evaluation worker process in the middle of an evaluation on the lab's evaluation node:
    the launcher's dispatcher (jobs.eval_pool.EvalDispatcher, driven here from this process as the
    launcher drives it) runs it again, and every checkpoint gets its metrics. The checkpoints come from a
    local run: the launcher's wiring of the dispatcher is what the pool and lab-fault searches run."""
    import ray

    from faice.train.loop import train
    from jobs.eval_pool import EVAL_RESOURCE, EvalDispatcher

    run = train(debug_cfg("train.max_steps=4", "train.checkpoint_every=2", "train.keep_checkpoints=2"))
    checkpoints = sorted((run.run_dir / "checkpoints").glob("step-*"))
    # an evaluation of ~2.5 s (16 samples x 120 DDIM steps of the debug UNet, 1 CPU): long enough to be
    # killed well inside its sampling loop, short enough to run three times (two checkpoints + the retry)
    slow = ["eval.num_samples=16", "eval.num_inference_steps=120", "eval.kid_subset_size=16"]
    ray.init(address=lab.cluster.address, runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}},
             logging_level="ERROR", log_to_driver=False)  # fmt: skip
    try:
        pool = EvalDispatcher({"num_cpus": 1, "resources": {EVAL_RESOURCE: 1}}, slots=1, keep="all",
                              overrides=slow)  # fmt: skip
        for ckpt in checkpoints:
            pool.submit("t0", str(run.run_dir), str(ckpt), int(ckpt.name.removeprefix("step-")))
        killed, deadline = None, time.time() + 120
        while killed is None and time.time() < deadline:
            for marker in (run.run_dir / "eval").glob("step-*.attempt-1.pid"):
                time.sleep(0.5)  # well inside the sampling loop
                try:
                    os.kill(int(marker.read_text()), signal.SIGKILL)
                except (ValueError, OSError):  # the evaluation ended meanwhile
                    continue
                killed = marker
                break
            time.sleep(0.05)
        status = pool.drain(timeout=200)
    finally:
        ray.shutdown()
    assert killed is not None, "no evaluation was seen running"
    assert not status.get("timed_out") and status["retried"] == 1 and status["failed"] == 0, status
    step = int(killed.name.split(".")[0].removeprefix("step-"))
    evals = {e["step"]: e for e in _evals(run.run_dir)}
    assert sorted(evals) == [2, 4] and not [e for e in evals.values() if "eval_error" in e], evals
    assert evals[step]["attempt"] == 2 and evals[step][METRIC] > 0
    assert all(e["node_id"] == lab.eval.node_id and e["where"] == "pool" for e in evals.values()), evals


def test_no_eval_capacity_is_reported_at_start():
    from tune.search import _eval_reserve
    from tune.space import load_space

    spec = load_space("tests/tune/debug-eval.yaml")
    with pytest.raises(ConfigError, match="no 'eval_slot' resource.*fallback_cpus"):
        _eval_reserve(spec, {"CPU": 8.0}, needed=True)
    assert _eval_reserve(spec, {"CPU": 8.0}, needed=False) == ({}, 0, {})
    options, slots, reserved = _eval_reserve(spec, {"CPU": 8.0, "eval_slot": 2.0}, needed=True)
    assert options == {"num_cpus": 1.0, "resources": {"eval_slot": 1}} and slots == 2 and reserved["CPU"] == 2
    # a resumed search whose evaluation node is down: its evaluations wait for one, reserving nothing now
    options, slots, reserved = _eval_reserve(spec, {"CPU": 8.0}, needed=True, resuming=True)
    assert options == {"num_cpus": 1.0, "resources": {"eval_slot": 1}} and slots == 1 and reserved == {}
    spec.evaluation.fallback_cpus = 0.5
    options, slots, _ = _eval_reserve(spec, {"CPU": 8.0}, needed=True)
    assert options == {"num_cpus": 0.5} and slots == 1


# ------------------------------------------------------------------ machines lost mid-search

CHECKPOINT_EVERY = 16  # 5 checkpoints a trial to score; the bound on the steps a lost node costs


def _lab_search(lab, storage: Path, data: Path, *extra: str) -> subprocess.Popen:
    """The launcher on debug-eval (`cpu` profile), in its own process group (the test may kill it whole)."""
    cmd = [
        sys.executable, "-m", "tune.search", "--space", "tests/tune/debug-eval.yaml", "--profile", "cpu",
        "--storage", str(storage), "--address", lab.cluster.address, "--verbose", "0",
        f"config.data.path={data}", "budget.num_samples=2", "scheduler.name=fifo", "evaluation.keep=all",
        "config.log.wandb=disabled", "config.eval.num_samples=8", "config.eval.kid_subset_size=8", *extra,
    ]  # fmt: skip
    env = {**lab.env, "TUNE_GLOBAL_CHECKPOINT_S": "1"}  # Tune saves its state every second
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)  # fmt: skip


def _wait(proc: subprocess.Popen, condition, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the search ended before {what}:\n{proc.stdout.read()[-3000:]}")
        if value := condition():
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def _finish(proc: subprocess.Popen, timeout: float) -> str:
    try:
        output, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, output[-4000:]
    return output


def _steps(runs: Path) -> dict[str, int]:
    """The newest training step each trial has logged."""
    return {
        r.name: max((m["step"] for m in read_jsonl(r / "metrics.jsonl")), default=0) for r in runs.glob("*")
    }


def _actor_nodes(address: str, class_name: str) -> list[str]:
    import ray
    from ray.util.state import list_actors

    ray.init(address=address)
    try:
        actors = list_actors(  # this cluster's: another test's cluster may run on this machine too
            address=address,
            filters=[("class_name", "=", class_name)],
            limit=1000,
            raise_on_missing_output=False,
        )
        # an actor that died before it was placed (its node lost while it was created) ran nowhere
        return [a.node_id for a in actors if a.node_id is not None]
    finally:
        ray.shutdown()


def _results(search: Path) -> list[dict]:
    with (search / "results.csv").open() as f:
        return list(csv.DictReader(f))


def _missing_metrics(run_dir: Path, max_steps: int, every: int) -> list[int]:
    scored = {e["step"] for e in read_jsonl(run_dir / "eval.jsonl") if "eval_error" not in e}
    return [s for s in range(every, max_steps + 1, every) if s not in scored]


def _resumes(run_dir: Path) -> list[int]:
    """The steps a run resumed from, in order."""
    return [m["resumed_from"] for m in read_jsonl(run_dir / "metrics.jsonl") if "resumed_from" in m]


def _kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ValueError):  # its output was read already
        proc.communicate(timeout=60)


@pytest.mark.timeout(900)
def test_losing_two_machines_and_the_launcher_loses_one_interval_a_time_no_metric_and_no_finished_trial(
    lab, debug_data, tmp_path
):
    """Two trials train on the two training machines, their checkpoints scored on the evaluation machine.
    Mid-search a training machine and the evaluation machine are taken away together: the trial of the
    lost machine restarts on the other one once it is free, losing at most one checkpoint interval, while
    the checkpoints wait for the evaluation machine. Then the launcher itself is killed (SIGKILL, its
    process group): `--resume` reruns no finished trial, resumes the unfinished one from its checkpoint
    (at most one interval lost again), re-queues the evaluations the dead launcher held, and once the
    evaluation machine is back every checkpoint is scored: no metric is lost. Last, the whole cluster is
    killed, every Ray process of every machine with the launcher (a power cut): a new cluster and
    `--resume` again lose at most one interval, no evaluation, and no finished trial."""
    max_steps = 80  # long enough that both trials train at once, however staggered their starts
    args = (f"budget.max_steps={max_steps}", f"config.train.checkpoint_every={CHECKPOINT_EVERY}",
            "config.train.log_every=1")  # fmt: skip
    proc = _lab_search(lab, tmp_path, debug_data, *args)
    search, runs = tmp_path / "debug-eval", tmp_path / "debug-eval" / "runs"
    old_eval, resumed_proc = lab.eval, None
    try:
        # both trials training past their first checkpoint, which the evaluation machine has been given
        _wait(
            proc,
            lambda: (
                len(s := _steps(runs)) == 2
                and all(CHECKPOINT_EVERY + 2 <= v < max_steps - 2 for v in s.values())
            ),
            600,
            "two trials past their first checkpoint",
        )
        victim = lab.train[0]
        lab.cluster.remove_node(victim)
        lab.cluster.remove_node(old_eval)
        at_loss = _steps(runs)  # the dead node writes nothing more

        # the other trial finishes; the lost one restarts on its machine and trains past its resume point
        def lost_trial_training_again():
            done = [r for r in runs.glob("*") if (r / "summary.json").exists()]
            again = [r for r in runs.glob("*") if _resumes(r)]
            if len(done) == 1 and len(again) == 1:
                step, start = _steps(runs)[again[0].name], _resumes(again[0])[0]
                if start + 3 <= step < max_steps - 3:
                    return done[0], again[0]
            return None

        lost_at = time.time()
        finished, lost = _wait(proc, lost_trial_training_again, 600, "the lost trial training again")
        node_recovery = time.time() - lost_at  # (until it trained 3 steps past its resume point)
        finished_mtime = (finished / "summary.json").stat().st_mtime
        time.sleep(1.5)  # Tune's state (saved every second) has the finished trial as finished
        _kill_group(proc)  # the launcher, its trial actors and the evaluation queue it held
        at_kill = _steps(runs)[lost.name]
        # every checkpoint written since the evaluation machine left waits for it (the finished trial's last
        # one at least; the lost trial's too, once it has passed its next checkpoint)
        pending = [c for c in runs.glob("*/checkpoints/step-*") if (c / ".eval-pending").exists()]
        assert pending, "no checkpoint was waiting for the evaluation machine when the launcher died"
        # the tables were rewritten when the first trial ended, not only at the end of the search
        (early,) = [r for r in _results(search) if r["trial_id"] == finished.name]
        assert early["status"] == "finished", early

        resumed_proc = _lab_search(lab, tmp_path, debug_data, *args, "--resume")
        relaunched_at = time.time()

        def lost_trial_past_its_second_resume():
            starts = _resumes(lost)
            step = _steps(runs)[lost.name]
            return len(starts) == 2 and starts[1] + 3 <= step < max_steps - 3 and step % CHECKPOINT_EVERY

        _wait(
            resumed_proc, lost_trial_past_its_second_resume, 600, "the lost trial resumed by the new launcher"
        )
        launcher_recovery = time.time() - relaunched_at
        # where everything ran on this cluster: the one-worker trials in their Tune trial actors
        # (trial.runner auto), only on training machines (the lost one too), with no Ray Train run; the
        # killed launcher's trials left no placement group behind
        train_nodes = {victim.node_id, *(n.node_id for n in lab.train)}
        workers = _actor_nodes(lab.cluster.address, "ImplicitFunc")
        assert workers and set(workers) <= train_nodes and victim.node_id in workers, workers
        assert not _actor_nodes(lab.cluster.address, "TrainController")
        _wait_for_no_orphan_groups(lab.cluster.address, 60)

        # the whole cluster is lost (every Ray process of every machine, and the launcher): a new cluster,
        # the evaluation machine back in it, and --resume
        at_power_cut = _steps(runs)[lost.name]
        _kill_group(resumed_proc)
        killed = kill_lab(lab)
        cut_at = time.time()
        deadline = time.time() + 60
        while [
            p
            for p in killed
            if Path(f"/proc/{p}").exists() and b") Z" not in Path(f"/proc/{p}/stat").read_bytes()
        ]:
            assert time.time() < deadline, "a Ray process of the killed cluster survived"
            time.sleep(0.2)
        start_lab(lab)
        resumed_proc = _lab_search(lab, tmp_path, debug_data, *args, "--resume")
        _wait(
            resumed_proc, lambda: len(_resumes(lost)) == 3, 600, "the lost trial resumed on the new cluster"
        )
        cluster_recovery = time.time() - cut_at
        output = _finish(resumed_proc, 600)
    finally:
        _kill_group(proc)
        if resumed_proc is not None:
            _kill_group(resumed_proc)
        # failed before the new cluster came up: the next tests need one
        if len(lab.cluster.worker_nodes) < 3:
            kill_lab(lab)
            start_lab(lab)

    rows = _results(search)
    assert len(rows) == 2 and {r["status"] for r in rows} == {"finished"}, rows  # every trial accounted for
    for row in rows:
        assert max(m["step"] for m in read_jsonl(runs / row["trial_id"] / "metrics.jsonl")) == max_steps
    # the finished trial was not run again; the other resumed 3 times: after its machine, after the
    # launcher, after the whole cluster
    assert (finished / "summary.json").stat().st_mtime == finished_mtime, "a finished trial was run again"
    assert not _resumes(finished), "the trial of the machine that stayed resumed"
    starts = _resumes(lost)
    assert len(starts) == 3, starts
    lost_steps = [at_loss[lost.name] - starts[0], at_kill - starts[1], at_power_cut - starts[2]]
    missing = {
        r["trial_id"]: _missing_metrics(runs / r["trial_id"], max_steps, CHECKPOINT_EVERY) for r in rows
    }
    nodes = [e["node_id"] for r in rows for e in read_jsonl(runs / r["trial_id"] / "eval.jsonl")]
    print(f"\nlost a training and the evaluation node, then the launcher, then the whole cluster: trial "
          f"{lost.name} resumed from steps {starts}; steps lost {lost_steps} (bound {CHECKPOINT_EVERY} each); "
          f"{len(pending)} pending evaluation(s) at the launcher's kill; metrics missing "
          f"{sum(map(len, missing.values()))} (bound 0); {nodes.count(lab.eval.node_id)} of {len(nodes)} "
          f"evaluations ran on the new cluster's evaluation node; recovered {node_recovery:.1f} s after the "
          f"nodes were lost, {launcher_recovery:.1f} s after the relaunch, {cluster_recovery:.1f} s after "
          f"the whole cluster was killed (new cluster included)")  # fmt: skip
    assert all(0 <= n <= CHECKPOINT_EVERY for n in lost_steps) and all(
        s % CHECKPOINT_EVERY == 0 for s in starts
    ), (lost_steps, starts)
    assert not any(missing.values()), missing
    assert "0 failed" in output and "pending evaluation re-queued" in output, output[-3000:]
    # evaluations only on evaluation machines: the first, and the new cluster's once it was back
    assert lab.eval.node_id in nodes and set(nodes) <= {old_eval.node_id, lab.eval.node_id}, nodes
    for row in rows:
        for e in read_jsonl(runs / row["trial_id"] / "eval.jsonl"):
            assert e["resources"].get("eval_slot") == 1, e


def _wait_for_no_orphan_groups(address: str, timeout: float) -> None:
    """Wait until no placement group that is not removed belongs to an ended job (Ray's state API)."""
    import ray
    from ray.util.state import list_jobs, list_placement_groups

    def orphans() -> list[str]:
        # (the cluster's address, always: another test's cluster may run on this machine too)
        ended = {
            j.job_id for j in list_jobs(address=address) if j.status in ("SUCCEEDED", "FAILED", "STOPPED")
        }
        groups = list_placement_groups(address=address, filters=[("state", "!=", "REMOVED")], detail=True)
        return [g.placement_group_id for g in groups if g.creator_job_id in ended]

    ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    try:
        deadline = time.time() + timeout
        while orphans():
            assert time.time() < deadline, f"placement groups of ended jobs left: {orphans()}"
            time.sleep(0.5)
    finally:
        ray.shutdown()

"""Machines lost mid-search on the tests' lab cluster (conftest.lab: a head, two training nodes and one
evaluation node on 127.0.0.1, each advertising what cluster/start-node.sh would on such a host). The search
runs with the `cpu` profile; the test counts the work lost (training steps beyond the last checkpoint,
evaluation metrics never produced)."""

import csv
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faice.results import read_jsonl

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("lab")]  # one worker: its shared fixture
CHECKPOINT_EVERY = 8


def _search(lab, storage: Path, data: Path, *extra: str) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "tune.search", "--space", "tests/tune/debug-eval.yaml", "--profile", "cpu",
        "--storage", str(storage), "--address", lab.cluster.address, "--verbose", "0",
        f"config.data.path={data}", "budget.num_samples=2", "scheduler.name=fifo", "evaluation.keep=all",
        "config.log.wandb=disabled", "config.eval.num_samples=8", "config.eval.kid_subset_size=8", *extra,
    ]  # fmt: skip
    return subprocess.Popen(
        cmd, cwd=REPO, env=lab.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


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
        return [a.node_id for a in actors]
    finally:
        ray.shutdown()


def _results(search: Path) -> list[dict]:
    with (search / "results.csv").open() as f:
        return list(csv.DictReader(f))


def _missing_metrics(run_dir: Path, max_steps: int, every: int) -> list[int]:
    scored = {e["step"] for e in read_jsonl(run_dir / "eval.jsonl") if "eval_error" not in e}
    return [s for s in range(every, max_steps + 1, every) if s not in scored]


@pytest.mark.timeout(900)
def test_losing_a_training_node_and_the_evaluation_node_loses_one_interval_and_no_metric(
    lab, debug_data, tmp_path
):
    """Two trials train on the two training machines, their checkpoints scored on the evaluation machine.
    Mid-search a training machine and the evaluation machine are taken away together. The trial of the
    lost machine restarts on the other one once it is free and loses at most one checkpoint interval;
    training goes on without the evaluation machine while its checkpoints wait; when it comes back every
    checkpoint is scored: no metric is lost."""
    max_steps = 48
    proc = _search(
        lab, tmp_path, debug_data, f"budget.max_steps={max_steps}",
        f"config.train.checkpoint_every={CHECKPOINT_EVERY}", "config.train.log_every=1",
    )  # fmt: skip
    search, runs = tmp_path / "debug-eval", tmp_path / "debug-eval" / "runs"
    old_eval = lab.eval
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
        # training goes on without the evaluation machine (the lost trial on the other training machine,
        # once it is free); the checkpoints wait for it
        _wait(
            proc,
            lambda: len(s := _steps(runs)) == 2 and all(v == max_steps for v in s.values()),
            600,
            "both trials to finish training",
        )
        lab.eval = lab.cluster.add_node(num_cpus=1, resources=lab.resources["eval"])  # it comes back
        output = _finish(proc, 600)
    finally:
        if proc.poll() is None:
            proc.kill()
        if lab.eval is old_eval:
            lab.eval = lab.cluster.add_node(num_cpus=1, resources=lab.resources["eval"])
    lab.train[0] = lab.cluster.add_node(num_cpus=1, resources=lab.resources["train"])  # the machine returns

    rows = _results(search)
    assert len(rows) == 2 and {r["status"] for r in rows} == {"finished"}, rows  # every trial accounted for
    resumed = {}
    for row in rows:
        metrics = read_jsonl(runs / row["trial_id"] / "metrics.jsonl")
        assert max(m["step"] for m in metrics) == max_steps
        starts = [m["resumed_from"] for m in metrics if "resumed_from" in m]
        if starts:
            resumed[row["trial_id"]] = starts[0]
    assert len(resumed) == 1, (resumed, at_loss)  # the trial of the lost machine, and only it
    ((trial, start),) = resumed.items()
    lost = at_loss[trial] - start
    missing = {
        r["trial_id"]: _missing_metrics(runs / r["trial_id"], max_steps, CHECKPOINT_EVERY) for r in rows
    }
    nodes = [e["node_id"] for r in rows for e in read_jsonl(runs / r["trial_id"] / "eval.jsonl")]
    print(f"\nlost a training and the evaluation node: trial {trial} resumed from step {start}; steps lost "
          f"{lost} (bound {CHECKPOINT_EVERY}); metrics missing {sum(map(len, missing.values()))} (bound 0); "
          f"{nodes.count(lab.eval.node_id)} of {len(nodes)} evaluations ran after it returned")  # fmt: skip
    assert 0 <= lost <= CHECKPOINT_EVERY and start % CHECKPOINT_EVERY == 0
    assert not any(missing.values()), missing
    assert "0 failed" in output

    # where everything ran: training workers only on training machines, evaluations only on the
    # evaluation machines (before and after it returned), trial actors and Ray Train controllers on the head
    train_nodes = {victim.node_id, *(n.node_id for n in lab.train)}
    workers = _actor_nodes(lab.cluster.address, "RayTrainWorker")
    assert workers and set(workers) <= train_nodes and victim.node_id in workers, workers
    assert set(_actor_nodes(lab.cluster.address, "TrainController")) == {lab.head}
    assert lab.eval.node_id in nodes and set(nodes) <= {old_eval.node_id, lab.eval.node_id}, nodes
    for row in rows:
        for e in read_jsonl(runs / row["trial_id"] / "eval.jsonl"):
            assert e["resources"].get("eval_slot") == 1, e

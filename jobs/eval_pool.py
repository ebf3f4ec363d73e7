"""The evaluation pool: checkpoint evaluations (FID/IS/KID) as Ray tasks on nodes reserved for them.

Training does not wait for evaluations, except at ASHA's rungs when ASHA runs on an evaluation metric
(`evaluation.rung_wait_s`: ASHA must see a rung's score before the trial trains on). A trial's rank 0
marks each new checkpoint `.eval-pending` (so pruning keeps it)
and hands it to the search's `EvalDispatcher`, a named actor owned by the search launcher - it outlives
trials that ASHA stops. The dispatcher

- runs at most `slots` evaluations at once as tasks that request the custom resource `eval_slot`
  (only evaluation nodes advertise it: `ray start ... --resources '{"eval_slot": 1}'`);
- keeps a queue with per-trial de-duplication: with keep=latest only the newest pending checkpoint of
  a trial waits when evaluations fall behind (a trial's final checkpoint is never dropped);
- retries an evaluation whose task failed or whose worker/node died, up to `max_attempts`;
- appends every result to `<run_dir>/eval.jsonl` (its only writer) and hands it back to the owning
  trial on its next report (`poll`), which logs it to the trial's W&B run and to Tune (ASHA on FID).

The launcher submits each trial's last checkpoint again at the end (already-evaluated steps are skipped)
and `drain`s the pool before it writes the results, so every trial's final checkpoint has its scores.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import ray

from faice.train.checkpoint import EVAL_PENDING

EVAL_RESOURCE = "eval_slot"


@dataclass(frozen=True)
class EvalJob:
    trial_id: str
    run_dir: str
    checkpoint: str
    step: int
    final: bool = False
    attempt: int = 1
    queued_at: float = 0.0  # wall time the checkpoint was handed to the pool (kept across retries)


@dataclass
class EvalQueue:
    """Pending evaluations, FIFO, de-duplicated per (trial, step); pure Python so it is unit-tested.

    keep=latest: a new checkpoint of a trial replaces that trial's older pending non-final ones, except
    checkpoints at `protected` steps (ASHA's milestones): a rung compares the evaluations of its own step,
    never a later checkpoint's.
    """

    keep: Literal["latest", "all"] = "latest"
    pending: deque = field(default_factory=deque)
    seen: set = field(default_factory=set)
    protected: frozenset = frozenset()

    def push(self, job: EvalJob) -> list[EvalJob]:
        """Queue `job`; returns the jobs it made redundant (dropped), or [job] when it is a duplicate."""
        key = (job.trial_id, job.step)
        if key in self.seen:
            if job.final:  # a final flag arriving late still protects a pending job
                self.pending = deque(
                    replace(j, final=True) if (j.trial_id, j.step) == key else j for j in self.pending
                )
            return [job]
        self.seen.add(key)
        dropped = []
        if self.keep == "latest":
            dropped = [
                j
                for j in self.pending
                if j.trial_id == job.trial_id
                and not j.final
                and j.step < job.step
                and j.step not in self.protected
            ]
            self.pending = deque(j for j in self.pending if j not in dropped)
        self.pending.append(job)
        return dropped

    def retry(self, job: EvalJob) -> EvalJob:
        again = replace(job, attempt=job.attempt + 1)
        self.pending.appendleft(again)
        return again

    def pop(self) -> EvalJob | None:
        return self.pending.popleft() if self.pending else None

    def __len__(self) -> int:
        return len(self.pending)


def _unmark(checkpoint: str) -> None:
    Path(checkpoint, EVAL_PENDING).unlink(missing_ok=True)


def evaluate_job(job: EvalJob, overrides: list[str]) -> dict:
    """Body of one evaluation task: score the checkpoint, save its grid; returns the eval.jsonl line."""
    import torch

    from faice.evaluate import evaluate_checkpoint, save_grid

    # as many threads as the task's CPUs: more would fight the training threads for the same cores
    # (on a 2-core machine, 2 + 2 threads ran the demo's training 4x slower while an evaluation ran)
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    run_dir = Path(job.run_dir)
    # who is evaluating, for operators (and the fault-injection test): eval/step-N.attempt-K.pid
    marker = run_dir / "eval" / f"step-{job.step:07d}.attempt-{job.attempt}.pid"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(os.getpid()))
    result, step = evaluate_checkpoint(job.checkpoint, overrides)
    row = result.row(step)
    grid = save_grid(result, run_dir, step)
    ctx = ray.get_runtime_context()
    row.update(
        grid=str(grid) if grid else None,
        where="pool",
        node_id=ctx.get_node_id(),
        resources=ctx.get_assigned_resources(),  # proves where it ran: eval_slot is only on eval nodes
        attempt=job.attempt,
        final=job.final,
    )
    marker.unlink(missing_ok=True)
    return row


_evaluate_task = ray.remote(max_retries=0)(evaluate_job)


def warm_up() -> int:
    """Import what an evaluation needs (torch, diffusers, the extractors), so that the pool's first
    checkpoint is scored at once rather than after a cold start; returns the worker's pid."""
    import faice.evaluate  # noqa: F401
    import faice.tasks  # noqa: F401

    return os.getpid()


_warm_up_task = ray.remote(max_retries=0)(warm_up)


class EvalDispatcher:
    """Queue + at most `slots` running evaluation tasks; results kept per trial until polled."""

    def __init__(
        self,
        task_options: dict,
        slots: int,
        keep: str = "latest",
        max_attempts: int = 3,
        overrides: list[str] | None = None,
        protected_steps: list[int] | None = None,
        warm_up: bool = True,
    ):
        self.task_options, self.slots, self.max_attempts = task_options, max(1, int(slots)), max_attempts
        self.overrides = list(overrides or [])
        self.queue = EvalQueue(keep, protected=frozenset(protected_steps or ()))
        self.running: dict = {}  # ObjectRef -> EvalJob
        self.results: dict[str, list[dict]] = {}
        self.delivered: dict[str, int] = {}
        self.counts = {"submitted": 0, "done": 0, "dropped": 0, "retried": 0, "failed": 0}
        self.unwritten: list[tuple[EvalJob, dict]] = []  # results whose eval.jsonl append failed: retried
        self.lock = threading.Lock()
        self.wake = threading.Condition(self.lock)  # a submission wakes the idle loop (no busy polling)
        # one warm-up task per slot while the first trials start: their worker processes, which later
        # evaluations reuse, have imported everything by the time the first checkpoint arrives. Not on an
        # autoscaling cluster: a warm-up would bring up (and hold) an evaluation node before any
        # checkpoint waits for one
        self.warm = (
            [_warm_up_task.options(**task_options).remote() for _ in range(self.slots)] if warm_up else []
        )
        threading.Thread(target=self._run, daemon=True, name="eval-dispatcher").start()

    # -------------------------------------------------------------- called by trials and the launcher

    def submit(self, trial_id: str, run_dir: str, checkpoint: str, step: int, final: bool = False) -> None:
        with self.lock:
            job = EvalJob(trial_id, str(run_dir), str(checkpoint), int(step), final, queued_at=time.time())
            dropped = self.queue.push(job)
            self.counts["submitted"] += 1
            for old in dropped:
                if old is not job:  # a redundant older checkpoint: let pruning have it
                    self.counts["dropped"] += 1
                    _unmark(old.checkpoint)
            self.wake.notify()

    def poll(self, trial_id: str) -> list[dict]:
        """Results of `trial_id` not handed out before (the trial logs and reports them)."""
        with self.lock:
            rows = self.results.get(trial_id, [])
            start = self.delivered.get(trial_id, 0)
            self.delivered[trial_id] = len(rows)
            return rows[start:]

    def undelivered(self) -> dict[str, list[dict]]:
        """Per trial, results no trial report carried (final checkpoints, stopped trials)."""
        return {t: self.poll(t) for t in list(self.results)}

    def status(self) -> dict:
        with self.lock:  # (a result not yet written counts as running: drain waits for it)
            running = len(self.running) + len(self.unwritten)
            return {**self.counts, "pending": len(self.queue), "running": running}

    def drain(self, timeout: float | None = None) -> dict:
        """Block until nothing is pending or running (or `timeout` seconds); returns the status."""
        deadline = None if timeout is None else time.time() + timeout
        while True:
            status = self.status()
            if not status["pending"] and not status["running"]:
                return status
            if deadline is not None and time.time() > deadline:
                return {**status, "timed_out": True}
            time.sleep(0.2)

    # -------------------------------------------------------------- the loop

    def _launch(self) -> None:
        while len(self.running) < self.slots:
            job = self.queue.pop()
            if job is None:
                return
            ref = _evaluate_task.options(**self.task_options).remote(job, self.overrides)
            self.running[ref] = job

    def _finish(self, ref, job: EvalJob) -> None:
        try:
            row = ray.get(ref)
        except Exception as e:  # task error, worker or node death: retried on a fresh worker
            if job.attempt < self.max_attempts and Path(job.checkpoint).exists():
                self.queue.retry(job)
                self.counts["retried"] += 1
                print(
                    f"faice eval: {job.trial_id} step {job.step} attempt {job.attempt} failed ({type(e).__name__}); retrying",
                    flush=True,
                )
                return
            row = {
                "step": job.step,
                "eval_error": f"{type(e).__name__}: {str(e)[-500:]}",
                "attempt": job.attempt,
            }
            self.counts["failed"] += 1
        else:
            self.counts["done"] += 1
        # checkpoint handed over -> scored: the queue's latency (benchmarks/scale.py reads it)
        if job.queued_at:
            row["latency_s"] = round(time.time() - job.queued_at, 3)
        self.unwritten.append((job, row))
        self._write_results()

    def _write_results(self) -> None:
        """Append the finished results to their eval.jsonl; one that cannot be written (a full disk, a
        dead NFS mount) stays queued and is tried again on the next turn of the loop, never dropped."""
        from faice.evaluate import append_eval

        while self.unwritten:
            job, row = self.unwritten[0]
            try:
                append_eval(job.run_dir, row)
            except OSError as e:
                print(f"faice eval: cannot write {job.run_dir}/eval.jsonl ({e}); retrying", flush=True)
                return
            self.unwritten.pop(0)
            self.results.setdefault(job.trial_id, []).append(row)
            _unmark(job.checkpoint)

    def _run(self, turns: int | None = None) -> None:
        """The dispatcher's thread: forever (or `turns` times, for tests)."""
        while turns is None or turns > 0:
            turns = None if turns is None else turns - 1
            try:
                self._turn()
            except Exception as e:  # the loop never dies: a dead loop would leave the launcher waiting
                import traceback

                print(f"faice eval: dispatcher error ({type(e).__name__}: {e}); continuing", flush=True)
                traceback.print_exc()
                time.sleep(1.0)

    def _turn(self) -> None:
        with self.lock:
            self._write_results()
            self._launch()
            refs = list(self.running)
            if not refs:  # idle until a submission (or a second, whichever comes first)
                self.wake.wait(timeout=1.0)
                return
        done, _ = ray.wait(refs, num_returns=1, timeout=0.5)
        with self.lock:
            for ref in done:
                self._finish(ref, self.running.pop(ref))


NAMESPACE = "faice"


def dispatcher_name(search: str) -> str:
    """The Ray actor name of a search's evaluation dispatcher."""
    return f"faice-eval-{search}"


def start_dispatcher(
    search: str,
    task_options: dict,
    slots: int,
    keep: str,
    max_attempts: int,
    overrides: list[str] | None = None,
    protected_steps: list[int] | None = None,
    warm_up: bool = True,
):
    """The search's dispatcher actor (0 CPUs, on the head like the trial actors, so losing an evaluation or
    training machine never loses the queue), named so trials can find it."""
    actor = ray.remote(EvalDispatcher).options(
        name=dispatcher_name(search),
        namespace=NAMESPACE,
        num_cpus=0,
        resources={"node:__internal_head__": 0.001},
        max_concurrency=16,
    )
    return actor.remote(task_options, slots, keep, max_attempts, overrides, protected_steps, warm_up)


def get_dispatcher(name: str):
    """The evaluation dispatcher actor called `name` (ValueError when it is not running)."""
    return ray.get_actor(name, namespace=NAMESPACE)


def eval_task_options(resource: str | None, cpus: float, gpus: float) -> dict:
    """Ray options of one evaluation task; `resource` None = the fallback on training nodes."""
    options: dict = {"num_cpus": cpus}
    if gpus:
        options["num_gpus"] = gpus
    if resource:
        options["resources"] = {resource: 1}
    return options


# ---------------------------------------------------------------------------- end of a search


def _evaluated_steps(run_dir: Path) -> set[int]:
    from faice.evaluate import EVAL_LOG
    from faice.results import read_jsonl

    return {r["step"] for r in read_jsonl(run_dir / EVAL_LOG) if "eval_error" not in r}


def submit_pending(pool, search_dir: Path, newest_too: bool = False) -> int:
    """Submit every checkpoint still marked pending that has no evaluation (after a launcher was lost,
    its queue went with it; the marks are on disk) and, with `newest_too`, every trial's newest
    checkpoint that has none (stopped trials included); returns how many were submitted. The pool
    de-duplicates, so a checkpoint it already holds is not evaluated twice."""
    from faice.train.checkpoint import latest_checkpoint, list_checkpoints

    submitted = 0
    for run_dir in sorted(p for p in (search_dir / "runs").glob("*") if p.is_dir()):
        newest = latest_checkpoint(run_dir)
        done = _evaluated_steps(run_dir)
        for ckpt in list_checkpoints(run_dir):
            step = int(ckpt.name.removeprefix("step-"))
            is_newest = newest is not None and ckpt == newest
            if step in done or not ((ckpt / EVAL_PENDING).exists() or (newest_too and is_newest)):
                continue
            (ckpt / EVAL_PENDING).touch()
            ray.get(pool.submit.remote(run_dir.name, str(run_dir), str(ckpt), step, newest_too and is_newest))
            submitted += 1
    return submitted


def finish_evaluations(pool, search_dir: Path, spec, timeout: float) -> dict[str, list[dict]]:
    """Evaluate every trial's last checkpoint and wait for the pool; returns, per trial, the results no
    trial report carried (they go to W&B with `faice.train.outputs.sync_runs`)."""
    submitted = submit_pending(pool, search_dir, newest_too=True)
    status = ray.get(pool.status.remote())
    print(
        f"faice search: waiting for {status['pending'] + status['running']} evaluation(s) "
        f"({submitted} checkpoint(s) added)",
        flush=True,
    )
    status = ray.get(pool.drain.remote(timeout))
    print(
        "faice search: evaluations: "
        + ", ".join(f"{v} {k}" for k, v in status.items() if k not in ("pending", "running")),
        flush=True,
    )
    from faice.durable import write_json_atomic

    write_json_atomic(search_dir / "eval_pool.json", status)  # submitted, done, dropped (superseded), ...
    if status.get("timed_out"):
        print(
            f"faice search: warning: {status['pending'] + status['running']} evaluation(s) unfinished after {timeout:g} s",
            flush=True,
        )
    return ray.get(pool.undelivered.remote())


def score_best(pool_options: dict, search_dir: Path, spec) -> list[dict]:
    """Score the best trial's last checkpoint with `evaluation.also_score_best` extractors (e.g. the real
    Inception next to the stand-in), each result a line of its eval.jsonl with its own metric names."""
    from faice.errors import ConfigError
    from faice.evaluate import append_eval
    from faice.metrics.features import check_available
    from faice.results import collect, rank
    from faice.train.checkpoint import latest_checkpoint

    best = next((r for r in rank(collect(search_dir), spec.mode) if r.best is not None), None)
    if best is None or not spec.evaluation.also_score_best:
        return []
    run_dir = search_dir / "runs" / best.trial_id
    ckpt = latest_checkpoint(run_dir)
    rows = []
    for name in spec.evaluation.also_score_best:
        try:
            check_available(name)
        except ConfigError as e:
            print(f"faice search: not scoring the best trial with {name}: {e}", flush=True)
            continue
        job = EvalJob(best.trial_id, str(run_dir), str(ckpt), int(ckpt.name.removeprefix("step-")), True)
        overrides = [f"eval.extractor={name}", *spec.evaluation.also_score_overrides]
        row = ray.get(_evaluate_task.options(**pool_options).remote(job, overrides))
        append_eval(run_dir, row)
        rows.append({**row, "trial_id": best.trial_id})
        print(
            f"faice search: best trial {best.trial_id} scored with {name}: fid[{name}]={row.get(f'fid[{name}]'):.4g}",
            flush=True,
        )
    return rows

"""The evaluation pool's queue: per-trial de-duplication, final checkpoints kept, retries first."""

from jobs.eval_pool import EvalJob, EvalQueue


def _job(trial, step, final=False):
    return EvalJob(trial, f"/runs/{trial}", f"/runs/{trial}/checkpoints/step-{step:07d}", step, final)


def test_latest_keeps_only_the_newest_pending_checkpoint_of_a_trial():
    q = EvalQueue("latest")
    assert q.push(_job("a", 2)) == []
    assert q.push(_job("b", 2)) == []
    dropped = q.push(_job("a", 4))
    assert [j.step for j in dropped] == [2] and dropped[0].trial_id == "a"
    assert [(j.trial_id, j.step) for j in q.pending] == [("b", 2), ("a", 4)]


def test_final_checkpoints_are_never_dropped_and_duplicates_are_ignored():
    q = EvalQueue("latest")
    q.push(_job("a", 8, final=True))
    q.push(_job("a", 10))
    assert [j.step for j in q.pending] == [8, 10]
    dup = _job("a", 10)
    assert q.push(dup) == [dup] and len(q) == 2
    q.push(_job("a", 10, final=True))  # a late final flag protects the pending job
    q.push(_job("a", 12))
    assert [(j.step, j.final) for j in q.pending] == [(8, True), (10, True), (12, False)]


def test_keep_all_evaluates_every_checkpoint_and_retries_go_first():
    q = EvalQueue("all")
    for step in (2, 4, 6):
        q.push(_job("a", step))
    first = q.pop()
    again = q.retry(first)
    assert again.attempt == 2 and again.step == 2
    assert [j.step for j in q.pending] == [2, 4, 6]
    assert [q.pop().step for _ in range(3)] == [2, 4, 6] and q.pop() is None


def test_asha_milestones_are_never_replaced_by_a_later_checkpoint():
    """With keep=latest a rung's own checkpoint is still scored, so ASHA compares FIDs of that step."""
    q = EvalQueue("latest", protected=frozenset({100, 200}))
    for step in (100, 150, 200, 250, 300):
        q.push(_job("a", step))
    assert [j.step for j in q.pending] == [100, 200, 300]


def test_protected_steps_are_rays_asha_rungs():
    from ray.tune.schedulers import ASHAScheduler

    from tune.search import asha_milestones

    for grace, rf, max_t in ((100, 2, 400), (2, 2, 8), (10, 3, 1000), (1000, 4, 56000)):
        asha = ASHAScheduler(time_attr="eval_step", max_t=max_t, grace_period=grace, reduction_factor=rf)
        rungs = sorted(m for m, _ in asha._brackets[0]._rungs)
        assert asha_milestones(grace, rf, max_t) == [m for m in rungs if m < max_t], (grace, rf, max_t)


def _bare_dispatcher():
    """The dispatcher's bookkeeping without its Ray tasks (its loop's error handling and result writing
    are plain Python)."""
    import threading

    from jobs.eval_pool import EvalDispatcher

    d = EvalDispatcher.__new__(EvalDispatcher)
    d.unwritten, d.results, d.running, d.queue = [], {}, {}, EvalQueue("latest")
    d.counts = {"submitted": 0, "done": 0, "dropped": 0, "retried": 0, "failed": 0}
    d.lock = threading.Lock()
    return d


def test_a_result_that_cannot_be_written_is_kept_and_written_later(tmp_path, capsys):
    from faice.train.checkpoint import EVAL_PENDING

    run = tmp_path / "run"
    ckpt = run / "checkpoints" / "step-0000004"
    ckpt.mkdir(parents=True)
    (ckpt / EVAL_PENDING).touch()
    (run / "eval.jsonl").mkdir()  # appending fails with an OSError, as on a full disk or a dead mount
    d = _bare_dispatcher()
    d.unwritten.append((EvalJob("a", str(run), str(ckpt), 4), {"step": 4, "fid": 9.5}))
    d._write_results()
    assert len(d.unwritten) == 1 and d.results == {} and (ckpt / EVAL_PENDING).exists()
    assert d.status()["running"] == 1  # drain waits for it
    assert "cannot write" in capsys.readouterr().out
    (run / "eval.jsonl").rmdir()  # the disk has room again
    d._write_results()
    assert d.unwritten == [] and d.results["a"] == [{"step": 4, "fid": 9.5}]
    assert not (ckpt / EVAL_PENDING).exists()  # scored: pruning may have it now
    assert (run / "eval.jsonl").read_text().strip() == '{"step": 4, "fid": 9.5}'


def test_the_dispatcher_loop_survives_an_error(capsys, monkeypatch):
    import time

    d = _bare_dispatcher()
    turns = []

    def turn():
        turns.append(1)
        if len(turns) == 1:
            raise OSError(5, "Input/output error")

    d._turn = turn
    monkeypatch.setattr(time, "sleep", lambda s: None)
    d._run(turns=3)
    assert len(turns) == 3
    assert "dispatcher error (OSError" in capsys.readouterr().out

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

"""Consistency distillation: the boundary scalings and schedule are LCMScheduler's, the loss is the
formula (teacher DDIM step, EMA target), only the student learns, and a distilled tiny teacher samples in
one step, in faice and through its diffusers export."""

import numpy as np
import pytest
import torch

from faice.config import ConfigError
from faice.consistency import LCM_STEPS, ConsistencyLoss, boundary_scalings, ddim_timesteps
from faice.diffusion import param
from faice.diffusion.samplers import build_scheduler
from faice.train.loop import train


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, debug_data):
    from faice.config import load_config

    out = tmp_path_factory.mktemp("teacher")
    cfg = load_config(
        "debug.yaml",
        [f"data.path={debug_data}", "train.max_steps=4", "diffusion.prediction_type=v_prediction"],
    )
    return train(cfg, run_dir=out / "teacher")


def _student_cfg(debug_cfg, teacher, *extra):
    return debug_cfg("task=consistency", f"consistency.teacher={teacher.run_dir}", "sample.sampler=lcm",
                     "sample.num_inference_steps=2", "train.ema_decay=0.95", *extra)  # fmt: skip


def test_scalings_and_schedule_are_lcmschedulers():
    from faice.config import load_config

    sched = build_scheduler(load_config("debug.yaml").diffusion, "lcm")
    assert type(sched).__name__ == "LCMScheduler"
    for t in (0, 19, 500, 999):
        c_skip, c_out = boundary_scalings(torch.tensor([t]))
        want = sched.get_scalings_for_boundary_condition_discrete(t)
        assert c_skip.item() == pytest.approx(want[0]) and c_out.item() == pytest.approx(want[1])
    assert boundary_scalings(torch.tensor([0])) == (torch.tensor([1.0]), torch.tensor([0.0]))
    sched.set_timesteps(LCM_STEPS)
    assert sorted(sched.timesteps.tolist()) == ddim_timesteps(1000).tolist()


@pytest.mark.wires("consistency.teacher")
def test_the_loss_is_the_formula_and_only_the_student_learns(debug_cfg, teacher):
    from faice.sampling import load_checkpoint_model
    from faice.tasks import task_of

    task = task_of(_student_cfg(debug_cfg, teacher))
    cfg = task.prepare(_student_cfg(debug_cfg, teacher))
    student = task.build_model(cfg)
    teacher_net = load_checkpoint_model(teacher.run_dir)[0]
    assert all(
        torch.equal(a, b)
        for a, b in zip(student.state_dict().values(), teacher_net.state_dict().values(), strict=True)
    )
    target = load_checkpoint_model(teacher.run_dir)[0]
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.01 * torch.randn_like(p))  # a student that has moved away from teacher and target
    loss_fn = ConsistencyLoss(cfg, teacher_net)
    loss_fn.target = target
    x0 = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    parts = loss_fn.parts(student, x0, torch.Generator().manual_seed(1))
    # by hand, with the same draws
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, LCM_STEPS, (4,), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    t = idx * 20 + 19
    t_prev = (t - 20).clamp(min=0)
    abar = loss_fn.abar
    a_t, a_p = abar[t].view(-1, 1, 1, 1), torch.where(idx > 0, abar[t_prev], abar[0]).view(-1, 1, 1, 1)
    xt = a_t.sqrt() * x0 + (1 - a_t).sqrt() * noise
    with torch.no_grad():
        v = teacher_net(xt, t).sample
        x0_teacher = a_t.sqrt() * xt - (1 - a_t).sqrt() * v  # v-prediction
        eps = (1 - a_t).sqrt() * xt + a_t.sqrt() * v
        x_prev = a_p.sqrt() * x0_teacher + (1 - a_p).sqrt() * eps
        v_target = target(x_prev, t_prev).sample
        x0_target = a_p.sqrt() * x_prev - (1 - a_p).sqrt() * v_target
        cs, co = (s.view(-1, 1, 1, 1) for s in boundary_scalings(t_prev))
        want_target = cs * x_prev + co * x0_target
        x0_student = param.x0_from_v(xt, student(xt, t).sample, abar[t])
        cs, co = (s.view(-1, 1, 1, 1) for s in boundary_scalings(t))
        want_pred = cs * xt + co * x0_student
    torch.testing.assert_close(parts["x_prev"], x_prev, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(parts["target"], want_target, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(parts["pred"], want_pred, rtol=1e-4, atol=1e-5)
    c = cfg.consistency.huber_c
    torch.testing.assert_close(
        parts["loss"], (torch.sqrt((want_pred - want_target) ** 2 + c**2) - c).mean(), rtol=1e-4, atol=1e-6
    )
    parts["loss"].backward()
    assert all(p.grad is not None for p in student.parameters())
    assert all(p.grad is None for p in [*teacher_net.parameters(), *target.parameters()])


def test_a_distilled_teacher_samples_in_one_step_in_faice_and_diffusers(debug_cfg, teacher, tmp_path):
    import diffusers

    from faice.cli import main
    from faice.sampling import generate, load_checkpoint_model

    result = train(_student_cfg(debug_cfg, teacher, "train.max_steps=3"))
    model, cfg, _ = load_checkpoint_model(result.checkpoint)
    assert cfg.task == "consistency" and cfg.diffusion.prediction_type == "v_prediction"  # the teacher's
    one = generate(model, cfg, 2, seed=0, num_inference_steps=1)
    assert one.shape == (2, 3, 16, 16) and torch.isfinite(one).all()
    assert main(["export", str(result.checkpoint), str(tmp_path / "pipe")]) == 0
    pipe = diffusers.DiffusionPipeline.from_pretrained(tmp_path / "pipe", trust_remote_code=True)
    assert type(pipe.scheduler).__name__ == "LCMScheduler"
    for steps in (1, 2, 4):
        ours = generate(model, cfg, 2, seed=3, num_inference_steps=steps)
        theirs = pipe(batch_size=2, num_inference_steps=steps, generator=torch.Generator().manual_seed(3),
                      output_type="np").images  # fmt: skip
        np.testing.assert_allclose(theirs, (ours / 2 + 0.5).permute(0, 2, 3, 1).numpy(), atol=1e-5)


def test_consistency_config_errors_name_the_key(debug_cfg, teacher, tmp_path):
    with pytest.raises(ConfigError, match="consistency.teacher"):
        train(debug_cfg("task=consistency", "sample.sampler=lcm", "train.ema_decay=0.95"))
    with pytest.raises(ConfigError, match="sample.sampler: a consistency model samples with lcm"):
        debug_cfg("task=consistency", f"consistency.teacher={teacher.run_dir}")
    with pytest.raises(ConfigError, match="train.ema_decay"):
        debug_cfg("task=consistency", "sample.sampler=lcm", "train.ema_decay=0")
    with pytest.raises(ConfigError, match="consistency.teacher"):
        train(
            debug_cfg(
                "task=consistency",
                f"consistency.teacher={tmp_path}",
                "sample.sampler=lcm",
                "train.ema_decay=0.95",
            )
        )


def _task_loss(debug_cfg, teacher, *extra):
    """The consistency loss a run of these settings trains with (its target: a copy of the student)."""
    from faice.tasks import task_of
    from faice.train.ema import EMA

    task = task_of(_student_cfg(debug_cfg, teacher, *extra))
    cfg = task.prepare(_student_cfg(debug_cfg, teacher, *extra))
    student = task.build_model(cfg)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.02 * torch.randn_like(p, generator=None))
    return task.build_loss(cfg, torch.device("cpu"), EMA(task.build_model(cfg), 0.95)), student, cfg


@pytest.mark.wires("consistency.loss", "consistency.huber_c")
def test_the_distance_is_l2_or_pseudo_huber_with_c(debug_cfg, teacher):
    x0 = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    torch.manual_seed(0)
    l2, student, _ = _task_loss(debug_cfg, teacher, "consistency.loss=l2")
    parts = l2.parts(student, x0, torch.Generator().manual_seed(1))
    d = parts["pred"] - parts["target"]
    assert parts["loss"].item() == pytest.approx((d**2).mean().item(), rel=1e-5)
    torch.manual_seed(0)
    huber, student, _ = _task_loss(debug_cfg, teacher, "consistency.loss=huber", "consistency.huber_c=0.3")
    parts = huber.parts(student, x0, torch.Generator().manual_seed(1))
    d = parts["pred"] - parts["target"]
    assert parts["loss"].item() == pytest.approx((torch.sqrt(d**2 + 0.09) - 0.3).mean().item(), rel=1e-5)


@pytest.mark.wires("consistency.teacher_guidance_scale")
def test_a_conditional_teachers_step_is_guided_by_teacher_guidance_scale(debug_cfg, debug_data, tmp_path):
    from faice.config import load_config

    cond = train(load_config("debug.yaml", [f"data.path={debug_data}", "train.max_steps=2", "model.conditioning=[Male]",
                                            "diffusion.prediction_type=v_prediction"]), run_dir=tmp_path / "cond")  # fmt: skip
    x0 = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    labels = torch.tensor([0, 1, 0, 1])
    targets = {}
    for w in (1.0, 4.0, 4.0):
        torch.manual_seed(0)
        loss, student, _ = _task_loss(debug_cfg, cond, f"consistency.teacher_guidance_scale={w}")
        with torch.no_grad():  # a teacher whose class embedding matters (2 steps barely move it)
            torch.nn.init.normal_(loss.teacher.class_embedding.weight, std=1.0)
        targets.setdefault(w, []).append(
            loss.parts(student, x0, torch.Generator().manual_seed(1), labels)["x_prev"]
        )
    assert torch.equal(*targets[4.0]) and not torch.allclose(targets[1.0][0], targets[4.0][0])

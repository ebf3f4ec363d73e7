"""Every config key proven live: a test sets a non-default value through the config (a dotted override on
configs/debug.yaml, as a user would) and observes its effect on the object it controls, so an option that
is silently ignored fails here. Tests anywhere under tests/ declare the keys they prove with
`@pytest.mark.wires(...)`; `test_every_config_key_has_a_wiring_test` fails for a key without one, so a new
option cannot land unproven. All in-process at debug size, no Ray.
"""

from __future__ import annotations

import ast
import math
from dataclasses import fields, is_dataclass
from pathlib import Path

import pytest
import torch

from faice.config import Config

REPO = Path(__file__).resolve().parent.parent
wires = pytest.mark.wires


def config_keys(cls=Config, prefix: str = "") -> list[str]:
    """Every dotted key of the config dataclasses."""
    out = []
    for f in fields(cls):
        section = f.default_factory if is_dataclass(f.default_factory) else None
        out += config_keys(section, f"{prefix}{f.name}.") if section else [prefix + f.name]
    return out


def declared_wirings() -> dict[str, list[str]]:
    """key -> the tests (file::function) whose `wires(...)` mark names it, read from every test file."""
    found: dict[str, list[str]] = {}
    for path in sorted((REPO / "tests").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for deco in node.decorator_list:
                call = deco if isinstance(deco, ast.Call) else None
                func = call.func if call else None
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                if name != "wires":
                    continue
                for arg in call.args:
                    assert isinstance(arg, ast.Constant) and isinstance(arg.value, str), (path, node.name)
                    found.setdefault(arg.value, []).append(f"{path.relative_to(REPO)}::{node.name}")
    return found


def test_every_config_key_has_a_wiring_test():
    keys, declared = config_keys(), declared_wirings()
    unknown = sorted(set(declared) - set(keys))
    assert not unknown, f"wires() names keys the config does not have: {unknown}"
    missing = [k for k in keys if k not in declared]
    assert not missing, f"{len(missing)} config keys have no wiring test (@pytest.mark.wires): {missing}"


# ------------------------------------------------------------------------------------------ helpers


def state_of(debug_cfg, *overrides: str):
    """The TrainState a run of debug.yaml + overrides builds (its accelerator as `train` makes it)."""
    from faice.train.loop import make_accelerator
    from faice.train.state import build_state

    cfg = debug_cfg(*overrides)
    return build_state(cfg, make_accelerator(cfg))


def first_batch(state) -> torch.Tensor:
    return next(iter(state.loader.iter_epoch(0)))["image"]


def zero_model(channels: int = 3):
    """A 'network' that predicts 0 everywhere: the loss is then a closed form of the target."""

    class Zero(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x, t, class_labels=None):
            from types import SimpleNamespace

            return SimpleNamespace(sample=x * self.w)

    return Zero()


def loss_of(debug_cfg, *overrides: str, seed: int = 0, model=None) -> float:
    """The task loss of debug.yaml + overrides on a fixed batch, with a fixed generator."""
    from faice.tasks import task_of

    cfg = debug_cfg(*overrides)
    loss = task_of(cfg).build_loss(cfg, torch.device("cpu"), None)
    x0 = torch.linspace(-1, 1, 4 * 3 * 16 * 16).reshape(4, 3, 16, 16)
    return float(loss(model or zero_model(), x0, torch.Generator().manual_seed(seed), None))


def count_calls(model) -> list:
    calls = []
    model.register_forward_hook(lambda m, i, o: calls.append(1))
    return calls


# ------------------------------------------------------------------------- optimiser and schedule


@wires("train.lr", "train.weight_decay", "train.adam_betas", "train.fused_optimizer")
def test_the_optimizer_gets_lr_betas_weight_decay_and_fusion(debug_cfg):
    opt = state_of(debug_cfg, "train.lr=0.0123", "train.weight_decay=0.07", "train.adam_betas=[0.8, 0.95]",
                   "train.fused_optimizer=true").optimizer  # fmt: skip
    group = opt.param_groups[0]
    assert group["initial_lr"] == 0.0123 and group["weight_decay"] == 0.07 and group["betas"] == (0.8, 0.95)
    assert group["fused"] is True
    assert state_of(debug_cfg).optimizer.param_groups[0]["fused"] in (None, False)


@pytest.mark.parametrize(
    "schedule, at_end",
    [("constant", lambda lr: lr), ("linear", lambda lr: 0.0), ("cosine", lambda lr: 0.0)],
)
@wires("train.lr_schedule", "train.warmup_steps", "train.max_steps")
def test_the_lr_follows_warmup_then_the_schedule(debug_cfg, schedule, at_end):
    lr, warmup, steps = 0.01, 4, 10
    sched = state_of(debug_cfg, f"train.lr={lr}", f"train.lr_schedule={schedule}", f"train.warmup_steps={warmup}",
                     f"train.max_steps={steps}").lr_scheduler  # fmt: skip
    lrs = []
    for _ in range(steps + 1):
        lrs.append(sched.get_last_lr()[0])
        sched.step()
    assert lrs[: warmup + 1] == pytest.approx([lr * k / warmup for k in range(warmup + 1)])
    assert lrs[steps] == pytest.approx(at_end(lr), abs=1e-9)
    mid = warmup + (steps - warmup) // 2
    expected = {"constant": lr, "linear": lr * 0.5, "cosine": lr * 0.5 * (1 + math.cos(math.pi * 0.5))}
    assert lrs[mid] == pytest.approx(expected[schedule])


@wires("train.grad_clip")
def test_gradients_are_clipped_to_grad_clip(debug_cfg):
    from faice.train.loop import _batches
    from faice.train.state import train_step

    norms = {}
    for clip in (1e-4, 0.0):
        state = state_of(debug_cfg, f"train.grad_clip={clip}", "train.lr=1e-3")
        seen = []
        step = state.optimizer.step

        def record(*a, _step=step, _seen=seen, _model=state.model, **k):
            _seen.append(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in _model.parameters()
                                                                if p.grad is not None])).item())  # fmt: skip
            return _step(*a, **k)

        state.optimizer.step = record
        train_step(state, _batches(state.loader, state.progress))
        norms[clip] = seen[0]
    assert norms[1e-4] == pytest.approx(1e-4, rel=1e-3) and norms[0.0] > 1e-2


@wires("train.grad_accum", "train.batch_size")
def test_one_step_takes_grad_accum_batches_of_batch_size(debug_cfg):
    from faice.train.loop import _batches
    from faice.train.state import train_step

    state = state_of(debug_cfg, "train.grad_accum=3", "train.batch_size=4")
    sizes = []
    train_step(state, _batches(state.loader, state.progress, lambda b: sizes.append(len(b["image"]))))
    assert sizes == [4, 4, 4] and state.progress.step == 1


@wires("train.mixed_precision")
def test_mixed_precision_sets_the_autocast_dtype(debug_cfg):
    from faice.train.loop import _batches
    from faice.train.state import train_step

    dtypes = {}
    for mode in ("bf16", "no"):
        state = state_of(debug_cfg, f"train.mixed_precision={mode}")
        seen = []
        state.model.conv_in.register_forward_hook(lambda m, i, o, _s=seen: _s.append(o.dtype))
        train_step(state, _batches(state.loader, state.progress))
        dtypes[mode] = seen[0]
    assert dtypes == {"bf16": torch.bfloat16, "no": torch.float32}


@wires("train.channels_last")
def test_channels_last_lays_out_weights_and_batches_nhwc(debug_cfg):
    from faice.train.loop import _batches
    from faice.train.state import train_step

    state = state_of(debug_cfg, "train.channels_last=true")
    assert state.model.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    seen = []
    state.model.conv_in.register_forward_pre_hook(lambda m, i: seen.append(i[0]))
    train_step(state, _batches(state.loader, state.progress))
    assert seen[0].is_contiguous(memory_format=torch.channels_last) and not seen[0].is_contiguous()


@wires("train.allow_tf32")
def test_allow_tf32_switches_the_tf32_kernels(debug_cfg):
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        state_of(debug_cfg, "train.allow_tf32=true")
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        state_of(debug_cfg, "train.allow_tf32=false")
        assert not torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@wires("train.cpu_reuse_memory")
def test_cpu_reuse_memory_tunes_malloc_on_a_cpu(debug_cfg, monkeypatch):
    from faice.train import speed

    calls, real = [], speed.reuse_cpu_memory  # observed, then called: mallopt is process-wide, so its effect
    # (page faults a step) is measured in benchmarks/peer_loop.md rather than here

    def spy(enabled, device):
        calls.append(real(enabled, device))

    monkeypatch.setattr(speed, "reuse_cpu_memory", spy)
    state_of(debug_cfg, "train.cpu_reuse_memory=false")
    state_of(debug_cfg, "train.cpu_reuse_memory=true")
    assert calls == [False, True]  # off: untouched; on: glibc's thresholds raised (this is Linux/glibc)


@wires("train.compile")
def test_compile_wraps_the_denoisers_forward(debug_cfg, monkeypatch):
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: compiled.append(kw), raising=True)
    from faice.train import speed

    monkeypatch.setattr(speed, "check_compile", lambda mode, device: None)  # no C++ compiler needed here
    state_of(debug_cfg, "train.compile=max-autotune")
    assert compiled == [{"mode": "max-autotune"}]
    compiled.clear()
    state_of(debug_cfg)
    assert compiled == []


@wires("train.seed")
def test_the_seed_decides_the_initial_weights_and_the_data_order(debug_cfg):
    a, b, a2 = (state_of(debug_cfg, f"train.seed={s}") for s in (1, 2, 1))
    wa, wb, wa2 = (s.model.conv_in.weight for s in (a, b, a2))
    assert torch.equal(wa, wa2) and not torch.equal(wa, wb)
    assert torch.equal(first_batch(a), first_batch(a2)) and not torch.equal(first_batch(a), first_batch(b))


@wires("train.ema_decay")
def test_ema_decay_builds_an_ema_that_trails_the_weights(debug_cfg):
    from faice.train.loop import _batches
    from faice.train.state import train_step

    assert state_of(debug_cfg, "train.ema_decay=0").ema is None
    state = state_of(debug_cfg, "train.ema_decay=0.5", "train.lr=1e-2")
    before = state.ema.model.conv_in.weight.clone()
    batches = _batches(state.loader, state.progress)
    for _ in range(20):  # warm-up min(d, (1+t)/(10+t)) reaches 0.5 at t = 8
        train_step(state, batches)
    prev_ema = state.ema.model.conv_in.weight.clone()
    train_step(state, batches)
    w, ema = state.model.conv_in.weight, state.ema.model.conv_in.weight
    assert state.ema.decay == 0.5 and not torch.equal(ema, before)
    torch.testing.assert_close(ema, 0.5 * prev_ema + 0.5 * w)


@wires("train.label_dropout", "model.conditioning")
def test_label_dropout_reaches_the_loss_of_a_conditional_model(debug_cfg):
    cfg = debug_cfg("model.conditioning=[Male]", "train.label_dropout=0.3")
    state = state_of(debug_cfg, "model.conditioning=[Male]", "train.label_dropout=0.3")
    assert state.loss_fn.label_dropout == 0.3 and state.loss_fn.num_attributes == 1
    assert state.model.config.num_class_embeds == 3  # two classes and the null one
    from faice.conditioning import drop_labels, null_label

    labels = torch.zeros(20_000, dtype=torch.long)
    dropped = drop_labels(labels, state.loss_fn.label_dropout, 1, torch.Generator().manual_seed(0))
    assert (dropped == null_label(1)).float().mean().item() == pytest.approx(0.3, abs=0.02)
    assert cfg.train.label_dropout == 0.3


# ------------------------------------------------------------------------------------- architecture


@pytest.mark.parametrize(
    "overrides, effect",
    [
        (["model.base_channels=12", "model.channel_mult=[1, 3]"], lambda c: c.block_out_channels == (12, 36)),
        (["model.layers_per_block=3"], lambda c: c.layers_per_block == 3),
        (["model.attention_resolutions=[16]"],
         lambda c: c.down_block_types == ("AttnDownBlock2D", "DownBlock2D")),
        (["model.attention_head_dim=4"], lambda c: c.attention_head_dim == 4),
        (["model.resample=resnet"], lambda c: c.downsample_type == c.upsample_type == "resnet"),
        (["model.time_embedding_norm=scale_shift"], lambda c: c.resnet_time_scale_shift == "scale_shift"),
        (["model.dropout=0.25"], lambda c: c.dropout == 0.25),
        (["model.name=unet-tiny"], lambda c: c.block_out_channels == (32, 64, 64) and c.layers_per_block == 1),
        # debug.yaml's 16 px: [1, 2, 2, 2] keeps 16/8 px at an 8 px floor, all four levels at 2 px
        (["model.channel_mult=[1, 2, 2, 2]", "model.min_level_size=8"], lambda c: len(c.block_out_channels) == 2),
        (["model.channel_mult=[1, 2, 2, 2]", "model.min_level_size=2"], lambda c: len(c.block_out_channels) == 4),
    ],
)  # fmt: skip
@wires("model.name", "model.base_channels", "model.channel_mult", "model.layers_per_block",
       "model.attention_resolutions", "model.attention_head_dim", "model.resample", "model.time_embedding_norm",
       "model.dropout", "model.min_level_size")  # fmt: skip
def test_unet_fields_shape_the_network(debug_cfg, overrides, effect):
    from faice.train.state import build_task_model

    model = build_task_model(debug_cfg(*overrides))
    assert type(model).__name__ == "UNet2DModel" and effect(model.config), dict(model.config)


@wires("model.depth", "model.width", "model.heads", "model.patch_size")
def test_dit_fields_shape_the_transformer(debug_cfg):
    from faice.train.state import build_task_model

    model = build_task_model(debug_cfg("model.name=dit-debug", "model.depth=3", "model.width=48", "model.heads=3",
                                       "model.patch_size=8"))  # fmt: skip
    c = model.config
    assert type(model).__name__ == "DiTTransformer2DModel"
    assert (c.num_layers, c.num_attention_heads * c.attention_head_dim, c.num_attention_heads, c.patch_size) == (
        3, 48, 3, 8)  # fmt: skip
    assert len(model.transformer_blocks) == 3


@wires("model.pretrained", "model.freeze")
def test_pretrained_weights_are_loaded_and_frozen_prefixes_stay_fixed(debug_cfg, tmp_path):
    from faice.train.state import build_task_model

    torch.manual_seed(5)
    source = build_task_model(debug_cfg())
    source.save_pretrained(tmp_path / "unet")
    state = state_of(
        debug_cfg, f"model.pretrained={tmp_path / 'unet'}", "model.freeze=[conv_in, down_blocks.0]"
    )
    loaded = state.model.state_dict()
    assert all(torch.equal(v, loaded[k]) for k, v in source.state_dict().items())
    frozen = {n for n, p in state.model.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith(("conv_in", "down_blocks.0")) for n in frozen)
    assert "conv_in.weight" in frozen and "conv_out.weight" not in frozen


# ------------------------------------------------------------------------------------ forward process


@wires(
    "diffusion.num_train_timesteps", "diffusion.beta_schedule", "diffusion.beta_start", "diffusion.beta_end"
)
def test_the_schedule_fields_set_the_betas_training_and_sampling_use(debug_cfg):
    from faice.diffusion.samplers import build_scheduler

    cfg = debug_cfg("diffusion.num_train_timesteps=50", "diffusion.beta_schedule=linear", "diffusion.beta_start=0.001",
                    "diffusion.beta_end=0.05")  # fmt: skip
    expected = torch.linspace(0.001, 0.05, 50, dtype=torch.float64)
    loss = state_of(debug_cfg, "diffusion.num_train_timesteps=50", "diffusion.beta_start=0.001",
                    "diffusion.beta_end=0.05").loss_fn  # fmt: skip
    torch.testing.assert_close(loss.abar.double(), torch.cumprod(1 - expected, 0), rtol=1e-5, atol=1e-7)
    sched = build_scheduler(cfg.diffusion, cfg.sample.sampler)
    torch.testing.assert_close(sched.betas.double(), expected, rtol=1e-5, atol=1e-7)
    # cosine (Nichol & Dhariwal 2021): alpha_bar(t) = cos^2(((t / T + s) / (1 + s)) pi / 2), s = 0.008
    cos = debug_cfg("diffusion.beta_schedule=cosine", "diffusion.num_train_timesteps=50")
    abar = state_of(
        debug_cfg, "diffusion.beta_schedule=cosine", "diffusion.num_train_timesteps=50"
    ).loss_fn.abar
    f = lambda t: math.cos((t / 50 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert (
        abar[10].item() == pytest.approx(f(11) / f(0), rel=1e-3) and cos.diffusion.beta_schedule == "cosine"
    )


@wires("diffusion.zero_terminal_snr", "diffusion.prediction_type")
def test_zero_terminal_snr_and_the_prediction_type_reach_loss_and_sampler(debug_cfg):
    from faice.diffusion.samplers import build_scheduler

    over = ("diffusion.zero_terminal_snr=true", "diffusion.prediction_type=v_prediction")
    loss, cfg = state_of(debug_cfg, *over).loss_fn, debug_cfg(*over)
    assert loss.abar[-1].item() == pytest.approx(0, abs=1e-12) and loss.prediction_type == "v_prediction"
    sched = build_scheduler(cfg.diffusion, "ddim")
    assert sched.alphas_cumprod[-1].item() == pytest.approx(0, abs=1e-12)
    assert sched.config.prediction_type == "v_prediction"
    # the zero model's loss is E[target^2]: epsilon's is 1, v's is E[a x0^2 + (1-a) eps^2]-like, x0's is E[x0^2]
    eps, x0 = (
        loss_of(debug_cfg, "diffusion.prediction_type=epsilon"),
        loss_of(debug_cfg, "diffusion.prediction_type=sample"),
    )
    batch = torch.linspace(-1, 1, 4 * 3 * 16 * 16)
    assert eps == pytest.approx(1.0, abs=0.1) and x0 == pytest.approx((batch**2).mean().item(), rel=1e-5)


@wires("diffusion.timestep_spacing")
def test_timestep_spacing_picks_the_samplers_timesteps(debug_cfg):
    from faice.diffusion.samplers import build_scheduler

    steps = {}
    for spacing in ("leading", "trailing", "linspace"):
        cfg = debug_cfg(f"diffusion.timestep_spacing={spacing}", "diffusion.num_train_timesteps=100")
        sched = build_scheduler(cfg.diffusion, "ddim")
        sched.set_timesteps(4)
        steps[spacing] = sched.timesteps.tolist()
    assert steps == {"leading": [75, 50, 25, 0], "trailing": [99, 74, 49, 24], "linspace": [99, 66, 33, 0]}


@wires("diffusion.loss", "diffusion.hybrid_l1_weight", "diffusion.min_snr_gamma")
def test_the_loss_fields_change_the_loss_as_their_formulas_say(debug_cfg):
    over = ("diffusion.prediction_type=sample",)  # target = x0: a zero model's loss is a moment of the batch
    x0 = torch.linspace(-1, 1, 4 * 3 * 16 * 16)
    mse, l1 = (x0**2).mean().item(), x0.abs().mean().item()
    assert loss_of(debug_cfg, *over, "diffusion.loss=mse") == pytest.approx(mse, rel=1e-5)
    assert loss_of(debug_cfg, *over, "diffusion.loss=l1") == pytest.approx(l1, rel=1e-5)
    hybrid = loss_of(debug_cfg, *over, "diffusion.loss=hybrid", "diffusion.hybrid_l1_weight=0.2")
    assert hybrid == pytest.approx(0.8 * mse + 0.2 * l1, rel=1e-5)
    # min-SNR: per-sample weight min(SNR, gamma) / SNR for x0 prediction... its mean differs from 1
    weighted = loss_of(debug_cfg, *over, "diffusion.min_snr_gamma=1.0")
    assert weighted < mse * 0.9


@wires("diffusion.lpips_weight", "diffusion.lpips_path")
def test_the_lpips_term_is_loaded_from_its_path_and_weighted(debug_cfg, lpips_dir, tmp_path):
    from faice.errors import ConfigError

    state = state_of(debug_cfg, "diffusion.lpips_weight=0.5", f"diffusion.lpips_path={lpips_dir}")
    assert state.loss_fn.lpips is not None and state.loss_fn.lpips_weight == 0.5
    base = loss_of(debug_cfg, "diffusion.prediction_type=sample")
    with_lpips = loss_of(debug_cfg, "diffusion.prediction_type=sample", "diffusion.lpips_weight=0.5",
                         f"diffusion.lpips_path={lpips_dir}")  # fmt: skip
    assert with_lpips > base
    with pytest.raises((ConfigError, FileNotFoundError), match=str(tmp_path / "none")):
        state_of(debug_cfg, "diffusion.lpips_weight=0.5", f"diffusion.lpips_path={tmp_path / 'none'}")


# ---------------------------------------------------------------------------- a run and its outputs


@pytest.fixture(scope="module")
def run(debug_data, tmp_path_factory):
    """One debug run with non-default run-level settings (7 steps, an EMA), trained once for the tests
    below: (its config, RunResult)."""
    from faice.tasks import load_checked
    from faice.train.loop import train

    out = tmp_path_factory.mktemp("wiring")
    cfg = load_checked(REPO / "configs" / "debug.yaml", [
        f"data.path={debug_data}", f"train.output_dir={out / 'elsewhere'}", "name=wired", "train.run_name=null",
        "train.max_steps=7", "train.log_every=3", "train.checkpoint_every=2", "train.keep_checkpoints=2",
        "train.ema_decay=0.5", "train.lr=1e-2", "eval.every=4", "eval.grid_images=6"])  # fmt: skip
    return cfg, train(cfg)


@wires("name", "train.run_name", "train.output_dir", "train.max_steps", "train.log_every", "train.checkpoint_every",
       "train.keep_checkpoints", "eval.every", "eval.grid_images")  # fmt: skip
def test_run_level_keys_decide_folder_steps_logs_checkpoints_and_grids(run, debug_cfg):
    import json

    from PIL import Image

    from faice.train.loop import run_dir_for

    cfg, result = run
    assert result.run_dir == Path(cfg.train.output_dir) / "wired" and result.step == 7
    assert run_dir_for(debug_cfg("name=x", "train.run_name=y")).name == "y"
    lines = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in lines if "loss" in row] == [3, 6, 7]
    # checkpoints at 2, 4, 6 and the last step 7; two kept
    assert sorted(p.name for p in (result.run_dir / "checkpoints").iterdir()) == [
        "step-0000006",
        "step-0000007",
    ]
    grids = sorted(p.name for p in (result.run_dir / "samples").glob("step-*.png"))
    assert "step-0000004.png" in grids and "step-0000002.png" not in grids
    with Image.open(result.run_dir / "samples" / "step-0000004.png") as grid:
        side = cfg.data.resolution
        assert grid.size[0] * grid.size[1] >= 6 * side * side  # six tiles (a 3 x 2 or similar grid)


def sample_images(run_cfg, model, *overrides: str, n: int = 4, seed: int = 0):
    """faice.sampling.generate with the run's config plus sample.* overrides (as `faice sample` reads them)."""
    from faice.config import from_tree, to_dict
    from faice.sampling import generate

    cfg = from_tree(to_dict(run_cfg), list(overrides))
    return generate(model, cfg, n, seed, batch_size=n)


@pytest.fixture(scope="module")
def run_model(run):
    from faice.sampling import load_checkpoint_model

    return load_checkpoint_model(run[1].checkpoint)[0]


@wires("sample.sampler", "sample.num_inference_steps", "sample.eta")
def test_sampler_steps_and_eta_decide_the_reverse_process(run, run_model):
    cfg = run[0]
    calls = count_calls(run_model)
    ddim = sample_images(cfg, run_model, "sample.sampler=ddim", "sample.num_inference_steps=7")
    assert len(calls) == 7
    assert torch.equal(
        ddim, sample_images(cfg, run_model, "sample.sampler=ddim", "sample.num_inference_steps=7")
    )
    calls.clear()
    sample_images(cfg, run_model, "sample.sampler=heun", "sample.num_inference_steps=3")
    assert len(calls) == 5  # Heun: two evaluations per step except the last
    ddpm = sample_images(cfg, run_model, "sample.sampler=ddpm", "sample.num_inference_steps=7")
    eta = sample_images(
        cfg, run_model, "sample.sampler=ddim", "sample.num_inference_steps=7", "sample.eta=1.0"
    )
    assert not torch.allclose(ddim, ddpm) and not torch.allclose(ddim, eta)


@wires("sample.clip_sample", "sample.karras_sigmas")
def test_clipping_and_karras_sigmas_change_the_samples(run, run_model):
    cfg = run[0]
    clip = sample_images(cfg, run_model, "sample.clip_sample=true", "sample.num_inference_steps=3")
    free = sample_images(cfg, run_model, "sample.clip_sample=false", "sample.num_inference_steps=3")
    assert not torch.allclose(clip, free)
    plain = sample_images(cfg, run_model, "sample.sampler=dpm-solver++", "sample.num_inference_steps=4")
    karras = sample_images(cfg, run_model, "sample.sampler=dpm-solver++", "sample.num_inference_steps=4",
                           "sample.karras_sigmas=true")  # fmt: skip
    assert not torch.allclose(plain, karras)


@wires("sample.use_ema", "sample.seed", "sample.num_images")
def test_faice_sample_takes_its_weights_seed_and_count_from_the_run(run, tmp_path):
    import numpy as np
    from PIL import Image

    from faice.cli import main
    from faice.config import dump_yaml, from_tree, to_dict
    from faice.sampling import load_checkpoint_model

    ckpt = run[1].checkpoint
    ema, raw = load_checkpoint_model(ckpt)[0], load_checkpoint_model(ckpt, use_ema=False)[0]
    assert not torch.equal(ema.conv_in.weight, raw.conv_in.weight)
    copy = tmp_path / "ckpt"
    import shutil

    shutil.copytree(ckpt, copy)

    def with_config(*overrides):
        (copy / "config.yaml").write_text(dump_yaml(from_tree(to_dict(run[0]), list(overrides))))

    with_config("sample.use_ema=false")
    assert torch.equal(load_checkpoint_model(copy)[0].conv_in.weight, raw.conv_in.weight)
    with_config("sample.num_images=3", "sample.seed=5", "sample.num_inference_steps=2")
    assert main(["sample", str(copy), "--out", str(tmp_path / "a")]) == 0
    with_config("sample.num_images=3", "sample.seed=6", "sample.num_inference_steps=2")
    assert main(["sample", str(copy), "--out", str(tmp_path / "b")]) == 0
    a, b = (sorted(p for p in (tmp_path / d).glob("*.png") if "grid" not in p.name) for d in "ab")
    assert len(a) == len(b) == 3
    assert not np.array_equal(np.asarray(Image.open(a[0])), np.asarray(Image.open(b[0])))


@wires("sample.guidance_scale", "sample.attributes")
def test_guidance_and_attributes_steer_a_conditional_models_samples(debug_cfg):
    from faice.conditioning import decode
    from faice.sampling import generate
    from faice.tasks.diffusion import condition_labels
    from faice.train.state import build_task_model

    cfg = debug_cfg(
        "model.conditioning=[Male, Smiling]", "sample.attributes=[Male=1]", "sample.num_inference_steps=2"
    )
    labels = decode(condition_labels(cfg, 64, seed=0), 2)
    assert (
        labels[:, 0].eq(1).all() and 0 < labels[:, 1].float().mean() < 1
    )  # Male fixed, Smiling as in the data
    torch.manual_seed(0)
    model = build_task_model(cfg)
    torch.nn.init.normal_(model.class_embedding.weight, std=1.0)  # untrained embeddings would all be ~0
    over = ("model.conditioning=[Male, Smiling]", "sample.num_inference_steps=2")
    g1, g1_again, g3 = (
        generate(model, debug_cfg(*over, f"sample.guidance_scale={g}"), 2, 0) for g in (1, 1, 3)
    )
    assert torch.equal(g1, g1_again) and not torch.allclose(g1, g3)


# --------------------------------------------------------------------------------------------- data


@wires("data.path", "data.source", "data.synthetic_count", "data.synthetic_seed")
def test_a_synthetic_dataset_is_written_where_and_as_the_config_says(debug_cfg, tmp_path):
    import numpy as np

    from faice.data.ensure import ensure_dataset
    from faice.data.shards import read_manifest
    from faice.errors import ConfigError
    from faice.metrics.reference import real_images

    made = {}
    for seed in (3, 4):
        cfg = debug_cfg(
            f"data.path={tmp_path / str(seed)}", "data.synthetic_count=40", f"data.synthetic_seed={seed}"
        )
        assert ensure_dataset(cfg.data) == tmp_path / str(seed)
        manifest = read_manifest(tmp_path / str(seed))
        assert sum(s["count"] for s in manifest["splits"].values()) == 40
        made[seed] = real_images(cfg.data.path, "train", 16, 8)
    assert not np.array_equal(made[3], made[4])
    with pytest.raises(ConfigError, match="data.path: no prepared dataset"):
        ensure_dataset(debug_cfg(f"data.path={tmp_path / 'none'}", "data.source=shards").data)


@wires("data.resolution", "data.split")
def test_the_loader_reads_the_split_at_the_resolution(debug_cfg):
    state = state_of(debug_cfg, "data.resolution=8", "data.split=test", "train.batch_size=4")
    assert state.loader.split == "test" and first_batch(state).shape == (4, 3, 8, 8)
    train = state_of(debug_cfg, "data.resolution=8", "train.batch_size=4")
    assert not torch.equal(first_batch(state), first_batch(train))


@wires("data.hflip")
def test_hflip_mirrors_about_half_the_images(debug_cfg):
    plain = first_batch(state_of(debug_cfg, "data.hflip=false", "train.batch_size=32"))
    flipped = first_batch(state_of(debug_cfg, "data.hflip=true", "train.batch_size=32"))
    mirrored = [
        torch.equal(f, p.flip(-1)) and not torch.equal(f, p) for f, p in zip(flipped, plain, strict=True)
    ]
    same = [torch.equal(f, p) for f, p in zip(flipped, plain, strict=True)]
    assert all(m or s for m, s in zip(mirrored, same, strict=True)) and 0.2 < sum(mirrored) / 32 < 0.8


@wires("data.crop", "data.crop_scale", "data.blur_sigma", "data.blur_kernel", "data.blur_prob")
def test_crop_and_blur_change_the_training_images(debug_cfg):
    def batch(*over):
        return first_batch(state_of(debug_cfg, "data.hflip=false", "train.batch_size=16", *over))

    def roughness(x):  # mean absolute difference of neighbouring pixels: blur lowers it
        return (x[..., 1:] - x[..., :-1]).abs().mean().item()

    plain = batch()
    center = batch("data.crop=center", "data.crop_scale=0.5")
    center_wide = batch("data.crop=center", "data.crop_scale=0.75")
    assert not torch.allclose(plain, center) and not torch.allclose(center, center_wide)
    assert roughness(center) < roughness(plain)  # a 2x zoom: neighbouring pixels are closer
    blurred = batch("data.blur_sigma=1.5", "data.blur_prob=1.0")
    assert roughness(blurred) < 0.8 * roughness(plain)
    none_blurred = batch("data.blur_sigma=1.5", "data.blur_prob=0.0")
    assert torch.equal(none_blurred, plain)
    small_kernel = batch("data.blur_sigma=1.5", "data.blur_prob=1.0", "data.blur_kernel=3")
    assert not torch.allclose(small_kernel, blurred)


@wires("data.num_workers")
def test_num_workers_starts_loader_processes_that_split_the_epoch(debug_cfg):
    import multiprocessing

    def epoch(state):
        batches = state.loader.iter_epoch(0)
        ids = list(next(batches)["id"])
        workers = len(multiprocessing.active_children())  # the loader's worker processes, while it runs
        for batch in batches:
            ids += list(batch["id"])
        return sorted(ids), workers

    before = len(multiprocessing.active_children())
    (pooled, workers), (single, none) = (epoch(state_of(debug_cfg, f"data.num_workers={n}", "train.batch_size=4"))
                                         for n in (2, 0))  # fmt: skip
    assert workers - before == 2 and none == before
    assert len(set(pooled)) == len(pooled) > 0.8 * len(single)  # two readers split the rows, none twice


@wires("task")
def test_task_picks_what_is_built_and_trained(debug_cfg):
    state = state_of(debug_cfg, "task=autoencoder", "autoencoder.name=kl-debug", "train.ema_decay=0")
    assert type(state.model).__name__ == "AutoencoderKL" and type(state.loss_fn).__name__ == "AutoencoderLoss"
    assert type(state_of(debug_cfg).model).__name__ == "UNet2DModel"


# ------------------------------------------------------------------------------------------- evaluation


def evaluate(debug_cfg, *overrides: str, model=None):
    from faice.evaluate import evaluate_model
    from faice.train.state import build_task_model

    cfg = debug_cfg("eval.num_samples=8", "eval.num_inference_steps=2", "eval.kid_subset_size=4", *overrides)
    torch.manual_seed(0)
    model = model or build_task_model(cfg)
    return evaluate_model(model, cfg), model


@wires("eval.sampler", "eval.batch_size", "eval.seed")
def test_the_evaluation_samples_with_its_sampler_batch_and_seed(debug_cfg):
    from faice.train.state import build_task_model

    torch.manual_seed(0)
    model = build_task_model(debug_cfg())
    sizes = []
    hook = model.register_forward_hook(lambda m, i, o: sizes.append(len(i[0])))
    a, _ = evaluate(debug_cfg, "eval.sampler=heun", "eval.batch_size=3", model=model)
    hook.remove()
    assert a.info["sampler"] == "heun" and a.info["sampler_steps"] == 2
    assert sizes == [3] * 3 + [3] * 3 + [2] * 3  # three batches (3, 3, 2) of Heun-2: 3 evaluations each
    b, _ = evaluate(debug_cfg, "eval.sampler=heun", "eval.batch_size=3", model=model)
    c, _ = evaluate(debug_cfg, "eval.sampler=heun", "eval.batch_size=3", "eval.seed=99", model=model)
    assert (a.images == b.images).all() and not (a.images == c.images).all()


@wires("eval.fid_bootstrap", "eval.is_splits", "eval.kid_subsets", "eval.kid_subset_size")
def test_the_metric_settings_reach_fid_is_and_kid(debug_cfg):
    import numpy as np

    from faice.metrics.stats import inception_score, kernel_inception_distance

    base, model = evaluate(debug_cfg, "eval.fid_bootstrap=0")
    assert "fid_std[faice-tiny]" not in base.metrics
    boot, _ = evaluate(debug_cfg, "eval.fid_bootstrap=5", model=model)
    assert boot.metrics["fid_std[faice-tiny]"] > 0
    splits, _ = evaluate(
        debug_cfg, "eval.is_splits=4", "eval.kid_subsets=7", "eval.kid_subset_size=3", model=model
    )
    from faice.metrics.features import build_extractor

    _, logits = build_extractor("faice-tiny").features(splits.images)
    if logits is not None:
        assert splits.metrics["is[faice-tiny]"] == pytest.approx(inception_score(logits, 4)[0])
    kid = kernel_inception_distance(splits.real, splits.fake, 7, 3, seed=1234)
    assert (splits.metrics["kid[faice-tiny]"], splits.metrics["kid_std[faice-tiny]"]) == pytest.approx(kid)
    other = kernel_inception_distance(splits.real, splits.fake, 100, 4, seed=1234)
    assert not np.isclose(kid[1], other[1])


@wires("eval.reference_split", "eval.reference_images")
def test_the_reference_is_the_configured_split_and_size_and_keyed_by_its_content(debug_cfg):
    from faice.metrics.features import build_extractor
    from faice.scoring import reference_for

    ex = build_extractor("faice-tiny")
    from faice.data.shards import read_manifest

    train = reference_for(debug_cfg("eval.reference_images=4"), ex)
    test = reference_for(debug_cfg("eval.reference_split=test", "eval.reference_images=4"), ex)
    full = reference_for(debug_cfg("eval.reference_split=test"), ex)
    count = read_manifest(debug_cfg().data.path)["splits"]["test"]["count"]
    assert len(train.features) == len(test.features) == 4 and len(full.features) == count > 4
    assert train.path != test.path != full.path and not (train.features == test.features).all()


@wires("eval.inception_path")
def test_the_inception_file_is_taken_from_eval_inception_path(debug_cfg, tmp_path):
    from faice.errors import ConfigError
    from faice.metrics.features import check_available, inception_path

    weights = tmp_path / "my-inception.pt"
    weights.write_bytes(b"not checked here")
    assert inception_path(debug_cfg(f"eval.inception_path={weights}").eval.inception_path) == weights
    with pytest.raises(
        ConfigError, match=f"eval.inception_path: no Inception weights file at {tmp_path / 'none'}"
    ):
        check_available("inception", debug_cfg(f"eval.inception_path={tmp_path / 'none'}").eval)


@wires("eval.where")
def test_eval_where_decides_pool_or_inline_evaluation_of_a_search(debug_cfg):
    from tune.search import _use_pool

    assert _use_pool(debug_cfg("eval.num_samples=8", "eval.where=pool"))
    assert not _use_pool(debug_cfg("eval.num_samples=8", "eval.where=inline"))


@wires("log.progress")
def test_log_progress_draws_the_progress_bar(debug_cfg, capsys):
    from faice.train.loop import train

    for progress in (True, False):
        train(
            debug_cfg(
                "log.progress=" + str(progress).lower(), "train.max_steps=2", f"train.run_name=p{progress}"
            )
        )
        err = capsys.readouterr().err
        assert ("2/2" in err) is progress, err

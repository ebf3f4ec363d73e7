"""faice's training step against the loop a researcher would otherwise write: the diffusers "train a
diffusion model" tutorial (UNet2DModel + DDPMScheduler + AdamW + EMAModel + accelerate over an image
folder), which this file contains.

Both train the same UNet (faice's `configs/demo.yaml` model: unet-tiny, ~1.1 M parameters, 32 px), batch
32, v-prediction, cosine betas, AdamW at the demo's lr with warm-up and cosine decay, EMA 0.995, on the
same prepared synthetic faces (the plain loop reads them as PNG files through a Dataset + DataLoader, as
the tutorial's image folder), with the same thread count. Each measurement is a fresh process (no
warm caches shared between the sides); steps/s is timed over the steps after a warm-up. The sides
alternate, in alternating order, `--repeats` times.

Variants:
- `faice`: `faice.train.loop.train` as `faice train` runs it (metrics every 10 steps, W&B offline,
  progress bar, grad clipping at 1);
- `plain`: the tutorial loop (progress bar with the loss every step, grad clipping at 1);
- `faice-bare` / `plain-bare`: the same without grad clipping, logging or progress bar;
- `faice-compile`: `faice` with `train.compile=default` (torch.compile on CPU, where a C++ compiler is).

`--profile` also writes the top costs of a faice step (torch.profiler, self CPU time) to the markdown.
ratio = faice median / plain median steps/s; target >= 1.0.

Run: `python benchmarks/peer_loop.py` (15-20 minutes on 2 cores). Writes benchmarks/results/peer_loop.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_result  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
BATCH, RESOLUTION, IMAGES = 32, 32, 1024
VARIANTS = ("faice", "plain", "faice-bare", "plain-bare")


def demo_config(work: Path, steps: int, *extra: str):
    from faice.config import load_config

    return load_config(
        REPO / "configs" / "demo.yaml",
        [
            f"data.path={work / 'data'}", f"data.synthetic_count={IMAGES}", "data.num_workers=0",
            f"train.output_dir={work / 'runs'}", f"train.max_steps={steps}", f"train.batch_size={BATCH}",
            "train.checkpoint_every=0", "eval.every=0", "eval.num_samples=0",
            "eval.grid_images=4", *extra,  # the final grid is not timed: a small one
        ],
    )  # fmt: skip


def prepare(work: Path) -> Path:
    """The demo's synthetic faces as shards (faice) and the same images as PNG files (the plain loop)."""
    import numpy as np
    from PIL import Image

    from faice.data.ensure import ensure_dataset
    from faice.data.loader import ShardLoader

    cfg = demo_config(work, 1)
    ensure_dataset(cfg.data)
    png = work / "png"
    png.mkdir(exist_ok=True)
    loader = ShardLoader(cfg.data.path, batch_size=64, resolution=RESOLUTION, hflip=False, shuffle=False)
    i = 0
    for batch in loader.iter_epoch(0):
        for image in batch["image"]:
            pixels = ((image.permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(png / f"{i:05d}.png")
            i += 1
    return png


# ------------------------------------------------------------------ one side, in its own process


def run_faice(work: Path, steps: int, warmup: int, variant: str, profile: bool) -> dict:
    from faice.train.loop import Hooks, train

    extra = {
        "faice": ["log.wandb=offline", "log.progress=true"],
        "faice-bare": ["log.wandb=disabled", "log.progress=false", "train.grad_clip=0", f"train.log_every={steps}"],
        "faice-compile": ["log.wandb=offline", "log.progress=true", "train.compile=default"],
    }[variant]  # fmt: skip
    cfg = demo_config(work, steps, f"train.run_name={variant}-{os.getpid()}", *extra)
    times: list[float] = []
    prof = _profiler() if profile else None

    def on_step(state) -> None:
        times.append(time.perf_counter())
        if prof is not None and len(times) > warmup:
            prof.step()
            if len(times) == steps:  # the training steps only, not the final sample grid
                prof.stop()

    if prof is not None:
        prof.start()
    train(cfg, hooks=Hooks(on_step=on_step))
    rate = (len(times) - 1 - warmup) / (times[-1] - times[warmup])
    return {"steps_per_s": rate, "top": _top(prof, steps - warmup)}


def run_plain(work: Path, steps: int, warmup: int, variant: str, profile: bool) -> dict:
    """The diffusers tutorial's loop (training a UNet2DModel on an image folder), on the same model."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from accelerate import Accelerator
    from diffusers import DDPMScheduler, UNet2DModel
    from diffusers.optimization import get_cosine_schedule_with_warmup
    from diffusers.training_utils import EMAModel
    from PIL import Image
    from tqdm.auto import tqdm

    from faice.models import build_model

    bare = variant == "plain-bare"
    cfg = demo_config(work, steps)
    files = sorted((work / "png").glob("*.png"))

    class ImageFolder(torch.utils.data.Dataset):  # the tutorial's dataset + transforms, without torchvision
        def __len__(self):
            return len(files)

        def __getitem__(self, i):
            with Image.open(files[i]) as img:
                img = img.convert("RGB").resize((RESOLUTION, RESOLUTION), Image.BILINEAR)
                if np.random.rand() < 0.5:  # RandomHorizontalFlip
                    img = img.transpose(Image.FLIP_LEFT_RIGHT)
                x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
            return {"images": x * 2 - 1}  # ToTensor + Normalize([0.5], [0.5])

    loader = torch.utils.data.DataLoader(ImageFolder(), batch_size=BATCH, shuffle=True, drop_last=True)
    torch.manual_seed(0)
    model = UNet2DModel.from_config(build_model(cfg.model, RESOLUTION).config)  # the very same UNet
    scheduler = DDPMScheduler(
        num_train_timesteps=cfg.diffusion.num_train_timesteps,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="v_prediction",
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    lr_scheduler = get_cosine_schedule_with_warmup(optimizer, cfg.train.warmup_steps, steps)
    ema = EMAModel(model.parameters(), decay=cfg.train.ema_decay)
    accelerator = Accelerator(mixed_precision="no")
    model, optimizer, loader, lr_scheduler = accelerator.prepare(model, optimizer, loader, lr_scheduler)
    ema.to(accelerator.device)
    times: list[float] = []
    prof = _profiler() if profile else None
    bar = tqdm(total=steps, disable=bare)
    if prof is not None:
        prof.start()
    while len(times) < steps:
        for batch in loader:
            clean = batch["images"]
            noise = torch.randn(clean.shape, device=clean.device)
            t = torch.randint(0, scheduler.config.num_train_timesteps, (clean.shape[0],), device=clean.device)
            noisy = scheduler.add_noise(clean, noise, t)
            with accelerator.accumulate(model):
                pred = model(noisy, t, return_dict=False)[0]
                loss = F.mse_loss(pred, scheduler.get_velocity(clean, noise, t))
                accelerator.backward(loss)
                if accelerator.sync_gradients and not bare:
                    accelerator.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            ema.step(model.parameters())
            if not bare:
                bar.update(1)
                bar.set_postfix(loss=loss.detach().item(), lr=lr_scheduler.get_last_lr()[0])
            times.append(time.perf_counter())
            if prof is not None and len(times) > warmup:
                prof.step()
            if len(times) == steps:
                break
    bar.close()
    if prof is not None:
        prof.stop()
    rate = (len(times) - 1 - warmup) / (times[-1] - times[warmup])
    return {"steps_per_s": rate, "top": _top(prof, steps - warmup)}


def _profiler():
    from torch.profiler import ProfilerActivity, profile

    return profile(activities=[ProfilerActivity.CPU])


def _top(prof, steps: int, n: int = 12) -> list[list]:
    """[name, self CPU ms per step, share] of the ops with the most self CPU time over `steps` steps."""
    if prof is None:
        return []
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:n]
    return [
        [e.key, round(e.self_cpu_time_total / 1000 / steps, 2), round(e.self_cpu_time_total / total, 3)]
        for e in top
    ]


def one(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    runner = run_plain if args.one.startswith("plain") else run_faice
    result = runner(Path(args.work), args.steps, args.warmup, args.one, args.profile)
    print("RESULT " + json.dumps(result), flush=True)


# ------------------------------------------------------------------ the interleaved comparison


def measure(work: Path, variant: str, args, profile: bool = False, repo: Path = REPO) -> dict:
    """One measurement in a fresh process, importing faice from `repo` (another checkout: its code)."""
    cmd = [sys.executable, __file__, "--one", variant, "--work", str(work), "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--threads", str(args.threads)] + (["--profile"] if profile else [])  # fmt: skip
    env = {**os.environ, "WANDB_SILENT": "true", "WANDB_MODE": "offline", "PYTHONPATH": str(repo)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work, timeout=1800)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if out.returncode != 0 or line is None:
        return {"error": (out.stderr or out.stdout)[-1500:]}
    return json.loads(line.removeprefix("RESULT "))


def iqr(values: list[float]) -> list[float]:
    """[25th, 75th] percentile (inclusive method; needs two or more values)."""
    q = statistics.quantiles(values, n=4, method="inclusive")
    return [round(q[0], 3), round(q[2], 3)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repeats", type=int, default=5, help="Measurements per variant (>= 5 for the record)."
    )
    parser.add_argument("--steps", type=int, default=50, help="Training steps per measurement.")
    parser.add_argument("--warmup", type=int, default=10, help="Steps not timed at the start.")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of both sides.")
    parser.add_argument(
        "--compile-repeats", type=int, default=2, help="Measurements of faice-compile (0 = skip)."
    )
    parser.add_argument(
        "--label", default="after", help="Name of this run in the markdown (e.g. before/after)."
    )
    parser.add_argument(
        "--before-repo", type=Path, help="A checkout of faice before a change: its step is profiled too."
    )
    parser.add_argument("--one", choices=(*VARIANTS, "faice-compile"), help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return one(args)

    work = Path(tempfile.mkdtemp(prefix="faice-peer-"))
    prepare(work)
    runs: dict[str, list[float]] = {v: [] for v in VARIANTS}
    errors: dict[str, str] = {}
    t0 = time.perf_counter()
    for r in range(args.repeats):
        order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]  # alternate the order: drift hits both sides
        for variant in order:
            m = measure(work, variant, args)
            if "error" in m:
                errors[variant] = m["error"]
                continue
            runs[variant].append(round(m["steps_per_s"], 3))
            print(f"round {r + 1}: {variant:11s} {m['steps_per_s']:.3f} steps/s", flush=True)
    compiled = []
    for _ in range(args.compile_repeats):
        m = measure(work, "faice-compile", args)
        if "error" in m:
            errors["faice-compile"] = m["error"]
            break
        compiled.append(round(m["steps_per_s"], 3))
        print(f"faice-compile {m['steps_per_s']:.3f} steps/s", flush=True)
    profiles = {v: measure(work, v, args, profile=True).get("top", []) for v in ("faice-bare", "plain-bare")}
    if args.before_repo:
        commit = subprocess.run(["git", "-C", str(args.before_repo), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()  # fmt: skip
        before = measure(work, "faice-bare", args, profile=True, repo=args.before_repo.resolve())
        profiles[f"faice-bare before ({commit})"] = before.get("top", [])
    med = {v: round(statistics.median(x), 3) for v, x in runs.items() if x}
    ratio = round(med["faice"] / med["plain"], 3)
    result = {
        "ratio": ratio,
        "target": ">= 1.0",
        "details": {
            "label": args.label,
            "machine": machine(),
            "threads": args.threads,
            "steps": args.steps,
            "warmup": args.warmup,
            "batch": BATCH,
            "resolution": RESOLUTION,
            "steps_per_s": runs,
            "median": med,
            "iqr": {v: iqr(x) for v, x in runs.items() if len(x) >= 2},
            "ratio_bare": round(med["faice-bare"] / med["plain-bare"], 3),
            "faice_compile_steps_per_s": compiled,
            "errors": errors,
            "profile_top": profiles,
            "wall_s": round(time.perf_counter() - t0, 1),
        },
    }
    md = [
        "# faice's training step vs the plain diffusers-tutorial loop",
        "",
        f"{machine()}; {args.threads} threads; demo UNet (unet-tiny), batch {BATCH}, {RESOLUTION} px, "
        f"v-prediction, EMA 0.995; {args.steps} steps per measurement, the first {args.warmup} untimed; "
        f"{args.repeats} interleaved measurements per variant, each in a fresh process (`{args.label}`).",
        "",
        f"**ratio = faice median / plain median = {ratio}** (target >= 1.0); with the extras off "
        f"(no grad clipping, logging or progress bar on either side): {result['details']['ratio_bare']}.",
        "",
        "| variant | median steps/s | IQR | runs |",
        "|---|---|---|---|",
        *(
            f"| {v} | {med.get(v, '-')} | {result['details']['iqr'].get(v, '-')} | {runs[v]} |"
            for v in VARIANTS
        ),
        "",
        f"`train.compile=default` (torch.compile, CPU inductor): {compiled or 'not measured'}"
        + (f" (error: {errors['faice-compile'][-300:]})" if "faice-compile" in errors else ""),
        "",
    ]
    for side, top in profiles.items():
        md += [f"Top self-CPU costs of a `{side}` step (torch.profiler, ms per step, share):", "",
               "| op | ms/step | share |", "|---|---|---|", *(f"| {n} | {ms} | {s:.1%} |" for n, ms, s in top), ""]  # fmt: skip
    if errors:
        md += ["Errors:", "", *(f"- {k}: {v[-300:]}" for k, v in errors.items()), ""]
    write_result("peer_loop", result, md)


if __name__ == "__main__":
    main()

"""Latent diffusion training speed: reading cached latents vs encoding every batch on the fly.

Same latent UNet, same autoencoder (kl-3block: 64 px faces -> 4 x 16 x 16 latents), same batch size and
optimizer; one run measures both, plus the one-off cost of encoding the dataset into the cache.

    .venv/bin/python -m benchmarks.latent_cache            # writes benchmarks/results/latent_cache.json

ratio = cached steps/s / on-the-fly steps/s (target >= 3 on CPU at 64 px).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import machine, write_result
from faice.config import load_config
from faice.data.latents import LatentLoader, ensure_latents, latent_scale
from faice.data.loader import ShardLoader
from faice.data.prepare import write_synthetic
from faice.diffusion.loss import DiffusionLoss
from faice.models.autoencoder import build_autoencoder, encode
from faice.train.state import build_task_model


def _steps_per_s(model, loss_fn, batches, steps: int, warmup: int = 2) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    for i in range(warmup + steps):
        if i == warmup:
            t0 = time.perf_counter()
        z = next(batches)
        loss = loss_fn(model, z, gen)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return steps / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_synthetic(tmp / "data", args.images, 64, seed=0)
        # an autoencoder checkpoint folder as a trained one would be saved (weights + scale factor)
        ae_cfg = load_config(None, [f"data.path={tmp / 'data'}", "data.resolution=64", "task=autoencoder",
                                    "autoencoder.name=kl-3block"])  # fmt: skip
        ae = build_autoencoder(ae_cfg.autoencoder, 64).eval().requires_grad_(False)
        ae.save_pretrained(tmp / "ae")
        cfg = load_config(None, [
            f"data.path={tmp / 'data'}", "data.resolution=64", f"latent.autoencoder={tmp / 'ae'}",
            "model.name=unet-ldm-4", "model.base_channels=32", f"train.batch_size={args.batch_size}",
        ])  # fmt: skip
        t0 = time.perf_counter()
        cache = ensure_latents(cfg, log=lambda _: None)
        encode_s = time.perf_counter() - t0
        scale = latent_scale(cfg)
        loss_fn = DiffusionLoss(cfg.diffusion)

        def cached():
            loader = LatentLoader(cache, args.batch_size, seed=0)
            epoch = 0
            while True:
                yield from (b["image"] for b in loader.iter_epoch(epoch))
                epoch += 1

        def on_the_fly():
            loader = ShardLoader(cfg.data.path, batch_size=args.batch_size, resolution=64, num_workers=0)
            epoch = 0
            while True:
                for batch in loader.iter_epoch(epoch):
                    yield encode(ae, batch["image"])[0] * scale
                epoch += 1

        torch.manual_seed(0)
        model = build_task_model(cfg)
        fly = _steps_per_s(model, loss_fn, on_the_fly(), args.steps)
        torch.manual_seed(0)
        model = build_task_model(cfg)
        fast = _steps_per_s(model, loss_fn, cached(), args.steps)
    ratio = fast / fly
    result = {
        "name": "latent_cache",
        "ratio": round(ratio, 2),
        "target": ">= 3 (cached / on-the-fly steps/s, CPU, 64 px)",
        "details": {
            "cached_steps_per_s": round(fast, 3),
            "on_the_fly_steps_per_s": round(fly, 3),
            "encode_dataset_s": round(encode_s, 2),
            "images_encoded": args.images * 2,
            "encode_ms_per_image": round(1000 * encode_s / (args.images * 2), 2),
            "autoencoder": "kl-3block (64 px -> 4 x 16 x 16)",
            "model": "unet-ldm-4, base_channels 32",
            "batch_size": args.batch_size,
            "steps": args.steps,
            "machine": machine(),
            "torch_threads": torch.get_num_threads(),
        },
    }
    d = result["details"]
    write_result("latent_cache", result, [
        "# Latent cache: training steps/s with cached latents vs encoding on the fly", "",
        f"Machine: {d['machine']}. Autoencoder {d['autoencoder']}; model {d['model']}; batch {d['batch_size']}.", "",
        "| input | steps/s |", "|---|---|",
        f"| cached latents | {d['cached_steps_per_s']} |",
        f"| encode each batch | {d['on_the_fly_steps_per_s']} |", "",
        f"**ratio {result['ratio']}** (target >= 3). One-off encoding of {d['images_encoded']} images (with "
        f"mirror images): {d['encode_dataset_s']} s ({d['encode_ms_per_image']} ms/image).", "",
    ])  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

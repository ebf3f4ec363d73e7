"""Attribute conditioning: do class-conditional samples show the attribute asked for?

On synthetic faces (whose attributes are known), a small CNN classifier is trained on real images of
the training split and checked on the test split. A class-conditional unet-tiny (32 px, conditioned on
one binary attribute, label dropout 0.1) is trained, and its samples are scored by the classifier:
unconditional (guidance 0: the null class, which should follow the data rate), and conditional on
attribute = 1 and = 0 at guidance 1 and 3.

    .venv/bin/python benchmarks/conditioning.py [--attribute Blond_Hair --train-steps 600 --samples 64]

Writes benchmarks/results/conditioning.{json,md}.
ratio = attribute accuracy of conditional samples at guidance 3 (mean over asking 1 and asking 0),
target >= 0.8.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import machine, write_result  # noqa: E402

TARGET = 0.8


def train_classifier(data: Path, attribute: str, steps: int = 400):
    """A small CNN (real synthetic images -> attribute), with its test-split accuracy."""
    import numpy as np
    import torch
    from torch import nn

    from faice.data.shards import read_attributes, read_images

    def load(split):
        x = torch.from_numpy(read_images(data, split)).permute(0, 3, 1, 2).float() / 127.5 - 1
        y = torch.from_numpy((read_attributes(data, split, [attribute])[:, 0] == 1).astype(np.int64))
        return x, y

    (x, y), (xt, yt) = load("train"), load("test")
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 2),
    )  # fmt: skip
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        i = torch.randint(0, len(x), (64,), generator=g)
        loss = nn.functional.cross_entropy(net(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        acc = (net(xt).argmax(1) == yt).float().mean().item()
    return net, acc, y.float().mean().item()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--attribute", default="Blond_Hair")
    p.add_argument("--train-steps", type=int, default=600)
    p.add_argument("--samples", type=int, default=64, help="samples per setting")
    p.add_argument("--sampler-steps", type=int, default=25)
    args = p.parse_args()

    import torch

    from faice.config import load_config
    from faice.data.ensure import ensure_dataset
    from faice.sampling import generate, load_checkpoint_model
    from faice.train.loop import train

    work = Path(tempfile.mkdtemp(prefix="faice-conditioning-"))
    cfg = load_config(
        REPO / "configs" / "demo.yaml",
        [
            f"data.path={work / 'data'}", "data.synthetic_count=2048", "data.num_workers=0",
            f"model.conditioning=[{args.attribute}]", "train.label_dropout=0.1",
            f"train.output_dir={work / 'runs'}", f"train.max_steps={args.train_steps}", "train.batch_size=32",
            "train.checkpoint_every=0", "eval.every=0", "eval.num_samples=0", "eval.grid_images=4",
            "sample.num_inference_steps=10", "log.wandb=disabled", "log.progress=false",
        ],
    )  # fmt: skip
    ensure_dataset(cfg.data)
    t0 = time.perf_counter()
    classifier, classifier_acc, data_rate = train_classifier(Path(cfg.data.path), args.attribute)
    classifier_s = time.perf_counter() - t0
    print(f"classifier: test accuracy {classifier_acc:.3f}, data rate {data_rate:.3f}", flush=True)
    t0 = time.perf_counter()
    result = train(cfg, run_dir=work / "runs" / "model")
    train_s = time.perf_counter() - t0
    model, cfg, _ = load_checkpoint_model(result.checkpoint, use_ema=True)

    def rate(guidance: float, value: int | None) -> float:
        """Share of samples the classifier calls positive."""
        attrs = [] if value is None else [f"{args.attribute}={value}"]
        labels = None
        if value is None:  # unconditional: the null class
            labels = torch.full((args.samples,), 2, dtype=torch.long)
        images = generate(model, cfg, args.samples, seed=7, labels=labels, attributes=attrs,
                          guidance_scale=guidance, num_inference_steps=args.sampler_steps)  # fmt: skip
        with torch.no_grad():
            return classifier(images).argmax(1).float().mean().item()

    rows = {"unconditional (guidance 0)": rate(1.0, None)}
    for g in (1.0, 3.0):
        rows[f"{args.attribute}=1, guidance {g:g}"] = rate(g, 1)
        rows[f"{args.attribute}=0, guidance {g:g}"] = rate(g, 0)
    acc = {g: (rows[f"{args.attribute}=1, guidance {g:g}"] + 1 - rows[f"{args.attribute}=0, guidance {g:g}"]) / 2
           for g in (1.0, 3.0)}  # fmt: skip
    ratio = acc[3.0]
    out = {
        "name": "conditioning",
        "ratio": round(ratio, 4),
        "target": TARGET,
        "details": {
            "attribute": args.attribute,
            "data_rate": round(data_rate, 4),
            "classifier_test_accuracy": round(classifier_acc, 4),
            "positive_rate": {k: round(v, 4) for k, v in rows.items()},
            "attribute_accuracy": {f"guidance {g:g}": round(v, 4) for g, v in acc.items()},
            "model": f"unet-tiny 32 px conditioned on {args.attribute}, {args.train_steps} steps at batch 32, "
            f"label dropout 0.1, EMA ({train_s:.0f} s)",
            "samples_per_setting": args.samples,
            "sampler": f"ddim-{args.sampler_steps}",
            "classifier_s": round(classifier_s, 1),
            "machine": machine(),
        },
    }
    md = [
        "# Attribute conditioning",
        "",
        f"unet-tiny on 32 px synthetic faces conditioned on `{args.attribute}` ({args.train_steps} steps); a CNN "
        f"trained on real images (test accuracy {classifier_acc:.3f}) scores {args.samples} samples per row. "
        f"Data rate of the attribute: {data_rate:.3f}.",
        "",
        f"| samples | classified {args.attribute} |",
        "|---|---|",
        *(f"| {k} | {v:.3f} |" for k, v in rows.items()),
        "",
        f"- attribute accuracy (mean over asking 1 and 0): guidance 1 {acc[1.0]:.3f}, guidance 3 {acc[3.0]:.3f}",
        f"- **ratio** = accuracy at guidance 3 = **{ratio:.3f}** (target >= {TARGET})",
        "",
    ]
    write_result("conditioning", out, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())

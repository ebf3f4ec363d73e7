"""Latent diffusion end to end at debug size: autoencoders train and reconstruct, the scale factor gives
unit-variance latents, the latent cache is reused and rebuilt when it must be, latent targets follow the
formulas, and autoencoder -> cache -> latent DiT -> decoded samples -> diffusers export all run."""

import json

import numpy as np
import pytest
import torch

from faice.config import ConfigError
from faice.data.latents import LatentLoader, cache_dir_for, read_cache
from faice.models.presets import AUTOENCODER_PRESETS
from faice.train.loop import Hooks, train


def _ae(debug_cfg, tmp_path, name="kl-debug", *extra):
    cfg = debug_cfg("task=autoencoder", f"autoencoder.name={name}", "train.max_steps=3", *extra)
    return train(cfg, run_dir=tmp_path / name)


@pytest.fixture(scope="module")
def kl_run(tmp_path_factory, debug_data):
    from faice.config import load_config

    out = tmp_path_factory.mktemp("ae")
    cfg = load_config(
        "debug.yaml",
        [f"data.path={debug_data}", "task=autoencoder", "autoencoder.name=kl-debug", "train.max_steps=6",
         "autoencoder.scale_images=32", f"train.output_dir={out}"],
    )  # fmt: skip
    return train(cfg, run_dir=out / "kl")


@pytest.mark.parametrize("name", sorted(AUTOENCODER_PRESETS))
@pytest.mark.wires("autoencoder.name")
def test_every_autoencoder_preset_trains_and_reconstructs(debug_cfg, tmp_path, name):
    from faice.models.autoencoder import build_autoencoder, reconstruct
    from faice.sampling import load_checkpoint_model

    preset = AUTOENCODER_PRESETS[name]
    small = [] if name.endswith("debug") else ["autoencoder.base_channels=8"]  # debug size, same layout
    result = _ae(debug_cfg, tmp_path, name, *small)
    model, cfg, _ = load_checkpoint_model(result.checkpoint, use_ema=False)
    assert type(model).__name__ == {"kl": "AutoencoderKL", "vq": "VQModel"}[preset["kind"]]
    assert model.config.latent_channels == preset["latent_channels"]
    assert len(model.config.block_out_channels) == len(preset["channel_mult"])
    torch.manual_seed(0)
    fresh = build_autoencoder(cfg.autoencoder, 16)
    assert any(
        not torch.equal(a, b)
        for a, b in zip(fresh.state_dict().values(), model.state_dict().values(), strict=True)
    )
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    rec = reconstruct(model, x)
    assert rec.shape == x.shape and torch.isfinite(rec).all()
    assert json.loads((result.checkpoint / "latent.json").read_text())["scale_factor"] > 0
    if preset["kind"] == "vq":
        assert model.config.num_vq_embeddings == preset["num_vq_embeddings"]


@pytest.mark.wires("autoencoder.kl_weight", "autoencoder.commitment_weight")
def test_regularisation_weights_change_the_loss_and_nothing_else(debug_cfg):
    from faice.models.autoencoder import AutoencoderLoss, build_autoencoder

    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    for name, key in (("kl-debug", "kl_weight"), ("vq-debug", "commitment_weight")):
        parts = {}
        for weight in (0.0, 0.5):
            cfg = debug_cfg("task=autoencoder", f"autoencoder.name={name}", f"autoencoder.{key}={weight}")
            torch.manual_seed(0)
            model = build_autoencoder(cfg.autoencoder, 16)
            parts[weight] = (
                AutoencoderLoss(cfg.autoencoder)(model, x, torch.Generator().manual_seed(1)),
                (AutoencoderLoss(cfg.autoencoder).parts(model, x, torch.Generator().manual_seed(1))),
            )
        (loss0, p0), (loss1, p1) = parts[0.0], parts[0.5]
        assert loss1 > loss0, name
        torch.testing.assert_close(p0["recon"], p1["recon"])  # the same reconstruction either way


@pytest.mark.wires("autoencoder.scale_images")
def test_scale_factor_gives_unit_variance_latents(kl_run):
    """Measured on 32 training images, applied to all of them (and their mirror images)."""
    info = json.loads((kl_run.checkpoint / "latent.json").read_text())
    assert info["images"] == 32
    cfg = _latent_cfg(kl_run)
    loader = LatentLoader(cache_dir_for(cfg), batch_size=8)
    latents = torch.cat([b["image"] for b in loader.iter_epoch(0)])
    assert loader.scale == pytest.approx(info["scale_factor"])
    assert abs(float(latents.std()) - 1) < 0.1, float(latents.std())


def _latent_cfg(ae_run, *extra):
    from faice.config import load_config
    from faice.data.latents import ensure_latents
    from faice.evaluate import checkpoint_config

    ae_cfg, _ = checkpoint_config(ae_run.checkpoint)
    cfg = load_config(
        "debug.yaml",
        [f"data.path={ae_cfg.data.path}", f"latent.autoencoder={ae_run.run_dir}",
         f"train.output_dir={ae_run.run_dir.parent}", *extra],
    )  # fmt: skip
    ensure_latents(cfg)
    return cfg


def test_latent_cache_is_reused_and_rebuilt_when_the_autoencoder_changes(kl_run, debug_cfg, tmp_path, capsys):
    from faice.cli import main

    cfg = _latent_cfg(kl_run)
    cache = cache_dir_for(cfg)
    stamp = (cache / "manifest.json").stat().st_mtime_ns
    assert main(["data", "encode", "--autoencoder", str(kl_run.run_dir), "--dataset", cfg.data.path]) == 0
    assert "latent cache reused" in capsys.readouterr().out
    assert (cache / "manifest.json").stat().st_mtime_ns == stamp
    info, arrays = read_cache(cache)
    assert info["count"] == len(arrays["mean"]) and {"mean", "std", "mean_flip", "std_flip"} <= set(arrays)
    other = _ae(debug_cfg, tmp_path, "kl-debug", "train.seed=5")  # another autoencoder
    assert main(["data", "encode", "--autoencoder", str(other.run_dir), "--dataset", cfg.data.path]) == 0
    assert "latent cache written" in capsys.readouterr().out
    cfg2 = _latent_cfg(other)
    assert cache_dir_for(cfg2) != cache and (cache / "manifest.json").stat().st_mtime_ns == stamp
    flipless = _latent_cfg(kl_run, "data.hflip=false")
    assert cache_dir_for(flipless) != cache  # what the latents depend on is in the key


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.wires("latent.autoencoder")
def test_latent_runs_train_on_cached_latents_with_the_closed_form_target(kl_run, prediction_type):
    from faice.diffusion import param
    from faice.diffusion.loss import DiffusionLoss, denoise
    from faice.models import build_model

    cfg = _latent_cfg(kl_run, f"diffusion.prediction_type={prediction_type}", "train.max_steps=2",
                      "model.name=dit-debug", "model.patch_size=2", f"train.run_name=ldm-{prediction_type}")  # fmt: skip
    seen = []
    train(cfg, hooks=Hooks(on_batch=lambda b: seen.append(b)))
    info, arrays = read_cache(cache_dir_for(cfg))
    batch = seen[0]
    assert batch["image"].shape[1:] == (4, 8, 8)  # latents, not 16 px images
    idx = batch["index"].numpy()
    plain, mirrored = (
        arrays["mean"][idx] * info["scale_factor"],
        arrays["mean_flip"][idx] * info["scale_factor"],
    )
    got = batch["image"].numpy()
    assert all(np.allclose(g, p) or np.allclose(g, m) for g, p, m in zip(got, plain, mirrored, strict=True))
    # the loss on latents z0 is the formula on z0: target v = sqrt(abar) eps - sqrt(1 - abar) z0
    z0 = batch["image"]
    torch.manual_seed(0)
    model = build_model(cfg.model, 8, 4)
    loss_fn = DiffusionLoss(cfg.diffusion)
    loss = loss_fn(model, z0, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    t = torch.randint(0, 1000, (len(z0),), generator=g)
    eps = torch.randn(z0.shape, generator=g)
    abar = loss_fn.abar[t].view(-1, 1, 1, 1)
    xt = abar.sqrt() * z0 + (1 - abar).sqrt() * eps
    target = eps if prediction_type == "epsilon" else abar.sqrt() * eps - (1 - abar).sqrt() * z0
    with torch.no_grad():
        want = ((denoise(model, xt, t) - target) ** 2).mean()
    torch.testing.assert_close(loss.detach(), want)
    torch.testing.assert_close(param.target(prediction_type, z0, eps, abar.flatten()), target)


def test_autoencoder_to_latent_dit_to_decoded_samples_and_export(kl_run, tmp_path):
    import diffusers

    from faice.cli import main
    from faice.sampling import generate, load_checkpoint_model

    cfg = _latent_cfg(kl_run, "model.name=dit-debug", "model.patch_size=2", "model.conditioning=[Male]",
                      "sample.guidance_scale=2", "train.max_steps=3", "train.run_name=ldm-e2e")  # fmt: skip
    result = train(cfg)
    source = json.loads((result.run_dir / "latent-source.json").read_text())
    assert source["autoencoder"] == str(kl_run.run_dir) and source["latent_shape"] == [4, 8, 8]
    model, run_cfg, _ = load_checkpoint_model(result.checkpoint)
    labels = torch.tensor([0, 1, 1, 0])
    images = generate(model, run_cfg, 4, seed=5, labels=labels, num_inference_steps=3)
    assert images.shape == (4, 3, 16, 16) and images.abs().max() <= 1
    assert (result.run_dir / "samples" / "final" / "grid.png").exists()
    out = tmp_path / "pipe"
    assert main(["export", str(result.checkpoint), str(out)]) == 0
    pipe = diffusers.DiffusionPipeline.from_pretrained(out, trust_remote_code=True)
    assert type(pipe.vae).__name__ == "AutoencoderKL"
    assert pipe.vae.config.scaling_factor == pytest.approx(
        json.loads((kl_run.checkpoint / "latent.json").read_text())["scale_factor"]
    )
    got = pipe(class_labels=labels, guidance_scale=2.0, num_inference_steps=3, output_type="np",
               generator=torch.Generator().manual_seed(5)).images  # fmt: skip
    np.testing.assert_allclose(got, (images / 2 + 0.5).permute(0, 2, 3, 1).numpy(), atol=1e-5)


def test_autoencoder_evaluation_reports_psnr_ssim_and_rfid(kl_run):
    from faice.evaluate import evaluate_checkpoint

    result, step = evaluate_checkpoint(kl_run.checkpoint, ["eval.num_samples=8", "eval.kid_subset_size=8"])
    assert step == 6 and result.info["kind"] == "reconstruction"
    assert set(result.metrics) == {"psnr[pixels]", "ssim[pixels]", "rfid[faice-tiny]", "rkid[faice-tiny]",
                                   "rkid_std[faice-tiny]", "rfid_std[faice-tiny]"}  # fmt: skip
    assert 0 < result.metrics["psnr[pixels]"] < 100 and -1 <= result.metrics["ssim[pixels]"] <= 1


@pytest.mark.wires("autoencoder.pretrained")
def test_a_pretrained_diffusers_autoencoder_folder_works_both_ways(debug_cfg, debug_data, tmp_path):
    from diffusers import AutoencoderKL

    from faice.models.autoencoder import autoencoder_kwargs
    from faice.sampling import load_checkpoint_model

    cfg = debug_cfg("task=autoencoder", "autoencoder.name=kl-debug")
    torch.manual_seed(3)
    AutoencoderKL(**autoencoder_kwargs(cfg.autoencoder, 16)).save_pretrained(tmp_path / "vae")
    saved = AutoencoderKL.from_pretrained(tmp_path / "vae").state_dict()
    # as the start of autoencoder training (no steps: the weights are the folder's)
    run = train(debug_cfg("task=autoencoder", f"autoencoder.pretrained={tmp_path / 'vae'}", "train.max_steps=1",
                          "train.lr=1e-12", "train.ema_decay=0", "train.run_name=ae-pre"))  # fmt: skip
    model, _, _ = load_checkpoint_model(run.checkpoint)
    assert all(torch.allclose(model.state_dict()[k], v, atol=1e-6) for k, v in saved.items())
    # as the autoencoder of a latent run: the scale factor is measured on the data when the cache is built
    latent = debug_cfg(
        f"latent.autoencoder={tmp_path / 'vae'}", "train.max_steps=1", "train.run_name=ldm-foreign"
    )
    train(latent)
    info, _ = read_cache(cache_dir_for(latent))
    assert info["scale_source"] == "measured on this split"


def test_latent_config_errors_name_the_key(debug_cfg, tmp_path):
    with pytest.raises(ConfigError, match="latent.autoencoder"):
        train(debug_cfg(f"latent.autoencoder={tmp_path / 'nothing'}", "train.max_steps=1"))
    with pytest.raises(ConfigError, match="autoencoder.channel_mult"):
        train(debug_cfg("task=autoencoder", "autoencoder.channel_mult=[1,2,2,2,2,2]", "train.max_steps=1"))
    with pytest.raises(ConfigError, match="task=autoencoder"):
        debug_cfg("task=autoencoder", f"latent.autoencoder={tmp_path}")
    with pytest.raises(ConfigError, match="kl-debug"):
        debug_cfg("autoencoder.name=nope")


@pytest.mark.wires("autoencoder.lpips_weight", "autoencoder.lpips_path")
def test_the_autoencoders_lpips_term_adds_its_own_gradient(debug_cfg, tmp_path):
    from faice.metrics.lpips import LPIPS
    from faice.models.autoencoder import AutoencoderLoss, build_autoencoder

    torch.manual_seed(0)
    net = LPIPS()
    torch.save(
        {k: v for k, v in net.state_dict().items() if k.startswith("features.")}, tmp_path / "vgg16.pth"
    )
    torch.save({k: v.abs() for k, v in net.state_dict().items() if k.startswith("lin")}, tmp_path / "vgg.pth")
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1

    def grads(weight):
        cfg = debug_cfg(
            "task=autoencoder", f"autoencoder.lpips_weight={weight}", f"autoencoder.lpips_path={tmp_path}"
        )
        torch.manual_seed(0)
        model = build_autoencoder(cfg.autoencoder, 16)
        loss_fn = AutoencoderLoss(cfg.autoencoder)
        parts = loss_fn.parts(model, x, torch.Generator().manual_seed(1))
        sum(parts.values()).backward()
        return parts, torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    (p0, g0), (p1, g1) = grads(0.0), grads(1.0)
    assert "lpips" not in p0 and float(p1["lpips"]) > 0
    torch.testing.assert_close(p0["recon"], p1["recon"])
    assert (g1 - g0).abs().max() > 1e-6


@pytest.mark.wires("latent.cache_dir", "latent.encode_batch_size", "latent.posterior")
def test_the_latent_fields_place_the_cache_batch_the_encoder_and_pick_the_posterior(kl_run, tmp_path):
    import math

    from accelerate import Accelerator

    from faice.data.latents import load_autoencoder
    from faice.train.state import build_loader

    ae = load_autoencoder(kl_run.run_dir)  # the cached module the encoder uses
    calls = []
    hook = ae.encoder.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    try:
        cfg = _latent_cfg(kl_run, f"latent.cache_dir={tmp_path / 'cache'}", "latent.encode_batch_size=7")
    finally:
        hook.remove()
    cache = cache_dir_for(cfg)
    assert cache.parent == tmp_path / "cache" and (cache / "manifest.json").exists()
    count = read_cache(cache)[0]["count"]
    assert calls and max(calls) == 7 and len(calls) % math.ceil(count / 7) == 0
    batches = {}
    for posterior in ("mean", "sample"):
        cfg = _latent_cfg(kl_run, f"latent.cache_dir={tmp_path / 'cache'}", f"latent.posterior={posterior}")
        batches[posterior] = next(iter(build_loader(cfg, Accelerator(cpu=True)).iter_epoch(0)))["image"]
    assert batches["mean"].shape == batches["sample"].shape and not torch.allclose(
        batches["mean"], batches["sample"]
    )


@pytest.mark.parametrize(
    "overrides, key",
    [(["data.crop=random"], "data.crop"), (["data.blur_sigma=1.0"], "data.blur_sigma"),
     (["diffusion.lpips_weight=0.1"], "diffusion.lpips_weight")],
)  # fmt: skip
def test_latent_runs_refuse_pixel_augmentation_and_lpips(kl_run, overrides, key):
    from faice.tasks import task_of

    cfg = _latent_cfg(kl_run, *overrides)
    with pytest.raises(ConfigError, match=rf"^{key}=.* is ignored: "):
        task_of(cfg)


@pytest.mark.wires("autoencoder.kind", "autoencoder.base_channels", "autoencoder.channel_mult",
                   "autoencoder.layers_per_block", "autoencoder.latent_channels", "autoencoder.num_vq_embeddings",
                   "autoencoder.recon_loss")  # fmt: skip
def test_the_autoencoder_fields_shape_the_network_and_its_loss(debug_cfg):
    from faice.models.autoencoder import AutoencoderLoss
    from faice.train.state import build_task_model

    ae = ("task=autoencoder", "train.ema_decay=0", "autoencoder.name=kl-debug")
    kl = build_task_model(debug_cfg(*ae, "autoencoder.base_channels=4", "autoencoder.channel_mult=[1, 2, 2]",
                                    "autoencoder.layers_per_block=2", "autoencoder.latent_channels=6"))  # fmt: skip
    c = kl.config
    assert type(kl).__name__ == "AutoencoderKL"
    assert (c.block_out_channels, c.layers_per_block, c.latent_channels) == ((4, 8, 8), 2, 6)
    vq = build_task_model(debug_cfg(*ae, "autoencoder.kind=vq", "autoencoder.num_vq_embeddings=32"))
    assert type(vq).__name__ == "VQModel" and vq.config.num_vq_embeddings == 32
    x = torch.linspace(-1, 1, 2 * 3 * 16 * 16).reshape(2, 3, 16, 16)
    parts = {}
    for recon in ("mse", "l1"):
        cfg = debug_cfg(*ae, f"autoencoder.recon_loss={recon}")
        torch.manual_seed(0)
        model = build_task_model(cfg)
        parts[recon] = AutoencoderLoss(cfg.autoencoder).parts(model, x, torch.Generator().manual_seed(0))[
            "recon"
        ]
    assert parts["mse"].item() != pytest.approx(parts["l1"].item(), rel=1e-3)
    assert parts["mse"].item() < parts["l1"].item()  # errors below 1: squares are smaller

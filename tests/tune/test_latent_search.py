"""The original's latent study as linked searches, in-process (the launcher's own link resolution and trial
configs; the Ray path is the same as every search's): an autoencoder search, then pixel UNet vs latent
UNet vs latent DiT trained on its best trial, compared in one results table, and the latent UNet depth
study on the same autoencoder."""

import json

import pytest

from tests.tune.tiny_search import run_tiny_in_process

pytestmark = [pytest.mark.slow]


def _run(storage, space, data, *extra):
    return run_tiny_in_process(storage, space, data, "config.eval.num_inference_steps=3", *extra)


@pytest.mark.timeout(600)
def test_autoencoder_search_feeds_a_latent_vs_pixel_comparison(debug_data, tmp_path, capsys):
    ae_rows = _run(tmp_path, "autoencoder.yaml", debug_data,
                   "space.autoencoder.name={grid: [kl-debug, vq-debug]}", "config.autoencoder.base_channels=8")  # fmt: skip
    assert len(ae_rows) == 2 and all(r["status"] == "finished" for r in ae_rows)
    best = max(ae_rows, key=lambda r: float(r["best_psnr[pixels]"]))
    assert all(r["ssim[pixels]"] and r["rfid[faice-tiny]"] for r in ae_rows)

    capsys.readouterr()
    rows = _run(tmp_path, "latent-vs-pixel.yaml", debug_data)
    search = tmp_path / "latent-vs-pixel"
    link = json.loads((search / "links.json").read_text())["autoencoder"]
    assert link["trial"] == best["trial_id"] and link["key"] == "latent.autoencoder"
    assert f"best of autoencoder: trial {best['trial_id']}" in capsys.readouterr().out
    assert sorted(r["variant"] for r in rows) == ["latent-dit", "latent-unet", "pixel-unet"]
    for row in rows:  # one table: FID, speed and memory for each
        assert row["status"] == "finished", row
        assert float(row["best_fid[faice-tiny]"]) > 0 and float(row["steps_per_s"]) > 0
        assert float(row["peak_mem_mb"]) > 0
        run = search / "runs" / row["trial_id"]
        config = (run / "config.yaml").read_text()
        if row["variant"] == "pixel-unet":
            assert not (run / "latent-source.json").exists()
        else:  # the launcher resolved the link; the run records the autoencoder it used
            assert f"autoencoder: {link['run']}" in config
            assert json.loads((run / "latent-source.json").read_text())["autoencoder"] == link["run"]
    # the LDM depth study on the same autoencoder: 4 vs 6 blocks
    rows = _run(
        tmp_path, "latent-unet-depth.yaml", debug_data, "space.model.name={grid: [unet-ldm-4, unet-ldm-6]}"
    )
    assert sorted(r["model.name"] for r in rows) == ["unet-ldm-4", "unet-ldm-6"]
    assert all(r["status"] == "finished" and float(r["best_fid[faice-tiny]"]) > 0 for r in rows)
    caches = [p for p in (debug_data / "latents").iterdir() if not p.name.count(".partial")]
    assert caches and not list((debug_data / "latents").glob(".tmp-*"))

"""The original's latent study as two linked searches on a real local Ray cluster: an autoencoder search,
then pixel UNet vs latent UNet vs latent DiT trained on its best trial, compared in one results table."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow]


def _run(cluster, storage, space, *extra):
    common = [
        "config.train.batch_size=8", "config.train.log_every=2", "config.train.checkpoint_every=3",
        "config.eval.num_samples=8", "config.eval.kid_subset_size=8", "config.eval.kid_subsets=4",
        "config.eval.where=inline", "config.eval.num_inference_steps=3", "config.eval.grid_images=4",
        "config.data.resolution=16", "config.data.num_workers=0", "config.log.wandb=disabled",
        "budget.max_steps=6",
    ]  # fmt: skip
    cmd = [sys.executable, "-m", "tune.search", "--space", space, "--storage", str(storage),
           "--address", cluster.address, "--verbose", "0", *common, *extra]  # fmt: skip
    out = subprocess.run(cmd, cwd=REPO, env=cluster.env, capture_output=True, text=True, timeout=500)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out


def _rows(search: Path) -> list[dict]:
    with (search / "results.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.mark.timeout(900)
def test_autoencoder_search_feeds_a_latent_vs_pixel_comparison(ray_cluster, debug_data, tmp_path):
    _run(ray_cluster, tmp_path, "autoencoder.yaml", f"config.data.path={debug_data}",
         "space.autoencoder.name={grid: [kl-debug, vq-debug]}", "config.autoencoder.base_channels=8")  # fmt: skip
    ae_rows = _rows(tmp_path / "autoencoder")
    assert len(ae_rows) == 2 and all(r["status"] == "finished" for r in ae_rows)
    best = max(ae_rows, key=lambda r: float(r["best_psnr[pixels]"]))
    assert all(r["ssim[pixels]"] and r["rfid[faice-tiny]"] for r in ae_rows)

    out = _run(ray_cluster, tmp_path, "latent-vs-pixel.yaml", f"config.data.path={debug_data}")
    search = tmp_path / "latent-vs-pixel"
    link = json.loads((search / "links.json").read_text())["autoencoder"]
    assert link["trial"] == best["trial_id"] and link["key"] == "latent.autoencoder"
    assert f"best of autoencoder: trial {best['trial_id']}" in out.stdout
    rows = _rows(search)
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
    caches = [p for p in (debug_data / "latents").iterdir() if not p.name.count(".partial")]
    assert caches and not list((debug_data / "latents").glob("*.partial-*"))

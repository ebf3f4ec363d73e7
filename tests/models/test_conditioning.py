"""Class conditioning on attributes with classifier-free guidance: labels reach the model, label dropout
happens at the configured rate, guidance changes samples, and attributes can be asked for."""

import numpy as np
import pytest
import torch

from faice.conditioning import decode, drop_labels, encode, null_label, num_classes, sample_labels
from faice.config import ConfigError, load_config
from faice.diffusion.loss import DiffusionLoss
from faice.diffusion.samplers import build_scheduler, sample
from faice.models import build_model
from faice.pipeline import guide

COND = ["Male", "Smiling"]


def cond_model(seed=0):
    cfg = load_config("debug.yaml", ["model.conditioning=[Male, Smiling]"])
    torch.manual_seed(seed)
    return build_model(cfg.model, 16).eval(), cfg


def test_labels_encode_every_attribute_combination():
    values = torch.tensor([[0, 0], [1, 0], [0, 1], [1, 1], [-1, 1]])
    labels = encode(values)
    assert labels.tolist() == [0, 1, 2, 3, 2]  # unknown (-1) counts as absent
    assert decode(labels, 2).tolist() == [[0, 0], [1, 0], [0, 1], [1, 1], [0, 1]]
    assert null_label(2) == 4 and num_classes(2) == 5


def test_label_dropout_happens_at_the_configured_rate():
    g = torch.Generator().manual_seed(0)
    labels = torch.zeros(100_000, dtype=torch.long)
    for p in (0.1, 0.3):
        rate = (drop_labels(labels, p, 2, g) == null_label(2)).float().mean().item()
        assert rate == pytest.approx(p, abs=0.005)
    assert torch.equal(drop_labels(labels, 0.0, 2, g), labels)


def test_the_loss_feeds_labels_and_drops_them_at_the_rate():
    model, cfg = cond_model()
    seen = []
    model.register_forward_pre_hook(
        lambda m, args, kw: seen.append(kw["class_labels"].clone()), with_kwargs=True
    )
    loss = DiffusionLoss(cfg.diffusion, label_dropout=0.25, num_attributes=2)
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 1, 2, 3] * 16)
    for _ in range(40):
        loss(model, torch.zeros(64, 3, 16, 16), g, labels)
    seen = torch.cat(seen)
    dropped = seen == null_label(2)
    assert dropped.float().mean().item() == pytest.approx(0.25, abs=0.03)
    assert torch.equal(seen[~dropped], labels.repeat(40)[~dropped])  # the rest are the true labels


def test_conditional_model_output_depends_on_the_label_and_unconditional_has_no_embedding():
    model, _ = cond_model()
    assert model.class_embedding.num_embeddings == 5
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([500, 500])
    with torch.no_grad():
        a = model(x, t, class_labels=torch.tensor([0, 0])).sample
        b = model(x, t, class_labels=torch.tensor([3, 3])).sample
    assert not torch.allclose(a, b)
    plain = build_model(load_config("debug.yaml").model, 16)
    assert plain.class_embedding is None


def test_guidance_mixes_the_two_predictions_and_changes_samples():
    c, u = torch.tensor([3.0]), torch.tensor([1.0])
    assert (
        guide(c, u, 1.0).item() == 3.0 and guide(c, u, 0.0).item() == 1.0 and guide(c, u, 3.0).item() == 7.0
    )
    model, cfg = cond_model()
    with torch.no_grad():  # a visible label effect for the check: scale the class embedding up
        model.class_embedding.weight.mul_(20)
    sched = lambda: build_scheduler(cfg.diffusion, "ddim")  # noqa: E731
    labels = torch.tensor([3, 3])

    def run(scale, lab=labels):
        return sample(model, sched(), (2, 3, 16, 16), 5, torch.Generator().manual_seed(0), labels=lab,
                      guidance_scale=scale, null_label=4)  # fmt: skip

    plain = run(1.0)
    assert not torch.allclose(plain, run(3.0))
    # scale 0 = the null class alone (batched with the labelled half: float noise only)
    torch.testing.assert_close(run(0.0), run(1.0, torch.tensor([4, 4])), atol=1e-3, rtol=0)


def test_sample_labels_fix_asked_attributes_and_follow_the_data_for_the_rest():
    table = np.array([[0, 1]] * 50 + [[1, 1]] * 50)  # everyone smiles
    labels = sample_labels(COND, {"Male": 1}, 200, seed=0, table=table)
    assert (decode(labels, 2) == torch.tensor([1, 1])).all()
    free = decode(sample_labels(COND, {}, 2000, seed=0, table=table), 2).float()
    assert free[:, 1].mean() == 1.0 and free[:, 0].mean().item() == pytest.approx(0.5, abs=0.05)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_conditional_run_trains_and_samples_by_attribute(debug_cfg, tmp_path, capsys):
    from faice.train.loop import Hooks, train

    cfg = debug_cfg("model.conditioning=[Male, Smiling]", "train.label_dropout=0.2", "train.max_steps=3")
    batches = []
    result = train(cfg, run_dir=tmp_path / "run", hooks=Hooks(on_batch=batches.append))
    assert result.step == 3 and batches
    run = tmp_path / "run"
    from faice.cli import main

    cmd = ["sample", str(run), "--n", "4", "--steps", "3",
           "--attr", "Male=1", "Smiling=0", "--guidance", "2", "--out", str(tmp_path / "s")]  # fmt: skip
    assert main(cmd) == 0, capsys.readouterr().err
    assert len(list((tmp_path / "s").glob("sample-*.png"))) == 4
    capsys.readouterr()
    assert main(cmd[:-7] + ["--attr", "Bald=1"]) == 2
    assert "not conditioned on 'Bald'; its attributes: Male, Smiling" in capsys.readouterr().err


def test_configuration_errors_name_the_choices(debug_cfg):
    from accelerate import Accelerator

    from faice.train.state import build_state

    with pytest.raises(ConfigError, match="no attribute 'Bald'; valid choices: Male, Smiling, Eyeglasses"):
        build_state(debug_cfg("model.conditioning=[Bald]"), Accelerator(cpu=True))
    with pytest.raises(ConfigError, match="sample.attributes: the model is not conditioned on 'Male'"):
        load_config("debug.yaml", ["sample.attributes=[Male=1]"])
    with pytest.raises(ConfigError, match="NAME=0 or NAME=1"):
        load_config("debug.yaml", ["model.conditioning=[Male]", "sample.attributes=[Male=yes]"])
